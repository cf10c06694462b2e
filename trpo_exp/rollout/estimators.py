"""How the policy step's objective is estimated from an iteration's samples.

- single path: the trunk batch itself, with GAE advantages (paper, section 5.1);
- vine: branch rollouts from a rollout set of trunk states (section 5.2, trpo_exp.rollout.vine).
The engine asks the estimator where to save states during the trunk and what to optimise; it never
branches on the algorithm itself.
"""

from __future__ import annotations

from typing import Optional, Protocol

import gymnasium as gym
import torch

from trpo_exp.advantage import normalize
from trpo_exp.algos.common import PolicyBatch
from trpo_exp.config import Config
from trpo_exp.nets import Policy, ValueNet
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.rollout.batch import Batch
from trpo_exp.rollout.vine import VineBrancher, choose_rollout_states


class Estimator(Protocol):
    branch_steps_bound: int
    """At most this many extra simulator steps (branches) per full iteration; 0 for single path."""

    def snapshot_plan(self, steps_per_env: int, num_envs: int, scale: float) -> Optional[dict[int, list[int]]]:
        """Where to save states during the trunk; ``scale`` < 1 on a shortened last iteration."""

    def policy_batch(self, policy: Policy, value_net: ValueNet, batch: Batch,
                     advantages: torch.Tensor) -> tuple[object, int]: ...

    def close(self) -> None: ...


class SinglePathEstimator:
    branch_steps_bound = 0

    def __init__(self, normalize_advantage: bool):
        self.normalize_advantage = normalize_advantage

    def snapshot_plan(self, steps_per_env: int, num_envs: int, scale: float) -> None:
        return None

    def policy_batch(self, policy: Policy, value_net: ValueNet, batch: Batch,
                     advantages: torch.Tensor) -> tuple[PolicyBatch, int]:
        obs = batch.obs.flatten(0, 1)
        actions = batch.actions.flatten(0, 1)
        advantages = advantages.flatten()
        if self.normalize_advantage:
            advantages = normalize(advantages)
        with torch.no_grad():
            old_log_prob = policy.distribution(obs).log_prob(actions)
        return PolicyBatch(obs, actions, advantages, old_log_prob), 0

    def close(self) -> None:
        pass


class VineEstimator:
    def __init__(self, cfg: Config, normalizer: RunningObsNormalizer, device: torch.device,
                 action_space: gym.Space):
        self.vine = cfg.algo.vine
        self.brancher = VineBrancher(cfg.env, self.vine, cfg.algo.gamma, normalizer, device)
        actions = self.vine.num_actions
        if isinstance(action_space, gym.spaces.Discrete):
            actions = min(actions, int(action_space.n))  # a small set is enumerated
        self.branch_steps_bound = self.vine.num_states * actions * self.vine.rollout_len

    def snapshot_plan(self, steps_per_env: int, num_envs: int, scale: float) -> dict[int, list[int]]:
        num_states = max(1, round(self.vine.num_states * scale))
        return choose_rollout_states(steps_per_env, num_envs, min(num_states, steps_per_env * num_envs))

    def policy_batch(self, policy: Policy, value_net: ValueNet, batch: Batch,
                     advantages: torch.Tensor):
        return self.brancher.branch(policy, value_net, list(batch.rollout_states))

    def close(self) -> None:
        self.brancher.close()


def make_estimator(cfg: Config, normalizer: RunningObsNormalizer, device: torch.device,
                   action_space: gym.Space) -> Estimator:
    if cfg.algo.name == "trpo_vine":
        return VineEstimator(cfg, normalizer, device, action_space)
    return SinglePathEstimator(cfg.algo.normalize_advantage)
