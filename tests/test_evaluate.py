"""python -m trpo_exp.evaluate: a saved policy evaluated (equal to the run's own final evaluation when
the settings match), filmed headless, and one-line errors for bad input."""

from __future__ import annotations

import ctypes.util
import json

import pytest

from conftest import read_run_json, run_cli


@pytest.fixture(scope="module")
def hopper_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    run_cli(["algo=trpo", "env=hopper", "total_steps=4096", "env.num_envs=2", "algo.steps_per_iter=1024",
             "eval.episodes=3", "logger=none"], run_dir=run_dir)
    return run_dir


def last_entry(run_dir):
    return json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])


def test_default_evaluation_equals_the_runs_final_evaluation(hopper_run):
    result = run_cli([str(hopper_run)], module="trpo_exp.evaluate")
    entry, info = last_entry(hopper_run), read_run_json(hopper_run)
    assert entry["return_mean"] == info["eval_return_mean"] and entry["episodes"] == 3
    assert entry["return_std"] == info["eval_return_std"] and entry["deterministic"]
    assert f"{info['eval_return_mean']:.1f}" in result.stdout


def test_stochastic_evaluation_differs_and_is_reproducible(hopper_run):
    run_cli([str(hopper_run), "deterministic=false", "episodes=2"], module="trpo_exp.evaluate")
    first = last_entry(hopper_run)
    run_cli([str(hopper_run), "deterministic=false", "episodes=2"], module="trpo_exp.evaluate")
    assert last_entry(hopper_run)["returns"] == first["returns"] and not first["deterministic"]


def test_video_is_an_mp4_of_the_episode(hopper_run):
    import imageio.v2 as imageio

    run_cli([str(hopper_run), "episodes=1", "video=true"], module="trpo_exp.evaluate")
    (video,) = last_entry(hopper_run)["videos"]
    reader = imageio.get_reader(video)
    frame = reader.get_data(0)
    assert video.endswith(".mp4") and reader.count_frames() > 5 and frame.ndim == 3 and frame.std() > 0


@pytest.mark.parametrize("case", ["no dir", "no checkpoint", "corrupt checkpoint", "bad option"])
def test_bad_input_is_one_line(tmp_path, hopper_run, case):
    args = {"no dir": [str(tmp_path / "missing")], "no checkpoint": [str(tmp_path)],
            "bad option": [str(hopper_run), "episodes=zero"]}.get(case)
    if case == "corrupt checkpoint":
        (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
        args = [str(tmp_path)]
    result = run_cli(args, module="trpo_exp.evaluate", check=False)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("trpo_exp.evaluate: error:"), \
        result.stderr


@pytest.mark.skipif(bool(ctypes.util.find_library("OSMesa")), reason="OSMesa is installed: MUJOCO_GL=osmesa works")
def test_mujoco_gl_backend_not_installed_is_one_line(hopper_run):
    log = hopper_run / "evaluations.jsonl"
    before = log.read_text() if log.exists() else ""
    result = run_cli([str(hopper_run), "episodes=1", "video=true"], module="trpo_exp.evaluate",
                     env={"MUJOCO_GL": "osmesa"}, check=False)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("trpo_exp.evaluate: error:"), \
        result.stderr
    assert all(part in lines[0] for part in ("MUJOCO_GL='osmesa'", "video could not be rendered", "MUJOCO_GL=egl"))
    assert (log.read_text() if log.exists() else "") == before
