"""Returns benchmark: our final deterministic evaluation beside the published TRPO figures.

Runs a comparison set (every env x every seed), each run an ordinary ``python -m trpo_exp``
subprocess (its complete run record under ``<out>/runs/<env>/s<seed>/``), then writes into ``<out>``:

* ``table.md``  - per environment: each seed's final eval, n, mean +- SE (SE = sample std with
                  ddof=1 / sqrt(n)), the 95% percentile-bootstrap CI of the mean, late explained
                  variance, and the published figures (``analysis/data/reference.csv``) beside;
* ``table.csv`` - the same, one row per environment, every statistic in its own column;
* ``runs.csv``  - one row per run: env, seed, status, final eval, late explained variance, the
                  run's resolved trust-region / critic settings, wall time, run dir;
* ``learning_curves.png`` - mean training return over seeds against env steps (95% bootstrap CI
                  band), one panel per environment, published final figures as dashed lines.

Statistics are the project's own (``analysis/stats.py``: ``summarize``, ``bootstrap_ci``).
"Final eval" is run.json ``eval_return_mean``: the deterministic mean-action policy after the last
iteration, ``--eval-episodes`` episodes on a separate env (what the sb3-contrib figures measure).
"Late explained variance" is the mean of metrics.csv ``explained_variance`` over the last 10% of
iterations (the value net's pre-fit predictions against the batch's TD(lambda) targets).

Run from the repository root:

    python benchmarks/returns.py --confirm --fresh 10               # hopper walker2d halfcheetah, 10 fresh seeds, 1M
    python benchmarks/returns.py                                     # the same with 5 fresh seeds
    python benchmarks/returns.py --envs hopper --seeds 0 1 --steps 8192 --jobs 1 --out /tmp/returns/smoke
    python benchmarks/returns.py --envs walker2d --steps 300000 --override algo.max_kl=0.02 --jobs 2
    python benchmarks/returns.py --out /tmp/returns/smoke --report-only  # table and figure again, no runs

Seeds: benchmarks/seed_registry.py lists every seed whose result was seen here. Without --seeds the
run set takes fresh ones (never used on these envs); table.md says whether its seeds were fresh (a
confirmation) or not, with the commit and the machine; a finished run set registers its seeds.

Runs whose run.json says ``finished`` are not run again (``--rerun`` to force), so an interrupted
set resumes where it stopped. Runs use ``logger=none`` and ``eval.every=0`` unless ``--override``
sets ``logger`` / ``eval.every``. The exit status is 1 when any run did not finish.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.stats import bootstrap_ci, summarize  # noqa: E402  (the project's statistics)
from benchmarks import seed_registry  # noqa: E402  (which seeds were used before)

PUBLISHED = ROOT / "analysis" / "data" / "reference.csv"  # the one file of published figures (sources: its README)
LATE_FRACTION = 0.1
SETTINGS_SHOWN = ("max_kl", "cg_damping", "gae_lambda", "vf_epochs", "vf_batch_size", "vf_lr",
                  "vf_normalize_targets")
ENV_SETTINGS_SHOWN = ("normalize_obs",)


@dataclass
class Run:
    env: str
    seed: int
    run_dir: Path
    log: Path
    status: str = "missing"
    final_eval: float = math.nan
    late_ev: float = math.nan
    env_steps: int = 0
    wall_s: float = math.nan
    settings: dict = field(default_factory=dict)
    curve: tuple[np.ndarray, np.ndarray] | None = None
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["hopper", "walker2d", "halfcheetah"],
                   help="env presets (conf/env/<name>.yaml)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds of every env (default: --fresh 5)")
    p.add_argument("--fresh", type=int, default=None, metavar="N",
                   help="N seeds that no requested env has used (benchmarks/seed_registry.csv)")
    p.add_argument("--confirm", action="store_true",
                   help="a confirmation: refuse seeds that the registry lists for a requested env")
    p.add_argument("--no-register", action="store_true",
                   help="do not add this run set's seeds to the registry (smoke tests)")
    p.add_argument("--steps", type=int, default=1_000_000, help="total_steps of every run")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (each its own process)")
    p.add_argument("--algo", default="trpo", help="algo preset (conf/algo/<name>.yaml)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="a trpo_exp override for every run (repeatable)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--out", type=Path, default=None,
                   help="output dir (default runs/returns/<UTC date>_<time>)")
    p.add_argument("--published", type=Path, default=PUBLISHED, help="published figures (CSV)")
    p.add_argument("--rerun", action="store_true", help="run again even where a finished run exists")
    p.add_argument("--report-only", action="store_true", help="no runs: table and figure from --out")
    p.add_argument("--no-figure", action="store_true")
    a = p.parse_args(argv)
    for o in a.override:
        if "=" not in o:
            p.error(f"--override {o!r} is not KEY=VALUE")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    for env in a.envs:
        if not (ROOT / "conf" / "env" / f"{env}.yaml").exists():
            known = sorted(x.stem for x in (ROOT / "conf" / "env").glob("*.yaml"))
            p.error(f"unknown env preset {env!r} (choose from {', '.join(known)})")
    choose_seeds(p, a)
    if a.out is None:
        if a.report_only:
            p.error("--report-only needs --out")
        a.out = ROOT / "runs" / "returns" / dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d_%H-%M-%S")
    return a


def choose_seeds(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """--seeds or --fresh N (default: 5 fresh seeds); --confirm refuses seeds already used."""
    if a.seeds is not None and a.fresh is not None:
        p.error("--seeds and --fresh are not allowed together: give one")
    if a.fresh is not None and a.fresh < 1:
        p.error(f"--fresh {a.fresh} is not allowed: must be >= 1")
    if a.seeds is None and a.report_only and a.out is not None:  # the seeds of the run set there
        a.seeds = sorted({int(d.name[1:]) for d in a.out.glob("runs/*/s*") if d.name[1:].isdigit()})
    if a.seeds is None:
        a.seeds = seed_registry.fresh(a.envs, a.fresh or 5)
    a.used = {env: sorted(seed_registry.used(env) & set(a.seeds)) for env in a.envs}
    if a.confirm and any(a.used.values()):
        named = "; ".join(f"{env} {' '.join(map(str, s))}" for env, s in a.used.items() if s)
        p.error(f"--confirm is not allowed with seeds used before ({named}; benchmarks/seed_registry.csv): "
                f"use --fresh N")


def seeds_text(args: argparse.Namespace) -> str:
    """Which seeds, and whether they may be read as a confirmation."""
    used = {env: s for env, s in args.used.items() if s}
    if not used:
        return (f"Seeds {' '.join(map(str, args.seeds))}: none used before this run set on these envs "
                f"(benchmarks/seed_registry.csv): a confirmation.")
    named = "; ".join(f"{env}: {' '.join(map(str, s))}" for env, s in used.items())
    return (f"Seeds {' '.join(map(str, args.seeds))}. **Not a confirmation**: seeds already used to look at "
            f"results ({named}; benchmarks/seed_registry.csv), so settings may have been chosen on them.")


def provenance_text() -> str:
    """The commit and the machine the figures come from (a seed's draw depends on both)."""
    from trpo_exp import provenance

    commit = provenance.git_info(ROOT)
    dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
    return f"Commit {str(commit.get('commit'))[:12]}{dirty}; machine: {provenance.cpu_name()}."


def command(args: argparse.Namespace, run: Run) -> list[str]:
    keys = {o.split("=", 1)[0].lstrip("+~") for o in args.override}
    cmd = [sys.executable, "-m", "trpo_exp", f"algo={args.algo}", f"env={run.env}",
           f"seed={run.seed}", f"total_steps={args.steps}", f"eval.episodes={args.eval_episodes}"]
    if "logger" not in keys:
        cmd.append("logger=none")
    if "eval.every" not in keys:
        cmd.append("eval.every=0")
    return cmd + list(args.override) + [f"hydra.run.dir={run.run_dir}"]


def finished(run: Run) -> bool:
    try:
        return json.loads((run.run_dir / "run.json").read_text()).get("status") == "finished"
    except (OSError, ValueError):
        return False


def execute(args: argparse.Namespace, run: Run) -> None:
    if finished(run) and not args.rerun:
        print(f"[returns] {run.env} s{run.seed}: finished run found, not run again", flush=True)
        return
    if run.run_dir.exists():  # a finished record is refused by trpo_exp: keep the old one aside
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        run.run_dir.rename(run.run_dir.with_name(f"{run.run_dir.name}.old-{stamp}"))
    cmd = command(args, run)
    run.log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"[returns] start {run.env} s{run.seed}: {shlex.join(cmd[1:])}", flush=True)
    with open(run.log, "w") as log:
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    print(f"[returns] done  {run.env} s{run.seed}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)


def read_run(run: Run) -> None:
    """Fill in the run's results from its record; never raises (a broken record is a note)."""
    try:
        info = json.loads((run.run_dir / "run.json").read_text())
    except (OSError, ValueError) as e:
        run.note = f"no readable run.json ({type(e).__name__})"
        return
    run.status = str(info.get("status", "?"))
    run.env_steps = int(info.get("env_steps") or 0)
    run.wall_s = float(info.get("wall_time_s") or math.nan)
    if run.status == "finished" and info.get("eval_return_mean") is not None:
        run.final_eval = float(info["eval_return_mean"])
    elif run.status != "finished":
        run.note = f"status {run.status}" + (f": {info['reason']}" if info.get("reason") else "")
    cfg_path = run.run_dir / ".hydra" / "config.yaml"
    if cfg_path.exists():
        from omegaconf import OmegaConf
        cfg = OmegaConf.load(cfg_path)
        run.settings = {k: cfg.algo.get(k) for k in SETTINGS_SHOWN if k in cfg.algo}
        run.settings.update({f"env.{k}": cfg.env.get(k) for k in ENV_SETTINGS_SHOWN if k in cfg.env})
    read_metrics(run)


def read_metrics(run: Run) -> None:
    """Late explained variance and the learning curve from metrics.csv (a cut line reads as NaN)."""
    try:
        with open(run.run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        rows = []

    def col(name: str) -> np.ndarray:
        out = []
        for r in rows:
            try:
                out.append(float(r.get(name) or "nan"))
            except ValueError:  # a line cut by a crash
                out.append(math.nan)
        return np.asarray(out, dtype=float)

    if rows:
        ev = col("explained_variance")
        late = ev[-max(1, int(round(LATE_FRACTION * len(ev)))):]
        run.late_ev = float(np.nanmean(late)) if np.isfinite(late).any() else math.nan
        steps, ret = col("env_steps"), col("return_mean")
        ok = np.isfinite(steps) & np.isfinite(ret)
        if ok.sum() >= 2:
            run.curve = (steps[ok], ret[ok])


def read_published(path: Path) -> list[dict]:
    if not path.exists():
        print(f"[returns] warning: {path} not found, no published figures", file=sys.stderr)
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fmt(x: float, digits: int = 0) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:,.{digits}f}"


def published_text(row: dict) -> str:
    s = fmt(float(row["mean"]))
    if row.get("std"):
        s += f" +- {fmt(float(row['std']))} (std"
        s += f", n={row['n']})" if row.get("n") else ")"
    steps = f" at {int(float(row['steps'])):,} steps" if row.get("steps") else ""
    version = f", {row['env_id']}" if row.get("env_id") else ""
    return f"{row['source']} {row['algo']}{steps}, {row['metric']}{version}: {s}"


def tables(args: argparse.Namespace, runs: list[Run], published: list[dict]) -> tuple[str, list[dict]]:
    lines, rows = [], []
    seeds = sorted({r.seed for r in runs})
    head = (["env", "steps"] + [f"s{s}" for s in seeds]
            + ["n", "mean +- SE", "95% CI", "late EV", "published (mean +- std)", "ours / published"])
    align = ["---", "---:"] + ["---:"] * (len(seeds) + 4) + ["---", "---:"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for env in args.envs:
        group = [r for r in runs if r.env == env]
        scores = np.array([r.final_eval for r in group], dtype=float)
        s = summarize(scores)
        ev = np.array([r.late_ev for r in group], dtype=float)
        late_ev = float(np.nanmean(ev)) if np.isfinite(ev).any() else math.nan
        pubs = [p for p in published if p["env"].lower() == env]
        sb3 = next((float(p["mean"]) for p in pubs if p["source"] == "sb3-contrib"), math.nan)
        per_seed = {r.seed: r.final_eval for r in group}
        cells = ([env, f"{args.steps:,}"] + [fmt(per_seed.get(sd, math.nan)) for sd in seeds]
                 + [str(s.n), f"{fmt(s.mean)} +- {fmt(s.se)}", f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]",
                    fmt(late_ev, 2), "<br>".join(published_text(p) for p in pubs) or "-",
                    f"{s.mean / sb3:.2f}" if np.isfinite(sb3) and np.isfinite(s.mean) else "-"])
        lines.append("| " + " | ".join(cells) + " |")
        row = {"env": env, "algo": args.algo, "steps": args.steps, "n": s.n, "mean": s.mean, "std": s.std,
               "se": s.se, "ci_low": s.ci_low, "ci_high": s.ci_high, "iqm": s.iqm, "late_ev": late_ev,
               "n_runs": len(group), "n_unfinished": sum(r.status != "finished" for r in group),
               "overrides": " ".join(args.override)}
        row.update({f"s{sd}": per_seed.get(sd, math.nan) for sd in seeds})
        for p in pubs:
            tag = p["source"].replace("-", "_")
            row.update({f"{tag}_mean": p["mean"], f"{tag}_std": p["std"], f"{tag}_n": p["n"],
                        f"{tag}_steps": p["steps"], f"{tag}_metric": p["metric"]})
        row["ours_over_sb3"] = s.mean / sb3 if np.isfinite(sb3) else math.nan
        rows.append(row)
    return "\n".join(lines), rows


def settings_lines(runs: list[Run]) -> list[str]:
    out = []
    for env in sorted({r.env for r in runs}):
        distinct = {json.dumps(r.settings, sort_keys=True) for r in runs if r.env == env and r.settings}
        for d in sorted(distinct):
            items = ", ".join(f"{k}={v}" for k, v in json.loads(d).items())
            out.append(f"- {env}: {items}")
    return out


def figure(args: argparse.Namespace, runs: list[Run], published: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    envs = [e for e in args.envs if any(r.env == e and r.curve for r in runs)]
    if not envs:
        print("[returns] no learning curves to draw", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        curves = [r.curve for r in runs if r.env == env and r.curve]
        end = min(c[0][-1] for c in curves)  # only the steps every run reached: no silent seed drop
        start = max(c[0][0] for c in curves)
        grid = np.linspace(start, end, 100)
        ys = np.stack([np.interp(grid, c[0], c[1]) for c in curves])
        mean = ys.mean(axis=0)
        ax.plot(grid, mean, color="C0", label=f"{args.algo} (ours), n={len(curves)}")
        if len(curves) >= 2:
            low, high = bootstrap_ci(ys)
            ax.fill_between(grid, low, high, color="C0", alpha=0.25, linewidth=0)
        finals = [(r.env_steps, r.final_eval) for r in runs if r.env == env and np.isfinite(r.final_eval)]
        if finals:
            ax.scatter([f[0] for f in finals], [f[1] for f in finals], marker="x", color="C3", zorder=3,
                       label="final deterministic eval (per seed)")
        for i, p in enumerate(x for x in published if x["env"].lower() == env):
            steps = f" @{int(float(p['steps'])) // 1000}k" if p.get("steps") else ""
            ax.axhline(float(p["mean"]), color=f"C{i + 1}", linestyle="--", linewidth=1,
                       label=f"{p['source']}{steps} ({p['metric']})")
        ax.set_title(env)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k"))
        ax.set_xlabel("env steps")
        ax.set_ylabel("training return (mean over seeds, 95% CI)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = [Run(env, seed, out / "runs" / env / f"s{seed}", out / "logs" / f"{env}_s{seed}.log")
            for env in args.envs for seed in args.seeds]
    started = dt.datetime.now(dt.timezone.utc)
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda r: execute(args, r), runs))
    for r in runs:
        read_run(r)
    published = read_published(args.published)
    md_table, rows = tables(args, runs, published)

    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    run_fields = ["env", "seed", "status", "final_eval", "late_ev", "env_steps", "wall_s",
                  *sorted({k for r in runs for k in r.settings}), "run_dir", "note"]
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=run_fields)
        w.writeheader()
        for r in runs:
            w.writerow({"env": r.env, "seed": r.seed, "status": r.status, "final_eval": r.final_eval,
                        "late_ev": r.late_ev, "env_steps": r.env_steps, "wall_s": r.wall_s,
                        **r.settings, "run_dir": str(r.run_dir), "note": r.note})

    cmdline = "python benchmarks/returns.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    problems = [f"- {r.env} s{r.seed}: {r.note or r.status}" for r in runs
                if r.status != "finished" or not np.isfinite(r.final_eval)]
    md = [f"# Returns: {args.algo}, {args.steps:,} env steps", "",
          f"Command: `{cmdline}`  ", f"Date: {started:%Y-%m-%d %H:%M} UTC; overrides: "
          f"`{' '.join(args.override) or '(none)'}`; eval: {args.eval_episodes} episodes, deterministic.", "",
          seeds_text(args), provenance_text(), "",
          "Cells: final deterministic eval per seed; mean +- SE (sample std ddof=1 / sqrt(n)); 95% "
          "percentile-bootstrap CI of the mean (analysis/stats.py); late EV = mean explained variance "
          f"over the last {LATE_FRACTION:.0%} of iterations. Published figures are mean +- std over their "
          "seeds, at their own step budgets: compare like with like.", "", md_table, "",
          "Resolved settings of the runs (from each run's .hydra/config.yaml):", "", *settings_lines(runs), ""]
    if problems:
        md += ["Runs without a final eval (left out of the statistics):", "", *problems, ""]
    if not args.no_figure:
        figure(args, runs, published, out / "learning_curves.png")
        if (out / "learning_curves.png").exists():
            md += ["![learning curves](learning_curves.png)", ""]
    (out / "table.md").write_text("\n".join(md))
    if not args.report_only and not args.no_register:  # every seed whose result was seen is used now
        use = "reported" if any(args.used.values()) else "confirmation"
        source = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
        seed_registry.register([(r.env, r.seed) for r in runs if r.status == "finished"], use, source)
    print("\n".join(md))
    drawn = not args.no_figure and (out / "learning_curves.png").exists()
    print(f"\n[returns] wrote {out}/table.md, table.csv, runs.csv" + (", learning_curves.png" if drawn else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
