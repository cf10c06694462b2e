"""A sweep worker that dies or is stopped mid-trial (sweeps/study.py, sweeps/recovery.py): real
sweeps, real processes, no mocks.

1. SIGTERM, then the same command: the retried trial resumes its runs from their checkpoints (same
   run dirs: they are keyed by slot) and the sweep ends with n_trials COMPLETE trials.
2. SIGKILL with sweep.max_retries=0: the trial is failed and not retried, which the output says in
   one line and the summary counts; the record its dead worker left "running" is closed as failed.
3. The sweep's end closes such records of failed trials that no retry took over, and only those
   whose process is dead.

A run is held at its 2nd iteration by the Gate hook below until the test lets it go, so the worker
is stopped while the run certainly trains, however fast or slow the machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_sweeps import FAST_HEARTBEAT, load, states, sweep_args

from conftest import metrics_row_count, read_run_json, run_cli, start_cli, wait_for

TESTS_ON_PATH = {"PYTHONPATH": str(Path(__file__).resolve().parent)}  # for the runs' Gate hook
KILLED = "the sweep worker running it was killed"


class Gate:
    """Training hook (``+hooks.gate``): holds the run after its iteration ``at`` until the file
    ``release`` exists. Every run of the sweep gets it; once released, it holds none."""

    def __init__(self, release: str, at: int = 2):
        self.release, self.at = Path(release), at

    def __call__(self, row: dict) -> None:
        while row["iteration"] >= self.at and not self.release.exists():
            time.sleep(0.01)  # polls for the test's event; a signal is handled meanwhile


def gate(release: Path) -> list[str]:
    return [f"+hooks.gate._target_={__name__}.Gate", f"+hooks.gate.release='{release}'"]


def held(run_dir: Path, proc: subprocess.Popen) -> None:
    """Wait until the run is held by the Gate, training (its 2nd metrics row is written)."""
    wait_for(lambda: metrics_row_count(run_dir) >= 2, f"2 metrics rows in {run_dir}", proc)


def test_retried_trial_resumes_its_runs_from_their_checkpoints(tmp_path):
    sweep_dir, release = tmp_path / "sweep", tmp_path / "release"
    args = sweep_args(sweep_dir, "sweep.n_trials=2", "sweep.pruner.name=none", "sweep.report_seeds=0", *gate(release))
    proc = start_cli(args, module="sweeps", env=TESTS_ON_PATH)
    run = sweep_dir / "trials" / "0000" / "s0"
    held(run, proc)
    proc.send_signal(signal.SIGTERM)
    release.touch()  # the run ends its iteration, saves a checkpoint and stops
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "trial 0 is re-queued" in err, err
    assert read_run_json(run)["status"] == "preempted" and (run / "checkpoint.pt").exists()

    rerun = run_cli(args, module="sweeps", env=TESTS_ON_PATH, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = load(sweep_dir).trials
    assert states(load(sweep_dir)) == {"COMPLETE": 2, "FAIL": 1}
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[0].params
    assert retry.user_attrs["run_dirs"] == trials[0].user_attrs["run_dirs"]  # its slot's dirs
    info = read_run_json(run)
    assert info["status"] == "finished" and len(info["resumes"]) == 1, info
    assert info["resumes"][0]["from_iteration"] >= 2 and info["resumes"][0]["after_status"] == "preempted"
    assert sorted(p.parent.name for p in (sweep_dir / "trials").glob("*/s0")) == ["0000", "0001"]


@pytest.mark.parametrize("journal", [False, True], ids=["sqlite", "journal"])
def test_killed_worker_without_retries_is_reported_and_its_record_closed(tmp_path, journal):
    """SQLite: Optuna's heartbeat fails the trial; a journal file: the sweep's own lease."""
    sweep_dir, release = tmp_path / "sweep", tmp_path / "release"
    storage = [f"sweep.storage=journal:{tmp_path / 'journal.log'}"] if journal else []
    args = sweep_args(sweep_dir, "sweep.n_trials=2", "sweep.seeds=1", "sweep.report_seeds=0", "sweep.max_retries=0",
                      "sweep.pruner.name=none", *FAST_HEARTBEAT, *storage, *gate(release))
    proc = start_cli(args, module="sweeps", env=TESTS_ON_PATH)
    run = sweep_dir / "trials" / "0000" / "s0"
    held(run, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    assert read_run_json(run)["status"] == "running"  # what the killed worker leaves
    release.touch()

    rerun = run_cli(args, module="sweeps", env=TESTS_ON_PATH, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    lines = [line for line in rerun.stdout.splitlines() if "not retried" in line]
    assert len(lines) == 2, rerun.stdout  # the trial's line, and the summary
    assert lines[0].startswith("sweeps: trial 0 (slot 0) FAILED and is not retried: no heartbeat from its worker")
    assert lines[0].endswith("sweep.max_retries=0 means no retry")
    assert lines[1].startswith("sweeps: trials ") and "1 failed and not retried" in lines[1]
    assert "trial 0 (slot 0)" in lines[1]
    info = read_run_json(run)
    assert info["status"] == "failed" and info["reason"] == KILLED and info["exit_code"] is None
    study = load(sweep_dir, storage=storage[0].split("=", 1)[1] if storage else None)
    assert states(study) == {"COMPLETE": 1, "FAIL": 1}


def _record(run_dir: Path, status: str, pid: int) -> Path:
    run_dir.mkdir(parents=True)
    progress = {"iteration": 2, "env_steps": 1024, "updated_at": "2020-01-01T00:00:00+00:00", "pid": pid,
                "host": socket.gethostname()}
    (run_dir / "run.json").write_text(json.dumps({"status": status, "seed": 0, "progress": progress}))
    return run_dir


def test_sweep_end_closes_only_dead_running_records_of_failed_trials(tmp_path):
    from sweeps.recovery import close_dead_runs_of_failed_trials

    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid: a process that is gone
    dead = _record(tmp_path / "dead", "running", finished.pid)
    alive = _record(tmp_path / "alive", "running", os.getpid())
    done = _record(tmp_path / "done", "finished", finished.pid)
    other = _record(tmp_path / "other", "running", finished.pid)  # of a trial that did not fail
    retried = _record(tmp_path / "retried", "running", finished.pid)  # its retry's to resume
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    for state, dirs in ((TrialState.FAIL, [dead, alive, done]), (TrialState.COMPLETE, [other]),
                        (TrialState.FAIL, [retried])):
        trial = study.ask()
        trial.set_user_attr("run_dirs", [str(d) for d in dirs])
        study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"retry_history": [2]}))

    assert close_dead_runs_of_failed_trials(study) == [str(dead)]
    closed = read_run_json(dead)
    assert closed["status"] == "failed" and closed["reason"] == KILLED and closed["seed"] == 0
    assert [read_run_json(d)["status"] for d in (alive, done, other, retried)] == [
        "running", "finished", "running", "running"]
    assert not list(tmp_path.glob("*/.*.tmp"))
