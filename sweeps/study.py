"""The Optuna side of a sweep: open the storage, create or resume the study, hand out trials to
workers exactly once, keep them alive with heartbeats and recover the trials of dead workers.

Why trials are pre-created: with several workers, "ask while fewer than n_trials exist" races (two
workers both see n-1 and both ask). Instead, the worker that creates the study enqueues exactly
n_trials empty WAITING trials ("slots"); workers only ever *claim* a WAITING trial (an atomic
WAITING -> RUNNING in the storage) and never create one, so the study can never hold more than
n_trials live trials. The sampler fills in a slot's parameters when it is claimed. A slot whose
worker dies is failed by the heartbeat check and re-queued with the same parameters (Optuna's
RetryHeartbeatStaleTrialCallback), so it is neither lost nor run twice; the retry keeps the slot's
run dirs, so its runs resume from their checkpoints. Past sweep.max_retries a failed trial is not
re-queued: a line says so, and the sweep's summary counts it.

The final re-run of the best parameters is a one-slot study of its own (``<study>.report``), so
exactly one worker does it, with the same claim / heartbeat / retry machinery.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import optuna
import optuna.storages._heartbeat  # is_heartbeat_enabled: not re-exported by optuna.storages
from optuna.trial import FrozenTrial, TrialState

from sweeps.definition import SweepError, SweepSpec, enqueued, search_space, tuning_seeds
from sweeps.launch import is_hydra_override
from sweeps.recovery import close_dead_runs
from sweeps.trial_report import PRUNER_ATTR, STORAGE_PASSWORD_ENV, open_storage
from trpo_exp.redact import redact_secrets, split_url_password, with_url_password
from trpo_exp.util import first_line

SLOT_ATTR = "sweep:slot"  # system attr of a pre-created trial: its slot index (kept by retries)
RUNS_ATTR = "sweep:runs"  # system attr: the trial's run dirs are trials/<this>/s<seed> (kept by retries)
FAILURE_ATTR = "sweep:failure"  # system attr of a trial whose runs raised (a real error)
LEASE_ATTR = "sweep:heartbeat"  # heartbeat for storages without Optuna's heartbeat (journal)
DEFINITION_ATTR = "sweep:definition"  # study user attr: what defines the results (see identity())
N_TRIALS_ATTR = "sweep:n_trials"  # study user attr, set once all slots exist

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def identity(spec: SweepSpec, run_overrides: list[str]) -> dict[str, Any]:
    """What must not change while a study is resumed: the space, the runs' settings (launcher
    choices aside, they do not change results), the tuning seeds and the objective."""
    return {"space": [asdict(p) for p in search_space(spec)],
            "overrides": [o for o in run_overrides if not is_hydra_override(o)],
            "seeds": tuning_seeds(spec), "objective": asdict(spec.objective)}


class SweepStudy:
    """One worker's handle on the sweep's studies (the main one and the report one)."""

    def __init__(self, spec: SweepSpec, url: str, pruner: dict[str, Any]):
        self.spec = spec
        # The password of a storage URL never reaches a file, a message or a run's config: it travels
        # in the environment (to this process's runs and the launchers' child processes).
        self.url, password = split_url_password(url)
        if password:
            os.environ[STORAGE_PASSWORD_ENV] = password
        url = self.url
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retries)
        self.stale_reason = f"no heartbeat from its worker for {spec.grace_period} s (the worker died or was killed)"
        try:
            with _init_lock(url):
                _check_journal(url)
                self.storage = open_storage(url, spec.heartbeat_interval, spec.grace_period, self._on_stale)
                self.storage.get_all_studies()  # touch it: unreachable or invalid storages fail here
        except SweepError:
            raise
        except Exception as err:  # SQLAlchemy, OS and driver errors alike
            raise SweepError(f"sweep.storage={url!r} is not usable: {type(err).__name__}: "
                             f"{redact_secrets(first_line(err))}") from None
        self.optuna_heartbeat = optuna.storages._heartbeat.is_heartbeat_enabled(self.storage)
        self.pruner_spec = pruner

    # --- creating / resuming --------------------------------------------------------------

    def open(self, definition: dict[str, Any]) -> None:
        from sweeps.trial_report import make_pruner

        with _init_lock(self.url):
            self.study = self._create_or_load(self.spec.study, make_pruner(self.pruner_spec))
            self.report = self._create_or_load(self.spec.study + ".report", None)
            self.created = DEFINITION_ATTR not in self.study.user_attrs
            if self.created:  # a new study: define it, then its slots
                self.study.set_user_attr(DEFINITION_ATTR, definition)
                self.study.set_user_attr(PRUNER_ATTR, self.pruner_spec)
                self.report.enqueue_trial({}, user_attrs={"kind": "report"})
            stored = self.study.user_attrs[DEFINITION_ATTR]
            if json.dumps(stored, sort_keys=True) != json.dumps(definition, sort_keys=True):
                changed = sorted(k for k in definition if stored.get(k) != definition[k])
                raise SweepError(f"sweep.study={self.spec.study!r} already exists in {self.url} with a different "
                                 f"{', '.join(changed)}: resume it unchanged, or choose a new sweep.study/sweep.dir")
            self._add_slots(self.spec.n_trials)

    def _create_or_load(self, name: str, pruner) -> optuna.Study:
        return optuna.create_study(study_name=name, storage=self.storage, direction="maximize",
                                   pruner=pruner, load_if_exists=True)

    def _add_slots(self, n_trials: int) -> None:
        have = int(self.study.user_attrs.get(N_TRIALS_ATTR, 0))
        if n_trials < have:
            raise SweepError(f"sweep.n_trials={n_trials} is not allowed: study {self.spec.study!r} already has "
                             f"{have} trials planned")
        fixed = enqueued(self.spec)
        for slot in range(have, n_trials):
            self._enqueue_slot(slot, f"{slot:04d}", fixed_params=fixed[slot] if slot < len(fixed) else {})
        self.study.set_user_attr(N_TRIALS_ATTR, n_trials)

    def _enqueue_slot(self, slot: int, runs: str, **system_attrs: Any) -> None:
        # "fixed_params" is how Optuna's own enqueue_trial passes parameters to the trial's suggest_*.
        # The retry callback copies system attrs, so a retry keeps the slot and the run dirs of the
        # trial it retries (and its runs resume from their checkpoints).
        self.study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING,
            system_attrs={"fixed_params": {}, SLOT_ATTR: slot, RUNS_ATTR: runs, **system_attrs}))

    def replace_failed(self, trial: FrozenTrial) -> bool:
        """Give a slot whose runs raised a fresh trial (new parameters), up to max_failed_trials."""
        trials = self.study.get_trials(deepcopy=False)
        if len([t for t in trials if FAILURE_ATTR in t.system_attrs]) > self.spec.max_failed_trials:
            return False
        slot = trial.system_attrs.get(SLOT_ATTR, -1)
        # New parameters need run dirs of their own: the old ones hold runs of another config,
        # which a run refuses to resume. One more key per replacement in this slot.
        keys = {t.system_attrs.get(RUNS_ATTR) for t in trials if t.system_attrs.get(SLOT_ATTR) == slot}
        self._enqueue_slot(slot, f"{slot:04d}-{len(keys)}", **{"sweep:replaces": trial.number})
        return True

    # --- claiming and finishing -------------------------------------------------------------

    def claim(self, study: optuna.Study) -> Optional[FrozenTrial]:
        """Atomically take a WAITING trial of ``study`` (WAITING -> RUNNING), or None."""
        self.recover_stale(study)
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    self.beat(t._trial_id)
                    return self.storage.get_trial(t._trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def new_trial(self, study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
        """The Trial object of a claimed trial, with a sampler seeded from (sampler.seed, number)
        so the parameters do not depend on which worker claimed it."""
        seed = int(np.random.SeedSequence([self.spec.sampler.seed, frozen.number]).generate_state(1)[0])
        if self.spec.sampler.name == "random":
            study.sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.spec.sampler.n_startup_trials,
                                                       multivariate=True, constant_liar=True)
        return optuna.Trial(study, frozen._trial_id)

    def pending(self, study: optuna.Study) -> int:
        """Trials not finished yet (waiting, or running in some worker, maybe a dead one)."""
        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))

    # --- heartbeats ---------------------------------------------------------------------------

    def beat(self, trial_id: int) -> None:
        if self.optuna_heartbeat:
            self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]  # RDB storage with heartbeat
        else:
            self.storage.set_trial_system_attr(trial_id, LEASE_ATTR, time.time())

    @contextmanager
    def heartbeat(self, trial_id: int) -> Iterator[None]:
        """Beat for ``trial_id`` every heartbeat_interval seconds while the block runs."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.spec.heartbeat_interval):
                try:
                    self.beat(trial_id)
                except optuna.exceptions.UpdateFinishedTrialError:
                    return
                except Exception as err:  # a transient storage error must not kill the trial
                    print(f"sweeps: heartbeat of trial id {trial_id} failed: {err}", flush=True)

        thread = threading.Thread(target=loop, name=f"heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release(self, study: optuna.Study, trial_id: int, why: str) -> Optional[int]:
        """Fail a trial this worker holds and re-queue it with the same parameters (as a stale one
        would be, without waiting for the grace period). Returns its number if it was re-queued."""
        try:
            if self.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                frozen = self.storage.get_trial(trial_id)
                return frozen.number if self.requeue(study, frozen, why) else None
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
        return None

    def _on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's heartbeat (RDB storages) just failed this trial: its worker stopped beating."""
        self.requeue(study, trial, self.stale_reason)

    def requeue(self, study: optuna.Study, trial: FrozenTrial, why: str) -> bool:
        """A trial just failed because its worker stopped (``why``): close the records its dead
        worker left open, re-queue it unless its retries are used up (then say so: its slot stays
        empty). Whether it was re-queued."""
        close_dead_runs(trial.user_attrs.get("run_dirs", []))
        self.retry(study, trial)
        if retries_left(trial, self.spec.max_retries):
            return True
        print(f"sweeps: {_label(study, trial)} FAILED and is not retried: {why}; "
              f"{_no_retry(trial, self.spec.max_retries)}", flush=True)
        return False

    def recover_stale(self, study: optuna.Study) -> None:
        """Fail RUNNING trials whose worker stopped beating; the retry callback re-queues each with
        the same parameters. Only one worker can fail a given trial, so only one retry is made."""
        if self.optuna_heartbeat:
            optuna.storages.fail_stale_trials(study)
            return
        deadline = time.time() - self.spec.grace_period
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            last = t.system_attrs.get(LEASE_ATTR)
            if last is None or last >= deadline:
                continue
            try:
                if self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                    self.requeue(study, self.storage.get_trial(t._trial_id), self.stale_reason)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass


def retries_left(trial: FrozenTrial, max_retries: int) -> bool:
    """Whether Optuna's retry callback re-queues this failed trial: as it counts, the trial and the
    trials it retries make its retry history, at most max_retries long."""
    return len(trial.system_attrs.get("retry_history", [])) + 1 <= max_retries


def not_retried(study: optuna.Study) -> list[FrozenTrial]:
    """Trials failed because their worker stopped (not because their runs raised) that no retry
    took over: their slots stay empty."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [t for t in trials
            if t.state == TrialState.FAIL and FAILURE_ATTR not in t.system_attrs and t.number not in retried]


def _label(study: optuna.Study, trial: FrozenTrial) -> str:
    slot = trial.system_attrs.get(SLOT_ATTR)
    return f"trial {trial.number} (slot {slot})" if slot is not None else f"trial {trial.number} of {study.study_name}"


def _no_retry(trial: FrozenTrial, max_retries: int) -> str:
    if max_retries == 0:
        return "sweep.max_retries=0 means no retry"
    return f"it was retried sweep.max_retries={max_retries} times already"


def _check_journal(url: str) -> None:
    """Optuna reads a journal file line by line and takes a last line without its newline for one
    being written: a file of garbage bytes passes as such, and Optuna then appends its first entry
    to it (and fails later with a traceback). Refused here, before anything is written to it."""
    path = _local_file(url) if url.startswith("journal:") else None
    if path is None or not path.is_file():
        return
    problem = _journal_problem(path)
    if problem is not None:
        raise SweepError(f"sweep.storage={url!r} is not usable: {path} is not a readable journal ({problem})")


def _journal_problem(path: Path) -> Optional[str]:
    try:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):  # the last line, maybe being written by another worker
                    # Optuna writes each entry as compact JSON starting with its op_code.
                    return None if line.startswith(b'{"op_code":') else f"line {number} is not a journal entry"
                if not _journal_entry(line):
                    return f"line {number} is not a journal entry"
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror}"
    return None


def _journal_entry(line: bytes) -> bool:
    try:
        entry = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(entry, dict) and "op_code" in entry


INIT_LOCK_KEY = 0x7472706F5F657870  # "trpo_exp": the PostgreSQL advisory lock of sweep start-up


@contextmanager
def _init_lock(url: str) -> Iterator[None]:
    """Serialise storage and study creation between workers: Optuna creates its schema, and the
    sweep its study and trial slots, in several statements, so two workers starting at once could
    both do it (seen on PostgreSQL: "type studydirection already exists", and 12 COMPLETE trials
    for n_trials=6). SQLite and journal files: a file lock (workers of one machine); PostgreSQL: a
    session advisory lock in the database itself (workers anywhere); other storages: none."""
    if url.startswith("postgresql"):
        with _advisory_lock(url):
            yield
        return
    path = _local_file(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".sweep-init-lock", "a") as fh:  # not ".lock": Optuna's journal lock uses that name
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(with_url_password(url, os.environ.get(STORAGE_PASSWORD_ENV)), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": INIT_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": INIT_LOCK_KEY})
    finally:
        engine.dispose()


def _local_file(url: str) -> Optional[Path]:
    if url.startswith("journal:"):
        rest = url.split(":", 1)[1]
        return Path(rest[2:] if rest.startswith("//") else rest)
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):])
    return None


