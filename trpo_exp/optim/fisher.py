"""Fisher-vector products as Hessian-vector products of the mean KL (double backprop)."""

from __future__ import annotations

from typing import Callable

import torch

from trpo_exp.nets import Policy
from trpo_exp.optim.flat import flat_grad


def fisher_vector_product(policy: Policy, obs: torch.Tensor, damping: float
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return v -> (F + damping*I) v, with F the Hessian at the current parameters of
    mean_s KL(pi_old(.|s) || pi(.|s)), pi_old frozen at the current parameters.

    At pi = pi_old the KL's Hessian equals the Fisher information matrix (paper, appendix C).
    The KL gradient is built once with create_graph=True and reused by every product, so each CG
    iteration costs one backward pass instead of two."""
    params = list(policy.parameters())
    with torch.no_grad():
        old = policy.distribution(obs)
    kl = policy.kl(old, policy.distribution(obs)).mean()
    kl_grad = flat_grad(kl, params, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        hv = flat_grad(torch.dot(kl_grad, v), params, retain_graph=True)
        return hv + damping * v

    return product
