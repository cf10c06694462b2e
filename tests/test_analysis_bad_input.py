"""Bad input to ``python -m analysis.report`` (issue 13): each case is a mark on the run or one
``analysis: error: ...`` line with a non-zero exit; never a hang, never a traceback.

The damaged files are written for real (a run.json seed of 2**64 or 1.5, a metrics.csv with a
duplicated column, a 10 MB line, a malformed non-UTF-8 line), and the command runs in a subprocess
where a hang or a traceback would show: the seed case hung with memory growing before the fix.
Infinite metric values and numeric options out of range are here too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from analysis import loading, paper_figure, report
from analysis.loading import load_runs
from analysis.report import main as report_main

ROOT = Path(__file__).resolve().parent.parent
HEADER = "iteration,env_steps,return_mean,entropy,kl,backtracks,step_accepted,eval_return_mean\n"


def good_run(run_dir: Path, seed: int, rows: int = 5) -> Path:
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    body = "".join(f"{i + 1},{(i + 1) * 1000},{float(i + seed)!r},0.6,0.005,0,True,{float(i + seed)!r}\n"
                   for i in range(rows))
    (run_dir / "metrics.csv").write_text(HEADER + body)
    (run_dir / "run.json").write_text(json.dumps({"status": "finished", "algo": "trpo", "env_id": "CartPole-v1",
                                                  "seed": seed}))
    (run_dir / ".hydra" / "config.yaml").write_text(f"algo:\n  name: trpo\nenv:\n  id: CartPole-v1\nseed: {seed}\n")
    return run_dir


def runs_with(tmp_path: Path) -> tuple[Path, Path]:
    """Three good runs and one more (``bad``) for the test to damage."""
    root = tmp_path / "runs"
    for seed in range(3):
        good_run(root / f"good{seed}", seed)
    return root, good_run(root / "bad", 7)


def report_cli(runs: Path, out: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command as a user runs it; a hang fails the test at ``timeout`` instead of running on."""
    return subprocess.run([sys.executable, "-m", "analysis.report", str(runs), "--out", str(out), "--no-cache",
                           "--resamples", "200"], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "default"})


def marks_of(stderr: str, run: str = "bad") -> str:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("analysis: warning: marked 1 run(s): "), stderr
    assert lines[0].endswith(f"/{run}"), stderr
    return lines[0]


# --------------------------------------------------------------------------------------- run.json


@pytest.mark.parametrize("seed, shown", [(2**64, "18446744073709551616"), (1.5, "1.5")])
def test_odd_seed_is_a_mark_not_a_hang_or_traceback(tmp_path: Path, seed, shown: str) -> None:
    runs, bad = runs_with(tmp_path)
    info = json.loads((bad / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps({**info, "seed": seed}))
    done = report_cli(runs, tmp_path / "out", timeout=60)  # it hung, with memory growing ~150 MB/s
    assert done.returncode == 0, done.stderr
    assert f"seed {shown} is not an integer seed (read as unknown)" in marks_of(done.stderr)
    table = (tmp_path / "out" / "table.md").read_text()
    assert "(n=4)" in table  # the run is kept (its seed unknown), not dropped


def test_a_warning_during_the_load_is_shown_once_and_the_report_ends(tmp_path: Path, monkeypatch, capsys) -> None:
    """The hang's mechanism, for any warning: showing caught warnings inside catch_warnings(record=True)
    appended each one to the list being shown, forever."""
    runs, _ = runs_with(tmp_path)
    real = loading.load_runs

    def warning_load(*args, **kwargs):
        warnings.warn("something odd in a dependency", RuntimeWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "load_runs", warning_load)
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(report_main(
        [str(runs), "--out", str(tmp_path / "out"), "--no-cache", "--resamples", "200"])), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the report hangs re-showing its warnings"
    assert result == [0]
    err = capsys.readouterr().err
    assert err.count("RuntimeWarning: something odd in a dependency") == 1


# ------------------------------------------------------------------------------------ metrics.csv


def loaded_metrics(runs: Path):
    """All runs' metrics, loaded as analysis does (its warning is checked by the tests themselves)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_runs([str(runs)], use_cache=False).metrics


def run_rows(metrics, name: str):
    return metrics[metrics["run_id"].astype(str).str.endswith(name)]


def test_duplicated_column_name_is_a_mark_and_keeps_the_first(tmp_path: Path) -> None:
    runs, bad = runs_with(tmp_path)
    text = (bad / "metrics.csv").read_text()
    (bad / "metrics.csv").write_text(text.replace("entropy,kl", "kl,kl", 1))  # header only: 0.6 is the first kl
    done = report_cli(runs, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "duplicated column kl in metrics.csv (first kept)" in marks_of(done.stderr)
    metrics = loaded_metrics(runs)
    rows = run_rows(metrics, "bad")
    assert rows["train/kl"].tolist() == [0.6] * 5 and rows["rollout/return_mean"].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    good = run_rows(metrics, "good0")
    assert good["train/kl"].tolist() == [0.005] * 5  # the other runs are read as before


def test_a_10_mb_line_is_dropped_and_marked(tmp_path: Path) -> None:
    runs, bad = runs_with(tmp_path)
    with open(bad / "metrics.csv", "a") as f:
        f.write("6,6000," + "9" * 10_000_000 + ",0.6,0.005,0,True,\n7,7000,3.5,0.6,0.005,0,True,\n")
    done = report_cli(runs, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "1 over 1 MB long line(s) in metrics.csv dropped" in marks_of(done.stderr)
    steps = run_rows(loaded_metrics(runs), "bad")["env_steps"].tolist()
    assert steps == [1000, 2000, 3000, 4000, 5000, 7000]  # the line after it is kept


@pytest.mark.parametrize("line, note", [
    (b"6,6000,\xff\xfe,0.6,9\n", "1 malformed line(s) in metrics.csv dropped"),  # wrong field count
    (b"6,6000,\xff\xfe\x80,0.6,0.005,0,True,\n", "non-UTF-8 bytes in a metrics.csv line"),  # right count
])
def test_a_non_utf8_line_is_a_mark_with_no_traceback(tmp_path: Path, line: bytes, note: str) -> None:
    runs, bad = runs_with(tmp_path)
    with open(bad / "metrics.csv", "ab") as f:
        f.write(line + b"7,7000,3.5,0.6,0.005,0,True,\n")
    done = report_cli(runs, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    marks = marks_of(done.stderr)  # pyarrow printed "Exception ignored ... Traceback" for the first
    assert note in marks or "non-numeric values in return_mean read as missing" in marks, marks


def test_a_non_utf8_header_is_a_mark(tmp_path: Path) -> None:
    runs, bad = runs_with(tmp_path)
    data = (bad / "metrics.csv").read_bytes()
    (bad / "metrics.csv").write_bytes(data.replace(b"entropy", b"entr\xffopy", 1))
    done = report_cli(runs, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "non-UTF-8 bytes in a metrics.csv header" in marks_of(done.stderr)


def set_cells(run_dir: Path, column: str, value: str, rows: slice = slice(None)) -> None:
    """Write ``value`` into ``column`` of the chosen data rows of a run's metrics.csv."""
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    j = HEADER.strip().split(",").index(column)
    for i in range(1, len(lines))[rows]:
        cells = lines[i].split(",")
        cells[j] = value
        lines[i] = ",".join(cells)
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_infinite_metric_values_are_missing_and_the_report_completes(tmp_path: Path) -> None:
    """A curve of inf only failed in matplotlib ("internal error ... IndexError") with half the report
    written; the values now read as missing, the run is marked with the columns."""
    runs, bad = runs_with(tmp_path)
    set_cells(bad, "return_mean", "inf")
    set_cells(bad, "kl", "-inf")
    set_cells(bad, "eval_return_mean", "nan", slice(1, 2))
    done = report_cli(runs, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "infinite values in rollout/return_mean, train/kl read as missing" in marks_of(done.stderr)
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "figures" / "learning_curves.png").exists()
    rows = run_rows(loaded_metrics(runs), "bad")
    assert rows["rollout/return_mean"].isna().all() and rows["train/kl"].isna().all()
    assert rows["eval/return_mean"].isna().tolist() == [False, True, False, False, False]


def test_an_infinite_step_drops_its_row_in_every_run(tmp_path: Path) -> None:
    runs, _ = runs_with(tmp_path)
    for run_dir in runs.iterdir():
        set_cells(run_dir, "env_steps", "inf", slice(-1, None))
    done = report_cli(runs, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "marked 4 run(s): infinite values in env_steps read as missing [4]: " in lines[0], \
        done.stderr
    assert run_rows(loaded_metrics(runs), "good0")["env_steps"].tolist() == [1000, 2000, 3000, 4000]


# ----------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("command", [report_main, paper_figure.main], ids=["report", "paper_figure"])
@pytest.mark.parametrize("option, value, allowed", [
    ("--points", "0", "must be between 2 and 2000"),
    ("--points", "1000000000000", "must be between 2 and 2000"),  # a grid this long exhausted memory
    ("--resamples", "0", "must be between 100 and 100000"),
    ("--resamples", "100000000000", "must be between 100 and 100000"),  # MemoryError before
    ("--seed", "-1", "must be >= 0"),  # numpy's ValueError, an internal error before
    ("--last-k", "0", "must be between 1 and 1000000000"),
    ("--last-k", "100000000000000000000", "must be between 1 and 1000000000"),  # OverflowError before
    ("--confidence", "1", "must be between 0 and 1, both excluded"),
    ("--confidence", "nan", "must be between 0 and 1, both excluded"),
])
def test_a_bad_option_value_is_one_line_naming_it(tmp_path: Path, capsys, command, option: str, value: str,
                                                  allowed: str) -> None:
    runs, _ = runs_with(tmp_path)
    out = tmp_path / "out"
    assert command([str(runs), "--out", str(out), "--no-cache", f"{option}={value}"]) == 2
    assert capsys.readouterr().err == f"analysis: error: {option}={value} is not allowed: {allowed}\n"
    assert not out.exists()  # checked before anything is written


# -------------------------------------------------------------------------------------------- --out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("analysis: warning:")]
    assert len(lines) == 1 and lines[0].startswith("analysis: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_out_is_a_file(tmp_path: Path, capsys) -> None:
    runs, _ = runs_with(tmp_path)
    (tmp_path / "file").write_text("x")
    assert report_main([str(runs), "--out", str(tmp_path / "file"), "--no-cache"]) == 1
    assert one_error_line(capsys) == f"analysis: error: --out {tmp_path / 'file'} is a file, not a directory"


def test_out_is_under_a_file(tmp_path: Path, capsys) -> None:
    runs, _ = runs_with(tmp_path)
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "deeper" / "report"
    assert report_main([str(runs), "--out", str(out), "--no-cache"]) == 1
    assert one_error_line(capsys) == f"analysis: error: --out {out} cannot be created: {tmp_path / 'file'} is a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_out_is_read_only(tmp_path: Path, capsys) -> None:
    runs, _ = runs_with(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert report_main([str(runs), "--out", str(out), "--no-cache"]) == 1
    finally:
        out.chmod(0o700)
    assert one_error_line(capsys).endswith("Permission denied")


def test_out_on_a_read_only_file_system(tmp_path: Path, capsys) -> None:
    """Works as root too: /proc/self does not take new files (EACCES / ENOENT / EROFS by kernel)."""
    runs, _ = runs_with(tmp_path)
    out = Path("/proc/self/analysis-report")
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    assert report_main([str(runs), "--out", str(out), "--no-cache"]) == 1
    assert one_error_line(capsys).startswith(f"analysis: error: --out {out} cannot be created: ")


def test_disk_full_while_writing(tmp_path: Path, capsys) -> None:
    """/dev/full fails every write with ENOSPC: the report's first file is made a link to it."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    runs, _ = runs_with(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "table.md").symlink_to("/dev/full")
    assert report_main([str(runs), "--out", str(out), "--no-cache", "--resamples", "200"]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"analysis: error: could not write the report into {out}: ")
    assert line.endswith("No space left on device")
    assert not (out / "report.md").exists()


def test_a_failed_load_leaves_no_empty_out_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "new" / "report"
    assert report_main([str(tmp_path / "empty"), "--out", str(out), "--no-cache"]) == 1
    assert one_error_line(capsys).startswith("analysis: error: no runs found in")
    assert not out.exists()
