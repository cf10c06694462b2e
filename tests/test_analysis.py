"""Tests for analysis/: loading (records, W&B offline, W&B api argument handling), statistics,
tables, figures, the report command, and bad input. Known answers first."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection

from analysis import aggregate, figures, stats, tables
from analysis.errors import AnalysisError
from analysis.loading import LoadWarning, load_runs
from analysis.report import main as report_main
from analysis.sources import api as api_source
from analysis.sources import records as records_source
from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
METRIC_HEADER = ("iteration,env_steps,return_mean,entropy,kl,backtracks,step_accepted,"
                 "eval_return_mean\n")


# ------------------------------------------------------------------------------------------ helpers


def write_record(run_dir: Path, *, algo="trpo", env="CartPole-v1", seed=0, status="finished",
                 rows=(), config_extra=None, max_kl=0.01, damping=0.1, trial=None) -> Path:
    """A run directory like trpo_exp writes: metrics.csv rows are (env_steps, return, eval or None)."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    lines = [f"{i + 1},{step},{ret!r},0.6,0.005,{i % 3},True,{'' if ev is None else repr(ev)}"
             for i, (step, ret, ev) in enumerate(rows)]
    (run_dir / "metrics.csv").write_text(METRIC_HEADER + "".join(line + "\n" for line in lines))
    (run_dir / "run.json").write_text(json.dumps({"status": status, "algo": algo, "env_id": env, "seed": seed,
                                                  "name": f"{algo}-s{seed}", "group": "g"}))
    config = {"algo": {"name": algo, "max_kl": max_kl, "cg_damping": damping}, "env": {"id": env},
              "seed": seed, "hooks": {} if trial is None else {"trial": {
                  "_target_": "sweeps.trial_report.TrialReporter", "storage": "sqlite:///study.db", "study": "s",
                  "number": trial, "seed_index": 0, "num_seeds": 1}},
              **(config_extra or {})}
    import yaml
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # good input must not warn
        return load_runs(*args, use_cache=False, **kwargs)


# --------------------------------------------------------------------------- real W&B offline runs

WANDB_WRITER = textwrap.dedent("""
    import wandb
    settings = wandb.Settings(mode="offline", console="off", save_code=False, disable_git=True,
                              x_disable_stats=True, x_disable_meta=True)
    for seed in (0, 1):
        run = wandb.init(project="analysis-test", name=f"trpo-s{seed}", group="g", tags=["trpo", "CartPole-v1"],
                         config={"algo": {"name": "trpo", "max_kl": 0.01}, "env": {"id": "CartPole-v1"},
                                 "seed": seed}, settings=settings, dir=f"run{seed}")
        for i in range(6):
            row = {"rollout/return_mean": seed * 100 + i * 1.25, "train/kl": i / 1000, "train/step_accepted": True,
                   "pad": "x" * 3000}
            if i % 2 == 1:
                row["eval/return_mean"] = seed * 10 + i
            run.log(row, step=(i + 1) * 1000)
        run.summary["status"] = "finished"
        run.finish()
""")


def expected_wandb(seed: int) -> dict[str, list[tuple[float, float]]]:
    steps = [(i + 1) * 1000 for i in range(6)]
    return {"rollout/return_mean": [(s, seed * 100 + i * 1.25) for i, s in enumerate(steps)],
            "train/kl": [(s, i / 1000) for i, s in enumerate(steps)],
            "train/step_accepted": [(s, 1.0) for s in steps],
            "eval/return_mean": [(s, seed * 10 + i) for i, s in enumerate(steps) if i % 2 == 1]}


@pytest.fixture(scope="module")
def wandb_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wandb_runs")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false",
           "HOME": str(root / "home"), "WANDB_CACHE_DIR": str(root / "cache"),
           "WANDB_CONFIG_DIR": str(root / "config"), "WANDB_DATA_DIR": str(root / "data")}
    env.pop("WANDB_API_KEY", None)
    for seed in (0, 1):
        (root / f"run{seed}").mkdir()
    subprocess.run([sys.executable, "-c", WANDB_WRITER], env=env, cwd=root, check=True, timeout=180)
    return root


def test_offline_wandb_runs_load_back_exactly(wandb_root: Path) -> None:
    rs = load_quiet([str(wandb_root / "run0"), str(wandb_root / "run1")], "offline")
    assert sorted(rs.runs["name"]) == ["trpo-s0", "trpo-s1"]
    assert set(rs.runs["status"]) == {"finished"} and set(rs.runs["algo"]) == {"trpo"}
    tidy = rs.tidy()
    assert list(tidy.columns[:5]) == ["run_id", "algo", "env", "seed", "setting"]
    assert list(tidy.columns[-3:]) == ["env_steps", "metric", "value"]
    assert "pad" not in set(tidy["metric"])  # text is not a metric
    for seed in (0, 1):
        mine = tidy[tidy["seed"] == seed]
        assert set(mine["env"]) == {"CartPole-v1"}
        for metric, expected in expected_wandb(seed).items():
            got = mine[mine["metric"] == metric].sort_values("env_steps")
            assert list(zip(got["env_steps"], got["value"])) == expected, metric  # exact, no tolerance


def test_damaged_and_garbage_wandb_files_are_marked_or_skipped_in_one_warning(wandb_root: Path,
                                                                              tmp_path: Path) -> None:
    good = next((wandb_root / "run0").rglob("run-*.wandb"))
    cut_dir = tmp_path / "wandb" / "offline-run-cut"
    cut_dir.mkdir(parents=True)
    data = good.read_bytes()
    (cut_dir / good.name).write_bytes(data[: int(len(data) * 0.6)])
    bad_dir = tmp_path / "wandb" / "offline-run-bad"
    bad_dir.mkdir()
    (bad_dir / "run-garbage.wandb").write_bytes(b"not a wandb file\n" * 20)
    shutil.copytree(next((wandb_root / "run1").rglob("offline-run-*")), tmp_path / "wandb" / "offline-run-ok")

    with pytest.warns(LoadWarning) as caught:
        rs = load_runs([str(tmp_path)], "offline", use_cache=False)
    assert len(caught) == 1  # the reader's own per-file warning is folded into it
    text = str(caught[0].message)
    assert "run-garbage.wandb" in text and "not a W&B run file" in text
    assert "damaged W&B file" in text and "offline-run-cut" in text
    assert sorted(rs.runs["name"]) == ["trpo-s0", "trpo-s1"]  # the cut run is kept, marked
    cut = rs.tidy()
    cut = cut[(cut["seed"] == 0) & (cut["metric"] == "rollout/return_mean")]
    rows = list(zip(cut["env_steps"], cut["value"]))
    assert 0 < len(rows) < 6 and rows == expected_wandb(0)["rollout/return_mean"][: len(rows)]


# ----------------------------------------------------------------------------------- local records


def curve_rows(n: int, step: int = 1000, ret0: float = 0.0, evals=None) -> list[tuple]:
    evals = evals or {}
    return [((i + 1) * step, ret0 + i, evals.get(i)) for i in range(n)]


def test_records_tidy_frame_and_sweep_params(tmp_path: Path) -> None:
    for i, (kl, damp) in enumerate([(0.01, 0.1), (0.02, 0.1), (0.02, 0.01)]):
        write_record(tmp_path / f"r{i}", seed=i, max_kl=kl, damping=damp, trial=i, rows=curve_rows(3))
    write_record(tmp_path / "pg", algo="pg", rows=curve_rows(3))
    rs = load_quiet([str(tmp_path)])
    assert rs.hyperparams == ["algo.cg_damping", "algo.max_kl"]  # varies within trpo; seed/trial are not params
    assert rs.param_columns == ["algo.cg_damping", "algo.max_kl", "trial.study", "trial.number", "role"]
    tidy = rs.tidy()
    assert list(tidy.columns) == ["run_id", "algo", "env", "seed", "setting", "algo.cg_damping", "algo.max_kl",
                                  "trial.study", "trial.number", "role", "env_steps", "metric", "value"]
    row = tidy[(tidy["metric"] == "rollout/return_mean") & (tidy["env_steps"] == 2000) & (tidy["seed"] == 1)]
    assert row["value"].tolist() == [1.0] and row["algo.max_kl"].tolist() == [0.02]
    assert set(rs.settings["setting"]) == {"pg", "trpo (cg_damping=0.1, max_kl=0.01) [tuning]",
                                           "trpo (cg_damping=0.1, max_kl=0.02) [tuning]",
                                           "trpo (cg_damping=0.01, max_kl=0.02) [tuning]"}
    # metrics.csv names arrive under the W&B names, as from the W&B sources
    assert {"rollout/return_mean", "train/kl", "train/backtracks", "train/step_accepted"} <= set(rs.metric_names)


def test_bad_records_are_skipped_or_marked_with_one_warning_never_a_crash(tmp_path: Path) -> None:
    write_record(tmp_path / "good0", seed=0, rows=curve_rows(4, evals={3: 5.0}))
    write_record(tmp_path / "good1", seed=1, rows=curve_rows(4, evals={3: 7.0}))
    write_record(tmp_path / "running", seed=2, status="running", rows=curve_rows(2))
    write_record(tmp_path / "failed", seed=3, status="failed", rows=curve_rows(2))
    write_record(tmp_path / "nometrics", seed=4, rows=())
    write_record(tmp_path / "noeval", seed=5, rows=curve_rows(4))
    write_record(tmp_path / "schema", seed=6, rows=curve_rows(4, evals={3: 9.0}), config_extra={"new_option": 1})
    cut = write_record(tmp_path / "cut", seed=7, rows=curve_rows(4, evals={3: 6.0}))
    with open(cut / "metrics.csv", "a") as f:
        f.write("5,5000,4.0,0.6")  # killed mid-line
    (write_record(tmp_path / "badjson", seed=8, rows=curve_rows(4, evals={3: 8.0})) / "run.json").write_text("{oops")
    (tmp_path / "garbage" / "x").mkdir(parents=True)
    (tmp_path / "garbage" / "metrics.csv").write_bytes(b"\x00\xff\x00garbage")

    with pytest.warns(LoadWarning) as caught:
        rs = load_runs([str(tmp_path)], use_cache=False, required=["eval/return_mean"])
    assert len(caught) == 1
    text = str(caught[0].message)
    skipped = {Path(s.split(": ")[0]).name: s.split(": ", 1)[1] for s in rs.skipped}
    assert set(skipped) == {"running", "failed", "nometrics", "noeval", "garbage"}
    assert (skipped["running"], skipped["failed"], skipped["nometrics"]) == ("running", "failed", "no metrics")
    assert skipped["noeval"] == "no values of eval/return_mean" and skipped["garbage"].startswith("no metrics")
    marked = {Path(m.split(": ")[0]).name: m for m in rs.marked}
    assert set(marked) == {"schema", "cut", "badjson"}
    assert "config schema differs" in marked["schema"] and "extra new_option" in marked["schema"]
    assert "malformed line" in marked["cut"] and "unreadable run.json" in marked["badjson"]
    for name in [*skipped, *marked]:
        assert name in text
    assert sorted(Path(p).name for p in rs.runs.index) == ["badjson", "cut", "good0", "good1", "schema"]
    cut_rows = rs.metrics[rs.metrics["run_id"].astype(str).str.endswith("cut")]
    assert cut_rows["env_steps"].tolist() == [1000, 2000, 3000, 4000]  # the cut line is gone, the rest kept

    with pytest.warns(LoadWarning, match="marked"):
        kept = load_runs([str(tmp_path)], use_cache=False, include_unfinished=True)
    assert {"running", "failed"} <= {Path(p).name for p in kept.runs.index}


def test_empty_selection_is_a_one_line_error_and_nonzero_exit(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--no-cache"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("analysis: error: no runs found in") and "\n" not in err

    write_record(tmp_path / "only" / "a", status="running", rows=curve_rows(2))
    assert report_main([str(tmp_path / "only"), "--out", str(tmp_path / "r"), "--no-cache"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("analysis: warning: skipped 1 run(s): running [1]: ")
    assert err[1] == "analysis: error: no usable runs: all 1 found were skipped (1 running)"

    assert report_main([str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 1
    assert "no such run directory" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.md").exists()


def test_cache_serves_unchanged_runs_and_rereads_changed_ones(tmp_path: Path, monkeypatch) -> None:
    for seed in range(3):
        write_record(tmp_path / "runs" / f"s{seed}", seed=seed, rows=curve_rows(3, evals={2: float(seed)}))
    cache_dir = tmp_path / "cache"
    first = load_runs([str(tmp_path / "runs")], cache_dir=cache_dir)
    read_calls = []
    real_read = records_source.read
    monkeypatch.setattr(records_source, "read", lambda cands: read_calls.append(len(cands)) or real_read(cands))

    second = load_runs([str(tmp_path / "runs")], cache_dir=cache_dir)
    assert read_calls == []  # everything from parquet
    pd.testing.assert_frame_equal(first.tidy(), second.tidy(), check_categorical=False)

    write_record(tmp_path / "runs" / "s1", seed=1, rows=curve_rows(4, evals={3: 42.0}))
    os.utime(tmp_path / "runs" / "s1" / "metrics.csv", ns=(1, 1))  # a different fingerprint for sure
    third = load_runs([str(tmp_path / "runs")], cache_dir=cache_dir)
    assert read_calls == [1]  # only the changed run
    scores = aggregate.final_scores(third, "eval/return_mean", 1)
    assert sorted(scores["score"]) == [0.0, 2.0, 42.0]


# ------------------------------------------------------------------------------------- statistics


def test_statistics_known_answers() -> None:
    s = stats.summarize([2.0, 4.0, 6.0, 8.0])
    assert (s.n, s.mean) == (4, 5.0)
    assert s.std == pytest.approx(math.sqrt(20 / 3), rel=1e-12)
    assert s.se == pytest.approx(math.sqrt(20 / 3) / 2, rel=1e-12)
    # Two seeds: resampled means are 0, 0.5 or 1, so a 95% percentile interval would be exactly
    # [0, 1], the two values restated: no interval below n=3 (issue 13), NaN, and the report says why.
    two = stats.summarize([0.0, 1.0])
    assert math.isnan(two.ci_low) and math.isnan(two.ci_high) and two.se == 0.5
    three = stats.summarize([0.0, 1.0, 2.0])
    assert 0.0 <= three.ci_low < 1.0 < three.ci_high <= 2.0
    assert stats.iqm(np.arange(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 1000]) == 4.5  # a diverged seed does not move it
    const = stats.summarize([3.0, 3.0, 3.0])
    assert (const.se, const.ci_low, const.ci_high) == (0.0, 3.0, 3.0)
    one = stats.summarize([5.0])
    assert one.n == 1 and one.mean == 5.0 and all(math.isnan(v) for v in (one.se, one.ci_low, one.ci_high))
    # Many seeds: the bootstrap interval approaches mean +- 1.96 * SE * sqrt((n-1)/n).
    x = np.random.default_rng(0).normal(10.0, 2.0, size=400)
    big = stats.summarize(x)
    half = 1.96 * big.se * math.sqrt(399 / 400)
    assert big.ci_low == pytest.approx(big.mean - half, abs=0.1 * half)
    assert big.ci_high == pytest.approx(big.mean + half, abs=0.1 * half)
    assert stats.summarize(x) == big  # fixed seed: reproducible


def test_bootstrap_is_scipys_percentile_bootstrap() -> None:
    """The matrix-product bootstrap gives scipy.stats.bootstrap's numbers (same draws, same
    percentiles), for one column and for a learning curve's many."""
    from scipy import stats as sps

    rng = np.random.default_rng(3)
    for x in (rng.normal(size=7), rng.normal(size=(40, 25)), np.array([0.0, 0.0, 0.0, 10.0])):
        low, high = stats.bootstrap_ci(x, 0.9, 500, seed=11)
        ref = sps.bootstrap((x,), np.mean, axis=0, vectorized=True, confidence_level=0.9, n_resamples=500,
                            method="percentile", rng=np.random.default_rng(11)).confidence_interval
        np.testing.assert_allclose(low, ref.low, rtol=0, atol=1e-12)
        np.testing.assert_allclose(high, ref.high, rtol=0, atol=1e-12)


def table_runs(tmp_path: Path):
    """pg and trpo on two envs; scores (mean of last 2 evaluations) chosen by hand below."""
    evals = {("pg", "CartPole-v1"): [(10, 20), (30, 50)], ("trpo", "CartPole-v1"): [(100, 110), (90, 110), (0, 130)],
             ("pg", "Pendulum-v1"): [(-500, -300), (-100, -100)], ("trpo", "Pendulum-v1"): [(-900, -800), (-700, -600)]}
    for (algo, env), runs in evals.items():
        for seed, (a, b) in enumerate(runs):
            write_record(tmp_path / f"{algo}_{env}_{seed}", algo=algo, env=env, seed=seed,
                         rows=curve_rows(6, evals={3: 999.0, 4: float(a), 5: float(b)}))
    return load_quiet([str(tmp_path)])


def test_table_numbers_match_hand_computed_mean_se_and_ci(tmp_path: Path) -> None:
    rs = table_runs(tmp_path)
    summary = aggregate.summary_table(rs, "eval/return_mean", last_k=2)
    row = summary.set_index(["env", "setting"])
    # trpo on CartPole: run scores 105, 100, 65 (the 999 evaluation is outside the last 2)
    cp = row.loc[("CartPole-v1", "trpo")]
    scores = np.array([105.0, 100.0, 65.0])
    assert cp["n"] == 3 and cp["mean"] == pytest.approx(90.0)
    assert cp["std"] == pytest.approx(np.std(scores, ddof=1))
    assert cp["se"] == pytest.approx(np.std(scores, ddof=1) / math.sqrt(3))
    assert cp["iqm"] == pytest.approx(scores.mean())  # 3 values: trim_mean(0.25) trims none
    assert scores.min() <= cp["ci_low"] < cp["mean"] < cp["ci_high"] <= scores.max()
    # Two seeds: mean and SE, but no interval (see the statistics test).
    pg = row.loc[("CartPole-v1", "pg")]
    assert (pg["mean"], pg["se"]) == (27.5, 12.5) and math.isnan(pg["ci_low"]) and math.isnan(pg["ci_high"])
    assert cp["se"] == pytest.approx(math.sqrt(475 / 3))

    md = tables.to_markdown(summary)
    assert md.splitlines()[0] == "| algorithm | CartPole-v1 | Pendulum-v1 |"
    # pg: CartPole scores 15, 40 -> 27.5 +- 12.5; Pendulum -400, -100 -> -250 +- 150. trpo: CartPole
    # 90 +- sqrt(475/3) = 12.58; Pendulum -850, -650 -> -750 +- 100. Two significant digits of the SE.
    assert md.splitlines()[2] == "| pg | 28 ± 12 (n=2) | **-250 ± 150 (n=2)** |"
    assert md.splitlines()[3] == "| trpo | **90 ± 13 (n=3)** | -750 ± 100 (n=2) |"
    tex = tables.to_latex(summary, caption="Final return")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"trpo & \textbf{90 $\pm$ 13 (n=3)} & -750 $\pm$ 100 (n=2) \\" in tex
    csv = pd.read_csv(pd.io.common.StringIO(tables.to_csv(summary)))
    got = csv.set_index(["env", "setting"]).loc[("CartPole-v1", "trpo")]
    assert got["mean"] == pytest.approx(90.0) and got["se"] == pytest.approx(cp["se"], rel=1e-9)
    assert got["ci_low"] == pytest.approx(cp["ci_low"], rel=1e-9) and got["n"] == 3
    assert tables.to_markdown(summary, higher_is_better=False).count("**") == 4  # lowest bolded instead


def test_curves_interpolate_on_a_common_grid_never_past_a_run_end() -> None:
    grid = np.array([0.0, 500.0, 1000.0, 1500.0, 2500.0])
    got = aggregate.on_grid([500, 1000, 2000], [1.0, 3.0, 5.0], grid)
    np.testing.assert_array_equal(got, [np.nan, 1.0, 3.0, 4.0, np.nan])


def test_curves_mean_and_band_of_seeds(tmp_path: Path) -> None:
    write_record(tmp_path / "a", seed=0, rows=[(1000, 0.0, None), (2000, 10.0, None), (3000, 20.0, None)])
    write_record(tmp_path / "b", seed=1, rows=[(1500, 5.0, None), (2500, 25.0, None)])
    rs = load_quiet([str(tmp_path)])
    c = aggregate.curves(rs, "rollout/return_mean", num_points=5)  # grid 1000, 1500, ..., 3000
    # Only 1500..2500 is covered by both runs; a: 5, 10, 15; b: 5, 15, 25.
    assert c["env_steps"].tolist() == [1500.0, 2000.0, 2500.0]
    assert c["mean"].tolist() == [5.0, 12.5, 20.0]
    assert c["se"].tolist() == [0.0, 2.5, 5.0]
    assert c["ci_low"].isna().all() and c["ci_high"].isna().all()  # two seeds: no band (n < 3)
    write_record(tmp_path / "c", seed=2, rows=[(1500, 5.0, None), (2500, 5.0, None)])
    c = aggregate.curves(load_quiet([str(tmp_path)]), "rollout/return_mean", num_points=5)
    assert c["mean"].tolist() == [5.0, 10.0, 15.0] and c["n"].tolist() == [3, 3, 3]
    assert (c["ci_low"] <= c["mean"]).all() and (c["mean"] <= c["ci_high"]).all()
    assert c["ci_low"].iloc[0] == c["ci_high"].iloc[0] == 5.0 and c["ci_high"].iloc[2] > c["ci_low"].iloc[2]


# ------------------------------------------------------------------------------------------ figures


def test_figures_plot_the_aggregated_data(tmp_path: Path) -> None:
    rs = table_runs(tmp_path / "runs")
    c = aggregate.curves(rs, "rollout/return_mean", num_points=6)
    order = tables.setting_order(rs.settings)
    fig = figures.learning_curves(c, ylabel="episode return", order=order)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["CartPole-v1", "Pendulum-v1"]
    for ax, env in zip(axes, ["CartPole-v1", "Pendulum-v1"]):
        assert ax.get_xlabel() == "environment steps" and ax.get_ylabel() == "episode return"
        lines, bands = ax.get_lines(), [p for p in ax.collections if isinstance(p, PolyCollection)]
        assert [ln.get_label().split(" (n=")[0] for ln in lines] == ["pg", "trpo"]
        for line, setting in zip(lines, ["pg", "trpo"]):
            d = c[(c["env"] == env) & (c["setting"] == setting)]
            np.testing.assert_array_equal(line.get_xdata(), d["env_steps"].to_numpy())
            np.testing.assert_array_equal(line.get_ydata(), d["mean"].to_numpy())
        # Only trpo on CartPole has 3 seeds: the one band; n=2 settings get none.
        assert len(bands) == (1 if env == "CartPole-v1" else 0)
        if bands:
            d = c[(c["env"] == env) & (c["setting"] == "trpo")]
            ys = bands[0].get_paths()[0].vertices[:, 1]
            assert ys.min() == pytest.approx(d["ci_low"].min()) and ys.max() == pytest.approx(d["ci_high"].max())
    paths = figures.save(fig, tmp_path / "out" / "curves")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"%PDF"

    sweep = pd.DataFrame({"algo.max_kl": [0.01, 0.02, 0.05], "algo.cg_damping": [0.1, 0.01, 0.1],
                          "mean": [1.0, 3.0, 2.0], "se": [0.1, 0.1, 0.1]})
    fig = figures.sweep(sweep, "algo.max_kl", "algo.cg_damping", objective="return")
    points = next(p for p in fig.axes[0].collections if isinstance(p, PathCollection))
    np.testing.assert_array_equal(points.get_offsets(), [[0.01, 0.1], [0.02, 0.01], [0.05, 0.1]])
    np.testing.assert_array_equal(points.get_array(), [1.0, 3.0, 2.0])
    assert fig.axes[0].get_yscale() == "log" and "max_kl" in fig.axes[0].get_xlabel()

    diag = {m: aggregate.curves(rs, m, num_points=6) for m in ("train/kl", "train/backtracks", "train/entropy")}
    fig = figures.diagnostics(diag, "CartPole-v1", order=order, deltas={"trpo": 0.01})
    kl_ax = fig.axes[0]
    assert kl_ax.get_ylabel().startswith("mean KL")
    dashed = [ln for ln in kl_ax.get_lines() if ln.get_label().startswith("delta")]
    assert all(ln.get_linestyle() == "--" for ln in dashed)
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [0.01, 0.01]
    assert [ax.get_xlabel() for ax in fig.axes[:3]] == ["environment steps"] * 3


# ------------------------------------------------------------------------------- W&B api (offline)
# No network here: these tests cover the argument handling, the one-line error when W&B cannot be
# reached, and the conversion of run objects through a stand-in with wandb's public Run attributes.
# They do not show that a real W&B server answers as the stand-in does.


def test_api_project_arguments() -> None:
    assert api_source.project_path("me/proj") == "me/proj"
    assert api_source.project_path("proj", entity="team") == "team/proj"
    assert api_source.project_path("proj") == "proj"
    for bad in ("", "a/b/c", "/"):
        with pytest.raises(AnalysisError, match="entity/project"):
            api_source.project_path(bad)
    with pytest.raises(AnalysisError, match="contradicts"):
        api_source.project_path("me/proj", entity="other")
    assert api_source.parse_filters('{"config.algo.name": "trpo"}') == {"config.algo.name": "trpo"}
    with pytest.raises(AnalysisError, match="not valid JSON"):
        api_source.parse_filters("{oops")


def test_api_unreachable_is_a_one_line_error(monkeypatch, tmp_path: Path, capsys) -> None:
    import wandb

    class Unreachable:
        def __init__(self, *a, **k):
            raise ConnectionError("Max retries exceeded with url: /graphql\n(more lines)")

    monkeypatch.setattr(wandb, "Api", Unreachable)
    assert report_main(["me/proj", "--source", "api", "--out", str(tmp_path), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert err == ("analysis: error: could not list W&B runs of me/proj "
                   "(ConnectionError: Max retries exceeded with url: /graphql)\n")


def test_api_runs_are_converted_like_offline_runs(monkeypatch, tmp_path: Path) -> None:
    import wandb

    class FakeRun:  # the attributes of wandb.apis.public.Run that the source uses
        def __init__(self, seed):
            self.id, self.name, self.group, self.tags, self.state = f"id{seed}", f"trpo-s{seed}", "g", [], "finished"
            self.config = {"algo": {"name": "trpo"}, "env": {"id": "Hopper-v5"}, "seed": seed}
            self.summary = {"eval/return_mean": 1.0}
            self._attrs = {"heartbeatAt": "t", "historyLineCount": 2}
            self.seed = seed

        def scan_history(self):
            return [{"_step": 100, "_runtime": 1.0, "eval/return_mean": self.seed + 0.5},
                    {"_step": 200, "eval/return_mean": self.seed + 1.5, "train/kl": 0.01}]

    seen = {}

    class FakeApi:
        def __init__(self, timeout=None):
            seen["timeout"] = timeout

        def runs(self, path, filters=None):
            seen["call"] = (path, filters)
            return [FakeRun(0), FakeRun(1)]

    monkeypatch.setattr(wandb, "Api", FakeApi)
    rs = load_runs(["proj"], "api", entity="me", api_filters='{"state": "finished"}', cache_dir=tmp_path)
    assert seen["call"] == ("me/proj", {"state": "finished"}) and seen["timeout"] == api_source.TIMEOUT_S
    assert list(rs.runs.index) == ["me/proj/id0", "me/proj/id1"]
    assert set(rs.runs["env"]) == {"Hopper-v5"} and list(rs.runs["seed"]) == [0, 1]
    scores = aggregate.final_scores(rs, "eval/return_mean", last_k=2)
    assert scores["score"].tolist() == [1.0, 2.0]


# ------------------------------------------------------------------------------------ end to end


def test_end_to_end_from_two_training_runs_to_report(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    run_cli(["algo=pg,trpo", "env=cartpole", "total_steps=2048", "algo.steps_per_iter=512", "eval.every=1",
             "eval.episodes=2"], sweep_dir=sweep, env=env, timeout=300)
    reports = {}
    for source in ("records", "offline"):
        out = tmp_path / f"report_{source}"
        done = run_cli([str(sweep), "--source", source, "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                        "--resamples", "200"], module="analysis.report", env=env, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # two good runs: no warning
        reports[source] = out
    out = reports["records"]
    md = (out / "report.md").read_text()
    assert "## Final performance" in md and "![learning curves](figures/learning_curves.png)" in md
    for name in ("learning_curves", "diagnostics_CartPole-v1"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
        assert (out / "figures" / f"{name}.pdf").stat().st_size > 0
    table = (out / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| pg", "| trpo"]
    # The final evaluation of each run (run.json) is the last evaluation in the table (last_k=3 over
    # 4 iterations -> the mean of evaluations 2..4 of metrics.csv, recomputed here by hand).
    runs = sorted(sweep.glob("*_CartPole-v1_s0"))
    hand = [pd.read_csv(r / "metrics.csv")["eval_return_mean"].dropna().tail(3).mean() for r in runs]
    assert [json.loads((r / "run.json").read_text())["eval_return_mean"] for r in runs] == \
        [pd.read_csv(r / "metrics.csv")["eval_return_mean"].dropna().iloc[-1] for r in runs]
    summary = pd.read_csv(out / "table.csv")
    assert summary["mean"].tolist() == pytest.approx(hand) and summary["n"].tolist() == [1, 1]
    # The W&B offline files give the same table as the local record.
    assert (reports["offline"] / "table.md").read_text() == (out / "table.md").read_text()
