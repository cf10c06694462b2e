"""Running observation normalisation. Its statistics are part of the agent: they are saved in the
checkpoint, frozen during evaluation, and never updated from evaluation episodes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class RunningObsNormalizer:
    def __init__(self, shape: tuple[int, ...], clip: float, enabled: bool = True, eps: float = 1e-8):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 1e-4  # a tiny prior count avoids dividing by zero before the first update
        self.std = np.sqrt(self.var + eps)  # what __call__ divides by; refreshed with the statistics
        self.clip = clip
        self.enabled = enabled
        self.eps = eps

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch of raw observations [B, *shape] (parallel-variance formula, Chan et al.)."""
        if not self.enabled:
            return
        batch = np.asarray(batch, dtype=np.float64)
        b_mean, b_var, b_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta ** 2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total
        self.std = np.sqrt(self.var + self.eps)

    @property
    def has_statistics(self) -> bool:
        """False until the first update: the statistics are still the prior (mean 0, var 1)."""
        return self.count >= 1

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return np.asarray(obs, dtype=np.float32)
        # np.clip((obs - mean) / std, -clip, clip) in place: the sampling loop calls this every step
        normalized = np.subtract(obs, self.mean)
        np.divide(normalized, self.std, out=normalized)
        np.maximum(normalized, -self.clip, out=normalized)
        np.minimum(normalized, self.clip, out=normalized)
        return normalized.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Tensors (float64, exact) so checkpoints load with weights_only=True."""
        return {"mean": torch.from_numpy(self.mean.copy()), "var": torch.from_numpy(self.var.copy()),
                "count": float(self.count), "clip": self.clip, "enabled": self.enabled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # via torch: np.array(tensor) goes through Tensor.__array__, deprecated in numpy 2 (copy=)
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).numpy().copy()
        self.var = torch.as_tensor(state["var"], dtype=torch.float64).numpy().copy()
        self.count = state["count"]
        self.std = np.sqrt(self.var + self.eps)
        self.clip, self.enabled = state["clip"], state["enabled"]
