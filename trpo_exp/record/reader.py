"""Reading run records back: run.json and metrics.csv, tolerant of damage.

One reader for everyone downstream (the multirun summary, the sweep objective, analysis). Nothing
here raises for a damaged record: problems come back as short notes (a metrics.csv line cut by a
crash, a missing run.json), and the caller decides what a note means for it.

Speed matters (analysis reads thousands of runs): instead of one CSV parse per run, files with the
same header are concatenated in memory, each line prefixed with its run's index, and parsed by one
pyarrow call. A malformed line is dropped by pyarrow's invalid-row handler and noted against its run.

Only regular files of sane size are read (:func:`read_capped`): a FIFO named metrics.csv blocked the
reader forever, and a link to /dev/zero was read until memory ran out.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from trpo_exp.record.files import METRICS_CSV, RUN_JSON
from trpo_exp.record.metrics import STEP

RUN_INDEX = "__run__"
"""Column of ``read_metrics``' frame: the index of the run (in the run_dirs given) a row belongs to."""

# Largest files read. Real records are orders of magnitude smaller; past these a file is not a record
# (a runaway or foreign file) and reading it would exhaust memory: every metrics.csv of a bulk parse
# is held in memory at once, and run.json is parsed whole.
MAX_METRICS_BYTES = 1 << 30
MAX_RUN_JSON_BYTES = 64 << 20

_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
          stat.S_IFSOCK: "socket", stat.S_IFDIR: "directory"}


class UnreadableRecord(OSError):
    """A run file that must not be read: not a regular file, or larger than its cap. The message
    is the note, e.g. "metrics.csv is not a regular file (FIFO)"."""


def file_problem(run_dir: str | os.PathLike, name: str, limit: int) -> str:
    """Why ``run_dir/name`` must not be read ("" when it may be, or cannot be stat'ed: opening it
    then gives the usual error, e.g. FileNotFoundError). Looks at the file without opening it."""
    try:
        st = os.stat(os.path.join(run_dir, name))
    except OSError:
        return ""
    return _stat_problem(name, st, limit)


def read_capped(run_dir: str | os.PathLike, name: str, limit: int) -> bytes:
    """The bytes of ``run_dir/name``; :class:`UnreadableRecord` unless it is a regular file of at
    most ``limit`` bytes. A device is never opened; the file is opened non-blocking (a FIFO swapped
    in after the check must not block the open) and checked again on the open descriptor."""
    problem = file_problem(run_dir, name, limit)
    if problem:
        raise UnreadableRecord(problem)
    fd = os.open(os.path.join(run_dir, name), os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        problem = _stat_problem(name, os.fstat(fd), limit)
        if problem:
            raise UnreadableRecord(problem)
        os.set_blocking(fd, True)
        data = f.read(limit + 1)  # never more than the cap, should the file grow meanwhile
    if len(data) > limit:
        raise UnreadableRecord(f"{name} is larger than {_size(limit)}")
    return data


def _stat_problem(name: str, st: os.stat_result, limit: int) -> str:
    if not stat.S_ISREG(st.st_mode):
        return f"{name} is not a regular file ({_KINDS.get(stat.S_IFMT(st.st_mode), 'special file')})"
    if st.st_size > limit:
        return f"{name} is larger than {_size(limit)}"
    return ""


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


def read_info(run_dir: str | os.PathLike, notes: list[str] | None = None) -> dict[str, Any]:
    """run.json as a dict; {} (and a note) when it is missing or unreadable."""
    notes = notes if notes is not None else []
    try:
        info = json.loads(read_capped(run_dir, RUN_JSON, MAX_RUN_JSON_BYTES))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        return info
    except FileNotFoundError:
        notes.append("no run.json (status unknown)")
    except UnreadableRecord as err:
        notes.append(str(err))
    except (OSError, ValueError) as err:
        notes.append(f"unreadable run.json ({type(err).__name__})")
    return {}


@dataclass
class RunData:
    """One run read back: its run.json, its metrics (CSV column names, floats) and problems."""

    info: dict[str, Any]
    metrics: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def read_run(run_dir: str | os.PathLike) -> RunData:
    notes: list[str] = []
    info = read_info(run_dir, notes)
    frame, problems = read_metrics([str(run_dir)])
    if RUN_INDEX in frame:
        frame = frame.drop(columns=[RUN_INDEX]).reset_index(drop=True)
    return RunData(info=info, metrics=frame, notes=notes + problems.get(0, []))


def _read_metrics_bulk(run_dirs: Sequence[str]) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """All files in one pyarrow parse per header (fast); raises on damage it cannot skip."""
    problems: dict[int, list[str]] = defaultdict(list)
    by_header: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
    for i, run_dir in enumerate(run_dirs):
        try:
            data = read_capped(run_dir, METRICS_CSV, MAX_METRICS_BYTES)
        except FileNotFoundError:
            continue  # the caller reports runs without metrics as it sees fit
        except UnreadableRecord as err:
            problems[i].append(str(err))
            continue
        except OSError as err:
            problems[i].append(f"unreadable metrics.csv ({type(err).__name__})")
            continue
        header, _, body = data.partition(b"\n")
        if body.strip():
            by_header[header.rstrip(b"\r")].append((i, body))
    frames = [_parse_group(header, files, problems) for header, files in by_header.items()]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), dict(problems)


def _parse_group(header: bytes, files: list[tuple[int, bytes]], problems: dict[int, list[str]]) -> pd.DataFrame:
    parts = [RUN_INDEX.encode() + b"," + header + b"\n"]
    for i, body in files:
        prefix = b"%d," % i
        parts.append(prefix + body.rstrip(b"\n").replace(b"\n", b"\n" + prefix) + b"\n")
    bad: dict[int, int] = defaultdict(int)

    def on_invalid(row: Any) -> str:  # a cut or garbled line: drop it, remember whose it was
        head = (row.text or "").split(",", 1)[0]
        if head.isdigit():
            bad[int(head)] += 1
        return "skip"

    table = pacsv.read_csv(io.BytesIO(b"".join(parts)),
                           parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                           convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    for i, count in bad.items():
        problems[i].append(f"{count} malformed line(s) in metrics.csv dropped")
    run_index = table.column(RUN_INDEX).to_numpy()
    table = table.drop_columns([RUN_INDEX])
    frame = _to_float_frame(table, problems, run_index)
    frame.insert(0, RUN_INDEX, run_index)
    return frame[frame[STEP].notna()] if STEP in frame else frame.iloc[0:0]


def _to_float_frame(table: pa.Table, problems: dict[int, list[str]], run_index: np.ndarray) -> pd.DataFrame:
    numeric = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type) \
                or pa.types.is_null(col.type):
            numeric[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:  # text in a numeric column (garbled line): coerce and note the runs it came from
            notes: list[str] = []
            values = numeric_columns(pd.DataFrame({name: col.to_pandas()}), notes)
            numeric[name] = values[name].to_numpy() if name in values else np.full(len(col), np.nan)
            bad = pd.isna(numeric[name]) & col.is_valid().to_numpy(zero_copy_only=False)
            for i in sorted(set(run_index[bad].tolist())):
                problems[int(i)].append(f"non-numeric values in {name} read as missing")
    return pd.DataFrame(numeric)


def numeric_columns(frame: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    """Every column as float64: booleans -> 0/1, text -> NaN (noted in ``problems``, never raised)."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            out[name] = col.astype("float64")
            continue
        mapped = col.map(to_float)
        if mapped.isna().all() and col.notna().any():
            continue  # a text column (e.g. a W&B media key): not a metric, dropped silently
        if (mapped.isna() & col.notna()).any():
            problems.append(f"non-numeric values in {name} read as missing")
        out[name] = mapped.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def to_float(value: Any) -> float:
    """A recorded value as a float: booleans (also 'True'/'false' text) -> 1/0, anything else
    that is not a number -> NaN."""
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


# --------------------------------------------------------------------------- damaged metrics.csv
#
# Some damage makes a whole bulk parse fail (a duplicated column name, a line longer than pyarrow's
# block, a malformed line with non-UTF-8 bytes, a non-UTF-8 header). Then the set is split in halves
# until the failing runs are alone (the other runs are still parsed in bulk), and each of those is
# read line by line by ``read_damaged``, which keeps what it can and says what it dropped.

MAX_LINE_BYTES = 1 << 20  # a real row is a few hundred bytes; anything near pyarrow's block is damage


def read_metrics(run_dirs: Sequence[str]) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """Every run's metrics.csv in one wide float frame (CSV column names, the run's index in
    ``RUN_INDEX``; rows without a step are dropped) and the problems found, by run index. Never raises
    for a damaged file: a failing set is halved until each failing run is alone, then that run is
    read by ``read_damaged``."""
    try:
        with _quiet_unraisable():
            return _read_metrics_bulk(run_dirs)
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
        frame, notes_by_run = read_metrics(part)
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
        data = read_capped(run_dir, METRICS_CSV, MAX_METRICS_BYTES)
    except UnreadableRecord as err:
        notes.append(str(err))
        return pd.DataFrame()
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
