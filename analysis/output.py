"""The report's output directory: checked before the load, every write failure one line.

Why up front: loading 10,000 runs takes a minute, and an ``--out`` that is a file, lies under a
file or is read-only should fail in a second. Why wrapped: a full disk (or a directory made
read-only meanwhile) shows up only while writing, as an OSError from open() or matplotlib; it
becomes an :class:`AnalysisError` naming the file and the reason, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from analysis.errors import AnalysisError


def prepare(out: Path) -> Path:
    """Create ``out`` (and parents) and prove it is a writable directory."""
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out {out} is a file, not a directory")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise AnalysisError(f"--out {out} cannot be created: {blocker} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AnalysisError(f"--out {out} cannot be created: {describe(err)}") from None
    probe = out / f".analysis-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as err:
        raise AnalysisError(f"--out {out} is not writable: {describe(err)}") from None
    return out


def remove_if_empty(out: Path) -> None:
    """Remove ``out`` if :func:`prepare` made it and nothing was written (the load failed)."""
    with contextlib.suppress(OSError):
        out.rmdir()  # fails, and is left alone, when it holds anything


@contextlib.contextmanager
def writing(out: Path) -> Iterator[None]:
    """Turn any OSError while the report is written into one line."""
    try:
        yield
    except OSError as err:
        raise AnalysisError(f"could not write the report into {out}: {describe(err)}") from None


def describe(err: OSError) -> str:
    """'<file>: No space left on device' (errno text, not the exception's repr)."""
    reason = err.strerror or type(err).__name__
    return f"{err.filename}: {reason}" if err.filename else reason
