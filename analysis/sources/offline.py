"""W&B offline runs (``.../wandb/offline-run-*/run-<id>.wandb``) through trpo_exp's offline reader.

The reader already recovers what is intact in a damaged file and warns once per file; here that
warning becomes a problem noted against the run, so the user gets the one summary warning of the load.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

from analysis.errors import AnalysisError
from analysis.sources import wandb_rows
from analysis.sources.base import Batch, Candidate, run_row
from analysis.sources.wandb_file import read_offline_run
from trpo_exp.util import first_line

NAME = "offline"


def discover(sources: Sequence[str], **_: object) -> list[Candidate]:
    """Every run-*.wandb file under ``sources`` (a file, an offline-run-* dir, or any parent dir)."""
    files: set[str] = set()
    for source in sources:
        root = Path(source)
        if not root.exists():
            raise AnalysisError(f"no such file or directory: {source}")
        if root.is_file():
            files.add(os.path.abspath(root))
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in ("files", "logs", "tmp", ".hydra")]
            if os.path.basename(dirpath).startswith("offline-run-"):
                files.update(os.path.abspath(os.path.join(dirpath, f)) for f in filenames
                             if f.startswith("run-") and f.endswith(".wandb"))
    out = []
    for path in sorted(files):
        st = os.stat(path)
        out.append(Candidate(run_id=path, path=path, fingerprint=f"{st.st_mtime_ns}:{st.st_size}"))
    return out


def read(candidates: Sequence[Candidate]) -> Batch:
    batch = Batch()
    seen: dict[str, str] = {}
    for cand in candidates:
        notes: list[str] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run = read_offline_run(cand.path)
        except (OSError, ValueError) as err:
            batch.add(run_row(cand, NAME, meta={}, config=None, skip=_first_line(err)), None)
            continue
        if caught or run.warnings:
            notes.append(f"damaged W&B file, {len(run.warnings)} part(s) lost")
        if run.run_id in seen:  # the same run copied twice (or synced and kept): count it once
            batch.add(run_row(cand, NAME, meta={}, config=None,
                              skip=f"duplicate of W&B run {run.run_id} at {seen[run.run_id]}"), None)
            continue
        seen[run.run_id] = cand.path
        meta = wandb_rows.meta(run.config, run.summary, name=run.name, group=run.group, tags=run.tags)
        history = wandb_rows.history_frame(run.history, notes)
        batch.add(run_row(cand, NAME, meta=meta, config=run.config, problems=notes), history)
    return batch


def _first_line(err: BaseException) -> str:
    return f"unreadable: {first_line(err)}"
