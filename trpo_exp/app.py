"""One run, from a composed config to a closed record: the part of the command line that other
packages (sweeps' launcher, tests) import. Importing it has no side effects; the entry point
(trpo_exp/__main__.py) only handles argv and Hydra.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from trpo_exp import algorithms
from trpo_exp.config import Config, ConfigError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def to_config(cfg: DictConfig) -> Config:
    """DictConfig -> validated dataclasses, plus the checks that need the outside world."""
    from trpo_exp.engine import resolve_device
    from trpo_exp.envs.factory import check_env_id

    try:
        config = OmegaConf.to_object(cfg)
        assert isinstance(config, Config)
    except ConfigError:
        raise
    except Exception as err:  # OmegaConf wraps errors raised inside __post_init__
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    check_env_id(config.env.id)
    algorithm = algorithms.get(config.algo.name)
    if algorithm.check_env is not None:
        algorithm.check_env(config.env)
    resolve_device(config.device.type)
    return config


@dataclass(frozen=True)
class RunContext:
    """What a run needs to know about how it was launched (from Hydra, or from a test)."""

    run_dir: Path
    group: Optional[str] = None  # the multirun / experiment this run belongs to, if any
    resolved_config: Optional[dict[str, Any]] = None  # the full resolved config, for W&B


def run_name(config: Config) -> str:
    env = config.env.id.split("/")[-1].lower().rsplit("-v", 1)[0]
    return f"{config.algo.name}-{env}-s{config.seed}"


class Terminated(BaseException):
    """SIGTERM (a cluster's time limit, `kill`): end like Ctrl-C, with the record closed."""


def _raise_terminated(signum: int, frame: Optional[FrameType]) -> None:
    raise Terminated("terminated by SIGTERM")


def run(config: Config, context: RunContext) -> dict[str, Any]:
    """Train one run into ``context.run_dir`` and return its run.json content."""
    from trpo_exp import provenance
    from trpo_exp.engine import StopRun, Trainer
    from trpo_exp.hooks import make_hooks
    from trpo_exp.progress import Progress
    from trpo_exp.record import RunRecord
    from trpo_exp.wandb_logger import WandbMirror

    run_dir = context.run_dir
    name = run_name(config)
    group = config.logger.group or context.group or name.rsplit("-s", 1)[0]
    trainer = Trainer(config, run_dir)
    mirror = WandbMirror(config.logger, run_dir, name, group,
                         tags=[config.algo.name, config.env.id, f"seed={config.seed}"],
                         config=context.resolved_config or asdict(config))
    record = RunRecord(run_dir, {
        "name": name, "algo": config.algo.name, "env_id": config.env.id, "seed": config.seed,
        "total_steps": config.budget, "env_steps": 0, "run_dir": str(run_dir), "group": group,
        "wandb_mode": config.logger.mode, "wandb_run_id": mirror.run_id, "provenance": provenance.collect(),
    }, mirrors=[mirror])
    progress = Progress(config.budget, name, config.log_every)
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals need it
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        result = trainer.train(record, progress, hooks=make_hooks(config))
    except StopRun as stop:
        record.stop(stop.status, stop.reason)
        return record.info
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            reason = "interrupted (Ctrl-C)"
        elif isinstance(err, Terminated):
            reason = str(err)
        else:
            reason = f"{type(err).__name__}: {err}"
        record.fail(reason)
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
        progress.close()
        trainer.close()
    record.finish(eval_return_mean=result.mean, eval_return_std=result.std, eval_episodes=len(result.returns))
    return record.info


def hydra_context(cfg: DictConfig) -> RunContext:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    group = None
    if hc.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hc.sweep.dir)
        group = f"{sweep_dir.parent.name}_{sweep_dir.name}"  # e.g. 2026-11-22_00-10-00
    elif hc.runtime.choices.get("experiment") not in (None, "null"):
        group = hc.runtime.choices["experiment"]
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    return RunContext(run_dir=Path(hc.runtime.output_dir), group=group,
                      resolved_config={str(k): v for k, v in resolved.items()})


