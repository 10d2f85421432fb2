"""The verdict of ``losskit compare``: each candidate against the plain loss on the primary
metric (corrected resampled t-test, Holm-adjusted over the candidates), and the sentence that
says which loss to use, how sure, and by how much.

Rule: a candidate is recommended only when it is *significantly better* than the plain loss
(Holm-adjusted p < :data:`ALPHA`, difference in the metric's good direction); of several, the one
with the largest improvement. Otherwise the plain loss is recommended with "no significant
difference", so the same data gives the same answer across seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from losskit.app.compare.metrics import higher_is_better
from losskit.app.compare.stats import corrected_t_test, holm

__all__ = ["ALPHA", "Test", "paired_tests", "decide"]

#: significance level of the verdict (after Holm's adjustment)
ALPHA = 0.05


@dataclass(frozen=True)
class Test:
    """One candidate against the plain loss on one metric (difference = candidate - plain)."""

    loss: str
    versus: str
    metric: str
    difference: float
    ci: tuple[float, float]
    p_value: float  # unadjusted
    p_holm: float
    significant: bool  # better than the plain loss at ALPHA after Holm
    improvement: float  # the difference signed so that > 0 is better


def paired_tests(
    folds: dict[str, list[dict[str, float]]], plain: str, metric: str, test_train_ratio: float
) -> list[Test]:
    """Every candidate in ``folds`` (but ``plain``) against ``plain`` on ``metric``."""
    others = [n for n in folds if n != plain]
    base = [f[metric] for f in folds[plain]]
    raw = [corrected_t_test([f[metric] for f in folds[n]], base, test_train_ratio) for n in others]
    adjusted = holm([c.p_value for c in raw])
    sign = 1.0 if higher_is_better(metric) else -1.0
    out = []
    for name, c, p in zip(others, raw, adjusted):
        improvement = sign * c.difference
        significant = not math.isnan(p) and p < ALPHA and improvement > 0
        out.append(Test(name, plain, metric, c.difference, c.ci, c.p_value, p, significant, improvement))
    return out


def _num(v: float) -> str:
    return f"{v:.4g}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def decide(tests: list[Test], plain: str, metric: str, means: dict[str, float], n_folds: str) -> dict[str, Any]:
    """The recommendation object of ``metrics.json``: ``loss``, ``metric``, ``significant``,
    ``p_value`` (Holm-adjusted), ``versus``, ``difference``, ``ci`` and the ``text``."""
    arrow = "higher" if higher_is_better(metric) else "lower"
    winners = sorted((t for t in tests if t.significant), key=lambda t: (-t.improvement, t.loss))
    if winners:
        w = winners[0]
        text = (
            f"Use {w.loss}: its {metric} is {_num(abs(w.difference))} {arrow} than {plain}'s "
            f"({_num(means[w.loss])} vs {_num(means[plain])}; difference {_num(w.difference)}, 95% CI "
            f"{_num(w.ci[0])} to {_num(w.ci[1])}; {_p(w.p_holm)}, corrected resampled t-test over {n_folds} "
            f"test folds, Holm-adjusted over {len(tests)} comparison{'s' if len(tests) != 1 else ''})."
        )
        return {
            "loss": w.loss,
            "metric": metric,
            "significant": True,
            "p_value": w.p_holm,
            "versus": plain,
            "difference": w.difference,
            "ci": list(w.ci),
            "text": text,
        }
    finite = [t for t in tests if not math.isnan(t.p_holm)]
    if not finite:
        text = f"Use {plain}: there is no other candidate to compare it with on {metric}."
        return {
            "loss": plain,
            "metric": metric,
            "significant": False,
            "p_value": None,
            "versus": plain,
            "difference": None,
            "ci": None,
            "text": text,
        }
    closest = min(finite, key=lambda t: (t.p_holm, -t.improvement, t.loss))
    text = (
        f"Use {plain}: no significant difference on {metric} between {plain} ({_num(means[plain])}) and any "
        f"other candidate over {n_folds} test folds (closest: {closest.loss}, {_num(means[closest.loss])}, "
        f"difference {_num(closest.difference)}, 95% CI {_num(closest.ci[0])} to {_num(closest.ci[1])}, "
        f"{_p(closest.p_holm)} Holm-adjusted)."
    )
    return {
        "loss": plain,
        "metric": metric,
        "significant": False,
        "p_value": closest.p_holm,
        "versus": plain,
        "difference": None,
        "ci": None,
        "text": text,
    }
