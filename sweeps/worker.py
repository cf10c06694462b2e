"""One sweep worker: claim a trial, run its seeds, score them from the run records, tell the study;
until no trial is left. Then (one worker only) re-run the best parameters on the reporting seeds.

Any number of workers (processes, machines) can run this loop on one storage at the same time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps import tables
from sweeps.definition import Param, SweepSpec, reporting_seeds, tuning_seeds
from sweeps.launch import RunLauncher, override
from sweeps.objective import RunOutcome, read_outcome, verdict
from sweeps.recovery import close_dead_runs_of_failed_trials, live_runs
from sweeps.study import FAILURE_ATTR, RUNS_ATTR, SLOT_ATTR, SweepStudy, not_retried
from sweeps.trial_report import HOOK_NAME, hook_overrides
from trpo_exp.record import Status
from trpo_exp.record.status import STALE_AFTER_S
from trpo_exp.util import sample_std


@dataclass
class Worker:
    spec: SweepSpec
    params: Sequence[Param]
    sweep: SweepStudy
    launcher: RunLauncher
    sweep_dir: Path
    current: Optional[tuple[optuna.Study, int]] = None
    """The trial this worker holds (its study and trial id) while its runs train."""

    def run(self) -> dict:
        study = self.sweep.study
        while True:
            frozen = self.sweep.claim(study)
            if frozen is not None:
                self.current = (study, frozen._trial_id)
                self.run_trial(frozen)
                self.current = None
            elif self.sweep.pending(study):
                time.sleep(self.spec.poll_interval)  # other workers' trials (or a dead one's, until stale)
            else:
                break
        while self.spec.report_seeds and self.sweep.pending(self.sweep.report):
            frozen = self.sweep.claim(self.sweep.report)
            if frozen is not None:
                self.current = (self.sweep.report, frozen._trial_id)
                self.run_report(frozen)
                self.current = None
            else:
                time.sleep(self.spec.poll_interval)
        for finished in (study, self.sweep.report):  # before the summary: its records, closed
            close_dead_runs_of_failed_trials(finished)
        info = tables.write(self.sweep_dir, study, self.sweep.report, self.sweep.url, self.spec.n_trials,
                            tuning_seeds(self.spec))
        info["not_retried"] = [{"trial": t.number, "slot": t.system_attrs.get(SLOT_ATTR)} for t in not_retried(study)]
        return info

    def release(self, why: str) -> Optional[int]:
        """This worker is stopping (SIGTERM, Ctrl-C: ``why``): give its trial back at once, re-queued
        with the same parameters, instead of leaving it to the heartbeat's grace period. Its number,
        if it was re-queued."""
        if self.current is None:
            return None
        study, trial_id = self.current
        self.current = None
        return self.sweep.release(study, trial_id, why)

    # --- one tuning trial -----------------------------------------------------------------------

    def run_trial(self, frozen: FrozenTrial) -> None:
        study, n = self.sweep.study, frozen.number
        with self.sweep.heartbeat(frozen._trial_id):
            trial = self.sweep.new_trial(study, frozen)
            values = {p.name: p.suggest(trial) for p in self.params}
            seeds = tuning_seeds(self.spec)
            dirs = run_dirs(frozen, seeds)
            trial.set_user_attr("seeds", seeds)
            trial.set_user_attr("run_dirs", [str(self.sweep_dir / d) for d in dirs])
            retry = frozen.system_attrs.get("failed_trial")
            print(f"sweeps: trial {n} ({_fmt(values)}){f' retries trial {retry}' if retry is not None else ''}",
                  flush=True)
            if retry is not None:
                self._wait_for_runs_to_stop(n, [str(self.sweep_dir / d) for d in dirs])
            jobs = [[*(override(k, v) for k, v in values.items()), override("seed", seed),
                     *self._hook_overrides(study.study_name, n, k, len(seeds)),
                     override("logger.group", f"{study.study_name}/trial-{n}"), override("hydra.sweep.subdir", dirs[k])]
                    for k, seed in enumerate(seeds)]
            start = time.perf_counter()
            self.launcher.launch(jobs)
            outcomes = [read_outcome(self.sweep_dir / d, seed, self.spec.objective) for d, seed in zip(dirs, seeds)]
            self._tell(study, trial, outcomes, time.perf_counter() - start)

    def _wait_for_runs_to_stop(self, number: int, dirs: list[str]) -> None:
        """A retry resumes the runs of the trial it retries, in their dirs. Runs of that trial may
        still train (a launcher's processes outlive a killed worker; a cluster's jobs certainly do):
        each stops at its next iteration, seeing its trial failed. Until then its dir is taken."""
        live, deadline = live_runs(dirs), time.monotonic() + STALE_AFTER_S
        if live:
            print(f"sweeps: trial {number} waits for the runs of the trial it retries to stop "
                  f"(they stop at their next iteration): {' '.join(live)}", flush=True)
        while live and time.monotonic() < deadline:  # a hung run: its dir is refused with one line
            time.sleep(self.spec.poll_interval)
            live = live_runs(live)

    def _hook_overrides(self, study: str, number: int, seed_index: int, num_seeds: int) -> list[str]:
        """Attach the Optuna reporter to a run as its training hook ``hooks.trial``."""
        spec = hook_overrides(self.sweep.url, study, number, seed_index, num_seeds)
        return [override(f"+hooks.{HOOK_NAME}.{key}", value) for key, value in spec.items()]

    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcomes: list[RunOutcome], seconds: float) -> None:
        v = verdict(outcomes)
        try:
            trial.set_user_attr("scores", [o.score if math.isfinite(o.score) else None for o in outcomes])
            trial.set_user_attr("run_status", [o.status for o in outcomes])
            if v.detail:
                trial.set_user_attr("note", v.detail)
            if v.state == "COMPLETE":
                study.tell(trial, v.value)
            elif v.state == "PRUNED":
                study.tell(trial, state=TrialState.PRUNED)
            elif v.state == "FAIL":
                self.sweep.storage.set_trial_system_attr(trial._trial_id, FAILURE_ATTR, v.detail)
                study.tell(trial, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            print(f"sweeps: trial {trial.number} was failed and re-queued by another worker meanwhile "
                  f"(missed heartbeats); its result is dropped", flush=True)
            return
        scores = " ".join(f"{o.score:.1f}" for o in outcomes)
        print(f"sweeps: trial {trial.number} {v.state} {'' if math.isnan(v.value) else f'{v.value:.2f} '}"
              f"[seeds: {scores}] {seconds:.1f} s{' - ' + v.detail if v.detail else ''}", flush=True)
        if v.state == "FAIL" and not self.sweep.replace_failed(self.sweep.storage.get_trial(trial._trial_id)):
            raise SystemExit(f"sweeps: error: more than sweep.max_failed_trials={self.spec.max_failed_trials} "
                             f"trials failed; last: {v.detail}")

    # --- the final report ----------------------------------------------------------------------

    def run_report(self, frozen: FrozenTrial) -> None:
        report, top = self.sweep.report, tables.best(self.sweep.study)
        with self.sweep.heartbeat(frozen._trial_id):
            if top is None:
                report.tell(frozen.number, state=TrialState.FAIL)
                print("sweeps: no COMPLETE trial: nothing to report", flush=True)
                return
            seeds = reporting_seeds(self.spec)
            dirs = [f"report/s{seed}" for seed in seeds]
            print(f"sweeps: re-running best trial {top.number} ({_fmt(top.params)}) on reporting seeds {seeds}",
                  flush=True)
            group = override("logger.group", f"{self.sweep.study.study_name}/report")
            self.launcher.launch([[*(override(k, v) for k, v in top.params.items()), group,
                                   override("seed", seed), override("hydra.sweep.subdir", d)]
                                  for seed, d in zip(seeds, dirs)])
            outcomes = [read_outcome(self.sweep_dir / d, seed, self.spec.objective) for d, seed in zip(dirs, seeds)]
            scores = [o.score for o in outcomes]
            attrs = {"best_trial": top.number, "params": top.params, "seeds": seeds,
                     "scores": [s if math.isfinite(s) else None for s in scores],
                     "std": sample_std(scores) if all(map(math.isfinite, scores)) else None,
                     "run_dirs": [str(self.sweep_dir / d) for d in dirs]}
            for key, value in attrs.items():
                self.sweep.storage.set_trial_user_attr(frozen._trial_id, key, value)
            if all(o.status == Status.FINISHED and math.isfinite(o.score) for o in outcomes):
                report.tell(frozen.number, sum(scores) / len(scores))
                spread = attrs["std"]
                pm = f" +- {spread:.2f} (sample std)" if isinstance(spread, float) and math.isfinite(spread) else ""
                print(f"sweeps: report: {sum(scores) / len(scores):.2f}{pm} over seeds {seeds}", flush=True)
            else:
                self.sweep.storage.set_trial_user_attr(frozen._trial_id, "note", verdict(outcomes).detail)
                report.tell(frozen.number, state=TrialState.FAIL)
                print(f"sweeps: report FAILED: {verdict(outcomes).detail}", flush=True)


def run_dirs(frozen: FrozenTrial, seeds: list[int]) -> list[str]:
    """A trial's run dirs, relative to the sweep dir: keyed by its slot (RUNS_ATTR), not its number,
    so that a retry (a new trial number) resumes the runs of the trial it retries from their
    checkpoints instead of starting them over. Slots created before that attr: by number."""
    key = frozen.system_attrs.get(RUNS_ATTR, f"{frozen.number:04d}")
    return [f"trials/{key}/s{seed}" for seed in seeds]


def _fmt(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
