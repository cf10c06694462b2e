"""Conjugate gradient on a known system; Fisher-vector products against the explicit Hessian."""

import pytest
import torch
from torch.func import functional_call

from trpo_exp.nets import CategoricalPolicy, GaussianPolicy
from trpo_exp.optim.cg import conjugate_gradient
from trpo_exp.optim.fisher import fisher_vector_product
from trpo_exp.optim.flat import flat_grad, flat_params, set_flat_params


def test_cg_solves_known_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = m @ m.T + 12 * torch.eye(12, dtype=torch.float64)
    x_true = torch.randn(12, generator=g, dtype=torch.float64)
    b = a @ x_true
    x = conjugate_gradient(lambda v: a @ v, b, iters=50, tol=1e-24)
    torch.testing.assert_close(x, x_true, rtol=1e-8, atol=1e-10)


def test_cg_on_diagonal_system_converges_in_as_many_steps_as_distinct_eigenvalues():
    a = torch.diag(torch.tensor([2.0, 2.0, 5.0, 5.0], dtype=torch.float64))
    b = torch.tensor([1.0, -1.0, 2.0, 3.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=2, tol=0.0)
    torch.testing.assert_close(x, b / torch.diag(a))


def test_cg_stops_at_tolerance_and_respects_iteration_cap():
    a = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    b = torch.ones(10, dtype=torch.float64)
    calls = []
    conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iters=3, tol=0.0)
    assert len(calls) == 3
    calls.clear()
    conjugate_gradient(lambda v: calls.append(1) or a @ v, torch.zeros(10, dtype=torch.float64), iters=5, tol=1e-10)
    assert calls == []  # zero right-hand side: already solved


def test_flat_params_roundtrip_and_grad():
    policy = GaussianPolicy(3, 2, [4], "tanh", 0.0)
    params = list(policy.parameters())
    flat = flat_params(params)
    set_flat_params(params, flat * 2)
    torch.testing.assert_close(flat_params(params), flat * 2)
    out = sum((p ** 2).sum() for p in params)
    torch.testing.assert_close(flat_grad(out, params), 2 * flat_params(params))
    with pytest.raises(ValueError):
        set_flat_params(params, torch.zeros(flat.numel() + 1))


def _explicit_kl_hessian(policy, obs):
    names = [n for n, _ in policy.named_parameters()]
    shapes = [p.shape for p in policy.parameters()]
    theta0 = flat_params(list(policy.parameters()))
    with torch.no_grad():
        old = policy.distribution(obs)

    def unflatten(flat):
        out, i = {}, 0
        for name, shape in zip(names, shapes):
            n = shape.numel()
            out[name] = flat[i:i + n].view(shape)
            i += n
        return out

    def mean_kl(flat):
        return policy.kl(old, _distribution_with(policy, unflatten(flat), obs)).mean()

    return torch.autograd.functional.hessian(mean_kl, theta0)


def _distribution_with(policy, params, obs):
    """policy.distribution(obs) evaluated with the given parameter tensors (differentiable)."""
    class Call(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, o):
            return self.p.distribution(o)

    return functional_call(Call(policy), {f"p.{k}": v for k, v in params.items()}, (obs,))


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_equals_explicit_kl_hessian(kind, damping):
    torch.manual_seed(0)
    if kind == "gaussian":
        policy = GaussianPolicy(3, 2, [4], "tanh", -0.3).double()
    else:
        policy = CategoricalPolicy(3, 3, [4], "tanh").double()
    # Move away from the near-deterministic init so the Hessian is not trivially small.
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    obs = torch.randn(7, 3, dtype=torch.float64)
    hessian = _explicit_kl_hessian(policy, obs)
    fvp = fisher_vector_product(policy, obs, damping)
    for seed in range(3):
        v = torch.randn(hessian.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), hessian @ v + damping * v, rtol=1e-7, atol=1e-9)


def test_fixed_step_npg_update_equals_alpha_times_explicit_inverse_fisher_times_gradient():
    """npg_fixed: theta_new - theta = alpha (F + damping I)^-1 g, with F the explicit KL Hessian
    and g the explicit surrogate gradient (CG run to convergence on this small problem)."""
    from trpo_exp.algos.common import PolicyBatch
    from trpo_exp.algos.natural import FixedStep, NaturalGradient

    torch.manual_seed(0)
    policy = GaussianPolicy(3, 2, [4], "tanh", -0.3).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    obs = torch.randn(9, 3, dtype=torch.float64)
    with torch.no_grad():
        actions = policy.sample(obs)
        old_log_prob = policy.distribution(obs).log_prob(actions)
    batch = PolicyBatch(obs, actions, torch.randn(9, dtype=torch.float64), old_log_prob)
    params = list(policy.parameters())
    theta0 = flat_params(params)
    g = flat_grad(batch.surrogate(policy), params)
    alpha, damping = 0.3, 0.1
    fisher = _explicit_kl_hessian(policy, obs) + damping * torch.eye(theta0.numel(), dtype=torch.float64)
    expected = alpha * torch.linalg.solve(fisher, g)

    step = NaturalGradient(FixedStep(alpha), cg_iters=200, cg_tol=1e-30, damping=damping, fvp_subsample=1.0,
                           line_search=None)
    stats = step(policy, batch)
    torch.testing.assert_close(flat_params(params) - theta0, expected, rtol=1e-6, atol=1e-9)
    assert stats.step_accepted and stats.expected_improvement == pytest.approx(float(g @ expected))
