"""The budget arithmetic, in one place: how many simulator steps one policy iteration costs and how
many iterations a run's budget buys. The engine, the config checks and the sweeps (Hyperband's
resource) all count with these functions, so vine branches are counted everywhere or nowhere."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import gymnasium as gym

if TYPE_CHECKING:
    from trpo_exp.config import Config, VineConfig


def trunk_steps(steps_per_iter: int, num_envs: int) -> int:
    """Trunk (single-path) steps of one full iteration: ``steps_per_iter`` rounded down to a
    multiple of the number of envs, which all step together."""
    return steps_per_iter // num_envs * num_envs


def branch_actions(num_actions: int, action_space: gym.Space) -> int:
    """Actions tried per rollout state: a discrete set no larger than ``num_actions`` is enumerated."""
    if isinstance(action_space, gym.spaces.Discrete):
        return min(num_actions, int(action_space.n))
    return num_actions


def branch_steps_bound(vine: Optional[VineConfig], action_space: gym.Space) -> int:
    """At most this many branch steps per full iteration (0 without vine sampling); branches cut
    short by an episode's end cost less."""
    if vine is None:
        return 0
    return vine.num_states * branch_actions(vine.num_actions, action_space) * vine.rollout_len


def iteration_steps(cfg: Config, action_space: gym.Space) -> int:
    """Simulator steps of one full iteration at most: its trunk plus its branches."""
    return (trunk_steps(cfg.algo.steps_per_iter, cfg.env.num_envs)
            + branch_steps_bound(getattr(cfg.algo, "vine", None), action_space))


def planned_iterations(cfg: Config, action_space: gym.Space) -> int:
    """Policy iterations of a run: exact for single path; for vine a lower bound (branches that end
    early leave budget for a few more)."""
    return max(1, math.ceil(cfg.budget / iteration_steps(cfg, action_space)))

