"""Creating the training vector env and the evaluation env, with checks that fail early."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from trpo_exp.config import ConfigError, EnvConfig
from trpo_exp.envs.snapshot import register_wrapper
from trpo_exp.util import first_line


def check_env_id(env_id: str) -> None:
    """Raise a one-line ConfigError when gymnasium does not know the id or its simulator is missing.
    ``module:EnvId-v0`` (gymnasium's convention for custom envs) imports ``module`` first, which
    registers the id."""
    module, _, bare_id = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"env.id={env_id!r} is not allowed: module {module!r} cannot be imported "
                              f"({first_line(err)})") from None
    try:
        spec = gym.spec(bare_id)
    except gym.error.Error as err:
        raise ConfigError(f"env.id={env_id!r} is not a registered gymnasium environment ({err}); "
                          f"presets: env=cartpole, acrobot, pendulum, mountaincar, swimmer, hopper, "
                          f"walker2d, halfcheetah, ant") from None
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    if "mujoco" in entry and importlib.util.find_spec("mujoco") is None:
        raise ConfigError(f"env.id={env_id!r} needs MuJoCo, which is not installed: "
                          f"pip install 'gymnasium[mujoco]'")
    try:  # registered is not enough: its extras (Box2D, Atari, ...) may be missing
        gym.make(env_id, disable_env_checker=True).close()
    except Exception as err:
        raise ConfigError(f"env.id={env_id!r} cannot be created here: {first_line(err)}") from None


def check_spaces(cfg: EnvConfig) -> None:
    """The policies take a flat Box observation and a Discrete or flat Box action: refuse other
    envs (Taxi's Discrete observations, Blackjack's Tuple) before any work. Runs after
    check_env_id, so a failure to create the env here comes from env.kwargs."""
    try:
        env = _make_one(cfg)()
    except Exception as err:
        raise ConfigError(f"env.kwargs={dict(cfg.kwargs)!r} is not allowed for env.id={cfg.id!r}: "
                          f"{first_line(err)}") from None
    try:
        obs, act = env.observation_space, env.action_space
    finally:
        env.close()
    if not (isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1):
        raise ConfigError(f"env.id={cfg.id!r} is not allowed: its observation space {obs} is not a flat Box "
                          f"(the policies take a vector of numbers)")
    if not (isinstance(act, gym.spaces.Discrete) or (isinstance(act, gym.spaces.Box) and len(act.shape) == 1)):
        raise ConfigError(f"env.id={cfg.id!r} is not allowed: its action space {act} is neither Discrete nor a "
                          f"flat Box")


def action_space(cfg: EnvConfig) -> gym.Space:
    """The env's action space (made and closed again: for budget arithmetic before a run)."""
    env = _make_one(cfg)()
    try:
        return env.action_space
    finally:
        env.close()


def check_vine_support(cfg: EnvConfig) -> None:
    """Vine sampling restores saved simulator states: refuse envs that cannot, before any work."""
    from trpo_exp.envs.snapshot import SnapshotUnsupported, snapshot

    env = _make_one(cfg)()
    try:
        env.reset(seed=0)
        snapshot(env)
    except SnapshotUnsupported as err:
        raise ConfigError(f"algo=trpo_vine is not allowed with env.id={cfg.id!r}: {err}") from None
    finally:
        env.close()


class DiscardStepInfo(gym.Wrapper):
    """Drops the per-step info dict, which nothing here reads. The vector env merges every info
    key of every env into arrays on every step; for the MuJoCo envs (eight keys) that merge cost
    ~15% of the sampling rate (Hopper-v5, 8 envs: 4124 -> 4801 steps/s, median of 7). The final
    observation of an episode is added by the vector env itself and is not affected."""

    def step(self, action):
        obs, reward, terminated, truncated, _ = self.env.step(action)
        return obs, reward, terminated, truncated, {}

    # Called through the vector env (``envs.call``), so they work in async workers too.
    def can_snapshot(self) -> bool:
        from trpo_exp.envs.snapshot import supports_snapshot

        return supports_snapshot(self)

    def get_state(self) -> Any:
        """The complete state of this env (trpo_exp.envs.snapshot), for checkpoints."""
        from trpo_exp.envs.snapshot import snapshot

        return snapshot(self)

    def set_state(self, snapshots: Sequence[Any]) -> Any:
        """Restore this env's entry of a whole vector's snapshots (its index: ``vector_index``)."""
        from trpo_exp.envs.snapshot import restore

        return restore(self, snapshots[self.get_wrapper_attr("vector_index")])


register_wrapper(DiscardStepInfo, ())  # stateless: snapshots of wrapped envs stay complete


def make_kwargs(cfg: EnvConfig) -> dict[str, Any]:
    """gym.make's keyword arguments for ``cfg``: its env.kwargs, the time limit, no env checker."""
    kwargs: dict[str, Any] = dict(cfg.kwargs)
    kwargs["disable_env_checker"] = True  # the checker costs time on every step
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    return kwargs


def _make_one(cfg: EnvConfig) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        return DiscardStepInfo(gym.make(cfg.id, **make_kwargs(cfg)))
    return thunk


class LeanSyncVectorEnv(SyncVectorEnv):
    """gymnasium's SyncVectorEnv in SAME_STEP autoreset mode, with a cheaper ``step`` and the same
    transitions. gymnasium's step merges each env's info dict into arrays (``_add_info``) and
    re-copies every output on every step, ~17 us per env step on Hopper-v5 (a fifth of the env's own
    step); here the envs' info dicts are empty (DiscardStepInfo), so ``step`` writes straight into
    fresh arrays and reports only what this project reads: ``info['final_obs']`` (with its
    ``'_final_obs'`` mask) when an episode ends. The observations, rewards and flags are bit for bit
    gymnasium's (tests/test_vector_env.py)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]):
        super().__init__(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        n = self.num_envs
        space = self.single_observation_space
        assert isinstance(space, gym.spaces.Box)  # check_spaces refused any other observation space
        obs = np.empty((n, *space.shape), dtype=space.dtype)
        rewards = np.empty(n, dtype=np.float64)
        terminations = np.empty(n, dtype=np.bool_)
        truncations = np.empty(n, dtype=np.bool_)
        info: dict[str, Any] = {}
        for i, env in enumerate(self.envs):
            env_obs, rewards[i], terminations[i], truncations[i], _ = env.step(actions[i])
            if terminations[i] or truncations[i]:
                if not info:
                    info = {"final_obs": np.full(n, None, dtype=object), "_final_obs": np.zeros(n, dtype=np.bool_)}
                info["final_obs"][i], info["_final_obs"][i] = env_obs, True
                env_obs, _ = env.reset()
            obs[i] = env_obs
        return obs, rewards, terminations, truncations, info


def make_vector_env(cfg: EnvConfig, seeds: Sequence[int]) -> gym.vector.VectorEnv:
    """A vector of ``cfg.num_envs`` envs that reset themselves in the same step that ends an
    episode (SAME_STEP autoreset), so every step is a real transition and the last observation of
    an episode is handed over in ``info['final_obs']`` instead of being mixed with the next episode.
    Each env gets its own seed from ``seeds``."""
    env_fns = [_make_one(cfg) for _ in range(cfg.num_envs)]
    envs: gym.vector.VectorEnv
    if cfg.vector_mode == "sync":
        envs = LeanSyncVectorEnv(env_fns)
    else:
        envs = AsyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
    envs.action_space.seed(int(seeds[0]))
    envs.set_attr("vector_index", list(range(cfg.num_envs)))
    return envs


def vector_env_states(envs: gym.vector.VectorEnv) -> Optional[list[Any]]:
    """Snapshots of every env of a vector made by make_vector_env (sync or async); None when the
    env cannot be snapshot (a user's own env: single-path runs do not need it)."""
    if not all(envs.call("can_snapshot")):  # type: ignore[attr-defined]  # Sync and Async both have it
        return None
    return list(envs.call("get_state"))  # type: ignore[attr-defined]


def restore_vector_env_states(envs: gym.vector.VectorEnv, snapshots: Sequence[Any]) -> None:
    if len(snapshots) != envs.num_envs:
        raise ValueError(f"{len(snapshots)} env states for {envs.num_envs} envs")
    envs.call("set_state", list(snapshots))  # type: ignore[attr-defined]


def make_eval_env(cfg: EnvConfig) -> gym.Env:
    return _make_one(cfg)()


def derive_seeds(seed: int, count: int) -> list[int]:
    """Independent 32-bit seeds for the envs of a run, all determined by the run seed."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(count)]
