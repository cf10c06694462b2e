"""The shape every source produces, and helpers shared by the sources.

A run is one row of ``Batch.runs`` (metadata, the config as JSON, problems found while reading) plus
its rows in ``Batch.metrics``, a wide frame: ``run_id``, ``env_steps`` and one float column per
metric, named as in W&B (``rollout/return_mean``, ``eval/return_mean``, ``train/kl``, ...), whatever
the source, so analyses never care where a run came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd

from trpo_exp.record import STEP
from trpo_exp.record.reader import numeric_columns

__all__ = ["STEP", "RUN_COLUMNS", "Batch", "Candidate", "numeric_columns", "run_row"]

# One row per run in Batch.runs / RunSet.runs, in this order.
RUN_COLUMNS = ("run_id", "source", "path", "name", "algo", "env", "seed", "status", "reason", "group",
               "fingerprint", "config", "problems", "skip")


@dataclass(frozen=True)
class Candidate:
    """A run found by ``discover``: enough to decide whether the cached copy is still current."""

    run_id: str
    path: str
    fingerprint: str
    handle: Any = None  # source-specific (e.g. the wandb.Api run object); never cached


@dataclass
class Batch:
    runs: list[dict] = field(default_factory=list)
    metrics: list[pd.DataFrame] = field(default_factory=list)

    def add(self, run: dict, history: pd.DataFrame | None) -> None:
        self.runs.append(run)
        if history is not None and len(history):
            self.metrics.append(history.assign(run_id=run["run_id"]))


def run_row(candidate: Candidate, source: str, *, meta: dict, config: dict | None,
            problems: Iterable[str] = (), skip: str = "") -> dict:
    """One Batch.runs row. ``skip`` non-empty = unusable (e.g. unreadable file), kept to report it."""
    problems = list(problems)
    seed = seed_value(meta.get("seed"), problems)
    return {
        "run_id": candidate.run_id, "source": source, "path": candidate.path,
        "name": _str(meta.get("name")), "algo": _str(meta.get("algo")), "env": _str(meta.get("env")),
        "seed": seed,
        "status": _str(meta.get("status")) or "unknown", "reason": _str(meta.get("reason")),
        "group": _str(meta.get("group")), "fingerprint": candidate.fingerprint,
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "problems": "; ".join(problems), "skip": skip,
    }


MAX_SEED = 2**53  # the largest integer every float (the seed column on its way to Int64) holds exactly


def seed_value(seed: Any, problems: list[str]) -> float:
    """The seed as a float holding an integer, or NaN (and a note) when it is not a usable integer.

    A seed of 1.5 or 2**64 in a hand-edited or foreign run.json must not break the int64 seed column
    of every other run (it did: a TypeError, and an overflow warning that hung the report); the run
    is kept with an unknown seed and marked.
    """
    if seed is None:
        return math.nan
    ok = isinstance(seed, (int, float)) and not isinstance(seed, bool) and abs(seed) <= MAX_SEED \
        and float(seed).is_integer()  # abs first: float(10**400) overflows; NaN fails the comparison
    if not ok:
        problems.append(f"seed {_short(seed)} is not an integer seed (read as unknown)")
        return math.nan
    return float(seed)


def _short(value: Any, limit: int = 24) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _str(value: Any) -> str:
    return "" if value is None else str(value)
