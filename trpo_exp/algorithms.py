"""The algorithm registry: the one place that names each algorithm.

An entry gives the algorithm's config schema (registered in Hydra's ConfigStore as
``algo/base_<name>``), its policy-step factory, its estimator factory (single path or vine), its
display order (the order of ``ALGORITHMS``) and whether the trust-region size delta and the CG
damping apply to it. The engine, the config checks, the sweeps and analysis all ask this module;
nothing else lists algorithms.

Adding an algorithm: a schema in trpo_exp/config.py, conf/algo/<name>.yaml (``defaults:
[base_<name>]``), its policy step in trpo_exp/algos/, and one entry here.

The factories import lazily, so reading the registry (analysis does) does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from trpo_exp.config import AlgoConfig, NaturalConfig, NPGConfig, NPGFixedConfig, PGConfig, TRPOConfig, TRPOVineConfig

if TYPE_CHECKING:
    import gymnasium as gym
    import torch

    from trpo_exp.algos.common import PolicyStep
    from trpo_exp.config import Config, EnvConfig
    from trpo_exp.nets import Policy
    from trpo_exp.obs_norm import RunningObsNormalizer
    from trpo_exp.rollout.estimators import Estimator


@dataclass(frozen=True)
class Algorithm:
    name: str
    schema: type[AlgoConfig]
    make_step: Callable[[Any, Policy], PolicyStep]
    """(the algorithm's config, the policy) -> the policy step."""
    make_estimator: Callable[[Config, RunningObsNormalizer, torch.device, gym.Space], Estimator]
    """(config, obs normaliser, device, action space) -> the estimator of the step's objective."""
    trust_region: bool
    """Whether algo.max_kl (delta) applies: the KL figure draws delta for these."""
    natural: bool
    """Whether the step is a natural gradient (algo.cg_damping, algo.cg_iters apply)."""
    check_env: Callable[[EnvConfig], None] | None = None
    """A check of the env that needs the outside world (e.g. vine needs resettable simulators)."""


def _pg_step(cfg: PGConfig, policy: Policy) -> PolicyStep:
    from trpo_exp.algos.pg import VanillaPolicyGradient

    return VanillaPolicyGradient(policy, cfg.lr)


def _natural_step(cfg: NaturalConfig, policy: Policy) -> PolicyStep:
    from trpo_exp.algos.natural import BacktrackingLineSearch, FixedStep, KLScaledStep, NaturalGradient, StepSize

    step_size: StepSize
    if isinstance(cfg, NPGFixedConfig):
        step_size = FixedStep(cfg.step_size)
    else:
        assert isinstance(cfg, NPGConfig)
        step_size = KLScaledStep(cfg.max_kl)
    line_search = None
    if isinstance(cfg, TRPOConfig):  # trpo and trpo_vine: the same step; vine changes the objective
        line_search = BacktrackingLineSearch(cfg.max_kl, cfg.backtrack_coeff, cfg.backtrack_iters, cfg.accept_ratio)
    return NaturalGradient(step_size, cfg.cg_iters, cfg.cg_tol, cfg.cg_damping, cfg.fvp_subsample, line_search)


def _single_path(cfg: Config, normalizer: RunningObsNormalizer, device: torch.device,
                 action_space: gym.Space) -> Estimator:
    from trpo_exp.rollout.estimators import SinglePathEstimator

    return SinglePathEstimator(cfg.algo.normalize_advantage)


def _vine(cfg: Config, normalizer: RunningObsNormalizer, device: torch.device, action_space: gym.Space) -> Estimator:
    from trpo_exp.rollout.estimators import VineEstimator

    return VineEstimator(cfg, normalizer, device, action_space)


def _check_vine_env(env: EnvConfig) -> None:
    from trpo_exp.envs.factory import check_vine_support

    check_vine_support(env)


ALGORITHMS: tuple[Algorithm, ...] = (
    Algorithm("pg", PGConfig, _pg_step, _single_path, trust_region=False, natural=False),
    Algorithm("npg_fixed", NPGFixedConfig, _natural_step, _single_path, trust_region=False, natural=True),
    Algorithm("npg", NPGConfig, _natural_step, _single_path, trust_region=True, natural=True),
    Algorithm("trpo", TRPOConfig, _natural_step, _single_path, trust_region=True, natural=True),
    Algorithm("trpo_vine", TRPOVineConfig, _natural_step, _vine, trust_region=True, natural=True,
              check_env=_check_vine_env),
)


def names() -> tuple[str, ...]:
    """Every algorithm's name, in display order."""
    return tuple(a.name for a in ALGORITHMS)


def get(name: str) -> Algorithm:
    for algorithm in ALGORITHMS:
        if algorithm.name == name:
            return algorithm
    raise KeyError(f"algo={name!r} is not an algorithm: one of {', '.join(names())}")


def trust_region_names() -> tuple[str, ...]:
    """The algorithms whose updates are bounded by delta (algo.max_kl)."""
    return tuple(a.name for a in ALGORITHMS if a.trust_region)
