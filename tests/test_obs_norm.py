"""Observation normalisation: the first batch is learned from in the statistics of its own
observations (issue 14: seeding them with the 8 reset states clipped 64% of Hopper's entries)."""

import numpy as np
import torch

from trpo_exp.config import Config, EnvConfig, TRPOConfig
from trpo_exp.engine import Trainer
from trpo_exp.obs_norm import RunningObsNormalizer


def test_normaliser_merges_batches_into_the_statistics_of_their_union():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3.0, 2.0, (50, 4)), rng.normal(-1.0, 0.5, (70, 4))
    norm = RunningObsNormalizer((4,), clip=100.0)
    assert not norm.has_statistics
    norm.update(a)
    norm.update(b)
    both = np.concatenate([a, b])
    assert norm.has_statistics
    np.testing.assert_allclose(norm.mean, both.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(norm.var, both.var(axis=0), rtol=1e-5)
    np.testing.assert_allclose(norm(both).mean(axis=0), 0.0, atol=1e-4)


def test_the_first_hopper_batch_is_standardised_by_its_own_statistics(tmp_path):
    cfg = Config(algo=TRPOConfig(steps_per_iter=2048), env=EnvConfig(id="Hopper-v5", num_envs=8),
                 total_steps=10**6, seed=3)
    trainer = Trainer(cfg, tmp_path)
    try:
        batch, learn = trainer.collect(first=True)
        obs = batch.obs.flatten(0, 1).double()
        # Statistics of s_1..s_T, batch of s_0..s_{T-1}: the same states but one per env.
        assert learn and torch.allclose(obs.mean(0), torch.zeros(11, dtype=torch.float64), atol=0.05)
        assert torch.allclose(obs.std(0), torch.ones(11, dtype=torch.float64), atol=0.05)
        clipped = (obs.abs() >= cfg.env.clip_obs).double().mean()
        assert clipped < 0.001, f"{float(clipped):.1%} of the first batch's entries are clipped"
        # The bootstrap observations are expressed in the same statistics as the batch.
        expected_last = torch.as_tensor(trainer.normalizer(trainer.sampler.raw_obs))
        assert torch.equal(batch.last_obs, expected_last)
    finally:
        trainer.close()
