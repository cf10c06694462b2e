"""Golden files: short runs whose metrics (time columns aside) and final weights are pinned.

A refactor must leave these bit-identical. A change that alters numbers on purpose says so in its
commit and rewrites the files: ``pytest tests/test_golden.py --update-golden``. The runs use
AVX2 code paths for MKL and torch (see conftest.PORTABLE_NUMERICS_ENV) so the files hold on any
x86-64 machine with AVX2.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from conftest import PORTABLE_NUMERICS_ENV, run_cli
from trpo_exp.record import TIME_COLUMNS

GOLDEN = Path(__file__).resolve().parent / "golden"

CASES = {
    "trpo-cartpole": ["algo=trpo", "env=cartpole", "total_steps=6144", "eval.every=1", "eval.episodes=2"],
    "pg-cartpole": ["algo=pg", "env=cartpole", "total_steps=6144", "eval.every=2", "eval.episodes=2"],
    "npg-pendulum": ["algo=npg", "env=pendulum", "total_steps=4096", "algo.fvp_subsample=0.3",
                     "eval.every=2", "eval.episodes=1"],
    "vine-cartpole": ["algo=trpo_vine", "env=cartpole", "total_steps=6000", "algo.steps_per_iter=256",
                      "algo.vine.num_states=8", "algo.vine.rollout_len=10", "eval.every=2", "eval.episodes=1"],
    "trpo-hopper": ["algo=trpo", "env=hopper", "total_steps=4096", "env.num_envs=2", "algo.steps_per_iter=1024",
                    "eval.every=2", "eval.episodes=1"],
}
WEIGHTS = ("policy", "value_net")


def metrics_without_time(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def final_weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    return {part: ckpt[part] for part in WEIGHTS}


@pytest.mark.parametrize("case", sorted(CASES))
def test_short_run_matches_its_golden_files(tmp_path, request, case):
    run_dir = tmp_path / "run"
    run_cli([*CASES[case], "seed=7", "logger=none"], run_dir=run_dir, env=PORTABLE_NUMERICS_ENV)
    golden = GOLDEN / case
    if request.config.getoption("--update-golden"):
        golden.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "metrics.csv", golden / "metrics.csv")
        torch.save(final_weights(run_dir), golden / "weights.pt")
        pytest.skip(f"golden files of {case} rewritten")
    expected_rows = metrics_without_time(golden / "metrics.csv")
    rows = metrics_without_time(run_dir / "metrics.csv")
    assert len(rows) == len(expected_rows), f"{len(rows)} iterations, golden has {len(expected_rows)}"
    for got, want in zip(rows, expected_rows):
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        assert not diff and set(got) == set(want), f"iteration {want.get('iteration')}: {diff}"
    expected = torch.load(golden / "weights.pt", weights_only=True)
    weights = final_weights(run_dir)
    for part in WEIGHTS:
        assert list(weights[part]) == list(expected[part]), part
        for name, tensor in expected[part].items():
            got = weights[part][name]
            assert torch.equal(got, tensor), \
                f"{part}.{name} differs (max abs diff {(got - tensor).abs().max().item():.3g})"
