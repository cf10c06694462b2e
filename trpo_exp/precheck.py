"""Check every job of a multirun before the first one starts (a Hydra callback).

Without it, ``-m algo.max_kl=0.01,-1,0.02`` trains job 0, fails job 1 and never runs job 2. Here the
sweep is expanded exactly as Hydra's basic sweeper will (same parser, same cartesian product), every
job's config is composed and validated (trpo_exp.app.to_config), and the first bad job stops the
whole multirun with one line and exit status 2, before any work. With ``hydra/launcher=slurm`` it
also checks that SLURM can take the jobs (sbatch on PATH, the controller answering), so a machine
without SLURM gets one line instead of submitit's traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

SLURM_TOOLS = ("sbatch", "srun", "scontrol")  # submitit submits with sbatch and starts each job with srun


def job_overrides(task_overrides: list[str]) -> list[list[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(task_overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [job for batch in batches for job in batch]


def slurm_problem(config: DictConfig) -> Optional[str]:
    """Why SLURM cannot take this multirun's jobs, in one line (None: it can, or not a SLURM launcher)."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    if not target.endswith(".SlurmLauncher"):
        return None
    for tool in SLURM_TOOLS:
        if shutil.which(tool) is None:
            return (f"hydra/launcher=slurm needs SLURM, but {tool} is not on PATH (run on a cluster's login "
                    f"node, or start a local cluster: bash scripts/local-slurm.sh start)")
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"hydra/launcher=slurm: scontrol ping failed: {err}"
    if " is UP" not in ping.stdout:
        said = (ping.stdout.strip() or ping.stderr.strip() or f"exit status {ping.returncode}").splitlines()[0]
        return f"hydra/launcher=slurm: the SLURM controller does not answer (scontrol ping: {said})"
    return None


class MultirunPrecheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from trpo_exp.app import to_config
        from trpo_exp.cli_errors import EXIT_CONFIG_ERROR, one_line
        from trpo_exp.config import ConfigError

        problem = slurm_problem(config)
        if problem is not None:
            print(f"trpo_exp: error: {problem} (no job was started)", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)
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
