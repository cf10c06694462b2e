"""Writing the local run record: metrics.csv (one row per iteration, flushed each time) and run.json
(status and final results). Sweeps and analysis read these files (trpo_exp.record.reader); they are
the source of truth."""

from __future__ import annotations

import csv
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from trpo_exp.record.files import METRICS_CSV, RUN_JSON
from trpo_exp.record.metrics import METRIC_COLUMNS
from trpo_exp.record.status import Status
from trpo_exp.util import atomic_write_text


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


class RunRecord:
    def __init__(self, run_dir: Path, info: dict[str, Any], mirrors: Sequence[Mirror] = ()):
        self.mirrors = list(mirrors)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_CSV
        self.json_path = self.run_dir / RUN_JSON
        self.info: dict[str, Any] = {"status": Status.RUNNING.value, "started_at": _now(), **info}
        self._t0 = time.perf_counter()
        self._file = open(self.metrics_path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=METRIC_COLUMNS)
        self._writer.writeheader()
        self._file.flush()
        self._write_json()

    def log(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(METRIC_COLUMNS)
        if unknown:
            raise KeyError(f"unknown metric columns {sorted(unknown)}")
        self._writer.writerow({k: _cell(row.get(k)) for k in METRIC_COLUMNS})
        self._file.flush()
        self.info["env_steps"] = row.get("env_steps", self.info.get("env_steps"))
        self.info["iterations"] = row.get("iteration", self.info.get("iterations"))
        for mirror in self.mirrors:
            mirror.log(row)

    def finish(self, **results: Any) -> None:
        self._close(Status.FINISHED, None, results)

    def fail(self, reason: str) -> None:
        self._close(Status.FAILED, reason, {})

    def stop(self, status: Status, reason: str) -> None:
        """End early on purpose (e.g. pruned): not a failure, not finished either."""
        self._close(status, reason, {})

    def _close(self, status: Status, reason: Optional[str], results: dict[str, Any]) -> None:
        if not self._file.closed:
            self._file.close()
        self.info.update(results)
        self.info.update(status=Status(status).value, reason=reason, exit_code=1 if status == Status.FAILED else 0,
                         ended_at=_now(), wall_time_s=time.perf_counter() - self._t0)
        self._write_json()  # the local record first: it must not depend on the mirrors
        for mirror in self.mirrors:
            mirror.finish(self.info)

    def _write_json(self) -> None:
        # Atomically: a crash never leaves a half-written run.json.
        atomic_write_text(self.json_path, json.dumps(json_safe(self.info), indent=2, allow_nan=False) + "\n")
