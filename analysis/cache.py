"""Parquet cache of loaded runs, so a second report over the same runs skips parsing.

One entry per selection (source kind + the sources as given + options), holding two parquet files:
the runs table and the wide metrics table. Each run carries the fingerprint it was read with (file
sizes and mtimes, or the W&B server's state); on the next load only runs whose fingerprint changed,
or that are new, are read again, so a report over a sweep that is still running stays fast.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from trpo_exp.util import atomic_write

VERSION = 1  # bump when the cached shape changes


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trpo_exp" / "analysis"


def entry_key(kind: str, sources: list[str], options: dict) -> str:
    blob = json.dumps({"v": VERSION, "kind": kind, "sources": sources, "options": options}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def read(cache_dir: Path, key: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    runs_path, metrics_path = _paths(cache_dir, key)
    try:
        return pd.read_parquet(runs_path), pd.read_parquet(metrics_path)
    except Exception:  # missing, partial or from another pyarrow: just read the runs again
        return None


def write(cache_dir: Path, key: str, runs: pd.DataFrame, metrics: pd.DataFrame) -> None:
    """Write both files atomically (tmp + rename); a failure only costs speed, so it is ignored."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for frame, path in zip((runs, metrics), _paths(cache_dir, key)):
            atomic_write(path, functools.partial(_to_parquet, frame))
    except OSError:
        pass


def _to_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=False)


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return Path(cache_dir) / f"{key}.runs.parquet", Path(cache_dir) / f"{key}.metrics.parquet"
