"""Evaluate, and film, a saved policy: ``python -m trpo_exp.evaluate <run dir> [key=value ...]``.

    python -m trpo_exp.evaluate runs/2026-11-22/10-00-00_trpo_Hopper-v5_s0_p123
    python -m trpo_exp.evaluate <run dir> episodes=20 deterministic=false
    python -m trpo_exp.evaluate <run dir> video=true                       # MP4s in <run dir>/videos/

Loads checkpoint.pt (``weights_only``) with the run's own config and observation normaliser, runs
``episodes`` episodes on a fresh env and writes the result beside the run (evaluations.jsonl) and on
the terminal. With the defaults (the run's eval.episodes, the deterministic policy, the run's
evaluation seed) the numbers equal the run's own final evaluation. ``video=true`` renders headless
(MuJoCo through EGL) and writes one MP4 per episode; ``wandb=true`` also attaches them to the run's
W&B run. Bad input (no run dir, no checkpoint, a damaged file, a bad key) is one line, exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trpo_exp.util import first_line

USAGE = ("usage: python -m trpo_exp.evaluate <run dir> [episodes=N] [deterministic=true|false] [seed=N] "
         "[video=true] [wandb=true]")
EXIT_USAGE = 2


class EvaluateError(ValueError):
    """A user mistake; ``str(err)`` is one line."""


def parse_options(args: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {"episodes": None, "deterministic": True, "seed": None, "video": False, "wandb": False}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in options:
            raise EvaluateError(f"{arg!r} is not allowed: options are {', '.join(f'{k}=...' for k in options)}")
        if key in ("deterministic", "video", "wandb"):
            if value.lower() not in ("true", "false"):
                raise EvaluateError(f"{key}={value!r} is not allowed: true or false")
            options[key] = value.lower() == "true"
        else:
            if not value.isdigit() or (key == "episodes" and int(value) < 1):
                raise EvaluateError(f"{key}={value!r} is not allowed: a {'positive' if key == 'episodes' else ''} "
                                    f"integer".replace("  ", " "))
            options[key] = int(value)
    return options


def load_agent(run_dir: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(config, policy, normaliser, checkpoint state) of a run dir; EvaluateError for bad input."""
    from trpo_exp import checkpoint
    from trpo_exp.algorithms import get
    from trpo_exp.config import Config, DeviceConfig, EnvConfig, EvalConfig, LoggerConfig, VineConfig
    from trpo_exp.envs.factory import make_eval_env
    from trpo_exp.nets import make_policy
    from trpo_exp.obs_norm import RunningObsNormalizer
    from trpo_exp.record import CHECKPOINT

    if not run_dir.is_dir():
        raise EvaluateError(f"run dir {str(run_dir)!r} is not allowed: no such directory")
    try:
        state = checkpoint.load(run_dir / CHECKPOINT)
    except checkpoint.CheckpointError as err:
        raise EvaluateError(str(err)) from None
    saved = state["config"]
    try:
        algo = dict(saved["algo"])
        schema = get(algo["name"]).schema
        if "vine" in algo:
            algo["vine"] = VineConfig(**algo["vine"])
        config = Config(algo=schema(**algo), env=EnvConfig(**saved["env"]), device=DeviceConfig(type="cpu"),
                        eval=EvalConfig(**saved["eval"]), logger=LoggerConfig(mode="disabled"),
                        seed=saved["seed"], total_steps=saved.get("total_steps"))
    except (KeyError, TypeError, ValueError) as err:
        raise EvaluateError(f"checkpoint {run_dir / CHECKPOINT} holds a config this version cannot use "
                            f"({first_line(err)})") from None
    env = make_eval_env(config.env)
    try:
        policy = make_policy(env.observation_space, env.action_space, config.algo.hidden_sizes,
                             config.algo.activation, config.algo.log_std_init)
    finally:
        env.close()
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as err:
        raise EvaluateError(f"checkpoint {run_dir / CHECKPOINT} does not fit env {config.env.id!r} "
                            f"({first_line(err)})") from None
    shape = env.observation_space.shape
    assert shape is not None
    normalizer = RunningObsNormalizer(shape, config.env.clip_obs, config.env.normalize_obs)
    normalizer.load_state_dict(state["obs_normalizer"])
    return config, policy, normalizer, state


def evaluate_run(run_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    import torch

    from trpo_exp.envs.factory import derive_seeds, make_eval_env
    from trpo_exp.rollout.evaluate import evaluate

    config, policy, normalizer, state = load_agent(run_dir)
    episodes = options["episodes"] or config.eval.episodes
    seed = options["seed"] if options["seed"] is not None else derive_seeds(config.seed, config.env.num_envs + 1)[-1]
    torch.manual_seed(seed)  # stochastic evaluation is reproducible too
    recorder = _VideoRecorder(run_dir / "videos", config) if options["video"] else None
    env = make_eval_env(config.env) if recorder is None else recorder.env
    try:
        result = evaluate(policy, normalizer, env, episodes, seed, torch.device("cpu"),
                          deterministic=options["deterministic"], on_step=recorder.step if recorder else None)
    finally:
        env.close()
    videos = recorder.finish() if recorder is not None else []
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "checkpoint_iteration": state["iteration"],
             "env_steps": state["env_steps"], "episodes": episodes, "seed": seed,
             "deterministic": options["deterministic"], "return_mean": result.mean, "return_std": result.std,
             "returns": list(result.returns), "videos": [str(v) for v in videos]}
    with open(run_dir / "evaluations.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
    if options["wandb"] and videos:
        _attach_to_wandb(run_dir, videos, state["config"])
    return entry


class _VideoRecorder:
    """Headless frames of every episode -> one MP4 each (imageio-ffmpeg)."""

    def __init__(self, out_dir: Path, config: Any):
        import gymnasium as gym

        from trpo_exp.envs.factory import DiscardStepInfo, make_kwargs

        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        kwargs: dict[str, Any] = {**make_kwargs(config.env), "render_mode": "rgb_array"}
        try:
            self.env = DiscardStepInfo(gym.make(config.env.id, **kwargs))
            self.env.reset(seed=0)
            self.env.render()  # fail here, in one line, when a renderer is missing (pygame, EGL)
        except Exception as err:
            raise EvaluateError(f"video=true is not allowed for env.id={config.env.id!r}: it cannot render "
                                f"({first_line(err)})") from None
        self.frames: dict[int, list[Any]] = {}

    def step(self, episode: int) -> None:
        self.frames.setdefault(episode, []).append(self.env.render())

    def finish(self) -> list[Path]:
        import imageio.v2 as imageio

        fps = self.env.metadata.get("render_fps", 30)
        paths = []
        for episode, frames in sorted(self.frames.items()):
            path = self.out_dir / f"episode-{episode:03d}.mp4"
            imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
            paths.append(path)
        return paths


def _attach_to_wandb(run_dir: Path, videos: list[Path], config: dict[str, Any]) -> None:
    """Add the videos to the run's own W&B run (offline: uploaded with the run by ``wandb sync``)."""
    from trpo_exp.record.reader import read_info

    info = read_info(run_dir)
    if not info.get("wandb_run_id"):
        raise EvaluateError(f"wandb=true is not allowed: the run in {run_dir} has no W&B run")
    import wandb

    from trpo_exp.wandb_logger import start_wandb_run, wandb_settings

    # The run's own config and group again: a segment without them reads as an unknown run.
    run = start_wandb_run(id=info["wandb_run_id"], resume="allow", dir=str(run_dir),
                          mode=info.get("wandb_mode") or "offline",
                          project=(config.get("logger") or {}).get("project") or "trpo_exp",
                          group=info.get("group"), name=info.get("name"), config=config,
                          settings=wandb_settings())
    run.log({f"eval/video_{i}": wandb.Video(str(v), format="mp4") for i, v in enumerate(videos)})
    run.finish()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return 0 if argv else EXIT_USAGE
    try:
        entry = evaluate_run(Path(argv[0]), parse_options(argv[1:]))
    except EvaluateError as err:
        print(f"trpo_exp.evaluate: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    kind = "deterministic" if entry["deterministic"] else "stochastic"
    spread = f" +- {entry['return_std']:.1f}" if entry["return_std"] == entry["return_std"] else ""
    print(f"{argv[0]}: {entry['return_mean']:.1f}{spread} over {entry['episodes']} episodes ({kind} policy, seed "
          f"{entry['seed']}, checkpoint at iteration {entry['checkpoint_iteration']}, {entry['env_steps']} env steps)")
    for video in entry["videos"]:
        print(f"  video {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
