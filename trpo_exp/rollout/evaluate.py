"""Evaluation of the deterministic policy (mean / most likely action) on a separate env."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

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
             device: torch.device, deterministic: bool = True,
             on_step: Optional[Callable[[int], None]] = None) -> EvalResult:
    """Run ``episodes`` full episodes. Episode k starts from reset(seed=seed + k), so every
    evaluation of a run sees the same start states and differences come from the policy alone.
    The normaliser is only read, never updated. ``deterministic=False`` samples actions from the
    policy (torch's global RNG); ``on_step(k)`` is called after every step of episode k (video)."""
    returns = []
    for k in range(episodes):
        raw, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        if on_step is not None:
            on_step(k)
        while not done:
            obs = torch.as_tensor(normalizer(raw[None]), device=device)
            chosen = policy.mode(obs) if deterministic else policy.sample(obs)
            action = clip_action(chosen[0].cpu().numpy(), env.action_space)
            raw, reward, terminated, truncated, _ = env.step(action)
            if on_step is not None:
                on_step(k)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return EvalResult(tuple(returns))
