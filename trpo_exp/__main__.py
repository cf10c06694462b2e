"""Command line: ``python -m trpo_exp [overrides] [-m]``.

Compose (Hydra) -> validate once (OmegaConf.to_object runs every schema check) -> train -> record.
A configuration mistake ends the run before any work with one line on stderr and exit status 2;
HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from trpo_exp import cli_errors
from trpo_exp.config import Config, ConfigError, register_configs

register_configs()
cli_errors.install()

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def to_config(cfg: DictConfig) -> Config:
    """DictConfig -> validated dataclasses, plus the checks that need the outside world."""
    from trpo_exp.engine import resolve_device
    from trpo_exp.envs.factory import check_env_id, check_vine_support

    try:
        config: Config = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as err:  # OmegaConf wraps errors raised inside __post_init__
        cause = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    check_env_id(config.env.id)
    if config.algo.name == "trpo_vine":
        check_vine_support(config.env)
    resolve_device(config.device.type)
    return config


@dataclass(frozen=True)
class RunContext:
    """What a run needs to know about how it was launched (from Hydra, or from a test)."""

    run_dir: Path
    group: Optional[str] = None  # the multirun / experiment this run belongs to, if any
    resolved_config: Optional[dict] = None  # the full resolved config, for W&B


def run_name(config: Config) -> str:
    env = config.env.id.split("/")[-1].lower().rsplit("-v", 1)[0]
    return f"{config.algo.name}-{env}-s{config.seed}"


class Terminated(BaseException):
    """SIGTERM (a cluster's time limit, `kill`): end like Ctrl-C, with the record closed."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated("terminated by SIGTERM")


def run(config: Config, context: RunContext) -> dict:
    """Train one run into ``context.run_dir`` and return its run.json content."""
    from dataclasses import asdict

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
        result = trainer.train(record, progress, hooks=make_hooks(config, record.info))
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
    hc = HydraConfig.get()
    group = None
    if hc.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hc.sweep.dir)
        group = f"{sweep_dir.parent.name}_{sweep_dir.name}"  # e.g. 2026-11-22_00-10-00
    elif hc.runtime.choices.get("experiment") not in (None, "null"):
        group = hc.runtime.choices["experiment"]
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return RunContext(run_dir=Path(hc.runtime.output_dir), group=group, resolved_config=resolved)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        config = to_config(cfg)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"trpo_exp: error: {err}", file=sys.stderr)
        sys.exit(cli_errors.EXIT_CONFIG_ERROR)
    context = hydra_context(cfg)
    try:
        run(config, context)
    except (KeyboardInterrupt, Terminated) as stop:
        # The run record is already closed as failed with the reason; no traceback for this.
        what = "interrupted" if isinstance(stop, KeyboardInterrupt) else str(stop)
        print(f"trpo_exp: {what}; the run record in {context.run_dir} is closed (status failed)", file=sys.stderr)
        sys.exit(130 if isinstance(stop, KeyboardInterrupt) else 143)


def _multirun_flag_first(argv: list[str]) -> list[str]:
    """Hydra's argparse takes overrides only as one contiguous run, so `seed=0,1 -m total_steps=9`
    would fail with a usage dump; moving -m/--multirun to the front accepts it anywhere."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return [argv[0], *flags, *[a for a in argv[1:] if a not in ("-m", "--multirun")]]


if __name__ == "__main__":
    sys.argv = _multirun_flag_first(sys.argv)
    main()
