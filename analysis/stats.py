"""Statistics over seeds: pure functions of numpy arrays (no pandas, no I/O).

Why these and not rliable: rliable 1.2.0 does not import with current ``arch`` and pandas 3, and the
few estimators a paper table needs (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice") are a few lines over scipy.stats:

* standard error: sample std (ddof=1) / sqrt(n), what "mean +- SE" in a table means;
* 95% confidence interval: the percentile bootstrap of the mean (the estimator of
  scipy.stats.bootstrap with ``method="percentile"``, computed as a matrix product, see
  :func:`bootstrap_ci`). Percentile rather than BCa because BCa's jackknife acceleration is
  undefined for constant data and unstable at the 3-10 seeds RL papers have; a fixed ``seed`` makes
  every report reproducible. No interval below ``MIN_N_CI`` = 3 seeds: with two values every
  resampled mean lies between them, so the "95% CI" would just be their range (and is undefined for
  one); NaN there, and the report says why;
* IQM: the interquartile mean, the mean of the middle 50% (scipy.stats.trim_mean(x, 0.25)), robust
  to one diverged seed yet less noisy than the median.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0
MIN_N_CI = 3
"""Fewest seeds with a confidence interval: below it a bootstrap CI only restates the values."""
NO_CI_REASON = f"no CI below n={MIN_N_CI}: a bootstrap over 1-2 seeds only restates their range"


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
    same seed indices. Returns (low, high) of shape () or (m,); NaN when n < ``MIN_N_CI`` (see the
    module docstring).

    The estimator of ``scipy.stats.bootstrap(..., method="percentile")``: draw ``n_resamples``
    resamples of the n seeds with replacement, take each resample's mean, report the
    (1-confidence)/2 and (1+confidence)/2 percentiles (numpy's linear interpolation). Computed as one
    matrix product, resample counts (R x n) @ x (n x m) / n, instead of scipy's gather of an
    (m, R, n) array: the same numbers up to rounding for a given draw, 10x faster and without the
    gigabyte a 250-seed learning curve needed (issue 13's 10,000-run target). A fixed ``seed``
    makes every report reproducible.
    """
    x = np.asarray(x, dtype=float)
    shape = x.shape[1:]
    n = x.shape[0]
    if n < MIN_N_CI:
        nan = np.full(shape, np.nan)
        return nan, nan.copy()
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_resamples, n))
    flat = (draws + np.arange(n_resamples)[:, None] * n).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(float)
    means = counts @ x.reshape(n, -1) / n  # (R, m): each resample's mean
    alpha = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)], axis=0)
    # A constant column must give exactly its value (rounding in the product could move it by an ulp).
    const = (x.reshape(n, -1) == x.reshape(n, -1)[:1]).all(axis=0)
    low, high = np.where(const, x.reshape(n, -1)[0], low), np.where(const, x.reshape(n, -1)[0], high)
    return low.reshape(shape), high.reshape(shape)


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
