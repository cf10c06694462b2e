"""Vine: the KL constraint and the Fisher products over every trunk state (issue 12), and the value
baseline's extra samples from the branches."""

import copy

import numpy as np
import pytest
import torch

from trpo_exp import algorithms
from trpo_exp.algos.common import mean_kl
from trpo_exp.config import Config, EnvConfig, VineConfig
from trpo_exp.engine import Trainer


def make_vine_trainer(tmp_path, env_id: str, **vine) -> Trainer:
    schema = algorithms.get("trpo_vine").schema
    cfg = Config(algo=schema(steps_per_iter=512, max_kl=0.01, vine=VineConfig(num_states=8, num_actions=2,
                                                                              rollout_len=10, **vine)),
                 env=EnvConfig(id=env_id, num_envs=4), total_steps=10**6, seed=3)
    return Trainer(cfg, tmp_path)


def vine_step(trainer: Trainer):
    """One vine iteration's policy step; the KL is measured here over the trunk and over the rollout
    set, independently of the step's own stats."""
    batch, _ = trainer.collect(first=True)
    targets = trainer.compute_targets(batch)
    old_policy = copy.deepcopy(trainer.policy)
    vine_batch, _ = trainer.estimator.policy_batch(trainer.policy, trainer.value_net, batch, targets.advantages)
    stats = trainer.policy_step(trainer.policy, vine_batch)
    trainer.update_value(batch, targets, trainer.estimator.value_samples())

    def kl_over(obs):
        with torch.no_grad():
            return float(mean_kl(trainer.policy, obs, old_policy.distribution(obs)))

    return stats, kl_over(batch.obs.flatten(0, 1)), kl_over(vine_batch.states), batch, vine_batch


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_an_accepted_vine_step_keeps_the_kl_over_the_whole_trunk_inside_the_trust_region(tmp_path, env_id):
    trainer = make_vine_trainer(tmp_path, env_id)
    accepted = 0
    for _ in range(4):
        stats, trunk_kl, _, batch, vine_batch = vine_step(trainer)
        # The policy step sees every trunk state (512), the objective only the rollout set (8).
        assert torch.equal(vine_batch.obs, batch.obs.flatten(0, 1)) and vine_batch.states.shape[0] == 8
        assert trunk_kl == pytest.approx(stats.kl, rel=1e-5, abs=1e-9)
        if stats.step_accepted:
            accepted += 1
            assert 0 < trunk_kl <= 0.01
    assert accepted >= 3
    trainer.close()


def test_the_papers_form_measures_the_kl_on_the_rollout_set_only(tmp_path):
    trainer = make_vine_trainer(tmp_path, "Pendulum-v1", kl_states="rollout")
    stats, trunk_kl, rollout_kl, batch, vine_batch = vine_step(trainer)
    assert torch.equal(vine_batch.obs, vine_batch.states) and vine_batch.kl_obs is None
    assert stats.step_accepted and rollout_kl == pytest.approx(stats.kl, rel=1e-5)
    assert trunk_kl != pytest.approx(rollout_kl, rel=1e-3)  # the trunk's KL is another number
    trainer.close()


@pytest.mark.parametrize(("targets", "extra"), [("trunk", 0), ("rollout", 8), ("branches", 8 + 8 * 2 * 9)])
def test_value_samples_from_the_branches(tmp_path, targets, extra):
    """'rollout': one V target per rollout state; 'branches': also one per state inside a branch
    (CartPole's early branches rarely end before 10 steps: 9 inner states per branch at most)."""
    trainer = make_vine_trainer(tmp_path, "CartPole-v1", value_targets=targets)
    batch, _ = trainer.collect(first=True)
    targets_ = trainer.compute_targets(batch)
    vine_batch, _ = trainer.estimator.policy_batch(trainer.policy, trainer.value_net, batch, targets_.advantages)
    samples = trainer.estimator.value_samples()
    assert trainer.estimator.value_samples() is None  # handed over once
    if extra == 0:
        assert samples is None
    else:
        obs, values = samples
        assert obs.shape[1] == batch.obs.shape[-1] and obs.shape[0] == values.shape[0]
        assert 8 <= values.shape[0] <= extra
        # The first S targets are the rollout states' E_{a~pi_old} Q(s, a) (exact sum over the 2 actions).
        torch.testing.assert_close(obs[:8], vine_batch.states)
        probs = trainer.policy.distribution(vine_batch.states).probs.detach()
        torch.testing.assert_close(values[:8], (probs * vine_batch.q).sum(dim=1))
        # Returns of at most 10 CartPole steps plus a bootstrap: finite and not above 10 + V.
        assert torch.isfinite(values).all() and (values > 0).all()
    trainer.close()


def test_branch_returns_on_a_hand_made_table():
    """Two branches of at most 3 steps, gamma 0.5: the first runs its full length and is
    bootstrapped with V = 8; the second terminates after 2 steps (bootstrap 0)."""
    from trpo_exp.rollout.vine import branch_returns

    rewards = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 0.0]])  # [L, n]; the 0 is never stepped
    seen = np.arange(3 * 2, dtype=np.float32).reshape(3, 2, 1)  # obs after step j of branch i
    q, obs, targets = branch_returns(rewards, np.array([3, 2]), np.array([8.0, 0.0]), 0.5, seen)
    # branch 0: g_3 = 8, g_2 = 1 + 4 = 5, g_1 = 1 + 2.5 = 3.5, g_0 = 1 + 1.75 = 2.75
    # branch 1: g_2 = 0, g_1 = 4, g_0 = 2 + 2 = 4
    np.testing.assert_allclose(q, [2.75, 4.0])
    # value samples, latest first: (s_2 of branch 0, 5), then (s_1 of branch 0, 3.5), (s_1 of branch 1, 4)
    np.testing.assert_allclose(obs[:, 0], [seen[1, 0, 0], seen[0, 0, 0], seen[0, 1, 0]])
    np.testing.assert_allclose(targets, [5.0, 3.5, 4.0])
    q_only, none_obs, none_targets = branch_returns(rewards, np.array([3, 2]), np.array([8.0, 0.0]), 0.5)
    np.testing.assert_allclose(q_only, q)
    assert none_obs.shape[0] == none_targets.shape[0] == 0


def test_sampled_actions_give_the_mean_branch_return_as_the_states_value(tmp_path):
    """Actions drawn from pi_old: the value target of a rollout state is the plain mean of its Q."""
    trainer = make_vine_trainer(tmp_path, "Pendulum-v1", value_targets="rollout")
    batch, _ = trainer.collect(first=True)
    vine_batch, _ = trainer.estimator.policy_batch(trainer.policy, trainer.value_net, batch,
                                                   trainer.compute_targets(batch).advantages)
    obs, values = trainer.estimator.value_samples()
    assert not vine_batch.enumerated and values.shape == (8,)
    torch.testing.assert_close(obs, vine_batch.states)
    torch.testing.assert_close(values, vine_batch.q.mean(dim=1))
    trainer.close()
