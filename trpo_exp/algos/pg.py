"""Vanilla policy gradient: one Adam step per batch on the surrogate (REINFORCE with a baseline)."""

from __future__ import annotations

import math
from typing import Any

import torch

from trpo_exp.algos.common import PolicyStepStats, StepBatch, mean_entropy, mean_kl
from trpo_exp.nets import Policy


class VanillaPolicyGradient:
    def __init__(self, policy: Policy, lr: float):
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr, fused=True)

    def __call__(self, policy: Policy, batch: StepBatch) -> PolicyStepStats:
        entropy = mean_entropy(policy, batch.obs)
        with torch.no_grad():
            old = policy.distribution(batch.obs)
        objective = batch.surrogate(policy)
        self.optimizer.zero_grad()
        (-objective).backward()
        self.optimizer.step()
        with torch.no_grad():
            improvement = float(batch.surrogate(policy) - objective)
            kl = float(mean_kl(policy, batch.obs, old))
        return PolicyStepStats(kl=kl, surrogate_improvement=improvement, expected_improvement=math.nan,
                               backtracks=0, step_accepted=True, entropy=entropy)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
