"""GAE and discounted returns against hand-computed tables (gamma = lambda = 0.5).

Column 0: an episode terminates after t=1; a new one runs unfinished to the end of the batch
(bootstrap V(last_obs) = 3). Column 1: the time limit truncates after t=1 (bootstrap from the final
observation, V = 10), then an episode terminates at t=3. Next-values under a termination are set to
99 to show they are ignored.
"""

import pytest
import torch

from trpo_exp.advantage import discounted_returns, explained_variance, gae, normalize
from trpo_exp.rollout.batch import Batch, next_state_values

REWARDS = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
VALUES = torch.tensor([[0.5, 1.0], [1.0, 1.0], [1.5, 1.0], [2.0, 1.0]])
NEXT_VALUES = torch.tensor([[1.0, 1.0], [99.0, 10.0], [2.0, 1.0], [3.0, 99.0]])
TERMINATED = torch.tensor([[False, False], [True, False], [False, False], [False, True]])
TRUNCATED = torch.tensor([[False, False], [False, True], [False, False], [False, False]])
EPISODE_END = TERMINATED | TRUNCATED


def test_gae_matches_hand_table():
    # deltas col0: 1.0, 1.0, 2.5, 3.5 ; col1: 0.5, 5.0, 0.5, 0.0
    expected = torch.tensor([[1.25, 1.75], [1.0, 5.0], [3.375, 0.5], [3.5, 0.0]])
    adv = gae(REWARDS, VALUES, NEXT_VALUES, TERMINATED, EPISODE_END, gamma=0.5, lam=0.5)
    torch.testing.assert_close(adv, expected)


def test_discounted_returns_match_hand_table():
    expected = torch.tensor([[2.0, 4.0], [2.0, 6.0], [5.75, 1.5], [5.5, 1.0]])
    ret = discounted_returns(REWARDS, NEXT_VALUES, TERMINATED, EPISODE_END, gamma=0.5)
    torch.testing.assert_close(ret, expected)


def test_gae_with_lambda_one_plus_values_is_the_discounted_return():
    adv = gae(REWARDS, VALUES, NEXT_VALUES, TERMINATED, EPISODE_END, gamma=0.5, lam=1.0)
    ret = discounted_returns(REWARDS, NEXT_VALUES, TERMINATED, EPISODE_END, gamma=0.5)
    torch.testing.assert_close(adv + VALUES, ret)


def test_truncation_bootstraps_but_termination_does_not():
    one = torch.ones(1, 1)
    no = torch.zeros(1, 1, dtype=torch.bool)
    yes = torch.ones(1, 1, dtype=torch.bool)
    truncated = gae(one, torch.zeros(1, 1), 4 * one, no, yes, gamma=0.5, lam=0.9)
    terminated = gae(one, torch.zeros(1, 1), 4 * one, yes, yes, gamma=0.5, lam=0.9)
    assert truncated.item() == pytest.approx(3.0)
    assert terminated.item() == pytest.approx(1.0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same"):
        gae(REWARDS, VALUES[:3], NEXT_VALUES, TERMINATED, EPISODE_END, 0.5, 0.5)


def test_next_state_values_uses_final_obs_on_truncation_and_last_obs_at_the_end():
    batch = Batch(obs=torch.zeros(4, 2, 1), actions=torch.zeros(4, 2), rewards=REWARDS,
                  terminated=TERMINATED, truncated=TRUNCATED, last_obs=torch.zeros(2, 1),
                  final_obs=torch.zeros(1, 1), episode_returns=(), episode_lengths=())
    values = torch.tensor([[0.5, 1.0], [1.0, 1.5], [1.5, 2.0], [2.0, 2.5]])
    nv = next_state_values(batch, values, last_values=torch.tensor([3.0, 7.0]), final_values=torch.tensor([10.0]))
    torch.testing.assert_close(nv, torch.tensor([[1.0, 1.5], [1.5, 10.0], [2.0, 2.5], [3.0, 7.0]]))


def test_normalize_and_explained_variance():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    n = normalize(x)
    assert n.mean().abs() < 1e-6 and n.std(unbiased=False) == pytest.approx(1.0, abs=1e-6)
    assert explained_variance(x, x) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), x) == pytest.approx(0.0)
