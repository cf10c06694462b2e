"""The run record survives an interrupted run: every row written so far is kept and run.json says
what happened."""

import csv
import json
import signal
import subprocess
import sys
import time

from trpo_exp.record import METRIC_COLUMNS


def test_sigterm_mid_run_closes_the_record_as_failed_and_keeps_every_row(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "trpo_exp", "env=cartpole", "total_steps=10000000",
                             "logger=none", f"hydra.run.dir={run_dir}", "log_every=1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.csv"
    deadline = time.time() + 120
    # metrics.csv is flushed every iteration: wait until three rows are on disk, then stop the run.
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 4):
        time.sleep(0.2)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "Traceback" not in stderr and "terminated by SIGTERM" in stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["reason"] == "terminated by SIGTERM"
    assert info["exit_code"] == 1 and info["ended_at"] >= info["started_at"]
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 3
    assert [int(r["iteration"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(list(r) == list(METRIC_COLUMNS) and r["env_steps"] for r in rows)
    assert info["env_steps"] == int(rows[-1]["env_steps"])


def test_budget_is_met_exactly_and_a_tiny_budget_still_runs_one_iteration(tmp_path):
    def run(tag, *overrides):
        run_dir = tmp_path / tag
        result = subprocess.run([sys.executable, "-m", "trpo_exp", *overrides, "logger=none", "eval.episodes=1",
                                 f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads((run_dir / "run.json").read_text())

    exact = run("exact", "env=cartpole", "total_steps=5000")  # 2048 + 2048 + a shrunken 904
    assert exact["env_steps"] == 5000 and exact["iterations"] == 3
    tiny = run("tiny", "algo=trpo_vine", "env=cartpole", "total_steps=100")
    assert tiny["status"] == "finished" and tiny["iterations"] == 1 and 0 < tiny["env_steps"] <= 200
