"""The metric registry: every column of metrics.csv, once.

The CSV columns, their W&B keys, the time columns left out of reproducibility comparisons and the
diagnostics drawn by analysis are all derived from ``METRICS``. Adding a metric = a field on the
stats dataclass that produces it (e.g. ``trpo_exp.algos.common.PolicyStepStats``) + one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class Kind(str, Enum):
    """The W&B namespace of a metric."""

    ROLLOUT = "rollout"
    TRAIN = "train"
    EVAL = "eval"
    TIME = "time"


STEP = "env_steps"
"""The x-axis of every curve and the W&B step of every history row."""


@dataclass(frozen=True)
class Metric:
    column: str
    """metrics.csv column name."""
    kind: Optional[Kind]
    """Namespace; None for the step column, which is W&B's step rather than a logged key."""
    label: str
    """Axis label in figures."""
    key: Optional[str] = None
    """The name after the namespace in W&B, when it differs from the column (e.g. eval/return_mean)."""
    diagnostic: int = 0
    """Panel position in the analysis report's training-diagnostics figure (1 = first; 0 = not drawn)."""

    @property
    def wandb_key(self) -> Optional[str]:
        return None if self.kind is None else f"{self.kind.value}/{self.key or self.column}"


R, T, E, TM = Kind.ROLLOUT, Kind.TRAIN, Kind.EVAL, Kind.TIME
METRICS: tuple[Metric, ...] = (
    Metric("iteration", T, "policy iteration"),
    Metric(STEP, None, "environment steps"),
    Metric("branch_steps", R, "vine branch steps (cumulative)"),
    Metric("episodes", R, "episodes ended in the batch"),
    Metric("episodes_total", R, "episodes ended (cumulative)"),
    Metric("return_mean", R, "training return (mean)"),
    Metric("return_std", R, "training return (std)"),
    Metric("return_min", R, "training return (min)"),
    Metric("return_max", R, "training return (max)"),
    Metric("episode_length_mean", R, "episode length (mean)"),
    Metric("entropy", T, "policy entropy (nats)", diagnostic=3),
    Metric("kl", T, "mean KL(old || new) per update", diagnostic=1),
    Metric("surrogate_improvement", T, "surrogate improvement"),
    Metric("expected_improvement", T, "expected improvement (linear model)"),
    Metric("backtracks", T, "line-search backtracks", diagnostic=2),
    Metric("step_accepted", T, "step accepted"),
    Metric("value_loss", T, "value loss"),
    Metric("explained_variance", T, "explained variance of the value baseline"),
    Metric("eval_return_mean", E, "evaluation return (deterministic policy)", key="return_mean"),
    Metric("eval_return_std", E, "evaluation return (std over episodes)", key="return_std"),
    Metric("time_sample_s", TM, "sampling time per iteration (s)", key="sample_s"),
    Metric("time_update_s", TM, "update time per iteration (s)", key="update_s"),
    Metric("time_eval_s", TM, "evaluation time (s)", key="eval_s"),
    Metric("steps_per_s", TM, "environment steps per second"),
    Metric("wall_time_s", TM, "wall time (s)"),
)

METRIC_COLUMNS: tuple[str, ...] = tuple(m.column for m in METRICS)
WANDB_KEYS: dict[str, str] = {m.column: m.wandb_key for m in METRICS if m.wandb_key is not None}
TIME_COLUMNS: tuple[str, ...] = tuple(m.column for m in METRICS if m.kind is Kind.TIME)
LABELS: dict[str, str] = {**{m.column: m.label for m in METRICS},
                          **{m.wandb_key: m.label for m in METRICS if m.wandb_key is not None}}
DIAGNOSTICS: tuple[tuple[str, str], ...] = tuple((m.wandb_key, m.label) for m in sorted(METRICS, key=lambda m: m.diagnostic)
                                                 if m.diagnostic and m.wandb_key is not None)
