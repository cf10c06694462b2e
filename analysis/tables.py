"""Paper-style tables from ``aggregate.summary_table``: rows settings (algorithms), columns
environments, cells "mean ± SE" with the number of seeds, the best mean of each column in bold.

Three renderings of the same numbers: Markdown (report.md, README), LaTeX with booktabs (paste into
a paper; needs \\usepackage{booktabs}) and CSV (every statistic, full precision, for other tools).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from analysis.aggregate import STAT_COLUMNS
from trpo_exp import algorithms


def decimals(se: float, mean: float) -> int:
    """Digits after the point: two significant digits of the SE (the precision the data supports)."""
    ref = se if se and math.isfinite(se) and se > 0 else abs(mean) * 0.1
    if not ref or not math.isfinite(ref):
        return 1
    return int(min(4, max(0, 1 - math.floor(math.log10(ref)))))


def cell_text(mean: float, se: float, n: int, pm: str = "±") -> str:
    if not math.isfinite(mean):
        return "-"
    d = decimals(se, mean)
    spread = f" {pm} {se:.{d}f}" if math.isfinite(se) else ""
    return f"{mean:.{d}f}{spread} (n={n})"


def best_rows(summary: pd.DataFrame, higher_is_better: bool = True) -> set[tuple[str, str]]:
    """(env, setting) pairs holding the best mean of their environment (ties all count)."""
    best: set[tuple[str, str]] = set()
    for env, group in summary.groupby("env"):
        means = group["mean"].to_numpy(float)
        if np.isfinite(means).any():
            target = np.nanmax(means) if higher_is_better else np.nanmin(means)
            best.update((env, s) for s, m in zip(group["setting"], means) if m == target)
    return best


# The registry's order (simplest first); algorithms it does not know follow alphabetically.
ALGO_ORDER = algorithms.names()


def algo_order(present: Iterable[str]) -> list[str]:
    """The algorithms in ``present``, in table order."""
    present = set(present)
    return [a for a in ALGO_ORDER if a in present] + sorted(present - set(ALGO_ORDER))


def setting_order(frame: pd.DataFrame) -> list[str]:
    """Settings of ``frame`` (columns algo, setting) in table order: by algorithm, then label."""
    pairs = frame[["algo", "setting"]].drop_duplicates()
    rank = {a: i for i, a in enumerate(ALGO_ORDER)}
    return [s for _, s in sorted(zip(pairs["algo"], pairs["setting"]),
                                 key=lambda p: (rank.get(p[0], len(rank)), p[0], p[1]))]


def _grid(summary: pd.DataFrame, fmt, higher_is_better: bool) -> pd.DataFrame:
    """Settings x envs frame of formatted cells; ``fmt(text, is_best)`` decorates a cell."""
    best = best_rows(summary, higher_is_better)
    envs = sorted(summary["env"].unique())
    settings = setting_order(summary)
    table = pd.DataFrame("-", index=settings, columns=envs, dtype=object)
    for row in summary.itertuples(index=False):
        text = cell_text(row.mean, row.se, row.n, pm=fmt.pm)
        table.at[row.setting, row.env] = fmt(text, (row.env, row.setting) in best)
    return table


class _Markdown:
    pm = "±"

    def __call__(self, text: str, bold: bool) -> str:
        return f"**{text}**" if bold else text


class _Latex:
    pm = r"$\pm$"

    def __call__(self, text: str, bold: bool) -> str:
        text = latex_escape(text).replace(latex_escape(r"$\pm$"), r"$\pm$")
        return rf"\textbf{{{text}}}" if bold else text


def to_markdown(summary: pd.DataFrame, higher_is_better: bool = True, corner: str = "algorithm") -> str:
    table = _grid(summary, _Markdown(), higher_is_better)
    lines = ["| " + " | ".join([corner, *table.columns]) + " |",
             "|" + "---|" + "---:|" * len(table.columns)]
    for setting, row in table.iterrows():
        lines.append("| " + " | ".join([_md_escape(setting), *row.tolist()]) + " |")
    return "\n".join(lines) + "\n"


def to_latex(summary: pd.DataFrame, higher_is_better: bool = True, corner: str = "Algorithm",
             caption: str | None = None, label: str = "tab:results") -> str:
    table = _grid(summary, _Latex(), higher_is_better)
    body = [r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule",
            " & ".join([corner, *map(latex_escape, table.columns)]) + r" \\", r"\midrule"]
    body += [" & ".join([latex_escape(s), *row.tolist()]) + r" \\" for s, row in table.iterrows()]
    body += [r"\bottomrule", r"\end{tabular}"]
    if caption is None:
        return "\n".join(body) + "\n"
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
                      rf"\label{{{label}}}", *body, r"\end{table}"]) + "\n"


def to_csv(summary: pd.DataFrame) -> str:
    """Long CSV: one row per (env, setting) with every statistic at full precision."""
    front = ["env", "setting", "algo"]
    rest = [c for c in summary.columns if c not in front and c not in STAT_COLUMNS]
    out = summary[front + [c for c in rest if c != "seeds"] + list(STAT_COLUMNS) + (["seeds"] if "seeds" in summary else [])]
    out = out.assign(metric=summary.attrs.get("metric"), last_k=summary.attrs.get("last_k"))
    return out.to_csv(index=False, float_format="%.10g")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")
