"""Value baseline: regression of V(s) on the value targets, minibatch Adam."""

from __future__ import annotations

import torch

from trpo_exp.nets import ValueNet


def fit_value(value_net: ValueNet, optimizer: torch.optim.Optimizer, obs: torch.Tensor,
              targets: torch.Tensor, epochs: int, batch_size: int) -> float:
    """Fit by mean squared error on the net's own (possibly standardised) scale; returns the mean
    loss over the last epoch."""
    targets = value_net.normalize(targets)
    n = obs.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, device=obs.device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = torch.mean((value_net.normalized(obs[idx]) - targets[idx]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
    return total / n
