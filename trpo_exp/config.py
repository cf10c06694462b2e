"""Typed configuration schemas, registered in Hydra's ConfigStore.

The YAML files under conf/ only set values; every key, its type and its allowed range live here.
Range checks run in ``__post_init__``, which OmegaConf calls once at ``OmegaConf.to_object(cfg)``
(see ``trpo_exp.__main__``). A failed check raises :class:`ConfigError` whose message is one line:
the full key, the bad value and what is allowed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from trpo_exp.budget import trunk_steps

ACTIVATIONS = ("tanh", "relu")
VECTOR_MODES = ("sync", "async")
DEVICES = ("cpu", "cuda", "auto")
LOGGER_MODES = ("offline", "online", "disabled")


class ConfigError(ValueError):
    """A user-facing configuration mistake; ``str(err)`` is a one-line message."""


MAX_SEED = 2**32 - 1  # numpy's global seed is 32-bit
MAX_LAYER_WIDTH = 16384
MAX_THREADS = 4 * (os.cpu_count() or 1)


def require_finite(node: Any, prefix: str, allow_inf: tuple[str, ...] = ()) -> None:
    """Every float field of a schema is a finite number (NaN and inf mean nothing there), except
    the fields in ``allow_inf``, where inf has a meaning."""
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, float) and not math.isfinite(value) and not (math.isinf(value) and f.name in allow_inf):
            raise ConfigError(f"{prefix}{f.name}={value!r} is not allowed: must be a finite number")


def require(ok: bool, key: str, value: Any, allowed: str, error: type[Exception] = ConfigError) -> None:
    """The one-line check used by every schema here (and by sweeps/, with its own error type)."""
    if not ok:
        raise error(f"{key}={value!r} is not allowed: {allowed}")


@dataclass
class VineConfig:
    """Vine sampling (paper, section 5.2): branch rollouts from states of the trunk trajectories."""

    num_states: int = 64
    """Rollout-set size: trunk states branched from per iteration, >= 1."""
    num_actions: int = 4
    """Actions tried per rollout state, >= 2. Continuous: sampled from the policy. Discrete: every
    action when the action set has at most this many, else this many uniform samples."""
    rollout_len: int = 50
    """Steps per branch (the branch action, then the policy), >= 1; a branch cut before its
    episode ends is bootstrapped with the value baseline."""
    branch_batch: int = 64
    """Branch envs stepped together with one batched policy forward pass, >= 1."""
    kl_states: str = "trunk"
    """Where the KL constraint, the line search's KL check and the Fisher-vector products are
    measured: 'trunk' (every trunk state of the iteration; they cost no simulator steps) or
    'rollout' (the rollout-set states only, the paper's form)."""
    value_targets: str = "branches"
    """What the value baseline is fitted on: 'trunk' (the trunk's TD(lambda) returns only, the
    paper's form); 'rollout' (also one target per rollout state, the branch estimate of
    V(s_n) = E_{a~pi_old} Q(s_n, a)); 'branches' (also every state inside a branch with its
    discounted return to the branch's end, bootstrapped as the branch is). Better V gives better
    Q estimates where branches are cut."""

    def __post_init__(self) -> None:
        require(self.num_states >= 1, "algo.vine.num_states", self.num_states, "must be >= 1")
        require(self.num_actions >= 2, "algo.vine.num_actions", self.num_actions, "must be >= 2")
        require(self.rollout_len >= 1, "algo.vine.rollout_len", self.rollout_len, "must be >= 1")
        require(self.branch_batch >= 1, "algo.vine.branch_batch", self.branch_batch, "must be >= 1")
        require(self.kl_states in ("trunk", "rollout"), "algo.vine.kl_states", self.kl_states,
                "must be 'trunk' or 'rollout'")
        require(self.value_targets in ("trunk", "rollout", "branches"), "algo.vine.value_targets",
                self.value_targets, "must be 'trunk', 'rollout' or 'branches'")


@dataclass
class AlgoConfig:
    """What every algorithm of the family shares: sampling, advantages, networks and the value
    baseline. Each algorithm has its own schema below (registered in trpo_exp.algorithms), so a key
    an algorithm does not use is refused instead of silently ignored."""

    name: str = MISSING
    """The algorithm (set by its schema): one of trpo_exp.algorithms.names()."""
    steps_per_iter: int = 2048
    """Env steps collected per policy iteration, summed over all vector envs, >= num_envs.
    For trpo_vine: the trunk steps (branch steps come on top and count against total_steps)."""
    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    gae_lambda: float = 0.97
    """GAE lambda (Schulman et al. 2016), in (0, 1]. 1 = Monte-Carlo advantages."""
    normalize_advantage: bool = True
    """Standardise advantages over the batch (zero mean, unit std) before the policy step."""
    hidden_sizes: List[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the policy and value MLPs (separate networks)."""
    activation: str = "tanh"
    """Hidden activation: 'tanh' or 'relu'."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (state-independent), in [-20, 5]
    (std from 2e-9 to 148: beyond, the entropy and log-probabilities overflow); Box actions only."""
    vf_lr: float = 3e-3
    """Adam learning rate of the value baseline, > 0."""
    vf_adam_eps: float = 1e-8
    """Adam's epsilon in the value fit, > 0 (torch's default). SB3 uses 1e-5: on Hopper at 100k steps,
    with sb3-contrib's trust region (max_kl 0.03, cg_damping 0.3), it lifted the final return by
    400 +- 120 SE over 20 seeds; on the Hopper preset at 1M it cost 874 +- 390 over 5 (README,
    Returns on MuJoCo)."""
    vf_epochs: int = 5
    """Passes over the batch when fitting the value baseline, >= 1."""
    vf_batch_size: int = 256
    """Minibatch size of the value regression, >= 1."""
    vf_normalize_targets: bool = False
    """Fit the value baseline on targets standardised by each batch's mean and std, with its output
    layer rescaled so predictions are unchanged by the new statistics (Pop-Art). value_loss is then
    on the standardised scale."""

    def __post_init__(self) -> None:
        k = "algo."
        require_finite(self, k)
        require(self.steps_per_iter >= 1, k + "steps_per_iter", self.steps_per_iter, "must be >= 1")
        require(0.0 < self.gamma <= 1.0, k + "gamma", self.gamma, "must be in (0, 1]")
        require(0.0 < self.gae_lambda <= 1.0, k + "gae_lambda", self.gae_lambda, "must be in (0, 1]")
        require(len(self.hidden_sizes) > 0 and all(1 <= h <= MAX_LAYER_WIDTH for h in self.hidden_sizes),
                k + "hidden_sizes", list(self.hidden_sizes), f"a non-empty list of widths in [1, {MAX_LAYER_WIDTH}]")
        require(self.activation in ACTIVATIONS, k + "activation", self.activation,
                f"one of {', '.join(ACTIVATIONS)}")
        require(-20.0 <= self.log_std_init <= 5.0, k + "log_std_init", self.log_std_init, "must be in [-20, 5]")
        require(self.vf_lr > 0, k + "vf_lr", self.vf_lr, "must be > 0")
        require(self.vf_adam_eps > 0, k + "vf_adam_eps", self.vf_adam_eps, "must be > 0")
        require(self.vf_epochs >= 1, k + "vf_epochs", self.vf_epochs, "must be >= 1")
        require(self.vf_batch_size >= 1, k + "vf_batch_size", self.vf_batch_size, "must be >= 1")

    def check_with_env(self, env: EnvConfig) -> None:
        """Checks that need the env's settings too (none here; vine has some)."""


@dataclass
class PGConfig(AlgoConfig):
    """Vanilla policy gradient: one Adam step per batch on the surrogate."""

    name: str = "pg"
    lr: float = 3e-3
    """Adam learning rate of the policy, > 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.lr > 0, "algo.lr", self.lr, "must be > 0")


@dataclass
class NaturalConfig(AlgoConfig):
    """What every natural-gradient step shares: the direction F^-1 g by conjugate gradient on
    Fisher-vector products."""

    cg_iters: int = 10
    """Maximum conjugate-gradient iterations, >= 1."""
    cg_tol: float = 1e-10
    """CG stops when the squared residual norm falls below this, >= 0."""
    cg_damping: float = 0.1
    """Damping added to the Fisher matrix, (F + damping*I), >= 0."""
    fvp_subsample: float = 1.0
    """Fraction of the batch used for Fisher-vector products, in (0, 1] (paper: 0.1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        k = "algo."
        require(self.cg_iters >= 1, k + "cg_iters", self.cg_iters, "must be >= 1")
        require(self.cg_tol >= 0, k + "cg_tol", self.cg_tol, "must be >= 0")
        require(self.cg_damping >= 0, k + "cg_damping", self.cg_damping, "must be >= 0")
        require(0.0 < self.fvp_subsample <= 1.0, k + "fvp_subsample", self.fvp_subsample, "must be in (0, 1]")


@dataclass
class NPGFixedConfig(NaturalConfig):
    """The paper's natural policy gradient (Kakade 2001; TRPO paper, Figure 4): a fixed step size,
    theta += step_size * F^-1 g. Nothing bounds the KL of an update."""

    name: str = "npg_fixed"
    step_size: float = 0.2
    """alpha in theta += alpha F^-1 g, > 0 (no unit: the step grows with the natural gradient; on
    CartPole with normalised advantages 0.2 gives a median KL per update of ~4e-4 and solves it in
    40k steps, seed 0; 0.01 does not)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.step_size > 0, "algo.step_size", self.step_size, "must be > 0")


@dataclass
class NPGConfig(NaturalConfig):
    """Normalised natural policy gradient (Rajeswaran et al. 2017): the natural direction scaled so
    the quadratic KL model equals max_kl; no line search (trpo = this + a line search)."""

    name: str = "npg"
    max_kl: float = 0.01
    """Trust-region size delta, the allowed mean KL(old || new) per update, > 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_kl > 0, "algo.max_kl", self.max_kl, "must be > 0")


@dataclass
class TRPOConfig(NPGConfig):
    """TRPO, single path: npg's direction and step, then a backtracking line search that enforces
    mean KL <= max_kl and a surrogate improvement."""

    name: str = "trpo"
    backtrack_coeff: float = 0.8
    """Step shrink factor per line-search try, in (0, 1)."""
    backtrack_iters: int = 10
    """Maximum line-search tries, >= 1; if none is accepted the policy is unchanged."""
    accept_ratio: float = 0.0
    """Accept a step only if its surrogate improvement is >= accept_ratio times the linearly
    expected improvement (0 = any improvement), in [0, 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        k = "algo."
        require(0.0 < self.backtrack_coeff < 1.0, k + "backtrack_coeff", self.backtrack_coeff, "must be in (0, 1)")
        require(self.backtrack_iters >= 1, k + "backtrack_iters", self.backtrack_iters, "must be >= 1")
        require(0.0 <= self.accept_ratio < 1.0, k + "accept_ratio", self.accept_ratio, "must be in [0, 1)")


@dataclass
class TRPOVineConfig(TRPOConfig):
    """TRPO with vine sampling (paper, section 5.2): trpo's step on the vine estimator's objective."""

    name: str = "trpo_vine"
    steps_per_iter: int = 1024
    """Trunk steps per iteration, summed over all vector envs, >= num_envs (branch steps come on
    top and count against total_steps)."""
    vine: VineConfig = field(default_factory=VineConfig)
    """How the rollout set and its branches are sampled."""

    def check_with_env(self, env: EnvConfig) -> None:
        require(env.vector_mode == "sync", "env.vector_mode", env.vector_mode,
                "algo=trpo_vine needs 'sync' (it saves and restores the envs' states)")
        trunk = trunk_steps(self.steps_per_iter, env.num_envs)
        require(self.vine.num_states <= trunk, "algo.vine.num_states", self.vine.num_states,
                f"must be <= the trunk steps per iteration ({trunk})")


@dataclass
class EnvConfig:
    """Which gymnasium environment and how it is vectorised."""

    id: str = "CartPole-v1"
    """Any registered gymnasium id; the MuJoCo presets use the v5 envs."""
    num_envs: int = 1
    """Parallel envs stepped together with one batched policy forward pass, >= 1."""
    vector_mode: str = "sync"
    """'sync' (all envs in this process) or 'async' (one subprocess per env)."""
    max_episode_steps: Optional[int] = None
    """Time limit in steps; null keeps the env's registered limit. Reaching it is truncation."""
    kwargs: Dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for gym.make, e.g. ``+env.kwargs.include_cfrc_ext_in_observation=false``
    (Ant-v5 without its 78 contact-force entries, the observation of v4 and of the published
    v3 runs). Empty: the env's registered defaults."""
    normalize_obs: bool = True
    """Running mean/std observation normalisation (statistics saved with the run)."""
    normalize_reward: bool = False
    """Divide rewards by the running std of the discounted return for learning (advantages and value
    targets; logged returns stay raw). Not with algo=trpo_vine (branch returns are not scaled)."""
    clip_obs: float = 10.0
    """Normalised observations are clipped to [-clip_obs, clip_obs], > 0."""
    default_total_steps: int = 100_000
    """The budget used when the top-level total_steps is null; each preset sets its own."""

    def __post_init__(self) -> None:
        require_finite(self, "env.", allow_inf=("clip_obs",))
        require(1 <= self.num_envs <= 1024, "env.num_envs", self.num_envs, "must be in [1, 1024]")
        require(self.vector_mode in VECTOR_MODES, "env.vector_mode", self.vector_mode,
                f"one of {', '.join(VECTOR_MODES)}")
        require(self.max_episode_steps is None or self.max_episode_steps >= 1,
                "env.max_episode_steps", self.max_episode_steps, "null or >= 1")
        limit = self.kwargs.get("max_episode_steps")  # gym.make's own time limit, through kwargs
        require(limit is None or (isinstance(limit, int) and limit >= 1), "env.kwargs.max_episode_steps", limit,
                "null or an integer >= 1 (prefer env.max_episode_steps)")
        require(self.clip_obs > 0, "env.clip_obs", self.clip_obs, "must be > 0")
        require(self.default_total_steps >= 1, "env.default_total_steps", self.default_total_steps,
                "must be >= 1")


@dataclass
class DeviceConfig:
    type: str = "cpu"
    """'cpu', 'cuda' (fails when no GPU is visible) or 'auto' (cuda when available, else cpu)."""

    def __post_init__(self) -> None:
        require(self.type in DEVICES, "device.type", self.type, f"one of {', '.join(DEVICES)}")


@dataclass
class EvalConfig:
    every: int = 10
    """Evaluate every this many policy iterations (0 = only the final evaluation), >= 0."""
    episodes: int = 10
    """Episodes per evaluation of the deterministic (mean-action) policy on a separate env, >= 1."""

    def __post_init__(self) -> None:
        require(self.every >= 0, "eval.every", self.every, "must be >= 0")
        require(self.episodes >= 1, "eval.episodes", self.episodes, "must be >= 1")


@dataclass
class LoggerConfig:
    """Weights & Biases logging. The local run record (metrics.csv, run.json) is written whatever
    happens here; W&B is a mirror of it."""

    mode: str = "offline"
    """'offline' (default: no account, no network; files in <run dir>/wandb, upload later with
    `wandb sync`), 'online' (log to logger.project / logger.entity), or 'disabled'."""
    project: str = "trpo_exp"
    """W&B project name."""
    entity: Optional[str] = None
    """W&B entity (user or team); null = the account's default."""
    group: Optional[str] = None
    """W&B group; null = the multirun (or sweep) this run belongs to, else the experiment preset,
    else '<algo>-<env>' so seeds of one setting group together."""
    job_type: str = "train"
    """W&B job_type."""
    tags: List[str] = field(default_factory=list)
    """Extra tags; algo, env and seed tags are always added."""
    init_timeout: float = 30.0
    """Seconds to wait for W&B to start before going on without it, > 0."""

    def __post_init__(self) -> None:
        require_finite(self, "logger.")
        require(self.mode in LOGGER_MODES, "logger.mode", self.mode, f"one of {', '.join(LOGGER_MODES)}")
        require(self.init_timeout > 0, "logger.init_timeout", self.init_timeout, "must be > 0")


@dataclass
class Config:
    algo: AlgoConfig = MISSING
    """The algorithm's settings; its schema (PGConfig, NPGConfig, ...) comes with the algo option."""
    env: EnvConfig = field(default_factory=EnvConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    hooks: Dict[str, Any] = field(default_factory=dict)
    """Per-iteration training hooks: name -> a Hydra ``_target_`` spec of a callable that receives
    every logged metrics row and may raise trpo_exp.engine.StopRun (sweeps attach their Optuna
    reporter here). Empty for a plain run."""
    seed: int = 0
    """Seeds python, numpy, torch and every env (each env its own derived seed), >= 0."""
    total_steps: Optional[int] = None
    """Training budget in env steps, > 0; null = the env preset's env.default_total_steps. Every
    simulator step counts, vine branches included. It is met exactly (rounded up to a multiple of
    env.num_envs): full iterations while the rest pays for one, then a last, shorter batch from
    which the policy takes no step. A budget below one iteration runs one shorter iteration that
    learns."""
    torch_threads: int = 1
    """torch intra-op threads for this run, >= 1 (1 is fastest for small MLPs)."""
    value_fit_process: bool = False
    """Fit the value baseline in a second process while this one samples the next batch (the fit of
    iteration k does not touch what sampling needs; V is next read for the next batch's targets);
    iteration k's row is logged once its fit is back. Every number is the same as without it, bit
    for bit, checkpoints included, and a resume may switch it. The worker uses torch_threads
    threads, so it pays only with a CPU core to spare: off by default (two runs in parallel on 2
    cores gain nothing). The fit runs in this process until the worker has started (~2 s), on the
    last iteration and before a checkpoint save. time_update_s then counts only the time this
    process waits for the fit. CPU only (device.type=cpu, or auto without a GPU)."""
    branch_processes: int = 1
    """algo=trpo_vine: processes that step the vine branches, >= 1; 1 = this one only. With N > 1,
    N - 1 worker processes each take a share of the iteration's chunks of algo.vine.branch_batch
    branches, and this one steps the first share. The chunks alone decide the numbers: every number
    is the same bit for bit whatever N, and a resume may change it. It pays only with CPU cores to
    spare (one run on a machine with idle cores), and needs at least N chunks per iteration
    (algo.vine.num_states * num_actions >= N * branch_batch) to use them all. CPU only."""
    checkpoint_interval_s: float = 120.0
    """Save checkpoint.pt after the iteration during which this many seconds have passed since the
    last save (0 = only at the end and on SIGTERM/SIGUSR1), >= 0. A killed run loses at most this
    much training; running the same command again (same run dir) resumes from the checkpoint."""
    fresh: bool = False
    """Start over in a run dir that already holds a record (the old record is moved into
    <run dir>/previous-<time>/, never deleted). Without it, an unfinished run resumes and a finished
    one is refused."""
    log_every: int = 5
    """In a non-interactive log, print a progress line every this many iterations, >= 1."""

    def __post_init__(self) -> None:
        require_finite(self, "")
        require(0 <= self.seed <= MAX_SEED, "seed", self.seed, f"must be in [0, {MAX_SEED}]")
        require(self.total_steps is None or self.total_steps > 0, "total_steps", self.total_steps,
                "must be > 0 (or null for the env preset's budget)")
        require(1 <= self.torch_threads <= MAX_THREADS, "torch_threads", self.torch_threads,
                f"must be in [1, {MAX_THREADS}] (4 x the {os.cpu_count()} CPUs here)")
        require(not (self.value_fit_process and self.device.type == "cuda"), "value_fit_process",
                self.value_fit_process, "must be false with device.type='cuda' (the second process fits on the CPU)")
        require(1 <= self.branch_processes <= MAX_THREADS, "branch_processes", self.branch_processes,
                f"must be in [1, {MAX_THREADS}] (4 x the {os.cpu_count()} CPUs here)")
        require(self.branch_processes == 1 or getattr(self.algo, "vine", None) is not None, "branch_processes",
                self.branch_processes, f"must be 1 with algo={self.algo.name} (only vine sampling branches)")
        require(self.branch_processes == 1 or self.device.type != "cuda", "branch_processes",
                self.branch_processes, "must be 1 with device.type='cuda' (the branch processes step on the CPU)")
        require(self.checkpoint_interval_s >= 0, "checkpoint_interval_s", self.checkpoint_interval_s, "must be >= 0")
        require(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require(self.algo.steps_per_iter >= self.env.num_envs, "algo.steps_per_iter",
                self.algo.steps_per_iter, f"must be >= env.num_envs ({self.env.num_envs})")
        self.algo.check_with_env(self.env)
        require(not (self.env.normalize_reward and getattr(self.algo, "vine", None) is not None),
                "env.normalize_reward", self.env.normalize_reward,
                f"must be false with algo={self.algo.name} (vine branch returns are not scaled)")
        for name, spec in self.hooks.items():
            require(isinstance(spec, dict) and "_target_" in spec, f"hooks.{name}", spec,
                   "a mapping with a _target_ (the hook's import path)")

    @property
    def budget(self) -> int:
        return self.total_steps if self.total_steps is not None else self.env.default_total_steps


def user_groups() -> str:
    """The config groups and options a user chooses from (for --help): conf/<group>/*.yaml, without
    the internal schemas and without algo_env (applied by itself for an algo/env pair)."""
    from pathlib import Path

    conf = Path(__file__).resolve().parent.parent / "conf"
    lines = []
    for group in sorted(p for p in conf.iterdir() if p.is_dir() and p.name not in ("algo_env", "hydra")):
        options = sorted(p.stem for p in group.glob("*.yaml"))
        lines.append(f"{group.name}: {', '.join(options)}")
    lines.append("hydra/launcher: basic (default), joblib, submitit_local, slurm")
    return "\n".join(lines)


def register_configs() -> None:
    """Register the schemas so YAML files can start with ``defaults: [base_<option>]``
    (``base_trpo`` for conf/algo/trpo.yaml: each algorithm its own schema), and the ``pid``
    resolver of conf/config.yaml's output directories."""
    import os

    from omegaconf import OmegaConf

    from trpo_exp.algorithms import ALGORITHMS

    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True)
    if not OmegaConf.has_resolver("user_groups"):
        OmegaConf.register_new_resolver("user_groups", user_groups)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for algorithm in ALGORITHMS:
        cs.store(group="algo", name=f"base_{algorithm.name}", node=algorithm.schema)
    cs.store(group="env", name="base_env", node=EnvConfig)
    cs.store(group="device", name="base_device", node=DeviceConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
