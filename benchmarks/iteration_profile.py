"""Where a TRPO iteration's time goes, in CPU seconds of this one process, beside the raw env rate.

CPU time (``time.process_time``) is less sensitive than wall time to other work on a shared
machine; the raw rate is measured in the same process right after, so compare the ratio. Parts:

* ``env_step``     - the vector env's ``step`` (MuJoCo and gymnasium's vector/wrapper layers);
* ``sampling``     - the whole trunk collection (env_step plus the policy forward pass,
                     normalisation, action clipping and batch assembly);
* ``value_fit``    - the value network's regression (the preset's epochs x minibatches);
* ``policy_step``  - everything else in the iteration: advantages, CG, line search, checks;
* ``raw``          - one ``gym.make(env_id)`` env stepped with pre-drawn random actions for the
                     same number of steps.

Run from the repository root (or with PYTHONPATH=<another checkout> to profile that code):

    python benchmarks/iteration_profile.py                      # trpo on hopper, 6 iterations
    python benchmarks/iteration_profile.py --env walker2d --iterations 10 --override algo.vf_epochs=5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
from hydra import compose, initialize_config_dir

import trpo_exp
from trpo_exp.app import to_config
from trpo_exp.config import register_configs
from trpo_exp.engine import Trainer


def timed(totals: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.process_time() - start
    return wrapper


def raw_cpu_seconds(env_id: str, steps: int) -> float:
    env = gym.make(env_id, disable_env_checker=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    start = time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="trpo")
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--override", action="append", default=[], help="a Hydra override (repeatable)")
    args = parser.parse_args()
    register_configs()
    conf_dir = Path(trpo_exp.__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
        composed = compose(config_name="config", overrides=[f"algo={args.algo}", f"env={args.env}",
                                                           "logger=none", "torch_threads=1", *args.override])
    trainer = Trainer(to_config(composed), Path(tempfile.mkdtemp()))
    trainer.iteration(1)  # warm-up (first-batch statistics, allocations)
    totals: dict[str, float] = {}
    trainer.collect = timed(totals, "sampling", trainer.collect)  # type: ignore[method-assign]
    trainer.fit_here = timed(totals, "value_fit", trainer.fit_here)  # type: ignore[method-assign]
    trainer.sampler.envs.step = timed(totals, "env_step", trainer.sampler.envs.step)  # type: ignore[method-assign]
    start, steps_before = time.process_time(), trainer.env_steps
    for index in range(2, 2 + args.iterations):
        trainer.iteration(index)
    total = time.process_time() - start
    steps = trainer.env_steps - steps_before
    trainer.close()
    raw = raw_cpu_seconds(trainer.cfg.env.id, steps)
    parts = {"env_step": totals["env_step"], "sampling": totals["sampling"], "value_fit": totals["value_fit"],
             "policy_step": total - totals["sampling"] - totals["value_fit"]}
    print(f"code: {Path(trpo_exp.__file__).resolve().parent.parent}")
    print(f"{args.algo} on {trainer.cfg.env.id}: {steps} training steps in {total:.2f} CPU s "
          f"({steps / total:.0f} steps/CPU s)")
    for name, seconds in parts.items():
        print(f"  {name:12s} {seconds:6.2f} s  {seconds / total:5.1%}")
    print(f"raw single env: {steps} steps in {raw:.2f} CPU s ({steps / raw:.0f} steps/CPU s)")
    print(f"ratio training / raw: {raw / total:.2f}; sampling only / raw: {raw / totals['sampling']:.2f}")


if __name__ == "__main__":
    main()
