"""Aggregation over seeds: final performance per run, statistics per setting, curves on a step grid.

* Final performance of a run = the mean of its last ``last_k`` values of a metric (evaluations by
  default), so one noisy last evaluation does not decide a table cell.
* Learning curves: runs log at their own env steps (batch sizes differ, vector envs round), so every
  run is interpolated linearly onto one grid per environment, and never extrapolated: outside
  [first, last] logged step a run has no value. A setting's curve covers only the steps where all of
  its runs have values, so the mean never silently switches to fewer seeds where a run ends.
"""

from __future__ import annotations

from typing import Collection

import numpy as np
import pandas as pd

from analysis import stats
from analysis.runset import RunSet
from analysis.sources.base import STEP

LAST_K = 3
NUM_POINTS = 100
STAT_COLUMNS = ("n", "mean", "std", "se", "ci_low", "ci_high", "iqm")


def final_scores(rs: RunSet, metric: str, last_k: int = LAST_K) -> pd.DataFrame:
    """Per run: ``score`` (mean of the last ``last_k`` values), ``n_values`` used, ``last_step``.

    Runs without any value of ``metric`` are absent.
    """
    if last_k < 1:
        raise ValueError(f"last_k must be >= 1, got {last_k}")
    if metric not in rs.metrics:
        return pd.DataFrame(columns=["score", "n_values", "last_step"])
    sub = rs.metrics[["run_id", STEP, metric]].dropna(subset=[metric])  # sorted by run, then step
    tail = sub.groupby("run_id", observed=True, sort=False).tail(last_k)
    out = tail.groupby("run_id", observed=True).agg(score=(metric, "mean"), n_values=(metric, "size"),
                                                    last_step=(STEP, "max"))
    out.index = out.index.astype(str)
    return out


def summary_table(rs: RunSet, metric: str, last_k: int = LAST_K, *, confidence: float = stats.CONFIDENCE,
                  n_resamples: int = stats.N_RESAMPLES, seed: int = stats.SEED) -> pd.DataFrame:
    """One row per (env, setting): algo, parameter values, and n, mean, std, se, CI, IQM of the scores."""
    scores = final_scores(rs, metric, last_k)
    settings = rs.settings.loc[scores.index]
    frame = settings.join(scores)
    rows = []
    for (env, setting), group in frame.groupby(["env", "setting"], sort=True):
        s = stats.summarize(group["score"].to_numpy(), confidence, n_resamples, seed)
        row = {"env": env, "setting": setting, "algo": group["algo"].iloc[0]}
        row.update({k: group[k].iloc[0] for k in rs.param_columns if k not in ("trial.number",)})
        if "trial.number" in rs.param_columns:
            row["trial.number"] = ",".join(str(int(v)) for v in sorted(group["trial.number"].dropna().unique()))
        row.update(s.as_dict())
        row["seeds"] = ",".join(str(v) for v in sorted(group["seed"].dropna().astype(int)))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(metric=metric, last_k=last_k, confidence=confidence)
    return out


def on_grid(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of one run onto ``grid``; NaN outside the run's [first, last] step.

    ``steps`` must be sorted; repeated steps keep their last value (a resumed run re-logging a step).
    """
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if steps.size == 0:
        return np.full(len(grid), np.nan)
    keep = np.r_[steps[1:] != steps[:-1], True]
    steps, values = steps[keep], values[keep]
    out = np.interp(grid, steps, values)
    out[(grid < steps[0]) | (grid > steps[-1])] = np.nan
    return out


def curves(rs: RunSet, metric: str, num_points: int = NUM_POINTS, *, confidence: float = stats.CONFIDENCE,
           n_resamples: int = stats.N_RESAMPLES, seed: int = stats.SEED, only: Collection[str] | None = None,
           band_for: Collection[str] | None = None) -> pd.DataFrame:
    """Mean curve per (env, setting) over seeds with SE and a bootstrap CI band.

    Columns: env, setting, algo, env_steps, n, mean, se, ci_low, ci_high (one row per grid point
    covered by every run of the setting). ``only``: the settings to compute (the grid still spans
    every run of the env); ``band_for``: the settings that get a bootstrap band (the others NaN).
    Both save the bootstrap for settings a figure does not show (at 10,000 runs it is most of the
    time); None means all.
    """
    columns = ["env", "setting", "algo", STEP, "n", "mean", "se", "ci_low", "ci_high"]
    if metric not in rs.metrics:
        return pd.DataFrame(columns=columns)
    per_run = _per_run(rs.metrics, metric)
    settings = rs.settings.loc[[r for r in rs.settings.index if r in per_run]]
    parts = []
    for env, env_runs in settings.groupby("env", sort=True):
        first = min(per_run[r][0][0] for r in env_runs.index)
        last = max(per_run[r][0][-1] for r in env_runs.index)
        grid = np.linspace(first, last, num_points) if last > first else np.array([first], float)
        for setting, group in env_runs.groupby("setting", sort=True):
            if only is not None and setting not in only:
                continue
            matrix = np.vstack([on_grid(*per_run[r], grid) for r in group.index])
            band = band_for is None or setting in band_for
            parts.append(_band(matrix, grid, confidence, n_resamples if band else 0, seed).assign(
                env=env, setting=setting, algo=group["algo"].iloc[0]))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def _per_run(metrics: pd.DataFrame, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """run id -> (steps, values) of the rows with a value; one pass over the codes (the frame is
    sorted by run), where a groupby made 10,000 little frames."""
    has = metrics[metric].notna().to_numpy()
    run_id = metrics["run_id"]
    codes = run_id.cat.codes.to_numpy()[has]
    steps, values = metrics[STEP].to_numpy(float)[has], metrics[metric].to_numpy(float)[has]
    if not len(codes):
        return {}
    order = np.argsort(codes, kind="stable")  # already sorted: a no-op pass; safe if not
    codes, steps, values = codes[order], steps[order], values[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    names = run_id.cat.categories
    return {str(names[c[0]]): (s, v) for c, s, v in zip(np.split(codes, cuts), np.split(steps, cuts),
                                                        np.split(values, cuts))}


def _band(matrix: np.ndarray, grid: np.ndarray, confidence: float, n_resamples: int, seed: int) -> pd.DataFrame:
    covered = ~np.isnan(matrix).any(axis=0)
    m = matrix[:, covered]
    n = m.shape[0]
    if n_resamples:
        low, high = stats.bootstrap_ci(m, confidence, n_resamples, seed)
    else:  # no band wanted (see curves' band_for)
        low = high = np.full(m.shape[1], np.nan)
    se = m.std(axis=0, ddof=1) / np.sqrt(n) if n >= 2 else np.full(m.shape[1], np.nan)
    return pd.DataFrame({STEP: grid[covered], "n": n, "mean": m.mean(axis=0), "se": se,
                         "ci_low": low, "ci_high": high})
