"""The run records of trials whose sweep worker died.

A run trained in its sweep worker's process (Hydra's basic launcher) dies with it, killed before it
could close its record: run.json says "running" for ever. The worker that finds such a trial (its
heartbeat went stale, or the sweep's end) closes those records as failed, so that analysis and the
retry that resumes them see what happened. Only records whose process is gone are touched
(trpo_exp.record.status decides): a run still alive (another launcher's process, another host)
closes its own record.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.trial import TrialState

from trpo_exp.record import RUN_JSON, Status
from trpo_exp.record.reader import read_info
from trpo_exp.record.status import shown_status
from trpo_exp.record.writer import json_safe
from trpo_exp.util import atomic_write_text

KILLED_REASON = "the sweep worker running it was killed"
STALE = "stale"  # shown_status of a "running" record whose process is gone


def close_dead_runs(run_dirs: Iterable[str]) -> list[str]:
    """Close, as failed, the records in ``run_dirs`` that say "running" but whose process is dead.
    Returns the run dirs closed."""
    closed = []
    for run_dir in run_dirs:
        info = read_info(run_dir) if (Path(run_dir) / RUN_JSON).exists() else {}
        if info and shown_status(info) == STALE:
            _write_failed(Path(run_dir), info)
            closed.append(str(run_dir))
    return closed


def close_dead_runs_of_failed_trials(study: optuna.Study) -> list[str]:
    """close_dead_runs for the failed trials of ``study`` that no retry took over: what trials
    nobody picked up while this sweep ran left behind (e.g. failed by a worker of an older version).
    A retried trial's run dirs are its retry's: that retry, maybe starting in another worker now,
    resumes or closes their records itself (never two writers of one record)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [d for t in trials if t.state == TrialState.FAIL and t.number not in retried
            for d in close_dead_runs(t.user_attrs.get("run_dirs", []))]


def _write_failed(run_dir: Path, info: dict[str, Any]) -> None:
    # The exit status of a killed process is unknown here: null, not a made-up number. Written
    # atomically, like every run.json: a reader never sees half of it.
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    info = {**info, "status": Status.FAILED.value, "reason": KILLED_REASON, "exit_code": None, "ended_at": now}
    atomic_write_text(run_dir / RUN_JSON, json.dumps(json_safe(info), indent=2, allow_nan=False) + "\n")


def live_runs(run_dirs: Iterable[str]) -> list[str]:
    """The run dirs whose record says a process is training in them now (alive on this host, or
    updated recently elsewhere)."""
    return [str(d) for d in run_dirs
            if (Path(d) / RUN_JSON).exists() and shown_status(read_info(d)) == Status.RUNNING]
