"""Published reference figures (``--reference``): a shipped CSV with its sources, matched to runs by env.

Why a data file and not constants: the numbers need their provenance (source, env version, budget,
what was measured) next to them, and a user can pass their own file of the same columns. See
analysis/data/README.md for the columns and the sources.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError

DEFAULT = Path(__file__).resolve().parent / "data" / "reference.csv"
COLUMNS = ("env", "env_id", "algo", "source", "steps", "mean", "std", "n", "metric", "url")


def load(path: str | Path = DEFAULT) -> pd.DataFrame:
    """The reference table; a missing, unreadable or incomplete file is a one-line error."""
    try:
        frame = pd.read_csv(path, dtype={"env": str, "env_id": str, "algo": str, "source": str, "metric": str,
                                         "url": str})
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise AnalysisError(f"--reference {path}: cannot read it ({type(err).__name__})") from None
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise AnalysisError(f"--reference {path}: missing column(s) {', '.join(missing)} "
                            f"(needs {', '.join(COLUMNS)})")
    for column in ("steps", "mean", "std", "n"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame[frame["mean"].notna() & frame["env"].notna()]
    return frame.reset_index(drop=True)


def env_key(env_id: str) -> str:
    """'Hopper-v5' -> 'hopper': references match across env versions (the label names the version)."""
    return re.sub(r"-v\d+$", "", str(env_id)).lower()


def for_env(reference: pd.DataFrame, env_id: str) -> pd.DataFrame:
    """The reference rows for one run env id."""
    return reference[reference["env"].map(env_key) == env_key(env_id)]


def label(row: pd.Series, env_id: str | None = None) -> str:
    """'sb3-contrib trpo, 1M steps: 3372 ± 215 (n=3, final deterministic eval, Hopper-v3)'."""
    budget = f", {_steps(row['steps'])} steps" if pd.notna(row["steps"]) else ""
    spread = f" ± {row['std']:g}" if pd.notna(row["std"]) else ""
    seeds = f"n={int(row['n'])}, " if pd.notna(row["n"]) else ""
    version = f", {row['env_id']}" if pd.notna(row["env_id"]) and row["env_id"] != env_id else ""
    return f"{row['source']} {row['algo']}{budget}: {row['mean']:g}{spread} ({seeds}{row['metric']}{version})"


def short_label(row: pd.Series) -> str:
    """For a figure legend: 'sb3-contrib trpo @1M (final deterministic eval)'."""
    at = f" @{_steps(row['steps'])}" if pd.notna(row["steps"]) else ""
    return f"{row['source']} {row['algo']}{at} ({row['metric']})"


def _steps(value: float) -> str:
    value = float(value)
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"
