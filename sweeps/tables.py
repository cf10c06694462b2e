"""The sweep's outputs, rebuilt from the study alone (so any worker, at any time, writes the same
files): trials.csv / trials.parquet (one row per Optuna trial) and best_params.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import optuna
import pandas as pd
from optuna.trial import TrialState

from sweeps.study import FAILURE_ATTR, SLOT_ATTR
from trpo_exp.record.writer import json_safe
from trpo_exp.util import atomic_write, atomic_write_text


def trials_frame(study: optuna.Study, seeds: list[int]) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        scores = t.user_attrs.get("scores", [])
        row: dict[str, Any] = {
            "number": t.number, "state": t.state.name, "slot": t.system_attrs.get(SLOT_ATTR),
            "retry_of": t.system_attrs.get("failed_trial"), "objective": t.value,
            **{name: value for name, value in t.params.items()},
            "seeds": " ".join(str(s) for s in t.user_attrs.get("seeds", [])),
            **{f"score_s{s}": (scores[i] if i < len(scores) else None) for i, s in enumerate(seeds)},
            "run_status": " ".join(t.user_attrs.get("run_status", [])),
            "last_step": t.last_step,
            "duration_s": t.duration.total_seconds() if t.duration is not None else None,
            "started": t.datetime_start.isoformat() if t.datetime_start else None,
            "note": t.user_attrs.get("note") or t.system_attrs.get(FAILURE_ATTR),
            "run_dirs": " ".join(t.user_attrs.get("run_dirs", [])),
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("slot", "retry_of"):  # trial numbers, empty where none: integers, never "1.0"
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def best(study: optuna.Study) -> Optional[optuna.trial.FrozenTrial]:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def summary(study: optuna.Study, report: optuna.Study, storage_url: str, n_trials: int) -> dict[str, Any]:
    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    top = best(study)
    out: dict[str, Any] = {
        "study": study.study_name, "storage": storage_url, "n_trials": n_trials, "trial_states": counts,
        "best_trial": None if top is None else {
            "number": top.number, "objective": top.value, "params": top.params,
            "seeds": top.user_attrs.get("seeds"), "scores": top.user_attrs.get("scores")},
        "best_params": None if top is None else top.params,
        "report": None,
    }
    done = report.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    if done:
        r = done[-1]
        out["report"] = {"state": r.state.name, "mean": r.value, **{k: r.user_attrs.get(k) for k in (
            "best_trial", "params", "seeds", "scores", "std", "run_dirs", "note")}}
    return out


def write(sweep_dir: Path, study: optuna.Study, report: optuna.Study, storage_url: str, n_trials: int,
          seeds: list[int]) -> dict[str, Any]:
    frame = trials_frame(study, seeds)
    # Atomic writes: readers (and a concurrent worker) never see half a file.
    atomic_write(sweep_dir / "trials.csv", lambda p: frame.to_csv(p, index=False))
    atomic_write(sweep_dir / "trials.parquet", lambda p: frame.to_parquet(p, index=False))
    info = summary(study, report, storage_url, n_trials)
    # Strict JSON: a NaN score (a run that diverged) is null, never a bare NaN.
    atomic_write_text(sweep_dir / "best_params.json", json.dumps(json_safe(info), indent=2, allow_nan=False) + "\n")
    return info
