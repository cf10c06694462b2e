"""RunSet: the loaded runs, as one table of runs and one table of metrics, plus the tidy view.

Storage is two frames: ``runs`` (one row per run: id, source, algo, env, seed, status, config, ...)
and ``metrics`` (wide: ``run_id``, ``env_steps``, one column per metric). The tidy frame the analysis
promises (run id, algo, env, seed, sweep and trial params, env_steps, metric, value) is built from
them by :meth:`RunSet.tidy`; aggregation reads the wide frame directly, because it takes one metric
at a time and melting 1,000 runs x 500 rows x 24 metrics only to filter one back out wastes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from analysis import params as P
from analysis.sources.base import STEP


@dataclass
class RunSet:
    runs: pd.DataFrame  # indexed by run_id; usable runs only
    metrics: pd.DataFrame  # wide; run_id is categorical over runs.index
    skipped: list[str] = field(default_factory=list)  # "<run>: <why>" for runs left out
    marked: list[str] = field(default_factory=list)  # "<run>: <what is odd>" for runs kept

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def metric_names(self) -> list[str]:
        return [c for c in self.metrics.columns if c not in ("run_id", STEP)]

    @cached_property
    def config(self) -> pd.DataFrame:
        """Flattened config, one row per run, one column per dotted key (NaN where a run lacks it)."""
        return P.config_table(self.runs["config"])

    @cached_property
    def hyperparams(self) -> list[str]:
        """Config keys that vary between runs of some (env, algo) cell: the sweep parameters."""
        return P.varying_keys(self.config, self.runs[["env", "algo"]])

    @cached_property
    def roles(self) -> pd.Series:
        """Per run: 'tuning' (a sweep trial's run), 'held-out' (the sweep's best setting re-run on its
        report seeds, W&B group '<study>/report') or '' (an ordinary run).

        Held-out seeds estimate the tuned setting honestly; pooling them with the tuning seeds that
        selected it (same parameters, so the same setting) would defeat that, so the role is part of
        the setting.
        """
        conf = self.config
        group = self.runs["group"].astype(str)
        if "logger.group" in conf:
            group = group.where(group != "", conf["logger.group"].fillna("").astype(str))
        tuning = conf["trial.number"].notna() if "trial.number" in conf else pd.Series(False, index=conf.index)
        held_out = group.str.endswith(P.REPORT_GROUP_SUFFIX) & ~tuning
        out = pd.Series("", index=self.runs.index, dtype=object)
        out[tuning.to_numpy()] = P.TUNING
        out[held_out.to_numpy()] = P.HELD_OUT
        return out

    @cached_property
    def param_columns(self) -> list[str]:
        """Hyperparameters plus trial bookkeeping (trial.study, trial.number) when runs have it, and
        ``role`` when some runs are a sweep's tuning or held-out runs."""
        trial = [k for k in P.TRIAL_KEYS if k in self.config and self.config[k].notna().any()]
        role = ["role"] if self.roles.ne("").any() else []
        return self.hyperparams + trial + role

    @cached_property
    def settings(self) -> pd.DataFrame:
        """Per run: env, algo, seed, ``setting`` (the row label of a table) and the parameter columns."""
        out = self.runs[["env", "algo", "seed"]].copy()
        conf = self.config
        labels = pd.Series("", index=out.index, dtype=object)
        for (_env, algo), idx in out.groupby(["env", "algo"], sort=False).groups.items():
            keys = P.differing(conf.loc[idx, self.hyperparams])
            if not keys:
                labels[idx] = algo
                continue
            # One label per distinct combination of values, not per run (1,000 runs, few settings).
            for values, members in conf.loc[idx, keys].groupby(keys, dropna=False, sort=False).groups.items():
                values = values if isinstance(values, tuple) else (values,)
                labels[members] = P.label(algo, {k: _value(v) for k, v in zip(keys, values)})
        roles = self.roles
        if roles.ne("").any():
            out["role"] = roles
            labels = labels.where(roles == "", labels + " [" + roles + "]")
        out["setting"] = labels
        for key in self.param_columns:
            if key != "role":
                out[key] = conf[key]
        return out

    def tidy(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """Long frame: run_id, algo, env, seed, setting, <params...>, env_steps, metric, value.

        Only observed values: evaluation metrics appear on evaluation steps only.
        """
        names = metrics or self.metric_names
        long = self.metrics.melt(id_vars=["run_id", STEP], value_vars=names, var_name="metric",
                                 value_name="value").dropna(subset=["value"])
        long["metric"] = long["metric"].astype("category")
        settings = self.settings
        front = {}
        for column in ["algo", "env", "seed", "setting", *self.param_columns]:
            values = settings[column]
            numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            front[column] = long["run_id"].map(values).astype(values.dtype if numeric else "category")
        long = long.assign(**front)
        order = ["run_id", "algo", "env", "seed", "setting", *self.param_columns, STEP, "metric", "value"]
        return long[order].reset_index(drop=True)

    def select(self, mask: pd.Series) -> RunSet:
        """The runs where ``mask`` (indexed like ``runs``) is true."""
        runs = self.runs[mask.reindex(self.runs.index, fill_value=False).astype(bool)]
        metrics = self.metrics[self.metrics["run_id"].isin(runs.index)].copy()
        metrics["run_id"] = pd.Categorical(metrics["run_id"].astype(str), categories=runs.index)
        return RunSet(runs, metrics, list(self.skipped), list(self.marked))


def _value(v):
    return None if isinstance(v, float) and v != v else v
