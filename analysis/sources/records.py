"""Local run records: a run directory holds metrics.csv, run.json and .hydra/config.yaml.

Speed matters here (the benchmark reads 1,000 runs x 500 rows): instead of one CSV parse per run,
files with the same header are concatenated in memory, each line prefixed with its run's index, and
parsed by one pyarrow call. A malformed line (a run killed mid-write) is dropped by pyarrow's
invalid-row handler and noted against its run rather than failing the whole batch.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from analysis.errors import AnalysisError
from analysis.sources.base import STEP, Batch, Candidate, numeric_columns, run_row
from trpo_exp.record import WANDB_KEYS

NAME = "records"
FILES = ("run.json", "metrics.csv", os.path.join(".hydra", "config.yaml"))
_SKIP_DIRS = {"wandb", ".hydra", "__pycache__", ".git"}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~6x faster when present
_RUN_COL = "__run__"


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


def _run_dirs(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        if "run.json" in filenames or "metrics.csv" in filenames:
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
    metrics, problems = _read_metrics([c.path for c in candidates])
    for i, cand in enumerate(candidates):
        notes = problems.get(i, [])
        info = _read_json(os.path.join(cand.path, "run.json"), notes)
        config = _read_config(os.path.join(cand.path, ".hydra", "config.yaml"), notes)
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
        codes = metrics.pop(_RUN_COL).to_numpy()
        metrics.insert(0, "run_id", pd.Categorical.from_codes(codes, categories=run_ids).astype(str))
        batch.metrics.append(metrics)
    return batch


def _get(tree: dict, *keys: str):
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _read_json(path: str, notes: list[str]) -> dict:
    try:
        with open(path, "rb") as f:
            info = json.load(f)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        return info
    except FileNotFoundError:
        notes.append("no run.json (status unknown)")
    except (OSError, ValueError) as err:
        notes.append(f"unreadable run.json ({type(err).__name__})")
    return {}


def _read_config(path: str, notes: list[str]) -> dict:
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


def _read_metrics(run_dirs: Sequence[str]) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """Parse every metrics.csv: one wide frame with the run's index in ``__run__``, and problems."""
    problems: dict[int, list[str]] = defaultdict(list)
    by_header: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
    for i, run_dir in enumerate(run_dirs):
        try:
            with open(os.path.join(run_dir, "metrics.csv"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue  # reported as "no metrics" when the run set is built
        except OSError as err:
            problems[i].append(f"unreadable metrics.csv ({type(err).__name__})")
            continue
        header, _, body = data.partition(b"\n")
        if body.strip():
            by_header[header.rstrip(b"\r")].append((i, body))
    frames = [_parse_group(header, files, problems) for header, files in by_header.items()]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), problems


def _parse_group(header: bytes, files: list[tuple[int, bytes]], problems: dict[int, list[str]]) -> pd.DataFrame:
    parts = [_RUN_COL.encode() + b"," + header + b"\n"]
    for i, body in files:
        prefix = b"%d," % i
        parts.append(prefix + body.rstrip(b"\n").replace(b"\n", b"\n" + prefix) + b"\n")
    bad: dict[int, int] = defaultdict(int)

    def on_invalid(row) -> str:  # a cut or garbled line: drop it, remember whose it was
        head = (row.text or "").split(",", 1)[0]
        if head.isdigit():
            bad[int(head)] += 1
        return "skip"

    table = pacsv.read_csv(io.BytesIO(b"".join(parts)),
                           parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                           convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    for i, count in bad.items():
        problems[i].append(f"{count} malformed line(s) in metrics.csv dropped")
    run_index = table.column(_RUN_COL).to_numpy()
    table = table.drop_columns([_RUN_COL])
    frame = _to_float_frame(table, problems, run_index)
    frame.insert(0, _RUN_COL, run_index)
    frame = frame.rename(columns=WANDB_KEYS)  # metrics.csv names -> the W&B names used everywhere
    return frame[frame[STEP].notna()] if STEP in frame else frame.iloc[0:0]


def _to_float_frame(table: pa.Table, problems: dict[int, list[str]], run_index) -> pd.DataFrame:
    numeric = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type) \
                or pa.types.is_null(col.type):
            numeric[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:  # text in a numeric column (garbled line): coerce and note the runs it came from
            notes: list[str] = []
            values = numeric_columns(pd.DataFrame({name: col.to_pandas()}), notes)
            numeric[name] = values[name].to_numpy() if name in values else pd.Series(float("nan"), index=range(len(col))).to_numpy()
            bad = pd.isna(numeric[name]) & col.is_valid().to_numpy(zero_copy_only=False)
            for i in sorted(set(run_index[bad].tolist())):
                problems[int(i)].append(f"non-numeric values in {name} read as missing")
    return pd.DataFrame(numeric)
