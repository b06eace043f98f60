"""`compare`: how far apart two image sets are, and how far apart two halves of one set already are.

For every per-image statistic (`analysis.STATISTICS`): each set's spread (`analysis.spread`), the difference of
the means, and the two-sample Kolmogorov-Smirnov test (statistic D and p-value: a small p-value says the two
sets' distributions of that statistic differ). For the set-level colour distances (the symmetric KL divergence
of the L*a*b* Gaussians, the L1 distance of the RGB histograms) and for every KS statistic, the split-half
baseline: the same distance between two random halves of A, of B, and between a half of A and a half of B (the
same sample size, so the three read side by side), averaged over `SPLITS` random splits. A distance between the
sets well above both sets' split-half distances is a real difference, not sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pixforge.spectra.analysis import STATISTICS, Measured, _r, fit_slope, gaussian_symmetric_kl, spread

SPLITS = 20


def lab_kl(a: Measured, b: Measured) -> float:
    return gaussian_symmetric_kl(*a.lab_gaussian(), *b.lab_gaussian())


def histogram_l1(a: Measured, b: Measured) -> float:
    """L1 distance of the RGB histograms (shares), averaged over the channels: 0 .. 2."""
    return float(np.abs(a.histogram() - b.histogram()).sum(axis=1).mean())


def ks(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and p-value (scipy's `ks_2samp`, exact for small samples) of two
    samples of one statistic (NaN left out)."""
    from scipy.stats import ks_2samp

    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not x.size or not y.size:
        return float("nan"), float("nan")
    result = ks_2samp(x, y)
    return float(result.statistic), float(result.pvalue)


def ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """D alone: the largest distance between the two empirical CDFs (NaN left out)."""
    x, y = np.sort(x[np.isfinite(x)]), np.sort(y[np.isfinite(y)])
    if not x.size or not y.size:
        return float("nan")
    at = np.concatenate([x, y])
    return float(np.abs(np.searchsorted(x, at, "right") / x.size - np.searchsorted(y, at, "right") / y.size).max())


def _halves(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    half = n // 2
    return [(p[:half], p[half:2 * half]) for p in (rng.permutation(n) for _ in range(SPLITS))]


def split_half(a: Measured, b: Measured, distance: Callable[[Measured, Measured], float],
               rng: np.random.Generator) -> dict | None:
    """`distance` between two random halves of A, of B, and between a half of each, averaged over SPLITS splits;
    None when a set has fewer than two images."""
    if min(len(a), len(b)) < 2:
        return None
    halves_a, halves_b = _halves(len(a), rng), _halves(len(b), rng)
    return {
        "a": _r(np.mean([distance(a.subset(i), a.subset(j)) for i, j in halves_a])),
        "b": _r(np.mean([distance(b.subset(i), b.subset(j)) for i, j in halves_b])),
        "between": _r(np.mean([distance(a.subset(i), b.subset(k)) for (i, _), (k, _) in
                               zip(halves_a, halves_b, strict=True)])),
    }


def compare(a: Measured, b: Measured, seed: int = 0) -> dict:
    """The comparison of two measured sets (see the module docstring); `seed` draws the bootstrap and the splits."""
    rng = np.random.default_rng(seed)
    statistics = {}
    for name in STATISTICS:
        x, y = a.values[name], b.values[name]
        d, p = ks(x, y)

        def ks_distance(u: Measured, v: Measured, name=name) -> float:
            return ks_statistic(u.values[name], v.values[name])

        statistics[name] = {"a": spread(x, rng), "b": spread(y, rng),
                            "difference_of_means": _r(np.nanmean(y) - np.nanmean(x)),
                            "ks_statistic": _r(d), "ks_p_value": float(f"{p:.4g}"),
                            "ks_split_half": split_half(a, b, ks_distance, rng)}
    return {
        "images": [len(a), len(b)],
        "statistics": statistics,
        "slope_of_mean_spectrum": {"a": _r(fit_slope(a.spectra.mean(axis=0))),
                                   "b": _r(fit_slope(b.spectra.mean(axis=0)))},
        "lab_symmetric_kl": {"between": _r(lab_kl(a, b)), "split_half": split_half(a, b, lab_kl, rng)},
        "histogram_l1": {"between": _r(histogram_l1(a, b)), "split_half": split_half(a, b, histogram_l1, rng)},
    }
