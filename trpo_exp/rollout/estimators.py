"""How the policy step's objective is estimated from an iteration's samples.

- single path: the trunk batch itself, with GAE advantages (paper, section 5.1);
- vine: branch rollouts from a rollout set of trunk states (section 5.2, trpo_exp.rollout.vine).
The engine asks the estimator where to save states during the trunk and what to optimise; it never
branches on the algorithm itself.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch

from trpo_exp.advantage import normalize
from trpo_exp.algos.common import PolicyBatch
from trpo_exp.config import Config
from trpo_exp.nets import Policy, ValueNet
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.rollout.batch import Batch
from trpo_exp.rollout.vine import VineBrancher, choose_rollout_states


class Estimator(Protocol):
    def snapshot_plan(self, steps_per_env: int, num_envs: int) -> Optional[dict[int, list[int]]]: ...

    def policy_batch(self, policy: Policy, value_net: ValueNet, batch: Batch,
                     advantages: torch.Tensor) -> tuple[object, int]: ...

    def close(self) -> None: ...


class SinglePathEstimator:
    def __init__(self, normalize_advantage: bool):
        self.normalize_advantage = normalize_advantage

    def snapshot_plan(self, steps_per_env: int, num_envs: int) -> None:
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
    def __init__(self, cfg: Config, normalizer: RunningObsNormalizer, device: torch.device):
        self.vine = cfg.algo.vine
        self.brancher = VineBrancher(cfg.env, self.vine, cfg.algo.gamma, normalizer, device)

    def snapshot_plan(self, steps_per_env: int, num_envs: int) -> dict[int, list[int]]:
        return choose_rollout_states(steps_per_env, num_envs, min(self.vine.num_states, steps_per_env * num_envs))

    def policy_batch(self, policy: Policy, value_net: ValueNet, batch: Batch,
                     advantages: torch.Tensor):
        return self.brancher.branch(policy, value_net, list(batch.rollout_states))

    def close(self) -> None:
        self.brancher.close()


def make_estimator(cfg: Config, normalizer: RunningObsNormalizer, device: torch.device) -> Estimator:
    if cfg.algo.name == "trpo_vine":
        return VineEstimator(cfg, normalizer, device)
    return SinglePathEstimator(cfg.algo.normalize_advantage)
