"""The status values of a run record (run.json ``status``)."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Optional

STALE_AFTER_S = 600.0
"""A running record not updated for this long (its host unknown or remote) is shown as stale."""


class Status(str, Enum):
    RUNNING = "running"
    """Training, or its process died without closing the record."""
    FINISHED = "finished"
    """Ran to its budget; the final evaluation is in run.json."""
    FAILED = "failed"
    """Stopped by an error, or by a signal before it could save a checkpoint; ``reason`` says which."""
    PREEMPTED = "preempted"
    """Stopped by a signal (a cluster's preemption or requeue, SIGTERM, Ctrl-C) right after saving a
    checkpoint: not finished, and not failed either; the requeued job or the same command run again
    resumes from that checkpoint."""
    PRUNED = "pruned"
    """Stopped early by a sweep's pruner: not a failure, not finished either."""
    ABANDONED = "abandoned"
    """Stopped because its sweep trial was taken from its worker (failed and re-queued elsewhere)."""

    def __str__(self) -> str:
        return self.value


def shown_status(info: dict[str, Any], now: Optional[datetime] = None) -> str:
    """The status to show for a record: a "running" record whose process is gone is "stale" (on
    this host: its pid is dead; elsewhere: not updated for STALE_AFTER_S). Run the same command
    again to resume it."""
    status = str(info.get("status", "?"))
    progress = info.get("progress")
    if status != Status.RUNNING or not isinstance(progress, dict):
        return status
    if progress.get("host") == socket.gethostname() and isinstance(progress.get("pid"), int):
        return status if _alive(progress["pid"]) else "stale"
    try:
        updated = datetime.fromisoformat(str(progress.get("updated_at")))
    except ValueError:
        return status
    age = ((now or datetime.now(timezone.utc)) - updated).total_seconds()
    return "stale" if age > STALE_AFTER_S else status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
