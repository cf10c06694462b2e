"""Score trials from their runs' records (run.json, metrics.csv): the records are the source of
truth, whatever launcher ran the jobs and wherever."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from sweeps.definition import ObjectiveSpec
from trpo_exp.record import Status
from trpo_exp.record.reader import read_run


@dataclass(frozen=True)
class RunOutcome:
    seed: int
    run_dir: str
    status: str
    """run.json status: finished, pruned, failed, abandoned, running (a crashed process), missing."""
    score: float
    """This seed's score (NaN unless finished)."""
    reason: Optional[str] = None


def read_outcome(run_dir: Path, seed: int, objective: ObjectiveSpec) -> RunOutcome:
    record = read_run(run_dir)
    if not record.info:
        return RunOutcome(seed, str(run_dir), "missing", math.nan, "; ".join(record.notes) or "no run.json")
    status = str(record.info.get("status"))
    score = seed_score(record.info, record.metrics, objective) if status == Status.FINISHED else math.nan
    return RunOutcome(seed, str(run_dir), status, score, record.info.get("reason"))


def seed_score(info: dict[str, Any], metrics: pd.DataFrame, objective: ObjectiveSpec) -> float:
    """One seed's score. ``final_eval`` (the default): the run's final deterministic evaluation,
    run.json eval_return_mean, which is also the last eval row of metrics.csv (the analysis table's
    score with --last-k 1; its default averages the last 3 evaluations). ``last_fraction``: the mean
    training return over the last ``objective.fraction`` of the run's iterations."""
    if objective.metric == "final_eval":
        value = info.get("eval_return_mean")
        return float(value) if isinstance(value, (int, float)) else math.nan
    if "return_mean" not in metrics or not len(metrics):
        return math.nan
    tail = metrics["return_mean"].iloc[len(metrics) - max(1, math.ceil(objective.fraction * len(metrics))):]
    tail = tail[tail.notna() & (tail.abs() != math.inf)]
    return float(tail.mean()) if len(tail) else math.nan


@dataclass(frozen=True)
class Verdict:
    state: str
    """COMPLETE, PRUNED, FAIL (a run raised or scored NaN), or ABANDONED (the trial was taken away
    from this worker: its heartbeat was judged stale and the trial re-queued)."""
    value: float
    detail: str


def verdict(outcomes: Sequence[RunOutcome]) -> Verdict:
    statuses = [o.status for o in outcomes]
    if Status.PRUNED in statuses:
        return Verdict("PRUNED", math.nan, next(o.reason or "" for o in outcomes if o.status == Status.PRUNED))
    if Status.ABANDONED in statuses:
        return Verdict("ABANDONED", math.nan, "the trial stopped being RUNNING while its runs trained")
    bad = [o for o in outcomes if o.status != Status.FINISHED or not math.isfinite(o.score)]
    if bad:
        o = bad[0]
        return Verdict("FAIL", math.nan, f"seed {o.seed}: {o.status}{': ' + o.reason if o.reason else ''} "
                                         f"(score {o.score}) in {o.run_dir}")
    return Verdict("COMPLETE", sum(o.score for o in outcomes) / len(outcomes), "")
