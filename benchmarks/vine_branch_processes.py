"""Vine: what stepping the branches in more processes gains (``branch_processes``, issue 12).

Runs, interleaved and ``--repeats`` times, the same vine run (``algo=trpo_vine env=<env>``, seed 0,
plus ``--override``s) with each ``--processes`` count, and prints per count the median sampling
time per iteration (metrics.csv ``time_sample_s``: trunk and branches), the median iteration time
(sampling, update and evaluation) and the whole process's wall time, each as a ratio to the first
count's in the same repeat. It checks that every count gave the same metrics (time columns aside):
the process count must change no number. The first iteration of each run (workers starting) is
left out of the medians, not of the wall time.

It pays only with idle cores: run it on an otherwise idle machine, one run at a time.

  python benchmarks/vine_branch_processes.py --env hopper --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from trpo_exp.record import TIME_COLUMNS  # noqa: E402  # after the path: runs from a checkout


def run(args: list[str], run_dir: Path) -> tuple[pd.DataFrame, float]:
    """metrics.csv of one run, and its process's wall time in seconds."""
    cmd = [sys.executable, "-m", "trpo_exp", *args, "logger=none", "eval.every=0", "eval.episodes=1",
           f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"vine_branch_processes: {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return pd.read_csv(run_dir / "metrics.csv"), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--steps", type=int, default=60_000, help="simulator steps per run")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    opts = parser.parse_args()
    base = ["algo=trpo_vine", f"env={opts.env}", "seed=0", f"total_steps={opts.steps}", *opts.override]
    ratios: dict[int, dict[str, list[float]]] = {n: {"sample": [], "iteration": [], "wall": []} for n in opts.processes}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(opts.repeats):
            figures, reference = {}, None
            for n in opts.processes:
                metrics, wall = run([*base, f"branch_processes={n}"], Path(tmp) / f"p{n}r{rep}")
                numbers = metrics.drop(columns=list(TIME_COLUMNS))
                if reference is None:
                    reference = numbers
                elif not numbers.equals(reference):
                    sys.exit(f"vine_branch_processes: branch_processes={n} changed the metrics")
                later = metrics.iloc[1:]
                iteration = later["time_sample_s"] + later["time_update_s"] + later["time_eval_s"].fillna(0)
                figures[n] = {"sample": later["time_sample_s"].median(), "iteration": iteration.median(), "wall": wall}
            first = figures[opts.processes[0]]
            line = []
            for n in opts.processes:
                for key in ("sample", "iteration", "wall"):
                    ratios[n][key].append(figures[n][key] / first[key])
                line.append(f"{n} processes: sample {figures[n]['sample']:.3f} s/it, iteration "
                            f"{figures[n]['iteration']:.3f} s, wall {figures[n]['wall']:.1f} s")
            print(f"repeat {rep} ({len(metrics)} iterations, same metrics): " + "; ".join(line), flush=True)
    for n in opts.processes[1:]:
        med = {key: statistics.median(values) for key, values in ratios[n].items()}
        print(f"{n} processes / {opts.processes[0]}, median of {opts.repeats}: sampling {med['sample']:.2f}, "
              f"iteration {med['iteration']:.2f}, wall {med['wall']:.2f}")


if __name__ == "__main__":
    main()
