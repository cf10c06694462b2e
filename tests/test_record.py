"""The run record survives an interrupted run: every row written so far is kept and run.json says
what happened."""

import csv
import json
import signal

import pandas as pd
import torch

from conftest import run_cli, start_cli, wait_for
from trpo_exp.record import METRIC_COLUMNS


def test_sigterm_mid_run_checkpoints_closes_the_record_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = ["env=cartpole", "total_steps=10000000", "logger=none", "checkpoint_interval_s=0"]
    proc = start_cli(args, run_dir=run_dir)
    metrics = run_dir / "metrics.csv"
    # metrics.csv is flushed every iteration: wait until three rows are on disk, then stop the run.
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 4, "three rows of metrics.csv",
             proc)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "Traceback" not in stderr and "terminated by SIGTERM" in stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "preempted" and info["reason"].startswith("terminated by SIGTERM after iteration")
    assert info["exit_code"] == 143 and info["ended_at"] >= info["started_at"]
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 3
    assert [int(r["iteration"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(list(r) == list(METRIC_COLUMNS) and r["env_steps"] for r in rows)
    assert info["env_steps"] == int(rows[-1]["env_steps"])
    # The checkpoint written on SIGTERM is the last row's iteration: nothing is recomputed.
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["iteration"] == len(rows)
    resumed = start_cli(args, run_dir=run_dir)
    wait_for(lambda: len(metrics.read_text().splitlines()) >= len(rows) + 3, "three more rows", resumed)
    resumed.send_signal(signal.SIGTERM)
    resumed.communicate(timeout=60)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["resumes"][0]["from_iteration"] == len(rows) and resumed.returncode == 143


def test_ctrl_c_mid_run_checkpoints_the_iteration_it_was_in(tmp_path):
    """Ctrl-C acts as SIGTERM does (exit 130): the resumed run redoes no iteration, even with no
    periodic checkpoint due."""
    run_dir = tmp_path / "run"
    args = ["env=cartpole", "total_steps=10000000", "logger=none", "checkpoint_interval_s=3600"]
    proc = start_cli(args, run_dir=run_dir)
    metrics = run_dir / "metrics.csv"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 4, "three rows of metrics.csv",
             proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["reason"].startswith("interrupted by Ctrl-C (SIGINT) after iteration"), info["reason"]
    rows = len(metrics.read_text().splitlines()) - 1
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["iteration"] == rows >= 3


def test_budget_is_met_exactly_and_a_tiny_budget_still_runs_one_iteration(tmp_path):
    def run(tag, *overrides):
        run_dir = tmp_path / tag
        run_cli([*overrides, "logger=none", "eval.episodes=1"], run_dir=run_dir)
        return json.loads((run_dir / "run.json").read_text())

    exact = run("exact", "env=cartpole", "total_steps=5000")  # 2048 + 2048 + a shrunken 904
    assert exact["env_steps"] == 5000 and exact["iterations"] == 3
    # The shrunken last batch completes the budget, but the policy takes no step from it.
    steps = pd.read_csv(tmp_path / "exact" / "metrics.csv")[["step_accepted", "kl"]]
    assert steps["step_accepted"].iloc[:2].tolist() == [True, True]
    assert steps.iloc[-1].isna().all()  # no step, so no step metrics (empty cells, not kl=0)
    # A budget below one iteration: a shrunken first iteration learns; the rest completes the budget.
    tiny = run("tiny", "algo=trpo_vine", "env=cartpole", "total_steps=100")
    assert tiny["status"] == "finished" and 1 <= tiny["iterations"] <= 2 and 100 <= tiny["env_steps"] < 110
    tiny_steps = pd.read_csv(tmp_path / "tiny" / "metrics.csv")
    assert tiny_steps["branch_steps"].iloc[0] > 0


def test_run_json_is_strict_json_even_with_nan_and_inf(tmp_path):
    from trpo_exp.record import RunRecord

    record = RunRecord(tmp_path, {"seed": 1, "odd": [float("nan"), float("inf")], "path": tmp_path})
    record.finish(eval_return_mean=1.5, eval_return_std=float("nan"))

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    info = json.loads((tmp_path / "run.json").read_text(), parse_constant=refuse)
    assert info["eval_return_std"] is None and info["odd"] == [None, None] and info["path"] == str(tmp_path)
    assert info["status"] == "finished" and info["eval_return_mean"] == 1.5


def progress_iteration(run_dir) -> int:
    """The iteration run.json's progress has reached (0 before run.json has any)."""
    try:
        progress = json.loads((run_dir / "run.json").read_text()).get("progress") or {}
    except (OSError, ValueError):  # not written yet
        return 0
    return int(progress.get("iteration") or 0)


def test_a_killed_run_shows_as_stale_in_the_summary(tmp_path):
    from trpo_exp.summary import format_table, load_runs

    run_dir = tmp_path / "0_run"
    proc = start_cli(["env=cartpole", "total_steps=10000000", "logger=none"], run_dir=run_dir)
    # Wait for what the assertions read: run.json's progress (written after the rows), not the rows.
    wait_for(lambda: progress_iteration(run_dir) >= 2, "run.json progress at iteration 2", proc)
    assert " running " in format_table(load_runs(tmp_path))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "running" and info["progress"]["pid"] == proc.pid and info["progress"]["iteration"] >= 2
    assert " stale " in format_table(load_runs(tmp_path))


def test_the_one_reader_survives_damaged_metrics_for_every_consumer(tmp_path):
    """The multirun summary and the sweep objective read through the same tolerant reader as
    analysis: a duplicated column and a non-UTF-8 line are notes, not exceptions."""
    from trpo_exp.record.reader import read_run

    (tmp_path / "metrics.csv").write_bytes(b"iteration,env_steps,return_mean,return_mean\n"
                                          b"1,100,5.0,6.0\n2,200,\xff\xfe,7.0\n3,300,9.0,1.0\n")
    data = read_run(tmp_path)
    assert list(data.metrics["return_mean"].fillna(-1)) == [5.0, -1, 9.0]
    assert any("duplicated column" in n for n in data.notes) and any("non-UTF-8" in n for n in data.notes)
