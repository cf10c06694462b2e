"""Configuration tree and command-line error handling.

1. Every option of every config group (found by globbing conf/, so new presets are covered
   automatically) composes with Hydra's compose API and passes ``trpo_exp.app.to_config``,
   and the values the file sets are the values in the composed config.
2. Bad input through the real CLI (subprocesses, run in parallel): exit status 2, exactly one
   non-empty line on stderr naming the key and the bad value, no traceback, no training work.
3. The MuJoCo-missing check of ``check_env_id``.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import trpo_exp.app as cli
from conftest import run_cli
from trpo_exp.algorithms import names as algorithm_names
from trpo_exp.config import Config, ConfigError, register_configs
from trpo_exp.envs import factory

register_configs()
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
HAS_CUDA = torch.cuda.is_available()


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str], conf_dir: Path = CONF_DIR):
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=False)


def _package(path: Path, group: str) -> str:
    """The package a group file's body lands in ('' = global), from its ``# @package`` header."""
    for line in path.read_text().splitlines():
        m = re.match(r"\s*#\s*@package\s+(\S+)", line)
        if m:
            pkg = m.group(1).replace("_group_", group)
            return "" if pkg == "_global_" else pkg.replace("_global_.", "")
        if line.strip() and not line.lstrip().startswith("#"):
            break
    return group  # Hydra's default package: the group path


def _leaves(node, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def _file_values(path: Path, group: str) -> dict:
    """Leaf values a group file sets, as full keys of the composed config (interpolations and
    hydra.* are left out). A defaults-list entry naming another file of the same group (an npg
    preset that takes trpo's) contributes that file's values first, as Hydra applies it first."""
    body = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    out = {}
    for entry in body.pop("defaults", None) or []:
        if isinstance(entry, str) and (path.parent / f"{entry}.yaml").exists():
            out.update(_file_values(path.parent / f"{entry}.yaml", group))
    pkg = _package(path, group)
    for key, value in _leaves(body, pkg):
        if key.startswith("hydra.") or (isinstance(value, str) and "${" in value):
            continue
        out[key] = value
    return out


def _assert_applied(cfg, path: Path, group: str) -> None:
    expected = _file_values(path, group)
    got = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
           for k, v in ((k, OmegaConf.select(cfg, k)) for k in expected)}
    assert got == expected, f"{path.relative_to(CONF_DIR)}: composed values differ from the file"


# --------------------------------------------------------------------------------------------
# 1. every config group option composes and validates
# --------------------------------------------------------------------------------------------

# Every group directory under conf/ (algo, env, device, experiment, logger, ... as they are
# added); algo_env is special (chosen by the algo/env pair, not on its own) and tested below.
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "algo_env")
GROUP_OPTIONS = [(g, n) for g in GROUPS for n in _options(g)]


def test_groups_discovered():
    assert {"algo", "env", "device"} <= set(GROUPS)
    assert {"pg", "npg", "trpo"} <= set(_options("algo"))


@pytest.mark.parametrize("group,name", GROUP_OPTIONS, ids=[f"{g}={n}" for g, n in GROUP_OPTIONS])
def test_group_option(group, name):
    path = CONF_DIR / group / f"{name}.yaml"
    cfg = _compose([f"{group}={name}", *_without_pair_preset(group, name)])
    _assert_applied(cfg, path, group)
    if group == "device" and name == "cuda" and not HAS_CUDA:
        with pytest.raises(ConfigError, match="cuda"):
            cli.to_config(cfg)
        return
    config = cli.to_config(cfg)  # schema checks + check_env_id (MuJoCo importable) + device
    assert isinstance(config, Config)
    assert config.algo.name in algorithm_names()
    if group == "env":
        assert config.budget == config.env.default_total_steps


def _without_pair_preset(group: str, name: str) -> list[str]:
    """A partner choice with no conf/algo_env/<algo>_<env>.yaml, so the option's own values are
    what gets composed (a pair preset is applied after them and may override them)."""
    if group not in ("algo", "env"):
        return []
    other = "env" if group == "algo" else "algo"
    for candidate in _options(other):
        algo, env = (name, candidate) if group == "algo" else (candidate, name)
        if not (CONF_DIR / "algo_env" / f"{algo}_{env}.yaml").exists():
            return [f"{other}={candidate}"]
    raise AssertionError(f"every {other} has a pair preset with {group}={name}")


def _split_algo_env(stem: str) -> tuple[str, str]:
    for algo in sorted(_options("algo"), key=len, reverse=True):
        if stem.startswith(algo + "_"):
            return algo, stem[len(algo) + 1:]
    raise AssertionError(f"conf/algo_env/{stem}.yaml: name is not <algo>_<env> with a known algo")


@pytest.mark.parametrize("stem", _options("algo_env"))
def test_algo_env_option(stem):
    algo, env = _split_algo_env(stem)
    assert env in _options("env"), f"conf/algo_env/{stem}.yaml: no env preset {env!r}"
    cfg = _compose([f"algo={algo}", f"env={env}"])
    cli.to_config(cfg)
    _assert_applied(cfg, CONF_DIR / "algo_env" / f"{stem}.yaml", "algo_env")


def _tree_with(tmp_path: Path, files: dict[str, str]) -> Path:
    """A copy of conf/ with extra files, for testing the defaults-list mechanics."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    for rel, text in files.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    return conf


AE_GROUP_KEYS = "# @package _global_\nalgo:\n  max_kl: 0.0234\nenv:\n  num_envs: 3\n"


def test_algo_env_mechanism(tmp_path):
    """conf/algo_env may hold no presets yet: check with a synthetic one that
    ``optional algo_env: ${algo}_${env}`` picks the file for the chosen pair, and only that pair."""
    conf = _tree_with(tmp_path, {"algo_env/trpo_acrobot.yaml": AE_GROUP_KEYS})
    cfg = _compose(["algo=trpo", "env=acrobot"], conf)
    assert (cfg.algo.max_kl, cfg.env.num_envs) == (0.0234, 3)
    cli.to_config(cfg)
    other = _compose(["algo=npg", "env=acrobot"], conf)
    assert (other.algo.max_kl, other.env.num_envs) == (0.01, 4)
    # a command-line override still wins over the pair preset
    cfg = _compose(["algo=trpo", "env=acrobot", "algo.max_kl=0.05"], conf)
    assert cfg.algo.max_kl == 0.05


def test_algo_env_top_level_keys_applied(tmp_path):
    conf = _tree_with(tmp_path, {
        "algo_env/trpo_acrobot.yaml": "# @package _global_\ntotal_steps: 12345\n"})
    cfg = _compose(["algo=trpo", "env=acrobot"], conf)
    assert cfg.total_steps == 12345


def test_experiment_mechanism(tmp_path):
    """Same for conf/experiment: a global preset applies last and may switch group options."""
    conf = _tree_with(tmp_path, {"experiment/quick.yaml": (
        "# @package _global_\ndefaults:\n  - override /algo: npg\n  - override /env: pendulum\n"
        "seed: 7\ntotal_steps: 4096\n")})
    cfg = _compose(["experiment=quick"], conf)
    config = cli.to_config(cfg)
    assert (config.algo.name, config.env.id, config.seed, config.budget) == ("npg", "Pendulum-v1", 7, 4096)


# --------------------------------------------------------------------------------------------
# 2. bad input through the real CLI
# --------------------------------------------------------------------------------------------

# (override, key that must be named, bad value that must be shown)
BAD_INPUT = [
    ("algo.max_kl=0", "algo.max_kl", "0"),
    ("algo.max_kl=-1", "algo.max_kl", "-1"),
    ("algo.cg_damping=-0.1", "algo.cg_damping", "-0.1"),
    ("algo.gamma=1.5", "algo.gamma", "1.5"),
    ("algo.gamma=0", "algo.gamma", "0"),
    ("algo.gae_lambda=1.01", "algo.gae_lambda", "1.01"),
    ("total_steps=0", "total_steps", "0"),
    ("total_steps=-5", "total_steps", "-5"),
    ("algo.cg_iters=0", "algo.cg_iters", "0"),
    ("env.id=NoSuchEnv-v0", "env.id", "NoSuchEnv-v0"),
    ("algo.foo=1", "algo.foo", "foo"),
    ("seed=abc", "seed", "abc"),
    ("algo=sac", "algo", "sac"),
    ("env.num_envs=0", "env.num_envs", "0"),
    ("algo.backtrack_coeff=1.0", "algo.backtrack_coeff", "1.0"),
    ("algo.fvp_subsample=0", "algo.fvp_subsample", "0"),
    ("algo.vf_adam_eps=0", "algo.vf_adam_eps", "0"),
    # vine: an env that cannot restore its state, and the rollout-set sizes
    ("algo=trpo_vine env.id=FrozenLake-v1", "env.id", "FrozenLake-v1"),
    ("algo=trpo_vine algo.vine.num_actions=1", "algo.vine.num_actions", "1"),
    ("algo=trpo_vine algo.vine.rollout_len=0", "algo.vine.rollout_len", "0"),
    ("algo=trpo_vine algo.vine.num_states=0", "algo.vine.num_states", "0"),
    # a key the chosen algorithm does not have (each algorithm its own schema)
    ("algo=pg algo.max_kl=0.02", "algo.max_kl", "PGConfig"),
    ("algo=npg algo.backtrack_iters=3", "algo.backtrack_iters", "NPGConfig"),
    ("algo=trpo algo.vine.num_states=8", "algo.vine", "TRPOConfig"),
    ("algo=npg_fixed algo.max_kl=0.01", "algo.max_kl", "NPGFixedConfig"),
    ("algo=npg_fixed algo.step_size=0", "algo.step_size", "0"),
    ("algo=base_trpo", "algo", "base_trpo"),
    # gym.make's keyword arguments: one the env does not take
    ("env=pendulum +env.kwargs.no_such_arg=1", "env.kwargs", "{'no_such_arg': 1}"),
    # more branch processes where nothing branches
    ("algo=trpo branch_processes=2", "branch_processes", "2"),
    # a key that only the swept choices have: Hydra checks it against the config without them
    ("-m algo=npg_fixed,pg algo.step_size=0.5", "algo.step_size", "multirun of its own"),
]
UNKNOWN_KEYS = {"algo.foo=1", "algo=pg algo.max_kl=0.02", "algo=npg algo.backtrack_iters=3",
                "algo=trpo algo.vine.num_states=8", "algo=npg_fixed algo.max_kl=0.01",
                "-m algo=npg_fixed,pg algo.step_size=0.5"}
if not HAS_CUDA:
    BAD_INPUT.append(("device=cuda", "device", "cuda"))
if importlib.util.find_spec("Box2D") is None:  # registered with gymnasium, but not creatable here
    BAD_INPUT.append(("env.id=LunarLander-v3", "env.id", "LunarLander-v3"))

FULL_ERROR = "HYDRA_FULL_ERROR=1 algo.max_kl=-1"


def _cli(args: list[str], workdir: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return run_cli(args, run_dir=workdir / "run", cwd=workdir, env=extra_env, timeout=300, check=False)


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Every bad-input case, plus the HYDRA_FULL_ERROR one, run concurrently (each interpreter
    start with torch costs ~3-4 s of CPU; it is nearly all import time), once per test session:
    under pytest-xdist the first worker to get here runs the batch and stores the results in the
    session's shared temporary directory, the others wait on its lock and read them."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the directory all workers of this session share
    base = shared / "cli_bad_input"
    base.mkdir(exist_ok=True)
    jobs = {case[0]: (case[0].split(), base / f"c{i}", None) for i, case in enumerate(BAD_INPUT)}
    jobs[FULL_ERROR] = (["algo.max_kl=-1"], base / "full_error", {"HYDRA_FULL_ERROR": "1"})
    with open(base / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the first worker has written the results
        results = base / "results.json"
        if not results.exists():
            with ThreadPoolExecutor(max_workers=4) as pool:
                futures = {name: pool.submit(_cli, *job) for name, job in jobs.items()}
                done = {name: {"returncode": f.result().returncode, "stderr": f.result().stderr}
                        for name, f in futures.items()}
            results.write_text(json.dumps(done))
        done = json.loads(results.read_text())
    return {name: (subprocess.CompletedProcess([], d["returncode"], "", d["stderr"]), jobs[name][1])
            for name, d in done.items()}


@pytest.mark.xdist_group("cli")
@pytest.mark.parametrize("override,key,value", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(cli_results, override, key, value):
    proc, workdir = cli_results[override]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert key in lines[0] and value in lines[0], lines[0]
    if override not in UNKNOWN_KEYS and key not in ("seed", "algo", "device"):  # schema checks: key=repr(value)
        assert re.search(rf"{re.escape(key)}='?{re.escape(value)}", lines[0]), lines[0]
    assert not list(workdir.rglob("metrics.csv")), "training started"
    assert not list(workdir.rglob("checkpoint.pt")), "training started"
    assert not (workdir / "runs").exists()
    if override == "algo=sac":
        for option in ("pg", "npg", "trpo"):
            assert re.search(rf"\b{option}\b", lines[0]), lines[0]
        assert "base_algo" not in lines[0]


def test_help_lists_the_user_facing_options_only(tmp_path):
    out = run_cli(["--help"], cwd=tmp_path).stdout
    assert "algo: npg, npg_fixed, pg, trpo, trpo_vine" in out and "hydra/launcher:" in out
    assert "base_" not in out and "trial" not in out and "algo_env" not in out


@pytest.mark.xdist_group("cli")
def test_full_error_shows_traceback(cli_results):
    proc, workdir = cli_results[FULL_ERROR]
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "algo.max_kl" in proc.stderr
    assert not list(workdir.rglob("metrics.csv"))


# --------------------------------------------------------------------------------------------
# 3. MuJoCo missing
# --------------------------------------------------------------------------------------------

def test_mujoco_missing_is_a_config_error(monkeypatch):
    """MuJoCo is installed in this venv, so the missing case is simulated. Uninstalling it or
    poisoning sys.modules would affect other tests and gymnasium's own imports; instead
    ``find_spec`` is replaced only as seen from the factory module (``factory.importlib.util``
    is the shared module, so the fake delegates every other name to the real function). This
    tests exactly the check's logic: a MuJoCo entry point + no importable ``mujoco`` -> one-line
    ConfigError; it does not test that gymnasium itself fails without MuJoCo."""
    real = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        return None if name == "mujoco" else real(name, *args, **kwargs)

    monkeypatch.setattr(factory.importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(ConfigError, match="MuJoCo") as info:
        factory.check_env_id("Hopper-v5")
    assert "Hopper-v5" in str(info.value) and "\n" not in str(info.value)
    factory.check_env_id("CartPole-v1")  # classic-control envs do not need it


def test_mujoco_present_passes():
    if importlib.util.find_spec("mujoco") is None:
        pytest.skip("mujoco not installed here")
    factory.check_env_id("Hopper-v5")


@pytest.mark.xdist_group("cli")
def test_vine_on_an_env_without_snapshots_says_why_and_what_to_use(cli_results):
    proc, _ = cli_results["algo=trpo_vine env.id=FrozenLake-v1"]
    assert "vine sampling needs a resettable simulator (use algo=trpo)" in proc.stderr


def test_env_kwargs_reach_every_env_a_run_makes():
    """env.kwargs go to gym.make for the training vector env and the evaluation/branch envs alike:
    Ant-v5 without its 78 contact-force entries observes 27 numbers, not 105."""
    from trpo_exp.config import EnvConfig
    from trpo_exp.envs.factory import make_eval_env, make_vector_env

    cfg = EnvConfig(id="Ant-v5", num_envs=2, kwargs={"include_cfrc_ext_in_observation": False})
    envs, env = make_vector_env(cfg, [1, 2]), make_eval_env(cfg)
    try:
        assert envs.single_observation_space.shape == env.observation_space.shape == (27,)
    finally:
        envs.close()
        env.close()
    default = make_eval_env(EnvConfig(id="Ant-v5"))
    assert default.observation_space.shape == (105,)
    default.close()
