"""Tests for trpo_exp.record.wandb_file against runs written by the real wandb library."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

from trpo_exp.record.wandb_file import BLOCK_SIZE, read_offline_run

RUN_ID = "trpotest01"
N_STEPS = 20
# Values wandb adds to rows and summary on its own; only their type is known.
VOLATILE = ("_runtime", "_timestamp")

INIT_CONFIG: dict[str, Any] = {
    "lr": 3e-4,
    "gamma": 0.99,
    "env": {"id": "Hopper-v5", "kwargs": {"frame_skip": 4, "healthy": [0.7, 2.0]}},
    "layers": [64, 64],
    # Records store raw values, so a user dict that merely looks like
    # wandb's config.yaml {"value": ...} wrapper must come back untouched.
    "looks_wrapped": {"value": 7},
}
FINAL_CONFIG: dict[str, Any] = {**INIT_CONFIG, "lr": 1e-3, "extra": "x"}


def pad(i: int) -> str:
    # ~2.4 KB per row makes the file span several 32 KiB blocks, so damage in
    # one block leaves records in the others, and gives each row a unique marker.
    return f"row{i:02d}|" * 400


def expected_row(i: int) -> dict[str, Any]:
    return {"rollout/return_mean": i * 1.5, "train/kl": i / 1000, "pad": pad(i), "_step": i * 100}


EXPECTED_SUMMARY: dict[str, Any] = {
    **expected_row(N_STEPS - 1),
    "best_return": 28.5,
    "eval": {"return": 12.25, "episodes": 10},
}

WRITER = textwrap.dedent(
    f"""
    import wandb
    settings = wandb.Settings(
        mode="offline", console="off", save_code=False, disable_git=True,
        disable_job_creation=True, x_disable_stats=True, x_disable_meta=True,
    )
    run = wandb.init(
        id={RUN_ID!r}, project="trpo-test", name="hopper-seed0", group="trpo",
        tags=["vine", "test"], config={INIT_CONFIG!r}, settings=settings,
    )
    for i in range({N_STEPS}):
        run.log({{"rollout/return_mean": i * 1.5, "train/kl": i / 1000,
                 "pad": f"row{{i:02d}}|" * 400}}, step=i * 100)
    run.config.update({{"lr": 1e-3}}, allow_val_change=True)
    run.config.update({{"extra": "x"}})
    run.summary["best_return"] = 28.5
    run.summary["eval"] = {{"return": 12.25, "episodes": 10}}
    run.finish()
    """
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write one real offline run with wandb in a subprocess (isolates wandb's global state)."""
    root = tmp_path_factory.mktemp("wandb")
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_DIR": str(root),
        # Keep wandb-core's debug log and any caches/configs inside tmp.
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "WANDB_CACHE_DIR": str(root / "cache"),
        "WANDB_CONFIG_DIR": str(root / "config"),
        "WANDB_DATA_DIR": str(root / "data"),
        "WANDB_ARTIFACT_DIR": str(root / "artifacts"),
    }
    env.pop("WANDB_API_KEY", None)
    subprocess.run([sys.executable, "-c", WRITER], env=env, cwd=root, check=True, timeout=120)
    (found,) = (root / "wandb").glob("offline-run-*")
    return found


@pytest.fixture()
def wandb_bytes(run_dir: Path) -> bytes:
    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert len(data) > 3 * BLOCK_SIZE, "test data must span several blocks"
    return data


def stable(row: dict[str, Any]) -> dict[str, Any]:
    """Drop wandb's clock-based values after checking they are present and numeric."""
    for key in VOLATILE:
        assert isinstance(row[key], float), key
    return {k: v for k, v in row.items() if k not in VOLATILE}


def write_copy(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"run-{RUN_ID}.wandb"
    path.write_bytes(data)
    return path


def offset_in_block(data: bytes, marker: bytes, block: int) -> int:
    """Offset of the first ``marker`` lying well inside ``block`` (away from its edges)."""
    lo, hi = block * BLOCK_SIZE + 64, (block + 1) * BLOCK_SIZE - 64
    pos = data.find(marker, lo, hi)
    assert pos != -1, f"{marker!r} not found in block {block}"
    return pos


def test_reads_back_exactly_what_wandb_logged(run_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact file must not warn
        run = read_offline_run(run_dir)

    assert run.path.name == f"run-{RUN_ID}.wandb"
    assert (run.run_id, run.project) == (RUN_ID, "trpo-test")
    assert (run.name, run.group) == ("hopper-seed0", "trpo")
    assert run.tags == ["vine", "test"]
    assert run.config == FINAL_CONFIG
    assert [stable(row) for row in run.history] == [expected_row(i) for i in range(N_STEPS)]
    assert stable(run.summary) == EXPECTED_SUMMARY
    assert run.warnings == []


def test_file_path_and_directory_path_agree(run_dir: Path) -> None:
    from_dir = read_offline_run(run_dir)
    from_file = read_offline_run(str(from_dir.path))
    assert from_file == from_dir


def test_truncated_file_returns_intact_prefix_and_warns(tmp_path: Path, wandb_bytes: bytes) -> None:
    cut = wandb_bytes.find(pad(12).encode()) + 100  # mid-way through row 12's records
    path = write_copy(tmp_path, wandb_bytes[:cut])

    with pytest.warns(UserWarning, match="file ends inside") as caught:
        run = read_offline_run(path)

    assert len(caught) == 1
    rows = [stable(row) for row in run.history]
    assert 0 < len(rows) <= 12
    assert rows == [expected_row(i) for i in range(len(rows))]
    assert run.run_id == RUN_ID
    assert run.config == INIT_CONFIG  # the config updates came after the cut
    assert run.warnings


def test_flipped_byte_skips_damaged_block_and_warns(tmp_path: Path, wandb_bytes: bytes) -> None:
    damaged = bytearray(wandb_bytes)
    # Pick the first row whose data sits in block 1 and corrupt one payload byte.
    row = next(i for i in range(N_STEPS) if wandb_bytes.find(pad(i).encode()) > BLOCK_SIZE + 64)
    pos = offset_in_block(wandb_bytes, pad(row).encode(), block=1) + 50
    damaged[pos] ^= 0xFF
    path = write_copy(tmp_path, bytes(damaged))

    with pytest.warns(UserWarning, match="checksum mismatch") as caught:
        run = read_offline_run(path)

    assert len(caught) == 1  # one summary warning per file
    steps = [r["_step"] // 100 for r in run.history]
    assert row not in steps
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == N_STEPS - 1
    # Every row that survived is exact, on both sides of the damaged block.
    assert [stable(r) for r in run.history] == [expected_row(i) for i in steps]
    assert run.config == FINAL_CONFIG
    assert stable(run.summary) == EXPECTED_SUMMARY
    assert any("checksum mismatch" in w for w in run.warnings)


@pytest.mark.parametrize("content", [b"", b":W&", b"not a wandb file at all\n" * 10])
def test_non_wandb_file_raises_value_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bogus.wandb"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bogus.wandb"):
        read_offline_run(path)


def test_directory_without_run_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run-"):
        read_offline_run(tmp_path)
