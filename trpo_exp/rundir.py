"""The run directory: claimed by one process at a time, and what to do with a record already in it.

- ``claim``: an exclusive lock (flock on <run dir>/.lock) held for the whole run. A second process
  on the same dir is refused with one line; the lock dies with its process, so a killed run's dir
  can be resumed at once.
- ``plan``: an empty dir starts a fresh run; an unfinished run (running, failed, pruned, abandoned,
  or killed) with a checkpoint resumes from it, if its config is the same (else refused, naming the
  keys that differ); a finished run is refused unless ``fresh=true``. ``fresh=true`` and an
  unfinished run without a checkpoint start over after moving the old record into
  <run dir>/previous-<time>/: a record is never overwritten.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Optional

from trpo_exp import checkpoint
from trpo_exp.config import ConfigError
from trpo_exp.record import CHECKPOINT, METRICS_CSV, RUN_JSON, Status
from trpo_exp.record.reader import read_info
from trpo_exp.util import flatten

LOCK = ".lock"
# Keys that do not change a run's numbers: a resume may change them (and a checkpoint written
# before one of them existed resumes).
RESUME_FREE_KEYS = ("log_every", "checkpoint_interval_s", "fresh", "logger.", "hooks.", "value_fit_process",
                   "branch_processes")


class RunDirError(ConfigError):
    """The run dir cannot be used as asked; ``str(err)`` is one line."""


@dataclass
class Claim:
    path: Path
    handle: IO[str]

    def release(self) -> None:
        self.handle.close()


def claim(run_dir: Path) -> Claim:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK, "a+")
    except OSError as err:  # a file where the dir should be, no permission, a read-only filesystem
        raise RunDirError(f"hydra.run.dir={str(run_dir)!r} is not allowed: {err.strerror or err} "
                          f"({err.filename or run_dir})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirError(f"hydra.run.dir={str(run_dir)!r} is not allowed: it is in use by {holder} "
                          f"(one run per directory)") from None
    holder_pid = live_holder(run_dir)
    if holder_pid is not None:  # the lock file was deleted under a live run: the record still says whose it is
        handle.close()
        raise RunDirError(f"hydra.run.dir={str(run_dir)!r} is not allowed: it is in use by pid {holder_pid} on "
                          f"{socket.gethostname()} (alive, though the lock file was missing; one run per directory)")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    for tmp in run_dir.glob(".*.tmp"):  # left by a process killed mid-write; the dir is ours now
        tmp.unlink(missing_ok=True)
    return Claim(run_dir, handle)


def live_holder(run_dir: Path) -> Optional[int]:
    """The pid of a live process on this host that run.json says is running this run (None if
    none): a record's own word, which holds when someone deletes the lock file under a run that is
    stopped (SIGSTOP, a suspended job) and would otherwise let a second process in."""
    try:
        info = read_info(run_dir) if (run_dir / RUN_JSON).exists() else {}
    except Exception:  # an unreadable record holds no claim; plan() says what is wrong with it
        return None
    progress = info.get("progress") if isinstance(info, dict) else None
    if info.get("status") != Status.RUNNING or not isinstance(progress, dict):
        return None
    pid = progress.get("pid")
    if progress.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return None
    try:  # alive, and a Python process (not an unrelated one that reuses the pid of a dead run)
        return pid if b"python" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except OSError:
        return None


@dataclass(frozen=True)
class Plan:
    resume: Optional[dict[str, Any]] = None
    """The checkpoint to resume from (None: a fresh run)."""
    previous: Optional[dict[str, Any]] = None
    """The run.json of the record being resumed."""
    moved_to: Optional[Path] = None
    """Where an old record was moved before a fresh start."""


def plan(run_dir: Path, config_dict: dict[str, Any], fresh: bool) -> Plan:
    info = read_info(run_dir) if (run_dir / RUN_JSON).exists() else {}
    has_record = bool(info) or (run_dir / METRICS_CSV).exists() or (run_dir / CHECKPOINT).exists()
    if not has_record:
        return Plan()
    if fresh:
        return Plan(moved_to=move_aside(run_dir))
    if info.get("status") == Status.FINISHED:
        final = info.get("eval_return_mean")
        raise RunDirError(f"hydra.run.dir={str(run_dir)!r} is not allowed: it holds a finished run (final eval "
                          f"{final}); choose another directory, or add fresh=true to start over (the old "
                          f"record is then kept in {run_dir}/previous-<time>/)")
    if not (run_dir / CHECKPOINT).exists():
        return Plan(moved_to=move_aside(run_dir))  # nothing to resume from; keep what there is
    state = checkpoint.load(run_dir / CHECKPOINT)
    refuse_unusable(run_dir, state)
    differ = config_differences(state["config"], config_dict)
    if differ:
        raise RunDirError(f"resuming {run_dir} is not allowed with a different config: {'; '.join(differ[:6])}"
                          f"{' ...' if len(differ) > 6 else ''} (use the run's own config, another "
                          f"hydra.run.dir, or fresh=true)")
    return Plan(resume=state, previous=info)


def refuse_unusable(run_dir: Path, state: dict[str, Any]) -> None:
    """A checkpoint the record beside it cannot continue from: one line, nothing changed."""
    advice = "start over with fresh=true (the old record is kept aside) or choose another hydra.run.dir"
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("iteration"), int):
        raise RunDirError(f"resuming {run_dir} is not allowed: {run_dir / CHECKPOINT} holds no config or "
                          f"iteration; {advice}")
    rows = complete_rows(run_dir / METRICS_CSV)
    if rows < state["iteration"]:
        raise RunDirError(f"resuming {run_dir} is not allowed: its {METRICS_CSV} holds {rows} rows, the "
                          f"checkpoint is at iteration {state['iteration']} (rows were deleted); {advice}")


def complete_rows(path: Path) -> int:
    """Rows of a metrics.csv with as many cells as its header (0 if there is no file)."""
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    return sum(1 for row in lines[1:] if lines and len(row) == len(lines[0]))


def setting_digest(config: dict[str, Any]) -> str:
    """8 hex digits naming a run's setting: every key that changes its numbers but the seed. Runs
    that differ only in their seed share it (the W&B group)."""
    flat = {k: v for k, v in flatten(config).items() if k != "seed" and not k.startswith(RESUME_FREE_KEYS)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:8]


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    a, b = flatten(saved), flatten(current)
    keys = sorted(k for k in set(a) | set(b) if not k.startswith(RESUME_FREE_KEYS) and a.get(k) != b.get(k))
    return [f"{k} was {a.get(k)!r}, now {b.get(k)!r}" for k in keys]


def move_aside(run_dir: Path) -> Path:
    """Move every file of the old record (not .hydra/, which Hydra just wrote for this run, nor
    the lock) into previous-<time>/."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    target = run_dir / f"previous-{stamp}"
    target.mkdir()
    for entry in run_dir.iterdir():
        if entry.name in (LOCK, ".hydra") or entry.name.startswith("previous-"):
            continue
        entry.rename(target / entry.name)
    return target
