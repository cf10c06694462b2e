"""Throughput benchmark: raw env step rate vs. end-to-end TRPO training rate, and peak memory.

What is measured, per repeat (raw and training runs alternate, so machine noise hits both alike):

* raw     - steps/s of one ``gym.make(env_id, disable_env_checker=True)`` env driven by uniformly
            random actions (pre-sampled from a seeded action space), resetting on
            termination/truncation. Only the step/reset loop is timed.
* train   - the real CLI (``python -m trpo_exp algo=trpo env=<preset> torch_threads=1 ...``) in a
            subprocess. From its metrics.csv: training steps/s = env steps /
            (sum time_sample_s + sum time_update_s), i.e. evaluation and start-up are excluded;
            also the sampling/update split and the sampling-only rate.
* memory  - peak RSS of the training subprocess, from ``os.wait4`` on its pid (per-child rusage).

Medians over the repeats are printed with the ratio training/raw (target >= 0.8 at 1 torch thread)
and peak RSS (target < 1024 MB), each followed by a "target met" / "target NOT met" line.

Run from the repository root:

    python benchmarks/throughput.py                          # hopper, 3 repeats, 20480 steps
    python benchmarks/throughput.py --env swimmer --repeats 5 --override env.num_envs=4
    python benchmarks/throughput.py --override value_fit_process=true   # the value fit beside sampling

With value_fit_process=true the rows' time_update_s holds only the time the main process waits for
the value fit, so the training rate above is still env steps per second of training wall time.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 0.8  # issue 14: training >= 0.8x the raw single-env rate, numbers unchanged
RSS_TARGET_MB = 1024.0


def env_id_of(preset: str) -> str:
    path = ROOT / "conf" / "env" / f"{preset}.yaml"
    if not path.exists():
        presets = sorted(p.stem for p in (ROOT / "conf" / "env").glob("*.yaml"))
        sys.exit(f"throughput: unknown env preset {preset!r} (choose from {', '.join(presets)})")
    return OmegaConf.load(path).id


def raw_rate(env_id: str, steps: int, seed: int) -> float:
    """Random-action steps/s of a single env, resets included."""
    env = gym.make(env_id, disable_env_checker=True)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - t0
    env.close()
    return steps / elapsed


def train_run(preset: str, steps: int, overrides: list[str]) -> dict:
    """One CLI training run in a subprocess; rates from its metrics.csv, peak RSS from wait4."""
    with tempfile.TemporaryDirectory(prefix="trpo_bench_") as tmp:
        cmd = [sys.executable, "-m", "trpo_exp", "algo=trpo", f"env={preset}", f"total_steps={steps}",
               "eval.every=0", "eval.episodes=1", "torch_threads=1", f"hydra.run.dir={tmp}", *overrides]
        out_path, err_path = Path(tmp) / "bench_stdout.txt", Path(tmp) / "bench_stderr.txt"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        if proc.returncode != 0:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-5:]
            sys.exit(f"throughput: training subprocess failed (exit {proc.returncode}): "
                     + " | ".join(tail))
        with open(Path(tmp) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    env_steps = int(rows[-1]["env_steps"])
    sample = sum(float(r["time_sample_s"]) for r in rows)
    update = sum(float(r["time_update_s"]) for r in rows)
    return {"steps": env_steps, "train": env_steps / (sample + update), "sample_rate": env_steps / sample,
            "sample_share": sample / (sample + update), "update_share": update / (sample + update),
            "rss_mb": usage.ru_maxrss / 1024}  # Linux reports ru_maxrss in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper", help="env preset name under conf/env (default hopper)")
    parser.add_argument("--steps", type=int, default=20480, help="training total_steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raw-steps", type=int, default=20000, help="random-action steps per raw run")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    args = parser.parse_args()
    env_id = env_id_of(args.env)

    print(f"env={args.env} ({env_id})  train steps={args.steps}  raw steps={args.raw_steps}  "
          f"repeats={args.repeats}  overrides={args.override or '-'}  cpus={os.cpu_count()}")
    header = (f"{'rep':>3} {'raw st/s':>9} {'train st/s':>10} {'ratio':>6} {'sample st/s':>11} "
              f"{'sample%':>7} {'update%':>7} {'peak RSS MB':>11}")
    print(header)
    results = []
    for rep in range(args.repeats):
        raw = raw_rate(env_id, args.raw_steps, seed=rep)
        run = train_run(args.env, args.steps, args.override)
        run.update(raw=raw, ratio=run["train"] / raw)
        results.append(run)
        print(f"{rep:>3} {raw:>9.0f} {run['train']:>10.0f} {run['ratio']:>6.3f} {run['sample_rate']:>11.0f} "
              f"{100 * run['sample_share']:>7.1f} {100 * run['update_share']:>7.1f} {run['rss_mb']:>11.1f}",
              flush=True)

    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"med {med['raw']:>9.0f} {med['train']:>10.0f} {med['ratio']:>6.3f} {med['sample_rate']:>11.0f} "
          f"{100 * med['sample_share']:>7.1f} {100 * med['update_share']:>7.1f} {med['rss_mb']:>11.1f}")
    print(f"median ratio training/raw = {med['ratio']:.3f} (median of per-repeat ratios; "
          f"target >= {RATIO_TARGET}): target {'met' if med['ratio'] >= RATIO_TARGET else 'NOT met'}")
    peak = max(r["rss_mb"] for r in results)
    print(f"peak RSS of one training run = {med['rss_mb']:.1f} MB median, {peak:.1f} MB max "
          f"(target < {RSS_TARGET_MB:.0f} MB): target {'met' if peak < RSS_TARGET_MB else 'NOT met'}")


if __name__ == "__main__":
    main()
