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

Additions to the paper's form, each a config choice (``VineConfig``) with the paper's form kept:
- ``kl_states='trunk'``: the KL constraint, the line search's KL check and the Fisher-vector
  products are averaged over every trunk state of the iteration (``VineBatch.obs``), not only
  over the rollout set (``VineBatch.states``): they cost no simulator steps, and a KL measured on
  a few dozen states can miss a large change elsewhere (issue 12: 0.015 on the rollout set while
  the trunk's was 0.024, one state 0.39). ``'rollout'`` is the paper's form.
- ``value_targets``: the value baseline (used here to bootstrap cut branches) also learns from
  the branches: per rollout state the branch estimate of V(s_n) = E_{a~pi_old} Q(s_n, a), and
  with ``'branches'`` every state inside a branch with its discounted return to the branch's end
  (``BranchResult``). ``'trunk'`` is the paper's form (the trunk's TD(lambda) returns only).

Why Q is neither centred nor normalised further (issue 12, item 5): trpo's step is
sqrt(2 delta / x^T F x) x, so scaling every Q by one number (normalisation across states) leaves the
update unchanged, and subtracting a constant per state (its mean, or a baseline) leaves the gradient
unchanged (sum_k pi(a_k|s) = 1; self-normalised weights sum to 1); the enumerated form subtracts
V_old(s) only to keep the numbers small. What stopped CartPole from falling back after solving was
more signal in Q: with V fitted on the branches, branches cut at 20 steps bootstrap from a V that
tells states apart (median |Q(s,0) - Q(s,1)| before solving 0.38 against 0.005 with the trunk-only
V; split-half cosine of the gradient after solving 0.45 against 0.19; CartPole seed 0, the preset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import gymnasium as gym
import numpy as np
import torch

from trpo_exp.config import EnvConfig, VineConfig
from trpo_exp.envs.actions import clip_action
from trpo_exp.envs.factory import make_eval_env
from trpo_exp.envs.snapshot import EnvSnapshot, restore
from trpo_exp.nets import Policy, ValueNet
from trpo_exp.obs_norm import RunningObsNormalizer

if TYPE_CHECKING:
    from trpo_exp.rollout.branch_process import BranchWorkers


@dataclass(frozen=True)
class RolloutState:
    """A trunk state to branch from: its saved simulator state and its normalised observation."""

    snapshot: EnvSnapshot
    obs: np.ndarray


@dataclass(frozen=True)
class VineBatch:
    states: torch.Tensor
    """[S, obs_dim] rollout-set states (where the objective is estimated)."""
    actions: torch.Tensor
    """[S, K, act_dim] or [S, K]: the actions tried at each state."""
    q: torch.Tensor
    """[S, K] branch estimates of Q(s_n, a_{n,k})."""
    behaviour_log_prob: torch.Tensor
    """[S, K] log q(a|s) of the distribution the actions came from (pi_old, or uniform); for an
    enumerated action set, log pi_old(a|s)."""
    enumerated: bool
    """True when every action of a discrete set was tried (exact sum over actions)."""
    kl_obs: Optional[torch.Tensor] = None
    """[M, obs_dim] the states where the KL constraint and the Fisher matrix are measured (the
    trunk's, VineConfig.kl_states='trunk'); None: the rollout-set states (the paper's form)."""

    @property
    def obs(self) -> torch.Tensor:
        """Where the policy step measures the KL and the Fisher matrix (StepBatch.obs)."""
        return self.states if self.kl_obs is None else self.kl_obs

    def surrogate(self, policy: Policy) -> torch.Tensor:
        s, k = self.q.shape
        obs = self.states.unsqueeze(1).expand(s, k, self.states.shape[-1]).reshape(s * k, -1)
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

    def state_values(self, old_log_prob: torch.Tensor) -> torch.Tensor:
        """[S] the branch estimate of V_old(s_n) = E_{a~pi_old} Q(s_n, a): exact over an enumerated
        set, else self-normalised importance sampling from the behaviour distribution (the mean of
        Q when the actions came from pi_old). ``old_log_prob``: [S, K] log pi_old(a_{n,k}|s_n)."""
        if self.enumerated:
            return (old_log_prob.exp() * self.q).sum(dim=1)
        return (torch.softmax(old_log_prob - self.behaviour_log_prob, dim=1) * self.q).sum(dim=1)


@dataclass(frozen=True)
class BranchResult:
    """What the branches of one iteration give: the vine batch, the simulator steps they used, and
    value-regression samples (normalised observations, discounted returns) from the branches."""

    batch: VineBatch
    steps: int
    value_obs: torch.Tensor
    value_targets: torch.Tensor


@dataclass(frozen=True)
class ChunkJob:
    """The branches of one chunk of states, every input drawn: its rollouts are a deterministic
    function of this, the policy, the value net and the observation statistics."""

    states: list[RolloutState]
    first_actions: torch.Tensor  # [s, K, ...] the actions tried at each state
    noise: torch.Tensor  # [s, rollout_len - 1, ...] each state's policy noise (shared by its K branches)


@dataclass(frozen=True)
class ChunkResult:
    """The branches of one chunk of states: returns g_0 (the Q estimates, branch-major [s * K]),
    simulator steps, and the branch states' value samples (empty unless recorded)."""

    q: np.ndarray
    steps: int
    value_obs: np.ndarray
    value_targets: np.ndarray


def branch_returns(rewards: np.ndarray, length: np.ndarray, bootstrap: np.ndarray, gamma: float,
                   seen: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discounted branch returns, backwards: g_j = r_j + gamma g_{j+1} for the steps a branch took,
    g_len = ``bootstrap`` (V of its last state, 0 when the episode terminated). Returns g_0 [n] (the
    Q estimates) and, given ``seen`` [L, n, obs_dim] (the observation after each step), the value
    samples (s_j, g_j) of every state inside a branch (1 <= j < len), else empty arrays.
    rewards: [L, n]; length: [n] steps each branch took."""
    g = bootstrap.astype(np.float64)
    obs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for j in range(rewards.shape[0] - 1, -1, -1):
        stepped = j < length
        g = np.where(stepped, rewards[j] + gamma * g, g)
        if seen is not None and j >= 1:
            obs.append(seen[j - 1, stepped])
            targets.append(g[stepped])
    if not obs:
        return g, np.zeros((0, 0 if seen is None else seen.shape[-1]), dtype=np.float32), np.zeros(0)
    return g, np.concatenate(obs), np.concatenate(targets)


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
                 normalizer: RunningObsNormalizer, device: torch.device,
                 workers: Optional[BranchWorkers] = None):
        self.env_cfg = env_cfg
        self.vine = vine
        self.gamma = gamma
        self.normalizer = normalizer  # read only: frozen during branches
        self.device = device
        self.pool: list[gym.Env] = []
        self.workers = workers  # Config.branch_processes > 1: they step some of the chunks

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
    def branch(self, policy: Policy, value_net: ValueNet, states: list[RolloutState],
               kl_obs: Optional[torch.Tensor] = None) -> BranchResult:
        """The vine batch of one iteration, the simulator steps its branches used, and the value
        samples ``vine.value_targets`` asks for. ``kl_obs``: see VineBatch.kl_obs."""
        obs = torch.as_tensor(np.stack([st.obs for st in states]), device=self.device)
        actions, behaviour_log_prob, enumerated = self.actions_for(policy, obs)
        q, steps, value_obs, value_targets = self._estimate(policy, value_net, states, actions,
                                                            self.vine.value_targets == "branches")
        batch = VineBatch(obs, actions, q, behaviour_log_prob, enumerated, kl_obs)
        if self.vine.value_targets != "trunk":
            old_log_prob = policy.distribution(obs).log_prob(actions.transpose(0, 1)).T
            value_obs = torch.cat([obs, value_obs])
            value_targets = torch.cat([batch.state_values(old_log_prob), value_targets])
        return BranchResult(batch, steps, value_obs, value_targets)

    @torch.no_grad()
    def estimate_q(self, policy: Policy, value_net: ValueNet, states: list[RolloutState],
                   actions: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Q(s_n, a_{n,k}) [S, K] from one branch per (state, action), and the steps used."""
        q, steps, _, _ = self._estimate(policy, value_net, states, actions, record=False)
        return q, steps

    def _estimate(self, policy: Policy, value_net: ValueNet, states: list[RolloutState], actions: torch.Tensor,
                  record: bool) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        """Q [S, K], the steps used, and (with ``record``) the branch states' value samples."""
        k = actions.shape[1]
        # One noise sequence per state, shared by its K branches (common random numbers).
        noise = policy.draw_noise((len(states), max(self.vine.rollout_len - 1, 1)))
        q = torch.empty(len(states), k, device=self.device)
        steps = 0
        value_obs: list[np.ndarray] = []
        value_targets: list[np.ndarray] = []
        # Chunks of branch_batch branches, each stepped in lockstep. The chunking alone decides the
        # numbers: which process steps a chunk does not (Config.branch_processes).
        per_chunk = max(1, self.vine.branch_batch // k)
        starts = range(0, len(states), per_chunk)
        index = [list(range(start, min(start + per_chunk, len(states)))) for start in starts]
        jobs = [ChunkJob([states[i] for i in idx], actions[idx], noise[idx]) for idx in index]
        if self.workers is not None:
            chunks = self.workers.run(policy, value_net, self.normalizer, jobs, record,
                                      lambda job: self.rollouts(policy, value_net, job, record))
        else:
            chunks = [self.rollouts(policy, value_net, job, record) for job in jobs]
        for idx, chunk in zip(index, chunks):
            q[idx] = torch.as_tensor(chunk.q, dtype=torch.float32, device=self.device).view(len(idx), k)
            steps += chunk.steps
            value_obs.append(chunk.value_obs)
            value_targets.append(chunk.value_targets)
        as_tensor = lambda x, dtype: torch.as_tensor(np.concatenate(x), dtype=dtype, device=self.device)
        obs_dim = states[0].obs.shape[-1]
        return (q, steps, as_tensor(value_obs, torch.float32).reshape(-1, obs_dim),
                as_tensor(value_targets, torch.float32))

    def rollouts(self, policy: Policy, value_net: ValueNet, job: ChunkJob, record: bool) -> ChunkResult:
        """Branches of a chunk of states, stepped in lockstep with one policy forward per step."""
        states, first_actions, noise = job.states, job.first_actions, job.noise
        s, k = first_actions.shape[:2]
        envs = self._envs(s * k)
        state_of = np.repeat(np.arange(s), k)  # branch i belongs to state state_of[i]
        for env, state_index in zip(envs, state_of):
            restore(env, states[state_index].snapshot)
        n, horizon, obs_dim = s * k, self.vine.rollout_len, states[0].obs.shape[-1]
        rewards = np.zeros((horizon, n))
        seen = np.zeros((horizon, n, obs_dim), dtype=np.float32) if record else None  # obs after step j
        length = np.zeros(n, dtype=np.int64)  # steps each branch took
        active = np.ones(n, dtype=bool)
        cut = np.zeros(n, dtype=bool)  # branches the time limit cut: bootstrapped like unfinished ones
        obs = np.zeros((n, obs_dim), dtype=np.float32)
        actions = first_actions.reshape(n, *first_actions.shape[2:])
        steps = 0
        for j in range(horizon):
            live = np.flatnonzero(active)
            if live.size == 0:
                break
            if j > 0:
                actions_live = policy.sample_from_noise(torch.as_tensor(obs[live], device=self.device),
                                                        noise[torch.as_tensor(state_of[live]), j - 1])
            else:
                actions_live = actions
            # Clip the live branches' actions and normalise their observations once per step, not
            # once per branch (elementwise maths: the same numbers bit for bit, less per-call cost).
            env_actions = self._to_env(envs[live[0]].action_space, actions_live.cpu().numpy())
            raws = np.empty((live.size, obs_dim))
            for row, (a, i) in enumerate(zip(env_actions, live)):
                raw, reward, terminated, truncated, _ = envs[i].step(a)
                steps += 1
                rewards[j, i] = float(reward)
                raws[row] = raw
                if terminated or truncated:
                    active[i] = False
                    cut[i] = bool(truncated and not terminated)
            obs[live] = self.normalizer(raws)
            length[live] = j + 1
            if seen is not None:
                seen[j, live] = obs[live]
        cut |= active  # branches that ran their full length
        bootstrap = np.zeros(n)
        if cut.any():
            bootstrap[cut] = value_net(torch.as_tensor(obs[cut], device=self.device)).cpu().numpy()
        q, value_obs, value_targets = branch_returns(rewards, length, bootstrap, self.gamma, seen)
        return ChunkResult(q=q, steps=steps, value_obs=value_obs, value_targets=value_targets)

    @staticmethod
    def _to_env(space: gym.Space, actions: np.ndarray) -> list[Any]:
        """One env action per row of ``actions``: Box actions clipped to the space, discrete ones as int."""
        clipped = clip_action(actions, space)
        return list(clipped) if isinstance(space, gym.spaces.Box) else [int(a) for a in clipped]

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        for env in self.pool:
            env.close()
