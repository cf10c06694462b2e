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
    seed = meta.get("seed")
    return {
        "run_id": candidate.run_id, "source": source, "path": candidate.path,
        "name": _str(meta.get("name")), "algo": _str(meta.get("algo")), "env": _str(meta.get("env")),
        "seed": float(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else math.nan,
        "status": _str(meta.get("status")) or "unknown", "reason": _str(meta.get("reason")),
        "group": _str(meta.get("group")), "fingerprint": candidate.fingerprint,
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "problems": "; ".join(problems), "skip": skip,
    }


def _str(value: Any) -> str:
    return "" if value is None else str(value)
