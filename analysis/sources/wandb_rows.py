"""W&B history rows and run fields -> the common run shape (shared by the offline and api sources).

W&B's step is the env step (trpo_exp logs ``step=env_steps``), so ``_step`` becomes ``env_steps``;
wandb's own bookkeeping keys (``_runtime``, ``_timestamp``, ...) are dropped.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import pandas as pd

from analysis.sources.base import STEP, numeric_columns

_SEED_TAG = re.compile(r"^seed=(\d+)$")


def history_frame(rows: Iterable[dict[str, Any]], problems: list[str]) -> pd.DataFrame:
    """W&B history rows -> wide float frame with ``env_steps`` first; rows without a step dropped."""
    frame = pd.DataFrame.from_records(list(rows))
    if frame.empty or "_step" not in frame:
        return pd.DataFrame()
    frame = frame.rename(columns={"_step": STEP})
    frame = frame[[STEP] + [c for c in frame.columns if c != STEP and not str(c).startswith("_")]]
    frame = numeric_columns(frame, problems)
    return frame[frame[STEP].notna()].reset_index(drop=True)


def meta(config: dict, summary: dict, *, name: str | None, group: str | None, tags: Iterable[str],
         state: str | None = None) -> dict:
    """algo/env/seed from the config trpo_exp logs (``algo.name``, ``env.id``, ``seed``), else the tags
    (``[algo, env_id, "seed=N"]``); status from the summary trpo_exp writes at the end, else W&B's state."""
    tags = list(tags)
    algo = _get(config, "algo", "name")
    env = _get(config, "env", "id")
    seed = config.get("seed")
    if seed is None:
        seed = next((int(m.group(1)) for t in tags if (m := _SEED_TAG.match(t))), None)
    plain = [t for t in tags if not _SEED_TAG.match(t)]
    if algo is None and len(plain) >= 1:
        algo = plain[0]
    if env is None and len(plain) >= 2:
        env = plain[1]
    status = summary.get("status") if isinstance(summary.get("status"), str) else None
    return {"name": name, "group": group, "algo": algo, "env": env, "seed": seed,
            "status": status or _STATE.get(state or "", state) or "unknown", "reason": None}


# W&B run states (api) -> the run record's statuses.
_STATE = {"finished": "finished", "running": "running", "crashed": "failed", "failed": "failed",
          "killed": "failed", "preempted": "failed"}


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree
