"""Figures as matplotlib ``Figure`` objects (no pyplot state, no GUI backend), saved as PNG and PDF.

* learning curves: one panel per environment, one line per setting (algorithm) with its shaded
  confidence band, as in the TRPO paper's Figure 4;
* sweep: the objective over two swept hyperparameters (max_kl = delta x cg_damping by default) as a
  coloured scatter, or over one as a line with SE bars;
* training diagnostics: measured KL against the trust region delta, backtracking steps, entropy.

Publication-ready by construction (issue 13): every setting has its own colour, line style and
marker (markers staggered per setting), so two settings with identical curves still show both; the
legend sits below the panels and is re-flowed (fewer columns, then a wider or taller figure) until
it fits inside the figure; with many settings only the best ``HIGHLIGHT`` are coloured and the rest
are thin grey lines; step axes read 0, 250k, 1.5M; PDFs embed TrueType (Type 42) fonts, which venues
accept (Type 3 they often reject); PNGs are ``DPI`` dpi; a panel that is zero everywhere (no
backtracking at all) is left out and reported instead of drawn on a meaningless +-0.04 axis.

Every function returns the Figure so callers (and tests) can read the plotted data back from its
artists; ``save`` writes the files.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from analysis import stats
from analysis.sources.base import STEP
from trpo_exp import record

X_LABEL = "environment steps"
HIGHLIGHT = 6  # settings drawn in colour; more are grey (a legend of 12 colours is unreadable)
MAX_LINES = HIGHLIGHT  # kept for callers of the old name
DPI = 200
GREY = "0.6"
# TrueType fonts in PDF and PS (matplotlib's default, 3, writes Type 3 fonts many venues reject).
RC: dict = {"pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": DPI}
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
COUNT_METRICS = ("train/backtracks",)  # integers: integer ticks from 0


def colors(settings: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per setting, shared by every figure of a report."""
    cmap = colormaps["tab10" if len(settings) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(settings)}


def styles(settings: Sequence[str]) -> dict[str, dict]:
    """Colour, line style and marker per setting: no two settings of a report share all three, and
    marker positions are staggered so coinciding curves show both settings' markers."""
    palette = colors(settings)
    combos = itertools.cycle(zip(itertools.cycle(LINESTYLES), MARKERS))
    n = max(len(settings), 1)
    out = {}
    for i, (setting, (ls, marker)) in enumerate(zip(settings, combos)):
        out[setting] = {"color": palette[setting], "ls": ls, "marker": marker,
                        "markevery": (0.1 * (i + 0.5) / n, 0.1)}
    return out


def save(fig: Figure, base: Path, dpi: int = DPI) -> list[Path]:
    """Write ``base``.png and ``base``.pdf with TrueType fonts; returns both paths."""
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".pdf")]
    with matplotlib.rc_context(RC):
        for path in paths:
            fig.savefig(path, dpi=dpi)  # constrained layout (and fit_legend) already fit everything in
    return paths


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure the legend with (see fit_legend), still no pyplot
    return fig


def _panels(n: int, width: float = 4.6, height: float = 3.4, max_cols: int = 3) -> tuple[Figure, list]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = _figure(width * cols, height * rows)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def steps_text(x: float, _pos: object = None) -> str:
    """Tick label of an env-step axis: 0, 500, 20k, 1.5M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.3g}{suffix}"
    return f"{x:.3g}"


def _step_axis(ax) -> None:
    ax.xaxis.set_major_formatter(FuncFormatter(steps_text))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.set_xlabel(X_LABEL)


def _plot_curve(ax, d: pd.DataFrame, label: str, style: Mapping, band: bool = True) -> None:
    x, y = d[STEP].to_numpy(float), d["mean"].to_numpy(float)
    # A fractional markevery measures along the drawn line: with no finite point there is none, and
    # matplotlib raised IndexError while saving (a mean that overflowed to inf). No markers then.
    every = style["markevery"] if (np.isfinite(x) & np.isfinite(y)).any() else None
    ax.plot(x, y, color=style["color"], ls=style["ls"], marker=style["marker"], markevery=every,
            ms=4, lw=1.5, label=label)
    if band and np.isfinite(d["ci_low"].to_numpy(float)).any():
        ax.fill_between(x, d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float),
                        color=style["color"], alpha=0.18, lw=0)


def _plot_grey(ax, d: pd.DataFrame) -> None:
    ax.plot(d[STEP].to_numpy(float), d["mean"].to_numpy(float), color=GREY, lw=0.8, alpha=0.8, zorder=1)


def learning_curves(curves: pd.DataFrame, *, ylabel: str, order: Sequence[str],
                    palette: Mapping[str, tuple] | None = None, band_label: str = "95% bootstrap CI",
                    highlight: Sequence[str] | None = None,
                    references: Mapping[str, Sequence[tuple[float, str]]] | None = None,
                    style: Mapping[str, dict] | None = None) -> Figure:
    """One panel per env; one line per setting in ``order`` (settings absent from an env are skipped).

    ``highlight``: the settings drawn in colour with a band (default: all of ``order`` up to
    ``HIGHLIGHT``); the others are thin grey lines under one legend entry. ``references``: env ->
    [(value, label)] published figures, drawn as dashed black lines.
    """
    envs = sorted(curves["env"].unique())
    chosen = list(highlight) if highlight is not None else list(order)[:HIGHLIGHT]
    style = dict(style or styles(order))
    if palette:
        style = {s: {**v, "color": palette.get(s, v["color"])} for s, v in style.items()}
    fig, axes = _panels(len(envs))
    greyed = set()
    for ax, env in zip(axes, envs):
        data = curves[curves["env"] == env]
        for setting in order:
            d = data[data["setting"] == setting]
            if not len(d):
                continue
            if setting in chosen:
                _plot_curve(ax, d, f"{setting} (n={int(d['n'].iloc[0])})", style[setting])
            else:
                _plot_grey(ax, d)
                greyed.add(setting)
        for k, (value, text) in enumerate((references or {}).get(env, [])):
            ax.axhline(value, color="k", ls=(0, (5, 2 + k)), lw=1.0, label=f"published: {text}")
        ax.set_title(env)
        _step_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    extra = [Line2D([], [], color=GREY, lw=0.8, label=f"{len(greyed)} other settings")] if greyed else []
    title = f"mean over seeds; shaded: {band_label} (n >= {stats.MIN_N_CI})"
    _shared_legend(fig, axes, title=title, extra=extra)
    return fig


def _shared_legend(fig: Figure, axes: Sequence, title: str | None = None, extra: Sequence[Artist] = ()):
    """One legend under all panels (it never hides data), one entry per label, fitted to the figure."""
    entries: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    for handle in extra:
        entries.setdefault(str(handle.get_label()), handle)
    if not entries:
        return None
    return fit_legend(fig, list(entries.values()), list(entries), title=title)


def fit_legend(fig: Figure, handles: list, labels: list[str], title: str | None = None,
               margin_in: float = 0.1):
    """A legend below the panels that fits inside the figure: the most columns (up to 3) whose width
    fits; if one column is still too wide, a wider figure; then a taller figure by the legend's
    height, so the panels keep theirs (constrained layout would otherwise squeeze them)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    limit = (fig.get_figwidth() - 2 * margin_in) * fig.dpi
    panels_h = fig.get_figheight()
    legend = None
    for ncols in range(min(3, len(labels)), 0, -1):  # ncols is fixed when a legend is made: remake
        if legend is not None:
            legend.remove()
        legend = fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=ncols,
                            title=title, title_fontsize="small", frameon=False)
        width = legend.get_window_extent(renderer).width
        if width <= limit:
            break
    assert legend is not None
    if width > limit:
        fig.set_figwidth(width / fig.dpi + 2 * margin_in)
    fig.set_figheight(panels_h + legend.get_window_extent(renderer).height / fig.dpi + margin_in)
    return legend


def sweep(summary: pd.DataFrame, x: str, y: str | None, *, objective: str, title: str = "",
          higher_is_better: bool = True) -> Figure:
    """The objective (mean over seeds) of each setting over one or two swept parameters.

    Two parameters: scatter at (x, y) coloured by the objective, best setting ringed in red.
    One parameter: objective against it with SE error bars. Log axes when values span >= 10x.
    """
    fig = _figure(5.2, 4.0)
    ax = fig.add_subplot()
    data = summary.dropna(subset=[x] + ([y] if y else []) + ["mean"]).sort_values(x)
    best = None
    if len(data):
        best = data.loc[data["mean"].idxmax() if higher_is_better else data["mean"].idxmin()]
    if y is None:
        ax.errorbar(data[x].to_numpy(float), data["mean"].to_numpy(float), yerr=data["se"].to_numpy(float),
                    marker="o", capsize=3)
        ax.set_ylabel(objective)
    else:
        points = ax.scatter(data[x].to_numpy(float), data[y].to_numpy(float), c=data["mean"].to_numpy(float),
                            s=90, cmap="viridis", edgecolors="k", linewidths=0.5)
        fig.colorbar(points, ax=ax, label=objective)
        if best is not None:
            ax.scatter([best[x]], [best[y]], s=260, facecolors="none", edgecolors="red", linewidths=1.5,
                       label=f"best: {best['mean']:.4g}")
            _shared_legend(fig, [ax])
        ax.set_ylabel(_param_label(y))
        _log_if_wide(ax, data[y], "y")
    ax.set_xlabel(_param_label(x))
    _log_if_wide(ax, data[x], "x")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


_PARAM_LABELS = {"algo.max_kl": "max_kl (trust region delta, mean KL)", "algo.cg_damping": "cg_damping"}


def _param_label(key: str) -> str:
    return _PARAM_LABELS.get(key, key)


def _log_if_wide(ax, values: pd.Series, axis: str) -> None:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    if len(v) and (v > 0).all() and v.max() / v.min() >= 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _delta_lines(ax, deltas: Mapping[str, float], palette: Mapping[str, tuple]) -> None:
    """One dashed line per distinct delta; grey when several settings share it."""
    by_value: dict[float, list[str]] = {}
    for setting, delta in deltas.items():
        by_value.setdefault(delta, []).append(setting)
    for delta, settings in by_value.items():
        color = palette[settings[0]] if len(settings) == 1 else "0.35"
        ax.axhline(delta, color=color, ls="--", lw=1, label=f"delta = {delta:g}")


DIAGNOSTICS = record.DIAGNOSTICS  # (W&B key, axis label), from the metric registry


def all_zero(curves: pd.DataFrame, env: str, order: Sequence[str]) -> bool:
    """True when every plotted value of this diagnostic in ``env`` is exactly 0 (nothing to draw)."""
    d = curves[(curves["env"] == env) & curves["setting"].isin(list(order))]
    return bool(len(d)) and bool((d["mean"].to_numpy(float) == 0).all())


def diagnostics(curves: Mapping[str, pd.DataFrame], env: str, *, order: Sequence[str],
                deltas: Mapping[str, float], palette: Mapping[str, tuple] | None = None,
                style: Mapping[str, dict] | None = None) -> Figure:
    """Panels for the diagnostics present in ``curves`` (metric -> curves frame) for one env.

    The KL panel draws each setting's trust-region size delta (``deltas``: setting -> max_kl, for
    the algorithms that use one) as a dashed line in the setting's colour: a TRPO update should end
    at or below it, an NPG update lands near it only as far as the quadratic KL model is right.
    A diagnostic that is 0 everywhere gets no panel (see :func:`all_zero`; the report says so).
    """
    present = [(m, label) for m, label in DIAGNOSTICS if m in curves and (curves[m]["env"] == env).any()
               and not all_zero(curves[m], env, order)]
    style = dict(style or styles(order))  # pass the report's styles: the same look in every figure
    if palette:
        style = {s: {**v, "color": palette.get(s, v["color"])} for s, v in style.items()}
    fig, axes = _panels(max(len(present), 1), width=4.2, height=3.2)
    for ax, (metric, ylabel) in zip(axes, present):
        data = curves[metric][curves[metric]["env"] == env]
        for setting in order:
            d = data[data["setting"] == setting]
            if len(d):
                _plot_curve(ax, d, setting, style[setting])
        if metric == "train/kl":
            _delta_lines(ax, {s: deltas[s] for s in order if s in deltas and (data["setting"] == s).any()},
                         {s: v["color"] for s, v in style.items()})
        if metric in COUNT_METRICS:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        _step_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if not present:
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no diagnostics with non-zero values", ha="center", va="center",
                     transform=axes[0].transAxes)
    fig.suptitle(f"{env}: training diagnostics (mean over seeds, shaded: 95% bootstrap CI)", fontsize="medium")
    _shared_legend(fig, axes)
    return fig
