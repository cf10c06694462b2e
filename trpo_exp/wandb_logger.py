"""Weights & Biases mirror of the run record.

The local record (metrics.csv, run.json) is the source of truth. This mirror never stops
training: if W&B cannot start (online without network, a bad key) or fails later (its service
dies), it logs one warning saying what happened and switches itself off.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional

from trpo_exp.config import LoggerConfig
from trpo_exp.record import STEP, WANDB_KEYS, Status
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


class WandbMirror:
    def __init__(self, cfg: LoggerConfig, run_dir: Path, name: str, group: str, tags: list[str],
                 config: dict[str, Any]):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run = None
        self.run_id: Optional[str] = None
        if cfg.mode == "disabled":
            return
        try:
            import wandb

            settings = wandb.Settings(console="off", silent=True, init_timeout=cfg.init_timeout,
                                      x_disable_stats=True, disable_git=True, save_code=False)
            self.run = wandb.init(project=cfg.project, entity=cfg.entity, name=name, group=group,
                                  job_type=cfg.job_type, tags=[*tags, *cfg.tags], config=config,
                                  dir=str(self.run_dir), mode=cfg.mode,  # type: ignore[arg-type]
                                  settings=settings)
            self.run_id = self.run.id
        except BaseException as err:  # wandb raises its own errors, and may raise on Ctrl-C
            if isinstance(err, KeyboardInterrupt):
                raise
            self._give_up("could not start", err)

    def _give_up(self, what: str, err: BaseException) -> None:
        message = first_line(err)
        log.warning("W&B %s (%s: %s); training goes on and the local record in %s is complete",
                    what, type(err).__name__, message, self.run_dir)
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1, quiet=True)  # type: ignore[call-arg]  # quiet: accepted, not in its signature
            except (Exception, SystemExit):
                pass
        # Shut wandb's service connection down now: otherwise its exit hook meets the broken
        # connection again when Python exits and prints a traceback after the run ended fine.
        try:
            import wandb

            wandb.teardown()
        except (Exception, SystemExit):
            pass

    def log(self, row: dict[str, Any]) -> None:
        if self.run is None:
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
        self.run = None
