"""A bounded wait for SLURM through Hydra's submitit launcher (``-m hydra/launcher=slurm`` or
``submitit_slurm``). submitit runs ``sbatch`` without a timeout and then waits for each job's result
for as long as SLURM has not said the job ended, so a hung ``sbatch`` (a controller that does not
answer) or a job that SLURM never shows (neither ``squeue`` nor ``sacct`` knows it, nor has it
written anything) hung the multirun with no message. Both now end it after
TRPO_EXP_SBATCH_TIMEOUT_S seconds (default 300) with :class:`SlurmUnresponsive`, which
trpo_exp.cli_errors prints as one line. A job that SLURM shows, however long it pends or runs, is
waited for as before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Any, Iterator

ENV_TIMEOUT = "TRPO_EXP_SBATCH_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0


class SlurmUnresponsive(RuntimeError):
    """sbatch did not return, or a submitted job never appeared, within the bound; one line."""


def timeout_s() -> float:
    text = os.environ.get(ENV_TIMEOUT, "")
    try:
        value = float(text) if text.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SlurmUnresponsive(f"{ENV_TIMEOUT}={text!r} is not allowed: must be a number of seconds > 0")
    return value


def run_bounded(command: list[str], timeout: float, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``command``'s output, or SlurmUnresponsive after ``timeout`` s. It runs in a session of its
    own so that killing it ends what it started too (a wrapper script's children keep the pipes open
    and communicate() would wait for them)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **popen) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException as err:  # the timeout, or Ctrl-C: leave nothing behind
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            if isinstance(err, subprocess.TimeoutExpired):
                raise SlurmUnresponsive(f"{command[0]} did not return within {timeout:g} s (SLURM's controller "
                                        f"is not answering?); no job was started by this command, or check "
                                        f"squeue (raise the bound with {ENV_TIMEOUT})") from None
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _bounded_command_function(base: Any, timeout: float) -> Any:
    """submitit's CommandFunction (how it runs sbatch), with a time limit; errors as before."""
    from submitit.core.utils import FailedJobError

    class BoundedCommandFunction(base):
        def __call__(self, *args: Any, **kwargs: Any) -> str:
            command = [*self.command, *(str(x) for x in args), *(f"--{k}={v}" for k, v in kwargs.items())]
            done = run_bounded(command, timeout, cwd=self.cwd, env=self.env)
            # As submitit: FailedJobError from CalledProcessError (cli_errors.is_refused_submission),
            # without echoing sbatch's stderr first: the one line that reports the error quotes it.
            if done.returncode:
                raise FailedJobError(done.stderr.strip()) from subprocess.CalledProcessError(
                    done.returncode, command, output=done.stdout, stderr=done.stderr)
            return str(done.stdout).strip()

    return BoundedCommandFunction


@contextmanager
def _bounded_submission(timeout: float) -> Iterator[None]:
    from submitit.core import utils

    original = utils.CommandFunction
    utils.CommandFunction = _bounded_command_function(original, timeout)  # type: ignore[misc]
    try:
        yield
    finally:
        utils.CommandFunction = original  # type: ignore[misc]


def _known_to_slurm(job: Any, timeout: float) -> bool:
    """Whether SLURM shows the job: in sacct (submitit's watcher), in squeue, or by its files."""
    if job.state != "UNKNOWN" or job.paths.stdout.exists() or job.paths.result_pickle.exists():
        return True
    try:
        listed = run_bounded(["squeue", "-h", "-j", str(job.job_id).split("_")[0], "-o", "%i"], timeout)
    except (OSError, SlurmUnresponsive):
        return False
    return listed.returncode == 0 and bool(listed.stdout.strip())


def _bounded_wait(job: Any) -> None:
    """submitit's Job.wait, ending with SlurmUnresponsive when SLURM has not shown the job for the
    bound since its submission (sacct may lag a submission: anything that shows it ends the check)."""
    bound = timeout_s()
    start, seen = time.monotonic(), False
    while not job.done():
        if not seen:
            seen = _known_to_slurm(job, bound)
            if not seen and time.monotonic() - start > bound:
                raise SlurmUnresponsive(f"SLURM job {job.job_id} was submitted (sbatch gave its id) but squeue and "
                                        f"sacct do not show it after {bound:g} s; check squeue and the job's "
                                        f"files in {job.paths.folder} (raise the bound with {ENV_TIMEOUT})")
        time.sleep(1)  # as submitit's own wait


def install() -> None:
    """Bound sbatch and the wait for jobs in submitit's SLURM executor (no-op without submitit)."""
    try:
        from submitit.slurm import slurm
    except ImportError:
        return
    executor = slurm.SlurmExecutor
    if getattr(executor._submit_command, "_trpo_exp_bounded", False):
        return
    submit = executor._submit_command

    def _submit_command(self: Any, command: str) -> Any:
        with _bounded_submission(timeout_s()):
            return submit(self, command)

    _submit_command._trpo_exp_bounded = True  # type: ignore[attr-defined]
    executor._submit_command = _submit_command  # type: ignore[method-assign]
    slurm.SlurmJob.wait = _bounded_wait  # type: ignore[method-assign, assignment]
