"""A table of the runs of a multirun, printed when the multirun ends (a Hydra callback)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def load_runs(sweep_dir: Path) -> list[dict]:
    runs = []
    for path in sorted(Path(sweep_dir).glob("*/run.json")):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            runs.append({"run_dir": str(path.parent), "status": f"unreadable run.json ({err})"})
    return runs


def format_table(runs: list[dict]) -> str:
    header = f"{'algo':<6} {'env':<16} {'seed':>4} {'status':<9} {'env_steps':>10} {'eval_return':>18} {'wall_s':>8}"
    lines = [header, "-" * len(header)]
    finals = []
    for r in runs:
        mean, std = r.get("eval_return_mean"), r.get("eval_return_std")
        ev = f"{mean:.1f} +- {std:.1f}" if isinstance(mean, (int, float)) else "-"
        if isinstance(mean, (int, float)):
            finals.append(mean)
        wall = r.get("wall_time_s")
        lines.append(f"{str(r.get('algo', '?')):<6} {str(r.get('env_id', '?')):<16} {str(r.get('seed', '?')):>4} "
                     f"{str(r.get('status', '?')):<9} {str(r.get('env_steps', '-')):>10} {ev:>18} "
                     f"{(f'{wall:.0f}' if isinstance(wall, (int, float)) else '-'):>8}")
    if finals:
        mean = sum(finals) / len(finals)
        sd = math.sqrt(sum((x - mean) ** 2 for x in finals) / len(finals))
        lines.append(f"final eval return over {len(finals)} runs: mean {mean:.1f}, std {sd:.1f}")
    return "\n".join(lines)


class MultirunSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = load_runs(sweep_dir)
        if runs:
            print(f"\nSummary of {len(runs)} runs in {sweep_dir}:\n{format_table(runs)}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m trpo_exp.summary <multirun dir>")
    print(format_table(load_runs(Path(sys.argv[1]))))
