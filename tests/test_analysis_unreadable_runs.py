"""Run files that must not be read: a FIFO, a link to a device, a file past its size cap.

Before the fix ``python -m analysis.report`` blocked forever opening a FIFO named metrics.csv or
run.json, and read a link to /dev/zero until memory ran out; now the run is skipped, with the reason
on the load's warning line, and the report is made from the other runs.

A link to /dev/null stands for the /dev/zero of the report: the same kind of file (a character
device, refused before it is opened), but harmless should the fix go missing, where /dev/zero would
fill the test machine's memory. Every call that could block runs in a subprocess with a timeout, so
a missing fix fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_analysis_bad_input import ROOT, good_run, report_cli, runs_with

from trpo_exp.record import reader

TIMEOUT = 120  # a report of a few runs takes seconds; only a blocked read gets near this
HUGE_RUN_JSON = (64 << 20) + 1  # one byte over reader.MAX_RUN_JSON_BYTES


def fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def device(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/null")


def oversized(path: Path, size: int) -> None:
    """A sparse file of ``size`` bytes: its stat says the size, the disk holds next to nothing."""
    with open(path, "wb") as f:
        f.truncate(size)


def run_or_fail(command: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} still running after {TIMEOUT} s: blocked on a FIFO or reading a device")


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/null").exists(), reason="needs FIFOs and /dev/null")
def test_fifos_devices_and_huge_files_skip_only_their_run(tmp_path: Path) -> None:
    runs, _ = runs_with(tmp_path)
    damage = {
        "fifo_metrics": (lambda d: fifo(d / "metrics.csv"), "metrics.csv is not a regular file (FIFO)"),
        "fifo_json": (lambda d: fifo(d / "run.json"), "run.json is not a regular file (FIFO)"),
        "fifo_config": (lambda d: fifo(d / ".hydra" / "config.yaml"), ".hydra/config.yaml is not a regular file (FIFO)"),
        "device_metrics": (lambda d: device(d / "metrics.csv"), "metrics.csv is not a regular file (character device)"),
        "device_json": (lambda d: device(d / "run.json"), "run.json is not a regular file (character device)"),
        "huge_json": (lambda d: oversized(d / "run.json", HUGE_RUN_JSON), "run.json is larger than 64 MiB"),
    }
    (runs / "bad").rename(runs / "fifo_metrics")
    for name, (spoil, _) in damage.items():
        spoil(good_run(runs / name, seed=9))
    try:
        done = report_cli(runs, tmp_path / "out", timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the report still ran after {TIMEOUT} s: blocked on a FIFO or reading a device")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"analysis: warning: skipped {len(damage)} run(s): "), done.stderr
    for name, (_, reason) in damage.items():
        assert f"{reason} [1]: {runs / name}" in lines[0], (name, lines[0])
    assert "(n=3)" in (tmp_path / "out" / "table.md").read_text()  # the three good runs, and only them


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_the_shared_reader_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    """The record reader's own guard, for its other callers (multirun summary, sweep objective) and a
    FIFO swapped in after analysis checked the run: a note, no rows, no wait."""
    run_dir = good_run(tmp_path / "run", seed=0)
    fifo(run_dir / "metrics.csv")
    fifo(run_dir / "run.json")
    code = ("import sys; from trpo_exp.record.reader import read_damaged, read_run\n"
            "run = read_run(sys.argv[1]); notes = []; damaged = read_damaged(sys.argv[1], notes)\n"
            "print(run.notes, run.info, len(run.metrics), notes, len(damaged))")
    done = run_or_fail([sys.executable, "-c", code, str(run_dir)], "reading a run with FIFOs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("['run.json is not a regular file (FIFO)', 'metrics.csv is not a regular file "
                                   "(FIFO)'] {} 0 ['metrics.csv is not a regular file (FIFO)'] 0")


def test_metrics_csv_over_the_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    """Checked on the file's stat alone: a sparse file says 1 GiB + 1 byte without holding it."""
    oversized(tmp_path / "metrics.csv", reader.MAX_METRICS_BYTES + 1)
    assert reader.file_problem(tmp_path, "metrics.csv", reader.MAX_METRICS_BYTES) == \
        "metrics.csv is larger than 1 GiB"
    oversized(tmp_path / "metrics.csv", reader.MAX_METRICS_BYTES)
    assert reader.file_problem(tmp_path, "metrics.csv", reader.MAX_METRICS_BYTES) == ""
    assert reader.file_problem(tmp_path, "missing.csv", reader.MAX_METRICS_BYTES) == ""  # left to the reader
