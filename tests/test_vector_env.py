"""The sampling loop's cheaper stand-ins give exactly what they replace: LeanSyncVectorEnv steps like
gymnasium's SyncVectorEnv (SAME_STEP autoreset), and the in-place clipping in the observation
normaliser and clip_action equals np.clip, NaN included."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from trpo_exp.config import EnvConfig
from trpo_exp.envs.actions import clip_action
from trpo_exp.envs.factory import LeanSyncVectorEnv, _make_one
from trpo_exp.obs_norm import RunningObsNormalizer


@pytest.mark.parametrize("env_id, max_steps", [("CartPole-v1", 15), ("Hopper-v5", 40)])
def test_lean_vector_env_steps_like_gymnasiums(env_id, max_steps):
    cfg = EnvConfig(id=env_id, num_envs=3, max_episode_steps=max_steps)
    lean = LeanSyncVectorEnv([_make_one(cfg) for _ in range(cfg.num_envs)])
    reference = SyncVectorEnv([_make_one(cfg) for _ in range(cfg.num_envs)], autoreset_mode=AutoresetMode.SAME_STEP)
    obs_lean, _ = lean.reset(seed=[4, 5, 6])
    obs_ref, _ = reference.reset(seed=[4, 5, 6])
    assert np.array_equal(obs_lean, obs_ref)
    reference.action_space.seed(0)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(200):
        actions = reference.action_space.sample()
        got, want = lean.step(actions), reference.step(actions)
        for a, b in zip(got[:4], want[:4]):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        ended = got[2] | got[3]
        ends["terminated"] += int(got[2].sum())
        ends["truncated"] += int(got[3].sum())
        if ended.any():
            assert np.array_equal(got[4]["_final_obs"], want[4]["_final_obs"])
            for j in np.flatnonzero(ended):
                assert np.array_equal(got[4]["final_obs"][j], want[4]["final_obs"][j])
        else:
            assert got[4] == {}  # the sampler skips its episode bookkeeping on an empty info
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends  # both kinds of episode end were met


def test_in_place_clipping_equals_np_clip_nan_included():
    rng = np.random.default_rng(0)
    obs = rng.normal(0.0, 30.0, (64, 5))
    obs[3, 2] = np.nan
    norm = RunningObsNormalizer((5,), clip=10.0)
    norm.update(rng.normal(1.0, 2.0, (100, 5)))
    want = np.clip((obs - norm.mean) / norm.std, -10.0, 10.0).astype(np.float32)
    got = norm(obs)
    assert got.dtype == np.float32 and np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[3, 2]) and np.nanmax(np.abs(got)) == 10.0  # the test does clip

    space = gym.spaces.Box(low=np.array([-1.0, -2.0, 0.0], dtype=np.float32),
                            high=np.array([1.0, 0.5, 3.0], dtype=np.float32), dtype=np.float32)
    actions = rng.normal(0.0, 3.0, (64, 3)).astype(np.float32)
    actions[7, 1] = np.nan
    got_actions = clip_action(actions, space)
    assert np.array_equal(got_actions, np.clip(actions, space.low, space.high), equal_nan=True)
    assert got_actions.dtype == np.float32
