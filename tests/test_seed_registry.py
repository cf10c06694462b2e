"""The seed protocol: the registry knows every seed used before, fresh seeds are never among them,
and the returns benchmark refuses to call a run set on used seeds a confirmation."""

import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from benchmarks import seed_registry  # noqa: E402


def test_fresh_seeds_are_never_registered_for_any_requested_env():
    rows = [{"env": "hopper", "seed": str(s), "use": "tuning", "source": "x"} for s in (10_000, 10_002)]
    rows.append({"env": "walker2d", "seed": "10001", "use": "reported", "source": "y"})
    assert seed_registry.fresh(["Hopper-v5", "walker2d"], 3, rows) == [10_003, 10_004, 10_005]
    assert seed_registry.fresh(["halfcheetah"], 2, rows) == [10_000, 10_001]


def test_the_committed_registry_holds_the_seeds_the_presets_were_chosen_on():
    for env, seeds in {"hopper": range(100, 105), "walker2d": range(100, 105), "cartpole": range(10)}.items():
        assert set(seeds) <= seed_registry.used(env), env


def test_registering_adds_each_env_seed_and_source_once(tmp_path):
    path = tmp_path / "registry.csv"
    assert seed_registry.register([("Hopper-v5", 7), ("hopper", 7)], "reported", "runs/a", path) == 1
    assert seed_registry.register([("hopper", 7)], "reported", "runs/a", path) == 0
    assert seed_registry.used("hopper", seed_registry.read(path)) == {7}


def test_a_confirmation_on_used_seeds_is_refused_in_one_line():
    result = subprocess.run([sys.executable, "benchmarks/returns.py", "--envs", "hopper", "--seeds", "100", "10000",
                             "--confirm", "--out", "/nonexistent/never-written"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "--confirm is not allowed" in last and "hopper 100" in last, result.stderr
