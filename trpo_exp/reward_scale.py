"""Reward scaling (``env.normalize_reward``): rewards divided by the running standard deviation of
the discounted return, the reward half of SB3's VecNormalize (Engstrom et al. 2020 call it reward
scaling). Rewards are divided, never centred, so their sign and where episodes end keep their
meaning. Only the learning side sees scaled rewards (advantages, value targets); every logged return
stays on the env's own scale. Like the observation statistics, the scale is one number per batch:
the statistics are updated with the batch and then applied to all of it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trpo_exp.obs_norm import RunningObsNormalizer


class RewardScaler:
    def __init__(self, num_envs: int, gamma: float, enabled: bool, eps: float = 1e-8):
        self.gamma = gamma
        self.enabled = enabled
        self.eps = eps
        self.discounted = np.zeros(num_envs)  # each env's discounted return so far, across batches
        # The running moments of those returns; the observation normaliser's merge, on scalars.
        self.moments = RunningObsNormalizer((1,), clip=np.inf)

    def __call__(self, rewards: torch.Tensor, episode_end: torch.Tensor) -> torch.Tensor:
        """Update the statistics with this batch's discounted returns ([T, N] rewards and episode
        ends), then return the batch's rewards divided by their standard deviation."""
        if not self.enabled:
            return rewards
        ends = episode_end.cpu().numpy()
        seen = np.empty(ends.shape)
        for t, reward in enumerate(rewards.cpu().numpy().astype(np.float64)):
            self.discounted = self.discounted * self.gamma + reward
            seen[t] = self.discounted
            self.discounted[ends[t]] = 0.0
        self.moments.update(seen.reshape(-1, 1))
        return rewards / float(np.sqrt(self.moments.var[0] + self.eps))

    def state_dict(self) -> dict[str, Any]:
        return {"discounted": torch.from_numpy(self.discounted.copy()), "moments": self.moments.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discounted = state["discounted"].numpy().copy()
        self.moments.load_state_dict(state["moments"])
