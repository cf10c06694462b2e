"""Figures as matplotlib ``Figure`` objects (no pyplot state, no GUI backend), saved as PNG and PDF.

* learning curves: one panel per environment, one line per setting (algorithm) with its shaded
  confidence band, as in the TRPO paper's Figure 4;
* sweep: the objective over two swept hyperparameters (max_kl = delta x cg_damping by default) as a
  coloured scatter, or over one as a line with SE bars;
* training diagnostics: measured KL against the trust region delta, backtracking steps, entropy.

Every function returns the Figure so callers (and tests) can read the plotted data back from its
artists; ``save`` writes the files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from analysis.sources.base import STEP
from trpo_exp import record

X_LABEL = "environment steps"
MAX_LINES = 10  # more lines than this is unreadable; callers pass the best settings


def colors(settings: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per setting, shared by every figure of a report."""
    cmap = colormaps["tab10" if len(settings) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(settings)}


def save(fig: Figure, base: Path, dpi: int = 110) -> list[Path]:
    """Write ``base``.png and ``base``.pdf; returns both paths."""
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=dpi)  # constrained layout already fits everything in
    return paths


def _panels(n: int, width: float = 4.6, height: float = 3.4, max_cols: int = 3) -> tuple[Figure, list]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def _plot_curve(ax, d: pd.DataFrame, label: str, color, band: bool = True) -> None:
    ax.plot(d[STEP].to_numpy(), d["mean"].to_numpy(), color=color, lw=1.6, label=label)
    if band and np.isfinite(d["ci_low"].to_numpy(float)).any():
        ax.fill_between(d[STEP].to_numpy(), d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float),
                        color=color, alpha=0.2, lw=0)


def learning_curves(curves: pd.DataFrame, *, ylabel: str, order: Sequence[str],
                    palette: Mapping[str, tuple] | None = None, band_label: str = "95% bootstrap CI") -> Figure:
    """One panel per env; one line per setting in ``order`` (settings absent from an env are skipped)."""
    envs = sorted(curves["env"].unique())
    palette = palette or colors(order)
    fig, axes = _panels(len(envs))
    for ax, env in zip(axes, envs):
        data = curves[curves["env"] == env]
        for setting in order:
            d = data[data["setting"] == setting]
            if len(d):
                _plot_curve(ax, d, f"{setting} (n={int(d['n'].iloc[0])})", palette[setting])
        ax.set_title(env)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(ylabel)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes, title=f"mean over seeds, shaded: {band_label}")
    return fig


def _shared_legend(fig: Figure, axes: Sequence, title: str | None = None) -> None:
    """One legend under all panels (it never hides data), one entry per label."""
    entries: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", fontsize="small",
                   ncols=min(3, len(entries)), title=title, title_fontsize="small", frameon=False)


def sweep(summary: pd.DataFrame, x: str, y: str | None, *, objective: str, title: str = "") -> Figure:
    """The objective (mean over seeds) of each setting over one or two swept parameters.

    Two parameters: scatter at (x, y) coloured by the objective, best setting ringed in red.
    One parameter: objective against it with SE error bars. Log axes when values span >= 10x.
    """
    fig = Figure(figsize=(5.2, 4.0), layout="constrained")
    ax = fig.add_subplot()
    data = summary.dropna(subset=[x] + ([y] if y else []) + ["mean"]).sort_values(x)
    best = data.loc[data["mean"].idxmax()] if len(data) else None
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
            ax.legend(fontsize="small", loc="best")
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


def diagnostics(curves: Mapping[str, pd.DataFrame], env: str, *, order: Sequence[str],
                deltas: Mapping[str, float], palette: Mapping[str, tuple] | None = None) -> Figure:
    """Panels for the diagnostics present in ``curves`` (metric -> curves frame) for one env.

    The KL panel draws each setting's trust-region size delta (``deltas``: setting -> max_kl, for
    the algorithms that use one) as a dashed line in the setting's colour: a TRPO update should end
    at or below it, an NPG update lands near it only as far as the quadratic KL model is right.
    """
    present = [(m, label) for m, label in DIAGNOSTICS if m in curves and (curves[m]["env"] == env).any()]
    palette = palette or colors(order)
    fig, axes = _panels(max(len(present), 1), width=4.2, height=3.2)
    for ax, (metric, ylabel) in zip(axes, present):
        data = curves[metric][curves[metric]["env"] == env]
        for setting in order:
            d = data[data["setting"] == setting]
            if len(d):
                _plot_curve(ax, d, setting, palette[setting])
        if metric == "train/kl":
            _delta_lines(ax, {s: deltas[s] for s in order if s in deltas and (data["setting"] == s).any()},
                         palette)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(ylabel)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes)
    fig.suptitle(f"{env}: training diagnostics (mean over seeds, shaded: 95% bootstrap CI)", fontsize="medium")
    return fig
