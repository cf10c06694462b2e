"""The NaN/inf guard: every iteration, every quantity that could carry a non-finite number into the
agent is checked, and the first one found stops the run with a reason that names the iteration,
the quantity and where it is (e.g. "iteration 7: reward is NaN in env 3"). A non-finite number is
never trained on, logged as a result, or saved in a checkpoint."""

from __future__ import annotations

import math
from typing import Iterable

import torch


class NonFiniteError(RuntimeError):
    """A NaN or an infinity where a finite number is needed; ``str(err)`` is one line."""


def _kind(x: torch.Tensor) -> str:
    return "NaN" if bool(torch.isnan(x).any()) else "inf"


def check_steps(iteration: int, what: str, values: torch.Tensor) -> None:
    """``values`` [T, N] (time, env): the first non-finite entry, named by its env."""
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        t, env = (int(i) for i in torch.nonzero(bad)[0][:2])
        raise NonFiniteError(f"iteration {iteration}: {what} is {_kind(values[t, env])} in env {env} "
                             f"(step {t} of the batch)")


def check_tensor(iteration: int, what: str, values: torch.Tensor) -> None:
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteError(f"iteration {iteration}: {what} is {_kind(values)}")


def check_numbers(iteration: int, what: str, values: dict[str, float]) -> None:
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise NonFiniteError(f"iteration {iteration}: {what} {key} is {value}")


def check_parameters(iteration: int, what: str, params: Iterable[tuple[str, torch.Tensor]]) -> None:
    for name, p in params:
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteError(f"iteration {iteration}: {what} parameter {name} is {_kind(p)} after the update")
