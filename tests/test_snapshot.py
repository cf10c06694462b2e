"""Env snapshot/restore: continuations after a restore must be bit-identical."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import ClipAction, NormalizeObservation

from trpo_exp.envs.snapshot import (
    EnvSnapshot,
    SnapshotUnsupported,
    portable,
    restore,
    snapshot,
    supports_snapshot,
)

CLASSIC = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0"]
MUJOCO = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5", "Ant-v5"]
ENV_IDS = CLASSIC + MUJOCO

K = 25  # steps compared after each restore


def _make(env_id, seed, warmup=8, **kwargs):
    """A seeded env stepped `warmup` random steps into a live (not ended) episode."""
    env = gym.make(env_id, **kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(warmup):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return env


def _actions(env, n, seed=123):
    space = env.action_space
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def _rollout(env, actions):
    """(obs, reward, terminated, truncated, info) per step, up to the end of the episode."""
    out = []
    for a in actions:
        step = env.step(a)
        out.append(step)
        if step[2] or step[3]:
            break
    return out


def _assert_identical(got, want):
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want)):
        for name, gv, wv in zip(("obs", "reward", "terminated", "truncated"), g[:4], w[:4]):
            assert np.array_equal(gv, wv), f"step {t}: {name} differs: {gv!r} != {wv!r}"
        assert g[4].keys() == w[4].keys(), f"step {t}: info keys differ"
        for key in w[4]:
            assert np.array_equal(g[4][key], w[4][key]), f"step {t}: info[{key!r}] differs"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_restore_same_env_is_bit_exact(env_id):
    env = _make(env_id, seed=0)
    obs_at_snap, *_ = env.step(env.action_space.sample())
    snap = snapshot(env)
    assert isinstance(snap, EnvSnapshot) and snap.env_id == env_id
    acts = _actions(env, K)
    want = _rollout(env, acts)
    assert len(want) > 1

    # Twice from the same snapshot: restoring must not consume or alias it.
    for _ in range(2):
        obs = restore(env, snap)
        assert np.array_equal(obs, obs_at_snap)  # same as what the step returned
        _assert_identical(_rollout(env, acts), want)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_restore_into_other_instances(env_id):
    """What vine needs: many envs (other seeds, or never reset) branched from one state."""
    env = _make(env_id, seed=0)
    snap = snapshot(env)
    acts = _actions(env, K)
    want = _rollout(env, acts)

    others = [_make(env_id, seed=7, warmup=3), gym.make(env_id)]  # the second was never reset
    for other in others:
        restore(other, snap)
        assert other.unwrapped.np_random_seed == env.unwrapped.np_random_seed
        _assert_identical(_rollout(other, acts), want)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_time_limit_counter_is_restored(env_id):
    env = gym.make(env_id, max_episode_steps=10)
    env.reset(seed=0)
    # Gentle actions (alternate / zero) so no env terminates before the limit.
    if isinstance(env.action_space, gym.spaces.Discrete):
        acts = [i % 2 for i in range(10)]
    else:
        acts = [np.zeros(env.action_space.shape, env.action_space.dtype)] * 10
    for a in acts[:9]:
        _, _, terminated, truncated, _ = env.step(a)
        assert not (terminated or truncated)
    snap = snapshot(env)
    assert snap.elapsed_steps == 9

    want = env.step(acts[9])
    assert want[3] is True  # the 10th step truncates
    other = gym.make(env_id, max_episode_steps=10)  # fresh counter (None) must be overwritten
    for target in (env, other):
        restore(target, snap)
        _assert_identical([target.step(acts[9])], [want])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rng_is_restored(env_id):
    env = _make(env_id, seed=0)
    snap = snapshot(env)
    want = env.reset()[0]
    env.reset()  # advance the RNG further before restoring

    for target in (env, _make(env_id, seed=5)):
        restore(target, snap)
        assert np.array_equal(target.reset()[0], want)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Ant-v5"])
def test_pickled_snapshot_resumes_exactly(env_id):
    """Exact resume of a run: the snapshot survives pickling into a new process/env."""
    env = _make(env_id, seed=0)
    snap = pickle.loads(pickle.dumps(snapshot(env)))
    acts = _actions(env, K)
    want = _rollout(env, acts)
    fresh = gym.make(env_id)
    restore(fresh, snap)
    _assert_identical(_rollout(fresh, acts), want)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_portable_snapshot_restores_exactly_and_pickles_small(env_id):
    """What a vine branch worker is sent: the MjData's arrays without the model. Restored into an
    env that ran elsewhere (its arena holds other contacts and constraint rows), it steps on bit
    for bit as the full snapshot does, over 150 steps."""
    env = _make(env_id, seed=0, warmup=30)
    full = snapshot(env)
    sent = pickle.dumps(portable(full))
    acts = _actions(env, 150)
    want = _rollout(env, acts)
    other = _make(env_id, seed=5, warmup=17)
    restore(other, pickle.loads(sent))
    _assert_identical(_rollout(other, acts), want)
    if env_id in MUJOCO:
        assert len(sent) * 10 < len(pickle.dumps(full)), "an MjData pickles with its model; the portable form without"


class _ToyEnv(gym.Env):
    """A simulator with no snapshot support registered."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {}


def test_unsupported_env_raises():
    gym.register("SnapshotToy-v0", entry_point=_ToyEnv, max_episode_steps=5)
    try:
        env = gym.make("SnapshotToy-v0")
        env.reset(seed=0)
        assert not supports_snapshot(env)
        with pytest.raises(SnapshotUnsupported, match="SnapshotToy-v0") as err:
            snapshot(env)
        assert "vine" in str(err.value) and err.value.env_id == "SnapshotToy-v0"
    finally:
        del gym.registry["SnapshotToy-v0"]


def test_wrappers_with_unknown_state_are_refused():
    env = NormalizeObservation(gym.make("Pendulum-v1"))  # running mean/var is state
    env.reset(seed=0)
    assert not supports_snapshot(env)
    with pytest.raises(SnapshotUnsupported, match="NormalizeObservation"):
        snapshot(env)

    # gymnasium's transform_* wrappers are pure functions: still supported.
    env = ClipAction(gym.make("Pendulum-v1"))
    env.reset(seed=0)
    assert supports_snapshot(env)
    snap = snapshot(env)
    acts = _actions(env, 5)
    want = _rollout(env, acts)
    restore(env, snap)
    _assert_identical(_rollout(env, acts), want)


def test_restore_into_other_env_id_is_refused():
    snap = snapshot(_make("Hopper-v5", seed=0))
    with pytest.raises(ValueError, match="Hopper-v5"):
        restore(gym.make("Walker2d-v5"), snap)
