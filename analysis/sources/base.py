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

import numpy as np
import pandas as pd

STEP = "env_steps"

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


def numeric_columns(frame: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    """Every column as float64: booleans -> 0/1, text -> NaN (noted in ``problems``, never raised)."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            out[name] = col.astype("float64")
            continue
        mapped = col.map(_to_float)
        if mapped.isna().all() and col.notna().any():
            continue  # a text column (e.g. a W&B media key): not a metric, dropped silently
        if (mapped.isna() & col.notna()).any():
            problems.append(f"non-numeric values in {name} read as missing")
        out[name] = mapped.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def _to_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("True", "true"):
            return 1.0
        if text in ("False", "false"):
            return 0.0
        try:
            return float(text) if text else math.nan
        except ValueError:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
