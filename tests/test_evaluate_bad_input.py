"""python -m trpo_exp.evaluate: every user mistake (an option value, a checkpoint that does not fit its
env, an evaluations.jsonl that cannot be written) is one line on stderr and a non-zero exit status, never a
traceback, and nothing already written is lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

PREFIX = "trpo_exp.evaluate: error:"


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evaluate_bad_input") / "run"
    run_cli(["algo=pg", "env=cartpole", "total_steps=2048", "logger=none"], run_dir=run_dir)
    return run_dir


@pytest.fixture
def run_copy(cartpole_run, tmp_path):
    """A copy of the trained run that a test may damage (with the evaluations of earlier tests, if any)."""
    return Path(shutil.copytree(cartpole_run, tmp_path / "run"))


def evaluate(args, **kwargs):
    # The timeout is only a safety net: the checks under test answer before any episode runs, while
    # the code before them ran every episode asked for (episodes=100001 would take hours).
    return run_cli(args, module="trpo_exp.evaluate", check=False, timeout=300, **kwargs)


def error_line(result, status=2) -> str:
    """The one stderr line of a refused evaluation."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == status and len(lines) == 1 and lines[0].startswith(PREFIX), \
        f"exit {result.returncode}: {result.stderr[-3000:]}"
    return lines[0]


def evaluations(run_dir: Path) -> str:
    path = run_dir / "evaluations.jsonl"
    return path.read_text() if path.is_file() else ""


@pytest.mark.parametrize("option, allowed", [
    ("episodes=\u00b2", "[1, 100000]"),  # superscript two: str.isdigit says yes, int() refuses it
    ("episodes=\u0663", "[1, 100000]"),  # Arabic-Indic three: int() reads it as 3
    ("episodes=100001", "[1, 100000]"),
    ("episodes=0", "[1, 100000]"),
    pytest.param("episodes=" + "9" * 5000, "[1, 100000]", id="episodes=9x5000"),  # int() refuses > 4300 digits
    (f"seed={10**23}", "[0, 4294967295]"),  # torch.manual_seed overflows
    ("seed=4294967296", "[0, 4294967295]"),
    ("seed=-1", "[0, 4294967295]"),
])
def test_bad_option_value_is_one_line(cartpole_run, option, allowed):
    before = evaluations(cartpole_run)
    line = error_line(evaluate([str(cartpole_run), option]))
    key, _, value = option.partition("=")
    shown = f"{key}={value[:40]!r}"[:-1]  # the value as quoted in the line (a long one cut short)
    assert shown in line and allowed in line, line
    assert evaluations(cartpole_run) == before


def _normalizer_shape(size):
    def damage(state):
        import torch

        for name in ("mean", "var"):
            state["obs_normalizer"][name] = torch.zeros(size, dtype=torch.float64)
        return ["observation normaliser", f"[{size}]", "[4]"]
    return damage


def _no_config(state):
    del state["config"]
    return ["'config'"]


def _policy_shape(state):
    import torch

    name = next(iter(state["policy"]))
    want = list(state["policy"][name].shape)
    state["policy"][name] = torch.zeros(7, 3)
    return [name, "[7, 3]", str(want)]


DAMAGES = {"normaliser shape 3": _normalizer_shape(3), "normaliser shape 1 (broadcasts)": _normalizer_shape(1),
           "no config": _no_config, "policy shape": _policy_shape}


@pytest.mark.parametrize("case", DAMAGES)
def test_checkpoint_that_does_not_fit_is_one_line(run_copy, case):
    from trpo_exp import checkpoint

    path = run_copy / "checkpoint.pt"
    state = checkpoint.load(path)
    named = DAMAGES[case](state)
    checkpoint.save(path, state)
    before = evaluations(run_copy)
    line = error_line(evaluate([str(run_copy), "episodes=1"]))
    assert str(path) in line and all(part in line for part in named), line
    assert evaluations(run_copy) == before


def test_unwritable_evaluations_is_refused_before_the_episodes(run_copy):
    (run_copy / "evaluations.jsonl").unlink(missing_ok=True)
    (run_copy / "evaluations.jsonl").mkdir()
    result = evaluate([str(run_copy), "episodes=1", "video=true"])
    line = error_line(result)
    assert "evaluations.jsonl" in line and "writable file" in line and not result.stdout, line
    assert not (run_copy / "videos").exists()  # refused before the recorder and the episodes


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (every write fails: disk full)")
def test_result_that_cannot_be_written_is_printed_as_json(run_copy):
    (run_copy / "evaluations.jsonl").unlink(missing_ok=True)
    (run_copy / "evaluations.jsonl").symlink_to("/dev/full")  # opens for append, every write fails
    result = evaluate([str(run_copy), "episodes=2"])
    line = error_line(result, status=1)
    entry = json.loads(result.stdout.strip().splitlines()[-1])
    assert "evaluations.jsonl" in line and "stdout" in line, line
    assert len(entry["returns"]) == 2 and entry["return_mean"] == sum(entry["returns"]) / 2 and entry["episodes"] == 2
