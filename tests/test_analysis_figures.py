"""Publication-ready figures and honest statistics of ``python -m analysis.report`` (issue 13).

A sweep report with 12 settings (the case whose legends were cut off) is rendered for real: the
legend and every axes (labels and tick labels included) must lie inside the saved figure, the PDF
must embed no Type 3 font, the PNG must have >= 200 dpi. Plus: identical settings stay visible and
are named, an all-zero diagnostic gets no panel, no CI below 3 seeds, tuning and held-out seeds in
separate rows, and ``--reference`` adds the published figures.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox

from analysis import aggregate, figures, references, stats, tables
from analysis.loading import load_runs
from analysis.report import main as report_main

HEADER = "iteration,env_steps,return_mean,entropy,kl,backtracks,step_accepted,eval_return_mean\n"
KLS, DAMPINGS = (0.001, 0.003, 0.01, 0.03), (0.01, 0.1, 1.0)


def write_run(run_dir: Path, *, algo: str, env: str, seed: int, returns, max_kl=0.01, damping=0.1,
              trial: int | None = None, group: str = "g", backtracks: float = 0.0, steps: int = 2048) -> None:
    """A run record as trpo_exp writes it; ``returns`` per iteration, evaluated every iteration."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    lines = [f"{i + 1},{(i + 1) * steps},{float(r)!r},{1.0 - i * 0.01!r},{0.5 * max_kl!r},{backtracks!r},"
             f"True,{float(r)!r}\n" for i, r in enumerate(returns)]
    (run_dir / "metrics.csv").write_text(HEADER + "".join(lines))
    (run_dir / "run.json").write_text(json.dumps({"status": "finished", "algo": algo, "env_id": env,
                                                  "seed": seed, "group": group}))
    hooks = {} if trial is None else {"trial": {"_target_": "sweeps.trial_report.TrialReporter", "study": "s",
                                                "number": trial, "storage": "sqlite:///x.db"}}
    config = {"algo": {"name": algo, "max_kl": max_kl, "cg_damping": damping}, "env": {"id": env},
              "seed": seed, "hooks": hooks, "logger": {"group": group}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def sweep_runs(root: Path, held_out: bool = True) -> Path:
    """A 12-setting TRPO sweep (4 max_kl x 3 cg_damping, 3 tuning seeds each) on Hopper-v5, the
    best setting re-run on 3 held-out seeds; no backtracking anywhere (an all-zero diagnostic)."""
    rng = np.random.default_rng(0)
    trial = 0
    for kl in KLS:
        for damping in DAMPINGS:
            level = 1000 * (1 + np.log10(kl / 0.001)) + 100 * np.log10(damping / 0.01)
            for seed in range(3):
                returns = level * np.linspace(0.1, 1, 40) + rng.normal(0, 30, 40)
                write_run(root / f"trials/{trial:04d}/s{seed}", algo="trpo", env="Hopper-v5", seed=seed,
                          returns=returns, max_kl=kl, damping=damping, trial=trial, group=f"s/trial-{trial}")
            trial += 1
    if held_out:
        for seed in (1000, 1001, 1002):
            returns = 2000 * np.linspace(0.1, 1, 40) + rng.normal(0, 30, 40)
            write_run(root / f"report/s{seed}", algo="trpo", env="Hopper-v5", seed=seed, returns=returns,
                      max_kl=0.03, damping=1.0, group="s/report")
    return root


def run_report(tmp_path: Path, runs: Path, *extra: str) -> Path:
    out = tmp_path / "report"
    code = report_main([str(runs), "--out", str(out), "--no-cache", "--resamples", "200", *extra])
    assert code == 0
    return out


# ------------------------------------------------------------------------------- figure geometry


def inside(fig) -> list[str]:
    """What sticks out of the figure: the legend(s), any axes with its labels and tick labels."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    frame = Bbox.from_bounds(-0.5, -0.5, fig.bbox.width + 1, fig.bbox.height + 1)  # half a pixel of rounding
    out = []
    for i, ax in enumerate(fig.axes):
        box = ax.get_tightbbox(renderer)
        if box is not None and not frame.contains(box.x0, box.y0) or not frame.contains(box.x1, box.y1):
            out.append(f"axes {i} {ax.get_title()!r}: {box} outside {fig.bbox}")
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        box = legend.get_window_extent(renderer)
        if not (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)):
            out.append(f"legend {box} outside {fig.bbox}")
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>" and legend not in [ax.get_legend()] \
                    and box.overlaps(ax.get_window_extent(renderer)):
                out.append(f"legend overlaps axes {ax.get_title()!r}")
    return out


def pdf_fonts(path: Path) -> list[bytes]:
    """The /Subtype of every font object in a PDF (matplotlib writes font dicts uncompressed; object
    streams are inflated too, to be sure)."""
    data = path.read_bytes()
    texts = [data]
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:
            texts.append(zlib.decompress(stream))
        except zlib.error:
            pass
    subtypes = []
    for text in texts:
        for obj in re.findall(rb"<<(.*?)>>", text, re.S):
            if b"/Type /Font" in obj or b"/Type/Font" in obj:
                subtypes += re.findall(rb"/Subtype\s*/(\w+)", obj)
    return subtypes


def png_dpi(path: Path) -> float:
    """Dots per inch from the PNG's pHYs chunk (pixels per metre)."""
    data = path.read_bytes()
    i = data.index(b"pHYs")
    ppm_x, _ppm_y, unit = struct.unpack(">IIB", data[i + 4:i + 13])
    assert unit == 1
    return ppm_x * 0.0254


def test_sweep_report_with_12_settings_has_figures_that_fit_and_print(tmp_path: Path) -> None:
    runs = sweep_runs(tmp_path / "runs")
    rs = load_runs([str(runs)], use_cache=False)
    order = tables.setting_order(rs.settings)
    assert len(order) == 13  # 12 tuning settings + the held-out re-run of the best
    curves = aggregate.curves(rs, "rollout/return_mean", 50, n_resamples=200)
    best = list(aggregate.summary_table(rs, "eval/return_mean", n_resamples=200)
                .sort_values("mean", ascending=False)["setting"][:figures.HIGHLIGHT])
    fig = figures.learning_curves(curves, ylabel="episode return", order=order, highlight=best)
    assert inside(fig) == []
    coloured = [ln for ln in fig.axes[0].get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
    assert len(coloured) == figures.HIGHLIGHT  # the best in colour, with a legend entry each
    grey = [ln for ln in fig.axes[0].get_lines() if ln.get_color() == figures.GREY]
    assert len(grey) == len(order) - figures.HIGHLIGHT
    keys = {(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in coloured}
    assert len(keys) == len(coloured)  # distinct colour/style/marker per setting
    assert fig.axes[0].xaxis.get_major_formatter()(80_000) == "80k"
    assert figures.steps_text(1_500_000) == "1.5M" and figures.steps_text(500) == "500"

    out = run_report(tmp_path, runs)
    for name in ("learning_curves", "diagnostics_Hopper-v5", "sweep_Hopper-v5_trpo"):
        png, pdf = out / "figures" / f"{name}.png", out / "figures" / f"{name}.pdf"
        assert round(png_dpi(png)) >= 200, name  # pHYs is in pixels per metre
        fonts = pdf_fonts(pdf)
        assert fonts and b"Type3" not in fonts, (name, fonts)  # TrueType (Type 42) only
    md = (out / "report.md").read_text()
    assert f"The {figures.HIGHLIGHT} best of 13 settings are in colour, the other 7 grey." in md
    # no backtracking in any update: no panel, but a sentence
    assert re.search(r"Hopper-v5: [^\n]*backtracks: 0 in every update of every setting shown \(no panel\)", md)


def test_diagnostics_figure_of_12_settings_fits_and_drops_the_all_zero_panel(tmp_path: Path) -> None:
    rs = load_runs([str(sweep_runs(tmp_path / "runs", held_out=False))], use_cache=False)
    order = tables.setting_order(rs.settings)
    diag = {m: aggregate.curves(rs, m, 30, n_resamples=200) for m, _ in figures.DIAGNOSTICS}
    diag = {m: c for m, c in diag.items() if not c.empty}
    assert "train/backtracks" in diag and figures.all_zero(diag["train/backtracks"], "Hopper-v5", order)
    fig = figures.diagnostics(diag, "Hopper-v5", order=order, deltas={s: 0.01 for s in order})
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert not any("backtrack" in label for label in labels) and len(labels) == len(diag) - 1
    assert inside(fig) == []


def test_identical_settings_stay_visible_and_are_named(tmp_path: Path) -> None:
    same = [10.0, 20.0, 30.0, 40.0]
    for algo in ("npg", "trpo"):
        for seed in range(3):
            write_run(tmp_path / "runs" / f"{algo}{seed}", algo=algo, env="CartPole-v1", seed=seed,
                      returns=[v + seed for v in same], backtracks=0.0)
    out = run_report(tmp_path, tmp_path / "runs")
    md = (out / "report.md").read_text()
    assert "On CartPole-v1, npg and trpo gave identical results" in md
    rs = load_runs([str(tmp_path / "runs")], use_cache=False)
    curves = aggregate.curves(rs, "rollout/return_mean", 20, n_resamples=200)
    fig = figures.learning_curves(curves, ylabel="r", order=["npg", "trpo"])
    npg, trpo = fig.axes[0].get_lines()[:2]
    np.testing.assert_array_equal(npg.get_ydata(), trpo.get_ydata())  # the same data ...
    assert (npg.get_linestyle(), npg.get_marker()) != (trpo.get_linestyle(), trpo.get_marker())  # ... drawn apart
    assert npg.get_markevery() != trpo.get_markevery()  # staggered markers: both visible on one line


# ------------------------------------------------------------------------------ honest statistics


def test_no_ci_below_three_seeds_and_the_report_says_why(tmp_path: Path) -> None:
    for algo, seeds in (("pg", 1), ("npg", 2), ("trpo", 3)):
        for seed in range(seeds):
            write_run(tmp_path / "runs" / f"{algo}{seed}", algo=algo, env="CartPole-v1", seed=seed,
                      returns=[1.0 + seed, 2.0 + 2 * seed, 3.0 + 3 * seed])
    md = (run_report(tmp_path, tmp_path / "runs") / "report.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if "| CartPole-v1 |" in line}
    assert f"– (n<{stats.MIN_N_CI})" in rows["pg"] and f"– (n<{stats.MIN_N_CI})" in rows["npg"]
    assert re.search(r"\| \[[-\d.]+, [-\d.]+\] \|", rows["trpo"])
    assert "nan" not in md.lower()
    assert stats.NO_CI_REASON in md


def test_tuning_and_held_out_seeds_are_never_one_row(tmp_path: Path) -> None:
    out = run_report(tmp_path, sweep_runs(tmp_path / "runs"))
    summary = pd.read_csv(out / "table.csv")
    best = summary[(summary["algo.max_kl"] == 0.03) & (summary["algo.cg_damping"] == 1.0)]
    assert sorted(best["role"]) == ["held-out", "tuning"]
    assert best.set_index("role")["seeds"].to_dict() == {"held-out": "1000,1001,1002", "tuning": "0,1,2"}
    assert (best["n"] == 3).all()
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs.loc[runs["seed"] >= 1000, "role"]) == {"held-out"}
    assert "trpo (cg_damping=1, max_kl=0.03) [held-out]" in (out / "table.md").read_text()


# ---------------------------------------------------------------------------------- --reference


def test_reference_adds_published_figures_as_a_column_and_a_dashed_line(tmp_path: Path) -> None:
    ref = references.load()
    hopper = references.for_env(ref, "Hopper-v5")
    assert hopper[["source", "mean", "std", "n", "steps"]].values.tolist() == [["sb3-contrib", 3372, 215, 3, 1e6]]
    assert set(references.for_env(ref, "HalfCheetah-v5")["mean"]) == {1803, 4471}
    assert ref["url"].str.startswith("https://").all()
    for seed in range(3):
        write_run(tmp_path / "runs" / f"t{seed}", algo="trpo", env="Hopper-v5", seed=seed, returns=[1.0, 2.0, 3.0])
    out = run_report(tmp_path, tmp_path / "runs", "--reference")
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| trpo | Hopper-v5 |"))
    assert "sb3-contrib trpo, 1M steps: 3372 ± 215 (n=3, final deterministic eval, Hopper-v3)" in row
    assert "rl-baselines3-zoo" in md
    rs = load_runs([str(tmp_path / "runs")], use_cache=False)
    curves = aggregate.curves(rs, "rollout/return_mean", 10, n_resamples=200)
    fig = figures.learning_curves(curves, ylabel="r", order=["trpo"],
                                  references={"Hopper-v5": [(3372.0, "sb3-contrib trpo @1M")]})
    dashed = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("published")]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [3372.0, 3372.0]
    assert dashed[0].get_linestyle() not in ("-", "None")
    assert inside(fig) == []

    bad = tmp_path / "bad.csv"
    bad.write_text("env,mean\nHopper,1\n")
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "r2"), "--reference", str(bad)]) == 1


@pytest.mark.parametrize("n_settings", [1, 4, 12])
def test_legend_fits_for_any_number_of_long_labels(n_settings: int) -> None:
    rows = []
    for i in range(n_settings):
        setting = f"trpo (cg_damping={0.001 * (i + 1):g}, max_kl={0.0316 * (i + 1):g}, vf_lr={0.001:g})"
        for step in (1e5, 2e5, 3e5):
            rows.append({"env": "Hopper-v5", "setting": setting, "algo": "trpo", "env_steps": step, "n": 3,
                         "mean": i + step / 1e5, "se": 0.1, "ci_low": i, "ci_high": i + 4})
    curves = pd.DataFrame(rows)
    order = list(dict.fromkeys(curves["setting"]))
    fig = figures.learning_curves(curves, ylabel="episode return (training rollouts)", order=order)
    assert inside(fig) == []
