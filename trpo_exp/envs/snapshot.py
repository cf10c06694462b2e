"""Save and restore the complete state of a gymnasium env.

Used for TRPO "vine" sampling (branch many rollouts from one saved state, possibly
in other env instances of the same id) and for exact resume of runs. A restore
must make the env continue *bit for bit* as the original would have, so a
snapshot holds everything the next `step()`/`reset()` reads:

* the simulator state of `env.unwrapped` (family specific, see the registry below);
* `env.unwrapped`'s RNG (`np_random`), which `reset()` and some `step()`s draw from;
* the per-episode state of the wrappers (TimeLimit's step counter, ...).

Usage::

    snap = snapshot(env)            # deep copy, the env may keep running
    obs = restore(other_env, snap)  # any number of times, into any env of the same id

Families are looked up by walking `type(env.unwrapped).__mro__`, so subclasses
inherit their parent's handler; a subclass that keeps extra state must register
its own with `register_family`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import (
    AcrobotEnv,
    CartPoleEnv,
    Continuous_MountainCarEnv,
    MountainCarEnv,
    PendulumEnv,
)
from gymnasium.wrappers import (
    OrderEnforcing,
    PassiveEnvChecker,
    RecordEpisodeStatistics,
    TimeLimit,
)

__all__ = [
    "EnvSnapshot",
    "SnapshotUnsupported",
    "register_family",
    "register_wrapper",
    "restore",
    "portable",
    "snapshot",
    "supports_snapshot",
]


class SnapshotUnsupported(RuntimeError):
    """The env (or one of its wrappers) cannot save and restore its state."""

    def __init__(self, env_id: str, detail: str = ""):
        self.env_id = env_id
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"env {env_id!r} cannot save and restore its state{why}; "
            "vine sampling needs a resettable simulator (use algo=trpo)"
        )


@dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays/MjData, == would mislead
class EnvSnapshot:
    """Everything needed to put an env made by `gym.make` back into one exact state.

    Treat the fields as read-only: `restore` copies out of them, so one snapshot can
    be restored any number of times. Picklable (for resuming runs).
    """

    env_id: str
    sim: Any  # family-specific simulator state (MjData copy, dict of attributes, ...)
    rng_state: dict  # env.unwrapped.np_random.bit_generator.state
    rng_seed: int | None  # env.unwrapped._np_random_seed, so `np_random_seed` reads the same
    wrappers: tuple[tuple[str, dict[str, Any]], ...]  # (class name, attributes), outermost first

    @property
    def elapsed_steps(self) -> int | None:
        """TimeLimit's step counter at the snapshot (None if no TimeLimit or not reset)."""
        for name, attrs in self.wrappers:
            if name == TimeLimit.__name__:
                return attrs["_elapsed_steps"]
        return None


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class _Family:
    save: Callable[[gym.Env], Any]  # unwrapped env -> state (already a private copy)
    load: Callable[[gym.Env, Any], Any]  # (unwrapped env, state) -> observation of that state


_FAMILIES: dict[type, _Family] = {}

# Wrapper class -> attributes holding its per-episode state.
_WRAPPER_STATE: dict[type, tuple[str, ...]] = {
    TimeLimit: ("_elapsed_steps",),
    # Without this a fresh env restored mid-episode would refuse to step (ResetNeeded).
    OrderEnforcing: ("_has_reset",),
    # Bookkeeping of its one-off API checks. It never changes results, but the first
    # step of a never-reset env would fail on the missing reset record without it.
    PassiveEnvChecker: ("checked_reset", "checked_step", "checked_data_reuse", "_previous_data"),
    # Per-episode accumulators reported in `info` at episode end. Wall-clock time and the
    # across-episode queues are logging history, not env state.
    RecordEpisodeStatistics: ("episode_returns", "episode_lengths"),
}


def register_family(
    cls: type, save: Callable[[gym.Env], Any], load: Callable[[gym.Env, Any], Any]
) -> None:
    """Make envs whose `unwrapped` is an instance of `cls` snapshottable.

    `save(unwrapped)` must return a private copy of the state; `load(unwrapped, state)`
    must not mutate `state` and returns the observation of the restored state.
    """
    _FAMILIES[cls] = _Family(save, load)


def register_wrapper(cls: type, attrs: tuple[str, ...]) -> None:
    """Declare the attributes holding a wrapper's per-episode state (() if stateless)."""
    _WRAPPER_STATE[cls] = tuple(attrs)


def _family(env: gym.Env) -> _Family | None:
    for cls in type(env.unwrapped).__mro__:
        if cls in _FAMILIES:
            return _FAMILIES[cls]
    return None


def _known_family(env: gym.Env) -> _Family:
    family = _family(env)
    if family is None:
        raise SnapshotUnsupported(_env_id(env), _unsupported_reason(env) or "no snapshot support")
    return family


def _wrapper_attrs(wrapper: gym.Wrapper) -> tuple[str, ...] | None:
    """Attributes to save for `wrapper`, or None if its state is unknown."""
    for cls in type(wrapper).__mro__:
        if cls in _WRAPPER_STATE:
            return _WRAPPER_STATE[cls]
    # gymnasium keeps its pure-function wrappers (Clip/Rescale/Flatten/...) in the
    # transform_* modules and the ones with memory in stateful_*; trust that split.
    if type(wrapper).__module__.startswith("gymnasium.wrappers.transform_"):
        return ()
    return None


def _chain(env: gym.Env) -> list[gym.Wrapper]:
    wrappers = []
    while isinstance(env, gym.Wrapper):
        wrappers.append(env)
        env = env.env
    return wrappers


def _env_id(env: gym.Env) -> str:
    spec = env.unwrapped.spec or env.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


def _unsupported_reason(env: gym.Env) -> str | None:
    if _family(env) is None:
        return f"no snapshot support for {type(env.unwrapped).__name__}"
    for w in _chain(env):
        if _wrapper_attrs(w) is None:
            return f"wrapper {type(w).__name__} keeps state the snapshot does not know"
    return None


# --------------------------------------------------------------------------- public API

def supports_snapshot(env: gym.Env) -> bool:
    return _unsupported_reason(env) is None


def snapshot(env: gym.Env) -> EnvSnapshot:
    """Deep-copy the complete state of `env` (the env is not changed)."""
    reason = _unsupported_reason(env)
    if reason is not None:
        raise SnapshotUnsupported(_env_id(env), reason)
    u = env.unwrapped
    return EnvSnapshot(
        env_id=_env_id(env),
        sim=_known_family(env).save(u),
        rng_state=copy.deepcopy(dict(u.np_random.bit_generator.state)),
        rng_seed=u._np_random_seed,
        wrappers=tuple(
            (type(w).__name__, {a: copy.deepcopy(getattr(w, a)) for a in _wrapper_attrs(w) or ()})
            for w in _chain(env)
        ),
    )


def restore(env: gym.Env, snap: EnvSnapshot) -> Any:
    """Put `env` (same id as the snapshot's, any instance) into `snap`'s state.

    Returns the observation of the restored state, i.e. what the step (or reset) that
    led to it returned. `snap` is not modified.
    """
    reason = _unsupported_reason(env)
    if reason is not None:
        raise SnapshotUnsupported(_env_id(env), reason)
    if _env_id(env) != snap.env_id:
        raise ValueError(f"snapshot of {snap.env_id!r} cannot be restored into {_env_id(env)!r}")
    chain = _chain(env)
    names = tuple(type(w).__name__ for w in chain)
    if names != tuple(name for name, _ in snap.wrappers):
        raise ValueError(f"wrapper stack {names} differs from the snapshot's {snap.wrappers}")

    for w, (_, attrs) in zip(chain, snap.wrappers):
        for a, v in attrs.items():
            setattr(w, a, copy.deepcopy(v))
    u = env.unwrapped
    # A fresh generator of the saved kind rather than writing into the env's own one:
    # works whatever bit generator the target env happens to hold.
    bit_gen = getattr(np.random, snap.rng_state["bit_generator"])()
    bit_gen.state = copy.deepcopy(snap.rng_state)
    u._np_random, u._np_random_seed = np.random.Generator(bit_gen), snap.rng_seed
    return _known_family(env).load(u, snap.sim)


# --------------------------------------------------------------------------- classic control

def _attrs_family(attrs: tuple[str, ...], obs: Callable[[gym.Env], Any]) -> _Family:
    """Family for envs whose whole state is a few Python attributes."""

    def save(u):
        return {a: copy.deepcopy(getattr(u, a)) for a in attrs}

    def load(u, state):
        # deepcopy keeps the exact type (MountainCar's state is an ndarray after reset
        # but a tuple of numpy scalars after a step) and never aliases the snapshot.
        for a, v in state.items():
            setattr(u, a, copy.deepcopy(v))
        return obs(u)

    return _Family(save, load)


def _state_as_f32(u):
    return np.array(u.state, dtype=np.float32)


# steps_beyond_terminated decides the reward after termination; last_u is only drawn
# by render() but is still episode state. Everything else on these classes is constant.
_FAMILIES[CartPoleEnv] = _attrs_family(("state", "steps_beyond_terminated"), _state_as_f32)
_FAMILIES[AcrobotEnv] = _attrs_family(("state",), lambda u: u._get_ob())  # type: ignore[attr-defined]
_FAMILIES[PendulumEnv] = _attrs_family(("state", "last_u"), lambda u: u._get_obs())  # type: ignore[attr-defined]
_FAMILIES[MountainCarEnv] = _attrs_family(("state",), _state_as_f32)
_FAMILIES[Continuous_MountainCarEnv] = _attrs_family(("state",), _state_as_f32)


# --------------------------------------------------------------------------- MuJoCo
#
# The whole mjData is copied, not just the integration state (qpos, qvel, act, time,
# qacc_warmstart, ... = mj_getState(mjSTATE_INTEGRATION)). After mj_step the derived
# quantities (xpos, xipos, cfrc_ext, contacts, ...) still belong to the state *before*
# the last substep, and the envs read them: Ant's forward reward uses torso xpos from
# before the step, its observation cfrc_ext, Humanoid the centre of mass, Reacher and
# Pusher body positions. Recomputing them with mj_forward at the restored state gives
# different numbers, so only a full copy is bit-exact for every env. (Warm start alone
# also matters: Walker2d with qpos/qvel/time but no qacc_warmstart drifts ~1e-14.)
# Cost: ~1 ms and ~0.5 MB resident per snapshot.

try:
    import mujoco
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
except ImportError:  # mujoco is optional for classic-control-only installs
    mujoco = None


def _data_layout(data) -> tuple[int, ...]:
    m = data.model
    return (m.nq, m.nv, m.na, m.nu, m.nbody, m.ngeom, m.nsensordata, data.nbuffer, data.narena)


_STATE_FIELDS: dict[tuple[int, ...], tuple[str, ...]] = {}


def _state_fields(data) -> tuple[str, ...]:
    """The names of an MjData's arrays that are sized by its model. Those in its arena
    (contacts, constraint rows, islands) are sized per step and empty in a fresh MjData; every
    step rebuilds them before reading them, so they are left out."""
    layout = _data_layout(data)
    if layout not in _STATE_FIELDS:
        fresh = mujoco.MjData(data.model)
        _STATE_FIELDS[layout] = tuple(
            name for name in dir(fresh)
            if not name.startswith("_") and isinstance(getattr(fresh, name, None), np.ndarray)
            and getattr(fresh, name).size > 0)
    return _STATE_FIELDS[layout]


@dataclass(frozen=True, eq=False)
class _MjArrays:
    """An MjData as the bytes of its model-sized arrays and its time, without the model: what a
    MuJoCo snapshot costs to send to another process (Hopper: 8.8 KB in one buffer, against 680 KB
    for an MjData, which pickles with its model). Restoring one steps on bit for bit as the full
    copy does (tests/test_snapshot.py, every MuJoCo preset env)."""

    layout: tuple[int, ...]
    time: float
    buffer: bytes  # the arrays of _state_fields, in order

    @classmethod
    def of(cls, data) -> _MjArrays:
        buffer = b"".join(getattr(data, name).tobytes() for name in _state_fields(data))
        return cls(_data_layout(data), float(data.time), buffer)

    def apply_to(self, data) -> None:
        if self.layout != _data_layout(data):
            raise ValueError("snapshot was taken from a different MuJoCo model")
        offset = 0
        for name in _state_fields(data):
            target = getattr(data, name)
            np.copyto(target, np.frombuffer(self.buffer, target.dtype, target.size, offset).reshape(target.shape))
            offset += target.nbytes
        if offset != len(self.buffer):
            raise ValueError("snapshot was taken from a different MuJoCo model")
        data.time = self.time


def portable(snap: EnvSnapshot) -> EnvSnapshot:
    """``snap`` in a form that pickles small, for another process that has an env of the same id
    (vine branch workers, trpo_exp.rollout.branch_process): a MuJoCo state as its MjData's
    arrays (_MjArrays). Restoring it is as exact as restoring ``snap``; snapshots of other
    families come back as they are."""
    if mujoco is None or not (isinstance(snap.sim, tuple) and isinstance(snap.sim[0], mujoco.MjData)):
        return snap
    data, extra = snap.sim
    return dataclasses.replace(snap, sim=(_MjArrays.of(data), extra))


def _mujoco_family(extra_attrs: tuple[str, ...] = ()) -> _Family:
    def save(u):
        extra = {a: copy.deepcopy(getattr(u, a)) for a in extra_attrs if hasattr(u, a)}
        return copy.copy(u.data), extra  # MjData.__copy__ is a full mj_copyData

    def load(u, state):
        data, extra = state
        if isinstance(data, _MjArrays):  # a portable snapshot (see `portable`)
            data.apply_to(u.data)
        else:
            # mj_copyData trusts the model sizes; a mismatch (e.g. another xml_file) would
            # corrupt memory, so refuse it.
            if _data_layout(data) != _data_layout(u.data):
                raise ValueError("snapshot was taken from a different MuJoCo model")
            # Copy into the env's own MjData: the renderer and the env keep references to it.
            mujoco.mj_copyData(u.data, u.model, data)
        for a, v in extra.items():
            setattr(u, a, copy.deepcopy(v))
        return u._get_obs()

    return _Family(save, load)


if mujoco is not None:
    _FAMILIES[MujocoEnv] = _mujoco_family()
    # Goal positions sampled in reset_model; they also live in qpos, but keep the
    # Python attributes consistent with the simulator.
    from gymnasium.envs.mujoco import pusher_v4, pusher_v5, reacher_v4, reacher_v5

    for _mod in (reacher_v4, reacher_v5):
        _FAMILIES[_mod.ReacherEnv] = _mujoco_family(("goal",))
    for _mod in (pusher_v4, pusher_v5):
        _FAMILIES[_mod.PusherEnv] = _mujoco_family(("goal_pos", "cylinder_pos"))
