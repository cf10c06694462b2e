"""Analysis speed: 10,000 synthetic runs x 500 rows, load + aggregate + figures (target: <= 60 s cold).

Writes --runs run directories (metrics.csv with every column of the real record, run.json and
.hydra/config.yaml, 4 algorithms x 5 envs, two swept parameters) into a temp dir, then times, each
as the median of --repeats:

* cold load: parse every file (the parquet cache disabled),
* cached load: the same selection again, served from the parquet cache,
* aggregate: the final-performance table (bootstrap CIs) and the learning curves on a 100-point grid,
* report: what ``python -m analysis.report`` does after the load: tables, learning curves, sweep and
  diagnostics figures (PNG + PDF), runs.csv, report.md,
* tidy (with --tidy): the long frame (run, algo, env, seed, params, env_steps, metric, value); at
  10,000 runs that is 111 million rows, two minutes and ~10 GB, so it is off by default.

The target (issue 13) is cold load + report, figures included, <= 60 s.

    python benchmarks/analysis_speed.py [--runs 10000] [--rows 500] [--repeats 1] [--tidy]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import aggregate  # noqa: E402
from analysis.loading import load_runs  # noqa: E402
from analysis.report import Report, build_parser  # noqa: E402
from trpo_exp.record import METRIC_COLUMNS  # noqa: E402

ALGOS = ("pg", "npg", "trpo", "trpo_vine")
ENVS = ("CartPole-v1", "Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5")
CONFIG = """algo:
  name: {algo}
  steps_per_iter: 2048
  gamma: 0.99
  gae_lambda: 0.97
  hidden_sizes:
  - 64
  - 64
  max_kl: {max_kl}
  cg_damping: {damping}
  backtrack_coeff: 0.8
env:
  id: {env}
  num_envs: 4
device:
  type: cpu
eval:
  every: 10
  episodes: 10
logger:
  mode: disabled
trial:
  study: bench
  number: {trial}
seed: {seed}
total_steps: {total}
"""


def write_runs(root: Path, n_runs: int, n_rows: int, n_bodies: int = 16) -> None:
    """Run dirs whose metrics.csv bodies come from a pool of ``n_bodies`` random ones (formatting
    10,000 x 500 x 24 floats one by one takes longer than the analysis itself); every file is still
    parsed on its own by the load."""
    rng = np.random.default_rng(0)
    header = ",".join(METRIC_COLUMNS) + "\n"
    bodies = [_body(rng, n_rows) for _ in range(n_bodies)]
    for i in range(n_runs):
        algo, env = ALGOS[i % len(ALGOS)], ENVS[(i // len(ALGOS)) % len(ENVS)]
        seed = i // (len(ALGOS) * len(ENVS))
        max_kl, damping = (0.01, 0.1) if seed % 2 == 0 else (0.02, 0.01)
        run_dir = root / f"{i}_{algo}_{env}_s{seed}"
        (run_dir / ".hydra").mkdir(parents=True)
        (run_dir / "metrics.csv").write_bytes(header.encode() + bodies[i % n_bodies])
        steps = n_rows * 2048
        (run_dir / "run.json").write_text(json.dumps({
            "status": "finished", "name": f"{algo}-{env}-s{seed}", "algo": algo, "env_id": env, "seed": seed,
            "env_steps": steps, "group": "bench"}))
        (run_dir / ".hydra" / "config.yaml").write_text(CONFIG.format(
            algo=algo, env=env, seed=seed, max_kl=max_kl, damping=damping, trial=seed // 2, total=steps))


def _body(rng: np.random.Generator, n_rows: int) -> bytes:
    steps = np.arange(1, n_rows + 1) * 2048
    data = rng.normal(size=(n_rows, len(METRIC_COLUMNS)))
    lines = []
    for r, row in enumerate(data):
        cells = [f"{float(v):.6g}" for v in row]
        cells[0], cells[1] = str(r + 1), str(int(steps[r]))
        cells[METRIC_COLUMNS.index("step_accepted")] = "True"
        if (r + 1) % 10:  # evaluation every 10 iterations, like the real record
            cells[METRIC_COLUMNS.index("eval_return_mean")] = cells[METRIC_COLUMNS.index("eval_return_std")] = ""
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--tidy", action="store_true", help="also time the long (tidy) frame")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root, cache_dir = Path(tmp) / "runs", Path(tmp) / "cache"
        t_write, _ = timed(lambda: write_runs(root, args.runs, args.rows))
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6
        print(f"wrote {args.runs} runs x {args.rows} rows ({size:.0f} MB) in {t_write:.1f} s; "
              f"{os.cpu_count()} CPUs; median of {args.repeats}", flush=True)
        cold, cached, agg, rep, tidy = [], [], [], [], []
        for k in range(args.repeats):
            t, rs = timed(lambda: load_runs([str(root)], use_cache=False))
            cold.append(t)
            report_args = build_parser().parse_args([str(root), "--out", str(Path(tmp) / f"report{k}")])
            rep.append(timed(lambda rs=rs, a=report_args: Report(rs, a, []).write(Path(a.out)))[0])
            load_runs([str(root)], cache_dir=cache_dir)  # (re)fill the cache
            t, rs = timed(lambda: load_runs([str(root)], cache_dir=cache_dir))
            cached.append(t)
            agg.append(timed(lambda rs=rs: (aggregate.summary_table(rs, "eval/return_mean", 3),
                                            aggregate.curves(rs, "rollout/return_mean", 100)))[0])
            if args.tidy:
                t, frame = timed(rs.tidy)
                tidy.append(t)
        med = statistics.median
        print(f"  cold load (parse all files)       {med(cold):6.2f} s")
        print(f"  cached load (parquet)             {med(cached):6.2f} s")
        print(f"  aggregate (table + curves)        {med(agg):6.2f} s")
        print(f"  report (tables + all figures)     {med(rep):6.2f} s")
        if args.tidy:
            print(f"  tidy frame ({len(frame):,} rows)   {med(tidy):6.2f} s")
        print(f"  cold load + report                {med(cold) + med(rep):6.2f} s   (target <= 60 s)")
        print(f"  cached load + report              {med(cached) + med(rep):6.2f} s")


if __name__ == "__main__":
    main()
