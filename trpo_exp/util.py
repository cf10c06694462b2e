"""Small helpers that several packages need, each defined once: atomic file writes, the first
line of an exception, flattening nested dicts, and the spread of a sample."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write_to: Callable[[Path], Any], durable: bool = True) -> None:
    """Write through ``write_to(tmp)`` next to ``path``, fsync, then rename over ``path``: a reader
    (or a crash at any moment) sees the old file or the new one, never half of one. The temporary
    name carries the pid, so concurrent writers never share one. ``durable=False`` skips the fsync
    for frequent writes whose loss in a machine crash costs nothing (run.json's liveness updates)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_to(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str, durable: bool = True) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text), durable)


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


def flatten(tree: Any, prefix: str = "", leaf: Optional[Callable[[Any], Any]] = None) -> dict[str, Any]:
    """Nested mappings -> {"a.b.c": value}. ``leaf`` transforms each value (e.g. lists to text)."""
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}.", leaf))
    elif prefix:
        out[prefix[:-1]] = leaf(tree) if leaf is not None else tree
    return out


def sample_std(values: Iterable[float]) -> float:
    """The spread shown wherever a user sees "+-": the sample standard deviation (ddof=1).
    NaN for fewer than two values: one seed says nothing about spread."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return math.nan
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
