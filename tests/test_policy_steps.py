"""The trust-region invariants on real batches from real envs."""

import copy

import pytest
import torch

from trpo_exp import algorithms
from trpo_exp.algos.common import mean_kl
from trpo_exp.config import Config, EnvConfig
from trpo_exp.engine import Trainer
from trpo_exp.optim.fisher import fisher_vector_product
from trpo_exp.optim.flat import flat_params


def make_trainer(tmp_path, algo: str, env_id: str, **algo_kwargs) -> Trainer:
    cfg = Config(algo=algorithms.get(algo).schema(steps_per_iter=1024, **algo_kwargs),
                 env=EnvConfig(id=env_id, num_envs=4), total_steps=10**6, seed=1)
    return Trainer(cfg, tmp_path)


def step_and_measure(trainer: Trainer):
    """One policy step on a fresh batch; KL measured here, independently of the step's own stats."""
    batch, _ = trainer.collect(first=True)
    targets = trainer.compute_targets(batch)
    old_policy = copy.deepcopy(trainer.policy)
    policy_batch, _ = trainer.estimator.policy_batch(trainer.policy, trainer.value_net, batch, targets.advantages)
    stats = trainer.policy_step(trainer.policy, policy_batch)
    trainer.update_value(batch, targets)
    obs = batch.obs.flatten(0, 1)
    with torch.no_grad():
        kl = float(mean_kl(trainer.policy, obs, old_policy.distribution(obs)))
    return stats, kl, old_policy, obs


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_every_accepted_trpo_step_stays_inside_the_trust_region(tmp_path, env_id):
    max_kl = 0.01
    trainer = make_trainer(tmp_path, "trpo", env_id, max_kl=max_kl)
    accepted = 0
    for _ in range(6):
        stats, kl, *_ = step_and_measure(trainer)
        assert kl == pytest.approx(stats.kl, rel=1e-5, abs=1e-9)
        if stats.step_accepted:
            accepted += 1
            assert 0 < kl <= max_kl
            assert stats.surrogate_improvement > 0
        else:
            assert kl == 0.0  # rejected: the policy is exactly the old one
    assert accepted >= 4
    trainer.close()


def test_rejected_line_search_leaves_the_policy_unchanged(tmp_path):
    # accept_ratio close to 1 with a single try: the step is almost surely rejected.
    trainer = make_trainer(tmp_path, "trpo", "Pendulum-v1", backtrack_iters=1, accept_ratio=0.999,
                           max_kl=0.5)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    stats, kl, *_ = step_and_measure(trainer)
    if stats.step_accepted:
        pytest.skip("the single full step happened to meet the 99.9% ratio")
    assert stats.backtracks == 1 and kl == 0.0
    for p, q in zip(before, trainer.policy.parameters()):
        assert torch.equal(p, q)
    trainer.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_npg_step_lands_at_kl_close_to_delta(tmp_path, env_id):
    # The natural step s is scaled so that 0.5 s^T (F + damping I) s = delta. With a small delta the
    # quadratic model is accurate: the measured KL must match 0.5 s^T F s closely, and delta up to
    # the share of the damping term (small damping here). At delta 1e-4 Pendulum's first step is
    # already 20% off the quadratic model (measured); at 1e-6 it is within 1%.
    max_kl, damping = 1e-6, 1e-3
    trainer = make_trainer(tmp_path, "npg", env_id, max_kl=max_kl, cg_damping=damping, cg_iters=50)
    for _ in range(2):
        stats, kl, old_policy, obs = step_and_measure(trainer)
        assert stats.backtracks == 0 and stats.step_accepted
        step = flat_params(list(trainer.policy.parameters())) - flat_params(list(old_policy.parameters()))
        quadratic = 0.5 * float(step @ fisher_vector_product(old_policy, obs, 0.0)(step))
        assert kl == pytest.approx(quadratic, rel=0.1)
        assert 0.7 * max_kl <= kl <= 1.1 * max_kl
    trainer.close()
