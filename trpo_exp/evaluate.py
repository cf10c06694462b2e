"""Evaluate, and film, a saved policy: ``python -m trpo_exp.evaluate <run dir> [key=value ...]``.

    python -m trpo_exp.evaluate runs/2026-11-22/10-00-00_trpo_Hopper-v5_s0_p123
    python -m trpo_exp.evaluate <run dir> episodes=20 deterministic=false
    python -m trpo_exp.evaluate <run dir> video=true                       # MP4s in <run dir>/videos/

Loads checkpoint.pt (``weights_only``) with the run's own config and observation normaliser, runs
``episodes`` episodes on a fresh env and writes the result beside the run (evaluations.jsonl) and on
the terminal. With the defaults (the run's eval.episodes, the deterministic policy, the run's
evaluation seed) the numbers equal the run's own final evaluation. ``video=true`` renders headless
(MuJoCo through EGL) and writes one MP4 per episode; ``wandb=true`` also attaches them to the run's
W&B run. Bad input (no run dir, no checkpoint, a damaged file or one that does not fit its env, a bad
key or value, a MUJOCO_GL backend that is not installed, an evaluations.jsonl that cannot be written) is
one line on stderr, exit status 2, before any episode runs. A result that still cannot be written after
the episodes is printed on stdout as JSON (so it is not lost), with one line on stderr, exit status 1.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from io import FileIO
from pathlib import Path
from typing import Any, Optional

from trpo_exp.util import first_line

MAX_EPISODES = 100_000
"""More is a typo: at the shortest episodes it is hours of evaluation, and Hopper's 1000 steps days."""
USAGE = (f"usage: python -m trpo_exp.evaluate <run dir> [episodes=1..{MAX_EPISODES}] [deterministic=true|false] "
         "[seed=0..4294967295] [video=true] [wandb=true]")
EXIT_USAGE = 2
EXIT_NOT_SAVED = 1
EVALUATIONS = "evaluations.jsonl"


class EvaluateError(ValueError):
    """A user mistake; ``str(err)`` is one line."""


class NotSavedError(RuntimeError):
    """The evaluation ran but its entry could not be appended to evaluations.jsonl."""

    def __init__(self, message: str, entry: dict[str, Any]):
        super().__init__(message)
        self.entry = entry


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
            options[key] = parse_int(key, value, *_int_range(key))
    return options


def _int_range(key: str) -> tuple[int, int]:
    from trpo_exp.config import MAX_SEED  # the seeds training accepts (numpy's global seed is 32-bit)

    return (1, MAX_EPISODES) if key == "episodes" else (0, MAX_SEED)


def parse_int(key: str, value: str, low: int, high: int) -> int:
    """``value`` as an integer in [low, high]; EvaluateError otherwise. ASCII digits only: str.isdigit
    accepts '²' (which int() refuses) and '٣' (which int() reads as 3). Over 20 significant digits is
    out of range anyway, and int() refuses strings of more than 4300 digits with a ValueError."""
    digits = value.isascii() and value.isdigit() and len(value.lstrip("0")) <= 20
    number = int(value) if digits else None
    if number is None or not low <= number <= high:
        shown = value if len(value) <= 40 else value[:40] + "..."  # a line, not a screenful of digits
        raise EvaluateError(f"{key}={shown!r} is not allowed: an integer in [{low}, {high}]")
    return number


def load_mujoco(video: bool) -> None:
    """Import MuJoCo before anything else does. On import it loads the OpenGL backend that MUJOCO_GL
    names, and one that is not installed (osmesa without libOSMesa) fails there, deep in PyOpenGL, with
    an AttributeError: whichever module imports MuJoCo first (the checkpoint's allow-list, the envs)
    would end in a traceback."""
    if video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return  # a classic-control-only install: no MuJoCo, no backend to load
    except Exception as err:  # AttributeError (library missing), RuntimeError (unknown name), ...
        backend = os.environ.get("MUJOCO_GL", "")
        why = "video could not be rendered" if video else "MuJoCo could not be loaded"
        raise EvaluateError(f"MUJOCO_GL={backend!r} is not allowed: {why}, its OpenGL backend cannot be loaded "
                            f"({type(err).__name__}: {first_line(err)}); use MUJOCO_GL=egl") from None


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
    path = run_dir / CHECKPOINT
    try:
        state = checkpoint.load(path)
    except checkpoint.CheckpointError as err:
        raise EvaluateError(str(err)) from None
    require_parts(state, path)
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
        raise EvaluateError(f"checkpoint {path} holds a config this version cannot use "
                            f"({first_line(err)})") from None
    try:
        env = make_eval_env(config.env)
        try:
            policy = make_policy(env.observation_space, env.action_space, config.algo.hidden_sizes,
                                 config.algo.activation, config.algo.log_std_init)
        finally:
            env.close()
    except Exception as err:  # gymnasium's errors (an unknown id, a missing extra) and unsupported spaces
        raise EvaluateError(f"checkpoint {path} names env {config.env.id!r}, which cannot be evaluated here "
                            f"({type(err).__name__}: {first_line(err)})") from None
    fits = f"checkpoint {path} does not fit env {config.env.id!r}"
    problem = policy_problem(policy.state_dict(), state["policy"])
    if problem:
        raise EvaluateError(f"{fits}: {problem}")
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as err:
        raise EvaluateError(f"{fits} ({first_line(err)})") from None
    shape = env.observation_space.shape
    assert shape is not None
    normalizer = RunningObsNormalizer(shape, config.env.clip_obs, config.env.normalize_obs)
    try:
        normalizer.load_state_dict(state["obs_normalizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise EvaluateError(f"checkpoint {path} holds an unreadable observation normaliser "
                            f"({type(err).__name__}: {first_line(err)})") from None
    problem = normalizer_problem(normalizer, shape)
    if problem:
        raise EvaluateError(f"{fits}: {problem}")
    return config, policy, normalizer, state


REQUIRED_PARTS = {"config": dict, "policy": Mapping, "obs_normalizer": dict, "iteration": int, "env_steps": int}
"""What evaluation reads from a checkpoint, and the type each must have."""


def require_parts(state: dict[str, Any], path: Path) -> None:
    """Every part evaluation reads is there: a missing one would otherwise end in a KeyError, some of
    them (iteration, env_steps) only after all the episodes have run."""
    for key, kind in REQUIRED_PARTS.items():
        if key not in state:
            raise EvaluateError(f"checkpoint {path} is not allowed: it has no {key!r} (a checkpoint.pt written "
                                f"by python -m trpo_exp has one)")
        if not isinstance(state[key], kind):
            raise EvaluateError(f"checkpoint {path} is not allowed: its {key!r} is a {type(state[key]).__name__}, "
                                f"not a {kind.__name__}")


def policy_problem(expected: Mapping[str, Any], saved: Mapping[str, Any]) -> Optional[str]:
    """What keeps the saved policy tensors from loading into the env's policy, named (torch's own
    message says only "Error(s) in loading state_dict"), or None."""
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing:
        return f"its policy lacks the tensors {', '.join(missing)}"
    if unexpected:
        return f"its policy has tensors the env's policy does not: {', '.join(unexpected)}"
    for name, tensor in expected.items():
        got = saved[name]
        shape = list(got.shape) if hasattr(got, "shape") else type(got).__name__
        if shape != list(tensor.shape):
            return f"its policy tensor {name} has shape {shape}, the env's policy needs {list(tensor.shape)}"
    return None


def normalizer_problem(normalizer: Any, shape: tuple[int, ...]) -> Optional[str]:
    """What makes the saved observation normaliser unusable for the env's observations, or None.
    A wrong shape fails at the first step (or worse, a shape like (1,) broadcasts and is silently
    wrong)."""
    for name in ("mean", "var"):
        got = getattr(normalizer, name).shape
        if got != shape:
            return f"its observation normaliser's {name} has shape {list(got)}, the env's observations {list(shape)}"
    if not isinstance(normalizer.enabled, bool) or not isinstance(normalizer.clip, (int, float)):
        return (f"its observation normaliser has enabled={normalizer.enabled!r}, clip={normalizer.clip!r} "
                f"(a bool and a number are needed)")
    return None


def evaluate_run(run_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    load_mujoco(options["video"])
    import torch

    from trpo_exp.envs.factory import derive_seeds, make_eval_env
    from trpo_exp.rollout.evaluate import evaluate

    config, policy, normalizer, state = load_agent(run_dir)
    episodes = options["episodes"] or config.eval.episodes
    seed = options["seed"] if options["seed"] is not None else derive_seeds(config.seed, config.env.num_envs + 1)[-1]
    torch.manual_seed(seed)  # stochastic evaluation is reproducible too
    with open_evaluations(run_dir) as log:
        recorder = _VideoRecorder(run_dir / "videos", config) if options["video"] else None
        env = make_eval_env(config.env) if recorder is None else recorder.env
        try:
            result = evaluate(policy, normalizer, env, episodes, seed, torch.device("cpu"),
                              deterministic=options["deterministic"], on_step=recorder.step if recorder else None)
        finally:
            env.close()
        videos = recorder.finish() if recorder is not None else []
        entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "checkpoint_iteration": state["iteration"], "env_steps": state["env_steps"], "episodes": episodes,
                 "seed": seed, "deterministic": options["deterministic"], "return_mean": result.mean,
                 "return_std": result.std, "returns": list(result.returns), "videos": [str(v) for v in videos]}
        append_entry(log, entry)
    if options["wandb"] and videos:
        _attach_to_wandb(run_dir, videos, state["config"])
    return entry


def open_evaluations(run_dir: Path) -> FileIO:
    """evaluations.jsonl, opened for append before any episode runs: a result that cannot be written
    is refused up front instead of after the whole evaluation. Unbuffered, so a failed write raises
    at the write and leaves nothing for close() to retry."""
    path = run_dir / EVALUATIONS
    try:
        return open(path, "ab", buffering=0)
    except OSError as err:
        raise EvaluateError(f"run dir {str(run_dir)!r} is not allowed: its {EVALUATIONS} cannot be written "
                            f"({type(err).__name__}: {err.strerror or first_line(err)}); it must be a writable "
                            f"file") from None


def append_entry(log: FileIO, entry: dict[str, Any]) -> None:
    """One JSON line; NotSavedError (which carries the entry) when the write fails."""
    data = memoryview((json.dumps(entry) + "\n").encode())
    try:
        while data:
            data = data[log.write(data) or 0:]
    except OSError as err:
        raise NotSavedError(f"the result could not be written to {log.name} ({type(err).__name__}: "
                            f"{err.strerror or first_line(err)}); it is on stdout as JSON", entry) from None


class _VideoRecorder:
    """Headless frames of every episode -> one MP4 each (imageio-ffmpeg)."""

    def __init__(self, out_dir: Path, config: Any):
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise EvaluateError(f"video=true is not allowed: {out_dir} cannot be created ({type(err).__name__}: "
                                f"{err.strerror or first_line(err)})") from None
        self.out_dir = out_dir
        self.env = _rendering_env(config)
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


def _rendering_env(config: Any) -> Any:
    """The run's env rendering rgb_array frames, tried once: EvaluateError, in one line, when a
    renderer is missing (pygame, EGL, the backend MUJOCO_GL names)."""
    import gymnasium as gym

    from trpo_exp.envs.factory import DiscardStepInfo, make_kwargs

    kwargs: dict[str, Any] = {**make_kwargs(config.env), "render_mode": "rgb_array"}
    problem = None
    with _quiet_unraisable():
        try:
            env = DiscardStepInfo(gym.make(config.env.id, **kwargs))
            env.reset(seed=0)
            env.render()
        except Exception as err:
            problem = first_line(err)
        if problem is not None:
            gc.collect()  # the half-made viewer goes now, while its __del__ errors are silenced
    if problem is not None:
        raise EvaluateError(f"video=true is not allowed for env.id={config.env.id!r}: video could not be "
                            f"rendered ({problem}){_backend_hint()}")
    return env


@contextmanager
def _quiet_unraisable() -> Iterator[None]:
    """gymnasium's OffScreenViewer whose GL context failed to start raises again from __del__ when
    it is collected, which Python prints as "Exception ignored in ..." and a traceback on stderr.
    The failure itself is reported in one line; that echo of it is dropped."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        sys.unraisablehook = hook


def _backend_hint() -> str:
    """For a render failure: the MuJoCo backend in use, when it is not the headless one."""
    backend = os.environ.get("MUJOCO_GL", "")
    return "" if backend == "egl" else f" with MUJOCO_GL={backend!r}; MuJoCo envs render headless with MUJOCO_GL=egl"


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
        return fail(err, EXIT_USAGE)
    except NotSavedError as err:
        print(json.dumps(err.entry))  # the result, not lost
        return fail(err, EXIT_NOT_SAVED)
    kind = "deterministic" if entry["deterministic"] else "stochastic"
    spread = f" +- {entry['return_std']:.1f}" if entry["return_std"] == entry["return_std"] else ""
    print(f"{argv[0]}: {entry['return_mean']:.1f}{spread} over {entry['episodes']} episodes ({kind} policy, seed "
          f"{entry['seed']}, checkpoint at iteration {entry['checkpoint_iteration']}, {entry['env_steps']} env steps)")
    for video in entry["videos"]:
        print(f"  video {video}")
    return 0


def fail(err: Exception, status: int) -> int:
    # one line even when a path in the message holds a newline
    print(f"trpo_exp.evaluate: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
