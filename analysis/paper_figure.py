"""``python -m analysis.paper_figure <run dirs> --out DIR``: the TRPO paper's Figure 4 layout.

Schulman et al. 2015 (arXiv 1502.05477), Figure 4: learning curves of the locomotion tasks, one
panel per task (Swimmer, Hopper, Walker, in that order), one line per algorithm, averaged over five
runs, against the number of policy iterations. This command draws the same layout from run records,
twice: against policy iterations (the paper's axis) and against simulator steps (every simulator
step, vine branches included, so single path and vine compare at equal simulation cost). Lines are
the mean over seeds with the 95% percentile-bootstrap band; the table is the final performance.

Everything but the layout is the analysis report's (analysis.report): the same options, loading,
filters, statistics (analysis.aggregate, analysis.stats), styles and figure code (analysis.figures),
table renderings (analysis.tables) and error handling. The iteration axis is the same curve code
run on the ``train/iteration`` column instead of ``env_steps``.

Writes into ``--out``: figure4.md (figures, table, ordering per environment), figures/
figure4_iterations.png|pdf and figure4_steps.png|pdf, table.md / table.tex / table.csv, runs.csv.
The presets that produce the runs are conf/experiment/figure4_*.yaml (docs/figure4.md).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure

from analysis import aggregate, figures, output, stats
from analysis.report import Report, build_parser
from analysis.report import _metric_label as metric_label
from analysis.report import main as report_main
from analysis.runset import RunSet
from analysis.sources.base import STEP
from trpo_exp.record import WANDB_KEYS

ITERATION = WANDB_KEYS["iteration"]  # "train/iteration": 1, 2, ... per run
PAPER_ENVS = ("swimmer", "hopper", "walker")  # the paper's panel order (ids matched by prefix)
ITERATIONS_LABEL = "policy iterations"
STEPS_LABEL = "simulator steps (vine: trunk + branches)"
MARKDOWN = "figure4.md"
CAPTION = ("Learning curves, one panel per environment and one line per algorithm: mean over seeds, "
           "shaded {pct} percentile-bootstrap CI of the mean (settings with at least {n} seeds).")


def paper_order(envs: Sequence[str]) -> list[str]:
    """Environments in the paper's panel order (Swimmer, Hopper, Walker), any others after them."""
    def rank(env: str) -> tuple[int, str]:
        low = env.lower()
        return next((i for i, name in enumerate(PAPER_ENVS) if low.startswith(name)), len(PAPER_ENVS)), env
    return sorted(envs, key=rank)


def by_iteration(rs: RunSet) -> RunSet:
    """The same runs with the policy iteration as the x column: the curve code then averages and
    bands over iterations exactly as it does over env steps (one implementation of both axes)."""
    metrics = rs.metrics.assign(**{STEP: rs.metrics[ITERATION]}).dropna(subset=[STEP])
    return RunSet(rs.runs, metrics, list(rs.skipped), list(rs.marked))


@dataclass
class Figure4:
    """The numbers and the two figures of one Figure 4 report (tests read them back)."""

    curves_iterations: pd.DataFrame
    curves_steps: pd.DataFrame
    fig_iterations: Figure | None
    fig_steps: Figure | None


def build(rs: RunSet, *, curve_metric: str, order: Sequence[str], style: dict, points: int = aggregate.NUM_POINTS,
          references: dict | None = None, **kw) -> Figure4:
    """Curves against policy iterations and against simulator steps, and their figures (None when
    no run has a value of ``curve_metric``; the iterations figure also needs ``train/iteration``).
    ``kw``: confidence, n_resamples, seed of the bootstrap."""
    steps = aggregate.curves(rs, curve_metric, points, **kw)
    has_iterations = ITERATION in rs.metrics and rs.metrics[ITERATION].notna().any()
    iters = aggregate.curves(by_iteration(rs), curve_metric, points, **kw) if has_iterations else steps.iloc[:0]
    ylabel = metric_label(curve_metric)
    return Figure4(iters, steps, _figure(iters, ylabel, ITERATIONS_LABEL, order, style, None),
                   _figure(steps, ylabel, STEPS_LABEL, order, style, references))


def highlighted(curves: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """The settings drawn in colour: in each panel the first HIGHLIGHT of ``order`` present there.
    The cap is per panel, not over the figure: four algorithms plus a fixed-step NPG row per
    environment (each env its own best step size) are seven settings, each panel showing five, and
    none of them may turn grey."""
    chosen: set[str] = set()
    for _, panel in curves.groupby("env"):
        present = set(panel["setting"])
        chosen.update([s for s in order if s in present][:figures.HIGHLIGHT])
    return [s for s in order if s in chosen]


def _figure(curves: pd.DataFrame, ylabel: str, xlabel: str, order: Sequence[str], style: dict,
            references: dict | None) -> Figure | None:
    if curves.empty:
        return None
    fig = figures.learning_curves(curves, ylabel=ylabel, order=order, style=style, references=references,
                                  highlight=highlighted(curves, order))
    panels = [ax for ax in fig.axes if ax.get_title()]
    for ax in panels:
        ax.set_xlabel(xlabel)
    _to_paper_order(panels)
    return fig


def _to_paper_order(panels: list) -> None:
    """Move the panels (drawn in alphabetical env order) into the paper's order, in place."""
    specs = [ax.get_subplotspec() for ax in panels]
    by_title = {ax.get_title(): ax for ax in panels}
    for spec, env in zip(specs, paper_order(list(by_title))):
        by_title[env].set_subplotspec(spec)


def ordering(summary: pd.DataFrame, higher_is_better: bool = True) -> list[str]:
    """One line per environment: its settings from best to worst final mean, e.g.
    ``Hopper-v5: trpo 2,310 > trpo_vine 1,920 > npg_fixed 840 > pg 610``."""
    lines = []
    for env in paper_order(list(summary["env"].unique())):
        rows = summary[summary["env"] == env].sort_values("mean", ascending=not higher_is_better)
        lines.append(f"{env}: " + " > ".join(f"{r.setting} {r.mean:,.0f}" for r in rows.itertuples()))
    return lines


class PaperFigure(Report):
    """The report of analysis.report, laid out as the paper's Figure 4 (see the module docstring)."""

    def write(self, out: Path) -> Path:
        a = self.args
        with output.writing(out):
            out.mkdir(parents=True, exist_ok=True)
            refs = self._reference_lines(sorted(self.rs.runs["env"].unique()))
            result = build(self.rs, curve_metric=a.curve_metric, order=self.order, style=self.style,
                           points=a.points, references=refs, **self.kw)
            self._intro()
            self._figures(out, result)
            self._tables(out)
            self.md += ["### Ordering", "", f"Final performance ({a.metric}), best first:", ""]
            self.md += [f"- {line}" for line in ordering(self.summary, not a.lower_is_better)] + [""]
            self._runs(out)
            path = out / MARKDOWN
            path.write_text("\n".join(self.md) + "\n")
        return path

    def _intro(self) -> None:
        rs = self.rs
        envs = paper_order(list(rs.runs["env"].unique()))
        seeds = rs.runs.groupby(["env", "algo"])["seed"].nunique()
        span = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
        self.md += ["# TRPO paper, Figure 4 (Schulman et al. 2015, section 8.1)", "",
                    f"{len(rs)} runs: algorithms {', '.join(self.order)}; environments {', '.join(envs)}; "
                    f"{span} seed(s) per algorithm and environment.", "",
                    f"Command: `python -m analysis.paper_figure {shlex.join(self.argv)}`", ""]
        if rs.skipped or rs.marked:
            self.md += [f"Skipped {len(rs.skipped)} run(s), marked {len(rs.marked)}: see [Runs](#runs).", ""]

    def _figures(self, out: Path, result: Figure4) -> None:
        a = self.args
        caption = CAPTION.format(pct=f"{a.confidence:.0%}", n=stats.MIN_N_CI)
        self.md += ["## Learning curves", "", caption + f" Curve metric: {a.curve_metric}; every run interpolated "
                    f"onto a common grid of {a.points} points and never past its last logged value.", ""]
        for name, fig, axis in (("figure4_iterations", result.fig_iterations, "policy iterations (the paper's axis)"),
                                ("figure4_steps", result.fig_steps, "simulator steps (vine branches included)")):
            if fig is None:
                self.md += [f"Against {axis}: no values to plot.", ""]
                continue
            figures.save(fig, out / "figures" / name)
            self.md += [f"Against {axis}:", "", f"![{name}](figures/{name}.png)", "",
                        f"([PDF](figures/{name}.pdf))", ""]


def build_figure_parser() -> argparse.ArgumentParser:
    """analysis.report's options (sources, filters, metrics, statistics, cache), this command's name."""
    p = build_parser()
    p.prog = "python -m analysis.paper_figure"
    p.description = __doc__.splitlines()[0]
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return report_main(argv, parser=build_figure_parser(), builder=PaperFigure)


if __name__ == "__main__":
    sys.exit(main())
