"""Shared test fixtures: one way to run the real CLI, one way to wait for a process.

Every test that starts ``python -m trpo_exp`` or ``python -m sweeps`` goes through :func:`run_cli` /
:func:`start_cli` (as the ``cli`` fixture or imported), so the interpreter, the working directory,
the environment and the error report on failure are the same everywhere.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/ from this tree's runs (for a deliberate change of numbers)")


def cli_command(args: list[str], module: str = "trpo_exp", run_dir: Optional[Path] = None,
                sweep_dir: Optional[Path] = None) -> list[str]:
    cmd = [sys.executable, "-m", module, *args]
    if module == "trpo_exp":
        cmd.append("log_every=1000")  # no progress lines in the captured output
        if run_dir is not None:
            cmd.append(f"hydra.run.dir={run_dir}")
        if sweep_dir is not None:
            cmd += [f"hydra.sweep.dir={sweep_dir}", "-m"]
    return cmd


def cli_env(extra: Optional[dict] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.setdefault("WANDB_SILENT", "true")
    env.update(extra or {})
    return env


def run_cli(args: list[str], *, module: str = "trpo_exp", run_dir: Optional[Path] = None,
            sweep_dir: Optional[Path] = None, env: Optional[dict] = None, cwd: Path = ROOT,
            timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI to its end. ``check``: fail the test with the end of stderr on a non-zero exit."""
    result = subprocess.run(cli_command(args, module, run_dir, sweep_dir), cwd=cwd, env=cli_env(env),
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-3000:]}"
    return result


def start_cli(args: list[str], *, module: str = "trpo_exp", run_dir: Optional[Path] = None,
              env: Optional[dict] = None, cwd: Path = ROOT, capture: bool = True) -> subprocess.Popen:
    """Start the CLI in the background (to signal or kill it while it runs)."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(cli_command(args, module, run_dir), cwd=cwd, env=cli_env(env),
                            stdout=out, stderr=out, text=True)


def wait_for(condition: Callable[[], bool], what: str, proc: Optional[subprocess.Popen] = None,
             timeout: float = 600, poll: float = 0.05) -> None:
    """Wait for an event (a file, a row count), not for a time. The timeout is only a safety net
    against a hang, so it is generous; when it or the process's early exit ends the wait, the test
    fails with a message instead of going on with a half-started process."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            if condition():
                return
            err = proc.stderr.read()[-2000:] if proc.stderr else ""
            pytest.fail(f"process exited ({proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def child_of(pid: int, marker: bytes) -> Optional[int]:
    """The pid of a child process of ``pid`` whose command line holds ``marker``; the first found."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and marker in (stat.parent / "cmdline").read_bytes():
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
    return None


def worker_of(pid: int) -> Optional[int]:
    """The pid of a process's worker (value fit, vine branches): its child started by
    multiprocessing's spawn; the first found when there are several."""
    return child_of(pid, b"spawn_main")


def metrics_row_count(run_dir: Path) -> int:
    """Rows of a run's metrics.csv so far (0 before it exists)."""
    metrics = Path(run_dir) / "metrics.csv"
    return len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0


def kill_worker_of_cli_run(args: list[str], run_dir: Path) -> tuple[int, str, dict]:
    """Start the CLI run, wait for 2 metrics rows and its worker process (value fit, vine
    branches), SIGKILL the worker. The run must then fail with exit status 1 and one stderr line,
    no traceback. Returns the worker's pid, that line and the run's run.json."""
    proc = start_cli(args, run_dir=run_dir)
    wait_for(lambda: metrics_row_count(run_dir) >= 2 and worker_of(proc.pid) is not None,
             "2 rows and the worker", proc)
    worker = worker_of(proc.pid)
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
    return worker, lines[0], read_run_json(run_dir)


def read_run_json(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


@dataclass(frozen=True)
class Cli:
    """The ``cli`` fixture: the helpers above, bound to one test's temporary directory."""

    tmp_path: Path

    def run(self, args: list[str], name: str = "run", **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("run_dir", self.tmp_path / name)
        return run_cli(args, **kwargs)

    def start(self, args: list[str], name: str = "run", **kwargs) -> subprocess.Popen:
        kwargs.setdefault("run_dir", self.tmp_path / name)
        return start_cli(args, **kwargs)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def assert_same_outcome(run_dir: Path, reference: Path) -> None:
    """Two runs ended bit-identically: metrics.csv (time columns aside), final evaluation, and the
    policy and value weights of their final checkpoints."""
    import pandas as pd
    import torch

    from trpo_exp.record import TIME_COLUMNS

    def metrics(d: Path) -> pd.DataFrame:
        return pd.read_csv(d / "metrics.csv").drop(columns=list(TIME_COLUMNS))

    got_info, want_info = read_run_json(run_dir), read_run_json(reference)
    assert got_info["eval_return_mean"] == want_info["eval_return_mean"]
    pd.testing.assert_frame_equal(metrics(run_dir), metrics(reference))
    got = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    want = torch.load(reference / "checkpoint.pt", weights_only=True)
    for part in ("policy", "value_net"):
        for name, tensor in want[part].items():
            assert torch.equal(got[part][name], tensor), f"{part}.{name}"


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    from trpo_exp.record import TIME_COLUMNS

    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def assert_same_tensors(got, want, where: str) -> None:
    import torch

    if isinstance(want, torch.Tensor):
        assert torch.equal(got, want), where
    elif isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            assert_same_tensors(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_tensors(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """metrics.csv (time columns aside; the final evaluation is in its last row) and the final
    checkpoint's networks, optimizers, normaliser and RNG states (for runs trained in process,
    which write no run.json)."""
    from trpo_exp import checkpoint
    from trpo_exp.record import CHECKPOINT

    assert metrics_rows(run_dir) == metrics_rows(reference)
    got, want = checkpoint.load(run_dir / CHECKPOINT), checkpoint.load(reference / CHECKPOINT)
    for part in ("policy", "value_net", "value_optimizer", "policy_step", "obs_normalizer", "rng"):
        assert_same_tensors(got[part], want[part], part)
