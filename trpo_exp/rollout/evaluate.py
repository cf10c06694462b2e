"""Evaluation of the deterministic policy (mean / most likely action) on a separate env."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from trpo_exp.envs.actions import clip_action
from trpo_exp.nets import Policy
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.util import sample_std


@dataclass(frozen=True)
class EvalResult:
    returns: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Sample std over the episodes (NaN for one episode)."""
        return sample_std(self.returns)


@torch.no_grad()
def evaluate(policy: Policy, normalizer: RunningObsNormalizer, env: gym.Env, episodes: int, seed: int,
             device: torch.device) -> EvalResult:
    """Run ``episodes`` full episodes. Episode k starts from reset(seed=seed + k), so every
    evaluation of a run sees the same start states and differences come from the policy alone.
    The normaliser is only read, never updated."""
    returns = []
    for k in range(episodes):
        raw, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            obs = torch.as_tensor(normalizer(raw[None]), device=device)
            action = clip_action(policy.mode(obs)[0].cpu().numpy(), env.action_space)
            raw, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return EvalResult(tuple(returns))
