"""Policy steps. Each algorithm's step is a callable (policy, batch) -> PolicyStepStats, built by
the factory its entry in trpo_exp.algorithms names."""
