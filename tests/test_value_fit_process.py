"""value_fit_process=true (the value fit in a second process while the next batch is sampled,
issue 14 item 5) changes no number: metrics, weights, optimizer and RNG states are bit-identical to
the fit in the main process; a run preempted by SIGTERM (sent to the worker too) resumes to the
same end; a hook's StopRun leaves whole rows; a dead worker fails the run with one line instead of
hanging it.

The in-process runs wait for the worker to start before training, so that every fit but the last
one's overlaps sampling, and they count the fits submitted to it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import assert_same_run, kill_worker_of_cli_run, metrics_rows, wait_for, worker_of
from trpo_exp import checkpoint
from trpo_exp.app import CONF_DIR, to_config
from trpo_exp.config import register_configs
from trpo_exp.engine import CheckpointSchedule, StopRun, Trainer
from trpo_exp.hooks import Hook
from trpo_exp.record import CHECKPOINT, RunRecord, Status
from trpo_exp.signals import RunSignals, Terminated
from trpo_exp.value_process import ValueFitError, ValueFitProcess

CASES = {  # a few iterations each
    "trpo-cartpole": ["algo=trpo", "env=cartpole", "total_steps=6144", "eval.every=1", "eval.episodes=2"],
    # Adam's epsilon reaches the fit in both processes
    "trpo-cartpole-adam-eps": ["algo=trpo", "env=cartpole", "total_steps=4096", "algo.vf_adam_eps=1e-5",
                               "eval.every=0"],
    # Pop-Art: the statistics are updated in the main process before the job is sent
    "trpo-hopper-popart": ["algo=trpo", "env=hopper", "total_steps=4096", "env.num_envs=2",
                           "algo.steps_per_iter=1024", "algo.vf_normalize_targets=true", "eval.every=2",
                           "eval.episodes=1"],
    # vine: V bootstraps the branches after the join, and fits on the branch returns too
    "vine-cartpole": ["algo=trpo_vine", "env=cartpole", "total_steps=3000", "algo.steps_per_iter=256",
                      "algo.vine.num_states=8", "algo.vine.rollout_len=10", "eval.every=2", "eval.episodes=1"],
}
COMMON = ["seed=7", "logger=none"]
# 16 iterations of 512 steps, checkpoints only at the end and on signals.
LONG = ["algo=trpo", "env=cartpole", "total_steps=8192", "algo.steps_per_iter=512", "eval.every=4",
        "eval.episodes=1", *COMMON, "checkpoint_interval_s=0"]
ON, OFF = "value_fit_process=true", "value_fit_process=false"


def train_in_process(overrides: list[str], run_dir: Path, hooks: Sequence[Hook] = (),
                     signals: Optional[RunSignals] = None, resume: bool = False,
                     after_submit: Callable[[ValueFitProcess, int], Any] = lambda process, iteration: None,
                     ) -> tuple[list[int], Optional[ValueFitProcess]]:
    """Train as trpo_exp.app does (config, record, checkpoints, resume from the run dir's
    checkpoint); returns the iterations whose fit was submitted to the worker, and the worker."""
    register_configs()
    GlobalHydra.instance().clear()  # an in-process sweep of an earlier test may hold it
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        config = to_config(compose("config", overrides=overrides))
    trainer = Trainer(config, run_dir)
    process, submitted = trainer.value_process, []
    try:
        resume_from = None
        if resume:
            state = checkpoint.load(run_dir / CHECKPOINT)
            trainer.load_state_dict(state)
            resume_from = state["iteration"]
        if process is not None:
            wait_for(lambda: process.ready(0), "the value-fit process to start")
            submit = process.submit

            def counted(iteration, *args):
                submitted.append(iteration)
                submit(iteration, *args)
                after_submit(process, iteration)

            process.submit = counted  # type: ignore[method-assign]
        trainer.train(RunRecord(run_dir, {}, resume_from=resume_from), hooks=hooks,
                      checkpoints=CheckpointSchedule(config.checkpoint_interval_s, signals))
    finally:
        trainer.close()
        if process is not None:
            assert process.exitcode is not None and not Path(f"/proc/{process.pid}").exists(), "a worker is left"
    return submitted, process


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fit_in_a_second_process_changes_no_number(tmp_path, case):
    here, there = tmp_path / "off", tmp_path / "on"
    assert train_in_process([*CASES[case], *COMMON, OFF], here) == ([], None)
    submitted, process = train_in_process([*CASES[case], *COMMON, ON], there)
    assert_same_run(there, here)
    assert submitted == list(range(1, len(metrics_rows(there)))), "every fit but the last one overlaps sampling"
    eps = 1e-5 if "algo.vf_adam_eps=1e-5" in CASES[case] else 1e-8
    assert [g["eps"] for g in checkpoint.load(there / CHECKPOINT)["value_optimizer"]["param_groups"]] == [eps]
    assert process is not None and process.exitcode == 0  # told to end, by Trainer.close()


def test_a_run_preempted_while_a_fit_runs_resumes_to_the_uninterrupted_numbers(tmp_path):
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    train_in_process([*LONG, OFF], reference)

    preempted = []

    def preempt(process, iteration):  # while fit 3 runs: SIGTERM to every process of the "job"
        if iteration == 3:
            assert process.pid == worker_of(os.getpid())
            preempted.append(process)
            os.kill(process.pid, signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

    signals = RunSignals().install()
    signals.training = True
    try:  # fit 3 is joined, iteration 4 fits here, then the checkpoint is saved
        with pytest.raises(Terminated, match="after iteration 4"):
            train_in_process([*LONG, ON], run_dir, signals=signals, after_submit=preempt)
    finally:
        signals.uninstall()
    assert preempted[0].exitcode == 0, "the worker outlived SIGTERM and ended when told to"
    assert checkpoint.load(run_dir / CHECKPOINT)["iteration"] == len(metrics_rows(run_dir)) == 4
    submitted, process = train_in_process([*LONG, ON], run_dir, resume=True)
    assert submitted == list(range(5, 16))
    assert_same_run(run_dir, reference)


def test_a_hook_that_stops_the_run_leaves_whole_rows(tmp_path):
    """A pruner's StopRun on row 2, which it sees once batch 3 is sampled: the record holds rows 1
    and 2, whole, and the worker is gone (checked by train_in_process)."""

    def prune(row):
        if row["iteration"] == 2:
            raise StopRun(Status.PRUNED, "pruned")

    with pytest.raises(StopRun):
        train_in_process([*LONG, ON], tmp_path, hooks=[prune])
    rows = metrics_rows(tmp_path)
    assert [(r["iteration"], r["env_steps"]) for r in rows] == [("1", "512"), ("2", "1024")]
    assert all(r["value_loss"] and r["explained_variance"] for r in rows)


def test_a_worker_killed_during_a_fit_stops_the_run_at_that_iteration(tmp_path):
    def kill_during_fit_3(process, iteration):
        if iteration == 3:
            os.kill(process.pid, signal.SIGKILL)

    with pytest.raises(ValueFitError, match=r"^iteration 3: the value-fit process \(value_fit_process=true, "
                                            r"pid \d+\) was killed by SIGKILL$"):
        train_in_process([*LONG, ON], tmp_path, after_submit=kill_during_fit_3)
    assert len(metrics_rows(tmp_path)) == 2


def test_a_dead_worker_fails_the_cli_run_with_one_line(tmp_path):
    worker, line, info = kill_worker_of_cli_run([*LONG, "total_steps=10000000", ON], tmp_path / "run")
    assert f"the value-fit process (value_fit_process=true, pid {worker}) was killed by SIGKILL" in line, line
    assert info["status"] == "failed" and info["reason"].startswith("iteration "), info
    assert f"pid {worker}) was killed by SIGKILL (the last good checkpoint is kept)" in info["reason"], info


def test_an_error_while_the_next_batch_is_sampled_keeps_the_finished_row(tmp_path, monkeypatch):
    """Row 2 waits for batch 3 to be sampled; when that sampling fails (an env that crashes), fit 2
    is still joined and row 2 written before the error ends the run."""
    collect, calls = Trainer.collect, []

    def crashes_on_batch_3(self, first):
        calls.append(first)
        if len(calls) == 3:
            raise RuntimeError("the env crashed")
        return collect(self, first)

    monkeypatch.setattr(Trainer, "collect", crashes_on_batch_3)
    with pytest.raises(RuntimeError, match="the env crashed"):
        train_in_process([*LONG, ON], tmp_path)
    rows = metrics_rows(tmp_path)
    assert [(r["iteration"], r["env_steps"]) for r in rows] == [("1", "512"), ("2", "1024")]
    assert all(r["value_loss"] and r["explained_variance"] for r in rows)
