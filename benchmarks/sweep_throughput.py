"""Sweep throughput: trials per hour of one tiny sweep with 1, 2 and 3 workers on PostgreSQL, against
one worker on the default SQLite file, measured in the same session.

Each configuration runs the same tiny sweep (trpo_cartpole, --steps env steps per run, one seed, no
report, no pruning) to --trials finished trials with N concurrent `python -m sweeps` workers (separate
processes, as on separate machines). Throughput = trials / wall time from the first worker's start
to the last one's end. PostgreSQL: a server started with scripts/local-postgres.sh (its own data dir
and port, stopped at the end), one fresh database per configuration.

    python benchmarks/sweep_throughput.py                       # 12 trials, 4096 steps per run
    python benchmarks/sweep_throughput.py --trials 24 --workers 1 2 3

On a 2-core machine more than 2 workers cannot go faster: the figures show what the storage costs
(SQLite vs PostgreSQL at 1 worker) and how claims scale, not a cluster's speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep(storage: str | None, workers: int, trials: int, steps: int, work: Path, study: str) -> float:
    args = [sys.executable, "-m", "sweeps", "trpo_cartpole", f"sweep.dir={work / study}", f"sweep.study={study}",
            f"sweep.n_trials={trials}", "sweep.seeds=1", "sweep.report_seeds=0", "sweep.pruner.name=none",
            "sweep.poll_interval=0.2", f"total_steps={steps}", "algo.steps_per_iter=1024", "eval.episodes=1",
            "logger=none", *([f"sweep.storage={storage}"] if storage else [])]
    start = time.perf_counter()
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"sweep_throughput: a worker failed: {err.strip().splitlines()[-1:]}")
    return trials / (time.perf_counter() - start) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep_throughput-"))
    pg_data = Path("/var/tmp") / f"{work.name}-pg"  # the postgres user must reach it (mkdtemp is 0700)
    env = {**os.environ, "TRPO_PG_DATA": str(pg_data), "TRPO_PG_PORT": str(free_port())}
    script = ["bash", str(ROOT / "scripts" / "local-postgres.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        sys.exit(f"sweep_throughput: PostgreSQL did not start: {started.stderr.strip()}")
    url = started.stdout.strip().splitlines()[-1]
    try:
        import psycopg

        results = {"sqlite, 1 worker": sweep(None, 1, args.trials, args.steps, work, "sqlite1")}
        for n in args.workers:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE bench{n}")
            results[f"postgresql, {n} worker(s)"] = sweep(url.rsplit("/", 1)[0] + f"/bench{n}", n, args.trials,
                                                          args.steps, work, f"pg{n}")
    finally:
        subprocess.run([*script, "stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pg_data, ignore_errors=True)
    base = results["sqlite, 1 worker"]
    print(f"{args.trials} trials x 1 seed x {args.steps} steps (trpo_cartpole), {os.cpu_count()} CPUs:")
    for name, rate in results.items():
        print(f"  {name:<26} {rate:8.0f} trials/h   ({rate / base:.2f}x sqlite)")


if __name__ == "__main__":
    main()
