"""Envs that go wrong on purpose, for the NaN guard tests: ``env.id=nan_env:NanReward-v0`` (and
NanObs-v0) with ``tests/`` on PYTHONPATH. Both are CartPole until their 40th step, then return a
NaN reward / a NaN observation."""

import math

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv


class _Faulty(CartPoleEnv):
    fault = "reward"

    def reset(self, *, seed=None, options=None):
        self.steps = getattr(self, "steps", 0)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps += 1
        if self.steps >= 40:
            if self.fault == "reward":
                reward = math.nan
            else:
                obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


class NanRewardEnv(_Faulty):
    fault = "reward"


class NanObsEnv(_Faulty):
    fault = "observation"


gym.register("NanReward-v0", entry_point=NanRewardEnv, max_episode_steps=500)
gym.register("NanObs-v0", entry_point=NanObsEnv, max_episode_steps=500)
