"""Command line: ``python -m trpo_exp [overrides] [-m]``.

Compose (Hydra) -> validate once (OmegaConf.to_object runs every schema check) -> train -> record
(trpo_exp.app). This module only handles argv and Hydra.
A configuration mistake ends the run before any work with one line on stderr and exit status 2;
HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from trpo_exp import cli_errors
from trpo_exp.app import CONF_DIR, hydra_context, run, to_config
from trpo_exp.checkpoint import CheckpointError
from trpo_exp.config import ConfigError, register_configs
from trpo_exp.guard import NonFiniteError
from trpo_exp.record import RecordTakenOver
from trpo_exp.signals import Terminated
from trpo_exp.worker_process import WorkerError

register_configs()
cli_errors.install()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        refuse_internal_choices()
        config = to_config(cfg)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"trpo_exp: error: {err}", file=sys.stderr)
        sys.exit(cli_errors.EXIT_CONFIG_ERROR)
    context = hydra_context(cfg)
    try:
        info = run(config, context)
        print(closing_block(info, context.run_dir), file=sys.stderr, flush=True)
    except ConfigError as err:  # e.g. the run dir holds a finished run: nothing was changed
        print(f"trpo_exp: error: {err}", file=sys.stderr)
        sys.exit(cli_errors.EXIT_CONFIG_ERROR)
    except (KeyboardInterrupt, Terminated) as stop:
        # The run record is already closed (preempted or failed) with the reason; no traceback for this.
        what = "interrupted" if isinstance(stop, KeyboardInterrupt) else str(stop)
        status = "preempted" if getattr(stop, "checkpointed", False) else "failed"
        print(f"trpo_exp: {what}; the run record in {context.run_dir} is closed (status {status})",
              file=sys.stderr)
        sys.exit(130 if isinstance(stop, KeyboardInterrupt) else stop.exit_code)
    except RecordTakenOver as err:  # nothing of this process's may reach the other one's record
        print(f"trpo_exp: error: {err}", file=sys.stderr)
        sys.exit(1)
    except (NonFiniteError, CheckpointError, WorkerError) as err:
        print(f"trpo_exp: error: {err}; the run record in {context.run_dir} is closed (status failed)",
              file=sys.stderr)
        sys.exit(1)


def refuse_internal_choices() -> None:
    """``algo=base_trpo`` would silently run trpo: the base_* configs are schemas, not options."""
    from hydra.core.hydra_config import HydraConfig

    for group, choice in HydraConfig.get().runtime.choices.items():
        if str(choice).startswith("base_"):
            raise ConfigError(f"{group}={choice!r} is not allowed: base_* are internal schemas (see --help for "
                              f"the options)")


def closing_block(info: dict, run_dir: Path) -> str:
    """What a user needs when a run ends: its result, where it is, what to run next."""
    mean, std, episodes = info.get("eval_return_mean"), info.get("eval_return_std"), info.get("eval_episodes")
    result = (f"final eval {mean:.1f}" + (f" +- {std:.1f}" if isinstance(std, float) else "")
              + f" ({episodes} episodes, deterministic policy)") if isinstance(mean, (int, float)) else ""
    lines = [f"trpo_exp: {info.get('name')} {info.get('status')}"
             + (f": {result}" if result else f" ({info.get('reason')})"),
             f"  run dir  {run_dir}"]
    offline = sorted(Path(run_dir).glob("wandb/offline-run-*"))
    if offline:
        lines.append(f"  W&B      offline run in {offline[-1]} (upload: wandb sync {offline[-1]})")
    lines.append(f"  next     python -m analysis.report {run_dir} --out {Path(run_dir) / 'report'}")
    return "\n".join(lines)


def _multirun_flag_first(argv: list[str]) -> list[str]:
    """Hydra's argparse takes overrides only as one contiguous run, so `seed=0,1 -m total_steps=9`
    would fail with a usage dump; moving -m/--multirun to the front accepts it anywhere."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return [argv[0], *flags, *[a for a in argv[1:] if a not in ("-m", "--multirun")]]


if __name__ == "__main__":
    sys.argv = _multirun_flag_first(sys.argv)
    main()
