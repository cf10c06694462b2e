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

The worker never acts on SIGINT, SIGTERM or SIGUSR1 (they are blocked from its start, and
ignored): a cluster's SIGTERM to every process of a job must leave it alive to finish the pending
fit, so that the main process can save its checkpoint (trpo_exp.signals). It ends when told to,
when the main process's end of the pipe closes (the main process died), or when killed by
``close``. Its death is noticed through its sentinel, never by a timeout: ``ValueFitError``.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import signal
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import Any, Optional, Sequence

import torch

from trpo_exp.algos.value import fit_value, make_value_optimizer
from trpo_exp.nets import ValueNet
from trpo_exp.util import first_line

# What a job manager sends to every process of a job; only the main process decides what they mean.
_MAIN_ONLY_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}
_READY, _STOP = b"ready", b""


class ValueFitError(RuntimeError):
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

    def __init__(self, net_args: ValueNetArgs, lr: float, threads: int):
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_conn, tuple(net_args), lr, threads),
                                        name="trpo_exp value fit", daemon=True)
        # Blocked in this thread while the child starts, so the child starts with them blocked. The
        # resource tracker unblocks SIGINT and SIGTERM when it starts itself: start it first.
        resource_tracker.ensure_running()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_ONLY_SIGNALS)
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child_conn.close()  # the worker's end lives in the worker only: its death reads as EOF here
        # At exit, before multiprocessing joins its children (the worker ignores SIGTERM), or when
        # this object is collected without close().
        self._at_exit = multiprocessing.util.Finalize(self, _kill, args=(self._conn, self._process),
                                                      exitpriority=10)
        self._ready = False
        self._in_flight: Optional[int] = None  # the iteration whose fit is running
        self._closed = False

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid

    @property
    def exitcode(self) -> Optional[int]:
        """None while it runs; 0 once it has ended as told; -N when killed by signal N."""
        return self._process.exitcode

    def ready(self, iteration: int) -> bool:
        """Whether the worker has started (importing torch takes it a while) and takes a job now.
        Until then the engine fits in the main process: the numbers are the same either way."""
        if self._closed or self._in_flight is not None:
            return False
        if not self._ready and self._conn.poll():
            self._ready = self._receive(iteration) == _READY
        return self._ready

    def submit(self, iteration: int, value_net: ValueNet, optimizer: torch.optim.Optimizer,
               job: ValueFitJob) -> None:
        assert self._ready and self._in_flight is None, "one fit at a time, once the worker is ready"
        payload = _dumps({"value_net": value_net.state_dict(), "optimizer": optimizer.state_dict(),
                          "obs": job.obs, "targets": job.targets, "orders": job.orders,
                          "batch_size": job.batch_size})
        try:
            self._conn.send_bytes(payload)
        except OSError:  # the worker's end is closed: it died
            raise self._died(iteration) from None
        self._in_flight = iteration

    def join(self, value_net: ValueNet, optimizer: torch.optim.Optimizer) -> float:
        """Wait for the submitted fit, load its result into ``value_net`` and ``optimizer``, and
        return its loss."""
        iteration = self._in_flight
        assert iteration is not None, "no fit was submitted"
        reply = _loads(self._receive(iteration))
        self._in_flight = None
        if "error" in reply:
            raise ValueFitError(f"iteration {iteration}: the value fit failed in its process: {reply['error']}")
        value_net.load_state_dict(reply["value_net"])
        optimizer.load_state_dict(reply["optimizer"])
        return float(reply["loss"])

    def _receive(self, iteration: int) -> bytes:
        """The worker's next message; waits on the pipe and on the process's sentinel together, so a
        dead worker ends the wait at once."""
        ready = multiprocessing.connection.wait([self._conn, self._process.sentinel])
        if self._conn in ready:  # a message, or EOF when the worker is gone
            try:
                return self._conn.recv_bytes()
            except (EOFError, OSError):
                pass
        raise self._died(iteration)

    def _died(self, iteration: int) -> ValueFitError:
        self._process.join(timeout=5)  # it is dead or dying: only to read its exit code
        code = self._process.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        self._in_flight = None
        self.close()
        return ValueFitError(f"iteration {iteration}: the value-fit process (value_fit_process=true, "
                             f"pid {self._process.pid}) {how}")

    def close(self) -> None:
        """End the worker: told to when it is idle, killed when a fit is running (its result is not
        needed any more) or when it does not end at once. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._at_exit.cancel()
        process = self._process
        if process.is_alive() and self._in_flight is None:
            try:
                self._conn.send_bytes(_STOP)
            except OSError:
                pass
            process.join(timeout=5)
        _kill(self._conn, process)


def _kill(conn: multiprocessing.connection.Connection, process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.kill()
        process.join()
    conn.close()


def _serve(conn: multiprocessing.connection.Connection, net_args: ValueNetArgs, lr: float, threads: int) -> None:
    """The worker: a loop of fits until told to stop or the main process is gone."""
    for signum in _MAIN_ONLY_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(threads)  # as the main process: the same kernels, the same numbers
    value_net = ValueNet(*net_args)  # its initial weights are replaced by every job's
    optimizer = make_value_optimizer(value_net, lr)
    try:
        conn.send_bytes(_READY)
        while True:
            data = conn.recv_bytes()
            if data == _STOP:
                return
            conn.send_bytes(_dumps(_fit(value_net, optimizer, _loads(data))))
    except (EOFError, OSError):  # the main process is gone
        return


def _fit(value_net: ValueNet, optimizer: torch.optim.Optimizer, job: dict[str, Any]) -> dict[str, Any]:
    try:
        value_net.load_state_dict(job["value_net"])
        optimizer.load_state_dict(job["optimizer"])
        loss = ValueFitJob(job["obs"], job["targets"], job["orders"], job["batch_size"]).run(value_net, optimizer)
    except Exception as err:  # reported by the main process, which stops the run
        return {"error": f"{type(err).__name__}: {first_line(err)}"}
    return {"value_net": value_net.state_dict(), "optimizer": optimizer.state_dict(), "loss": loss}
