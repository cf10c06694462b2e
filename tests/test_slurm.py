"""Runs on a real SLURM cluster (scripts/local-slurm.sh: slurmctld, slurmd and munged on this host,
stopped at the end) through the `hydra/launcher=slurm` preset: the README's card command ends with
three finished records where they would be locally; a job preempted twice mid-run (SIGUSR1 as
before a time limit, then `scontrol requeue`) resumes and ends bit-identical to the same run done
locally without interruption; without SLURM the launcher is one line and a non-zero exit.

Waits are on events (files, rows, job states) with generous timeouts, never on fixed sleeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, assert_same_outcome, cli_command, cli_env, read_run_json, run_cli, wait_for

pytestmark = pytest.mark.xdist_group("slurm")
SCRIPT = ["bash", str(ROOT / "scripts" / "local-slurm.sh")]
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TINY = ["total_steps=4096", "env.num_envs=2", "algo.steps_per_iter=1024", "eval.episodes=1", "logger=none"]
# 20 iterations (about 0.4 s each here): room for two interruptions and a resumed tail.
REQUEUE_RUN = ["algo=trpo", "env=hopper", "seed=4", "total_steps=20480", "env.num_envs=2",
               "algo.steps_per_iter=1024", "eval.every=4", "eval.episodes=1", "logger=none"]


def _script(command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*SCRIPT, command], env={**cli_env(), "PATH": SYSTEM_PATH}, capture_output=True,
                          text=True, timeout=timeout)


def _start_cluster() -> None:
    started = _script("start")
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or [f"exit status {started.returncode}"])[-1]
        pytest.fail(f"SLURM could not be started: {reason}", pytrace=False)


@pytest.fixture(scope="module")
def slurm():
    _start_cluster()
    yield
    jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    if jobs:  # a failed test may leave its job behind
        subprocess.run(["scancel", *jobs], capture_output=True)
    _script("stop", timeout=120)


def _squeue_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def _rows(run_dir: Path) -> int:
    metrics = run_dir / "metrics.csv"
    return len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0


def _info(run_dir: Path) -> dict:
    try:
        return read_run_json(run_dir)
    except (OSError, ValueError):  # not written yet
        return {}



def check_card_command_gives_three_finished_records(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["hydra/launcher=slurm", "algo=trpo", "env=hopper", "seed=0,1,2", *TINY], sweep_dir=sweep)
    records = sorted(sweep.glob("*/run.json"))
    assert [p.parent.name for p in records] == [f"{n}_trpo_Hopper-v5_s{n}" for n in range(3)]
    job_ids = set()
    for seed, path in enumerate(records):
        info = json.loads(path.read_text())
        assert info["status"] == "finished" and info["env_steps"] == 4096, info
        slurm_info = info["provenance"]["slurm"]
        assert slurm_info["job_id"] and slurm_info["array_task_id"] == str(seed) and slurm_info["node"], slurm_info
        job_ids.add(slurm_info["job_id"])
        # the user's command line for this run (runs locally as is), not submitit's _submit.py
        assert info["provenance"]["command"] == ["python", "-m", "trpo_exp", "algo=trpo", "env=hopper",
                                                 f"seed={seed}", *TINY, "log_every=1000"]
    assert len(job_ids) == 3
    assert list((sweep / ".submitit").glob("*/*_submission.sh"))  # submitit's files stay in the sweep dir
    output = result.stdout + result.stderr
    assert f"Summary of 3 runs in {sweep}" in output and "trpo on Hopper-v5: final eval return over 3 runs" in output


def _requeue_and_release(job_id: str, interrupt: list[str], proc: subprocess.Popen) -> None:
    """Interrupt the running job, wait until SLURM has requeued it, and let it start soon: SLURM
    holds a requeued job back for about two minutes (its BeginTime) because the node revokes the old
    run's credential, and a run started in the same second as that revocation is refused ("Job
    credential revoked") and the job ends. So: wait until the old run's processes are gone from the
    node (its credential was revoked before they were killed), then start it from 2 s on."""
    subprocess.run(interrupt, check=True, capture_output=True)
    wait_for(lambda: _squeue_state(job_id) == "PENDING", f"job {job_id} requeued after {interrupt}", proc)
    wait_for(lambda: not _runs_on_node(job_id), f"job {job_id}'s old run to end on the node", proc)
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now+2"], check=True, capture_output=True)


def _runs_on_node(job_id: str) -> bool:
    """Whether a slurmstepd of the job (its batch script or a step) is alive on this one-node cluster."""
    found = subprocess.run(["pgrep", "-f", rf"^slurmstepd: \[{job_id}\."], capture_output=True)
    return found.returncode == 0


def check_requeued_job_resumes_bit_identically(tmp_path):
    reference = tmp_path / "reference"
    run_cli(REQUEUE_RUN, run_dir=reference)  # locally, never interrupted

    sweep, log = tmp_path / "sweep", tmp_path / "launcher.log"
    run_dir = sweep / "0_trpo_Hopper-v5_s4"
    job_id = ""
    with open(log, "w") as out:
        proc = subprocess.Popen(cli_command(["hydra/launcher=slurm", *REQUEUE_RUN], sweep_dir=sweep), cwd=ROOT,
                                env=cli_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _rows(run_dir) >= 3, f"3 rows in {run_dir}/metrics.csv", proc)
        job_id = _info(run_dir)["provenance"]["slurm"]["job_id"]
        # 1. SIGUSR1, as SLURM sends before the time limit: checkpoint, then submitit requeues the job.
        _requeue_and_release(job_id, ["scancel", "--signal=USR1", job_id], proc)
        wait_for(lambda: len(_info(run_dir).get("resumes", [])) == 1, "the first resume", proc)
        resumed_at = _info(run_dir)["resumes"][0]["from_iteration"]
        # While it waited in the queue, its record said preempted (it resumes), not failed.
        assert _info(run_dir)["resumes"][0]["after_status"] == "preempted", _info(run_dir)["resumes"]
        wait_for(lambda: _rows(run_dir) >= resumed_at + 3, "3 rows after the first resume", proc)
        # 2. scontrol requeue, as on preemption: SIGTERM, checkpoint and exit 143, SLURM requeues.
        _requeue_and_release(job_id, ["scontrol", "requeue", job_id], proc)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            if job_id:
                subprocess.run(["scancel", job_id], capture_output=True)
    output = log.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "Summary of 1 runs" in output

    info = read_run_json(run_dir)
    assert info["status"] == "finished", info
    # 3 rows logged before SIGUSR1 and the default checkpoint_interval_s=120: the checkpoints
    # resumed from were written because of the signals, not by the timer.
    resumes = [r["from_iteration"] for r in info["resumes"]]
    assert [r["after_status"] for r in info["resumes"]] == ["preempted", "preempted"], info["resumes"]
    assert len(resumes) == 2 and resumes[0] >= 3 and resumes[1] >= resumes[0] + 3, info["resumes"]
    assert info["provenance"]["slurm"]["job_id"] == job_id and info["provenance"]["slurm"]["restart_count"] == "2"
    assert_same_outcome(run_dir, reference)


def check_without_slurm_the_launcher_is_one_line(tmp_path, problem):
    env = {"PATH": f"{Path(sys.executable).parent}:{tmp_path}"} if problem == "sbatch not on PATH" else None
    extra = ["hydra.launcher.partition=no_such_partition"] if problem == "unknown partition" else []
    if problem == "controller stopped":
        _script("stop", timeout=120)
    try:
        result = run_cli(["hydra/launcher=slurm", "algo=trpo", "env=cartpole", "seed=0,1", *TINY, *extra],
                         sweep_dir=tmp_path / "sweep", env=env, check=False, timeout=300)
    finally:
        if problem == "controller stopped":
            _start_cluster()
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    if problem == "unknown partition":  # sbatch's own lines come first (submitit passes them on)
        assert all(ln.startswith("sbatch: error:") for ln in lines[:-1]), lines
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("trpo_exp: error:") and "SLURM" in lines[0], lines
    assert not list((tmp_path / "sweep").glob("*/run.json"))


# One test function for the whole cluster path: its steps share one cluster, and one of them stops
# and restarts the controller, so they must never run at the same time (pytest-xdist may spread the
# tests of one group over workers).
def test_the_cluster_path_on_a_local_slurm(tmp_path_factory, slurm):
    check_card_command_gives_three_finished_records(tmp_path_factory.mktemp("card"))
    check_requeued_job_resumes_bit_identically(tmp_path_factory.mktemp("requeue"))
    for problem in ("sbatch not on PATH", "unknown partition", "controller stopped"):
        check_without_slurm_the_launcher_is_one_line(tmp_path_factory.mktemp("no_slurm"), problem)
