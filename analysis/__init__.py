"""Runs -> tidy pandas frame -> paper tables and figures.

    from analysis import load_runs, aggregate, tables
    rs = load_runs(["multirun/2026-11-22"])              # or source="offline" / "api"
    tidy = rs.tidy()                                      # run_id, algo, env, seed, params, env_steps, metric, value
    summary = aggregate.summary_table(rs, "eval/return_mean", last_k=3)
    print(tables.to_markdown(summary))

Command line: ``python -m analysis.report <run dirs | W&B project> --out report/``.
"""

from analysis.errors import AnalysisError
from analysis.loading import LoadWarning, load_runs
from analysis.runset import RunSet

__all__ = ["AnalysisError", "LoadWarning", "RunSet", "load_runs"]
