"""A user's own env, as a researcher writes one: a plain ``gymnasium.Env`` with no simulator state
the snapshot module knows (``env.id=plain_env:Drift-v0`` with ``tests/`` on PYTHONPATH). A point on
a line pushed left or right with noise; the episode ends when it leaves [-1, 1]."""

import gymnasium as gym
import numpy as np


class DriftEnv(gym.Env):
    observation_space = gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.v = float(self.np_random.uniform(-0.1, 0.1)), 0.0
        return self._obs(), {}

    def step(self, action):
        self.v = 0.9 * self.v + (0.02 if action == 1 else -0.02) + float(self.np_random.normal(0.0, 0.01))
        self.x += self.v
        terminated = abs(self.x) > 1.0
        return self._obs(), 1.0 - abs(self.x), terminated, False, {}

    def _obs(self):
        return np.array([self.x, self.v], dtype=np.float32)


gym.register("Drift-v0", entry_point=DriftEnv, max_episode_steps=200)
