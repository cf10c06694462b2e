"""The training side of an Optuna sweep: report intermediate returns to the study's storage and stop
the run when the study's pruner says so.

A sweep trial runs several seeds, each an ordinary run in its own process, all reporting to the same
Optuna trial. Optuna keeps one value per (trial, step), so seed k of n reports iteration i under
step ``(i - 1) * n + k``: the steps of different seeds interleave, a step means the same (seed,
iteration) in every trial (the median pruner compares like with like), and the trial's last step
grows with its total training progress (what Hyperband's resource counts). Pruning is decided by
whichever seed first sees it; it marks the trial so its sibling seeds stop at their next iteration.

Nothing here knows about sweep definitions: the pruner is rebuilt from a plain spec that the sweep
stores in the study's user attributes (``PRUNER_ATTR``). The reporter reaches the run as a training
hook (the run config's ``hooks.trial``, see ``hook_overrides``): the engine knows nothing of Optuna.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Callable, Optional

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from trpo_exp.engine import StopRun
from trpo_exp.record import Status
from trpo_exp.redact import with_url_password

HOOK_NAME = "trial"
"""The run config's hooks.<name> of the reporter; analysis groups runs by hooks.trial.study/number."""
TRIAL_KEYS = (f"hooks.{HOOK_NAME}.study", f"hooks.{HOOK_NAME}.number")

STORAGE_PASSWORD_ENV = "TRPO_EXP_STORAGE_PASSWORD"
"""The storage URL's password, kept out of URLs that are written anywhere (see SweepStudy)."""
PRUNER_ATTR = "sweep:pruner"  # study user attr: {"name": ..., "kwargs": {...}} (Optuna step units)
PRUNED_ATTR = "sweep:pruned"  # trial system attr set by the seed that decided to prune


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    name, kwargs = spec["name"], dict(spec.get("kwargs", {}))
    if name == "median":
        return optuna.pruners.MedianPruner(**kwargs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**kwargs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}")


def open_storage(url: str, heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                 stale_trial_callback: Optional[Callable[..., None]] = None) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: 'journal:<file>' is a JournalStorage on that file; anything
    else is an SQLAlchemy URL for RDBStorage (with Optuna's heartbeat when an interval is given).

    SQLite: every transaction starts with BEGIN IMMEDIATE. With the driver's default deferred
    transactions, Optuna's pop of a WAITING trial (SELECT, then UPDATE) is not atomic across
    processes, and two workers can both claim the same trial (seen here: 171 claims of 150 queued
    trials with 3 processes); taking the write lock first makes claims exclusive.
    """
    url = with_url_password(url, os.environ.get(STORAGE_PASSWORD_ENV))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if url.startswith("journal:"):
            path = url.split(":", 1)[1]
            path = path[2:] if path.startswith("//") else path
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        sqlite = url.startswith("sqlite:")
        engine_kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}} if sqlite else None
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, heartbeat_stale_trial_callback=stale_trial_callback)
    if sqlite:
        from sqlalchemy import event

        event.listen(storage.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def hook_overrides(storage: str, study: str, number: int, seed_index: int, num_seeds: int) -> dict[str, Any]:
    """The run config's ``hooks.trial`` entry that makes a run report to this trial."""
    return {"_target_": f"{__name__}.TrialReporter", "storage": storage, "study": study, "number": number,
            "seed_index": seed_index, "num_seeds": num_seeds}


class TrialReporter:
    """Training hook (see Trainer.train): report each iteration's mean training return to the
    Optuna trial and raise StopRun(pruned) when the study's pruner prunes the trial.

    ``seed_index`` of ``num_seeds``: which of the trial's seeds this run is (seed k of n reports
    iteration i as Optuna step (i - 1) * n + k, so the seeds' values interleave, never collide)."""

    def __init__(self, storage: str, study: str, number: int, seed_index: int = 0, num_seeds: int = 1):
        if not 0 <= seed_index < num_seeds:
            raise ValueError(f"seed_index={seed_index} must be in [0, num_seeds={num_seeds})")
        self.number, self.seed_index, self.num_seeds = number, seed_index, num_seeds
        self.storage = open_storage(storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            loaded = optuna.load_study(study_name=study, storage=self.storage)
            spec = loaded.user_attrs.get(PRUNER_ATTR, {"name": "none"})
            self.study = optuna.load_study(study_name=study, storage=self.storage, pruner=make_pruner(spec))
        self.prunes = spec["name"] != "none"
        self.trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)

    def step(self, iteration: int) -> int:
        return (iteration - 1) * self.num_seeds + self.seed_index

    def __call__(self, row: dict[str, Any]) -> None:
        self._check_running()
        value = row.get("return_mean")
        if value is None or not math.isfinite(value):
            return  # no episode ended in this iteration: nothing to report
        try:
            self.storage.set_trial_intermediate_value(self.trial_id, self.step(row["iteration"]), float(value))
        except optuna.exceptions.UpdateFinishedTrialError:
            self._check_running()  # finished meanwhile: stop as orphaned
            raise
        if self.prunes and self.study.pruner.prune(self.study, self.storage.get_trial(self.trial_id)):
            reason = (f"optuna trial {self.number} pruned at iteration {row['iteration']} "
                      f"(seed index {self.seed_index}, return_mean {value:.4g})")
            self.storage.set_trial_system_attr(self.trial_id, PRUNED_ATTR, reason)
            raise StopRun(Status.PRUNED, reason)

    def _check_running(self) -> None:
        """StopRun if a sibling seed pruned it or it is no longer running
        (its sweep worker died and the trial was failed and re-queued: this run is orphaned)."""
        frozen = self.storage.get_trial(self.trial_id)
        if PRUNED_ATTR in frozen.system_attrs:
            raise StopRun(Status.PRUNED, str(frozen.system_attrs[PRUNED_ATTR]))
        if frozen.state != TrialState.RUNNING:
            raise StopRun(Status.ABANDONED, f"optuna trial {self.number} is {frozen.state.name}, not RUNNING")
