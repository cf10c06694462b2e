"""Sweeps on a real PostgreSQL server (scripts/local-postgres.sh, on 127.0.0.1, its own data dir and
port, stopped at the end): several workers at once end with exactly sweep.n_trials finished trials,
on a fresh database and on an existing one; the password never reaches a file or a message; an
unreachable server or bad credentials are one line before any trial."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import optuna
import pytest

from conftest import ROOT, run_cli, start_cli

pytestmark = pytest.mark.xdist_group("postgres")
PASSWORD = "s3cret-pw"
TINY = ["total_steps=1024", "algo.steps_per_iter=512", "eval.episodes=1", "logger=none", "sweep.seeds=1",
        "sweep.report_seeds=0", "sweep.pruner.name=none", "sweep.poll_interval=0.2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    data = Path("/var/tmp") / f"trpo_exp-test-pg-{uuid.uuid4().hex[:8]}"
    env = {"TRPO_PG_DATA": str(data), "TRPO_PG_PORT": str(_free_port()), "TRPO_PG_PASSWORD": PASSWORD,
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    script = ["bash", str(ROOT / "scripts" / "local-postgres.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL could not be started: {started.stderr.strip().splitlines()[-1:]}", pytrace=False)
    url = started.stdout.strip().splitlines()[-1]
    yield url
    subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(data, ignore_errors=True)


def _database(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def _workers(tmp_path: Path, url: str, study: str, n_trials: int, count: int = 3) -> list[tuple[int, str, str]]:
    args = ["trpo_cartpole", f"sweep.dir={tmp_path / study}", f"sweep.study={study}", f"sweep.storage={url}",
            f"sweep.n_trials={n_trials}", *TINY]
    procs = [start_cli(args, module="sweeps") for _ in range(count)]
    outputs = [p.communicate(timeout=900) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def _finished_trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    from sweeps.trial_report import open_storage

    trials = optuna.load_study(study_name=study, storage=open_storage(url)).trials
    return [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def _check(tmp_path: Path, url: str, study: str, n_trials: int) -> None:
    results = _workers(tmp_path, url, study, n_trials)
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, err[-3000:]
        assert PASSWORD not in out + err
    finished = _finished_trials(url, study)
    assert len(finished) == n_trials, [(t.number, t.state.name) for t in finished]
    assert sorted(t.system_attrs["sweep:slot"] for t in finished) == list(range(n_trials))  # none twice
    leaked = [p for p in (tmp_path / study).rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_three_workers_on_a_fresh_database_give_exactly_n_trials(tmp_path, postgres):
    _check(tmp_path, _database(postgres, "fresh_db"), "fresh", n_trials=6)


def test_three_workers_on_a_new_study_in_an_existing_database_give_exactly_n_trials(tmp_path, postgres):
    url = _database(postgres, "existing_db")
    run_cli(["trpo_cartpole", f"sweep.dir={tmp_path / 'first'}", "sweep.study=first", f"sweep.storage={url}",
             "sweep.n_trials=1", *TINY], module="sweeps")
    _check(tmp_path, url, "second", n_trials=6)


@pytest.mark.parametrize("bad", ["password", "port"])
def test_bad_credentials_or_unreachable_server_is_one_line_before_any_trial(tmp_path, postgres, bad):
    url = postgres.replace(PASSWORD, "wrong-pw") if bad == "password" else f"postgresql://trpo:{PASSWORD}@127.0.0.1:9/x"
    result = run_cli(["trpo_cartpole", f"sweep.dir={tmp_path / 'sweep'}", f"sweep.storage={url}", *TINY],
                     module="sweeps", check=False, timeout=300)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("sweeps: error: sweep.storage="), \
        result.stderr
    assert "wrong-pw" not in result.stderr and PASSWORD not in result.stderr
    assert not (tmp_path / "sweep" / "trials").exists()


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_no_byte_of_the_password_reaches_any_file_with_wandb(tmp_path, postgres, form):
    """The default launcher and logger=wandb: the trials' and the report run's .wandb files record
    the worker's command line (W&B metadata); no file under the sweep dir, binary or not, nor the
    output, holds the password, in either URL form."""
    url = _database(postgres, f"wandb_{form}")
    if form == "query":
        url = url.replace(f":{PASSWORD}@", "@") + f"?password={PASSWORD}"
    args = ["trpo_cartpole", f"sweep.dir={tmp_path / 'sweep'}", "sweep.study=wb", f"sweep.storage='{url}'",
            "sweep.n_trials=2", *TINY, "logger=wandb", "sweep.report_seeds=1"]
    result = run_cli(args, module="sweeps", timeout=900)
    assert PASSWORD not in result.stdout + result.stderr
    files = [p for p in (tmp_path / "sweep").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files), "no W&B file was written: the test would prove nothing"
    assert not [p for p in files if PASSWORD.encode() in p.read_bytes()]
