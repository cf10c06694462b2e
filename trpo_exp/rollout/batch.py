"""The frozen record of one iteration's samples, time-major [T, N] as the advantage code expects."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    obs: torch.Tensor
    """[T, N, obs_dim] normalised observations the policy saw (float32)."""
    actions: torch.Tensor
    """[T, N, act_dim] unclipped Gaussian samples, or [T, N] discrete actions."""
    rewards: torch.Tensor
    """[T, N] rewards."""
    terminated: torch.Tensor
    """[T, N] bool: s_{t+1} is terminal (no bootstrap)."""
    truncated: torch.Tensor
    """[T, N] bool: the time limit cut the episode after step t (bootstrap from the final obs)."""
    last_obs: torch.Tensor
    """[N, obs_dim] normalised observation after the last step: bootstraps unfinished episodes."""
    final_obs: torch.Tensor
    """[K, obs_dim] normalised final observations of the K truncated steps, in row-major (t, n) order
    of ``truncated``: the true s_{t+1} of those steps."""
    episode_returns: tuple[float, ...]
    """Undiscounted returns of the training episodes that ended in this batch."""
    episode_lengths: tuple[int, ...]
    rollout_states: tuple = ()
    """Vine sampling only: the saved trunk states to branch from (RolloutState)."""

    @property
    def episode_end(self) -> torch.Tensor:
        return self.terminated | self.truncated

    @property
    def num_steps(self) -> int:
        return self.rewards.numel()


def next_state_values(batch: Batch, values: torch.Tensor, last_values: torch.Tensor,
                      final_values: torch.Tensor) -> torch.Tensor:
    """V(s_{t+1}) for every step [T, N]: the next row of ``values`` inside an episode,
    V(last_obs) after the last step, V(final_obs) on truncation. Terminated entries are left as they
    are; the advantage code masks them."""
    next_values = torch.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = last_values
    next_values[batch.truncated] = final_values
    return next_values
