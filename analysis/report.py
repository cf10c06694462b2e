"""``python -m analysis.report <run dirs | W&B project> --out report/``: runs -> report.md in one go.

Writes into ``--out``: report.md (tables and figures, ready to read on GitHub), table.md / table.tex
/ table.csv (final performance), runs.csv (one row per run: its score, status, marks), and
figures/*.png + *.pdf (learning curves, training diagnostics, sweeps). A user mistake or an empty
selection prints one line, ``analysis: error: ...``, and exits with status 1.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from analysis import aggregate, figures, stats, tables
from analysis.errors import AnalysisError
from analysis.loading import LoadWarning, group_by_reason, load_runs
from analysis.runset import RunSet
from analysis.sources import KINDS
from trpo_exp import algorithms

PROG = "analysis"
# Algorithms with a trust-region size delta = algo.max_kl (drawn on the KL diagnostic).
DELTA_ALGOS = algorithms.trust_region_names()
PREFERRED_SWEEP_AXES = ("algo.max_kl", "algo.cg_damping")
SWEEP_TABLE_ROWS = 15


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", metavar="RUNS",
                   help="run directories or their parents (records, offline), or W&B projects entity/project (api)")
    p.add_argument("--source", choices=KINDS, default="records",
                   help="records: metrics.csv + run.json (default); offline: W&B offline files; api: wandb.Api()")
    p.add_argument("--out", default="report", help="output directory (default: report)")
    p.add_argument("--metric", default="eval/return_mean", help="metric of the final-performance table")
    p.add_argument("--last-k", type=int, default=aggregate.LAST_K,
                   help="final performance = mean of a run's last K values of --metric (default 3)")
    p.add_argument("--curve-metric", default="rollout/return_mean", help="metric of the learning curves")
    p.add_argument("--lower-is-better", action="store_true", help="bold the lowest mean instead of the highest")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep runs with KEY=VALUE (algo, env, seed, group, status or any config key such as "
                        "algo.max_kl); repeat to combine")
    p.add_argument("--include-unfinished", action="store_true",
                   help="keep running, failed and pruned runs (marked) instead of skipping them")
    p.add_argument("--points", type=int, default=aggregate.NUM_POINTS, help="points of the common step grid")
    p.add_argument("--resamples", type=int, default=stats.N_RESAMPLES, help="bootstrap resamples")
    p.add_argument("--confidence", type=float, default=stats.CONFIDENCE, help="confidence level of the CIs")
    p.add_argument("--seed", type=int, default=stats.SEED, help="seed of the bootstrap")
    p.add_argument("--cache-dir", default=None, help="parquet cache (default ~/.cache/trpo_exp/analysis)")
    p.add_argument("--no-cache", action="store_true", help="read every run again and do not write the cache")
    p.add_argument("--entity", default=None, help="api: W&B entity when RUNS are bare project names")
    p.add_argument("--api-filters", default=None, metavar="JSON",
                   help='api: MongoDB-style run filters, e.g. \'{"config.algo.name": "trpo"}\'')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = write_report(args, argv if argv is not None else sys.argv[1:])
    except AnalysisError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(f"{PROG}: wrote {path}")
    return 0


def write_report(args: argparse.Namespace, argv: Sequence[str]) -> Path:
    _check_args(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        try:
            rs = load_runs(args.inputs, args.source, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                           include_unfinished=args.include_unfinished, required=[args.metric],
                           entity=args.entity, api_filters=args.api_filters)
        finally:  # also before an "all skipped" error: the warning says which runs and why
            _show(caught)
    rs = apply_filters(rs, args.filter)
    return Report(rs, args, argv).write(Path(args.out))


def _show(caught: list) -> None:
    """The load's one warning as a plain line on stderr; any other warning as usual."""
    for w in caught:
        if issubclass(w.category, LoadWarning):
            print(f"{PROG}: warning: {str(w.message).removeprefix('analysis: ')}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    caught.clear()


def _check_args(args) -> None:
    if args.last_k < 1:
        raise AnalysisError(f"--last-k must be >= 1, got {args.last_k}")
    if args.points < 2:
        raise AnalysisError(f"--points must be >= 2, got {args.points}")
    if not 0 < args.confidence < 1:
        raise AnalysisError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.resamples < 100:
        raise AnalysisError(f"--resamples must be >= 100, got {args.resamples}")


def apply_filters(rs: RunSet, filters: Sequence[str]) -> RunSet:
    """Keep runs matching every KEY=VALUE (numbers compare as numbers: max_kl=0.01 matches 1e-2)."""
    mask = pd.Series(True, index=rs.runs.index)
    for text in filters:
        key, sep, want = text.partition("=")
        if not sep or not key:
            raise AnalysisError(f"--filter {text!r} is not KEY=VALUE")
        if key in ("algo", "env", "seed", "group", "status", "name", "source"):
            column = rs.runs[key]
        elif key in rs.config:
            column = rs.config[key]
        else:
            raise AnalysisError(f"--filter {key}: no such run field or config key")
        mask &= column.map(lambda v, want=want: _same(v, want))
    if not mask.all():
        rs = rs.select(mask)
    if not len(rs):
        raise AnalysisError(f"no runs match {' '.join(filters)}")
    return rs


def _same(value, want: str) -> bool:
    try:
        return float(value) == float(want)
    except (TypeError, ValueError):
        return str(value) == want


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


class Report:
    """Builds the pieces (tables, figures) and the Markdown that links them."""

    def __init__(self, rs: RunSet, args: argparse.Namespace, argv: Sequence[str]):
        self.rs, self.args, self.argv = rs, args, list(argv)
        self.kw = dict(confidence=args.confidence, n_resamples=args.resamples, seed=args.seed)
        self.summary = aggregate.summary_table(rs, args.metric, args.last_k, **self.kw)
        self.order = tables.setting_order(rs.settings)
        self.palette = figures.colors(self.order)
        self.md: list[str] = []

    def write(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        self._header()
        self._tables(out)
        self._curves(out)
        self._sweeps(out)
        self._diagnostics(out)
        self._runs(out)
        path = out / "report.md"
        path.write_text("\n".join(self.md) + "\n")
        return path

    # ---------------------------------------------------------------------------------- sections

    def _header(self) -> None:
        rs, a = self.rs, self.args
        envs, algos = sorted(rs.runs["env"].unique()), tables.algo_order(rs.runs["algo"])
        algos += sorted(set(rs.runs["algo"]) - set(algos))
        self.md += ["# Results", "",
                    f"{len(rs)} runs ({a.source}): algorithms {', '.join(algos)}; environments {', '.join(envs)}.",
                    "", f"Command: `python -m analysis.report {shlex.join(self.argv)}`", ""]
        if rs.skipped or rs.marked:
            self.md += [f"Skipped {len(rs.skipped)} run(s), marked {len(rs.marked)}: see [Runs](#runs).", ""]

    def _tables(self, out: Path) -> None:
        a, s = self.args, self.summary
        hib = not a.lower_is_better
        (out / "table.md").write_text(tables.to_markdown(s, hib))
        caption = (f"Final performance: {a.metric}, mean of each run's last {a.last_k} values; "
                   f"mean ± standard error over runs (n = seeds); best of each environment in bold.")
        (out / "table.tex").write_text(tables.to_latex(s, hib, caption=caption))
        (out / "table.csv").write_text(tables.to_csv(s))
        pct = f"{a.confidence:.0%}"
        self.md += ["## Final performance", "", caption, "", tables.to_markdown(s, hib), "",
                    "Also as [LaTeX (booktabs)](table.tex) and [CSV](table.csv).", "",
                    f"Interval estimates: {pct} percentile-bootstrap CI of the mean ({a.resamples} resamples, "
                    f"seed {a.seed}) and IQM (mean of the middle 50% of runs).", "",
                    "| algorithm | environment | n | mean | " + pct + " CI | IQM |", "|---|---|---:|---:|---:|---:|"]
        for row in self._ordered(s).itertuples(index=False):
            self.md.append(f"| {row.setting} | {row.env} | {row.n} | {row.mean:.4g} | "
                           f"[{row.ci_low:.4g}, {row.ci_high:.4g}] | {row.iqm:.4g} |")
        self.md.append("")

    def _ordered(self, frame: pd.DataFrame) -> pd.DataFrame:
        rank = {s: i for i, s in enumerate(self.order)}
        return frame.sort_values(["env", "setting"], key=lambda c: c.map(rank) if c.name == "setting" else c)

    def _curves(self, out: Path) -> None:
        a = self.args
        curves = aggregate.curves(self.rs, a.curve_metric, a.points, **self.kw)
        self.md += ["## Learning curves", ""]
        if curves.empty:
            self.md += [f"No values of {a.curve_metric} to plot.", ""]
            return
        shown = self._best_settings(limit=figures.MAX_LINES)
        fig = figures.learning_curves(curves, ylabel=_metric_label(a.curve_metric),
                                      order=[s for s in self.order if s in shown], palette=self.palette)
        figures.save(fig, out / "figures" / "learning_curves")
        self.md += ["![learning curves](figures/learning_curves.png)", "",
                    f"{a.curve_metric} against environment steps: mean over seeds with a shaded "
                    f"{a.confidence:.0%} bootstrap CI; every run interpolated onto a common grid of {a.points} "
                    f"points and never past its last logged step ([PDF](figures/learning_curves.pdf))."
                    + (f" The {len(shown)} best of {len(self.order)} settings are shown." if len(shown) < len(self.order) else ""),
                    ""]

    def _best_settings(self, limit: int) -> set[str]:
        best = self.summary.groupby("setting")["mean"].max()
        best = best.sort_values(ascending=self.args.lower_is_better)
        return set(best.index[:limit]) | (set(self.order) if len(self.order) <= limit else set())

    def _sweeps(self, out: Path) -> None:
        rs, s = self.rs, self.summary
        numeric = [k for k in rs.hyperparams if pd.api.types.is_numeric_dtype(rs.config[k])
                   and not pd.api.types.is_bool_dtype(rs.config[k])]
        parts = []
        for (env, algo), group in s.groupby(["env", "algo"], sort=True):
            axes = [k for k in numeric if k in group and group[k].nunique() > 1]
            if len(group) < 3 or not axes:  # fewer than 3 settings is a comparison, not a sweep
                continue
            preferred = [k for k in PREFERRED_SWEEP_AXES if k in axes]
            axes = (preferred + sorted((k for k in axes if k not in preferred), key=lambda k: -group[k].nunique()))[:2]
            name = f"sweep_{slug(env)}_{slug(algo)}"
            fig = figures.sweep(group, axes[0], axes[1] if len(axes) > 1 else None,
                                objective=_metric_label(self.args.metric), title=f"{algo} on {env}")
            figures.save(fig, out / "figures" / name)
            top = group.sort_values("mean", ascending=self.args.lower_is_better).head(SWEEP_TABLE_ROWS)
            cols = [c for c in rs.param_columns if c in top]
            parts += [f"### {algo} on {env}", "", f"![sweep](figures/{name}.png)", "",
                      "| " + " | ".join(cols + ["n", "mean ± SE"]) + " |", "|" + "---:|" * (len(cols) + 2)]
            for _, row in top.iterrows():
                parts.append("| " + " | ".join([_cell(row[c]) for c in cols] + [str(row["n"]),
                             tables.cell_text(row["mean"], row["se"], row["n"]).rsplit(" (", 1)[0]]) + " |")
            parts.append("")
        if parts:
            self.md += ["## Sweeps", "", f"Objective: {self.args.metric} (final performance as in the table), "
                        f"mean over the seeds of each setting; the best of each sweep is ringed.", "", *parts]

    def _diagnostics(self, out: Path) -> None:
        curves = {m: aggregate.curves(self.rs, m, self.args.points, **self.kw) for m, _ in figures.DIAGNOSTICS}
        curves = {m: c for m, c in curves.items() if not c.empty}
        if not curves:
            return
        deltas = self._deltas()
        self.md += ["## Training diagnostics", ""]
        shown = self._best_settings(limit=6)
        for env in sorted(self.rs.runs["env"].unique()):
            name = f"diagnostics_{slug(env)}"
            fig = figures.diagnostics(curves, env, order=[s for s in self.order if s in shown],
                                      deltas=deltas, palette=self.palette)
            figures.save(fig, out / "figures" / name)
            self.md += [f"![diagnostics {env}](figures/{name}.png)", ""]
        self.md += ["Dashed lines: the trust-region size delta (algo.max_kl) of npg and trpo settings.", ""]

    def _deltas(self) -> dict[str, float]:
        if "algo.max_kl" not in self.rs.config:
            return {}
        frame = self.rs.settings[["algo", "setting"]].assign(delta=self.rs.config["algo.max_kl"])
        frame = frame[frame["algo"].isin(DELTA_ALGOS)]
        out = {}
        for setting, group in frame.groupby("setting"):
            values = group["delta"].dropna().unique()
            if len(values) == 1:
                out[setting] = float(values[0])
        return out

    def _runs(self, out: Path) -> None:
        rs = self.rs
        scores = aggregate.final_scores(rs, self.args.metric, self.args.last_k)
        table = rs.settings.join(scores).join(rs.runs[["name", "status", "source", "problems"]])
        table.index.name = "run_id"
        table.to_csv(out / "runs.csv")
        self.md += ["## Runs", "", f"{len(rs)} runs used, one row each in [runs.csv](runs.csv) "
                    f"(score = final performance of the run)."]
        for title, entries in (("Marked (used, but check them)", rs.marked), ("Skipped", rs.skipped)):
            if entries:
                self.md += ["", f"{title}: {len(entries)}", ""]
                for why, runs in group_by_reason(entries).items():
                    self.md += [f"- {why}: " + ", ".join(f"`{r}`" for r in runs)]
        self.md.append("")


def _metric_label(metric: str) -> str:
    labels = {"eval/return_mean": "evaluation return (deterministic policy)",
              "rollout/return_mean": "episode return (training rollouts)"}
    return labels.get(metric, metric)


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
