"""Check every job of a multirun before the first one starts (a Hydra callback).

Without it, ``-m algo.max_kl=0.01,-1,0.02`` trains job 0, fails job 1 and never runs job 2. Here the
sweep is expanded exactly as Hydra's basic sweeper will (same parser, same cartesian product), every
job's config is composed and validated (trpo_exp.app.to_config), and the first bad job stops the
whole multirun with one line and exit status 2, before any work.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def job_overrides(task_overrides: list[str]) -> list[list[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(task_overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [job for batch in batches for job in batch]


class MultirunPrecheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from trpo_exp.app import to_config
        from trpo_exp.cli_errors import EXIT_CONFIG_ERROR, one_line
        from trpo_exp.config import ConfigError

        jobs = job_overrides(list(config.hydra.overrides.task))
        for number, overrides in enumerate(jobs):
            try:
                to_config(compose(config_name=config.hydra.job.config_name, overrides=overrides))
            except ConfigError as err:
                message = str(err)
            except (HydraException, OmegaConfBaseException) as err:
                message = one_line(err)
            else:
                continue
            print(f"trpo_exp: error: job {number} of {len(jobs)} ({' '.join(overrides)}): {message} "
                  f"(no job was started)", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)
