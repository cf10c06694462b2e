"""Signals a run obeys. Clusters send SIGTERM before they stop a job (preemption, time limit,
scancel) and can be asked to send SIGUSR1 ahead of the time limit (sbatch --signal).

- Before training starts (start-up, W&B init): SIGTERM ends the run at once (``Terminated``).
- During training: SIGUSR1 saves a checkpoint after the current iteration and goes on; SIGTERM saves
  one after the current iteration and then ends the run (``Terminated``), so a requeued job or the
  same command run again resumes from there. A second SIGTERM ends the run at once (the previous
  checkpoint is kept: checkpoints are written atomically).
- Ctrl-C (SIGINT) does what SIGTERM does, with exit status 130: a run stopped by hand resumes from
  the iteration it was in, not from the last periodic checkpoint.
- Under a job manager that handles SIGUSR1 itself (submitit: Hydra's submitit launcher requeues the
  job on the signal SLURM sends before the time limit or on preemption), its handler is called once
  the checkpoint is saved: the run checkpoints first, then the job is requeued, and the requeued job
  resumes from that checkpoint.

A run stopped right after its checkpoint (SIGTERM, Ctrl-C, or the job manager's SIGUSR1 handler
exiting after it) is closed as "preempted": it resumes. One stopped before it could save one is closed
as "failed"; its previous checkpoint, if any, is kept, so it resumes from that one.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, Optional


class Terminated(BaseException):
    """The run was ended by a signal; its record is closed with the reason: preempted when
    ``checkpointed`` (the stop came right after a checkpoint), else failed."""

    def __init__(self, reason: str, exit_code: int = 143, checkpointed: bool = False):
        super().__init__(reason)
        self.exit_code = exit_code
        self.checkpointed = checkpointed


# The signals that stop a run: how its record names the stop, and the exit status (128 + signal).
_STOPS = {signal.SIGTERM: ("terminated by SIGTERM", 143), signal.SIGINT: ("interrupted by Ctrl-C (SIGINT)", 130)}


class RunSignals:
    def __init__(self) -> None:
        self.training = False
        self.checkpoint_requested = False
        self.stop_requested = False
        self.usr1_pending = False
        self.stop_signal = signal.SIGTERM
        # The iteration of the checkpoint after which SIGUSR1 was handed on to the previous handler:
        # what that handler raises (submitit's sys.exit after requeueing) is a preemption, not a failure.
        self.requeued_after: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def install(self) -> RunSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals there only
            for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if signum == signal.SIGUSR1:
            if not self.training:  # nothing to save yet: let the previous handler act at once
                previous = self._previous.get(signal.SIGUSR1)
                if callable(previous):
                    previous(signum, frame)
                return
            self.checkpoint_requested = self.usr1_pending = True
            return
        name, code = _STOPS[signal.Signals(signum)]
        if not self.training or self.stop_requested:
            raise Terminated(f"{name}", exit_code=code)
        if signum == signal.SIGINT:
            print("trpo_exp: Ctrl-C: the run stops after this iteration, with a checkpoint "
                  "(Ctrl-C again: at once)", file=sys.stderr, flush=True)
        self.stop_signal = signal.Signals(signum)
        self.checkpoint_requested = self.stop_requested = True

    def checkpoint_saved(self, iteration: int) -> None:
        """Called after a checkpoint is written; ends the run if SIGTERM asked for it, and hands a
        SIGUSR1 on to the handler that was there before (submitit's requeue), if any."""
        self.checkpoint_requested = False
        if self.usr1_pending:
            self.usr1_pending = False
            previous = self._previous.get(signal.SIGUSR1)
            if callable(previous):
                self.requeued_after = iteration
                previous(signal.SIGUSR1, None)
                self.requeued_after = None  # it returned: the run goes on
        if self.stop_requested:
            name, code = _STOPS[self.stop_signal]
            raise Terminated(f"{name} after iteration {iteration} (checkpoint saved: "
                             f"run the same command again to resume)", exit_code=code, checkpointed=True)
