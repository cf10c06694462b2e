"""The reference side by side: sb3-contrib's TRPO with the RL Zoo's MuJoCo settings
(rl-baselines3-zoo hyperparams/trpo.yml: 2 envs x 1024 steps, VecNormalize on observations and
rewards, delta 0.01, 25 CG iterations, damping 0.1, lambda 0.95, 20 critic epochs x 128 at 1e-3;
the Zoo's HalfCheetah has delta 0.04 and its Swimmer gamma 0.9999: ZOO_PER_ENV, taken unless
``--target-kl`` / ``--gamma`` say otherwise),
one run per seed, scored as benchmarks/returns.py scores ours: the final deterministic evaluation
over 10 episodes (observation statistics frozen, raw rewards).

sb3-contrib is not a dependency of this project: run it from a separate environment, e.g.

  python -m venv /tmp/sb3 && /tmp/sb3/bin/pip install torch==2.13.0 stable-baselines3==2.9.2 \\
      sb3-contrib==2.9.2 'gymnasium[mujoco]'
  /tmp/sb3/bin/python benchmarks/sb3_reference.py --env Hopper-v5 --seeds 0 1 2 3 4 --steps 100000

and compare with ``python benchmarks/returns.py --envs hopper --seeds 0 1 2 3 4 --steps 100000``.

sb3-contrib's ``target_kl`` and ``cg_damping`` are per action dimension: its KL is averaged over the
action dimensions, ours (the paper's) summed. Its (0.01, 0.1) is our ``algo.max_kl=0.03
algo.cg_damping=0.3`` on Hopper (d = 3), exactly: benchmarks/sb3_step_equivalence.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

# The RL Zoo's per-env departures from its MuJoCo defaults (gamma 0.99, target_kl 0.01), by env name.
ZOO_PER_ENV = {"HalfCheetah": {"target_kl": 0.04}, "Swimmer": {"gamma": 0.9999}}


def final_eval(model, train_env, env_id: str, seed: int, episodes: int = 10) -> float:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed + 10_000), training=False, norm_reward=False)
    env.obs_rms = train_env.obs_rms
    returns, current = [], 0.0
    obs = env.reset()
    while len(returns) < episodes:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, done, _ = env.step(action)
        current += float(env.get_original_reward()[0])
        if done[0]:
            returns.append(current)
            current = 0.0
    return float(np.mean(returns))


def main() -> None:
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--gamma", type=float, help="default: the Zoo's for the env (0.99; Swimmer 0.9999)")
    parser.add_argument("--target-kl", type=float,
                        help="per action dimension (see above); default: the Zoo's (0.01; HalfCheetah 0.04)")
    opts = parser.parse_args()
    zoo = {"gamma": 0.99, "target_kl": 0.01, **ZOO_PER_ENV.get(opts.env.split("-")[0], {})}
    opts.gamma = zoo["gamma"] if opts.gamma is None else opts.gamma
    opts.target_kl = zoo["target_kl"] if opts.target_kl is None else opts.target_kl
    torch.set_num_threads(1)
    scores = []
    for seed in opts.seeds:
        env = VecNormalize(make_vec_env(opts.env, n_envs=2, seed=seed), gamma=opts.gamma)
        model = TRPO("MlpPolicy", env, batch_size=128, n_steps=1024, gamma=opts.gamma, gae_lambda=0.95,
                     sub_sampling_factor=1, cg_max_steps=25, cg_damping=0.1, n_critic_updates=20,
                     target_kl=opts.target_kl, learning_rate=1e-3, seed=seed, verbose=0)
        start = time.perf_counter()
        model.learn(opts.steps)
        wall = time.perf_counter() - start
        scores.append(final_eval(model, env, opts.env, seed))
        print(f"sb3-contrib trpo {opts.env} (gamma {opts.gamma}, target_kl {opts.target_kl}) seed {seed}: "
              f"final eval {scores[-1]:.1f} ({wall:.0f} s)", flush=True)
    se = statistics.stdev(scores) / len(scores) ** 0.5 if len(scores) > 1 else float("nan")
    print(f"mean {statistics.mean(scores):.0f} +- {se:.0f} SE over seeds {opts.seeds}")


if __name__ == "__main__":
    main()
