"""Reward scaling (env.normalize_reward): known answers for the discounted-return statistics, and
the option's boundaries."""

import numpy as np
import torch

from conftest import run_cli
from trpo_exp.reward_scale import RewardScaler


def test_rewards_are_divided_by_the_std_of_the_discounted_returns_across_batches():
    gamma = 0.5
    scaler = RewardScaler(num_envs=2, gamma=gamma, enabled=True, eps=0.0)
    r1 = torch.tensor([[1.0, 2.0], [4.0, 0.0]])
    e1 = torch.tensor([[False, True], [False, False]])
    r2 = torch.tensor([[2.0, 8.0]])
    e2 = torch.tensor([[True, False]])
    scaler(r1, e1)
    out = scaler(r2, e2)
    # By hand: env 0 returns 1, 4 + 0.5 * 1 = 4.5, then 2 + 0.5 * 4.5 = 4.25; env 1 returns 2 (its
    # episode ends, so the next starts at 0), 0, then 8 + 0.5 * 0 = 8.
    by_hand = np.array([1.0, 2.0, 4.5, 0.0, 4.25, 8.0])
    assert np.allclose(out.numpy(), r2.numpy() / by_hand.std())
    assert np.allclose(scaler.discounted, [0.0, 8.0])  # env 0 ended its episode in the last step


def test_disabled_scaling_returns_the_rewards_untouched():
    rewards = torch.randn(4, 3)
    assert RewardScaler(3, 0.99, enabled=False)(rewards, torch.zeros(4, 3, dtype=torch.bool)) is rewards


def test_scaled_rewards_train_and_log_raw_returns(tmp_path):
    import pandas as pd

    run_cli(["algo=trpo", "env=pendulum", "total_steps=4096", "env.normalize_reward=true", "logger=none",
             "eval.episodes=1"], run_dir=tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    # Pendulum's episode returns are around -1000 to -1500 on the env's scale, whatever the scaling.
    assert metrics["return_mean"].dropna().lt(-200).all()


def test_reward_scaling_is_refused_with_vine(tmp_path):
    result = run_cli(["algo=trpo_vine", "env=cartpole", "env.normalize_reward=true"], run_dir=tmp_path / "v",
                     check=False)
    assert result.returncode == 2
    assert "env.normalize_reward=True is not allowed" in result.stderr and "trpo_vine" in result.stderr
