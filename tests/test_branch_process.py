"""branch_processes=N (vine branches stepped by N - 1 worker processes besides the main one,
issue 12) changes no number: metrics, final evaluation and weights are bit-identical to stepping
every branch in the main process, for continuous (MuJoCo snapshots sent to the workers) and
enumerated discrete actions. A dead worker fails the run with one line instead of hanging it.

The in-process runs wait for the workers to start before training, and count the chunks each
worker was sent, so a run in which the workers did nothing cannot pass."""

from __future__ import annotations

import pickle
import signal
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import (
    assert_same_outcome,
    assert_same_run,
    kill_worker_of_cli_run,
    metrics_row_count,
    metrics_rows,
    read_run_json,
    run_cli,
    start_cli,
    wait_for,
    worker_of,
)
from trpo_exp.app import CONF_DIR, to_config
from trpo_exp.config import ConfigError, register_configs
from trpo_exp.engine import CheckpointSchedule, Trainer
from trpo_exp.record import RunRecord
from trpo_exp.rollout.branch_process import BranchWorkers

# 8 states x 4 actions in chunks of 8 branches: 4 chunks per iteration, shared [2, 1, 1] by 3 processes.
CASES = {
    "vine-hopper": ["algo=trpo_vine", "env=hopper", "total_steps=3000", "env.num_envs=2", "algo.steps_per_iter=256",
                    "algo.vine.num_states=8", "algo.vine.rollout_len=10", "algo.vine.branch_batch=8",
                    "eval.every=2", "eval.episodes=1"],
    # CartPole's 2 actions are enumerated: 8 states x 2 branches in chunks of 4 branches
    "vine-cartpole": ["algo=trpo_vine", "env=cartpole", "total_steps=3000", "algo.steps_per_iter=256",
                      "algo.vine.num_states=8", "algo.vine.rollout_len=10", "algo.vine.branch_batch=4",
                      "eval.every=2", "eval.episodes=1"],
}
COMMON = ["seed=3", "logger=none", "checkpoint_interval_s=0"]


def train_in_process(overrides: list[str], run_dir: Path) -> list[int]:
    """Train as trpo_exp.app does; returns the chunks sent to each worker (empty: no workers)."""
    register_configs()
    GlobalHydra.instance().clear()  # an in-process sweep of an earlier test may hold it
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        config = to_config(compose("config", overrides=overrides))
    trainer = Trainer(config, run_dir)
    workers = trainer.estimator.brancher.workers  # type: ignore[attr-defined]  # the vine estimator's
    sent: list[int] = []
    try:
        if workers is not None:
            assert isinstance(workers, BranchWorkers)
            wait_for(lambda: all(worker.ready() for worker in workers._workers), "the branch processes to start")
            sent = [0] * len(workers._workers)
            for i, worker in enumerate(workers._workers):
                def counted(request: bytes, send=worker.send, i=i) -> None:
                    sent[i] += len(pickle.loads(request)["jobs"])
                    send(request)
                worker.send = counted  # type: ignore[method-assign]
        trainer.train(RunRecord(run_dir, {}), checkpoints=CheckpointSchedule(config.checkpoint_interval_s, None))
    finally:
        trainer.close()
    if workers is not None:
        for worker in workers._workers:
            assert worker.exitcode == 0, "each worker ended when told to, by Trainer.close()"
    return sent


@pytest.mark.parametrize("case", sorted(CASES))
def test_branch_processes_change_no_number(tmp_path, case):
    here, there = tmp_path / "one", tmp_path / "three"
    assert train_in_process([*CASES[case], *COMMON, "branch_processes=1"], here) == []
    sent = train_in_process([*CASES[case], *COMMON, "branch_processes=3"], there)
    assert_same_run(there, here)
    iterations = len(metrics_rows(there)) - 1  # the last, shorter batch takes no step: no branches
    assert sent == [iterations, iterations], "each worker stepped one of the 4 chunks of every iteration"


def test_branch_processes_are_refused_where_nothing_branches():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        with pytest.raises(ConfigError, match=r"branch_processes=2 .*must be 1 with algo=trpo \(only vine"):
            to_config(compose("config", overrides=["algo=trpo", "branch_processes=2"]))


def test_a_killed_branch_process_fails_the_cli_run_with_one_line(tmp_path):
    args = [*CASES["vine-cartpole"], *COMMON, "total_steps=10000000", "branch_processes=2"]
    worker, line, info = kill_worker_of_cli_run(args, tmp_path / "run")
    assert f"a vine branch process (branch_processes=2, pid {worker}) was killed by SIGKILL" in line, line
    assert info["status"] == "failed", info
    assert f"pid {worker}) was killed by SIGKILL (the last good checkpoint is kept)" in info["reason"], info


def test_a_killed_run_resumes_with_another_process_count_to_the_same_end(tmp_path):
    """SIGKILL of the main process mid-run (its worker ends on its own: the pipe closes), then the
    same command with branch_processes=1 finishes it: bit-identical to an uninterrupted run with
    one process (the count is free across a resume, like value_fit_process)."""
    args = [*CASES["vine-hopper"], *COMMON, "total_steps=8000", "checkpoint_interval_s=0.000001"]
    reference, run_dir = tmp_path / "reference", tmp_path / "killed"
    run_cli([*args, "branch_processes=1"], run_dir=reference)
    proc = start_cli([*args, "branch_processes=2"], run_dir=run_dir)
    try:
        wait_for(lambda: metrics_row_count(run_dir) >= 3 and worker_of(proc.pid) is not None, "3 rows and the worker", proc)
        worker = worker_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert worker is not None
    wait_for(lambda: not Path(f"/proc/{worker}").exists() or b"Z" in _state(worker), "the orphaned worker to end")
    assert read_run_json(run_dir)["status"] == "running"
    run_cli([*args, "branch_processes=1"], run_dir=run_dir)
    assert read_run_json(run_dir)["resumes"]
    assert_same_outcome(run_dir, reference)


def _state(pid: int) -> bytes:
    """The process state letter from /proc/<pid>/stat (Z: a zombie, i.e. ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return b"Z"
