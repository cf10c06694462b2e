"""Per-iteration training hooks built from the config (see Trainer.train)."""

from __future__ import annotations

from typing import Any, Callable

from trpo_exp.config import Config

Hook = Callable[[dict[str, Any]], None]


def make_hooks(config: Config, run_info: dict[str, Any]) -> list[Hook]:
    """The hooks this run needs; none for a plain run."""
    return []
