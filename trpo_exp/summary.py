"""A table of the runs of a multirun, printed when the multirun ends (a Hydra callback).

Runs are grouped by (algorithm, env): a mean over different algorithms means nothing. Each group's
last line gives the mean and the sample std (ddof=1) of the runs' final evaluations.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from trpo_exp.record.files import RUN_JSON
from trpo_exp.record.status import shown_status
from trpo_exp.util import sample_std


def load_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    from trpo_exp.record.reader import read_info

    runs = []
    for path in sorted(Path(sweep_dir).glob(f"*/{RUN_JSON}")):
        notes: list[str] = []
        info = read_info(path.parent, notes)
        runs.append(info if info else {"run_dir": str(path.parent), "status": "; ".join(notes)})
    return runs


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_table(runs: list[dict[str, Any]]) -> str:
    header = f"{'algo':<9} {'env':<16} {'seed':>4} {'status':<9} {'env_steps':>10} {'eval_return':>18} {'wall_s':>8}"
    lines = [header, "-" * len(header)]
    finals: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        mean, std = r.get("eval_return_mean"), r.get("eval_return_std")
        ev = (f"{mean:.1f} +- {std:.1f}" if _number(std) else f"{mean:.1f}") if _number(mean) else "-"
        if _number(mean):
            finals.setdefault((str(r.get("algo", "?")), str(r.get("env_id", "?"))), []).append(float(mean))  # type: ignore[arg-type]
        wall = r.get("wall_time_s")
        lines.append(f"{str(r.get('algo', '?')):<9} {str(r.get('env_id', '?')):<16} {str(r.get('seed', '?')):>4} "
                     f"{shown_status(r):<9} {str(r.get('env_steps', '-')):>10} {ev:>18} "
                     f"{(f'{wall:.0f}' if _number(wall) else '-'):>8}")
    for (algo, env), values in sorted(finals.items()):
        mean = sum(values) / len(values)
        spread = sample_std(values)
        sd = f", sample std {spread:.1f}" if math.isfinite(spread) else ""
        lines.append(f"{algo} on {env}: final eval return over {len(values)} runs: mean {mean:.1f}{sd}")
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
