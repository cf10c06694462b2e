"""Same config + same seed -> identical metrics, bit for bit, in two separate processes (CPU)."""

import csv
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import run_cli as _run_cli
from trpo_exp.record import TIME_COLUMNS


def run_cli(run_dir, overrides):
    _run_cli(overrides, run_dir=run_dir)
    return run_dir


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


CASES = {
    "trpo-cartpole": ["algo=trpo", "env=cartpole", "total_steps=6144", "eval.every=1", "eval.episodes=2"],
    "npg-pendulum": ["algo=npg", "env=pendulum", "total_steps=4096", "algo.fvp_subsample=0.3",
                     "eval.every=2", "eval.episodes=1"],
    "trpo-hopper": ["algo=trpo", "env=hopper", "total_steps=4096", "env.num_envs=2", "algo.steps_per_iter=1024",
                    "eval.every=2", "eval.episodes=1"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_give_identical_metrics(tmp_path, case):
    overrides = CASES[case] + ["seed=7"]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda d: run_cli(tmp_path / d, overrides), ["a", "b"])
    rows_a, rows_b = read_metrics(a), read_metrics(b)
    assert len(rows_a) >= 2
    assert rows_a == rows_b
    ckpt_a = torch.load(a / "checkpoint.pt", weights_only=False)
    ckpt_b = torch.load(b / "checkpoint.pt", weights_only=False)
    for key in ckpt_a["policy"]:
        assert torch.equal(ckpt_a["policy"][key], ckpt_b["policy"][key])


def test_a_different_seed_gives_different_metrics(tmp_path):
    base = CASES["trpo-cartpole"]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda args: run_cli(tmp_path / args[0], base + [f"seed={args[1]}"]), [("a", 1), ("b", 2)])
    assert read_metrics(a) != read_metrics(b)
