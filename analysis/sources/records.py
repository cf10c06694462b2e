"""Local run records: a run directory holds metrics.csv, run.json and .hydra/config.yaml.

The files are read by the record's own reader (trpo_exp.record.reader: fast, tolerant of damage);
here they become analysis rows, with metrics.csv columns renamed to their W&B keys.

The reader parses many files in one pyarrow call, and some damage makes that whole call fail (a
duplicated column name, a line longer than pyarrow's block, a malformed line with non-UTF-8 bytes,
a non-UTF-8 header). Then the set is split in halves until the failing runs are alone (the other
runs are still parsed in bulk), and each of those is read line by line by :func:`read_damaged`,
which keeps what it can and says what it dropped: a mark on the run, never a crash.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import yaml

from analysis.errors import AnalysisError
from analysis.sources.base import Batch, Candidate, run_row
from trpo_exp.record import HYDRA_CONFIG, METRICS_CSV, RUN_JSON, WANDB_KEYS
from trpo_exp.record.metrics import STEP
from trpo_exp.record.reader import RUN_INDEX, numeric_columns, read_info, read_metrics

NAME = "records"
FILES = (RUN_JSON, METRICS_CSV, HYDRA_CONFIG)
_SKIP_DIRS = {"wandb", ".hydra", "__pycache__", ".git"}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~6x faster when present


def discover(sources: Sequence[str], **_: object) -> list[Candidate]:
    """Every directory under ``sources`` holding a run.json or metrics.csv (runs do not nest)."""
    found: dict[str, Candidate] = {}
    for source in sources:
        root = Path(source)
        if not root.exists():
            hint = " (for a W&B project use --source api)" if "/" in source and not source.startswith((".", "/")) else ""
            raise AnalysisError(f"no such run directory: {source}{hint}")
        for run_dir in _run_dirs(root):
            path = os.path.abspath(run_dir)
            found.setdefault(path, Candidate(run_id=path, path=path, fingerprint=_fingerprint(path)))
    return sorted(found.values(), key=lambda c: c.path)


def _run_dirs(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        if RUN_JSON in filenames or METRICS_CSV in filenames:
            dirnames.clear()
            yield dirpath
        else:
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))


def _fingerprint(run_dir: str) -> str:
    parts = []
    for name in FILES:
        try:
            st = os.stat(os.path.join(run_dir, name))
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def read(candidates: Sequence[Candidate]) -> Batch:
    batch = Batch()
    # pyarrow parses the CSVs in its own threads without the GIL; the YAML and JSON files are read
    # meanwhile (a third of the cold load at 10,000 runs, now mostly hidden behind the parse).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        parsing = pool.submit(read_metrics_tolerant, [c.path for c in candidates])
        files = [_read_files(c.path) for c in candidates]
        metrics, problems = parsing.result()
    metrics = metrics.rename(columns=WANDB_KEYS)  # metrics.csv names -> the W&B names used everywhere
    for i, (cand, (info, config, file_notes)) in enumerate(zip(candidates, files)):
        notes = problems.get(i, []) + file_notes
        meta = {
            "name": info.get("name") or os.path.basename(cand.path),
            "algo": info.get("algo") or _get(config, "algo", "name"),
            "env": info.get("env_id") or _get(config, "env", "id"),
            "seed": info.get("seed", config.get("seed")),
            "status": info.get("status", "unknown"), "reason": info.get("reason"), "group": info.get("group"),
        }
        batch.runs.append(run_row(cand, NAME, meta=meta, config=config, problems=notes))
    if len(metrics):
        # One frame for all runs: splitting per run only to concatenate again costs seconds at 1,000 runs.
        run_ids = [c.run_id for c in candidates]
        codes = metrics.pop(RUN_INDEX).to_numpy()
        # Categorical, not 5,000,000 Python strings: 10,000 runs x 500 rows (issue 13's speed target).
        metrics.insert(0, "run_id", pd.Categorical.from_codes(codes, categories=run_ids))
        batch.metrics.append(metrics)
    return batch


def _read_files(run_dir: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """run.json, .hydra/config.yaml and the notes on them."""
    notes: list[str] = []
    info = read_info(run_dir, notes)
    return info, _read_config(os.path.join(run_dir, HYDRA_CONFIG), notes), notes


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _read_config(path: str, notes: list[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            config = yaml.load(f, Loader=_LOADER)
        if not isinstance(config, dict):
            raise ValueError("not a mapping")
        return config
    except FileNotFoundError:
        notes.append("no .hydra/config.yaml (no parameters)")
    except (OSError, ValueError, yaml.YAMLError) as err:
        notes.append(f"unreadable .hydra/config.yaml ({type(err).__name__})")
    return {}


# ------------------------------------------------------------------------------- damaged metrics.csv

MAX_LINE_BYTES = 1 << 20  # a real row is a few hundred bytes; anything near pyarrow's block is damage


def read_metrics_tolerant(run_dirs: list[str]) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """``read_metrics`` that never raises: a failing set is halved until each failing run is alone,
    then that run is read by :func:`read_damaged`. Same frame and problem notes as ``read_metrics``."""
    try:
        with _quiet_unraisable():
            return read_metrics(run_dirs)
    except Exception:  # pyarrow's errors, KeyError for a duplicated column, UnicodeDecodeError, ...
        pass
    if len(run_dirs) == 1:
        notes: list[str] = []
        frame = read_damaged(run_dirs[0], notes)
        frame.insert(0, RUN_INDEX, 0)
        return frame, ({0: notes} if notes else {})
    half = len(run_dirs) // 2
    frames, problems = [], {}
    for offset, part in ((0, run_dirs[:half]), (half, run_dirs[half:])):
        frame, notes_by_run = read_metrics_tolerant(part)
        if len(frame):
            frames.append(frame.assign(**{RUN_INDEX: frame[RUN_INDEX].to_numpy() + offset}))
        problems.update({i + offset: notes for i, notes in notes_by_run.items()})
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), problems


@contextlib.contextmanager
def _quiet_unraisable():
    """pyarrow calls the reader's invalid-row handler with the row's text decoded as UTF-8; for a
    non-UTF-8 line the decoding fails inside pyarrow, which prints "Exception ignored ... Traceback"
    through sys.unraisablehook and then fails the parse (handled by the caller). Keep stderr clean."""
    old = sys.unraisablehook
    sys.unraisablehook = lambda _unraisable: None
    try:
        yield
    finally:
        sys.unraisablehook = old


def read_damaged(run_dir: str, notes: list[str]) -> pd.DataFrame:
    """One metrics.csv read line by line: what the bulk parse could not take, kept where possible.

    Non-UTF-8 bytes become U+FFFD (so the value is not a number and reads as missing); a repeated
    column name keeps its first column; lines over ``MAX_LINE_BYTES`` or with the wrong number of
    fields are dropped. Every such repair is noted.
    """
    try:
        with open(os.path.join(run_dir, METRICS_CSV), "rb") as f:
            data = f.read()
    except OSError as err:
        notes.append(f"unreadable metrics.csv ({type(err).__name__})")
        return pd.DataFrame()
    lines = data.split(b"\n")
    header = _decode(lines[0].rstrip(b"\r"), notes, "header").split(",")
    keep = _first_of_each_name(header, notes)
    rows: list[list[str | None]] = []
    dropped: Counter[str] = Counter()
    for raw in lines[1:]:
        raw = raw.rstrip(b"\r")
        if not raw:
            continue
        if len(raw) > MAX_LINE_BYTES:
            dropped[f"over {MAX_LINE_BYTES >> 20} MB long"] += 1
            continue
        cells = _decode(raw, notes, "line").split(",")
        if len(cells) != len(header):
            dropped["malformed"] += 1
            continue
        rows.append([cells[i] or None for i in keep])  # an empty cell is a missing value, as in the bulk parse
    notes += [f"{n} {why} line(s) in metrics.csv dropped" for why, n in dropped.items()]
    frame = numeric_columns(pd.DataFrame(rows, columns=[header[i] for i in keep], dtype=object), notes)
    return frame[frame[STEP].notna()].reset_index(drop=True) if STEP in frame else frame.iloc[0:0]


def _decode(raw: bytes, notes: list[str], what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        note = f"non-UTF-8 bytes in a metrics.csv {what} (read as missing values)"
        if note not in notes:
            notes.append(note)
        return raw.decode("utf-8", errors="replace")


def _first_of_each_name(header: list[str], notes: list[str]) -> list[int]:
    """Indices of the columns to keep: the first of each name; repeated names are noted."""
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        seen.setdefault(name, i)
    repeated = sorted(name for name, n in Counter(header).items() if n > 1)
    if repeated:
        notes.append(f"duplicated column {', '.join(repeated)} in metrics.csv (first kept)")
    return sorted(seen.values())
