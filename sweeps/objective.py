"""Score trials from their runs' records (run.json, metrics.csv): the records are the source of
truth, whatever launcher ran the jobs and wherever."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from sweeps.definition import ObjectiveSpec


@dataclass(frozen=True)
class RunOutcome:
    seed: int
    run_dir: str
    status: str
    """run.json status: finished, pruned, failed, abandoned, running (a crashed process), missing."""
    score: float
    """This seed's score (NaN unless finished)."""
    reason: Optional[str] = None


def read_run(run_dir: Path, seed: int, objective: ObjectiveSpec) -> RunOutcome:
    path = Path(run_dir) / "run.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return RunOutcome(seed, str(run_dir), "missing", math.nan, f"no readable run.json ({err})")
    status = str(info.get("status"))
    score = seed_score(Path(run_dir), info, objective) if status == "finished" else math.nan
    return RunOutcome(seed, str(run_dir), status, score, info.get("reason"))


def seed_score(run_dir: Path, info: dict, objective: ObjectiveSpec) -> float:
    if objective.metric == "final_eval":
        value = info.get("eval_return_mean")
        return float(value) if isinstance(value, (int, float)) else math.nan
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    tail = rows[len(rows) - max(1, math.ceil(objective.fraction * len(rows))):] if rows else []
    values = [float(r["return_mean"]) for r in tail if r.get("return_mean")]
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class Verdict:
    state: str
    """COMPLETE, PRUNED, FAIL (a run raised or scored NaN), or ABANDONED (the trial was taken away
    from this worker: its heartbeat was judged stale and the trial re-queued)."""
    value: float
    detail: str


def verdict(outcomes: Sequence[RunOutcome]) -> Verdict:
    statuses = [o.status for o in outcomes]
    if "pruned" in statuses:
        return Verdict("PRUNED", math.nan, next(o.reason or "" for o in outcomes if o.status == "pruned"))
    if "abandoned" in statuses:
        return Verdict("ABANDONED", math.nan, "the trial stopped being RUNNING while its runs trained")
    bad = [o for o in outcomes if o.status != "finished" or not math.isfinite(o.score)]
    if bad:
        o = bad[0]
        return Verdict("FAIL", math.nan, f"seed {o.seed}: {o.status}{': ' + o.reason if o.reason else ''} "
                                         f"(score {o.score}) in {o.run_dir}")
    return Verdict("COMPLETE", sum(o.score for o in outcomes) / len(outcomes), "")
