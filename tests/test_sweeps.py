"""Optuna sweeps (sweeps/): real storage, real training runs, real processes; no mocks.

Every sweep here is TRPO on CartPole with a tiny budget (4096 steps, 512 per iteration: 8
iterations per run, about a second) and logger=none.
1. A tiny sweep (4 trials x 2 seeds, joblib launcher) completes and writes its tables and report.
2. A sweep killed with SIGKILL mid-trial and run again keeps its finished trials, retries the
   interrupted one (same parameters) and ends with exactly n_trials COMPLETE trials (SQLite and
   journal-file storage).
3. Two workers on one storage at the same time: every trial runs once, none is duplicated.
4. A trial in a clearly bad region (delta = 1e-6, enqueued after good ones) is pruned early.
5. Bad input: one line on stderr and exit status 2 before any trial starts.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import run_cli, start_cli, wait_for
from sweeps.__main__ import main

TINY = ["total_steps=4096", "algo.steps_per_iter=512", "eval.episodes=2", "logger=none",
        "sweep.seeds=2", "sweep.report_seeds=1", "sweep.poll_interval=0.5"]
FAST_HEARTBEAT = ["sweep.heartbeat_interval=1", "sweep.grace_period=3"]


def sweep_args(sweep_dir: Path, *extra: str) -> list[str]:
    return ["trpo_cartpole", f"sweep.dir={sweep_dir}", *TINY, *extra]


def run_sweep(sweep_dir: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli(sweep_args(sweep_dir, *extra), module="sweeps", timeout=timeout, check=False)


def load(sweep_dir: Path, name: str = "trpo_cartpole", storage: str | None = None) -> optuna.Study:
    from sweeps.trial_report import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage or f"sqlite:///{sweep_dir / 'study.db'}"))


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_tiny_sweep_completes_and_writes_tables(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_sweep(sweep_dir, "sweep.n_trials=4", "sweep.pruner.name=none",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(sweep_dir)
    assert states(study) == {"COMPLETE": 4}
    for name in ("trials.csv", "trials.parquet", "best_params.json"):
        assert (sweep_dir / name).is_file(), name
    csv, parquet = pd.read_csv(sweep_dir / "trials.csv"), pd.read_parquet(sweep_dir / "trials.parquet")
    assert len(csv) == len(parquet) == 4
    assert {"number", "state", "algo.max_kl", "algo.cg_damping", "seeds", "score_s0", "score_s1",
            "objective", "duration_s"} <= set(parquet.columns)
    assert parquet["algo.max_kl"].between(1e-3, 1e-1).all() and parquet["algo.cg_damping"].between(1e-3, 1).all()
    assert (parquet["objective"] - (parquet["score_s0"] + parquet["score_s1"]) / 2).abs().max() < 1e-9
    for t in study.trials:  # each seed an ordinary run: its record, its final eval, its W&B group
        for seed, run_dir in zip((0, 1), t.user_attrs["run_dirs"]):
            info = json.loads((Path(run_dir) / "run.json").read_text())
            assert info["status"] == "finished" and info["seed"] == seed
            assert info["group"] == f"trpo_cartpole/trial-{t.number}"
            assert info["eval_return_mean"] == pytest.approx(t.user_attrs["scores"][seed])
    best = json.loads((sweep_dir / "best_params.json").read_text())
    assert best["best_trial"]["objective"] == max(t.value for t in study.trials)
    report = best["report"]
    assert report["state"] == "COMPLETE" and report["params"] == best["best_params"]
    assert report["seeds"] == [1000] and not set(report["seeds"]) & {0, 1}  # fresh seeds
    assert json.loads((sweep_dir / "report" / "s1000" / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("journal", [False, True], ids=["sqlite", "journal"])
def test_killed_sweep_resumes_without_losing_or_repeating_trials(tmp_path, journal):
    """SQLite uses Optuna's heartbeat; a journal file (no heartbeat in Optuna) the sweep's own lease."""
    sweep_dir = tmp_path / "sweep"
    storage = f"journal:{tmp_path / 'journal.log'}" if journal else None
    args = ("sweep.n_trials=4", "sweep.pruner.name=none", *FAST_HEARTBEAT,
            *([f"sweep.storage={storage}"] if storage else []))
    proc = start_cli(sweep_args(sweep_dir, *args), module="sweeps", capture=False)
    target = sweep_dir / "trials" / "0001" / "s0" / "run.json"  # the second trial has started
    wait_for(target.exists, "the second trial's first run", proc, poll=0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t for t in load(sweep_dir, storage=storage).trials}
    interrupted = [t for t in before.values() if t.state == TrialState.RUNNING]
    finished = {n: t for n, t in before.items() if t.state == TrialState.COMPLETE}
    assert len(interrupted) == 1 and len(finished) >= 1, {n: t.state for n, t in before.items()}

    rerun = run_sweep(sweep_dir, *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = load(sweep_dir, storage=storage).trials
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    for n, t in finished.items():  # kept as they were, not run again
        assert after[n].state == TrialState.COMPLETE and after[n].value == t.value
        assert after[n].datetime_complete == t.datetime_complete
    lost = after[interrupted[0].number]
    assert lost.state == TrialState.FAIL  # detected by its missing heartbeat
    retries = [t for t in after if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == lost.params
    slots = sorted(t.system_attrs["sweep:slot"] for t in complete)
    assert slots == [0, 1, 2, 3]  # every planned trial once
    assert f"retries trial {lost.number}" in rerun.stdout


def test_two_workers_share_one_study_without_duplicates(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ("sweep.n_trials=4", "sweep.pruner.name=none", "sweep.seeds=1", "sweep.report_seeds=1", *FAST_HEARTBEAT)
    procs = [start_cli(sweep_args(sweep_dir, *args), module="sweeps") for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    study = load(sweep_dir)
    assert states(study) == {"COMPLETE": 4}
    assert sorted(t.system_attrs["sweep:slot"] for t in study.trials) == [0, 1, 2, 3]
    started = [line.split()[2] for out, _ in outs for line in out.splitlines()
               if line.startswith("sweeps: trial ") and "(" in line]
    assert sorted(started) == ["0", "1", "2", "3"]  # each trial started by exactly one worker
    reports = [line for out, _ in outs for line in out.splitlines() if line.startswith("sweeps: re-running best")]
    assert len(reports) == 1  # the report, too, is done once
    assert states(load(sweep_dir, "trpo_cartpole.report")) == {"COMPLETE": 1}


def test_trial_in_bad_region_is_pruned(tmp_path):
    sweep_dir = tmp_path / "sweep"
    good, bad = "{algo:{max_kl:0.02,cg_damping:0.1}}", "{algo:{max_kl:1e-6,cg_damping:0.1}}"
    proc = run_sweep(sweep_dir, "sweep.n_trials=3", f"sweep.enqueue=[{good},{good},{bad}]",
                     "sweep.space.algo.max_kl.low=1e-7", "sweep.pruner.n_startup_trials=2",
                     "sweep.pruner.n_warmup_iters=3", "sweep.report_seeds=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[2].params["algo.max_kl"] == 1e-6
    for run_dir in trials[2].user_attrs["run_dirs"]:  # every seed stopped early, recorded as pruned
        info = json.loads((Path(run_dir) / "run.json").read_text())
        assert info["status"] == "pruned" and info["iterations"] < 8, info
    assert math.isfinite(trials[2].value)  # Optuna keeps its last intermediate return


BAD_INPUT = [
    (["+sweep.space.algo.bogus={low:1,high:2}"], "algo.bogus"),
    (["sweep.space.algo.max_kl.low=0.5"], "inverted"),
    (["sweep.space.algo.max_kl={low:0.01,high:0.01}"], "empty"),
    (["sweep.space.algo.cg_damping.low=0"], "log scale"),
    (["sweep.space.algo.max_kl={low:-1,high:0.1}"], "log scale"),
    (["sweep.space.algo.cg_damping={low:-1,high:1,log:false}"], "algo.cg_damping=-1.0"),  # run config: >= 0
    (["sweep.space.algo.max_kl.log=maybe"], "true or false"),
    (["sweep.sampler.name=grid"], "sampler.name"),
    (["sweep.pruner.name=percentile"], "pruner.name"),
    (["sweep.storage=sqlite:////proc/no/such/dir/study.db"], "storage"),
    (["sweep.storage=postgresql://nobody@127.0.0.1:9/none"], "storage"),
    (["sweep.report_seed_start=1"], "disjoint"),
    (["algo=nosuch"], "nosuch"),
    (["sweep.n_trials=100000000000"], "sweep.n_trials=100000000000"),
    (["+sweep.foo=1"], "sweep.foo=1 is not allowed: unknown key"),  # added with +: not in the schema
    (["+sweep.pruner.foo=1"], "sweep.pruner.foo=1 is not allowed: unknown key"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUT, ids=[a[0] for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_before_any_trial(tmp_path, capsys, args, needle):
    sweep_dir = tmp_path / "sweep"
    code = main(["trpo_cartpole", f"sweep.dir={sweep_dir}", *TINY, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("sweeps: error: ") and needle in err, err
    assert not (sweep_dir / "trials").exists() and not (sweep_dir / "study.db").exists()


@pytest.mark.parametrize("garbage", [b"\xb6\x01\x00garbage without a newline", b"\x89PNG\r\n\x1a\n\x00\xff"],
                         ids=["no-newline", "lines"])
def test_garbage_journal_storage_is_one_line_and_left_untouched(tmp_path, capsys, garbage):
    """Optuna takes a last line without its newline for one being written, and would append its
    first entry to the garbage."""
    journal = tmp_path / "journal.log"
    journal.write_bytes(garbage)
    code = main(sweep_args(tmp_path / "sweep", f"sweep.storage=journal:{journal}"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"sweeps: error: sweep.storage='journal:{journal}'") and "not a readable journal" in err
    assert journal.read_bytes() == garbage
    assert not (tmp_path / "sweep").exists()


def test_cli_errors_exit_2(tmp_path):
    for argv in (["nosuch_sweep"], ["trpo_cartpole", "sweep.pruner.name=bogus", f"sweep.dir={tmp_path}"]):
        proc = run_cli(argv, module="sweeps", check=False, env={"HYDRA_FULL_ERROR": "0"})
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_sigterm_to_a_worker_requeues_its_trial_at_once_without_a_traceback(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ("sweep.n_trials=2", "sweep.pruner.name=none", "total_steps=10000000", "sweep.grace_period=3600")
    proc = start_cli(sweep_args(sweep_dir, *args), module="sweeps")
    metrics = sweep_dir / "trials" / "0000" / "s0" / "metrics.csv"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3, "trial 0 training", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert "trial 0 is re-queued with the same parameters" in err
    trials = load(sweep_dir).trials
    assert trials[0].state == TrialState.FAIL  # at once, not after the (1 h) grace period
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING
    assert retries[0].params == trials[0].params or retries[0].system_attrs.get("fixed_params") == trials[0].params
    run = json.loads((metrics.parent / "run.json").read_text())
    assert run["status"] == "preempted" and run["exit_code"] == 143  # its checkpoint was saved


def test_a_second_study_never_writes_into_another_studys_records(tmp_path):
    sweep_dir = tmp_path / "sweep"
    first = run_sweep(sweep_dir, "sweep.n_trials=1", "sweep.pruner.name=none", "sweep.report_seeds=0")
    assert first.returncode == 0, first.stderr[-2000:]
    records = sorted(p.read_bytes() for p in (sweep_dir / "trials").rglob("run.json"))
    other = run_sweep(sweep_dir, "sweep.study=other", "sweep.n_trials=1", "sweep.report_seeds=0")
    assert other.returncode == 2 and "holds the records of study 'trpo_cartpole'" in other.stderr
    (sweep_dir / "study.db").write_bytes(b"")  # the storage is lost; the records are not
    lost = run_sweep(sweep_dir, "sweep.n_trials=1", "sweep.pruner.name=none", "sweep.report_seeds=0")
    assert lost.returncode == 2 and "has no such study" in lost.stderr, lost.stderr[-2000:]
    assert sorted(p.read_bytes() for p in (sweep_dir / "trials").rglob("run.json")) == records


def test_sweep_tables_are_strict_json_and_trial_numbers_stay_integers(tmp_path):
    """A diverged run's NaN score is null in best_params.json (never a bare NaN), and retry_of in
    trials.csv is a trial number ("1"), not "1.0"."""
    import json

    import optuna

    from sweeps import tables

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, report = optuna.create_study(direction="maximize"), optuna.create_study()
    first = study.ask()
    first.set_user_attr("scores", [float("nan"), 1.0])
    study.tell(first, 1.0)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    retry = study.ask()
    study._storage.set_trial_system_attr(retry._trial_id, "failed_trial", 1)
    study.tell(retry, 0.5)
    tables.write(tmp_path, study, report, "sqlite://", 3, [0, 1])
    info = json.loads((tmp_path / "best_params.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert info["best_trial"]["scores"] == [None, 1.0]
    lines = (tmp_path / "trials.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert lines[3].split(",")[header.index("retry_of")] == "1"
