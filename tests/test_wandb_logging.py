"""W&B mirror of the run record, provenance in run.json (real wandb in offline mode, real git)."""

import json
import math
import os
import subprocess

import pandas as pd
import pytest

from conftest import run_cli, start_cli, wait_for
from trpo_exp.provenance import git_info
from trpo_exp.record.wandb_file import read_offline_run


def cli(run_dir, *overrides, env=None, multirun=False):
    if multirun:
        return run_cli(list(overrides), sweep_dir=run_dir, env=env)
    return run_cli(list(overrides), run_dir=run_dir, env=env)


def test_offline_run_history_matches_metrics_csv(tmp_path):
    run_dir = tmp_path / "run"
    cli(run_dir, "algo=trpo", "env=cartpole", "total_steps=6144", "seed=3", "eval.every=2",
        "eval.episodes=2", "algo.max_kl=0.02")
    info = json.loads((run_dir / "run.json").read_text())
    metrics = pd.read_csv(run_dir / "metrics.csv")
    (offline_dir,) = (run_dir / "wandb").glob("offline-run-*")
    run = read_offline_run(offline_dir)
    assert run.warnings == []
    assert run.run_id == info["wandb_run_id"]
    assert run.name == "trpo-cartpole-s3" and run.group == info["group"] and run.group.startswith("trpo-cartpole-")
    assert {"trpo", "CartPole-v1", "seed=3"} <= set(run.tags)
    assert run.config["algo"]["max_kl"] == 0.02 and run.config["seed"] == 3
    assert [row["_step"] for row in run.history] == metrics["env_steps"].tolist()
    for row, (_, expected) in zip(run.history, metrics.iterrows()):
        assert row["rollout/return_mean"] == expected["return_mean"]
        assert row["train/kl"] == expected["kl"]
        if not math.isnan(expected["eval_return_mean"]):
            assert row["eval/return_mean"] == expected["eval_return_mean"]
        else:
            assert "eval/return_mean" not in row
    assert run.summary["eval/return_mean"] == info["eval_return_mean"]
    assert run.summary["eval/episodes"] == 2


def test_online_without_network_falls_back_to_the_local_record(tmp_path):
    run_dir = tmp_path / "run"
    # A closed local port stands in for an unreachable W&B server; the key is well-formed but fake.
    result = cli(run_dir, "env=cartpole", "total_steps=4096", "logger=wandb_online", "logger.init_timeout=15",
                 env={"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40, "WANDB_SILENT": "false"})
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["env_steps"] == 4096
    assert info["wandb_run_id"] is None
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 2
    output = result.stdout + result.stderr  # Hydra sends log records to stdout and to the run log
    warnings = [line for line in output.splitlines() if "W&B could not start" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "W&B could not start" in (run_dir / "__main__.log").read_text()


def test_multirun_jobs_are_separate_wandb_runs_grouped_by_setting(tmp_path):
    """One W&B group per setting (everything but the seed): W&B's grouped view averages a group."""
    cli(tmp_path / "sweep", "env=cartpole", "total_steps=2048", "algo=pg,trpo", "seed=1,2", "eval.episodes=1",
        multirun=True)
    infos = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/run.json"))]
    assert len(infos) == 4 and len({i["wandb_run_id"] for i in infos}) == 4
    groups = {(i["algo"], i["group"]) for i in infos}
    assert len(groups) == 2 and {a for a, _ in groups} == {"pg", "trpo"}, groups
    runs = [read_offline_run(next((tmp_path / "sweep" / p).glob("wandb/offline-run-*")))
            for p in sorted(os.listdir(tmp_path / "sweep")) if (tmp_path / "sweep" / p / "wandb").exists()]
    assert {(r.name.split("-")[0], r.group) for r in runs} == groups
    assert sorted(r.name for r in runs) == ["pg-cartpole-s1", "pg-cartpole-s2", "trpo-cartpole-s1", "trpo-cartpole-s2"]


def test_provenance_fields_in_run_json(tmp_path):
    run_dir = tmp_path / "run"
    cli(run_dir, "env=cartpole", "total_steps=2048", "logger=none", "eval.episodes=1")
    info = json.loads((run_dir / "run.json").read_text())
    prov = info["provenance"]
    import torch
    assert prov["versions"]["torch"] == torch.__version__
    assert set(prov["versions"]) >= {"python", "torch", "gymnasium", "mujoco", "hydra-core", "optuna", "wandb", "numpy"}
    assert "total_steps=2048" in prov["command"]
    assert prov["host"] and prov["cpu"] and prov["cpu_count"] >= 1
    assert info["started_at"] <= info["ended_at"] and info["exit_code"] == 0
    assert info["wandb_mode"] == "disabled" and info["wandb_run_id"] is None
    assert not (run_dir / "wandb").exists()


def test_git_dirty_flag_flips_when_a_file_changes(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "one")
    clean = git_info(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["diff"] == ""
    (tmp_path / "a.py").write_text("x = 2\n")
    dirty = git_info(tmp_path)
    assert dirty["commit"] == clean["commit"] and dirty["dirty"] is True
    assert "-x = 1" in dirty["diff"] and "+x = 2" in dirty["diff"]
    assert git_info(tmp_path.parent / "not-a-repo-dir")["commit"] is None


def _wandb_service_of(pid):
    """PIDs of the wandb-core service processes started for the process ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"wandb-core") and b"--pid" in cmd and cmd[cmd.index(b"--pid") + 1] == str(pid).encode():
                found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the wandb service through /proc")
def test_training_goes_on_when_the_wandb_service_dies(tmp_path):
    import signal

    run_dir = tmp_path / "run"
    proc = start_cli(["env=cartpole", "total_steps=40000"], run_dir=run_dir)
    metrics = run_dir / "metrics.csv"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3, "two rows of metrics.csv",
             proc)
    services = _wandb_service_of(proc.pid)
    assert services, "no wandb service found for the run"
    for pid in services:
        os.kill(pid, signal.SIGKILL)  # W&B's service dies mid-run
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    output = stdout + stderr
    assert "Traceback" not in output
    # One warning, whichever W&B call meets the dead service first (a log, or the final finish).
    warnings = [line for line in output.splitlines() if "training goes on and the local record" in line]
    assert len(warnings) == 1, output[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["env_steps"] == 40000
    assert len(pd.read_csv(metrics)) == 20  # 40000 steps / 2048 per iteration, rounded up


def test_a_killed_and_resumed_run_continues_its_wandb_run_without_lost_or_duplicate_rows(tmp_path):
    import signal
    import warnings

    from analysis.loading import load_runs

    run_dir = tmp_path / "run"
    args = ["algo=trpo", "env=cartpole", "total_steps=16384", "algo.steps_per_iter=1024", "eval.every=3",
            "eval.episodes=1", "checkpoint_interval_s=0.000001", "seed=4"]
    proc = start_cli(args, run_dir=run_dir)
    metrics = run_dir / "metrics.csv"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 6, "five rows", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_cli(args, run_dir=run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["resumes"]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 2  # the same W&B run, two segments
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs = load_runs([str(run_dir)], source="offline", use_cache=False)
    assert len(rs.runs) == 1 and "segments merged" in rs.runs["problems"].iloc[0]
    local = pd.read_csv(metrics)
    wandb = rs.metrics.sort_values("env_steps")
    assert list(wandb["env_steps"]) == list(local["env_steps"])  # every row once, none lost
    assert list(wandb["rollout/return_mean"]) == list(local["return_mean"])


def test_a_batch_without_a_policy_step_logs_no_step_metrics(tmp_path):
    """A budget that ends in a shrunken batch: that iteration takes no policy step, so its row has
    no kl/surrogate/step_accepted (empty, not 0) and W&B's summary keeps the last real step's kl."""
    run_dir = tmp_path / "run"
    cli(run_dir, "algo=trpo", "env=cartpole", "total_steps=4100", "eval.episodes=1")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(metrics) == 3 and metrics["env_steps"].iloc[-1] == 4100
    last = metrics.iloc[-1]
    for column in ("kl", "surrogate_improvement", "expected_improvement", "backtracks", "step_accepted"):
        assert pd.isna(last[column]), (column, last[column])
    assert not pd.isna(last["entropy"]) and metrics["kl"].iloc[:2].gt(0).all()
    run = read_offline_run(next((run_dir / "wandb").glob("offline-run-*")))
    assert "train/kl" not in run.history[-1]
    assert run.summary["train/kl"] == metrics["kl"].iloc[1]
