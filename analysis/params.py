"""Run configs -> parameter columns, and which parameters tell runs apart ("settings").

A *setting* is what a row of a paper table stands for: an algorithm plus the hyperparameters that
differ between its runs in one environment (a sweep's max_kl and cg_damping, say). Seeds, trial
bookkeeping and logging options never make a new setting. Parameters are found generically from the
flattened config, so new config keys need no code here. A sweep's runs carry their Optuna trial in
the training hook ``hooks.trial`` (sweeps/trial_report.py); its study and number are shown as the
columns ``trial.study`` and ``trial.number``, and no other ``hooks.*`` key is a parameter.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import pandas as pd

from trpo_exp import util

# Config keys that identify a run or its logistics, not the algorithm: never a hyperparameter.
NOT_HYPERPARAMS = ("seed", "trial.", "hooks.", "logger.", "device.", "torch_threads", "log_every",
                   "checkpoint_interval_s", "fresh",
                   "eval.every", "algo.name", "env.id")
# Sweep bookkeeping shown next to the parameters whenever a run has it (column <- config key).
TRIAL_KEYS = ("trial.study", "trial.number")
_TRIAL_HOOK = "hooks.trial."
# Roles of a sweep's runs (RunSet.roles): trial runs, and the best setting re-run on report seeds,
# which sweeps/worker.py logs under the W&B group "<study>/report".
TUNING, HELD_OUT = "tuning", "held-out"
REPORT_GROUP_SUFFIX = "/report"


def flatten(tree: Any) -> dict[str, Any]:
    """A run config -> dotted keys; lists become JSON text so every value is hashable and one
    type; the sweep hook's study and number become trial.study and trial.number."""
    flat = util.flatten(tree, leaf=lambda v: json.dumps(v) if isinstance(v, (list, tuple)) else v)
    for key in TRIAL_KEYS:
        hook_key = _TRIAL_HOOK + key.split(".", 1)[1]
        if hook_key in flat:
            flat[key] = flat.pop(hook_key)
    return flat


def config_table(configs: pd.Series) -> pd.DataFrame:
    """One row per run (index as ``configs``), one column per flattened config key."""
    rows = [flatten(json.loads(text)) if text else {} for text in configs]
    return pd.DataFrame.from_records(rows, index=configs.index)


def is_hyperparam(key: str, ignore: Iterable[str] = NOT_HYPERPARAMS) -> bool:
    return not any(key == p or (p.endswith(".") and key.startswith(p)) for p in ignore)


def varying_keys(table: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """Hyperparameter keys whose value differs between runs of one (env, algo) cell.

    Within a cell, not overall: pg and trpo legitimately differ in keys the other ignores, and that
    must not split either algorithm's seeds into separate rows.
    """
    keys = [k for k in table.columns if is_hyperparam(k)]
    if not keys:
        return []
    varying = set()
    for _, idx in cells.groupby(["env", "algo"], sort=False).groups.items():
        varying.update(differing(table.loc[idx, keys]))
    return [k for k in keys if k in varying]


def differing(table: pd.DataFrame) -> list[str]:
    """Columns with two or more distinct values. A key some runs lack is not a difference by itself:
    that is a config schema change (new option with its default), marked separately by the loader."""
    return list(table.columns[table.nunique(dropna=True) > 1])


def label(algo: str, values: dict[str, Any]) -> str:
    """'trpo' or 'trpo (max_kl=0.02, cg_damping=0.1)': short key names unless they would clash."""
    if not values:
        return algo
    shorts = [k.rsplit(".", 1)[-1] for k in values]
    names = shorts if len(set(shorts)) == len(shorts) else list(values)
    return f"{algo} (" + ", ".join(f"{n}={_fmt(v)}" for n, v in zip(names, values.values())) + ")"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None or (isinstance(value, float) and value != value) else str(value)
