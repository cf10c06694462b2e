"""A run whose env is stuck still obeys signals: a second SIGTERM (or Ctrl-C) ends it at once with
one line and a closed record, in either vector mode; a single one ends it with a checkpoint as soon
as the env moves again. The stuck env is tests/slow_env.py, released by the test."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import start_cli, wait_for
from trpo_exp import checkpoint

TESTS_DIR = str(Path(__file__).resolve().parent)


def start_stuck(tmp_path: Path, vector_mode: str) -> tuple[subprocess.Popen, Path, Path]:
    """A run whose env blocks in its second iteration; returns it with its gate and run dirs."""
    gate, run_dir = tmp_path / "gate", tmp_path / "run"
    gate.mkdir()
    proc = start_cli(["env.id=slow_env:Slow-v0", f"env.vector_mode={vector_mode}", "env.num_envs=2",
                      "algo.steps_per_iter=64", "total_steps=10000000", "logger=none", "checkpoint_interval_s=0"],
                     run_dir=run_dir, env={"PYTHONPATH": TESTS_DIR, "SLOW_ENV_DIR": str(gate)})
    metrics = run_dir / "metrics.csv"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2, "iteration 1", proc)
    (gate / "block").touch()
    wait_for(lambda: (gate / "blocked").exists(), "the env to block", proc)
    return proc, gate, run_dir


class StderrLines:
    """The lines a running process writes to stderr, read as they come (to wait for one)."""

    def __init__(self, proc: subprocess.Popen):
        assert proc.stderr is not None
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stderr.readline, "")), daemon=True)
        self.thread.start()

    def all(self) -> list[str]:
        self.thread.join(timeout=60)
        return [ln.rstrip("\n") for ln in self.lines if ln.strip()]


def first_stop_taken(proc: subprocess.Popen, gate: Path, vector_mode: str, stderr: StderrLines) -> None:
    """Send the first stop and wait until the run's handler has it: SIGTERM in sync mode (the env in
    this process sees it), Ctrl-C in async mode (its notice on stderr is the event)."""
    if vector_mode == "sync":
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: (gate / "stop_seen").exists(), "the first SIGTERM to be taken", proc)
    else:
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: any("Ctrl-C" in ln for ln in stderr.lines), "the Ctrl-C notice", proc)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.parametrize("vector_mode", ["sync", "async"])
def test_a_second_signal_ends_a_run_whose_env_is_stuck_with_one_line(tmp_path, vector_mode):
    """Before the fix an async vector env's close() waited for ever for the step it was stuck in."""
    proc, gate, run_dir = start_stuck(tmp_path, vector_mode)
    stderr = StderrLines(proc)
    try:
        first_stop_taken(proc, gate, vector_mode, stderr)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)  # a safety net: it ends at once, the env never moves again
    finally:
        proc.kill()
        (gate / "release").touch()
    lines = stderr.all()
    notice = ["Ctrl-C"] if vector_mode == "async" else []
    assert proc.returncode == 143 and len(lines) == 1 + len(notice), lines
    assert all(n in line for n, line in zip(notice, lines)) and "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith("trpo_exp: terminated by SIGTERM;") and "closed (status failed)" in lines[-1]
    info = record(run_dir)
    assert info["status"] == "failed" and info["reason"] == "terminated by SIGTERM", info


@pytest.mark.parametrize("vector_mode", ["sync", "async"])
def test_one_signal_while_the_env_is_stuck_checkpoints_once_it_moves(tmp_path, vector_mode):
    proc, gate, run_dir = start_stuck(tmp_path, vector_mode)
    stderr = StderrLines(proc)
    try:
        first_stop_taken(proc, gate, vector_mode, stderr)
        assert proc.poll() is None  # the first stop waits for the iteration's end
        (gate / "release").touch()
        proc.wait(timeout=300)
    finally:
        proc.kill()
    lines = stderr.all()
    code, name = (143, "terminated by SIGTERM") if vector_mode == "sync" else (130, "interrupted by Ctrl-C")
    assert proc.returncode == code and "Traceback" not in "\n".join(lines), lines
    assert lines[-1].startswith(f"trpo_exp: {name}") and "checkpoint saved" in lines[-1], lines
    info = record(run_dir)
    iteration = checkpoint.load(run_dir / "checkpoint.pt")["iteration"]
    # A stop with a checkpoint: its record's status may be "failed" or "preempted" (how app.py names it).
    assert info["status"] in ("failed", "preempted"), info
    assert f"after iteration {iteration} (checkpoint saved" in info["reason"], info
    assert iteration >= 2


# --- SLURM that does not answer: fake sbatch/squeue/sacct first on PATH, no cluster needed ----------

FAKE_SLURM = {
    "hung": {"sbatch": "sleep 100000"},  # a controller that never answers
    "refused": {"sbatch": "echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1"},
    "lost": {"sbatch": "echo 'Submitted batch job 4242'",  # accepted, then never shown
             "squeue": "exit 0", "sacct": "echo 'JobID|State|NodeList'"},
}


def multirun_with_fake_slurm(tmp_path: Path, case: str, bound: str) -> subprocess.CompletedProcess:
    import os

    from conftest import run_cli

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # srun and a controller that answers `scontrol ping`: what trpo_exp.precheck asks for first.
    tools = {"srun": "exit 0", "scontrol": "echo 'Slurmctld(primary) at here is UP'", **FAKE_SLURM[case]}
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return run_cli(["hydra/launcher=slurm", "env=cartpole", "seed=0,1", "total_steps=2048", "logger=none"],
                   sweep_dir=tmp_path / "sweep", check=False, timeout=300,  # a safety net: the bound is 2 s
                   env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TRPO_EXP_SBATCH_TIMEOUT_S": bound})


@pytest.mark.parametrize("case,needle", [
    ("hung", "trpo_exp: error: sbatch did not return within 2 s"),
    ("lost", "trpo_exp: error: SLURM job 4242_0 was submitted (sbatch gave its id) but squeue and sacct do not "
             "show it after 2 s"),
])
def test_a_slurm_that_does_not_answer_ends_the_multirun_with_one_line(tmp_path, case, needle):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = multirun_with_fake_slurm(tmp_path, case, "2")
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith(needle) and "TRPO_EXP_SBATCH_TIMEOUT_S" in lines[0], lines[0]


def test_a_refused_submission_is_one_line(tmp_path):
    """sbatch's own error, quoted in the one line (submitit echoed it on a line of its own first)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = multirun_with_fake_slurm(tmp_path, "refused", "2")
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0] == ("trpo_exp: error: SLURM refused the jobs: sbatch: error: invalid partition specified: nope "
                        "(no job was started)")


def test_a_bad_sbatch_bound_is_one_line(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = multirun_with_fake_slurm(tmp_path, "hung", "soon")
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0] == ("trpo_exp: error: TRPO_EXP_SBATCH_TIMEOUT_S='soon' is not allowed: "
                        "must be a number of seconds > 0")
