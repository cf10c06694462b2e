"""Value baseline: regression of V(s) on the value targets, minibatch Adam."""

from __future__ import annotations

import torch

from trpo_exp.nets import ValueNet


def fit_value(value_net: ValueNet, optimizer: torch.optim.Optimizer, obs: torch.Tensor,
              targets: torch.Tensor, epochs: int, batch_size: int) -> float:
    """Fit by mean squared error on the net's own (possibly standardised) scale; returns the mean
    loss over the last epoch.

    The fit is most of an update's time on the MuJoCo presets (20 epochs x 16 minibatches), so its
    per-minibatch overhead is kept low without changing a single number: each epoch gathers its
    shuffled copy once (minibatches are then views), gradients come from autograd.grad straight
    into ``.grad`` (no zeroing pass), and only the last epoch's losses are read back."""
    targets = value_net.normalize(targets)
    params = [p for p in value_net.parameters() if p.requires_grad]
    n = obs.shape[0]
    total = 0.0
    for epoch in range(epochs):
        order = torch.randperm(n, device=obs.device)
        shuffled_obs, shuffled_targets = obs[order], targets[order]
        last_epoch = epoch == epochs - 1
        for start in range(0, n, batch_size):
            batch_obs = shuffled_obs[start:start + batch_size]
            loss = torch.mean((value_net.normalized(batch_obs) - shuffled_targets[start:start + batch_size]) ** 2)
            for p, g in zip(params, torch.autograd.grad(loss, params)):
                p.grad = g
            optimizer.step()
            if last_epoch:
                total += float(loss.detach()) * batch_obs.shape[0]
    return total / n
