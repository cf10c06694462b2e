"""Policy and value networks. The actor (Policy) and the critic (ValueNet) are separate modules, so
the natural-gradient code takes ``policy.parameters()`` and never filters parameters by name."""

from __future__ import annotations

import math
from typing import Sequence

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal, kl_divergence

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int], activation: str, out_gain: float) -> nn.Sequential:
    """MLP with orthogonal init (as in the OpenAI baselines / SB3 / CleanRL policy-gradient code):
    sqrt(2) gain for hidden layers, a small gain on the policy head so the initial policy is
    close to uniform / centred."""
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [_init(nn.Linear(a, b), math.sqrt(2)), _ACTIVATIONS[activation]()]
    layers.append(_init(nn.Linear(sizes[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


def run_layers(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` with the same operations, minus nn.Module's per-call dispatch (hook and tracing
    checks, ~6 calls per forward pass): sampling calls the policy once per env step, where that
    dispatch was a third of the forward pass's Python time."""
    for layer in net:
        x = layer.forward(x)
    return x


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Policy(nn.Module):
    """Common interface of the stochastic policies."""

    def distribution(self, obs: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def draw_noise(self, batch_shape: tuple[int, ...]) -> torch.Tensor:
        """The randomness of sampling, drawn from torch's generator: standard normal for Gaussian
        policies, uniform(0, 1) for categorical ones. Kept separate from the policy so that vine
        branches can share one noise sequence (common random numbers)."""
        raise NotImplementedError

    def sample_from_noise(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Deterministic map (obs, noise) -> action distributed as pi(.|obs) for noise ~ draw_noise."""
        raise NotImplementedError

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """Draw actions for a batch of observations (the rollout's hot path, no grad)."""
        return self.sample_from_noise(obs, self.draw_noise(obs.shape[:-1]))

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action used for evaluation (mean / most likely action)."""
        raise NotImplementedError

    @staticmethod
    def kl(old: Distribution, new: Distribution) -> torch.Tensor:
        """KL(old || new) per observation."""
        return kl_divergence(old, new)


class GaussianPolicy(Policy):
    """Diagonal Gaussian with a state-independent log-std (the paper's continuous-control policy).
    Actions are unbounded here; they are clipped only when sent to the env."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], activation: str,
                 log_std_init: float):
        super().__init__()
        self.mean_net = mlp(obs_dim, act_dim, hidden, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Distribution:
        mean = self.mean_net(obs)
        std = self.log_std.exp().expand_as(mean)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)

    def draw_noise(self, batch_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(*batch_shape, self.log_std.shape[0], device=self.log_std.device)

    def sample_from_noise(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return run_layers(self.mean_net, obs) + self.log_std.exp() * noise

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean_net(obs)


class CategoricalPolicy(Policy):
    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int], activation: str):
        super().__init__()
        self.logits_net = mlp(obs_dim, n_actions, hidden, activation, out_gain=0.01)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        return Categorical(logits=self.logits_net(obs), validate_args=False)

    def draw_noise(self, batch_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(*batch_shape, device=next(self.parameters()).device)

    def sample_from_noise(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # Inverse-CDF sampling: the first action whose cumulative probability exceeds the noise.
        cdf = torch.softmax(run_layers(self.logits_net, obs), dim=-1).cumsum(dim=-1)
        action = torch.searchsorted(cdf, noise.unsqueeze(-1)).squeeze(-1)
        return action.clamp(max=cdf.shape[-1] - 1)  # guard against cdf[-1] rounding below 1

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits_net(obs).argmax(dim=-1)


class ValueNet(nn.Module):
    """State-value baseline V(s), fitted by regression on returns.

    With ``normalize_targets`` the network learns the targets standardised by the statistics of the
    latest batch (mean, std buffers, saved with the weights) and ``forward`` returns V on the
    returns' own scale. When the statistics change, the output layer is rescaled so that every
    prediction stays exactly what it was (Pop-Art, van Hasselt et al. 2016): only the fit moves V.
    Without it (the default), the network regresses the raw targets."""

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, obs_dim: int, hidden: Sequence[int], activation: str, normalize_targets: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden, activation, out_gain=1.0)
        self.normalize_targets = normalize_targets
        if normalize_targets:  # buffers only when used: plain checkpoints keep their keys
            self.register_buffer("target_mean", torch.zeros(()))
            self.register_buffer("target_std", torch.ones(()))

    def normalized(self, obs: torch.Tensor) -> torch.Tensor:
        """The network's own output: V on the standardised scale the fit works on."""
        return self.net(obs).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.normalize_targets:
            return self.normalized(obs)
        return self.normalized(obs) * self.target_std + self.target_mean

    def normalize(self, targets: torch.Tensor) -> torch.Tensor:
        if not self.normalize_targets:
            return targets
        return (targets - self.target_mean) / self.target_std

    @torch.no_grad()
    def update_target_stats(self, targets: torch.Tensor) -> None:
        """Standardise on this batch's targets, preserving every output (Pop-Art's ART step)."""
        if not self.normalize_targets:
            return
        mean, std = targets.mean(), targets.std().clamp(min=1e-6)
        head = self.net[-1]
        assert isinstance(head, nn.Linear)
        old_mean, old_std = self.target_mean.clone(), self.target_std.clone()
        head.weight.mul_(old_std / std)
        head.bias.copy_((old_std * head.bias + old_mean - mean) / std)
        self.target_mean.copy_(mean)
        self.target_std.copy_(std)


def make_policy(observation_space: gym.Space, action_space: gym.Space, hidden: Sequence[int],
                activation: str, log_std_init: float) -> Policy:
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"observation space {observation_space} is not supported: a flat Box is needed")
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden, activation)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianPolicy(obs_dim, action_space.shape[0], hidden, activation, log_std_init)
    raise ValueError(f"action space {action_space} is not supported: Discrete or a flat Box is needed")
