"""Statistics over seeds: pure functions of numpy arrays (no pandas, no I/O).

Why these and not rliable: rliable 1.2.0 does not import with current ``arch`` and pandas 3, and the
few estimators a paper table needs (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice") are a few lines over scipy.stats:

* standard error: sample std (ddof=1) / sqrt(n), what "mean +- SE" in a table means;
* 95% confidence interval: the percentile bootstrap of the mean (scipy.stats.bootstrap,
  ``method="percentile"``). Percentile rather than BCa because BCa's jackknife acceleration is
  undefined for constant data and unstable at the 3-10 seeds RL papers have; a fixed ``seed`` makes
  every report reproducible;
* IQM: the interquartile mean, the mean of the middle 50% (scipy.stats.trim_mean(x, 0.25)), robust
  to one diverged seed yet less noisy than the median.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Summary:
    """Statistics of one group of per-seed scores (NaN where undefined, e.g. std of one seed)."""

    n: int
    mean: float
    std: float
    se: float
    ci_low: float
    ci_high: float
    iqm: float

    def as_dict(self) -> dict:
        return asdict(self)


def standard_error(x: np.ndarray) -> float:
    """std(ddof=1) / sqrt(n); NaN for fewer than two values (one seed says nothing about spread)."""
    x = np.asarray(x, dtype=float)
    return float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size >= 2 else float("nan")


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the values (25% trimmed from each end)."""
    x = np.asarray(x, dtype=float)
    return float(sps.trim_mean(x, 0.25)) if x.size else float("nan")


def bootstrap_ci(x: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap CI of the mean over axis 0 (seeds); extra axes are independent columns.

    ``x`` has shape (n,) or (n, m): m columns (e.g. points of a learning curve) resampled with the
    same seed indices, as one vectorised scipy call. Returns (low, high) of shape () or (m,); NaN
    when n < 2, where a bootstrap has nothing to resample.
    """
    x = np.asarray(x, dtype=float)
    shape = x.shape[1:]
    if x.shape[0] < 2:
        nan = np.full(shape, np.nan)
        return nan, nan.copy()
    with warnings.catch_warnings():
        # Constant data makes scipy warn that the bootstrap distribution is degenerate; the
        # percentile interval is still right (a zero-width interval at the value).
        warnings.simplefilter("ignore")
        res = sps.bootstrap((x,), np.mean, axis=0, vectorized=True, confidence_level=confidence,
                            n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


def summarize(x: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
              seed: int = SEED) -> Summary:
    """Every statistic of the table for one group of scores (one score per seed); NaNs are dropped."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan, nan)
    low, high = bootstrap_ci(x, confidence, n_resamples, seed)
    return Summary(n=int(x.size), mean=float(np.mean(x)),
                   std=float(np.std(x, ddof=1)) if x.size >= 2 else float("nan"),
                   se=standard_error(x), ci_low=float(low), ci_high=float(high), iqm=iqm(x))
