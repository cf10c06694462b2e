"""The shared training loop: collect -> advantages -> policy step -> value fit -> log -> checkpoint.

There is no branch on the algorithm here: pg, npg and trpo differ only in the policy-step object
built by the factory its entry in ``trpo_exp.algorithms`` names.

With ``value_fit_process`` the value fit of iteration k runs in a second process while this one
samples batch k+1 (trpo_exp.value_process); iteration k's row is logged once its fit is joined,
before batch k+1 is checked and learnt from. The numbers are the same, bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from trpo_exp import algorithms, checkpoint, guard
from trpo_exp.advantage import explained_variance, gae
from trpo_exp.algos.common import mean_entropy
from trpo_exp.algos.value import draw_orders, make_value_optimizer
from trpo_exp.budget import trunk_steps
from trpo_exp.config import Config, ConfigError
from trpo_exp.envs.factory import derive_seeds, make_eval_env, make_vector_env
from trpo_exp.nets import Policy, ValueNet, make_policy
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.progress import Progress
from trpo_exp.record import CHECKPOINT, RunRecord, Status
from trpo_exp.reward_scale import RewardScaler
from trpo_exp.rollout.batch import Batch, next_state_values
from trpo_exp.rollout.evaluate import EvalResult, evaluate
from trpo_exp.rollout.single_path import SinglePathSampler
from trpo_exp.signals import RunSignals
from trpo_exp.util import sample_std
from trpo_exp.value_process import ValueFitJob, ValueFitProcess


class StopRun(Exception):
    """Raised by a training hook to end a run early with a status other than 'failed'
    (for example 'pruned' by a hyperparameter sweep). The run record keeps every row so far."""

    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def resolve_device(kind: str) -> torch.device:
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device.type='cuda' is not allowed: no CUDA GPU is visible to torch "
                          "(use device=cpu or device=auto)")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(kind)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class ValueStats:
    value_loss: float
    explained_variance: float


@dataclass(frozen=True)
class Targets:
    advantages: torch.Tensor  # [T, N]
    returns: torch.Tensor  # [T, N] value regression targets: GAE advantages + V (TD(lambda) returns)
    values: torch.Tensor  # [T, N] V(s_t) before the fit


@dataclass(frozen=True)
class Sampled:
    """An iteration's batch, whether the policy learns from it (Trainer.collect), and when its
    sampling started and ended (perf_counter)."""

    batch: Batch
    learn: bool
    t_start: float
    t_end: float


@dataclass
class Update:
    """An iteration up to its value fit: its row without the fit's numbers, the fit's job, and the
    update time (s) this process has spent on it so far."""

    index: int
    row: dict[str, Any]
    explained_variance: float
    job: ValueFitJob
    steps: int  # simulator steps of the iteration (trunk and branches)
    time_sample_s: float
    time_update_s: float
    value_loss: Optional[float] = None  # once the fit is done


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.record: Optional[RunRecord] = None  # set by train(): the record whose owner checkpoints check
        torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device.type)
        seeds = derive_seeds(cfg.seed, cfg.env.num_envs + 1)
        self.eval_seed = seeds[-1]  # the eval env's own stream, disjoint from the training envs
        envs = make_vector_env(cfg.env, seeds[:-1])
        obs_shape = envs.single_observation_space.shape
        assert obs_shape is not None  # make_policy refuses anything but a flat Box
        self.normalizer = RunningObsNormalizer(obs_shape, cfg.env.clip_obs, cfg.env.normalize_obs)
        self.reward_scaler = RewardScaler(cfg.env.num_envs, cfg.algo.gamma, cfg.env.normalize_reward)
        a = cfg.algo
        self.policy: Policy = make_policy(envs.single_observation_space, envs.single_action_space,
                                          a.hidden_sizes, a.activation, a.log_std_init).to(self.device)
        value_net_args = (obs_shape[0], list(a.hidden_sizes), a.activation, a.vf_normalize_targets)
        self.value_net = ValueNet(*value_net_args).to(self.device)
        self.value_optimizer = make_value_optimizer(self.value_net, a.vf_lr, a.vf_adam_eps)
        algorithm = algorithms.get(a.name)
        self.policy_step = algorithm.make_step(a, self.policy)
        self.sampler = SinglePathSampler(envs, seeds[:-1], self.normalizer, self.device)
        self.estimator = algorithm.make_estimator(cfg, self.normalizer, self.device, envs.single_action_space)
        self.eval_env = make_eval_env(cfg.env)
        self.env_steps = 0  # every simulator step: trunk and vine branches
        self.branch_steps = 0
        self.episodes_total = 0
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.iteration_done = 0  # policy iterations completed (and logged)
        self.wall_time_before = 0.0  # training wall time of the segments before a resume
        # Last: it starts at once (and takes a while to import torch) while the run starts here.
        self.value_process = (ValueFitProcess(value_net_args, a.vf_lr, a.vf_adam_eps, cfg.torch_threads)
                              if cfg.value_fit_process else None)

    # --- one iteration, one named function per step -------------------------------------------

    def collect(self, first: bool) -> tuple[Batch, bool]:
        """One iteration's trunk, and whether the policy learns from it. A full iteration (its
        trunk plus the estimator's branch steps at most) runs whenever the rest of the budget pays
        for one. What is left after the last full one is collected as a trunk of its own, so the
        budget is met exactly and its episodes are recorded, but the policy takes no step from it:
        a step from a shrunken batch is a full trust-region step estimated from a fraction of the
        samples, right before the final evaluation (on Hopper at 1M steps, 576 of 2048 samples; it
        moved single runs' final evaluation by up to +-1100). Only a budget smaller than one
        iteration runs a shrunken iteration that learns: trunk and rollout set in proportion."""
        num_envs = self.cfg.env.num_envs
        trunk = trunk_steps(self.cfg.algo.steps_per_iter, num_envs)
        left = self.cfg.budget - self.env_steps
        full = trunk + self.estimator.branch_steps_bound
        if left >= full or first:
            scale = min(1.0, left / full)
            steps_per_env = max(1, math.ceil(trunk // num_envs * scale))
            plan = self.estimator.snapshot_plan(steps_per_env, num_envs, scale)
            return self.sampler.collect(self.policy, steps_per_env, plan), True
        return self.sampler.collect(self.policy, max(1, math.ceil(left / num_envs))), False

    @torch.no_grad()
    def compute_targets(self, batch: Batch) -> Targets:
        """GAE advantages and value targets, on scaled rewards with env.normalize_reward (whose
        statistics this updates: call it once per batch)."""
        values = self.value_net(batch.obs)
        next_values = next_state_values(batch, values, self.value_net(batch.last_obs),
                                        self.value_net(batch.final_obs))
        rewards = self.reward_scaler(batch.rewards, batch.episode_end)
        advantages = gae(rewards, values, next_values, batch.terminated, batch.episode_end,
                         self.cfg.algo.gamma, self.cfg.algo.gae_lambda)
        return Targets(advantages=advantages, returns=advantages + values, values=values)

    def value_fit_job(self, batch: Batch, targets: Targets,
                      extra: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> ValueFitJob:
        """Everything V's fit needs, on the trunk's TD(lambda) returns plus the estimator's ``extra``
        (observations, targets) when it has any (vine: branch returns, VineConfig.value_targets).
        Updates the Pop-Art statistics and draws the fit's shuffles from torch's global RNG, here,
        right after the policy step, wherever the fit then runs."""
        obs, returns = batch.obs.flatten(0, 1), targets.returns.flatten()
        if extra is not None:
            obs, returns = torch.cat([obs, extra[0]]), torch.cat([returns, extra[1]])
        self.value_net.update_target_stats(returns)
        orders = draw_orders(obs.shape[0], self.cfg.algo.vf_epochs, obs.device)
        return ValueFitJob(obs, returns, orders, self.cfg.algo.vf_batch_size)

    def update_value(self, batch: Batch, targets: Targets,
                     extra: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> ValueStats:
        """Fit V (see value_fit_job) in this process."""
        ev = explained_variance(targets.values.flatten(), targets.returns.flatten())
        loss = self.value_fit_job(batch, targets, extra).run(self.value_net, self.value_optimizer)
        return ValueStats(value_loss=loss, explained_variance=ev)

    def evaluate(self) -> EvalResult:
        return evaluate(self.policy, self.normalizer, self.eval_env, self.cfg.eval.episodes,
                        self.eval_seed, self.device)

    def iteration(self, index: int) -> dict[str, Any]:
        """One whole iteration, its value fit in this process (no evaluation, nothing logged)."""
        update = self.learn(index, self.sample(index))
        self.fit_here(update)
        return self.finish(update)

    def evaluate_due(self, update: Update, last: bool) -> Optional[EvalResult]:
        """Evaluate after the last iteration and every eval.every; the result goes into the row."""
        every = self.cfg.eval.every
        if not (last or (every > 0 and update.index % every == 0)):
            return None
        t = time.perf_counter()
        result = self.evaluate()
        update.row.update(eval_return_mean=result.mean, eval_return_std=result.std,
                          time_eval_s=time.perf_counter() - t)
        return result

    def sample(self, index: int) -> Sampled:
        t0 = time.perf_counter()
        batch, learn = self.collect(first=index == 1)
        return Sampled(batch, learn, t0, time.perf_counter())

    def learn(self, index: int, sampled: Sampled) -> Update:
        """The iteration from its checks to its value fit's job: targets, the policy step and the
        counters. The time from here to the policy step counts as sampling (vine's branches)."""
        t_start = time.perf_counter()
        batch, learn = sampled.batch, sampled.learn
        guard.check_steps(index, "reward", batch.rewards)
        guard.check_steps(index, "observation", batch.obs)
        targets = self.compute_targets(batch)
        guard.check_steps(index, "advantage", targets.advantages)
        branch_steps = 0
        if learn:
            policy_batch, branch_steps = self.estimator.policy_batch(self.policy, self.value_net, batch,
                                                                     targets.advantages)
        t1 = time.perf_counter()
        if learn:
            step_stats = self.policy_step(self.policy, policy_batch)
            guard.check_numbers(index, "policy step", {"kl": step_stats.kl,
                                                       "surrogate_improvement": step_stats.surrogate_improvement})
            step_row = asdict(step_stats)
        else:  # no step, so no step's metrics: empty cells, and W&B's summary keeps the last real step's
            step_row = {"entropy": mean_entropy(self.policy, batch.obs.flatten(0, 1))}
        guard.check_parameters(index, "policy", self.policy.named_parameters())
        ev = explained_variance(targets.values.flatten(), targets.returns.flatten())
        job = self.value_fit_job(batch, targets, self.estimator.value_samples())
        self.env_steps += batch.num_steps + branch_steps
        self.branch_steps += branch_steps
        self.episodes_total += len(batch.episode_returns)
        self.recent_returns.extend(batch.episode_returns)
        row = {"iteration": index, "env_steps": self.env_steps, "branch_steps": self.branch_steps,
               **episode_stats(batch), "episodes_total": self.episodes_total, **step_row}
        return Update(index, row, ev, job, batch.num_steps + branch_steps,
                      time_sample_s=sampled.t_end - sampled.t_start + t1 - t_start,
                      time_update_s=time.perf_counter() - t1)

    def fit_here(self, update: Update) -> None:
        """The value fit in this process."""
        t = time.perf_counter()
        update.value_loss = update.job.run(self.value_net, self.value_optimizer)
        update.time_update_s += time.perf_counter() - t

    def start_fit(self, update: Update, last: bool, checkpoints: Optional[CheckpointSchedule]) -> bool:
        """Submit the value fit to the value-fit process, when there is one and the next batch can be
        sampled meanwhile; else fit here. Not on the last iteration (nothing to overlap), nor when
        a checkpoint is to be saved after this iteration (it must hold this iteration's state,
        before the next batch moves the envs and the RNGs). Returns whether it was submitted."""
        process = self.value_process
        if (process is None or last or (checkpoints is not None and checkpoints.save_due())
                or not process.ready(update.index)):
            self.fit_here(update)
            return False
        t = time.perf_counter()
        process.submit(update.index, self.value_net, self.value_optimizer, update.job)
        update.time_update_s += time.perf_counter() - t
        return True

    def join_fit(self, update: Update) -> None:
        """Wait for the submitted fit and load its result; only the wait counts as update time."""
        assert self.value_process is not None
        t = time.perf_counter()
        update.value_loss = self.value_process.join(self.value_net, self.value_optimizer)
        update.time_update_s += time.perf_counter() - t

    def finish(self, update: Update) -> dict[str, Any]:
        """The iteration's row, once its value fit is done (here or joined)."""
        t = time.perf_counter()
        index, value_loss = update.index, update.value_loss
        assert value_loss is not None, "the value fit is not done"
        guard.check_numbers(index, "value fit", {"value_loss": value_loss})
        guard.check_parameters(index, "value net", self.value_net.named_parameters())
        update.time_update_s += time.perf_counter() - t
        value_stats = ValueStats(value_loss=value_loss, explained_variance=update.explained_variance)
        busy = update.time_sample_s + update.time_update_s
        return {**update.row, **asdict(value_stats), "time_sample_s": update.time_sample_s,
                "time_update_s": update.time_update_s, "steps_per_s": update.steps / busy}

    # --- the run ---------------------------------------------------------------------------

    def budget_left(self) -> bool:
        """The run goes on to the exact budget (see collect)."""
        return self.env_steps < self.cfg.budget

    def train(self, record: RunRecord, progress: Optional[Progress] = None,
              hooks: Sequence[Callable[[dict[str, Any]], None]] = (),
              checkpoints: Optional[CheckpointSchedule] = None) -> EvalResult:
        """Run to the budget, from ``self.iteration_done`` (0, or a resumed checkpoint's). Each hook
        sees every logged row (after it is written) and may raise StopRun to end the run early (e.g.
        an Optuna pruner); the record is complete either way. ``checkpoints`` decides when to save
        between iterations (by time, or on a signal) and may end the run after a save (SIGTERM).
        With a value-fit process, row k is logged once batch k+1 is sampled and fit k is joined;
        an exception meanwhile still joins fit k and logs row k (when the worker can give it)
        before it ends the run: no finished iteration is lost from the record."""
        index, result = self.iteration_done, None
        self.record = record
        start = time.perf_counter() - self.wall_time_before
        pending: Optional[Update] = None  # an iteration whose value fit runs in the value-fit process

        def log(update: Update) -> None:
            self.log_iteration(update, time.perf_counter() - start, record, progress, hooks)

        try:
            # At least one iteration, however small the budget (a fresh run only).
            while (index == 0 and self.env_steps == 0) or self.budget_left():
                index += 1
                sampled = self.sample(index)
                if pending is not None:  # before anything reads V (compute_targets) or checks the batch
                    joined, pending = pending, None
                    self.join_fit(joined)
                    log(joined)
                update = self.learn(index, sampled)
                last = not self.budget_left()
                if self.start_fit(update, last, checkpoints):
                    pending = update
                result = self.evaluate_due(update, last) or result
                if pending is not None:
                    continue
                log(update)
                if checkpoints is not None and not last:
                    checkpoints.after_iteration(self, index)
        except BaseException:
            self.abandon(pending, log)
            raise
        assert pending is None, "the last iteration fits in this process"
        self.save_checkpoint()
        if result is None:  # resumed from the final checkpoint: evaluation is deterministic
            result = self.evaluate()
        return result

    def abandon(self, pending: Optional[Update], log: Callable[[Update], None]) -> None:
        """A run that ends by an exception: a pending iteration is finished but for its value fit,
        so its row is kept when the worker can still give the fit; then the worker goes."""
        if pending is not None:
            with contextlib.suppress(Exception):
                self.join_fit(pending)
                log(pending)
        if self.value_process is not None:
            self.value_process.close()

    def log_iteration(self, update: Update, wall_time_s: float, record: RunRecord, progress: Optional[Progress],
                      hooks: Sequence[Callable[[dict[str, Any]], None]]) -> None:
        """The iteration's row into the record, then to the hooks and the progress line."""
        row = {**self.finish(update), "wall_time_s": wall_time_s}
        self.iteration_done, self.wall_time_before = update.index, wall_time_s
        record.log(row)
        for hook in hooks:
            hook(row)
        if progress is not None:
            recent = float(np.mean(self.recent_returns)) if self.recent_returns else math.nan
            progress.update(update.index, row["env_steps"], recent, row["steps_per_s"])

    # --- checkpoints: everything that determines the future of the run -------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.cfg),
            "iteration": self.iteration_done,
            "env_steps": self.env_steps,
            "branch_steps": self.branch_steps,
            "episodes_total": self.episodes_total,
            "recent_returns": list(self.recent_returns),
            "wall_time_s": self.wall_time_before,
            "policy": self.policy.state_dict(),
            "value_net": self.value_net.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "policy_step": self.policy_step.state_dict(),
            "obs_normalizer": self.normalizer.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": checkpoint.rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration_done = int(state["iteration"])
        self.env_steps, self.branch_steps = int(state["env_steps"]), int(state["branch_steps"])
        self.episodes_total = int(state["episodes_total"])
        self.recent_returns.clear()
        self.recent_returns.extend(float(r) for r in state["recent_returns"])
        self.wall_time_before = float(state["wall_time_s"])
        self.policy.load_state_dict(state["policy"])
        self.value_net.load_state_dict(state["value_net"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.policy_step.load_state_dict(state["policy_step"])
        self.normalizer.load_state_dict(state["obs_normalizer"])
        if "reward_scaler" in state:  # checkpoints from before env.normalize_reward have none
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        self.sampler.load_state_dict(state["sampler"])
        checkpoint.set_rng_state(state["rng"])  # last: restoring the envs must not move any RNG

    def save_checkpoint(self) -> None:
        if self.record is not None:
            self.record.check_owner()  # a run dir taken over by another process is not ours to write
        checkpoint.save(self.run_dir / CHECKPOINT, self.state_dict())

    def close(self) -> None:
        if self.value_process is not None:
            self.value_process.close()
        self.sampler.close()
        self.estimator.close()
        self.eval_env.close()


class CheckpointSchedule:
    """When to save between iterations: every ``interval_s`` seconds of training, and at once when
    a signal asks for it (SIGUSR1: save and go on; SIGTERM: save and stop, raising ``Terminated``).
    The engine saves at the end of the run in any case."""

    def __init__(self, interval_s: float, signals: Optional[RunSignals] = None):
        self.interval_s = interval_s
        self.signals = signals
        self.last = time.monotonic()

    def save_due(self) -> bool:
        """Whether a save is due now (after_iteration saves when it is; the engine asks first, to
        fit V before it samples the next batch)."""
        due = self.interval_s > 0 and time.monotonic() - self.last >= self.interval_s
        requested = self.signals is not None and self.signals.checkpoint_requested
        return due or requested

    def after_iteration(self, trainer: Trainer, index: int) -> None:
        if self.save_due():
            trainer.save_checkpoint()
            self.last = time.monotonic()
            if self.signals is not None:
                self.signals.checkpoint_saved(index)


def episode_stats(batch: Batch) -> dict[str, float]:
    """Statistics over the training episodes that ended in this batch (NaN when none did)."""
    r = np.asarray(batch.episode_returns, dtype=np.float64)
    if r.size == 0:
        nan = math.nan
        return {"episodes": 0, "return_mean": nan, "return_std": nan, "return_min": nan,
                "return_max": nan, "episode_length_mean": nan}
    return {"episodes": int(r.size), "return_mean": float(r.mean()), "return_std": sample_std(r),
            "return_min": float(r.min()), "return_max": float(r.max()),
            "episode_length_mean": float(np.mean(batch.episode_lengths))}
