"""Natural policy gradient and TRPO: one natural-direction computation, two step sizes, an
optional line search.

direction x = F^-1 g by conjugate gradient on Fisher-vector products; then the step is
- KL-scaled (``KLScaledStep``): sqrt(2 delta / x^T F x) * x, which makes the quadratic KL model equal
  delta (paper, appendix C). npg takes it as it is ("normalised NPG", Rajeswaran et al. 2017);
  trpo backtracks along it until the measured mean KL <= delta and the surrogate improves
  (paper, section 6 and appendix C);
- fixed (``FixedStep``): alpha * x, theta += alpha F^-1 g, the natural policy gradient of Kakade
  (2001) and the baseline of the TRPO paper's Figure 4 (a fixed penalty coefficient, eq. 17):
  npg_fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch

from trpo_exp.algos.common import PolicyStepStats, StepBatch, mean_entropy, mean_kl
from trpo_exp.nets import Policy
from trpo_exp.optim.cg import conjugate_gradient
from trpo_exp.optim.fisher import fisher_vector_product
from trpo_exp.optim.flat import flat_grad, flat_params, set_flat_params


@dataclass(frozen=True)
class NaturalStep:
    """The largest step the quadratic KL model allows, and its linearly expected gain."""

    full_step: torch.Tensor
    expected_improvement: float


@dataclass(frozen=True)
class KLScaledStep:
    """The step whose quadratic KL model equals delta = ``max_kl``."""

    max_kl: float

    def __call__(self, x: torch.Tensor, fvp: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        x_f_x = torch.dot(x, fvp(x))
        # Guard the square root: with a zero gradient (e.g. all advantages 0) there is nothing to do.
        scale = torch.sqrt(2.0 * self.max_kl / x_f_x) if x_f_x > 0 else torch.zeros(())
        return scale * x


@dataclass(frozen=True)
class FixedStep:
    """theta += alpha F^-1 g: the step's size follows the gradient's, nothing bounds its KL."""

    alpha: float

    def __call__(self, x: torch.Tensor, fvp: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return self.alpha * x


StepSize = Union[KLScaledStep, FixedStep]


def natural_step(policy: Policy, batch: StepBatch, step_size: StepSize, cg_iters: int, cg_tol: float,
                 damping: float, fvp_obs: torch.Tensor) -> NaturalStep:
    params = list(policy.parameters())
    g = flat_grad(batch.surrogate(policy), params)
    fvp = fisher_vector_product(policy, fvp_obs, damping)
    x = conjugate_gradient(fvp, g, cg_iters, cg_tol)
    full_step = step_size(x, fvp)
    return NaturalStep(full_step=full_step, expected_improvement=float(torch.dot(g, full_step)))


@dataclass(frozen=True)
class BacktrackingLineSearch:
    max_kl: float
    """Accept a step only if its measured mean KL is <= this (delta)."""
    coeff: float
    iters: int
    accept_ratio: float


class NaturalGradient:
    """The npg / npg_fixed / trpo policy step: a step size, and a line search for trpo."""

    def __init__(self, step_size: StepSize, cg_iters: int, cg_tol: float, damping: float, fvp_subsample: float,
                 line_search: Optional[BacktrackingLineSearch]):
        self.step_size = step_size
        self.cg_iters = cg_iters
        self.cg_tol = cg_tol
        self.damping = damping
        self.fvp_subsample = fvp_subsample
        self.line_search = line_search

    def _fvp_obs(self, obs: torch.Tensor) -> torch.Tensor:
        if self.fvp_subsample >= 1.0:
            return obs
        n = max(1, int(round(self.fvp_subsample * obs.shape[0])))
        return obs[torch.randperm(obs.shape[0], device=obs.device)[:n]]

    def __call__(self, policy: Policy, batch: StepBatch) -> PolicyStepStats:
        entropy = mean_entropy(policy, batch.obs)
        params = list(policy.parameters())
        old_params = flat_params(params)
        with torch.no_grad():
            old_dist = policy.distribution(batch.obs)
            old_objective = float(batch.surrogate(policy))
        step = natural_step(policy, batch, self.step_size, self.cg_iters, self.cg_tol, self.damping,
                            self._fvp_obs(batch.obs))

        def try_step(fraction: float) -> tuple[float, float]:
            set_flat_params(params, old_params + fraction * step.full_step)
            with torch.no_grad():
                return float(batch.surrogate(policy)) - old_objective, float(mean_kl(policy, batch.obs, old_dist))

        if self.line_search is None:
            improvement, kl = try_step(1.0)
            return PolicyStepStats(kl=kl, surrogate_improvement=improvement,
                                   expected_improvement=step.expected_improvement, backtracks=0,
                                   step_accepted=True, entropy=entropy)

        ls = self.line_search
        for backtracks in range(ls.iters):
            fraction = ls.coeff ** backtracks
            improvement, kl = try_step(fraction)
            expected = step.expected_improvement * fraction
            enough = improvement > 0 and (ls.accept_ratio == 0 or improvement >= ls.accept_ratio * expected)
            if kl <= ls.max_kl and enough:
                return PolicyStepStats(kl=kl, surrogate_improvement=improvement,
                                       expected_improvement=step.expected_improvement, backtracks=backtracks,
                                       step_accepted=True, entropy=entropy)
        set_flat_params(params, old_params)  # no acceptable step: keep the old policy
        return PolicyStepStats(kl=0.0, surrogate_improvement=0.0, expected_improvement=step.expected_improvement,
                               backtracks=ls.iters, step_accepted=False, entropy=entropy)

    def state_dict(self) -> dict[str, Any]:
        return {}  # stateless between updates

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
