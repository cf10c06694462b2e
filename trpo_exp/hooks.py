"""Per-iteration training hooks built from the config (see Trainer.train)."""

from __future__ import annotations

from typing import Any, Callable

from trpo_exp.config import Config

Hook = Callable[[dict[str, Any]], None]


def make_hooks(config: Config, run_info: dict[str, Any]) -> list[Hook]:
    """The hooks this run needs; none for a plain run. A run that belongs to an Optuna trial
    (``config.trial.storage`` set by the sweep driver) reports to it and can be pruned."""
    hooks: list[Hook] = []
    if config.trial.storage is not None:
        from trpo_exp.trial_report import TrialReporter  # optuna is only imported by sweep runs

        hooks.append(TrialReporter(config.trial))
    return hooks
