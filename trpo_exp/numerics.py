"""What decides the low-level numerics of a run on this machine, and a fingerprint of them.

The same seed gives bit-identical runs only where the floating-point kernels agree. On x86-64 two
libraries choose kernels by CPU: MKL (torch's CPU BLAS, also behind some element-wise maths) and
torch's own vectorised kernels. ``MKL_CBWR`` and ``ATEN_CPU_CAPABILITY`` pin them, but MKL's pinned
paths are only reproducible across Intel processors: on AMD the same settings give other last bits
(docs: Reproducibility). So the vendor and the variables are not enough to tell whether two
machines compute alike; :func:`fingerprint` runs a fixed workload made of the operations training
uses (matrix products of the network shapes, tanh, exp/log, reductions, an Adam step) and hashes its
output bits. Machines with the same fingerprint computed that workload identically.

``python -m trpo_exp.numerics`` prints this machine's description as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

# The variables that change which kernels run (thread counts change the order of reductions).
NUMERICS_ENV = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# Settings that pin MKL and torch to their AVX2 code paths: reproducible across Intel x86-64
# machines with AVX2 (MKL's conditional numerical reproducibility), not across vendors.
PINNED_AVX2_ENV = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _cpuinfo_field(name: str) -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ... (the CPUID vendor string), or the machine type
    (``aarch64``, ...) where /proc/cpuinfo names none."""
    import platform

    return _cpuinfo_field("vendor_id") or platform.machine() or "unknown"


def simd_flags() -> list[str]:
    flags = _cpuinfo_field("flags") or ""
    return sorted(f for f in flags.split() if f.startswith(("avx", "amx", "fma")))


def _workload_outputs() -> list[Any]:
    """A few steps of the arithmetic of an update, on fixed inputs. It draws from its own generator
    only: the global RNGs a run has seeded are left as they were."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(12345)

    def param(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).requires_grad_()

    outputs = []
    for batch, obs_dim, hidden in ((2048, 4, 64), (1024, 11, 64), (64, 17, 256)):
        x = torch.randn(batch, obs_dim, generator=gen)
        sizes = ((hidden, obs_dim), (hidden, hidden), (3, hidden))
        weights = [(param(o, i, scale=0.3), param(o, scale=0.1)) for o, i in sizes]
        params = [t for pair in weights for t in pair]
        optimizer = torch.optim.Adam(params, lr=1e-3)
        for _ in range(3):
            h = torch.tanh(F.linear(torch.tanh(F.linear(x, *weights[0])), *weights[1]))
            out = F.linear(h, *weights[2])
            log_probs = torch.log_softmax(out, dim=-1)
            loss = (out.pow(2).mean() + (-log_probs[:, 0]).exp().mean() + torch.log1p(out.abs()).sum() / batch
                    + torch.sqrt(h.pow(2).sum(dim=1) + 1.0).mean())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            outputs += [loss.detach(), out.detach()]
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        outputs += [flat, flat @ flat, torch.dot(flat, flat.flip(0))]
    return outputs


def fingerprint() -> str:
    """Hex digest (16 characters) of the bits the fixed workload computes on this machine, with the
    current environment's kernel settings and thread count."""
    digest = hashlib.sha256()
    for tensor in _workload_outputs():
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def describe(with_fingerprint: bool = False) -> dict[str, Any]:
    """What decides the low-level numerics here (recorded in run.json as provenance.numerics)."""
    import torch

    found: dict[str, Any] = {"cpu_vendor": cpu_vendor(), "torch": torch.__version__,
                             "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                             "cpu_flags": simd_flags(), **{k: os.environ.get(k) for k in NUMERICS_ENV}}
    if with_fingerprint:
        found["fingerprint"] = fingerprint()
    return found


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    print(json.dumps(describe(with_fingerprint=True)))
