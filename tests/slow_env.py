"""An env that gets stuck on purpose, for the hang tests: ``env.id=slow_env:Slow-v0`` with ``tests/``
on PYTHONPATH and SLOW_ENV_DIR naming a directory the test controls. It is CartPole, except that
while ``<dir>/block`` exists and ``<dir>/release`` does not, step() blocks (a stuck simulator): it
writes ``<dir>/blocked`` so the test knows, and polls for ``release`` every 10 ms. In this process
(env.vector_mode=sync) it also writes ``<dir>/stop_seen`` once the run's signal handler has taken a
first SIGTERM: the event a test waits for before it sends the second (two signals sent at once may
reach the handler as one)."""

import os
import signal
import time
from pathlib import Path

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class SlowEnv(CartPoleEnv):
    def step(self, action):
        gate = Path(os.environ["SLOW_ENV_DIR"])
        if (gate / "block").exists() and not (gate / "release").exists():
            (gate / "blocked").touch()
            while not (gate / "release").exists():
                if getattr(getattr(signal.getsignal(signal.SIGTERM), "__self__", None), "stop_requested", False):
                    (gate / "stop_seen").touch()
                time.sleep(0.01)
        return super().step(action)


gym.register("Slow-v0", entry_point=SlowEnv, max_episode_steps=500)
