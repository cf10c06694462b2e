"""Where runs come from. Each source turns its input into the same shape, a :class:`Batch`:

* ``records``: local run directories (metrics.csv + run.json + .hydra/config.yaml), the source of truth;
* ``offline``: W&B offline runs (``wandb/offline-run-*/run-*.wandb``) through trpo_exp.record.wandb_file;
* ``api``: a W&B project through ``wandb.Api()``, for runs logged online.

A source has two steps so the cache can sit between them: ``discover`` lists candidate runs with a
cheap fingerprint (file stats, or the server's state), ``read`` loads only those not cached.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from analysis.sources.base import Batch, Candidate

KINDS = ("records", "offline", "api")


def get(kind: str) -> ModuleType:
    """The module implementing source ``kind`` (imported lazily: ``api`` imports wandb's client)."""
    from analysis.errors import AnalysisError

    if kind not in KINDS:
        raise AnalysisError(f"unknown source {kind!r}: choose one of {', '.join(KINDS)}")
    return importlib.import_module(f"analysis.sources.{kind}")


__all__ = ["Batch", "Candidate", "KINDS", "get"]
