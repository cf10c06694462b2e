"""Conjugate gradient for symmetric positive definite systems given only matrix-vector products."""

from __future__ import annotations

from typing import Callable

import torch


def conjugate_gradient(mvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
                       tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b, starting from x = 0, with at most ``iters`` products A v.

    Stops early when the squared residual norm r^T r drops below ``tol``. TRPO uses this to get the
    natural direction F^-1 g without forming the Fisher matrix (paper, appendix C)."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x for x = 0
    p = r.clone()
    r_dot_r = torch.dot(r, r)
    for _ in range(iters):
        if r_dot_r <= tol:
            break
        ap = mvp(p)
        alpha = r_dot_r / torch.dot(p, ap)
        x += alpha * p
        r -= alpha * ap
        new_r_dot_r = torch.dot(r, r)
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return x
