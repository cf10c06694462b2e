"""Vine: the cost of one branch step against one trunk step (issue 12: within 1.25x).

Runs, interleaved and ``--repeats`` times, two short vine runs of the same env and seed: one with
the preset's rollout set (``algo=trpo_vine env=<env>``, plus ``--override``s) and one whose rollout
set is a single state with two one-step branches (its sampling time is the trunk's alone). A vine
iteration's sampling time (metrics.csv ``time_sample_s``) covers the trunk and the branches, so

    branch step cost = (median sample time, full - median sample time, tiny) / branch steps
    trunk step cost  = median sample time, tiny / trunk steps

and the script prints their ratio per repeat and the median. The first iteration of each run
(start-up) is left out.

  python benchmarks/vine_branch_cost.py --env hopper --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

TINY = ["algo.vine.num_states=1", "algo.vine.num_actions=2", "algo.vine.rollout_len=1"]


def run(args: list[str], run_dir: Path) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "trpo_exp", *args, "logger=none", "eval.every=0", "eval.episodes=1",
           f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"vine_branch_cost: {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return pd.read_csv(run_dir / "metrics.csv")


def per_iteration(metrics: pd.DataFrame) -> pd.DataFrame:
    steps, branch = metrics["env_steps"].diff(), metrics["branch_steps"].diff()  # NaN in row 1, dropped
    return pd.DataFrame({"sample_s": metrics["time_sample_s"], "branch": branch,
                         "trunk": steps - branch}).iloc[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--iterations", type=int, default=15, help="policy iterations per full run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    opts = parser.parse_args()
    base = ["algo=trpo_vine", f"env={opts.env}", "seed=0", *opts.override]
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        probe = per_iteration(run([*base, "total_steps=20000"], Path(tmp) / "probe"))
        full_steps = int((probe["trunk"] + probe["branch"]).median() * (opts.iterations + 1))
        tiny_steps = int(probe["trunk"].median() * (opts.iterations + 1))
        for rep in range(opts.repeats):
            full = per_iteration(run([*base, f"total_steps={full_steps}"], Path(tmp) / f"full{rep}"))
            tiny = per_iteration(run([*base, *TINY, f"total_steps={tiny_steps}"], Path(tmp) / f"tiny{rep}"))
            t_tiny, t_full = tiny["sample_s"].median(), full["sample_s"].median()
            trunk_step = t_tiny / tiny["trunk"].median()
            branch_step = (t_full - t_tiny) / full["branch"].median()
            ratios.append(branch_step / trunk_step)
            print(f"repeat {rep}: trunk step {trunk_step * 1e6:.0f} us, branch step {branch_step * 1e6:.0f} us "
                  f"({int(full['branch'].median())} branch + {int(full['trunk'].median())} trunk steps per "
                  f"iteration): ratio {ratios[-1]:.2f}", flush=True)
    print(f"branch / trunk step cost, median of {opts.repeats}: {statistics.median(ratios):.2f} "
          f"(range {np.min(ratios):.2f}-{np.max(ratios):.2f}; issue 12 target <= 1.25)")


if __name__ == "__main__":
    main()
