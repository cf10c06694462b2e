"""Writing the local run record: metrics.csv (one row per iteration, flushed each time) and run.json
(status and final results). Sweeps and analysis read these files (trpo_exp.record.reader); they are
the source of truth."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from trpo_exp.record.files import METRICS_CSV, RUN_JSON
from trpo_exp.record.metrics import METRIC_COLUMNS
from trpo_exp.record.status import Status
from trpo_exp.util import atomic_write, atomic_write_text


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def parse_cell(text: Optional[str]) -> Any:
    """A metrics.csv cell back as the value that was logged (the inverse of ``_cell``)."""
    if text is None or text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        return float(text)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest string that round-trips the float exactly
    return value


def json_safe(value: Any) -> Any:
    """Valid JSON, always: NaN and infinities become null (JSON has no such numbers), anything
    that is not a JSON type becomes its text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class Mirror(Protocol):
    """A logging backend that copies the record elsewhere (W&B). It must never raise."""

    def log(self, row: dict[str, Any]) -> None: ...

    def finish(self, info: dict[str, Any]) -> None: ...


class RecordTakenOver(RuntimeError):
    """Another process took this run dir over (its lock file was deleted while this process was
    stopped): this process must not write to it any more. ``str(err)`` is one line."""


class RunRecord:
    """Writes one run's record. ``resume_from``: continue a record whose checkpoint is at that
    iteration: metrics.csv is cut back to its rows up to that iteration (later rows are recomputed,
    bit for bit, by the resumed run) and run.json keeps its start and lists the resumes."""

    def __init__(self, run_dir: Path, info: dict[str, Any], mirrors: Sequence[Mirror] = (),
                 resume_from: Optional[int] = None, previous: Optional[dict[str, Any]] = None):
        self.mirrors = list(mirrors)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_CSV
        self.json_path = self.run_dir / RUN_JSON
        # Ownership of the record, checked before every write: the lock file alone cannot stop a
        # second process once someone deletes it (see check_owner).
        self.owner = uuid.uuid4().hex
        self.taken_over: Optional[str] = None
        self.info: dict[str, Any] = {"status": Status.RUNNING.value, "started_at": _now(), **info,
                                     "progress": liveness(0, 0), "owner": self.owner}
        self._t0 = time.perf_counter()
        self.kept_rows: list[dict[str, Any]] = []  # rows of the interrupted segment that stay
        if resume_from is None:
            self._file = open(self.metrics_path, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=METRIC_COLUMNS)
            self._writer.writeheader()
        else:
            self._resume(resume_from, previous or {})
        self._file.flush()
        self._write_json(take_over=True)  # this process holds the run dir now (rundir.claim)

    def _resume(self, iteration: int, previous: dict[str, Any]) -> None:
        kept = truncate_metrics(self.metrics_path, iteration)
        self.kept_rows = [{k: parse_cell(v) for k, v in row.items()} for row in kept]
        self.info["started_at"] = previous.get("started_at", self.info["started_at"])
        self.info["resumes"] = [*previous.get("resumes", []),
                                {"at": _now(), "from_iteration": iteration, "after_status": previous.get("status"),
                                 "after_reason": previous.get("reason")}]
        if kept:
            self.info["env_steps"] = kept[-1].get("env_steps")
            self.info["iterations"] = iteration
        self._file = open(self.metrics_path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=METRIC_COLUMNS)

    def check_owner(self) -> None:
        """Raise RecordTakenOver when run.json names another owner: a second process holds the run
        dir now, and everything this one would write (rows, run.json, checkpoints) is its to write."""
        if self.taken_over is not None:
            raise RecordTakenOver(self.taken_over)
        try:
            on_disk = json.loads(self.json_path.read_text())
        except (OSError, ValueError):  # not written yet, or being replaced: nobody else's
            return
        owner = on_disk.get("owner") if isinstance(on_disk, dict) else None
        if owner is not None and owner != self.owner:
            holder = on_disk.get("progress") or {}
            self.taken_over = (f"the run dir {self.run_dir} was taken over by another process (pid "
                               f"{holder.get('pid')} on {holder.get('host')}) while this one was stopped; "
                               f"this process stops without writing to it")
            raise RecordTakenOver(self.taken_over)

    def log(self, row: dict[str, Any]) -> None:
        self.check_owner()
        unknown = set(row) - set(METRIC_COLUMNS)
        if unknown:
            raise KeyError(f"unknown metric columns {sorted(unknown)}")
        self._writer.writerow({k: _cell(row.get(k)) for k in METRIC_COLUMNS})
        self._file.flush()
        self.info["env_steps"] = row.get("env_steps", self.info.get("env_steps"))
        self.info["iterations"] = row.get("iteration", self.info.get("iterations"))
        self.info["progress"] = liveness(self.info["iterations"], self.info["env_steps"])
        # Liveness: a killed run is recognisable by a stale updated_at and a dead pid. Every iteration,
        # so without fsync (the start and the end of a run are written durably).
        self._write_json(durable=False)
        for mirror in self.mirrors:
            mirror.log(row)

    def add_mirror(self, mirror: Mirror) -> None:
        self.mirrors.append(mirror)

    def update(self, **info: Any) -> None:
        self.info.update(info)
        self._write_json()

    def finish(self, **results: Any) -> None:
        self._close(Status.FINISHED, None, results, exit_code=0)

    def fail(self, reason: str, exit_code: int = 1) -> None:
        self._close(Status.FAILED, reason, {}, exit_code=exit_code)

    def preempt(self, reason: str, exit_code: int) -> None:
        """Stopped by a signal right after a checkpoint: the job is requeued, or the same command
        resumes it."""
        self._close(Status.PREEMPTED, reason, {}, exit_code=exit_code)

    def stop(self, status: Status, reason: str) -> None:
        """End early on purpose (e.g. pruned): not a failure, not finished either."""
        self._close(status, reason, {}, exit_code=0)

    def _close(self, status: Status, reason: Optional[str], results: dict[str, Any], exit_code: int) -> None:
        if not self._file.closed:
            self._file.close()
        if self.taken_over is not None:
            return  # the record is another process's now
        self.info.update(results)
        self.info.update(status=Status(status).value, reason=reason, exit_code=exit_code,
                         ended_at=_now(), wall_time_s=time.perf_counter() - self._t0)
        self.info["progress"] = {**self.info.get("progress", {}), "updated_at": _now()}
        self._write_json()  # the local record first: it must not depend on the mirrors
        for mirror in self.mirrors:
            mirror.finish(self.info)

    def _write_json(self, durable: bool = True, take_over: bool = False) -> None:
        if not take_over:
            self.check_owner()
        # Atomically: a crash never leaves a half-written run.json.
        atomic_write_text(self.json_path, json.dumps(json_safe(self.info), indent=2, allow_nan=False) + "\n",
                          durable)


def liveness(iteration: Any, env_steps: Any) -> dict[str, Any]:
    """Progress of a live run: updated every iteration, so a run whose process died shows an old
    updated_at (and, on its host, a pid that is gone)."""
    return {"iteration": iteration, "env_steps": env_steps, "updated_at": _now(), "pid": os.getpid(),
            "host": socket.gethostname()}


def truncate_metrics(path: Path, iteration: int) -> list[dict[str, str]]:
    """Cut metrics.csv back to its rows up to ``iteration`` (atomically) and return them. A row cut
    by a crash (shorter than the header) is dropped with everything after it."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        rows = []
    kept = []
    for row in rows:
        if None in row.values() or not (row.get("iteration") or "").isdigit() or int(row["iteration"]) > iteration:
            break
        kept.append(row)
    if len(kept) != iteration:
        raise ValueError(f"{path} holds {len(kept)} complete rows before iteration {iteration + 1}, "
                         f"the checkpoint is at iteration {iteration}")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    atomic_write(path, write)
    return kept
