"""Load runs from one source into a RunSet: discover -> cache -> read the rest -> check -> warn once.

Bad input never crashes a load. Runs that cannot be used (unreadable files, still running, failed,
pruned, no metric rows) are skipped; runs that can be used but look odd (damaged W&B file with an
intact prefix, config keys that differ from the other runs, no run.json, infinite metric values read
as missing) are kept and marked. Both
lists go into a single warning, and into the RunSet for the report. Only an empty selection is an
error (:class:`AnalysisError`).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from analysis import cache, params, sources
from analysis.errors import AnalysisError
from analysis.runset import RunSet
from analysis.sources.base import RUN_COLUMNS, STEP, Batch

# Statuses used without a mark. "unknown" is a W&B run from another program, or a record without
# run.json: nothing says it is unfinished, so it is kept (and marked).
FINISHED = "finished"
KEEP_BY_DEFAULT = {FINISHED, "unknown"}


class LoadWarning(UserWarning):
    """The one warning of a load: which runs were skipped or marked, and why."""


def load_runs(paths: Sequence[str], source: str = "records", *, cache_dir: str | Path | None = None,
              use_cache: bool = True, include_unfinished: bool = False, required: Sequence[str] = (),
              entity: str | None = None, api_filters: dict | str | None = None) -> RunSet:
    """Load every run found under ``paths`` (run dirs, their parents, or W&B projects for ``api``).

    Args:
        source: "records" (metrics.csv + run.json), "offline" (W&B offline files) or "api".
        cache_dir: Where the parquet cache lives (default ~/.cache/trpo_exp/analysis).
        include_unfinished: Keep running / failed / pruned runs (marked) instead of skipping them.
        required: Metrics a run must have at least one value of (e.g. the table's metric).
        entity, api_filters: For ``api``: the W&B entity and MongoDB-style run filters.
    Raises:
        AnalysisError: nothing found, or nothing usable left (the message says why).
    """
    if not paths:
        raise AnalysisError("no runs given: pass run directories, or a W&B project with --source api")
    module = sources.get(source)
    options = {"entity": entity, "filters": api_filters} if source == "api" else {}
    candidates = module.discover(list(paths), **options)
    if not candidates:
        raise AnalysisError(f"no runs found in {', '.join(map(str, paths))} (source {source}: "
                            f"{_WHAT[source]})")
    runs, metrics = _read_with_cache(module, candidates, source, list(map(str, paths)), options,
                                     Path(cache_dir) if cache_dir else cache.default_dir(), use_cache)
    runset = _check(runs, metrics, include_unfinished, list(required))
    if runset.skipped or runset.marked:
        warnings.warn(format_problems(runset), LoadWarning, stacklevel=2)
    if not len(runset):
        raise AnalysisError(f"no usable runs: all {len(runs)} found were skipped "
                            f"({_reasons(runset.skipped)})")
    return runset


_WHAT = {"records": "looked for directories with run.json or metrics.csv",
         "offline": "looked for wandb/offline-run-*/run-*.wandb", "api": "the project has no matching runs"}


def format_problems(runset: RunSet) -> str:
    """The one warning: skipped and marked runs, grouped by reason, every run named."""
    parts = []
    for verb, entries in (("skipped", runset.skipped), ("marked", runset.marked)):
        if entries:
            groups = group_by_reason(entries)
            parts.append(f"{verb} {len(entries)} run(s): " + "; ".join(
                f"{why} [{len(runs)}]: {', '.join(runs)}" for why, runs in groups.items()))
    return "analysis: " + " | ".join(parts)


def group_by_reason(entries: list[str]) -> dict[str, list[str]]:
    """["<run>: <reason>", ...] -> {reason: [run, ...]}, reasons in first-seen order."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        run, _, why = entry.partition(": ")
        groups.setdefault(why, []).append(run)
    return groups


def _reasons(skipped: list[str]) -> str:
    counts = Counter(s.rsplit(": ", 1)[-1].split(" (")[0] for s in skipped)
    return ", ".join(f"{n} {why}" for why, n in counts.most_common())


# ------------------------------------------------------------------------------------------ reading


def _read_with_cache(module, candidates, source, paths, options, cache_dir, use_cache):
    key = cache.entry_key(source, paths, {k: v for k, v in options.items() if v is not None})
    cached = cache.read(cache_dir, key) if use_cache else None
    fresh = {c.run_id: c.fingerprint for c in candidates}
    keep_runs = pd.DataFrame(columns=list(RUN_COLUMNS))
    keep_metrics = pd.DataFrame()
    todo = list(candidates)
    if cached is not None:
        old_runs, old_metrics = cached
        current = old_runs["run_id"].map(fresh).eq(old_runs["fingerprint"])
        keep_runs = old_runs[current]
        keep_metrics = old_metrics[old_metrics["run_id"].isin(set(keep_runs["run_id"]))]
        done = set(keep_runs["run_id"])
        todo = [c for c in candidates if c.run_id not in done]
    if not todo:
        return keep_runs, keep_metrics
    batch: Batch = module.read(todo)
    new_runs = pd.DataFrame.from_records(batch.runs, columns=list(RUN_COLUMNS))
    new_metrics = [m for m in batch.metrics]
    frames = [f for f in (keep_metrics, *new_metrics) if len(f)]
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"run_id": [], STEP: []})
    metrics["run_id"] = _as_category(metrics["run_id"])
    runs = pd.concat([r for r in (keep_runs, new_runs) if len(r)], ignore_index=True)
    runs = runs[runs["run_id"].isin(fresh)]  # runs deleted since the last load
    if use_cache:
        cache.write(cache_dir, key, runs, metrics)
    return runs, metrics


def _as_category(run_ids: pd.Series) -> pd.Series:
    """Run ids as a categorical of strings: a metrics row's run id is one small integer code, not a
    path string per row (hashing 5,000,000 strings took seconds at 10,000 runs)."""
    if isinstance(run_ids.dtype, pd.CategoricalDtype):
        return run_ids.cat.rename_categories(run_ids.cat.categories.astype(str))
    return run_ids.astype(str).astype("category")


# ----------------------------------------------------------------------------------------- checking


def _check(runs: pd.DataFrame, metrics: pd.DataFrame, include_unfinished: bool, required: list[str]) -> RunSet:
    runs = runs.drop_duplicates("run_id").set_index("run_id", drop=False).sort_index()
    label = runs["path"].astype(str)
    marks: dict[str, list[str]] = {r: [p] if p else [] for r, p in runs["problems"].items()}
    skipped = {run_id: why for run_id, why in runs["skip"].items() if why}
    metrics = _infinite_to_missing(metrics, marks)
    _check_status(runs, include_unfinished, skipped, marks)
    _check_metrics(runs, metrics, required, skipped, marks)
    usable = runs.index[~runs.index.isin(list(skipped))]
    for run_id, note in _schema_marks(runs.loc[usable, "config"]).items():
        marks[run_id].append(note)

    kept = runs.loc[usable].drop(columns=["skip"])
    kept["problems"] = ["; ".join(marks[r]) for r in kept.index]
    kept.index.name = None
    kept["seed"] = kept["seed"].astype("Int64")
    if not runs.index.isin(list(skipped)).any():  # the usual case: no row to drop, no copy
        metrics = metrics.reset_index(drop=True)
    else:
        metrics = metrics[metrics["run_id"].isin(set(usable))]
    metrics = metrics.assign(run_id=metrics["run_id"].cat.set_categories(kept.index))  # rows all in kept
    if not _sorted_by_run_and_step(metrics):  # sources write runs in order: skip copying 1 GB
        metrics = metrics.sort_values(["run_id", STEP], kind="stable")
    metrics = metrics.reset_index(drop=True)
    metrics = metrics.dropna(axis=1, how="all")
    return RunSet(runs=kept, metrics=metrics,
                  skipped=[f"{label[r]}: {why}" for r, why in sorted(skipped.items())],
                  marked=[f"{label[r]}: {'; '.join(marks[r])}" for r in kept.index if marks[r]])


def _infinite_to_missing(metrics: pd.DataFrame, marks: dict[str, list[str]]) -> pd.DataFrame:
    """inf and -inf read as missing (NaN), each run marked with its columns; rows whose step was
    infinite are dropped, as rows without a step are.

    One infinite value makes every mean, band and axis it enters infinite, and a curve with no
    finite point failed inside matplotlib, after half the report was written.
    """
    fixed, found = _infinite_values(metrics)
    for run_id, columns in found.items():
        if run_id in marks:
            marks[run_id].append(f"infinite values in {_few(columns)} read as missing")
    if not fixed:  # the usual case: no infinity anywhere, no copy
        return metrics
    metrics = metrics.assign(**fixed)
    return metrics[metrics[STEP].notna()] if STEP in fixed else metrics


def _infinite_values(metrics: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """{column: its values with NaN for inf} for the columns holding any, and {run id: those columns}."""
    codes, names = metrics["run_id"].cat.codes.to_numpy(), metrics["run_id"].cat.categories
    fixed: dict[str, np.ndarray] = {}
    found: dict[str, list[str]] = {}
    for column in metrics.columns:
        if column == "run_id" or not pd.api.types.is_float_dtype(metrics[column]):
            continue
        values = metrics[column].to_numpy()
        bad = np.isinf(values)
        if bad.any():
            fixed[str(column)] = np.where(bad, np.nan, values)
            for code in np.unique(codes[bad & (codes >= 0)]):  # -1: a row of no run
                found.setdefault(str(names[code]), []).append(str(column))
    return fixed, found


def _sorted_by_run_and_step(metrics: pd.DataFrame) -> bool:
    codes = metrics["run_id"].cat.codes.to_numpy()
    steps = metrics[STEP].to_numpy(float)
    if len(codes) < 2:
        return True
    dc, ds = np.diff(codes), np.diff(steps)
    return bool((dc >= 0).all() and ((dc > 0) | (ds >= 0)).all())


def _check_status(runs: pd.DataFrame, include_unfinished: bool, skipped: dict[str, str],
                  marks: dict[str, list[str]]) -> None:
    """Unfinished runs are skipped (or only marked, with ``include_unfinished``)."""
    for run_id, status in runs["status"].items():
        if run_id in skipped or status in KEEP_BY_DEFAULT:
            continue
        reason = runs.at[run_id, "reason"]
        text = f"{status}" + (f" ({reason})" if reason else "")
        if include_unfinished:
            marks[run_id].append(text)
        else:
            skipped[run_id] = text
    for run_id in runs.index[runs["status"].eq("unknown")]:
        if run_id not in skipped:
            marks[run_id].append("status unknown")


def _check_metrics(runs: pd.DataFrame, metrics: pd.DataFrame, required: list[str], skipped: dict[str, str],
                   marks: dict[str, list[str]]) -> None:
    """Runs without rows, or without any value of a required metric, are skipped; runs whose
    algorithm or env is unknown are kept and marked."""
    has_rows = set(metrics["run_id"].unique()) if len(metrics) else set()
    for run_id in runs.index:
        if run_id not in skipped and run_id not in has_rows:
            skipped[run_id] = "no metrics" + (f" ({marks[run_id][0]})" if marks[run_id] else "")
    for metric in required:
        with_metric = set(metrics.loc[metrics[metric].notna(), "run_id"].unique()) if metric in metrics else set()
        for run_id in runs.index:
            if run_id not in skipped and run_id not in with_metric:
                skipped[run_id] = f"no values of {metric}"
    for run_id in runs.index:
        if run_id not in skipped and not (runs.at[run_id, "algo"] and runs.at[run_id, "env"]):
            marks[run_id].append("algo or env unknown")
            runs.at[run_id, "algo"] = runs.at[run_id, "algo"] or "unknown"
            runs.at[run_id, "env"] = runs.at[run_id, "env"] or "unknown"


def _schema_marks(configs: pd.Series) -> dict[str, str]:
    """Runs whose set of config keys differs from the most common one among runs of the same
    algorithm (each algorithm has its own schema); a sweep's hooks.* keys are bookkeeping, not schema."""
    flat = {r: params.flatten(json.loads(c)) if c else {} for r, c in configs.items()}
    keysets = {r: frozenset(k for k in f if not k.startswith(("hooks.", "trial."))) for r, f in flat.items()}
    by_algo: dict[object, Counter[frozenset[str]]] = {}
    for run_id, keys in keysets.items():
        if keys:
            by_algo.setdefault(flat[run_id].get("algo.name"), Counter())[keys] += 1
    common = {algo: counts.most_common(1)[0][0] for algo, counts in by_algo.items()}  # once per algorithm:
    out = {}  # counting inside the loop below was quadratic (23 s at 10,000 runs)
    for run_id, keys in keysets.items():
        if not keys:
            continue
        usual = common[flat[run_id].get("algo.name")]
        if keys != usual:
            missing, extra = sorted(usual - keys), sorted(keys - usual)
            bits = ([f"missing {_few(missing)}"] if missing else []) + ([f"extra {_few(extra)}"] if extra else [])
            out[run_id] = "config schema differs from most runs of its algorithm (" + ", ".join(bits) + ")"
    return out


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")
