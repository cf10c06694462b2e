"""Vine sampling (Schulman et al. 2015, section 5.2 and appendix).

Each iteration: the single-path sampler runs the trunk trajectories and saves the simulator state
at a random rollout set of trunk states; from each state n, ``num_actions`` actions a_{n,k} are
tried, each followed by a branch rollout of the current policy; the branch return (discounted,
bootstrapped with V where the branch is cut) estimates Q(s_n, a_{n,k}). The branches of one state
share common random numbers: the same restored env state and RNG, and the same policy-noise
sequence, so their returns differ only through the first action.

The objective per state (paper, section 5.2):
- a discrete action set enumerated in full: sum_k pi_theta(a_k|s_n) Q(s_n, a_k);
- sampled actions: the self-normalised importance-sampling estimate sum_k w_k Q_k / sum_k w_k with
  w_k = pi_theta(a_k|s_n) / q(a_k|s_n), q the sampling distribution (pi_old, or uniform).
The KL constraint is averaged over the rollout-set states (``VineBatch.obs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from trpo_exp.config import EnvConfig, VineConfig
from trpo_exp.envs.actions import clip_action
from trpo_exp.envs.factory import make_eval_env
from trpo_exp.envs.snapshot import EnvSnapshot, restore
from trpo_exp.nets import Policy, ValueNet
from trpo_exp.obs_norm import RunningObsNormalizer


@dataclass(frozen=True)
class RolloutState:
    """A trunk state to branch from: its saved simulator state and its normalised observation."""

    snapshot: EnvSnapshot
    obs: np.ndarray


@dataclass(frozen=True)
class VineBatch:
    obs: torch.Tensor
    """[S, obs_dim] rollout-set states (where the KL constraint is measured)."""
    actions: torch.Tensor
    """[S, K, act_dim] or [S, K]: the actions tried at each state."""
    q: torch.Tensor
    """[S, K] branch estimates of Q(s_n, a_{n,k})."""
    behaviour_log_prob: torch.Tensor
    """[S, K] log q(a|s) of the distribution the actions came from (pi_old, or uniform); for an
    enumerated action set, log pi_old(a|s)."""
    enumerated: bool
    """True when every action of a discrete set was tried (exact sum over actions)."""

    def surrogate(self, policy: Policy) -> torch.Tensor:
        s, k = self.q.shape
        obs = self.obs.unsqueeze(1).expand(s, k, self.obs.shape[-1]).reshape(s * k, -1)
        log_prob = policy.distribution(obs).log_prob(self.actions.reshape(s * k, *self.actions.shape[2:]))
        log_prob = log_prob.view(s, k)
        if self.enumerated:
            # sum_k pi(a_k|s) Q_k, minus the constant sum_k pi_old(a_k|s) Q_k (= V_old(s)): the
            # gradient is unchanged because sum_k pi(a_k|s) = 1, and the numbers stay centred.
            baseline = (self.behaviour_log_prob.exp() * self.q).sum(dim=1, keepdim=True)
            per_state = (log_prob.exp() * (self.q - baseline)).sum(dim=1)
        else:
            weights = torch.softmax(log_prob - self.behaviour_log_prob, dim=1)  # w_k / sum_j w_j
            per_state = (weights * self.q).sum(dim=1)
        return per_state.mean()


def choose_rollout_states(steps_per_env: int, num_envs: int, num_states: int) -> dict[int, list[int]]:
    """A uniformly random rollout set of trunk (step, env) positions, drawn without replacement
    from torch's generator; returned as {step: [env indices]} for the sampler."""
    flat = torch.randperm(steps_per_env * num_envs)[:num_states].tolist()
    plan: dict[int, list[int]] = {}
    for index in sorted(flat):
        plan.setdefault(index // num_envs, []).append(index % num_envs)
    return plan


class VineBrancher:
    """Runs the branch rollouts on a pool of envs restored from the rollout-set snapshots."""

    def __init__(self, env_cfg: EnvConfig, vine: VineConfig, gamma: float,
                 normalizer: RunningObsNormalizer, device: torch.device):
        self.env_cfg = env_cfg
        self.vine = vine
        self.gamma = gamma
        self.normalizer = normalizer  # read only: frozen during branches
        self.device = device
        self.pool: list[gym.Env] = []

    def _envs(self, count: int) -> list[gym.Env]:
        while len(self.pool) < count:
            self.pool.append(make_eval_env(self.env_cfg))
        return self.pool[:count]

    def actions_for(self, policy: Policy, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The K actions per state, their behaviour log-probabilities, and whether the action set
        is enumerated in full. obs: [S, obs_dim]."""
        s, k = obs.shape[0], self.vine.num_actions
        space = self._envs(1)[0].action_space
        with torch.no_grad():
            dist = policy.distribution(obs)
            if isinstance(space, gym.spaces.Discrete) and space.n <= k:
                actions = torch.arange(space.n, device=obs.device).expand(s, space.n)
                return actions, dist.log_prob(actions.T).T, True
            if isinstance(space, gym.spaces.Discrete):
                actions = torch.randint(space.n, (s, k), device=obs.device)
                return actions, torch.full((s, k), -float(np.log(space.n)), device=obs.device), False
            actions = dist.sample((k,)).transpose(0, 1)  # [S, K, act_dim]
            return actions, dist.log_prob(actions.transpose(0, 1)).T, False

    @torch.no_grad()
    def branch(self, policy: Policy, value_net: ValueNet, states: list[RolloutState]) -> tuple[VineBatch, int]:
        """The vine batch of one iteration and the simulator steps its branches used."""
        obs = torch.as_tensor(np.stack([st.obs for st in states]), device=self.device)
        actions, behaviour_log_prob, enumerated = self.actions_for(policy, obs)
        q, steps = self.estimate_q(policy, value_net, states, actions)
        return VineBatch(obs=obs, actions=actions, q=q, behaviour_log_prob=behaviour_log_prob,
                         enumerated=enumerated), steps

    @torch.no_grad()
    def estimate_q(self, policy: Policy, value_net: ValueNet, states: list[RolloutState],
                   actions: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Q(s_n, a_{n,k}) [S, K] from one branch per (state, action), and the steps used."""
        k = actions.shape[1]
        # One noise sequence per state, shared by its K branches (common random numbers).
        noise = policy.draw_noise((len(states), max(self.vine.rollout_len - 1, 1)))
        q = torch.empty(len(states), k, device=self.device)
        steps = 0
        per_chunk = max(1, self.vine.branch_batch // k)
        for start in range(0, len(states), per_chunk):
            idx = list(range(start, min(start + per_chunk, len(states))))
            q[idx], chunk_steps = self._rollouts(policy, value_net, [states[i] for i in idx],
                                                 actions[idx], noise[idx])
            steps += chunk_steps
        return q, steps

    def _rollouts(self, policy: Policy, value_net: ValueNet, states: list[RolloutState],
                  first_actions: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Branches of a chunk of states, stepped in lockstep with one policy forward per step."""
        s, k = first_actions.shape[:2]
        envs = self._envs(s * k)
        state_of = np.repeat(np.arange(s), k)  # branch i belongs to state state_of[i]
        for env, state_index in zip(envs, state_of):
            restore(env, states[state_index].snapshot)
        n = s * k
        ret = np.zeros(n)
        discount = np.ones(n)
        active = np.ones(n, dtype=bool)
        obs = np.zeros((n, states[0].obs.shape[-1]), dtype=np.float32)
        bootstrap_obs, bootstrap_from = [], []  # cut branches: V(obs) * discount
        actions = first_actions.reshape(n, *first_actions.shape[2:])
        steps = 0
        for j in range(self.vine.rollout_len):
            live = np.flatnonzero(active)
            if live.size == 0:
                break
            if j > 0:
                actions_live = policy.sample_from_noise(torch.as_tensor(obs[live], device=self.device),
                                                        noise[torch.as_tensor(state_of[live]), j - 1])
            else:
                actions_live = actions
            for a, i in zip(actions_live.cpu().numpy(), live):
                raw, reward, terminated, truncated, _ = envs[i].step(self._to_env(envs[i], a))
                steps += 1
                ret[i] += discount[i] * float(reward)
                discount[i] *= self.gamma
                obs[i] = self.normalizer(raw)
                if terminated:
                    active[i] = False
                elif truncated:  # the time limit cut the branch: bootstrap from its last state
                    active[i] = False
                    bootstrap_obs.append(obs[i].copy())
                    bootstrap_from.append(i)
        for i in np.flatnonzero(active):  # branches that ran their full length
            bootstrap_obs.append(obs[i].copy())
            bootstrap_from.append(i)
        if bootstrap_from:
            values = value_net(torch.as_tensor(np.stack(bootstrap_obs), device=self.device)).cpu().numpy()
            ret[bootstrap_from] += discount[bootstrap_from] * values
        return torch.as_tensor(ret, dtype=torch.float32, device=self.device).view(s, k), steps

    @staticmethod
    def _to_env(env: gym.Env, action: np.ndarray) -> Any:
        clipped = clip_action(action, env.action_space)
        return clipped if isinstance(env.action_space, gym.spaces.Box) else int(clipped)

    def close(self) -> None:
        for env in self.pool:
            env.close()
