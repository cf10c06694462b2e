"""The local run record: metrics.csv (one row per iteration, flushed each time) and run.json
(status and final results). Sweeps and analysis read these files; they are the source of truth."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, Sequence

METRIC_COLUMNS = (
    "iteration", "env_steps", "branch_steps", "episodes", "episodes_total",
    "return_mean", "return_std", "return_min", "return_max", "episode_length_mean",
    "entropy", "kl", "surrogate_improvement", "expected_improvement", "backtracks", "step_accepted",
    "value_loss", "explained_variance",
    "eval_return_mean", "eval_return_std",
    "time_sample_s", "time_update_s", "time_eval_s", "steps_per_s", "wall_time_s",
)
# metrics.csv column -> namespaced W&B key (rollout/, train/, eval/, time/).
WANDB_KEYS = {
    "iteration": "train/iteration",
    "branch_steps": "rollout/branch_steps", "episodes": "rollout/episodes", "episodes_total": "rollout/episodes_total",
    "return_mean": "rollout/return_mean", "return_std": "rollout/return_std",
    "return_min": "rollout/return_min", "return_max": "rollout/return_max",
    "episode_length_mean": "rollout/episode_length_mean",
    "entropy": "train/entropy", "kl": "train/kl", "surrogate_improvement": "train/surrogate_improvement",
    "expected_improvement": "train/expected_improvement", "backtracks": "train/backtracks",
    "step_accepted": "train/step_accepted", "value_loss": "train/value_loss",
    "explained_variance": "train/explained_variance",
    "eval_return_mean": "eval/return_mean", "eval_return_std": "eval/return_std",
    "time_sample_s": "time/sample_s", "time_update_s": "time/update_s", "time_eval_s": "time/eval_s",
    "steps_per_s": "time/steps_per_s", "wall_time_s": "time/wall_time_s",
}
# Columns that measure the machine, not the algorithm: excluded from reproducibility comparisons.
TIME_COLUMNS = ("time_sample_s", "time_update_s", "time_eval_s", "steps_per_s", "wall_time_s")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest string that round-trips the float exactly
    return value


class Mirror(Protocol):
    """A logging backend that copies the record elsewhere (W&B). It must never raise."""

    def log(self, row: dict[str, Any]) -> None: ...

    def finish(self, info: dict[str, Any]) -> None: ...


class RunRecord:
    def __init__(self, run_dir: Path, info: dict[str, Any], mirrors: Sequence[Mirror] = ()):
        self.mirrors = list(mirrors)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.csv"
        self.json_path = self.run_dir / "run.json"
        self.info = {"status": "running", "started_at": _now(), **info}
        self._t0 = time.perf_counter()
        self._file = open(self.metrics_path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=METRIC_COLUMNS)
        self._writer.writeheader()
        self._file.flush()
        self._write_json()

    def log(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(METRIC_COLUMNS)
        if unknown:
            raise KeyError(f"unknown metric columns {sorted(unknown)}")
        self._writer.writerow({k: _cell(row.get(k)) for k in METRIC_COLUMNS})
        self._file.flush()
        self.info["env_steps"] = row.get("env_steps", self.info.get("env_steps"))
        self.info["iterations"] = row.get("iteration", self.info.get("iterations"))
        for mirror in self.mirrors:
            mirror.log(row)

    def finish(self, **results: Any) -> None:
        self._close("finished", None, results)

    def fail(self, reason: str) -> None:
        self._close("failed", reason, {})

    def stop(self, status: str, reason: str) -> None:
        """End early on purpose (e.g. 'pruned'): not a failure, not finished either."""
        self._close(status, reason, {})

    def _close(self, status: str, reason: str | None, results: dict[str, Any]) -> None:
        if not self._file.closed:
            self._file.close()
        self.info.update(results)
        self.info.update(status=status, reason=reason, exit_code=1 if status == "failed" else 0, ended_at=_now(),
                         wall_time_s=time.perf_counter() - self._t0)
        self._write_json()  # the local record first: it must not depend on the mirrors
        for mirror in self.mirrors:
            mirror.finish(self.info)

    def _write_json(self) -> None:
        # Write to a temporary file and rename, so a crash never leaves a half-written run.json.
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.info, indent=2, default=str) + "\n")
        os.replace(tmp, self.json_path)
