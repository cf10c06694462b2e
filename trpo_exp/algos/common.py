"""What every policy step shares: its input batch, the surrogate objective and its stats.

A policy step works on any batch object with ``obs`` (the states where the KL constraint is
measured) and ``surrogate(policy)`` (the objective to improve): PolicyBatch here for single-path
sampling, VineBatch (trpo_exp.rollout.vine) for vine sampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from trpo_exp.nets import Policy


@dataclass(frozen=True)
class PolicyBatch:
    """The samples a policy step learns from; all tensors share the leading batch dimension."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    old_log_prob: torch.Tensor

    def surrogate(self, policy: Policy) -> torch.Tensor:
        return surrogate(policy, self)


class StepBatch(Protocol):
    """What a policy step needs of its batch (PolicyBatch here, VineBatch for vine sampling)."""

    @property
    def obs(self) -> torch.Tensor:
        """The states where the KL constraint and the Fisher matrix are measured."""
        ...

    def surrogate(self, policy: Policy) -> torch.Tensor:
        """The objective to improve, differentiable in the policy's parameters."""
        ...


class PolicyStep(Protocol):
    """One algorithm's update of the policy; its state (e.g. an optimizer's) goes in checkpoints."""

    def __call__(self, policy: Policy, batch: StepBatch) -> PolicyStepStats: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class PolicyStepStats:
    """What one policy update did; the engine logs it, the step itself never logs. Each field is a
    metrics.csv column of the same name (declared in trpo_exp.record.metrics)."""

    kl: float
    """Measured mean KL(old || new) over the batch after the step."""
    surrogate_improvement: float
    """Surrogate objective after minus before the step."""
    expected_improvement: float
    """Linear model of the improvement, g . step (NaN for pg)."""
    backtracks: int
    """Line-search halvings before acceptance (0 for pg and npg)."""
    step_accepted: bool
    """False when the policy was left unchanged: the line search rejected every step, or the
    iteration was the shrunken last one that only completes the budget (engine.Trainer.collect)."""
    entropy: float
    """Mean policy entropy over the batch before the step."""


def surrogate(policy: Policy, batch: PolicyBatch) -> torch.Tensor:
    """L(theta) = mean[pi_theta(a|s) / pi_old(a|s) * A(s, a)] (paper, eq. 14). Its gradient at
    theta_old is the policy gradient, so pg, npg and trpo all differentiate this one function."""
    log_prob = policy.distribution(batch.obs).log_prob(batch.actions)
    return (torch.exp(log_prob - batch.old_log_prob) * batch.advantages).mean()


def mean_kl(policy: Policy, obs: torch.Tensor, old: torch.distributions.Distribution) -> torch.Tensor:
    """Mean KL(old || current policy) over ``obs``; ``old`` is a detached distribution."""
    return policy.kl(old, policy.distribution(obs)).mean()


def mean_entropy(policy: Policy, obs: torch.Tensor) -> float:
    with torch.no_grad():
        return float(policy.distribution(obs).entropy().mean())
