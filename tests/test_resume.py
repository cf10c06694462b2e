"""Runs survive any kill: a run killed at random points (random iteration and phase: sampling, the
update, writing the checkpoint or the record) and resumed by running the same command again ends
with metrics.csv, final evaluation and weights bit-identical to the same run never interrupted.

Each case is a chain: start, SIGKILL at a random point, run the same command again, kill it again,
..., and let the last one finish. Checkpoints are written after every iteration here
(checkpoint_interval_s tiny) so that kills also land while one is being written.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from conftest import assert_same_outcome, read_run_json, run_cli, start_cli, wait_for

CASES = {
    "pg-cartpole": ["algo=pg", "env=cartpole", "total_steps=20480", "algo.steps_per_iter=1024",
                    "eval.every=4", "eval.episodes=2"],
    "npg-pendulum": ["algo=npg", "env=pendulum", "total_steps=16384", "algo.steps_per_iter=1024",
                     "algo.fvp_subsample=0.3", "eval.every=3", "eval.episodes=1"],
    "trpo-hopper-sync": ["algo=trpo", "env=hopper", "total_steps=12288", "env.num_envs=2",
                         "algo.steps_per_iter=1024", "eval.every=4", "eval.episodes=1"],
    "trpo-hopper-async": ["algo=trpo", "env=hopper", "total_steps=12288", "env.num_envs=2",
                          "env.vector_mode=async", "algo.steps_per_iter=1024", "eval.every=4", "eval.episodes=1"],
    "vine-cartpole": ["algo=trpo_vine", "env=cartpole", "total_steps=12000", "algo.steps_per_iter=256",
                      "algo.vine.num_states=8", "algo.vine.rollout_len=10", "eval.every=3", "eval.episodes=1"],
}
KILLS_PER_CASE = 4
COMMON = ["seed=5", "logger=none", "checkpoint_interval_s=0.000001"]



def kill_at_random_point(args: list[str], run_dir: Path, rng: random.Random) -> None:
    """Start the run, wait until it has logged a random number of rows beyond what is on disk now
    (an event), then SIGKILL it after a short random delay: the phase it dies in is random. The
    runs are long enough (>= 10 iterations) that it never finishes first."""
    metrics = run_dir / "metrics.csv"
    rows_now = len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0
    target = rows_now + rng.randint(1, 2)
    proc = start_cli(args, run_dir=run_dir)
    try:
        wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) - 1 >= target,
                 f"{target} rows in {metrics}", proc)
        time.sleep(rng.uniform(0.0, 0.05))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, case):
    args = [*CASES[case], *COMMON]
    rng = random.Random(case)
    reference = tmp_path / "reference"
    run_cli(args, run_dir=reference)
    run_dir = tmp_path / "killed"
    for _ in range(KILLS_PER_CASE):
        kill_at_random_point(args, run_dir, rng)
        assert read_run_json(run_dir)["status"] == "running"  # killed: the record says so until resumed
    run_cli(args, run_dir=run_dir)

    info = read_run_json(run_dir)
    assert info["status"] == "finished" and info["resumes"], info
    assert_same_outcome(run_dir, reference)
    assert not list(run_dir.glob(".*.tmp")), "a killed write's temporary file was left behind"


def test_a_custom_env_without_snapshots_checkpoints_and_resumes_single_path(tmp_path):
    """A user's plain gymnasium.Env (no simulator snapshot): single-path runs checkpoint without
    env states; a resume starts new episodes (a warning says it is not bit-identical) and finishes."""
    tests_dir = str(Path(__file__).resolve().parent)
    args = ["env.id=plain_env:Drift-v0", "env.num_envs=2", "algo.steps_per_iter=256", "total_steps=8192",
            "eval.episodes=1", *COMMON]
    run_dir = tmp_path / "run"
    proc = start_cli(args, run_dir=run_dir, env={"PYTHONPATH": tests_dir})
    metrics = run_dir / "metrics.csv"
    try:
        wait_for(lambda: (run_dir / "checkpoint.pt").exists() and metrics.exists()
                 and len(metrics.read_text().splitlines()) > 3, "3 rows and a checkpoint", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = run_cli(args, run_dir=run_dir, env={"PYTHONPATH": tests_dir})
    info = read_run_json(run_dir)
    assert info["status"] == "finished" and info["env_steps"] == 8192 and info["resumes"], info.get("reason")
    assert "no snapshot support" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_vine_with_a_custom_env_without_snapshots_is_refused_at_start(tmp_path):
    tests_dir = str(Path(__file__).resolve().parent)
    result = run_cli(["algo=trpo_vine", "env.id=plain_env:Drift-v0", "logger=none"], run_dir=tmp_path / "run",
                     env={"PYTHONPATH": tests_dir}, check=False)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "algo=trpo_vine is not allowed with env.id='plain_env:Drift-v0'" in lines[0]
