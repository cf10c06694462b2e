"""Analysis speed: load and aggregate 1,000 synthetic runs x 500 rows (target: under 10 s).

Writes 1,000 run directories (metrics.csv with every column of the real record, run.json and
.hydra/config.yaml, 4 algorithms x 5 envs x 50 seeds, two swept parameters) into a temp dir, then
times, each as the median of --repeats:

* cold load: parse every file (the parquet cache disabled),
* cached load: the same selection again, served from the parquet cache,
* aggregate: the final-performance table (bootstrap CIs) and the learning curves on a 100-point grid,
* tidy: the long frame (run, algo, env, seed, params, env_steps, metric, value).

    python benchmarks/analysis_speed.py [--runs 1000] [--rows 500] [--repeats 3]
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


def write_runs(root: Path, n_runs: int, n_rows: int) -> None:
    rng = np.random.default_rng(0)
    header = ",".join(METRIC_COLUMNS) + "\n"
    for i in range(n_runs):
        algo, env = ALGOS[i % len(ALGOS)], ENVS[(i // len(ALGOS)) % len(ENVS)]
        seed = i // (len(ALGOS) * len(ENVS))
        max_kl, damping = (0.01, 0.1) if seed % 2 == 0 else (0.02, 0.01)
        run_dir = root / f"{i}_{algo}_{env}_s{seed}"
        (run_dir / ".hydra").mkdir(parents=True)
        steps = np.arange(1, n_rows + 1) * 2048
        data = rng.normal(size=(n_rows, len(METRIC_COLUMNS)))
        data[:, 0], data[:, 1] = np.arange(1, n_rows + 1), steps
        lines = []
        for r, row in enumerate(data):
            cells = [repr(float(v)) for v in row]
            cells[0], cells[1] = str(r + 1), str(int(steps[r]))
            cells[METRIC_COLUMNS.index("step_accepted")] = "True"
            if (r + 1) % 10:  # evaluation every 10 iterations, like the real record
                cells[METRIC_COLUMNS.index("eval_return_mean")] = cells[METRIC_COLUMNS.index("eval_return_std")] = ""
            lines.append(",".join(cells))
        (run_dir / "metrics.csv").write_text(header + "\n".join(lines) + "\n")
        (run_dir / "run.json").write_text(json.dumps({
            "status": "finished", "name": f"{algo}-{env}-s{seed}", "algo": algo, "env_id": env, "seed": seed,
            "env_steps": int(steps[-1]), "group": "bench"}))
        (run_dir / ".hydra" / "config.yaml").write_text(CONFIG.format(
            algo=algo, env=env, seed=seed, max_kl=max_kl, damping=damping, trial=seed // 2, total=int(steps[-1])))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root, cache_dir = Path(tmp) / "runs", Path(tmp) / "cache"
        t_write, _ = timed(lambda: write_runs(root, args.runs, args.rows))
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6
        print(f"wrote {args.runs} runs x {args.rows} rows ({size:.0f} MB) in {t_write:.1f} s; "
              f"{os.cpu_count()} CPUs; median of {args.repeats}")
        cold, cached, agg, tidy = [], [], [], []
        for _ in range(args.repeats):
            cold.append(timed(lambda: load_runs([str(root)], use_cache=False))[0])
            load_runs([str(root)], cache_dir=cache_dir)  # (re)fill the cache
            t, rs = timed(lambda: load_runs([str(root)], cache_dir=cache_dir))
            cached.append(t)
            agg.append(timed(lambda rs=rs: (aggregate.summary_table(rs, "eval/return_mean", 3),
                                            aggregate.curves(rs, "rollout/return_mean", 100)))[0])
            t, frame = timed(rs.tidy)
            tidy.append(t)
        med = statistics.median
        print(f"  cold load (parse all files)       {med(cold):6.2f} s")
        print(f"  cached load (parquet)             {med(cached):6.2f} s")
        print(f"  aggregate (table + curves)        {med(agg):6.2f} s")
        print(f"  tidy frame ({len(frame):,} rows)   {med(tidy):6.2f} s")
        print(f"  cold load + aggregate             {med(cold) + med(agg):6.2f} s   (target < 10 s)")
        print(f"  cached load + aggregate           {med(cached) + med(agg):6.2f} s")


if __name__ == "__main__":
    main()
