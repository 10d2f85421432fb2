"""The statistics of ``losskit compare``: confidence intervals over resampled folds, the
Nadeau–Bengio corrected resampled t-test, and Holm's step-down adjustment.

The test folds of (repeated) k-fold cross-validation share training rows, so fold scores are
correlated and the plain paired t-test is far too confident. Nadeau & Bengio (2003) inflate the
variance of the mean over the ``J`` folds from ``s²/J`` to ``(1/J + n_test/n_train) s²``; this is
the test scikit-learn's "Statistical comparison of models using grid search" example uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Comparison", "corrected_t_test", "mean_ci", "holm"]

#: two-sided confidence of the intervals
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    """The mean paired difference ``a - b`` over folds, its interval and p-value."""

    difference: float
    ci: tuple[float, float]
    t: float
    p_value: float


def _corrected_se(values: Sequence[float], test_train_ratio: float) -> float:
    j = len(values)
    mean = sum(values) / j
    var = sum((v - mean) ** 2 for v in values) / (j - 1)
    return math.sqrt((1.0 / j + test_train_ratio) * var)


def mean_ci(values: Sequence[float], test_train_ratio: float) -> tuple[float, float]:
    """The 95 % interval of the mean of ``values`` (one per test fold), with the Nadeau–Bengio
    corrected variance and a t distribution with ``J - 1`` degrees of freedom."""
    from scipy import stats

    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return (math.nan, math.nan)
    mean = sum(finite) / len(finite)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(finite) - 1)) * _corrected_se(finite, test_train_ratio)
    return (mean - half, mean + half)


def corrected_t_test(a: Sequence[float], b: Sequence[float], test_train_ratio: float) -> Comparison:
    """Nadeau–Bengio corrected resampled t-test of the paired fold scores ``a`` and ``b``.

    ``t = mean(d) / sqrt((1/J + n_test/n_train) * var(d))`` with ``d = a - b`` over the ``J``
    test folds (``var`` with ``J - 1`` in the denominator), two-sided p-value from Student's t
    with ``J - 1`` degrees of freedom. Identical scores give ``t = 0`` and ``p = 1``.
    """
    from scipy import stats

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"corrected_t_test: needs two paired sequences of >= 2 folds, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    if not all(math.isfinite(v) for v in d):
        return Comparison(math.nan, (math.nan, math.nan), math.nan, math.nan)
    mean = sum(d) / len(d)
    se = _corrected_se(d, test_train_ratio)
    df = len(d) - 1
    if se == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0.0 else 0.0
        return Comparison(mean, (mean, mean), t, p)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return Comparison(mean, (mean - half, mean + half), t, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN).

    Sorted ascending, the i-th (0-based) of ``m`` p-values becomes ``min(1, (m - i) p)``, made
    non-decreasing along the sorted order.
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
