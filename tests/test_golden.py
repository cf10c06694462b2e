"""Golden files: short runs whose metrics (time columns aside) and final weights are pinned.

A refactor must leave these bit-identical. A change that alters numbers on purpose says so in its
commit and rewrites the files: ``pytest tests/test_golden.py --update-golden`` (on each numerics
class at hand; see below).

Bit-identity holds only between machines that compute alike (docs: Reproducibility). The runs pin
MKL and torch to their AVX2 code paths (``trpo_exp.numerics.PINNED_AVX2_ENV``), which makes Intel
machines agree with each other, but an AMD machine gives other last bits with the same settings. So
the files are kept per *numerics class*: ``tests/golden/<class>/numerics.json`` says which machines
the class is for (CPU vendor, torch version, kernel settings, and where known the fingerprint of
``python -m trpo_exp.numerics``), and ``tests/golden/<class>/<case>/`` holds the files.

- A machine of a stored class is held to that class's files bit for bit.
- A machine of no stored class runs each case twice: the two runs must be bit-identical (the
  same-machine promise), and both must agree with the stored class closest to it within
  :data:`METRIC_RTOL` / :data:`WEIGHT_RTOL` (the cross-vendor differences measured on these cases are
  1e-7 to 2e-4 relative; a change of algorithm moves them by far more). ``--update-golden`` on such
  a machine adds its class.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Optional

import pytest
import torch

from conftest import ROOT, cli_env, run_cli
from trpo_exp.numerics import PINNED_AVX2_ENV
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
METRIC_RTOL = 2e-3  # relative, per metric cell (absolute below 1e-9)
WEIGHT_RTOL = 1e-2  # max |difference| over max |weight|, per tensor

# A numerics setting no class is stored for, on either vendor: MKL's vendor-neutral code path.
PERTURBED_ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}


@cache
def machine_numerics(env_items: tuple[tuple[str, str], ...]) -> dict:
    """This machine's numerics description (fingerprint included) under the given settings."""
    out = subprocess.run([sys.executable, "-m", "trpo_exp.numerics"], cwd=ROOT, env=cli_env(dict(env_items)),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def stored_classes() -> dict[str, dict]:
    return {d.name: json.loads((d / "numerics.json").read_text())
            for d in sorted(GOLDEN.iterdir()) if (d / "numerics.json").exists()}


def class_matches(spec: dict, found: dict) -> bool:
    """``spec`` (a numerics.json) covers the machine described by ``found``: same vendor, torch
    and kernel settings, and the same fingerprint where the class records one."""
    return (spec["cpu_vendor"] == found["cpu_vendor"] and spec["torch"] == found["torch"]
            and all(found.get(k) == v for k, v in spec["env"].items())
            and spec.get("fingerprint") in (None, found["fingerprint"]))


def matching_class(found: dict) -> Optional[str]:
    return next((name for name, spec in stored_classes().items() if class_matches(spec, found)), None)


def closest_class(found: dict) -> str:
    """The class to compare an unknown machine with: one of the same vendor if any."""
    classes = stored_classes()
    assert classes, f"no golden class under {GOLDEN}"
    return next((n for n, s in classes.items() if s["cpu_vendor"] == found["cpu_vendor"]), next(iter(classes)))


def metrics_without_time(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def final_weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    return {part: ckpt[part] for part in WEIGHTS}


def stored_weights(directory: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The final weights kept in a golden dir (weights.pt) or a run dir (checkpoint.pt)."""
    if (directory / "weights.pt").exists():
        return torch.load(directory / "weights.pt", weights_only=True)
    return final_weights(directory)


def run_case(case: str, run_dir: Path, env: dict[str, str]) -> Path:
    run_cli([*CASES[case], "seed=7", "logger=none"], run_dir=run_dir, env=env)
    return run_dir


def assert_bit_identical(run_dir: Path, golden: Path) -> None:
    expected_rows = metrics_without_time(golden / "metrics.csv")
    rows = metrics_without_time(run_dir / "metrics.csv")
    assert len(rows) == len(expected_rows), f"{len(rows)} iterations, golden has {len(expected_rows)}"
    for got, want in zip(rows, expected_rows):
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        assert not diff and set(got) == set(want), f"iteration {want.get('iteration')}: {diff}"
    expected = stored_weights(golden)
    weights = final_weights(run_dir)
    for part in WEIGHTS:
        assert list(weights[part]) == list(expected[part]), part
        for name, tensor in expected[part].items():
            got = weights[part][name]
            assert torch.equal(got, tensor), \
                f"{part}.{name} differs (max abs diff {(got - tensor).abs().max().item():.3g})"


def cells_close(got: str, want: str) -> bool:
    if got == want:
        return True
    try:
        a, b = float(got), float(want)
    except ValueError:
        return False
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= METRIC_RTOL * max(abs(a), abs(b), 1e-9 / METRIC_RTOL)


def assert_close(run_dir: Path, golden: Path) -> None:
    expected_rows = metrics_without_time(golden / "metrics.csv")
    rows = metrics_without_time(run_dir / "metrics.csv")
    assert len(rows) == len(expected_rows), f"{len(rows)} iterations, golden has {len(expected_rows)}"
    for got, want in zip(rows, expected_rows):
        assert set(got) == set(want), f"columns differ: {set(got) ^ set(want)}"
        far = {k: (got[k], v) for k, v in want.items() if not cells_close(got[k], v)}
        assert not far, f"iteration {want.get('iteration')}: beyond rtol {METRIC_RTOL}: {far}"
    expected = stored_weights(golden)
    weights = final_weights(run_dir)
    for part in WEIGHTS:
        assert list(weights[part]) == list(expected[part]), part
        for name, tensor in expected[part].items():
            gap = (weights[part][name] - tensor).abs().max().item() / max(tensor.abs().max().item(), 1e-12)
            assert gap <= WEIGHT_RTOL, f"{part}.{name}: max diff {gap:.3g} of its scale (allowed {WEIGHT_RTOL})"


def assert_same_run(first: Path, second: Path) -> None:
    """Two runs of one case on this machine: bit-identical (metrics time aside, weights)."""
    assert_bit_identical(second, first)


def write_golden(run_dir: Path, found: dict, case: str) -> Path:
    name = matching_class(found) or f"{found['cpu_vendor'].lower()}-{found['fingerprint'][:8]}"
    class_dir = GOLDEN / name
    if not (class_dir / "numerics.json").exists():
        class_dir.mkdir(parents=True, exist_ok=True)
        spec = {"cpu_vendor": found["cpu_vendor"], "torch": found["torch"], "env": PINNED_AVX2_ENV,
                "fingerprint": found["fingerprint"], "cpu_flags": found["cpu_flags"]}
        (class_dir / "numerics.json").write_text(json.dumps(spec, indent=2) + "\n")
    golden = class_dir / case
    golden.mkdir(exist_ok=True)
    shutil.copyfile(run_dir / "metrics.csv", golden / "metrics.csv")
    torch.save(final_weights(run_dir), golden / "weights.pt")
    return golden


def check_unknown_machine(case: str, tmp_path: Path, env: dict[str, str], found: dict) -> None:
    first = run_case(case, tmp_path / "first", env)
    second = run_case(case, tmp_path / "second", env)
    assert_same_run(first, second)
    assert_close(first, GOLDEN / closest_class(found) / case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_short_run_matches_its_golden_files(tmp_path, request, case):
    found = machine_numerics(tuple(PINNED_AVX2_ENV.items()))
    name = matching_class(found)
    if request.config.getoption("--update-golden"):
        written = write_golden(run_case(case, tmp_path / "run", PINNED_AVX2_ENV), found, case)
        pytest.skip(f"golden files of {case} rewritten in {written}")
    if name is None:  # no files were written with this machine's numerics
        check_unknown_machine(case, tmp_path, PINNED_AVX2_ENV, found)
    else:
        assert_bit_identical(run_case(case, tmp_path / "run", PINNED_AVX2_ENV), GOLDEN / name / case)


def test_every_golden_class_holds_every_case():
    classes = stored_classes()
    assert classes
    for name, spec in classes.items():
        assert set(spec) >= {"cpu_vendor", "torch", "env"}, name
        for case in CASES:
            assert (GOLDEN / name / case / "metrics.csv").exists() and (GOLDEN / name / case / "weights.pt").exists()


def test_a_machine_of_no_stored_class_is_checked_twice_and_within_tolerance(tmp_path):
    """The fallback path, shown here with a kernel setting no class was written with: it is no
    class's numerics, yet the suite passes (same-machine identity, cross-class tolerance)."""
    perturbed = {**PINNED_AVX2_ENV, **PERTURBED_ENV}
    found = machine_numerics(tuple(perturbed.items()))
    assert found["fingerprint"] != machine_numerics(tuple(PINNED_AVX2_ENV.items()))["fingerprint"]
    assert matching_class(found) is None
    check_unknown_machine("pg-cartpole", tmp_path, perturbed, found)


def test_the_tolerance_check_still_catches_a_change_of_numbers(tmp_path):
    """A run with another setting (a 10% larger value-fit step) is not 'close' to the files."""
    found = machine_numerics(tuple(PINNED_AVX2_ENV.items()))
    golden = GOLDEN / (matching_class(found) or closest_class(found)) / "pg-cartpole"
    run_dir = tmp_path / "changed"
    run_cli([*CASES["pg-cartpole"], "seed=7", "logger=none", "algo.vf_lr=0.0033"], run_dir=run_dir,
            env=PINNED_AVX2_ENV)
    with pytest.raises(AssertionError, match="beyond rtol|max diff"):
        assert_close(run_dir, golden)
