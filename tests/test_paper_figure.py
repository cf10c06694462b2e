"""The TRPO paper's Figure 4: its presets (conf/experiment/figure4_*.yaml) and its report
(analysis/paper_figure.py), drawn from real run records.

1. Every Figure 4 preset composes and validates, runs one (algorithm, environment) pair with the
   paper's network size (appendix E, Table 2) and delta, and the four algorithms of an environment
   share everything a fair comparison needs (budget, network, discount, advantages, value fit,
   evaluation); the CLI prints the same config with --cfg job.
2. The report from six tiny real runs (pg and trpo on CartPole, three seeds, four iterations):
   both figures plot the mean over seeds of the records' values against policy iterations and
   against simulator steps, with the bootstrap band of analysis.stats; the table's means are the
   hand-computed means of the records' last three evaluations; panels follow the paper's order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from matplotlib.collections import PolyCollection

import trpo_exp.app as cli
from analysis import figures, stats, tables
from analysis.loading import load_runs
from analysis.paper_figure import ITERATIONS_LABEL, STEPS_LABEL, _figure, build, highlighted, paper_order
from conftest import ROOT, run_cli
from trpo_exp.config import register_configs

register_configs()
CONF = ROOT / "conf"
ALGOS = ("pg", "npg_fixed", "trpo", "trpo_vine")
ENVS = {"swimmer": ("Swimmer-v5", [30], 50), "hopper": ("Hopper-v5", [50], 100),
        "walker2d": ("Walker2d-v5", [50], 100)}  # id, Table 2 hidden layer, vine rollout length
SHARED = ("budget", "algo.hidden_sizes", "algo.gamma", "algo.gae_lambda", "algo.normalize_advantage",
          "algo.activation", "algo.log_std_init", "algo.vf_lr", "algo.vf_epochs", "algo.vf_batch_size",
          "algo.vf_normalize_targets", "env.num_envs", "env.normalize_obs",
          "env.normalize_reward", "eval.every", "eval.episodes")


def _config(name: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return cli.to_config(compose("config", overrides=[f"experiment={name}"]))


def _get(config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, list) else value


def test_presets_are_the_twelve_pairs_plus_their_shared_part():
    names = {p.stem for p in (CONF / "experiment").glob("figure4*.yaml")}
    assert names == {"figure4_common"} | {f"figure4_{a}_{e}" for a in ALGOS for e in ENVS}


@pytest.mark.parametrize("env", sorted(ENVS))
def test_presets_compose_with_the_papers_settings_and_share_the_rest(env):
    env_id, hidden, rollout_len = ENVS[env]
    configs = {algo: _config(f"figure4_{algo}_{env}") for algo in ALGOS}
    for algo, config in configs.items():
        assert (config.algo.name, config.env.id) == (algo, env_id)
        assert list(config.algo.hidden_sizes) == hidden  # one hidden layer, Table 2
    for key in SHARED:  # what a fair comparison holds fixed (algo_env presets of trpo are overridden)
        assert len({json.dumps(_get(c, key)) for c in configs.values()}) == 1, key
    assert configs["trpo"].algo.max_kl == configs["trpo_vine"].algo.max_kl == 0.01  # "delta = 0.01 for all"
    assert len({configs[a].algo.cg_iters for a in ("npg_fixed", "trpo", "trpo_vine")}) == 1  # one natural gradient
    vine = configs["trpo_vine"].algo.vine
    assert (vine.num_actions, vine.rollout_len) == (4, rollout_len)  # Table 2: rollouts per state, length
    assert len({configs[a].algo.steps_per_iter for a in ("pg", "npg_fixed", "trpo")}) == 1


def test_preset_through_the_cli():
    done = run_cli(["--cfg", "job", "experiment=figure4_trpo_vine_hopper"], timeout=120)
    cfg = yaml.safe_load(done.stdout)
    assert cfg["algo"]["name"] == "trpo_vine" and cfg["env"]["id"] == "Hopper-v5"
    assert cfg["algo"]["hidden_sizes"] == [50] and cfg["algo"]["vine"]["rollout_len"] == 100
    assert cfg["algo"]["max_kl"] == 0.01 and cfg["total_steps"] == 1_000_000


# ------------------------------------------------------------------------------- from real runs

STEPS_PER_ITER, ITERS = 256, 4


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("figure4") / "multirun"
    run_cli(["algo=pg,trpo", "env=cartpole", "seed=0,1,2", f"total_steps={STEPS_PER_ITER * ITERS}",
             f"algo.steps_per_iter={STEPS_PER_ITER}", "eval.every=1", "eval.episodes=2", "logger=none"],
            sweep_dir=root, timeout=600)
    return root


def _records(sweep: Path) -> dict[str, list[pd.DataFrame]]:
    out: dict[str, list[pd.DataFrame]] = {}
    for run in sorted(p for p in sweep.iterdir() if (p / "run.json").exists()):
        algo = json.loads((run / "run.json").read_text())["algo"]
        out.setdefault(algo, []).append(pd.read_csv(run / "metrics.csv"))
    return out


def test_report_command_writes_figures_and_the_records_table(sweep: Path, tmp_path: Path):
    out = tmp_path / "figure4"
    done = run_cli([str(sweep), "--out", str(out), "--no-cache", "--resamples", "200"],
                   module="analysis.paper_figure", timeout=300)
    assert done.stderr == ""  # six good runs: no warning
    for name in ("figure4_iterations", "figure4_steps"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    md = (out / "figure4.md").read_text()
    assert "![figure4_iterations](figures/figure4_iterations.png)" in md
    assert "![figure4_steps](figures/figure4_steps.png)" in md
    # Final performance: per run the mean of its last 3 evaluations, then the mean over seeds.
    records = _records(sweep)
    hand = {algo: np.mean([m["eval_return_mean"].dropna().tail(3).mean() for m in runs])
            for algo, runs in records.items()}
    table = pd.read_csv(out / "table.csv").set_index("setting")
    assert table.loc[["pg", "trpo"], "mean"].tolist() == pytest.approx([hand["pg"], hand["trpo"]])
    assert table["n"].tolist() == [3, 3]
    best = max(hand, key=lambda a: hand[a])
    assert f"- CartPole-v1: {best} " in md and (out / "table.tex").exists() and (out / "runs.csv").exists()


def test_both_axes_plot_the_mean_and_band_of_the_records(sweep: Path):
    rs = load_runs([str(sweep)], use_cache=False)
    order = tables.setting_order(rs.settings)
    result = build(rs, curve_metric="rollout/return_mean", order=order, style=figures.styles(order),
                   points=ITERS, n_resamples=300)
    records = _records(sweep)
    checks = ((result.fig_iterations, ITERATIONS_LABEL, np.arange(1, ITERS + 1)),
              (result.fig_steps, STEPS_LABEL, STEPS_PER_ITER * np.arange(1, ITERS + 1)))
    for fig, xlabel, x in checks:
        assert fig is not None
        (ax,) = [a for a in fig.axes if a.get_title()]
        assert ax.get_title() == "CartPole-v1" and ax.get_xlabel() == xlabel
        lines = {ln.get_label().split(" (n=")[0]: ln for ln in ax.get_lines()}
        assert sorted(lines) == ["pg", "trpo"]
        bands = [p for p in ax.collections if isinstance(p, PolyCollection)]
        assert len(bands) == 2  # three seeds each: a band per algorithm
        for algo, line in lines.items():
            per_seed = np.vstack([m["return_mean"].to_numpy(float) for m in records[algo]])  # seeds x iterations
            np.testing.assert_allclose(line.get_xdata(), x)
            np.testing.assert_allclose(line.get_ydata(), per_seed.mean(axis=0))
            low, high = stats.bootstrap_ci(per_seed, n_resamples=300)
            color = figures.styles(order)[algo]["color"]
            band = next(b for b in bands if np.allclose(b.get_facecolor()[0][:3], color[:3]))
            ys = band.get_paths()[0].vertices[:, 1]
            assert ys.min() == pytest.approx(low.min()) and ys.max() == pytest.approx(high.max())


def test_panels_follow_the_papers_order():
    assert paper_order(["Walker2d-v5", "CartPole-v1", "Hopper-v5", "Swimmer-v5"]) == \
        ["Swimmer-v5", "Hopper-v5", "Walker2d-v5", "CartPole-v1"]
    envs = ["Hopper-v5", "Swimmer-v5", "Walker2d-v5"]
    curves = pd.DataFrame([{"env": env, "setting": "trpo", "algo": "trpo", "env_steps": s, "n": 1, "mean": s,
                            "se": np.nan, "ci_low": np.nan, "ci_high": np.nan} for env in envs for s in (1, 2)])
    fig = _figure(curves, "return", ITERATIONS_LABEL, ["trpo"], figures.styles(["trpo"]), None)
    assert fig is not None
    fig.canvas.draw()
    panels = sorted((a for a in fig.axes if a.get_title()), key=lambda a: a.get_position().x0)
    assert [a.get_title() for a in panels] == ["Swimmer-v5", "Hopper-v5", "Walker2d-v5"]


def test_every_algorithm_of_a_panel_is_in_colour():
    """Figure 4 with each env's best fixed NPG step: seven settings over the figure, five per panel.
    The colour cap (figures.HIGHLIGHT) is per panel, so no algorithm of a panel turns grey; a panel
    with more settings than the cap still greys the rest."""
    per_env = {"Swimmer-v5": "npg_fixed (step_size=0.6)", "Hopper-v5": "npg_fixed (step_size=1.8)",
               "Walker2d-v5": "npg_fixed (step_size=5.4)"}
    common = ["pg", "npg_fixed (step_size=0.2)", "trpo", "trpo_vine"]
    order = ["pg", "npg_fixed (step_size=0.2)", *per_env.values(), "trpo", "trpo_vine"]
    rows = [{"env": env, "setting": s, "algo": s.split(" ")[0], "env_steps": x, "n": 5, "mean": x,
             "se": np.nan, "ci_low": np.nan, "ci_high": np.nan}
            for env, best in per_env.items() for s in [*common, best] for x in (1, 2)]
    curves = pd.DataFrame(rows)
    assert highlighted(curves, order) == order
    fig = _figure(curves, "return", ITERATIONS_LABEL, order, figures.styles(order), None)
    assert fig is not None
    for ax in (a for a in fig.axes if a.get_title()):
        labels = [ln.get_label().split(" (n=")[0] for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        assert sorted(labels) == sorted([*common, per_env[ax.get_title()]])
    assert not any("other settings" in t.get_text() for leg in fig.legends for t in leg.get_texts())
    crowded = pd.DataFrame([{**r, "env": "Hopper-v5", "setting": f"s{k}"} for k in range(8) for r in rows[:2]])
    assert highlighted(crowded, [f"s{k}" for k in range(8)]) == [f"s{k}" for k in range(figures.HIGHLIGHT)]
