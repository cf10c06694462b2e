"""No record is silently lost, overwritten or poisoned: a run dir is claimed by one process, a
finished record is never overwritten (fresh=true moves it aside), a resume with another config is
refused naming the keys, non-finite numbers stop the run with a reason, checkpoints are atomic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import read_run_json, run_cli, start_cli, wait_for
from trpo_exp import checkpoint

TINY = ["env=cartpole", "total_steps=2048", "algo.steps_per_iter=512", "eval.episodes=1", "logger=none"]


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_finished_record_is_refused_then_kept_aside_with_fresh(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(TINY, run_dir=run_dir)
    before = (run_dir / "metrics.csv").read_bytes(), (run_dir / ".hydra" / "config.yaml").read_bytes()
    again = run_cli([*TINY, "seed=1"], run_dir=run_dir, check=False)
    assert again.returncode == 2
    assert "holds a finished run" in one_line_error(again) and "fresh=true" in again.stderr
    assert ((run_dir / "metrics.csv").read_bytes(), (run_dir / ".hydra" / "config.yaml").read_bytes()) == before
    run_cli([*TINY, "fresh=true"], run_dir=run_dir)
    kept = list(run_dir.glob("previous-*"))
    assert len(kept) == 1 and (kept[0] / "metrics.csv").read_bytes() == before[0]
    assert read_run_json(run_dir)["previous_record"] == str(kept[0])


def test_resuming_with_another_config_is_refused_naming_the_keys(tmp_path):
    run_dir = tmp_path / "run"
    args = ["env=cartpole", "total_steps=10000000", "logger=none", "checkpoint_interval_s=0"]
    proc = start_cli(args, run_dir=run_dir)
    metrics = run_dir / "metrics.csv"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3, "two rows", proc)
    proc.terminate()
    proc.communicate(timeout=60)
    rows, hydra = metrics.read_bytes(), hydra_files(run_dir)
    refused = run_cli([*args, "algo.max_kl=0.02", "algo.gamma=0.95"], run_dir=run_dir, check=False)
    line = one_line_error(refused)
    assert refused.returncode == 2 and "algo.max_kl was 0.01, now 0.02" in line and "algo.gamma" in line
    assert metrics.read_bytes() == rows and read_run_json(run_dir)["status"] == "preempted"
    assert hydra_files(run_dir) == hydra  # analysis labels the run from .hydra/: still max_kl 0.01
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 damaged")
    damaged = run_cli([*args, "algo.max_kl=0.02"], run_dir=run_dir, check=False)
    assert damaged.returncode != 0 and hydra_files(run_dir) == hydra


def hydra_files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / ".hydra").iterdir())}


def test_two_processes_cannot_share_a_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    args = ["env=cartpole", "total_steps=10000000", "logger=none"]
    first = start_cli(args, run_dir=run_dir)
    wait_for(lambda: (run_dir / "metrics.csv").exists(), "the first run to start", first)
    hydra = hydra_files(run_dir)
    second = run_cli([*args, "seed=1"], run_dir=run_dir, check=False)
    first.kill()
    first.wait()
    assert second.returncode == 2 and "is in use by pid" in one_line_error(second)
    assert hydra_files(run_dir) == hydra  # the live run's config, not the refused command's


def test_default_run_dirs_of_simultaneous_runs_differ(tmp_path):
    procs = [start_cli(TINY, cwd=tmp_path) for _ in range(2)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    assert len(list(tmp_path.glob("runs/*/*/run.json"))) == 2


@pytest.mark.parametrize("env_id,reason", [
    ("nan_env:NanReward-v0", "iteration 2: reward is NaN in env 0"),
    ("nan_env:NanObs-v0", "iteration 2: observation is NaN in env 0"),
])
def test_non_finite_numbers_stop_the_run_with_a_reason_and_keep_the_last_good_checkpoint(tmp_path, env_id,
                                                                                          reason):
    run_dir = tmp_path / "run"
    tests_dir = str(Path(__file__).resolve().parent)
    result = run_cli([f"env.id={env_id}", "env.num_envs=1", "algo.steps_per_iter=32", "total_steps=4096",
                      "logger=none", "checkpoint_interval_s=0.000001"], run_dir=run_dir, check=False,
                     env={"PYTHONPATH": tests_dir})
    info = json.loads((run_dir / "run.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert result.returncode == 1 and info["status"] == "failed", result.stderr[-2000:]
    assert info["reason"].startswith(reason), info["reason"]
    assert one_line_error(result).startswith(f"trpo_exp: error: {reason}")
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 2  # iteration 1 only
    state = checkpoint.load(run_dir / "checkpoint.pt")
    assert state["iteration"] == 1 and torch.isfinite(state["obs_normalizer"]["mean"]).all()


@pytest.mark.parametrize("override", ["algo.log_std_init=nan", "algo.lr=inf", "algo.max_kl=inf",
                                      "+algo.max_kll=0.5", "seed=4294967296", "torch_threads=100000",
                                      "algo.hidden_sizes=[100000,100000]", "env.id=Blackjack-v1",
                                      "algo.log_std_init=1e6", "+env.kwargs.max_episode_steps=-1"])
def test_values_that_would_crash_later_are_refused_at_start(tmp_path, override):
    algo = "algo=pg" if "lr=" in override else "algo=npg" if "max_kl=" in override else "algo=trpo"
    result = run_cli([algo, override, "logger=none"], run_dir=tmp_path / "run", check=False)
    key = override.lstrip("+").split("=")[0]
    assert result.returncode == 2 and key in one_line_error(result), result.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"iteration": 1, "w": torch.ones(3)})

    def torn_save(obj, f):  # the process dies half-way through writing
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"iteration": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = checkpoint.load(path)
    assert state["iteration"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    path.write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="unreadable"):
        checkpoint.load(path)


def test_env_states_refuse_classes_outside_the_allow_list():
    class Payload:
        def __reduce__(self):
            return (print, ("this must not run",))

    with pytest.raises(checkpoint.CheckpointError, match="not allowed"):
        checkpoint.unpack(checkpoint.pack(Payload()))
    assert math.isfinite(1.0)


def test_a_multirun_checks_every_job_before_the_first_starts(tmp_path):
    sweep = tmp_path / "multirun"
    result = run_cli(["algo.max_kl=0.01,-1,0.02", *TINY], sweep_dir=sweep, check=False)
    line = one_line_error(result)
    assert result.returncode == 2 and line.startswith("trpo_exp: error: job 1 of 3 (algo.max_kl=-1")
    assert "no job was started" in line and not list(tmp_path.rglob("metrics.csv"))


def test_a_stopped_run_whose_lock_was_deleted_keeps_its_run_dir(tmp_path):
    """The lock rule holds without the lock file: run A is stopped (SIGSTOP) and its .lock deleted;
    a second process is refused in one line (run.json names A, alive), and A, continued, finishes."""
    import os
    import signal

    run_dir = tmp_path / "run"
    args = ["env=cartpole", "total_steps=8192", "algo.steps_per_iter=512", "eval.episodes=1", "logger=none",
            "checkpoint_interval_s=0.000001"]
    first = start_cli(args, run_dir=run_dir)
    wait_for(lambda: (run_dir / "checkpoint.pt").exists() and read_progress(run_dir) >= 2, "2 iterations", first)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        (run_dir / ".lock").unlink()
        second = run_cli(args, run_dir=run_dir, check=False)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2 and f"in use by pid {first.pid}" in one_line_error(second)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    assert read_run_json(run_dir)["status"] == "finished"


def test_a_record_taken_over_by_another_process_is_never_written_again(tmp_path):
    """Ownership is checked before every write: once run.json names another owner (a second process
    took the dir), this process's rows, run.json and checkpoints are refused, and its close writes
    nothing."""
    from trpo_exp.record import RecordTakenOver, RunRecord

    record = RunRecord(tmp_path, {"name": "a"})
    record.log({"iteration": 1, "env_steps": 10})
    other = {**json.loads((tmp_path / "run.json").read_text()), "owner": "someone-else"}
    (tmp_path / "run.json").write_text(json.dumps(other))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RecordTakenOver, match="taken over by another process"):
        record.log({"iteration": 2, "env_steps": 20})
    with pytest.raises(RecordTakenOver):
        record.update(note="x")
    record.fail("stopped")  # the close of a run whose record is not its own any more: no write
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def read_progress(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "run.json").read_text())["progress"]["iteration"] or 0)
    except (OSError, ValueError, KeyError):
        return 0


def test_unusable_run_dirs_and_checkpoints_are_one_line(tmp_path):
    """A run dir that is a file; a resume whose metrics.csv was deleted, whose checkpoint lacks its
    config or holds tensors of other shapes: one line each, never a traceback."""
    import shutil
    import signal

    args = ["env=cartpole", "total_steps=100000", "algo.steps_per_iter=512", "logger=none",
            "checkpoint_interval_s=0.000001"]
    killed = tmp_path / "killed"
    proc = start_cli(args, run_dir=killed)
    wait_for(lambda: (killed / "checkpoint.pt").exists() and read_progress(killed) >= 2, "a checkpoint", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed / ".lock").unlink()
    cases = {name: tmp_path / name for name in ("no-metrics", "no-config", "shapes")}
    for path in cases.values():
        shutil.copytree(killed, path)
    (cases["no-metrics"] / "metrics.csv").unlink()
    state = checkpoint.load(cases["no-config"] / "checkpoint.pt")
    checkpoint.save(cases["no-config"] / "checkpoint.pt", {k: v for k, v in state.items() if k not in ("config", "format")})
    state = checkpoint.load(cases["shapes"] / "checkpoint.pt")
    first = next(iter(state["policy"]))
    state["policy"][first] = torch.zeros(3, 3)
    checkpoint.save(cases["shapes"] / "checkpoint.pt", {k: v for k, v in state.items() if k != "format"})
    (tmp_path / "a-file").write_text("not a dir")
    expected = {"no-metrics": "holds 0 rows", "no-config": "holds no config", "shapes": "does not fit this run",
                "a-file": "cannot be made: File exists"}
    for name, needle in expected.items():
        result = run_cli(args, run_dir=tmp_path / name, check=False)
        assert result.returncode in (1, 2) and needle in one_line_error(result), (name, result.stderr[-2000:])
