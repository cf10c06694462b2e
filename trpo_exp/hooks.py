"""Per-iteration training hooks, built from the config's ``hooks`` section (see Trainer.train).

Each entry is a Hydra ``_target_`` spec of a callable; it is built once at the start of the run and
then called with every metrics row after the row is written. A hook may raise
trpo_exp.engine.StopRun to end the run early with a status of its own (a sweep's pruner does).
The engine knows nothing of what the hooks do: sweeps attach their Optuna reporter here
(sweeps/trial_report.py), and a plain run has none.
"""

from __future__ import annotations

from typing import Any, Callable

from trpo_exp.config import Config, ConfigError
from trpo_exp.util import first_line

Hook = Callable[[dict[str, Any]], None]


def make_hooks(config: Config) -> list[Hook]:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    hooks: list[Hook] = []
    for name, spec in config.hooks.items():
        try:
            hook = instantiate(spec)
        except InstantiationException as err:
            raise ConfigError(f"hooks.{name}={spec.get('_target_')!r} is not allowed: {first_line(err)}") from None
        if not callable(hook):
            raise ConfigError(f"hooks.{name}={spec.get('_target_')!r} is not allowed: it is not callable")
        hooks.append(hook)
    return hooks
