"""The status values of a run record (run.json ``status``)."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    RUNNING = "running"
    """Training, or its process died without closing the record."""
    FINISHED = "finished"
    """Ran to its budget; the final evaluation is in run.json."""
    FAILED = "failed"
    """Stopped by an error or a signal; ``reason`` says which."""
    PRUNED = "pruned"
    """Stopped early by a sweep's pruner: not a failure, not finished either."""
    ABANDONED = "abandoned"
    """Stopped because its sweep trial was taken from its worker (failed and re-queued elsewhere)."""

    def __str__(self) -> str:
        return self.value
