"""Launch trpo_exp runs through Hydra's launcher, exactly as ``python -m trpo_exp ... -m`` would.

The launcher is whatever the runs' config selects: Hydra's basic launcher (sequential, in this
process) by default, ``hydra/launcher=joblib`` for parallel local processes, or a submitit launcher
for a cluster. Each job is an ordinary run (its own Hydra output directory, .hydra/, run.json,
metrics.csv, W&B run); the sweep only chooses its overrides and reads its record afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sweeps.definition import Param, SweepError


def train_run(cfg: DictConfig) -> dict:
    """Hydra task function of one run (module level, so process-based launchers can pickle it)."""
    from trpo_exp.app import hydra_context, run, to_config

    return run(to_config(cfg), hydra_context(cfg))


def override(key: str, value: Any) -> str:
    """A Hydra command-line override that sets ``key`` to exactly ``value``."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"{key}={value!r}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"{key}='{text}'"


def is_hydra_override(text: str) -> bool:
    key = text.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


class RunLauncher:
    """Composes the runs' config once (base overrides + launcher choice) and launches batches of
    runs that differ by a few overrides (parameters, seed, trial, output subdirectory)."""

    def __init__(self, run_overrides: Sequence[str], sweep_dir: Path):
        from hydra._internal.callbacks import Callbacks
        from hydra._internal.hydra import Hydra
        from hydra._internal.utils import create_config_search_path
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.plugins import Plugins
        from hydra.errors import HydraException
        from hydra.types import HydraContext, RunMode
        from omegaconf.errors import OmegaConfBaseException

        from trpo_exp.app import CONF_DIR
        from trpo_exp.cli_errors import one_line
        from trpo_exp.config import register_configs
        from trpo_exp.precheck import slurm_problem

        register_configs()
        GlobalHydra.instance().clear()
        self.hydra = Hydra.create_main_hydra2("trpo_exp", create_config_search_path(CONF_DIR))
        self.overrides = [*run_overrides, override("hydra.sweep.dir", str(sweep_dir))]
        # Hydra re-applies only the hydra.* overrides of the launcher's config to each job (as its
        # own sweeper does, every job carries the task overrides itself).
        self.task_overrides = [o for o in run_overrides if not is_hydra_override(o)]
        try:
            self.config = self.hydra.compose_config("config", self.overrides, run_mode=RunMode.MULTIRUN,
                                                    with_log_configuration=False)
            self.launcher = Plugins.instance().instantiate_launcher(
                hydra_context=HydraContext(config_loader=self.hydra.config_loader, callbacks=Callbacks(self.config)),
                task_function=train_run, config=self.config)
        except (HydraException, OmegaConfBaseException) as err:
            raise SweepError(f"in the runs' overrides: {one_line(err)}") from None
        problem = slurm_problem(self.config)  # no sbatch, controller down: one line before any trial
        if problem is not None:
            raise SweepError(problem)
        self._errors = (HydraException, OmegaConfBaseException)
        self._one_line = one_line
        self.next_job = 0

    def launch(self, jobs: Sequence[Sequence[str]]) -> list:
        """Run the jobs (each a list of extra overrides) and wait for all of them."""
        returns = self.launcher.launch([[*self.task_overrides, *j] for j in jobs], initial_job_idx=self.next_job)
        self.next_job += len(jobs)
        return list(returns)

    # --- checks before any trial starts -------------------------------------------------------

    def run_config(self, extra: Sequence[str] = ()):
        """The validated trpo_exp Config a run with these extra overrides would get."""
        from trpo_exp.app import to_config
        from trpo_exp.config import ConfigError

        try:
            cfg = self.hydra.config_loader.load_sweep_config(self.config, [*self.task_overrides, *extra])
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            return to_config(cfg)
        except ConfigError as err:
            raise SweepError(str(err)) from None
        except self._errors as err:
            raise SweepError(self._one_line(err)) from None

    def check_space(self, params: Sequence[Param]) -> int:
        """Every parameter is a key of the run config and both ends of its range (every choice)
        pass the run config's own checks. Returns the policy iterations of one run."""
        config = self.run_config()
        plain = OmegaConf.structured(config)
        for p in params:
            node = OmegaConf.select(plain, p.name, default=_MISSING)
            if node is _MISSING or OmegaConf.is_config(node):
                raise SweepError(f"sweep.space.{p.name} is not allowed: unknown parameter, '{p.name}' is not a "
                                 f"setting of the run config")
            for value in p.bounds():
                try:
                    self.run_config([override(p.name, value)])
                except SweepError as err:
                    raise SweepError(f"sweep.space.{p.name}: the run config refuses {value!r}: {err}") from None
        from trpo_exp.budget import planned_iterations
        from trpo_exp.envs.factory import action_space

        return planned_iterations(config, action_space(config.env))


_MISSING = object()
