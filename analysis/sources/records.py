"""Local run records: a run directory holds metrics.csv, run.json and .hydra/config.yaml.

The files are read by the record's own reader (trpo_exp.record.reader: fast, tolerant of damage);
here they become analysis rows, with metrics.csv columns renamed to their W&B keys. A run with a
file that is not a regular file (a FIFO, a link to a device) or is absurdly large is skipped before
any of its files is opened: such a file hung the whole report or exhausted its memory.
"""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import yaml

from analysis.errors import AnalysisError
from analysis.sources.base import Batch, Candidate, run_row
from trpo_exp.record import HYDRA_CONFIG, METRICS_CSV, RUN_JSON, WANDB_KEYS
from trpo_exp.record.reader import (
    MAX_METRICS_BYTES,
    MAX_RUN_JSON_BYTES,
    RUN_INDEX,
    UnreadableRecord,
    file_problem,
    read_capped,
    read_info,
    read_metrics,
)

NAME = "records"
FILES = (RUN_JSON, METRICS_CSV, HYDRA_CONFIG)
_SKIP_DIRS = {"wandb", ".hydra", "__pycache__", ".git"}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~6x faster when present
# A real Hydra config is a few KB; a larger file is not one, and is parsed whole into memory.
MAX_CONFIG_BYTES = 64 << 20
LIMITS = ((RUN_JSON, MAX_RUN_JSON_BYTES), (METRICS_CSV, MAX_METRICS_BYTES), (HYDRA_CONFIG, MAX_CONFIG_BYTES))


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
    unsafe = {c.run_id: unsafe_file(c.path) for c in candidates}
    batch = _read_runs([c for c in candidates if not unsafe[c.run_id]])
    for cand in candidates:
        if unsafe[cand.run_id]:
            batch.runs.append(run_row(cand, NAME, meta={"name": os.path.basename(cand.path)}, config=None,
                                      skip=unsafe[cand.run_id]))
    return batch


def unsafe_file(run_dir: str) -> str:
    """Why the run must be skipped before any of its files is opened ("" when none): a file that is
    not a regular file or is over its cap (see ``LIMITS``)."""
    for name, limit in LIMITS:
        problem = file_problem(run_dir, name, limit)
        if problem:
            return problem
    return ""


def _read_runs(candidates: Sequence[Candidate]) -> Batch:
    batch = Batch()
    # pyarrow parses the CSVs in its own threads without the GIL; the YAML and JSON files are read
    # meanwhile (a third of the cold load at 10,000 runs, now mostly hidden behind the parse).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        parsing = pool.submit(read_metrics, [c.path for c in candidates])
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
    return info, _read_config(run_dir, notes), notes


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _read_config(run_dir: str, notes: list[str]) -> dict[str, Any]:
    try:
        config = yaml.load(read_capped(run_dir, HYDRA_CONFIG, MAX_CONFIG_BYTES), Loader=_LOADER)
        if not isinstance(config, dict):
            raise ValueError("not a mapping")
        return config
    except FileNotFoundError:
        notes.append("no .hydra/config.yaml (no parameters)")
    except UnreadableRecord as err:  # replaced since the check in read(): note it, never block on it
        notes.append(str(err))
    except (OSError, ValueError, yaml.YAMLError) as err:
        notes.append(f"unreadable .hydra/config.yaml ({type(err).__name__})")
    return {}
