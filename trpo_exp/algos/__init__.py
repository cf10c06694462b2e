"""Policy steps. Each algorithm is a callable (policy, PolicyBatch) -> PolicyStepStats."""

from __future__ import annotations

from trpo_exp.algos.natural import BacktrackingLineSearch, NaturalGradient
from trpo_exp.algos.pg import VanillaPolicyGradient
from trpo_exp.config import AlgoConfig
from trpo_exp.nets import Policy


def make_policy_step(cfg: AlgoConfig, policy: Policy):
    if cfg.name == "pg":
        return VanillaPolicyGradient(policy, cfg.lr)
    line_search = None
    if cfg.name in ("trpo", "trpo_vine"):  # vine changes the objective, not the step
        line_search = BacktrackingLineSearch(cfg.backtrack_coeff, cfg.backtrack_iters, cfg.accept_ratio)
    return NaturalGradient(cfg.max_kl, cfg.cg_iters, cfg.cg_tol, cfg.cg_damping, cfg.fvp_subsample, line_search)
