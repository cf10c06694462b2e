"""How the policy step's objective is estimated from an iteration's samples.

- single path: the trunk batch itself, with GAE advantages (paper, section 5.1);
- vine: branch rollouts from a rollout set of trunk states (section 5.2, trpo_exp.rollout.vine).
The engine asks the estimator where to save states during the trunk and what to optimise; it never
branches on the algorithm itself (trpo_exp.algorithms names each algorithm's estimator).
"""

from __future__ import annotations

from typing import Optional, Protocol

import gymnasium as gym
import torch

from trpo_exp.advantage import normalize
from trpo_exp.algos.common import PolicyBatch, StepBatch
from trpo_exp.budget import branch_steps_bound
from trpo_exp.config import Config, TRPOVineConfig
from trpo_exp.nets import Policy, ValueNet
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.rollout.batch import Batch
from trpo_exp.rollout.branch_process import BranchWorkers
from trpo_exp.rollout.vine import VineBrancher, choose_rollout_states


class Estimator(Protocol):
    branch_steps_bound: int
    """At most this many extra simulator steps (branches) per full iteration; 0 for single path."""

    def snapshot_plan(self, steps_per_env: int, num_envs: int, scale: float) -> Optional[dict[int, list[int]]]:
        """Where to save states during the trunk; ``scale`` < 1 when the whole budget is
        smaller than one iteration (engine.Trainer.collect)."""

    def policy_batch(self, policy: Policy, value_net: ValueNet, batch: Batch,
                     advantages: torch.Tensor) -> tuple[StepBatch, int]: ...

    def value_samples(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """Extra (normalised observations, targets) for the value fit from the last policy_batch
        (vine: branch returns), or None; each call hands them over once."""

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

    def value_samples(self) -> None:
        return None

    def close(self) -> None:
        pass


class VineEstimator:
    """Vine sampling (trpo_exp.rollout.vine): the rollout set, its branches, and the states where
    the policy step measures the KL (``vine.kl_states``)."""

    def __init__(self, cfg: Config, normalizer: RunningObsNormalizer, device: torch.device,
                 action_space: gym.Space):
        assert isinstance(cfg.algo, TRPOVineConfig), "the vine estimator needs the trpo_vine schema"
        self.vine = cfg.algo.vine
        workers = (BranchWorkers(cfg.branch_processes - 1, cfg.env, self.vine, cfg.algo.gamma, cfg.torch_threads)
                   if cfg.branch_processes > 1 else None)
        self.brancher = VineBrancher(cfg.env, self.vine, cfg.algo.gamma, normalizer, device, workers)
        self.branch_steps_bound = branch_steps_bound(self.vine, action_space)
        self._value_samples: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def snapshot_plan(self, steps_per_env: int, num_envs: int, scale: float) -> dict[int, list[int]]:
        num_states = max(1, round(self.vine.num_states * scale))
        return choose_rollout_states(steps_per_env, num_envs, min(num_states, steps_per_env * num_envs))

    def policy_batch(self, policy: Policy, value_net: ValueNet, batch: Batch,
                     advantages: torch.Tensor) -> tuple[StepBatch, int]:
        kl_obs = batch.obs.flatten(0, 1) if self.vine.kl_states == "trunk" else None
        result = self.brancher.branch(policy, value_net, list(batch.rollout_states), kl_obs)
        if self.vine.value_targets != "trunk":
            self._value_samples = (result.value_obs, result.value_targets)
        return result.batch, result.steps

    def value_samples(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        samples, self._value_samples = self._value_samples, None
        return samples

    def close(self) -> None:
        self.brancher.close()
