"""Turning a policy's action into what an env accepts: the one place actions are clipped."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def clip_action(action: np.ndarray, space: gym.Space) -> Any:
    """Gaussian (Box) actions are clipped to the space only on their way to the env; the batch
    keeps the unclipped sample, whose log-probability the policy step uses. Discrete actions pass
    as they are (a batch for a vector env, or one action)."""
    if isinstance(space, gym.spaces.Box):
        # np.clip's result, at a third of its cost on the sampling loop's 2-row arrays (NaN stays NaN)
        return np.minimum(np.maximum(action, space.low), space.high)
    return action
