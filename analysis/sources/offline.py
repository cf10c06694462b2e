"""W&B offline runs (``.../wandb/offline-run-*/run-<id>.wandb``) through trpo_exp's offline reader.

The reader already recovers what is intact in a damaged file and warns once per file; here that
warning becomes a problem noted against the run, so the user gets the one summary warning of the load.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from analysis.errors import AnalysisError
from analysis.sources import wandb_rows
from analysis.sources.base import STEP, Batch, Candidate, run_row
from trpo_exp.record.wandb_file import read_offline_run
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
    """One analysis run per W&B run id. A run resumed after an interruption (trpo_exp's resume)
    continues its W&B run in a new offline-run-* directory beside the first: those segments are
    merged in time order (history rows by step, each step once; config and summary of the last).
    The same run found in another place (copied, or synced and kept) counts once."""
    batch = Batch()
    first: dict[str, tuple[Candidate, Path]] = {}
    segments: dict[str, list[tuple[Candidate, Any, list[str]]]] = {}
    for cand in candidates:  # sorted paths: a run's segments in time order
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
        wandb_dir = Path(cand.path).parent.parent
        if run.run_id in first and first[run.run_id][1] != wandb_dir:
            batch.add(run_row(cand, NAME, meta={}, config=None,
                              skip=f"duplicate of W&B run {run.run_id} at {first[run.run_id][0].path}"), None)
            continue
        first.setdefault(run.run_id, (cand, wandb_dir))
        segments.setdefault(run.run_id, []).append((cand, run, notes))
    for parts in segments.values():
        cand, last, _ = parts[-1]
        notes = [n for _, _, ns in parts for n in ns]
        if len(parts) > 1:
            notes.append(f"resumed run: {len(parts)} W&B segments merged")
        frames = [wandb_rows.history_frame(run.history, notes) for _, run, _ in parts]
        frames = [f for f in frames if len(f)]
        history = pd.concat(frames, ignore_index=True).drop_duplicates(STEP, keep="first") if frames else None
        meta = wandb_rows.meta(last.config, last.summary, name=last.name, group=last.group, tags=last.tags)
        batch.add(run_row(parts[0][0], NAME, meta=meta, config=last.config, problems=notes), history)
    return batch


def _first_line(err: BaseException) -> str:
    return f"unreadable: {first_line(err)}"
