"""Optuna sweeps over trpo_exp runs.

A named sweep definition (``sweeps/conf/sweep/<name>.yaml``, schema in ``sweeps.definition``) says
what to search, how to score and how to run; ``python -m sweeps <name> [overrides]`` works on it
(see ``sweeps.__main__``). Every trial seed is an ordinary trpo_exp run launched through Hydra's
launcher, and the sweep reads its scores back from the runs' records (run.json, metrics.csv).
"""
