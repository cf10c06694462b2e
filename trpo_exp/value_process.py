"""The value fit in a second process (Config.value_fit_process), bit-identical to the fit in the
main process.

The fit of iteration k (V on batch B_k, after the policy step) does not touch what sampling B_{k+1}
needs (the policy, the envs, the observation statistics), and V is next read when B_{k+1}'s targets
are computed. So the engine submits the fit here and samples the next batch meanwhile (issue 14,
item 5). Everything that draws random numbers stays in the main process, at its place in the
stream: the shuffles are drawn there (trpo_exp.algos.value.draw_orders) and sent with the job, and
``fit_value`` itself draws none. The worker receives the value net's and Adam's state dicts, runs
the same ``fit_value`` and sends back the new state dicts and the loss, which the main process
loads: its value net and optimizer stay the one source of truth (checkpoints are unchanged).

The worker process itself (signals, pipe, how its death is noticed) is
trpo_exp.worker_process's; its death, or an error in its fit, stops the run: ``ValueFitError``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from trpo_exp.algos.value import fit_value, make_value_optimizer
from trpo_exp.nets import ValueNet
from trpo_exp.util import first_line
from trpo_exp.worker_process import Handler, WorkerDied, WorkerError, WorkerProcess


class ValueFitError(WorkerError):
    """The value-fit process died or its fit raised; ``str(err)`` is one line."""


@dataclass(frozen=True)
class ValueFitJob:
    """One value fit, every input drawn: the fit is a deterministic function of this and the value
    net's and optimizer's states."""

    obs: torch.Tensor  # [n, obs_dim]
    targets: torch.Tensor  # [n], on the returns' scale (the net standardises them itself)
    orders: torch.Tensor  # [epochs, n], each epoch's shuffle
    batch_size: int

    def run(self, value_net: ValueNet, optimizer: torch.optim.Optimizer) -> float:
        return fit_value(value_net, optimizer, self.obs, self.targets, self.orders, self.batch_size)


def _dumps(obj: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _loads(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), weights_only=True)


ValueNetArgs = tuple[int, Sequence[int], str, bool]
"""ValueNet's constructor arguments. The worker builds its own net from them: a module sent to a
process is moved into shared memory by torch, and the worker would then train the main process's
parameters in place."""


class ValueFitProcess:
    """A worker process that runs one value fit at a time: ``submit`` it, ``join`` it (which loads
    the result into the main process's net and optimizer)."""

    def __init__(self, net_args: ValueNetArgs, lr: float, eps: float, threads: int):
        self._worker = WorkerProcess(_value_fit_handler, (tuple(net_args), lr, eps), threads,
                                     "trpo_exp value fit")
        self._in_flight: Optional[int] = None  # the iteration whose fit is running

    @property
    def pid(self) -> Optional[int]:
        return self._worker.pid

    @property
    def exitcode(self) -> Optional[int]:
        """None while it runs; 0 once it has ended as told; -N when killed by signal N."""
        return self._worker.exitcode

    def ready(self, iteration: int) -> bool:
        """Whether the worker has started (importing torch takes it a while) and takes a job now.
        Until then the engine fits in the main process: the numbers are the same either way."""
        try:
            return self._in_flight is None and self._worker.ready()
        except WorkerDied as died:
            raise self._error(iteration, died) from None

    def submit(self, iteration: int, value_net: ValueNet, optimizer: torch.optim.Optimizer,
               job: ValueFitJob) -> None:
        assert self._in_flight is None, "one fit at a time"
        payload = _dumps({"value_net": value_net.state_dict(), "optimizer": optimizer.state_dict(),
                          "obs": job.obs, "targets": job.targets, "orders": job.orders,
                          "batch_size": job.batch_size})
        try:
            self._worker.send(payload)
        except WorkerDied as died:
            raise self._error(iteration, died) from None
        self._in_flight = iteration

    def join(self, value_net: ValueNet, optimizer: torch.optim.Optimizer) -> float:
        """Wait for the submitted fit, load its result into ``value_net`` and ``optimizer``, and
        return its loss."""
        iteration = self._in_flight
        assert iteration is not None, "no fit was submitted"
        self._in_flight = None
        try:
            reply = _loads(self._worker.receive())
        except WorkerDied as died:
            raise self._error(iteration, died) from None
        if "error" in reply:
            raise ValueFitError(f"iteration {iteration}: the value fit failed in its process: {reply['error']}")
        value_net.load_state_dict(reply["value_net"])
        optimizer.load_state_dict(reply["optimizer"])
        return float(reply["loss"])

    def _error(self, iteration: int, died: WorkerDied) -> ValueFitError:
        return ValueFitError(f"iteration {iteration}: the value-fit process (value_fit_process=true, "
                             f"pid {self.pid}) {died}")

    def close(self) -> None:
        """End the worker (killed when a fit is running: its result is not needed any more).
        Idempotent."""
        self._worker.close()


def _value_fit_handler(net_args: ValueNetArgs, lr: float, eps: float) -> Handler:
    """In the worker: one value net and optimizer, whose states every job replaces."""
    value_net = ValueNet(*net_args)  # its initial weights are replaced by every job's
    optimizer = make_value_optimizer(value_net, lr, eps)
    return lambda request: _dumps(_fit(value_net, optimizer, _loads(request)))


def _fit(value_net: ValueNet, optimizer: torch.optim.Optimizer, job: dict[str, Any]) -> dict[str, Any]:
    try:
        value_net.load_state_dict(job["value_net"])
        optimizer.load_state_dict(job["optimizer"])
        loss = ValueFitJob(job["obs"], job["targets"], job["orders"], job["batch_size"]).run(value_net, optimizer)
    except Exception as err:  # reported by the main process, which stops the run
        return {"error": f"{type(err).__name__}: {first_line(err)}"}
    return {"value_net": value_net.state_dict(), "optimizer": optimizer.state_dict(), "loss": loss}
