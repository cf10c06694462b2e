"""Single-path sampling (paper, section 5.1): run the current policy in a vector of envs."""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv

from trpo_exp import checkpoint
from trpo_exp.envs.actions import clip_action
from trpo_exp.envs.factory import restore_vector_env_states, vector_env_states
from trpo_exp.envs.snapshot import snapshot
from trpo_exp.nets import Policy
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.rollout.batch import Batch
from trpo_exp.rollout.vine import RolloutState

log = logging.getLogger("trpo_exp")


class SinglePathSampler:
    """Keeps the vector env, its current observation and the per-env running episode stats between
    iterations, so episodes continue across batch boundaries."""

    def __init__(self, envs: gym.vector.VectorEnv, seeds: list[int], normalizer: RunningObsNormalizer,
                 device: torch.device):
        self.envs = envs
        self.normalizer = normalizer
        self.device = device
        self.raw_obs, _ = envs.reset(seed=seeds)  # type: ignore[arg-type]  # a seed per env is allowed
        self.ep_return = np.zeros(envs.num_envs)
        self.ep_length = np.zeros(envs.num_envs, dtype=np.int64)
        self.action_space = envs.single_action_space
        self.stepping = False  # in envs.step: still True at close() when an exception cut a step short

    def _to_env(self, actions: torch.Tensor) -> np.ndarray:
        return clip_action(actions.cpu().numpy(), self.action_space)

    @torch.no_grad()
    def collect(self, policy: Policy, steps_per_env: int,
                snapshot_plan: Optional[dict[int, list[int]]] = None) -> Batch:
        """Run ``steps_per_env`` steps in every env. ``snapshot_plan`` {step: [env indices]} saves
        the simulator state of those envs just before those steps (the vine's rollout set)."""
        snapshot_plan = snapshot_plan or {}
        # Before any statistics exist the policy sees the observations as they are; the batch is
        # then re-expressed in the statistics it gave (_in_own_statistics).
        first_batch = self.normalizer.enabled and not self.normalizer.has_statistics
        raw_before = self.raw_obs
        snapshot_at: list[tuple[int, int]] = []
        raw_final: list[np.ndarray] = []
        rollout_states: list[RolloutState] = []
        obs: list[torch.Tensor] = []
        actions: list[torch.Tensor] = []
        rewards: list[np.ndarray] = []
        terminated: list[np.ndarray] = []
        truncated: list[np.ndarray] = []
        final_obs: list[np.ndarray] = []
        raw_seen: list[np.ndarray] = []
        returns: list[float] = []
        lengths: list[int] = []
        normalized = self.normalizer(self.raw_obs)
        for _ in range(steps_per_env):
            obs_t = torch.as_tensor(normalized, device=self.device)
            for i in snapshot_plan.get(len(obs), ()):
                env = self.envs.envs[i]  # type: ignore[attr-defined]  # vine runs on a SyncVectorEnv
                rollout_states.append(RolloutState(snapshot(env), normalized[i].copy()))
                snapshot_at.append((len(obs), i))
            action = policy.sample(obs_t)
            self.stepping = True
            raw_next, reward, term, trunc, info = self.envs.step(self._to_env(action))
            self.stepping = False
            obs.append(obs_t)
            actions.append(action)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            raw_seen.append(raw_next)
            self.raw_obs = raw_next
            normalized = self.normalizer(raw_next)
            self.ep_return += reward
            self.ep_length += 1
            # The info dict is empty unless an episode ended (DiscardStepInfo; the vector env adds
            # 'final_obs' then), so most steps skip the per-env episode bookkeeping below.
            if info:
                for j in np.flatnonzero(trunc):  # the final observations of truncated episodes bootstrap V
                    raw_final.append(info["final_obs"][j])
                    final_obs.append(self.normalizer(info["final_obs"][j]))
                for j in np.flatnonzero(term | trunc):
                    returns.append(float(self.ep_return[j]))
                    lengths.append(int(self.ep_length[j]))
                    self.ep_return[j], self.ep_length[j] = 0.0, 0
        # The normalisation statistics change once per batch, after it: the whole batch (and the
        # policy step that learns from it) sees one fixed observation transform.
        self.normalizer.update(np.concatenate(raw_seen))
        obs_dim = normalized.shape[-1]
        as_tensor = lambda x, dtype: torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)
        if first_batch:
            obs, normalized, final_obs, rollout_states = self._in_own_statistics(
                [raw_before, *raw_seen[:-1]], raw_final, rollout_states, snapshot_at)
        return Batch(
            obs=torch.stack(obs),
            actions=torch.stack(actions),
            rewards=as_tensor(rewards, torch.float32),
            terminated=as_tensor(terminated, torch.bool),
            truncated=as_tensor(truncated, torch.bool),
            last_obs=torch.as_tensor(normalized, device=self.device),
            final_obs=as_tensor(final_obs, torch.float32).reshape(-1, obs_dim),
            episode_returns=tuple(returns),
            episode_lengths=tuple(lengths),
            rollout_states=tuple(rollout_states),
        )

    def _in_own_statistics(self, raw_obs: list[np.ndarray], raw_final: list[np.ndarray],
                           rollout_states: list[RolloutState], snapshot_at: list[tuple[int, int]]
                           ) -> tuple[list[torch.Tensor], np.ndarray, list[np.ndarray], list[RolloutState]]:
        """The first batch, learned from in the statistics of its own observations, as every later
        batch is in statistics that include it. The policy that sampled it saw them unnormalised,
        which matters little: its head is initialised near zero (nets.mlp), so its actions hardly
        depend on the observation yet. Seeding the statistics with the reset states instead (the
        original behaviour) clipped 64% of Hopper's first-batch entries at clip_obs: a few nearly
        identical states give a variance near zero."""
        renormalized = self.normalizer(np.stack(raw_obs))  # [T, N, obs_dim]
        obs = list(torch.as_tensor(renormalized, device=self.device))
        final_obs = [self.normalizer(raw) for raw in raw_final]
        states = [RolloutState(state.snapshot, renormalized[t, i].copy())
                  for state, (t, i) in zip(rollout_states, snapshot_at)]
        return obs, self.normalizer(self.raw_obs), final_obs, states

    def state_dict(self) -> dict[str, Any]:
        """Where the envs are: their simulator states, the current observations and the running
        episode accumulators (episodes continue across iterations, and across a resume)."""
        env_states = vector_env_states(self.envs)
        return {**({"envs": checkpoint.pack(env_states)} if env_states is not None else {}),
                "raw_obs": torch.from_numpy(np.array(self.raw_obs)),
                "ep_return": torch.from_numpy(self.ep_return.copy()),
                "ep_length": torch.from_numpy(self.ep_length.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "envs" not in state:  # an env without snapshots: its episodes in progress start over
            self._restart_episodes(state["raw_obs"].numpy())
            return
        restore_vector_env_states(self.envs, checkpoint.unpack(state["envs"]))
        self.raw_obs = state["raw_obs"].numpy().copy()
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()

    def _restart_episodes(self, raw_obs_at_checkpoint: np.ndarray) -> None:
        """Resume without the simulator states: new episodes, from reset seeds that the checkpoint
        determines (a second resume from it restarts alike). The run goes on; from here it is not
        bit-identical to an uninterrupted one."""
        log.warning("env %s has no snapshot support: the episodes in progress at the checkpoint start over; "
                    "the resumed run is not bit-identical to an uninterrupted one",
                    self.envs.spec.id if self.envs.spec else "?")
        entropy = int.from_bytes(hashlib.sha256(raw_obs_at_checkpoint.tobytes()).digest()[:8], "little")
        seeds = np.random.SeedSequence(entropy).generate_state(self.envs.num_envs).tolist()
        self.raw_obs, _ = self.envs.reset(seed=seeds)
        self.ep_return = np.zeros(self.envs.num_envs)
        self.ep_length = np.zeros(self.envs.num_envs, dtype=np.int64)

    def close(self) -> None:
        if self.stepping and isinstance(self.envs, AsyncVectorEnv):
            # The step was cut short (a second SIGTERM or Ctrl-C while an env was stuck): a plain
            # close() would wait for that step's result for ever, so the env processes are killed.
            # SIGKILL, not close(terminate=True)'s SIGTERM: forked workers inherit the run's signal
            # handlers and would each print a traceback. Gymnasium warns about the pending step;
            # the run's own one line says what happened.
            for process in self.envs.processes:
                process.kill()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.envs.close(terminate=True)
            return
        self.envs.close()
