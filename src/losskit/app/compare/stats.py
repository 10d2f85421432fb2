"""The statistics of ``losskit compare``: the Bayesian correlated t-test over resampled folds,
its frequentist twin (the Nadeau–Bengio corrected resampled t-test), intervals and Holm's
step-down adjustment.

The test folds of (repeated) k-fold cross-validation share training rows, so fold scores are
correlated and the plain paired t-test is far too confident. Nadeau & Bengio (2003) inflate the
variance of the mean over the ``J`` folds from ``s²/J`` to ``(1/J + n_test/n_train) s²``.
Benavoli et al. (2017, "Time for a change", JMLR 18) show that with a flat prior the posterior of
the mean difference is then Student's t with ``J - 1`` degrees of freedom, centred on the mean
fold difference with that scale: the credible interval is the corrected test's confidence
interval, and ``P(mean difference > 0)`` is one minus its one-sided p-value. This module gives
both views of the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Comparison", "Posterior", "correlated_t", "corrected_t_test", "mean_ci", "holm", "repeats_to_decide"]

#: two-sided confidence of the intervals of single means (the table's [95% CI])
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    """The mean paired difference ``a - b`` over folds, its 95 % interval and p-value."""

    difference: float
    ci: tuple[float, float]
    t: float
    p_value: float


@dataclass(frozen=True)
class Posterior:
    """The posterior of the mean fold difference: Student's t with ``df`` degrees of freedom,
    location ``mean`` and scale ``scale`` (the corrected standard error)."""

    mean: float
    scale: float
    df: int
    #: the sample standard deviation of the fold differences
    sd: float

    def cdf(self, x: float) -> float:
        """``P(mean difference <= x)``."""
        from scipy import stats

        if not math.isfinite(self.mean):
            return math.nan
        if self.scale == 0.0:
            return 1.0 if self.mean <= x else 0.0
        return float(stats.t.cdf((x - self.mean) / self.scale, self.df))

    def above(self, x: float) -> float:
        """``P(mean difference > x)``."""
        return 1.0 - self.cdf(x)

    def between(self, low: float, high: float) -> float:
        """``P(low < mean difference < high)``."""
        return self.cdf(high) - self.cdf(low)

    def interval(self, level: float) -> tuple[float, float]:
        """The central interval holding ``level`` of the posterior (= the corrected test's
        confidence interval at that level)."""
        from scipy import stats

        if not math.isfinite(self.mean) or self.df < 1:
            return (math.nan, math.nan)
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.scale
        return (self.mean - half, self.mean + half)

    def p_value(self) -> float:
        """The two-sided p-value of "the mean difference is 0" (the corrected resampled t-test)."""
        if not math.isfinite(self.mean):
            return math.nan
        if self.scale == 0.0:
            return 1.0 if self.mean == 0.0 else 0.0
        return 2.0 * min(self.cdf(0.0), self.above(0.0))


def _corrected_se(values: Sequence[float], test_train_ratio: float) -> float:
    j = len(values)
    mean = sum(values) / j
    var = sum((v - mean) ** 2 for v in values) / (j - 1)
    return math.sqrt((1.0 / j + test_train_ratio) * var)


def correlated_t(differences: Sequence[float], test_train_ratio: float) -> Posterior:
    """The Bayesian correlated t-test (Benavoli et al. 2017) of per-fold ``differences``.

    ``J`` folds, mean ``d``, sample variance ``s²`` (``J - 1`` in the denominator),
    ``rho = n_test / n_total`` so that ``rho / (1 - rho) = n_test / n_train`` (``test_train_ratio``):
    the posterior of the mean difference is ``t_{J-1}(d, sqrt((1/J + rho/(1-rho)) s²))``.
    Non-finite differences give a posterior of NaNs.
    """
    j = len(differences)
    if j < 2 or not all(math.isfinite(v) for v in differences):
        return Posterior(math.nan, math.nan, max(j - 1, 0), math.nan)
    mean = sum(differences) / j
    sd = math.sqrt(sum((v - mean) ** 2 for v in differences) / (j - 1))
    return Posterior(mean, _corrected_se(differences, test_train_ratio), j - 1, sd)


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
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"corrected_t_test: needs two paired sequences of >= 2 folds, got {len(a)} and {len(b)}")
    post = correlated_t([x - y for x, y in zip(a, b)], test_train_ratio)
    if not math.isfinite(post.mean):
        return Comparison(math.nan, (math.nan, math.nan), math.nan, math.nan)
    if post.scale == 0.0:
        t = 0.0 if post.mean == 0.0 else math.copysign(math.inf, post.mean)
        return Comparison(post.mean, (post.mean, post.mean), t, post.p_value())
    return Comparison(post.mean, post.interval(CONFIDENCE), post.mean / post.scale, post.p_value())


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


def repeats_to_decide(
    post: Posterior,
    level: float,
    margin: float,
    test_train_ratio: float,
    folds_per_repeat: int,
    most: int = 20,
    min_df: int = 1,
) -> int | None:
    """How many more repeats of k-fold would likely decide, if the mean difference and the
    spread of the fold differences stay as they are: the fewest extra repeats (at most ``most``)
    after which the interval at ``level`` would exclude 0 or lie within ``±margin``. ``None``
    when even ``most`` would not (the difference is too close to 0 or to the margin for the
    fold-to-fold noise: with the correction, more repeats cannot shrink the interval below
    ``t * sqrt(n_test/n_train) * sd``)."""
    from scipy import stats

    if not (math.isfinite(post.mean) and math.isfinite(post.sd)):
        return None
    j = post.df + 1
    for extra in range(1, most + 1):
        jj = j + extra * folds_per_repeat
        if jj - 1 < min_df:
            continue
        half = float(stats.t.ppf(0.5 + level / 2, jj - 1)) * math.sqrt(1.0 / jj + test_train_ratio) * post.sd
        if half < abs(post.mean) or abs(post.mean) + half < margin:
            return extra
    return None
