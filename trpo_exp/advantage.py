"""Advantage and return estimators: pure functions of time-major tensors of shape [T, N].

Episode boundaries are described by two masks, kept apart on purpose:
- ``terminated[t]``: s_{t+1} is terminal, its value is 0 -> no bootstrap.
- ``episode_end[t]``: the episode stopped after step t for any reason (terminated or truncated by a
  time limit); the recursion must not carry information across it.
``next_values[t]`` is V(s_{t+1}) for the true next state of step t: on truncation V of the final
observation (not of the first observation of the next episode), and V of the last observation for
the unfinished episodes at the end of the batch. Entries where ``terminated`` is set are ignored.
"""

from __future__ import annotations

import torch


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"all inputs must have the same [T, N] shape, got {shapes}")


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
        terminated: torch.Tensor, episode_end: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16):
    delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t)
    A_t = delta_t + gamma * lam * (1 - episode_end_t) * A_{t+1}
    """
    _check_shapes(rewards=rewards, values=values, next_values=next_values,
                  terminated=terminated, episode_end=episode_end)
    not_terminal = 1.0 - terminated.to(rewards.dtype)
    carry = gamma * lam * (1.0 - episode_end.to(rewards.dtype))
    deltas = rewards + gamma * next_values * not_terminal - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    return advantages


def discounted_returns(rewards: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
                       episode_end: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted reward-to-go G_t = r_t + gamma * G_{t+1} inside an episode, bootstrapped with
    V(s_{t+1}) where the episode was cut (time-limit truncation, end of batch) and 0 on termination."""
    _check_shapes(rewards=rewards, next_values=next_values, terminated=terminated, episode_end=episode_end)
    terminated = terminated.to(torch.bool)
    episode_end = episode_end.to(torch.bool)
    returns = torch.zeros_like(rewards)
    # After the last step of the batch the "next return" is the bootstrap value itself.
    following = next_values[-1] * (~terminated[-1])
    for t in reversed(range(rewards.shape[0])):
        cut = episode_end[t] | (t == rewards.shape[0] - 1)
        bootstrap = torch.where(terminated[t], torch.zeros_like(rewards[t]), next_values[t])
        following = torch.where(cut, bootstrap, following)
        returns[t] = rewards[t] + gamma * following
        following = returns[t]
    return returns


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit standard deviation (population std; a single element maps to 0)."""
    return (x - x.mean()) / (x.std(unbiased=False) + eps)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target): 1 is perfect, 0 no better than the mean, NaN if
    the target is constant."""
    var_target = target.var(unbiased=False)
    if var_target == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var(unbiased=False) / var_target)
