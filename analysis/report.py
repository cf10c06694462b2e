"""``python -m analysis.report <run dirs | W&B project> --out report/``: runs -> report.md in one go.

Writes into ``--out``: report.md (tables and figures, ready to read on GitHub), table.md / table.tex
/ table.csv (final performance), runs.csv (one row per run: its score, status, marks), and
figures/*.png + *.pdf (learning curves, training diagnostics, sweeps). A user mistake or an empty
selection prints one line, ``analysis: error: ...``, and exits with status 1; an option value out of
range (``analysis: error: --points=0 is not allowed: must be between 2 and 2000``) exits with status 2,
as argparse's own usage errors do, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from analysis import aggregate, figures, output, references, stats, tables
from analysis import params as P
from analysis.errors import AnalysisError, OptionError
from analysis.loading import LoadWarning, group_by_reason, load_runs
from analysis.runset import RunSet
from analysis.sources import KINDS
from analysis.sources.base import STEP as STEP_COLUMN
from trpo_exp import algorithms
from trpo_exp.util import first_line

PROG = "analysis"
# Algorithms with a trust-region size delta = algo.max_kl (drawn on the KL diagnostic).
DELTA_ALGOS = algorithms.trust_region_names()
PREFERRED_SWEEP_AXES = ("algo.max_kl", "algo.cg_damping")
SWEEP_TABLE_ROWS = 15
TRACEBACK_ENV = "ANALYSIS_TRACEBACK"  # set to see the traceback of an internal error

# Upper bounds of the numeric options: past them a value only costs memory (or overflows) and
# changes nothing a reader can see.
MAX_POINTS = 2000  # a figure panel is narrower than this in pixels at figures.DPI
MAX_RESAMPLES = 100_000  # the bootstrap holds resamples x grid points floats per setting
MAX_LAST_K = 1_000_000_000  # more values than any run logs; pandas' tail() overflowed past a C long
# Integer options: (lowest, highest) allowed, both included; None is no upper bound.
INT_RANGES = {"--last-k": (1, MAX_LAST_K), "--points": (2, MAX_POINTS), "--resamples": (100, MAX_RESAMPLES),
              "--seed": (0, None)}  # numpy's generators take no negative seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", metavar="RUNS",
                   help="run directories or their parents (records, offline), or W&B projects entity/project (api)")
    p.add_argument("--source", choices=KINDS, default="records",
                   help="records: metrics.csv + run.json (default); offline: W&B offline files; api: wandb.Api()")
    p.add_argument("--out", default="report", help="output directory (default: report)")
    p.add_argument("--metric", default="eval/return_mean", help="metric of the final-performance table")
    p.add_argument("--last-k", type=int, default=aggregate.LAST_K,
                   help="final performance = mean of a run's last K values of --metric (default 3, at least 1)")
    p.add_argument("--curve-metric", default="rollout/return_mean", help="metric of the learning curves")
    p.add_argument("--lower-is-better", action="store_true", help="bold the lowest mean instead of the highest")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep runs with KEY=VALUE (algo, env, seed, group, status or any config key such as "
                        "algo.max_kl); repeat to combine")
    p.add_argument("--include-unfinished", action="store_true",
                   help="keep running, failed and pruned runs (marked) instead of skipping them")
    p.add_argument("--points", type=int, default=aggregate.NUM_POINTS, help=f"points of the common step grid (2 to {MAX_POINTS})")
    p.add_argument("--resamples", type=int, default=stats.N_RESAMPLES, help=f"bootstrap resamples (100 to {MAX_RESAMPLES})")
    p.add_argument("--confidence", type=float, default=stats.CONFIDENCE, help="confidence level of the CIs")
    p.add_argument("--seed", type=int, default=stats.SEED, help="seed of the bootstrap (>= 0)")
    p.add_argument("--cache-dir", default=None, help="parquet cache (default ~/.cache/trpo_exp/analysis)")
    p.add_argument("--no-cache", action="store_true", help="read every run again and do not write the cache")
    p.add_argument("--reference", nargs="?", const=str(references.DEFAULT), default=None, metavar="CSV",
                   help="add published figures (sb3-contrib, Tianshou; see analysis/data/README.md) as a table "
                        "column and dashed lines; optionally a CSV of the same columns")
    p.add_argument("--entity", default=None, help="api: W&B entity when RUNS are bare project names")
    p.add_argument("--api-filters", default=None, metavar="JSON",
                   help='api: MongoDB-style run filters, e.g. \'{"config.algo.name": "trpo"}\'')
    return p


def main(argv: Sequence[str] | None = None, *, parser: argparse.ArgumentParser | None = None,
         builder: type[Report] | None = None) -> int:
    """The command: parse, load, write, and the error policy (one line, exit 1; internal 2).

    ``parser`` and ``builder`` let another report on the same runs (analysis.paper_figure) share
    the options, the loading and this error handling; the default is this module's report."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        path = write_report(args, argv if argv is not None else sys.argv[1:], builder=builder or Report)
    except OptionError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except AnalysisError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not bad input: still one line, the traceback on request
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"{PROG}: error: internal error, please report it: {type(err).__name__}: {first_line(err)} "
              f"(set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        return 2
    print(f"{PROG}: wrote {path}")
    return 0


def write_report(args: argparse.Namespace, argv: Sequence[str], builder: type[Report] | None = None) -> Path:
    check_options(args)
    reference = references.load(args.reference) if args.reference else None
    existed = Path(args.out).exists()
    out = output.prepare(Path(args.out))  # before the load: a bad --out fails in a second, not after it
    try:
        rs = _load(args)
        rs = apply_filters(rs, args.filter)
    except AnalysisError:
        if not existed:
            output.remove_if_empty(out)  # an error leaves no empty report directory behind
        raise
    return (builder or Report)(rs, args, argv, reference).write(out)


def _load(args: argparse.Namespace) -> RunSet:
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LoadWarning)
            return load_runs(args.inputs, args.source, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                             include_unfinished=args.include_unfinished, required=[args.metric],
                             entity=args.entity, api_filters=args.api_filters)
    finally:  # after catch_warnings has exited; also before an "all skipped" error
        _show(caught)


def _show(caught: list[warnings.WarningMessage]) -> None:
    """The load's one warning as a plain line on stderr; any other warning as usual.

    Called after ``catch_warnings`` has exited: inside it, ``showwarning`` is the recorder itself,
    and re-showing a caught warning appended it to the very list being shown, forever (the hang of a
    run.json with seed 2**64). Each distinct message is shown once.
    """
    seen = set()
    for w in list(caught):
        key = (w.category, str(w.message))
        if key in seen:
            continue
        seen.add(key)
        if issubclass(w.category, LoadWarning):
            print(f"{PROG}: warning: {str(w.message).removeprefix('analysis: ')}", file=sys.stderr)
        else:
            print(f"{PROG}: warning: {w.category.__name__}: {str(w.message).splitlines()[0] if str(w.message) else ''}", file=sys.stderr)


def check_options(args: argparse.Namespace) -> None:
    """:class:`OptionError` naming the first numeric option out of range, its value and what is allowed."""
    for option, (low, high) in INT_RANGES.items():
        value = getattr(args, option[2:].replace("-", "_"))
        if value < low or (high is not None and value > high):
            allowed = f"must be >= {low}" if high is None else f"must be between {low} and {high}"
            raise OptionError(f"{option}={value} is not allowed: {allowed}")
    if not 0 < args.confidence < 1:  # also NaN, which every comparison fails
        raise OptionError(f"--confidence={args.confidence:g} is not allowed: must be between 0 and 1, both excluded")


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

    def __init__(self, rs: RunSet, args: argparse.Namespace, argv: Sequence[str],
                 reference: pd.DataFrame | None = None):
        self.rs, self.args, self.argv, self.reference = rs, args, list(argv), reference
        self.kw = dict(confidence=args.confidence, n_resamples=args.resamples, seed=args.seed)
        self.summary = aggregate.summary_table(rs, args.metric, args.last_k, **self.kw)
        self.order = tables.setting_order(rs.settings)
        self.palette = figures.colors(self.order)
        self.style = figures.styles(self.order)  # one look per setting across all figures
        self.md: list[str] = []

    def write(self, out: Path) -> Path:
        with output.writing(out):
            out.mkdir(parents=True, exist_ok=True)
            self._header()
            self._tables(out)
            self._references()
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
        if "role" in rs.settings:
            self.md += ["Tuning runs (a sweep's trials) and held-out runs (the best setting re-run on fresh "
                        "seeds) are separate rows, marked [tuning] and [held-out]: a held-out score is the "
                        "honest estimate, a tuning score is biased upwards by the selection.", ""]

    def _tables(self, out: Path) -> None:
        a, s = self.args, self.summary
        hib = not a.lower_is_better
        (out / "table.md").write_text(tables.to_markdown(s, hib))
        caption = (f"Final performance: {a.metric}, mean of each run's last {a.last_k} values; "
                   f"mean ± standard error over runs (n = seeds); best of each environment in bold.")
        (out / "table.tex").write_text(tables.to_latex(s, hib, caption=caption))
        (out / "table.csv").write_text(tables.to_csv(s))
        pct = f"{a.confidence:.0%}"
        ref_col = self.reference is not None
        self.md += ["## Final performance", "", caption, "", tables.to_markdown(s, hib), "",
                    "Also as [LaTeX (booktabs)](table.tex) and [CSV](table.csv).", "",
                    f"Interval estimates: {pct} percentile-bootstrap CI of the mean ({a.resamples} resamples, "
                    f"seed {a.seed}) and IQM (mean of the middle 50% of runs).", "",
                    "| algorithm | environment | n | mean | " + pct + " CI | IQM |" + (" published |" if ref_col else ""),
                    "|---|---|---:|---:|---:|---:|" + ("---|" if ref_col else "")]
        few = False
        for row in self._ordered(s).itertuples(index=False):
            if row.n < stats.MIN_N_CI:
                few, ci = True, f"– (n<{stats.MIN_N_CI})"
            else:
                ci = f"[{row.ci_low:.4g}, {row.ci_high:.4g}]"
            cells = f"| {row.setting} | {row.env} | {row.n} | {row.mean:.4g} | {ci} | {row.iqm:.4g} |"
            if ref_col:
                cells += f" {self._published(row.env, row.algo)} |"
            self.md.append(cells)
        self.md.append("")
        if few:
            self.md += [f"–: {stats.NO_CI_REASON}; run more seeds for an interval.", ""]

    def _published(self, env: str, algo: str) -> str:
        """The published figures for this env and algorithm, as a table cell."""
        assert self.reference is not None
        rows = references.for_env(self.reference, env)
        rows = rows[rows["algo"] == algo]
        return "; ".join(references.label(r, env) for _, r in rows.iterrows()) or "–"

    def _references(self) -> None:
        if self.reference is None:
            return
        envs = sorted(self.rs.runs["env"].unique())
        lines = []
        for env in envs:
            for _, row in references.for_env(self.reference, env).iterrows():
                lines.append(f"- {env}: {references.label(row, env)}, {row['url']}")
        self.md += ["### Published figures", ""]
        self.md += (lines or [f"None of the reference file's environments is among {', '.join(envs)}."]) + [""]
        if lines:
            self.md += ["Other code, environment versions, budgets and metrics: a rough yardstick, not a "
                        "like-for-like comparison (see analysis/data/README.md).", ""]

    def _ordered(self, frame: pd.DataFrame) -> pd.DataFrame:
        rank = {s: i for i, s in enumerate(self.order)}
        return frame.sort_values(["env", "setting"], key=lambda c: c.map(rank) if c.name == "setting" else c)

    def _curves(self, out: Path) -> None:
        a = self.args
        shown = self._best_settings(limit=figures.HIGHLIGHT)
        curves = aggregate.curves(self.rs, a.curve_metric, a.points, band_for=shown, **self.kw)
        self.md += ["## Learning curves", ""]
        if curves.empty:
            self.md += [f"No values of {a.curve_metric} to plot.", ""]
            return
        refs = self._reference_lines(sorted(curves["env"].unique()))
        fig = figures.learning_curves(curves, ylabel=_metric_label(a.curve_metric), order=self.order,
                                      palette=self.palette, highlight=[s for s in self.order if s in shown],
                                      references=refs, style=self.style)
        figures.save(fig, out / "figures" / "learning_curves")
        greyed = len(self.order) - len(shown)
        self.md += ["![learning curves](figures/learning_curves.png)", "",
                    f"{a.curve_metric} against environment steps: mean over seeds with a shaded "
                    f"{a.confidence:.0%} bootstrap CI (settings with at least {stats.MIN_N_CI} seeds); every run "
                    f"interpolated onto a common grid of {a.points} points and never past its last logged step "
                    f"([PDF](figures/learning_curves.pdf))."
                    + (f" The {len(shown)} best of {len(self.order)} settings are in colour, the other {greyed} "
                       f"grey." if greyed else "")
                    + (" Dashed black: published figures (a final evaluation or a maximum, not this curve's "
                       "metric; see the table)." if any(refs.values()) else ""), ""]
        for note in identical_settings(curves, self.summary):
            self.md += [note, ""]

    def _reference_lines(self, envs: Sequence[str]) -> dict[str, list[tuple[float, str]]]:
        if self.reference is None:
            return {}
        return {env: [(float(r["mean"]), references.short_label(r))
                      for _, r in references.for_env(self.reference, env).iterrows()] for env in envs}

    def _best_settings(self, limit: int) -> set[str]:
        best = self.summary.groupby("setting")["mean"].max()
        best = best.sort_values(ascending=self.args.lower_is_better)
        return set(best.index[:limit]) | (set(self.order) if len(self.order) <= limit else set())

    def _sweeps(self, out: Path) -> None:
        rs, s = self.rs, self.summary
        if "role" in s:
            s = s[s["role"] != HELD_OUT]  # the re-run of the best setting is not a point of the search
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
                                objective=_metric_label(self.args.metric), title=f"{algo} on {env}",
                                higher_is_better=not self.args.lower_is_better)
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
                        f"mean over the seeds of each setting (tuning runs only); the best of each sweep is "
                        f"ringed.", "", *parts]

    def _diagnostics(self, out: Path) -> None:
        shown = self._best_settings(limit=figures.HIGHLIGHT)
        order = [s for s in self.order if s in shown]
        curves = {m: aggregate.curves(self.rs, m, self.args.points, only=shown, **self.kw)
                  for m, _ in figures.DIAGNOSTICS}
        curves = {m: c for m, c in curves.items() if not c.empty}
        if not curves:
            return
        deltas = self._deltas()
        self.md += ["## Training diagnostics", ""]
        labels = dict(figures.DIAGNOSTICS)
        for env in sorted(self.rs.runs["env"].unique()):
            name = f"diagnostics_{slug(env)}"
            fig = figures.diagnostics(curves, env, order=order, deltas=deltas, palette=self.palette,
                                      style=self.style)
            figures.save(fig, out / "figures" / name)
            self.md += [f"![diagnostics {env}](figures/{name}.png)", ""]
            zero = [labels[m] for m, c in curves.items() if figures.all_zero(c, env, order)]
            if zero:
                self.md += [f"{env}: {', '.join(zero)}: 0 in every update of every setting shown (no panel).", ""]
        if len(order) < len(self.order):
            self.md += [f"The {len(order)} best of {len(self.order)} settings are shown.", ""]
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


HELD_OUT = P.HELD_OUT


def identical_settings(curves: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Sentences naming settings of one env whose mean curves and final scores are identical.

    Their lines lie on top of each other (styles and staggered markers keep both visible); the
    report must say so rather than let a reader think one is missing.
    """
    notes = []
    score = summary.set_index(["env", "setting"])["mean"]
    for env, data in curves.groupby("env", sort=True):
        by_curve: dict[tuple, list[str]] = {}
        for setting, d in data.groupby("setting", sort=False):
            key = (tuple(d[STEP_COLUMN].round(6)), tuple(d["mean"]), score.get((env, setting), np.nan))
            by_curve.setdefault(key, []).append(str(setting))
        for same in by_curve.values():
            if len(same) > 1:
                notes.append(f"On {env}, {' and '.join(same)} gave identical results (same mean curve and "
                             f"final score): their lines coincide.")
    return notes


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
