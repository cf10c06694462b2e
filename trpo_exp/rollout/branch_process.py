"""Vine branch rollouts in worker processes (Config.branch_processes), bit-identical to stepping
every branch in the main process.

The branches of an iteration are stepped in chunks of ``vine.branch_batch`` (trpo_exp.rollout.vine):
a chunk's rollouts are a deterministic function of its ChunkJob (snapshots, first actions, policy
noise, all drawn in the main process at their place in the random stream), the policy, the value
net and the frozen observation statistics. So whole chunks can be stepped anywhere: the main
process keeps the first share, each worker that is ready takes one of the others, and the results
are put back in chunk order. The chunking alone decides the numbers; the process count and whether
a worker had started yet do not. Workers hold no state between iterations (each restores its envs
from the snapshots it is sent), so checkpoints and resume are unchanged and a resume may change
the count.

It pays where a core would otherwise idle (one run on a machine with cores to spare), and only for
the branch part of sampling (~70% of a vine Hopper iteration's sampling time with the preset).
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from trpo_exp.config import EnvConfig, VineConfig
from trpo_exp.envs.snapshot import portable
from trpo_exp.nets import Policy, ValueNet
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.rollout.vine import ChunkJob, ChunkResult, RolloutState, VineBrancher
from trpo_exp.util import first_line
from trpo_exp.worker_process import Handler, WorkerDied, WorkerError, WorkerProcess


class BranchWorkerError(WorkerError):
    """A branch process died or its rollouts raised; ``str(err)`` is one line."""


class BranchWorkers:
    """``count`` worker processes that step chunks of vine branches for the main process."""

    def __init__(self, count: int, env_cfg: EnvConfig, vine: VineConfig, gamma: float, threads: int):
        self.processes = count + 1  # with the main process, for the messages
        self._workers = [WorkerProcess(_branch_handler, (env_cfg, vine, gamma), threads,
                                       f"trpo_exp branches {i + 1}") for i in range(count)]

    def run(self, policy: Policy, value_net: ValueNet, normalizer: RunningObsNormalizer, jobs: list[ChunkJob],
            record: bool, step_here: Callable[[ChunkJob], ChunkResult]) -> list[ChunkResult]:
        """The results of ``jobs``, in order: the first share stepped here by ``step_here``, one
        share per ready worker (a worker still starting gets none: the main process steps it)."""
        ready = []
        for worker in self._workers:
            with self._death_reported(worker):
                if worker.ready():
                    ready.append(worker)
        shares = np.array_split(np.arange(len(jobs)), 1 + len(ready))
        sent = []
        for worker, share in zip(ready, shares[1:]):
            if share.size:
                request = {"policy": policy, "value_net": value_net, "normalizer": normalizer,
                           "jobs": [_portable(jobs[i]) for i in share], "record": record}
                with self._death_reported(worker):
                    worker.send(pickle.dumps(request))
                sent.append((worker, share))
        results: list[Optional[ChunkResult]] = [None] * len(jobs)
        for i in shares[0]:
            results[i] = step_here(jobs[i])
        for worker, share in sent:
            with self._death_reported(worker):
                reply = pickle.loads(worker.receive())
            if "error" in reply:
                self.close()
                raise BranchWorkerError(f"vine branches failed in a branch process (branch_processes="
                                        f"{self.processes}, pid {worker.pid}): {reply['error']}")
            for i, chunk in zip(share, reply["chunks"]):
                results[i] = chunk
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]  # every entry filled just above

    @contextmanager
    def _death_reported(self, worker: WorkerProcess) -> Iterator[None]:
        """A worker's death as BranchWorkerError, every worker ended."""
        try:
            yield
        except WorkerDied as died:
            pid = worker.pid
            self.close()
            raise BranchWorkerError(f"a vine branch process (branch_processes={self.processes}, pid {pid}) "
                                    f"{died}") from None

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


def _portable(job: ChunkJob) -> ChunkJob:
    """``job`` with snapshots that pickle small (MuJoCo: 8.8 KB instead of 680 KB per state on
    Hopper; sending whole MjData objects cost more than the branches they saved). The worker
    restores its branch envs from them directly."""
    states = [RolloutState(portable(state.snapshot), state.obs) for state in job.states]
    return ChunkJob(states, job.first_actions, job.noise)


def _branch_handler(env_cfg: EnvConfig, vine: VineConfig, gamma: float) -> Handler:
    """In a worker: a brancher with its own env pool; each request brings the policy, the value
    net and the observation statistics of its iteration."""
    brancher = VineBrancher(env_cfg, vine, gamma, RunningObsNormalizer((1,), 1.0), torch.device("cpu"))

    def handle(request: bytes) -> bytes:
        try:
            job = pickle.loads(request)
            brancher.normalizer = job["normalizer"]
            with torch.no_grad():
                chunks = [brancher.rollouts(job["policy"], job["value_net"], chunk, job["record"])
                          for chunk in job["jobs"]]
        except Exception as err:  # reported by the main process, which stops the run
            return pickle.dumps({"error": f"{type(err).__name__}: {first_line(err)}"})
        return pickle.dumps({"chunks": chunks})

    return handle
