"""One run, from a composed config to a closed record: the part of the command line that other
packages (sweeps' launcher, tests) import. Importing it has no side effects; the entry point
(trpo_exp/__main__.py) only handles argv and Hydra.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from trpo_exp import algorithms, rundir
from trpo_exp.config import Config, ConfigError
from trpo_exp.record.files import CHECKPOINT
from trpo_exp.signals import RunSignals, Terminated
from trpo_exp.util import first_line

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def to_config(cfg: DictConfig) -> Config:
    """DictConfig -> validated dataclasses, plus the checks that need the outside world."""
    from trpo_exp.engine import resolve_device
    from trpo_exp.envs.factory import check_env_id, check_spaces

    refuse_unknown_keys(cfg)

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
    if algorithm.check_env is not None:  # first: its advice (e.g. "use algo=trpo") is the most specific
        algorithm.check_env(config.env)
    check_spaces(config.env)
    if resolve_device(config.device.type).type != "cpu" and config.value_fit_process:
        raise ConfigError("value_fit_process=True is not allowed: must be false when device.type='auto' "
                          "finds a GPU (the second process fits on the CPU)")
    if resolve_device(config.device.type).type != "cpu" and config.branch_processes > 1:
        raise ConfigError(f"branch_processes={config.branch_processes} is not allowed: must be 1 when "
                          f"device.type='auto' finds a GPU (the branch processes step on the CPU)")
    return config


def refuse_unknown_keys(cfg: DictConfig, prefix: str = "") -> None:
    """A key added with ``+`` that no schema has (``+algo.max_kll=0.5``) would be ignored: refuse it.
    Hydra's struct mode refuses unknown keys without ``+``; with ``+`` it lets them in."""
    schema = OmegaConf.get_type(cfg)
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else None
    for key in cfg.keys():
        name = f"{prefix}{key!s}"
        if known is not None and key not in known:
            value = OmegaConf.select(cfg, str(key), throw_on_missing=False)
            raise ConfigError(f"{name}={value!r} is not allowed: unknown key (the keys here are "
                              f"{', '.join(sorted(known))})")
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and is_dataclass(OmegaConf.get_type(child)):
            refuse_unknown_keys(child, name + ".")


@dataclass(frozen=True)
class RunContext:
    """What a run needs to know about how it was launched (from Hydra, or from a test)."""

    run_dir: Path
    group: Optional[str] = None  # the multirun / experiment this run belongs to, if any
    resolved_config: Optional[dict[str, Any]] = None  # the full resolved config, for W&B
    command: Optional[list[str]] = None  # the user's command line, when argv is a launcher's


def run_name(config: Config) -> str:
    env = config.env.id.split("/")[-1].lower().rsplit("-v", 1)[0]
    return f"{config.algo.name}-{env}-s{config.seed}"


def run(config: Config, context: RunContext) -> dict[str, Any]:
    """Train one run into ``context.run_dir`` (fresh, or resumed from its checkpoint: see
    trpo_exp.rundir) and return its run.json content. The record is created first, so a signal at
    any later moment leaves it closed; the run dir is held exclusively until the end."""
    run_dir = context.run_dir
    try:
        claim = rundir.claim(run_dir)
    except ConfigError:
        _restore_hydra_files(run_dir)  # Hydra wrote this refused command's config over the live run's
        raise
    signals = RunSignals().install()
    try:
        return _run(config, context, signals)
    finally:
        signals.uninstall()
        claim.release()


def _run(config: Config, context: RunContext, signals: RunSignals) -> dict[str, Any]:
    from trpo_exp import provenance
    from trpo_exp.engine import CheckpointSchedule, StopRun, Trainer
    from trpo_exp.hooks import make_hooks
    from trpo_exp.progress import Progress
    from trpo_exp.record import RunRecord
    from trpo_exp.wandb_logger import WandbMirror

    run_dir = context.run_dir
    try:
        plan = rundir.plan(run_dir, asdict(config), config.fresh)
    except BaseException:  # refused (another config, a damaged checkpoint) or stopped before it began
        _restore_hydra_files(run_dir)  # a refused command must not leave its config in the old record
        raise
    _accept_hydra_files(run_dir)
    name = run_name(config)
    # One W&B group per setting (all but the seed): W&B's grouped view averages a group's runs.
    setting = f"{name.rsplit('-s', 1)[0]}-{rundir.setting_digest(asdict(config))}"
    group = config.logger.group or (f"{context.group}-{setting}" if context.group else setting)
    resume_from = plan.resume["iteration"] if plan.resume is not None else None
    previous = plan.previous or {}
    record = RunRecord(run_dir, {
        "name": name, "algo": config.algo.name, "env_id": config.env.id, "seed": config.seed,
        "total_steps": config.budget, "env_steps": 0, "run_dir": str(run_dir), "group": group,
        "wandb_mode": config.logger.mode, "wandb_run_id": previous.get("wandb_run_id"),
        "provenance": provenance.collect(context.command),
        **({"previous_record": str(plan.moved_to)} if plan.moved_to else {}),
    }, resume_from=resume_from, previous=previous)
    trainer = None
    progress = Progress(config.budget, name, config.log_every)
    try:
        trainer = Trainer(config, run_dir)
        if plan.resume is not None:
            _resume_trainer(trainer, plan.resume, run_dir)
        mirror = WandbMirror(config.logger, run_dir, name, group,
                             tags=[config.algo.name, config.env.id, f"seed={config.seed}"],
                             config=context.resolved_config or asdict(config),
                             resume_id=previous.get("wandb_run_id"), logged_up_to=_logged_up_to(previous))
        mirror.backfill(record.kept_rows)
        record.add_mirror(mirror)
        record.update(wandb_run_id=mirror.run_id)
        hooks = make_hooks(config)
        signals.training = True
        result = trainer.train(record, progress, hooks=hooks,
                               checkpoints=CheckpointSchedule(config.checkpoint_interval_s, signals))
    except StopRun as stop:
        record.stop(stop.status, stop.reason)
        return record.info
    except BaseException as err:
        preempted = _preempted(err, signals)
        if preempted is not None:
            record.preempt(*preempted)
        else:
            record.fail(*_failure(err))
        raise
    finally:
        signals.training = False
        progress.close()
        if trainer is not None:
            trainer.close()
    record.finish(eval_return_mean=result.mean, eval_return_std=result.std, eval_episodes=len(result.returns))
    return record.info


def _resume_trainer(trainer: Any, state: dict[str, Any], run_dir: Path) -> None:
    from trpo_exp.checkpoint import CheckpointError

    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:  # shapes, missing parts, other types
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"checkpoint {run_dir / CHECKPOINT} does not fit this run ({type(err).__name__}: "
                              f"{detail}); start over with fresh=true or choose another hydra.run.dir") from None


def _preempted(err: BaseException, signals: RunSignals) -> Optional[tuple[str, int]]:
    """run.json's reason and exit code when ``err`` stops the run right after a checkpoint (it
    resumes from there: status preempted); None for any other end."""
    if isinstance(err, Terminated) and err.checkpointed:
        return str(err), err.exit_code
    if isinstance(err, SystemExit) and signals.requeued_after is not None:  # submitit requeued the job
        return (f"requeued by the job manager (SIGUSR1) after iteration {signals.requeued_after} (checkpoint "
                f"saved: the requeued job resumes from it)", 1)
    return None


def _failure(err: BaseException) -> tuple[str, int]:
    """run.json's reason and exit code for an exception that ends a run."""
    from trpo_exp.guard import NonFiniteError
    from trpo_exp.worker_process import WorkerError

    if isinstance(err, KeyboardInterrupt):
        return "interrupted (Ctrl-C)", 130
    if isinstance(err, Terminated):
        return str(err), err.exit_code
    if isinstance(err, SystemExit):  # e.g. submitit requeueing the job before training began
        return f"exited with status {err.code} (a requeued job resumes from the last checkpoint, if any)", 1
    if isinstance(err, (NonFiniteError, WorkerError)):
        return f"{err} (the last good checkpoint is kept)", 1
    return f"{type(err).__name__}: {first_line(err)}", 1


def _logged_up_to(previous: dict[str, Any]) -> Optional[int]:
    """The last W&B step the interrupted segment may have logged: its last metrics row."""
    steps = previous.get("env_steps")
    return int(steps) if isinstance(steps, int) else None


# Hydra writes a command's .hydra/ into the run dir before any check can run. The copy of the
# last accepted command's files lets a refused command be undone, so .hydra/ always describes the
# record beside it (analysis labels runs from it).
ACCEPTED_HYDRA = ".hydra.accepted"


def _accept_hydra_files(run_dir: Path) -> None:
    hydra_dir, accepted = run_dir / ".hydra", run_dir / ACCEPTED_HYDRA
    if hydra_dir.is_dir():
        tmp = run_dir / f"{ACCEPTED_HYDRA}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(hydra_dir, tmp)
        shutil.rmtree(accepted, ignore_errors=True)
        tmp.rename(accepted)
    shutil.rmtree(run_dir / ".hydra.first", ignore_errors=True)  # the older name of the same copy


def _restore_hydra_files(run_dir: Path) -> None:
    for kept in (run_dir / ACCEPTED_HYDRA, run_dir / ".hydra.first"):
        if kept.is_dir():
            shutil.copytree(kept, run_dir / ".hydra", dirs_exist_ok=True)
            return


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
    command = None
    if not sys.argv or sys.argv[0].endswith("_submit.py"):  # a submitit job: argv is submitit's
        command = ["python", "-m", "trpo_exp", *hc.overrides.task]
    return RunContext(run_dir=Path(hc.runtime.output_dir), group=group,
                      resolved_config={str(k): v for k, v in resolved.items()}, command=command)


