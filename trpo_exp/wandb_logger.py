"""Weights & Biases mirror of the run record.

The local record (metrics.csv, run.json) is the source of truth. This mirror never stops
training: if W&B cannot start (online without network, a bad key) or fails later (its service
dies), it logs one warning saying what happened and switches itself off.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from trpo_exp.config import LoggerConfig
from trpo_exp.record import STEP, WANDB_KEYS, Status
from trpo_exp.redact import redact_secrets
from trpo_exp.util import first_line

log = logging.getLogger("trpo_exp")

STEP_KEY = STEP  # the W&B step of every history row


def wandb_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics.csv row as W&B history: namespaced keys, missing and NaN values left out."""
    out = {}
    for column, value in row.items():
        if column == STEP_KEY or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[WANDB_KEYS[column]] = value
    return out


@contextlib.contextmanager
def _argv_redacted() -> Iterator[None]:
    """W&B records this process's command line (``sys.argv``) in the run's metadata, inside the
    .wandb file and wandb-metadata.json; a sweep worker's command line may hold its storage
    password. W&B reads it while the run starts: show it the redacted one."""
    argv = sys.argv
    sys.argv = [redact_secrets(a) for a in argv]
    try:
        yield
    finally:
        sys.argv = argv


def start_wandb_run(**init: Any) -> Any:
    """``wandb.init(**init)``, with the settings every run of this project uses and no secret in
    its metadata: the one way the project starts a W&B run."""
    import wandb

    with _argv_redacted():
        return wandb.init(**init)


def wandb_settings(**extra: Any) -> Any:
    import wandb

    return wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True, save_code=False,
                          **extra)


def persisted_step(run_dir: Path, run_id: str) -> int:
    """The last history step of ``run_id`` that its offline files in ``run_dir`` really hold (-1 if
    none): rows logged after it were lost with the process and must be logged again."""
    import warnings

    from trpo_exp.record.wandb_file import read_offline_run

    last = -1
    for path in sorted(Path(run_dir, "wandb").glob(f"offline-run-*-{run_id}")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a file cut by the kill: its intact rows are what counts
                run = read_offline_run(path)
        except (OSError, ValueError):
            continue
        steps = [int(h["_step"]) for h in run.history if isinstance(h.get("_step"), (int, float))]
        last = max([last, *steps])
    return last


class WandbMirror:
    def __init__(self, cfg: LoggerConfig, run_dir: Path, name: str, group: str, tags: list[str],
                 config: dict[str, Any], resume_id: Optional[str] = None, logged_up_to: Optional[int] = None):
        """``resume_id``: continue that W&B run (a resumed training run); rows with a step (env_steps)
        <= ``logged_up_to`` were logged before the interruption and are not logged again (the resumed
        run recomputes them bit for bit)."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run = None
        self.run_id: Optional[str] = None
        self.logged_up_to = logged_up_to if logged_up_to is not None else -1
        if resume_id is not None and cfg.mode == "offline":
            self.logged_up_to = persisted_step(self.run_dir, resume_id)
        if cfg.mode == "disabled":
            return
        try:
            self.run = start_wandb_run(project=cfg.project, entity=cfg.entity, name=name, group=group,
                                       job_type=cfg.job_type, tags=[*tags, *cfg.tags], config=config,
                                       dir=str(self.run_dir), mode=cfg.mode,
                                       settings=wandb_settings(init_timeout=cfg.init_timeout), id=resume_id,
                                       resume="allow" if resume_id else None)
            self.run_id = self.run.id
        except BaseException as err:  # wandb raises its own errors, and may raise on Ctrl-C
            # A stop that arrives during start-up (Ctrl-C, SIGTERM, a cluster's requeue handler
            # exiting) stops the run: swallowed here, the run would go on with its job requeued.
            if not isinstance(err, Exception):
                # The same signal may have killed W&B's service (SLURM signals every process of the
                # job): shut its connection down now, or W&B's exit hook prints a traceback.
                _teardown_wandb()
                raise
            self._give_up("could not start", err)

    def _give_up(self, what: str, err: BaseException) -> None:
        message = first_line(err)
        log.warning("W&B %s (%s: %s); training goes on and the local record in %s is complete",
                    what, type(err).__name__, message, self.run_dir)
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1, quiet=True)  # quiet: accepted, not in its signature
            except (Exception, SystemExit):
                pass
        _teardown_wandb()

    def backfill(self, rows: list[dict[str, Any]]) -> None:
        """Log the kept rows of an interrupted segment that its W&B run never received (W&B's
        service may lose the last rows when the process is killed)."""
        for row in rows:
            self.log(row)

    def log(self, row: dict[str, Any]) -> None:
        if self.run is None or int(row[STEP_KEY]) <= self.logged_up_to:
            return
        try:
            self.run.log(wandb_row(row), step=int(row[STEP_KEY]))
        except Exception as err:
            self._give_up("stopped logging", err)

    def finish(self, info: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            for key in ("eval_return_mean", "eval_return_std", "eval_episodes"):
                if info.get(key) is not None:
                    self.run.summary[f"eval/{key[len('eval_'):]}"] = info[key]
            self.run.summary["status"] = info.get("status")
            self.run.finish(exit_code=0 if info.get("status") == Status.FINISHED else 1)
        except Exception as err:
            self._give_up("could not finish", err)
        except BaseException:  # a second stop signal while finishing: the local record is closed already
            self.run = None
            _teardown_wandb()
            raise
        self.run = None
        if info.get("status") in (Status.PREEMPTED, Status.FAILED):
            # The process is on its way out because of a signal or an error, and the signal may have
            # reached W&B's service too (it dies with the job's processes): shut the connection down
            # here, where a failure is quiet, and not in W&B's exit hook, which prints a traceback.
            _teardown_wandb()


def _teardown_wandb() -> None:
    """``wandb.teardown()``, quietly: one call (even one that fails on a broken connection) clears
    W&B's exit hook, so nothing is printed when Python exits."""
    try:
        import wandb

        wandb.teardown()
    except (Exception, SystemExit):
        pass
