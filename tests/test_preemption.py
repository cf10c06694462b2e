"""Preemption without a cluster: a run stopped right after its checkpoint is closed as "preempted"
(it resumes), with W&B on or off, whether the stop is SIGTERM or a job manager's SIGUSR1 handler that
requeues the job and exits (as submitit's does under Hydra's submitit launcher; simulated here by a
wrapper that installs such a handler before the CLI starts). tests/test_slurm.py does the same on a
real SLURM cluster.

Waits are on events (rows, files, processes), never on fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Optional

import torch

from conftest import (
    ROOT,
    child_of,
    cli_command,
    cli_env,
    metrics_row_count,
    read_run_json,
    run_cli,
    start_cli,
    wait_for,
)

# About 20 short iterations: room for a stop after a few rows and a resumed tail.
ARGS = ["env=cartpole", "env.num_envs=2", "algo.steps_per_iter=512", "total_steps=10240", "eval.every=100",
        "eval.episodes=1", "checkpoint_interval_s=3600", "logger=wandb"]

# submitit's SIGUSR1 handler, in short: requeue the job, then sys.exit(-1).
REQUEUING_JOB = """
import runpy, signal, sys

def requeue(signum, frame):
    print("job requeued", file=sys.stderr, flush=True)
    sys.exit(-1)

signal.signal(signal.SIGUSR1, requeue)
sys.argv = ["trpo_exp", *sys.argv[1:]]
runpy.run_module("trpo_exp", run_name="__main__", alter_sys=True)
"""


def start_requeuing_job(args: list[str], run_dir: Path) -> subprocess.Popen:
    python, _, _, *rest = cli_command(args, run_dir=run_dir)  # [python, -m, trpo_exp, *overrides]
    return subprocess.Popen([python, "-c", REQUEUING_JOB, *rest], cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wandb_service_of(pid: int) -> Optional[int]:
    """The pid of the run's W&B service (wandb-core, a child of the run's process), if it runs."""
    return child_of(pid, b"wandb")


def info_of(run_dir: Path) -> dict:
    try:
        return read_run_json(run_dir)
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}


def checkpoint_iteration(run_dir: Path) -> int:
    return int(torch.load(run_dir / "checkpoint.pt", weights_only=True)["iteration"])


def assert_no_traceback(proc: subprocess.Popen, out: str, err: str) -> None:
    """No traceback, and W&B's failure (if any) is one warning line."""
    both = out + err
    assert "Traceback" not in both and "Exception ignored" not in both, both[-3000:]
    wandb_lines = [line for line in both.splitlines() if "ConnectionResetError" in line or "W&B" in line]
    assert len(wandb_lines) <= 1, wandb_lines


def test_sigterm_after_a_checkpoint_closes_the_record_as_preempted(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(ARGS, run_dir=run_dir)
    wait_for(lambda: metrics_row_count(run_dir) >= 2, "2 rows", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert_no_traceback(proc, out, err)
    assert err.strip().endswith("is closed (status preempted)"), err
    info = read_run_json(run_dir)
    assert info["status"] == "preempted" and info["exit_code"] == 143, info
    assert info["reason"].startswith("terminated by SIGTERM after iteration"), info["reason"]
    assert checkpoint_iteration(run_dir) == metrics_row_count(run_dir) >= 2


def test_a_requeue_with_wandbs_service_killed_is_preempted_without_a_traceback(tmp_path):
    """SLURM's signal reaches every process of the job, W&B's service too: it dies. The run still
    checkpoints, closes its record as preempted, hands the signal on to the requeue handler, and W&B's
    failure is at most one warning line."""
    run_dir = tmp_path / "run"
    proc = start_requeuing_job(ARGS, run_dir)
    wait_for(lambda: metrics_row_count(run_dir) >= 2 and wandb_service_of(proc.pid) is not None,
             "2 rows and W&B's service", proc)
    service = wandb_service_of(proc.pid)
    assert service is not None
    os.kill(service, signal.SIGKILL)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 255 and "job requeued" in err, (out + err)[-3000:]
    assert_no_traceback(proc, out, err)
    info = read_run_json(run_dir)
    assert info["status"] == "preempted", info
    assert info["reason"].startswith("requeued by the job manager (SIGUSR1) after iteration"), info["reason"]
    assert checkpoint_iteration(run_dir) == metrics_row_count(run_dir) >= 2
    # The requeued job (here: the same command) resumes from that checkpoint and finishes.
    resumed_from = checkpoint_iteration(run_dir)
    run_cli(ARGS, run_dir=run_dir)
    info = read_run_json(run_dir)
    assert info["status"] == "finished" and info["resumes"][-1]["from_iteration"] == resumed_from, info
    assert info["resumes"][-1]["after_status"] == "preempted"


def test_a_stop_during_wandb_start_up_keeps_the_checkpoint_and_the_rerun_resumes_from_it(tmp_path):
    run_dir = tmp_path / "run"
    first = start_cli(ARGS, run_dir=run_dir)
    wait_for(lambda: metrics_row_count(run_dir) >= 2, "2 rows", first)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert first.returncode == 143 and read_run_json(run_dir)["status"] == "preempted"
    saved = checkpoint_iteration(run_dir)
    checkpoint_bytes = (run_dir / "checkpoint.pt").read_bytes()

    # The resumed process has started (its record lists the resume) and starts W&B: stop it there.
    second = start_cli(ARGS, run_dir=run_dir)
    wait_for(lambda: len(info_of(run_dir).get("resumes", [])) == 1, "the resume in run.json", second)
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 143, (out + err)[-3000:]
    assert_no_traceback(second, out, err)
    info = read_run_json(run_dir)
    assert info["status"] in ("failed", "preempted") and info["reason"].startswith("terminated by SIGTERM"), info
    assert (run_dir / "checkpoint.pt").read_bytes() == checkpoint_bytes  # not touched
    assert metrics_row_count(run_dir) == saved

    run_cli(ARGS, run_dir=run_dir)
    info = read_run_json(run_dir)
    assert info["status"] == "finished", info
    assert [r["from_iteration"] for r in info["resumes"]] == [saved, saved], info["resumes"]
    assert info["iterations"] == 20 and metrics_row_count(run_dir) == 20
    assert info["resumes"][1]["after_reason"].startswith("terminated by SIGTERM")
