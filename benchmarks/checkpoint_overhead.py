"""Checkpoint overhead: what saving checkpoint.pt costs a run.

Runs the real trainer (the given env preset, algo, 1 torch thread) for a few iterations and times,
interleaved: each iteration, and a checkpoint save (``Trainer.save_checkpoint``: state dict with the
envs' simulator states, atomic write with fsync). Prints the medians, the checkpoint size, and the
overhead as a fraction of run time at the default interval (one save per ``checkpoint_interval_s``)
and in the worst case (a save after every iteration).

    python benchmarks/checkpoint_overhead.py                     # trpo on hopper (8 envs), 12 iterations
    python benchmarks/checkpoint_overhead.py --env halfcheetah --iterations 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from trpo_exp.app import CONF_DIR, to_config
from trpo_exp.config import Config, register_configs
from trpo_exp.engine import Trainer
from trpo_exp.record import CHECKPOINT

TARGET = 0.02  # at most 2% of run time at the default interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--algo", default="trpo")
    parser.add_argument("--iterations", type=int, default=12)
    args = parser.parse_args()
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"algo={args.algo}", f"env={args.env}", "logger=none"])
    config: Config = to_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp))
        iteration_s, save_s = [], []
        for index in range(1, args.iterations + 1):
            t0 = time.perf_counter()
            trainer.iteration(index)
            t1 = time.perf_counter()
            trainer.save_checkpoint()
            iteration_s.append(t1 - t0)
            save_s.append(time.perf_counter() - t1)
        size_mb = (Path(tmp) / CHECKPOINT).stat().st_size / 2**20
        trainer.close()
    it, save = statistics.median(iteration_s), statistics.median(save_s)
    interval = config.checkpoint_interval_s
    at_default = save / interval if interval > 0 else 0.0
    print(f"{args.algo} on {config.env.id}, {config.env.num_envs} envs, {config.algo.steps_per_iter} steps/iteration, "
          f"median of {args.iterations}:")
    print(f"  iteration                 {it * 1000:8.1f} ms")
    print(f"  checkpoint save           {save * 1000:8.1f} ms   ({size_mb:.1f} MB)")
    print(f"  overhead, default interval ({interval:g} s): {100 * at_default:.3f}% of run time "
          f"-> target <= {100 * TARGET:.0f}% {'met' if at_default <= TARGET else 'NOT met'}")
    print(f"  overhead, a save after every iteration: {100 * save / it:.1f}% of run time")


if __name__ == "__main__":
    main()
