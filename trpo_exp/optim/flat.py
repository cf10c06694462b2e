"""Parameters and gradients as one flat vector: the space where CG and the line search work."""

from __future__ import annotations

from typing import Sequence

import torch


def flat_params(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def set_flat_params(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n
    if offset != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} entries, parameters need {offset}")


def flat_grad(output: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool = False,
              retain_graph: bool | None = None) -> torch.Tensor:
    """d output / d params, flattened; parameters the output does not depend on get zeros."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=retain_graph,
                                allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])
