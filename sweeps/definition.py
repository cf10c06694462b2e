"""Sweep definitions: a typed, frozen schema (registered in Hydra's ConfigStore) and thin YAML files.

``load(name, overrides)`` composes ``sweeps/conf/sweep/<name>.yaml`` with Hydra's compose API, so the
command line uses Hydra's override syntax (``sweep.n_trials=8``, ``sweep.space.algo.max_kl.low=1e-4``,
``+sweep.space.algo.vf_lr={low:1e-4,high:1e-2,log:true}``), then turns it into frozen dataclasses and
checks everything that can be checked without the outside world. Each failed check raises
:class:`SweepError` with a one-line message.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, cast

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from trpo_exp.config import require
from trpo_exp.util import flatten

if TYPE_CHECKING:
    import optuna

CONF_DIR = Path(__file__).resolve().parent / "conf"
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none", "hyperband")
OBJECTIVES = ("final_eval", "last_fraction")
PARAM_TYPES = ("float", "int", "categorical")
# A study creates its trial slots up front: far more than any cluster runs would take minutes
# of database writes before the first trial starts.
MAX_TRIALS = 100_000


class SweepError(ValueError):
    """A user-facing mistake in a sweep definition or its environment; ``str(err)`` is one line."""


_require = functools.partial(require, error=SweepError)


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "tpe"
    """'tpe' (Optuna's default, multivariate, constant liar for parallel workers) or 'random'."""
    seed: int = 0
    """Base seed; trial n's sampler is seeded from (seed, n), so a sweep replays the same way
    whichever worker runs which trial."""
    n_startup_trials: int = 5
    """tpe: trials sampled at random before TPE starts modelling, >= 0."""


@dataclass(frozen=True)
class PrunerSpec:
    name: str = "median"
    """'median' (stop a trial whose best intermediate return is below the median of completed
    trials at the same point), 'none', or 'hyperband'."""
    n_startup_trials: int = 3
    """median: completed trials needed before anything is pruned, >= 0."""
    n_warmup_iters: int = 10
    """median: policy iterations a run trains before it may be pruned, >= 0."""
    min_resource_iters: int = 5
    """hyperband: policy iterations of the first rung, >= 1."""
    reduction_factor: int = 3
    """hyperband: 1/fraction of trials promoted at each rung, >= 2."""


@dataclass(frozen=True)
class ObjectiveSpec:
    metric: str = "final_eval"
    """Per-seed score: 'final_eval' (the run's final deterministic evaluation, run.json
    eval_return_mean) or 'last_fraction' (mean training return_mean over the last `fraction` of the
    run's iterations). The trial's objective is the mean over its seeds (maximised)."""
    fraction: float = 0.2
    """last_fraction: which final part of training counts, in (0, 1]."""


@dataclass(frozen=True)
class SweepSpec:
    """One named sweep. Parameter values, seeds and budget reach the runs as trpo_exp overrides."""

    study: str = "sweep"
    """Optuna study name (also the default sweep directory name and the W&B group prefix)."""
    overrides: List[str] = field(default_factory=list)
    """trpo_exp overrides shared by every run (algo=..., env=..., total_steps=..., hydra/launcher=...)."""
    space: Dict[str, Any] = field(default_factory=dict)
    """Search space, nested like the run config: algo: {max_kl: {low: 1e-3, high: 0.1, log: true}}.
    A leaf is {low, high[, log, type: float|int]} or {choices: [...]}."""
    enqueue: List[Any] = field(default_factory=list)
    """Parameter sets for the first trials, before the sampler takes over (known-good settings,
    or a deliberately bad one), nested like space: [{algo: {max_kl: 0.01, cg_damping: 0.1}}]."""
    n_trials: int = 20
    """Trials that must end COMPLETE or PRUNED, >= 1. Fixed when the study is created; a larger
    value on a later invocation adds trials."""
    seeds: int = 3
    """Tuning seeds per trial (seed_start, seed_start+1, ...), >= 1; the trial scores their mean."""
    seed_start: int = 0
    """First tuning seed, >= 0."""
    report_seeds: int = 5
    """Fresh seeds on which the best parameters are re-run at the end, >= 0 (0 = no report)."""
    report_seed_start: int = 1000
    """First reporting seed; the reporting seeds must not overlap the tuning seeds."""
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    storage: Optional[str] = None
    """Optuna storage URL; null = sqlite:///<dir>/study.db. Also 'journal:<file>' (a journal file,
    for file systems where SQLite locking is unreliable) or e.g. postgresql://user@host/db."""
    dir: Optional[str] = None
    """Sweep directory (runs, tables, default storage); null = runs/sweeps/<study>."""
    heartbeat_interval: int = 10
    """Seconds between a worker's heartbeats for its running trial, >= 1."""
    grace_period: int = 60
    """A running trial without a heartbeat for this many seconds belongs to a dead worker: it is
    marked FAIL and retried, > heartbeat_interval."""
    max_retries: int = 3
    """How often a trial interrupted by a dead worker is retried, >= 0."""
    max_failed_trials: int = 3
    """Trials whose runs raise (a real error, not a dead worker) are replaced by new trials up to
    this many times; after that the sweep stops with an error, >= 0."""
    poll_interval: float = 2.0
    """Seconds between checks while waiting for other workers' trials, > 0."""


@dataclass(frozen=True)
class Param:
    """One search dimension: a trpo_exp config key and its Optuna distribution."""

    name: str
    type: str
    low: float = math.nan
    """Numeric types: the range's ends (NaN for categorical)."""
    high: float = math.nan
    log: bool = False
    choices: Tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def bounds(self) -> Tuple[Any, ...]:
        """Values that, if valid for the run config, make every value of the range valid."""
        if self.type == "categorical":
            return self.choices
        cast = int if self.type == "int" else float
        return cast(self.low), cast(self.high)


def _writable_schema() -> Any:
    """SweepSpec as a config node that overrides can change: OmegaConf makes nodes of frozen
    dataclasses read-only, which would reject every YAML value and command-line override.
    ``OmegaConf.to_object`` still builds the frozen dataclasses at the end."""
    node = OmegaConf.structured(SweepSpec)
    OmegaConf.set_readonly(node, False)
    for key in ("objective", "sampler", "pruner"):
        OmegaConf.set_readonly(node[key], False)
    return node


def register() -> None:
    ConfigStore.instance().store(group="sweep", name="base_sweep", node=_writable_schema())
    ConfigStore.instance().store(name="sweeps_root", node={})


def available() -> List[str]:
    return sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml"))


def load(name: str, overrides: List[str]) -> SweepSpec:
    """Compose sweep definition ``name`` with ``sweep.*`` overrides and validate it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from trpo_exp.cli_errors import one_line

    register()
    GlobalHydra.instance().clear()  # a RunLauncher of an earlier sweep in this process may hold it
    if name not in available():
        raise SweepError(f"unknown sweep {name!r}: one of {', '.join(available())}")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("sweeps_root", overrides=[f"+sweep={name}", *overrides])
        _refuse_unknown_keys(cfg.sweep)
        spec = OmegaConf.to_object(cfg.sweep)
        assert isinstance(spec, SweepSpec)
    except (HydraException, OmegaConfBaseException) as err:
        raise SweepError(one_line(err)) from None
    check(spec)
    return spec


def _refuse_unknown_keys(node: Any) -> None:
    """A key added with ``+`` that the schema lacks (``+sweep.foo=1``): Hydra adds it, and building
    the frozen dataclasses then fails with a traceback. Refused by the run config's own check."""
    from trpo_exp.app import refuse_unknown_keys
    from trpo_exp.config import ConfigError

    try:
        refuse_unknown_keys(node, "sweep.")
    except ConfigError as err:
        raise SweepError(str(err)) from None


def check(spec: SweepSpec) -> None:
    """The checks that need nothing but the definition itself."""
    s = "sweep."
    _require(bool(spec.study) and "/" not in spec.study, s + "study", spec.study, "a non-empty name without '/'")
    _require(1 <= spec.n_trials <= MAX_TRIALS, s + "n_trials", spec.n_trials, f"must be in [1, {MAX_TRIALS}]")
    _require(spec.seeds >= 1, s + "seeds", spec.seeds, "must be >= 1")
    _require(spec.seed_start >= 0, s + "seed_start", spec.seed_start, "must be >= 0")
    _require(spec.report_seeds >= 0, s + "report_seeds", spec.report_seeds, "must be >= 0")
    _require(spec.report_seed_start >= 0, s + "report_seed_start", spec.report_seed_start, "must be >= 0")
    overlap = set(tuning_seeds(spec)) & set(reporting_seeds(spec))
    _require(not overlap, s + "report_seed_start", spec.report_seed_start,
             f"reporting seeds must be disjoint from the tuning seeds (both have {sorted(overlap)[:3]})")
    _require(spec.objective.metric in OBJECTIVES, s + "objective.metric", spec.objective.metric,
             f"one of {', '.join(OBJECTIVES)}")
    _require(0.0 < spec.objective.fraction <= 1.0, s + "objective.fraction", spec.objective.fraction,
             "must be in (0, 1]")
    _require(spec.sampler.name in SAMPLERS, s + "sampler.name", spec.sampler.name, f"one of {', '.join(SAMPLERS)}")
    _require(spec.sampler.n_startup_trials >= 0, s + "sampler.n_startup_trials", spec.sampler.n_startup_trials,
             "must be >= 0")
    _require(spec.pruner.name in PRUNERS, s + "pruner.name", spec.pruner.name, f"one of {', '.join(PRUNERS)}")
    _require(spec.pruner.n_startup_trials >= 0, s + "pruner.n_startup_trials", spec.pruner.n_startup_trials,
             "must be >= 0")
    _require(spec.pruner.n_warmup_iters >= 0, s + "pruner.n_warmup_iters", spec.pruner.n_warmup_iters, "must be >= 0")
    _require(spec.pruner.min_resource_iters >= 1, s + "pruner.min_resource_iters", spec.pruner.min_resource_iters,
             "must be >= 1")
    _require(spec.pruner.reduction_factor >= 2, s + "pruner.reduction_factor", spec.pruner.reduction_factor,
             "must be >= 2")
    _require(spec.heartbeat_interval >= 1, s + "heartbeat_interval", spec.heartbeat_interval, "must be >= 1")
    _require(spec.grace_period > spec.heartbeat_interval, s + "grace_period", spec.grace_period,
             f"must be > sweep.heartbeat_interval ({spec.heartbeat_interval})")
    _require(spec.max_retries >= 0, s + "max_retries", spec.max_retries, "must be >= 0")
    _require(spec.max_failed_trials >= 0, s + "max_failed_trials", spec.max_failed_trials, "must be >= 0")
    _require(spec.poll_interval > 0, s + "poll_interval", spec.poll_interval, "must be > 0")
    _require(not any(o.split("=", 1)[0].lstrip("+~") in ("seed", "hooks") or o.lstrip("+~").startswith("hooks.")
                     for o in spec.overrides),
             s + "overrides", list(spec.overrides), "seed and hooks.* are set by the sweep")
    params = search_space(spec)
    _require(len(params) > 0, s + "space", dict(spec.space), "at least one parameter")
    _require(len(spec.enqueue) <= spec.n_trials, s + "enqueue", len(spec.enqueue),
             f"at most sweep.n_trials ({spec.n_trials}) parameter sets")
    enqueued(spec)


def enqueued(spec: SweepSpec) -> List[Dict[str, Any]]:
    """sweep.enqueue flattened to {param name: value}, each value checked against the space."""
    params = {p.name: p for p in search_space(spec)}
    out = []
    for i, entry in enumerate(spec.enqueue):
        flat = flatten(entry)
        key = f"sweep.enqueue[{i}]"
        _require(set(flat) == set(params), key, flat, f"needs exactly the parameters {sorted(params)}")
        for name, value in flat.items():
            p = params[name]
            ok = value in p.choices if p.type == "categorical" else (
                isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high)
            _require(ok, f"{key}.{name}", value, f"outside sweep.space.{name}")
        out.append(flat)
    return out


def tuning_seeds(spec: SweepSpec) -> List[int]:
    return list(range(spec.seed_start, spec.seed_start + spec.seeds))


def reporting_seeds(spec: SweepSpec) -> List[int]:
    return list(range(spec.report_seed_start, spec.report_seed_start + spec.report_seeds))


def search_space(spec: SweepSpec) -> Tuple[Param, ...]:
    """Flatten the nested space into Params, checking each range."""
    params: List[Param] = []

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict) or not node:
            raise SweepError(f"sweep.space.{path}={node!r} is not allowed: a parameter needs "
                             "{low, high[, log, type]} or {choices}")
        if "low" in node or "high" in node or "choices" in node:
            params.append(_param(path, node))
            return
        for key, child in node.items():
            walk(child, f"{path}.{key}" if path else str(key))

    for key, child in dict(spec.space).items():
        walk(child, str(key))
    return tuple(params)


def _param(name: str, node: Dict[str, Any]) -> Param:
    key = f"sweep.space.{name}"
    unknown = set(node) - {"low", "high", "log", "type", "choices"}
    _require(not unknown, key, node, f"unknown field(s) {sorted(unknown)}; use low, high, log, type or choices")
    kind = node.get("type", "categorical" if "choices" in node else "float")
    _require(kind in PARAM_TYPES, key + ".type", kind, f"one of {', '.join(PARAM_TYPES)}")
    if kind == "categorical":
        choices = node.get("choices")
        _require(isinstance(choices, list) and len(choices) > 0, key + ".choices", choices, "a non-empty list")
        return Param(name, kind, choices=tuple(cast(list, choices)))
    low, high, log = node.get("low"), node.get("high"), node.get("log", False)
    _require(isinstance(log, bool), key + ".log", log, "true or false")
    for bound, value in (("low", low), ("high", high)):
        _require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                 f"{key}.{bound}", value, "a finite number")
        if kind == "int":
            _require(float(cast(float, value)).is_integer(), f"{key}.{bound}", value, "an integer (type: int)")
    lo, hi = float(cast(float, low)), float(cast(float, high))
    _require(lo < hi, key, {"low": low, "high": high}, "empty or inverted range: low must be < high")
    if log:
        _require(lo > 0, key + ".low", low, "must be > 0 on a log scale")
    return Param(name, kind, low=lo, high=hi, log=log)
