"""A helper process that serves a run's main process one request at a time: how it is started,
talked to and ended. Used for the value fit (trpo_exp.value_process) and for vine branch rollouts
(trpo_exp.rollout.branch_process); each of those owns what its requests mean.

The worker never acts on SIGINT, SIGTERM or SIGUSR1 (they are blocked from its start, and
ignored): a cluster's SIGTERM to every process of a job must leave it alive to finish the pending
request, so that the main process can save its checkpoint (trpo_exp.signals). It ends when told
to, when the main process's end of the pipe closes (the main process died), or when killed by
``close``. Its death is noticed through its sentinel, never by a timeout: ``WorkerDied``.

Requests and replies are bytes; the worker runs with the main process's torch thread count, so
the same maths gives the same numbers bit for bit in either process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import signal
from multiprocessing import resource_tracker
from typing import Any, Callable, Optional

import torch

# What a job manager sends to every process of a job; only the main process decides what they mean.
_MAIN_ONLY_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}
_READY, _STOP = b"ready", b""

Handler = Callable[[bytes], bytes]
"""What the worker does with one request: its reply. Built in the worker by a module-level
factory (spawned processes receive the factory and its arguments by pickling)."""


class WorkerError(RuntimeError):
    """A worker's death or failure as the run reports it (its owner's subclass); one line. It
    stops the run; the last good checkpoint is kept."""


class WorkerDied(RuntimeError):
    """The worker is gone; ``str(err)`` says how ('was killed by SIGKILL', ...)."""


class WorkerProcess:
    """One spawned worker: ``ready`` (started and idle), ``send`` a request, ``receive`` its reply."""

    def __init__(self, make_handler: Callable[..., Handler], args: tuple[Any, ...], threads: int, name: str):
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_conn, make_handler, args, threads),
                                        name=name, daemon=True)
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
        self._started = False
        self.busy = False  # a request is out
        self._closed = False

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid

    @property
    def exitcode(self) -> Optional[int]:
        """None while it runs; 0 once it has ended as told; -N when killed by signal N."""
        return self._process.exitcode

    def ready(self) -> bool:
        """Whether the worker has started (importing torch takes it a while) and is idle. Never
        waits; raises WorkerDied when it is gone."""
        if self._closed or self.busy:
            return False
        if not self._started and self._conn.poll():
            self._started = self._receive() == _READY
        return self._started

    def send(self, request: bytes) -> None:
        assert self._started and not self.busy and not self._closed, "one request at a time, once ready"
        try:
            self._conn.send_bytes(request)
        except OSError:  # the worker's end is closed: it died
            raise self._died() from None
        self.busy = True

    def receive(self) -> bytes:
        """Wait for the reply to the request sent."""
        assert self.busy, "no request was sent"
        reply = self._receive()
        self.busy = False
        return reply

    def _receive(self) -> bytes:
        """The worker's next message; waits on the pipe and on the process's sentinel together, so
        a dead worker ends the wait at once."""
        ready = multiprocessing.connection.wait([self._conn, self._process.sentinel])
        if self._conn in ready:  # a message, or EOF when the worker is gone
            try:
                return self._conn.recv_bytes()
            except (EOFError, OSError):
                pass
        raise self._died()

    def _died(self) -> WorkerDied:
        self._process.join(timeout=5)  # it is dead or dying: only to read its exit code
        code = self._process.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        self.busy = False
        self.close()
        return WorkerDied(how)

    def close(self) -> None:
        """End the worker: told to when it is idle, killed when a request is out (its reply is not
        needed any more) or when it does not end at once. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._at_exit.cancel()
        process = self._process
        if process.is_alive() and not self.busy:
            try:
                self._conn.send_bytes(_STOP)
            except OSError:
                pass
            process.join(timeout=30)  # a safety net only: a loaded machine can take seconds
        _kill(self._conn, process)


def _kill(conn: multiprocessing.connection.Connection, process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.kill()
        process.join()
    conn.close()


def _serve(conn: multiprocessing.connection.Connection, make_handler: Callable[..., Handler],
           args: tuple[Any, ...], threads: int) -> None:
    """The worker: a loop of requests until told to stop or the main process is gone."""
    for signum in _MAIN_ONLY_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(threads)  # as the main process: the same kernels, the same numbers
    handler = make_handler(*args)
    try:
        conn.send_bytes(_READY)
        while True:
            request = conn.recv_bytes()
            if request == _STOP:
                return
            conn.send_bytes(handler(request))
    except (EOFError, OSError):  # the main process is gone
        return
