"""Where a run came from: code version, library versions, machine, command line.

Stored in run.json so that a result can be traced back to the exact code and environment, and
joined with its W&B run (wandb_run_id)."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from trpo_exp import numerics
from trpo_exp.redact import redact_secrets

PACKAGES = ("torch", "gymnasium", "mujoco", "hydra-core", "omegaconf", "optuna", "wandb", "numpy")
MAX_DIFF_BYTES = 1_000_000  # a diff larger than this is cut (and says so): run.json stays readable

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _git(directory: Path, *args: str) -> Optional[str]:
    try:
        result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def git_info(directory: Path) -> dict[str, Any]:
    """Commit, dirty flag and diff against HEAD of the checkout containing ``directory``;
    ``{"commit": None}`` when it is not in a git checkout (e.g. an installed wheel)."""
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff": None}
    status = _git(directory, "status", "--porcelain", "--untracked-files=no") or ""
    diff = _git(directory, "diff", "HEAD") or ""
    if len(diff.encode()) > MAX_DIFF_BYTES:
        diff = diff.encode()[:MAX_DIFF_BYTES].decode(errors="ignore") + "\n[diff cut at 1 MB]\n"
    return {"commit": commit.strip(), "dirty": bool(status.strip()), "diff": diff}


def package_versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> Optional[str]:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


SLURM_ENV = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
             "node": "SLURMD_NODENAME", "partition": "SLURM_JOB_PARTITION", "restart_count": "SLURM_RESTART_COUNT"}


def slurm() -> Optional[dict[str, Optional[str]]]:
    """Where a run ran on a SLURM cluster (None outside SLURM)."""
    import os

    if "SLURM_JOB_ID" not in os.environ:
        return None
    return {key: os.environ.get(var) for key, var in SLURM_ENV.items()}


def collect(command: Optional[list[str]] = None) -> dict[str, Any]:
    """``command``: the user's command line when this process's argv is not it (a job started by a
    launcher such as submitit runs ``_submit.py``)."""
    import os

    return {
        "git": git_info(PROJECT_DIR),
        "versions": package_versions(),
        "command": [redact_secrets(a) for a in (command or [sys.executable, *sys.argv])],
        "slurm": slurm(),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "numerics": numerics.describe(),
    }
