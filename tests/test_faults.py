"""Fault injection: the run record survives a full disk. (Signals at every phase of a run are in
test_record.py, test_resume.py and test_slurm.py; a killed helper process in test_value_fit_process.py
and test_branch_process.py.)

The disk is a real filesystem that fills up: a small tmpfs mounted for the test (root only; skipped
with the reason where mounting is not allowed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import metrics_row_count, start_cli, wait_for


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_record(small_disk):
    run_dir = small_disk / "run"
    proc = start_cli(["env=cartpole", "total_steps=10000000", "logger=none", "checkpoint_interval_s=3600"],
                     run_dir=run_dir)
    wait_for(lambda: metrics_row_count(run_dir) >= 2, "two rows", proc)
    # Room for run.json to be rewritten (atomically: a second copy), not for a checkpoint.
    fill(small_disk, leave=2 * (run_dir / "run.json").stat().st_size + 16_384)
    os.kill(proc.pid, signal.SIGUSR1)  # a checkpoint now
    _, stderr = proc.communicate(timeout=120)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert "No space left on device" in lines[0]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["reason"], info["reason"]
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "checkpoint.pt").exists()
    assert metrics_row_count(run_dir) >= 2
