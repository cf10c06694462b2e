"""Command line: ``python -m trpo_exp [overrides] [-m]``.

Compose (Hydra) -> validate once (OmegaConf.to_object runs every schema check) -> train -> record.
A configuration mistake ends the run before any work with one line on stderr and exit status 2;
HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from trpo_exp import cli_errors
from trpo_exp.config import Config, ConfigError, register_configs

register_configs()
cli_errors.install()

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def to_config(cfg: DictConfig) -> Config:
    """DictConfig -> validated dataclasses, plus the checks that need the outside world."""
    from trpo_exp.engine import resolve_device
    from trpo_exp.envs.factory import check_env_id

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
    resolve_device(config.device.type)
    return config


def run(config: Config, run_dir: Path) -> dict:
    """Train one run into ``run_dir`` and return its run.json content."""
    from trpo_exp.engine import Trainer
    from trpo_exp.progress import Progress
    from trpo_exp.record import RunRecord

    trainer = Trainer(config, run_dir)
    record = RunRecord(run_dir, {
        "algo": config.algo.name, "env_id": config.env.id, "seed": config.seed,
        "total_steps": config.budget, "env_steps": 0, "run_dir": str(run_dir),
    })
    progress = Progress(config.budget, f"{config.algo.name} {config.env.id} s{config.seed}", config.log_every)
    try:
        result = trainer.train(record, progress)
    except BaseException as err:
        reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
        record.fail(reason)
        raise
    finally:
        progress.close()
        trainer.close()
    record.finish(eval_return_mean=result.mean, eval_return_std=result.std, eval_episodes=len(result.returns))
    return record.info


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        config = to_config(cfg)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"trpo_exp: error: {err}", file=sys.stderr)
        sys.exit(cli_errors.EXIT_CONFIG_ERROR)
    run(config, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
