"""The checkpoint: everything that determines the future of a run, in one file.

- Written atomically (temporary file in the same directory, fsync, rename, fsync of the directory):
  a kill at any moment leaves the previous good checkpoint or the new one, never a torn file.
- Loaded with ``torch.load(weights_only=True)``: the file holds only tensors, numbers, strings and
  containers. The simulator states of the envs (MuJoCo ``MjData`` copies, classic-control state,
  RNGs, time-limit counters; see trpo_exp/envs/snapshot.py) are stored as pickled bytes in a uint8
  tensor and unpickled with an allow-list of classes (``_SAFE_GLOBALS``), so loading a checkpoint
  never runs code named by the file.
- The RNG states of python, numpy and torch (CPU, and CUDA when used) are saved and restored.
"""

from __future__ import annotations

import io
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_exp.util import first_line

FORMAT = 2
"""Bumped whenever the content changes incompatibly; a checkpoint of another format is refused."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; ``str(err)`` is one line."""


def save(path: Path, state: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Serialised in memory first: a write error on the file is then the OS's own (e.g. "No space
    # left on device"), not torch's "enforce fail at inline_container.cc".
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        kept = "the previous checkpoint is kept" if path.exists() else "no checkpoint was written before"
        raise CheckpointError(f"checkpoint {path} could not be written: {err.strerror or err} ({kept})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash of the machine
    finally:
        os.close(dir_fd)


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as err:  # a damaged file: pickle, zip and torch errors alike
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__}: {first_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r}, this version reads format {FORMAT}")
    return state


# --------------------------------------------------------------------------- env states as bytes

def _safe_globals() -> set[tuple[str, str]]:
    allowed = {("trpo_exp.envs.snapshot", "EnvSnapshot"), ("builtins", "slice")}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed |= {(module, "_reconstruct"), (module, "scalar")}
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed.add((module, "_frombuffer"))
    allowed |= {("numpy", "ndarray"), ("numpy", "dtype")}
    try:
        import mujoco

        allowed.add((type(mujoco.MjData).__module__, "MjData"))
        allowed.add((mujoco.MjData.__module__, "MjData"))
    except ImportError:
        pass
    return allowed


_SAFE_GLOBALS = _safe_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint's env states")


def pack(obj: Any) -> torch.Tensor:
    """Env snapshots (or lists of them) -> a uint8 tensor that weights_only loading accepts."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def unpack(tensor: torch.Tensor) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(tensor.numpy().tobytes())).load()
    except Exception as err:
        raise CheckpointError(f"the checkpoint's env states are unreadable ({first_line(err)})") from None


# --------------------------------------------------------------------------- RNG states

def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.array(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants the tuples it gave (a checkpoint round trip may hand back lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
