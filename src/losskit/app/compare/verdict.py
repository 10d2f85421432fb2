"""The verdict of ``losskit compare``: each candidate against the plain loss, decided in one of
four words, and the sentence that says which loss to use and how sure that is.

Each candidate's fold differences from the plain loss give the posterior of the mean
difference (:func:`~losskit.app.compare.stats.correlated_t`, the Bayesian correlated t-test;
its interval is the Nadeau–Bengio corrected t-test's). With ``m`` candidates, Holm's step-down
procedure at ``ALPHA`` decides which differences are not zero, and each candidate's interval is
shown at the level of the Holm step that decided it (``1 - ALPHA/(m - rank)``; the candidates
after the first one not decided share the level of that step), so an interval excludes 0 exactly
when the candidate is decided better or worse. Then, with ``margin`` the region of practical
equivalence in the metric's units:

* ``better`` / ``worse`` -- the interval lies entirely on the good / bad side of 0;
* ``equivalent`` -- otherwise, when the interval lies within ``±margin``;
* ``undecided`` -- otherwise: the data cannot tell yet (with a forecast of the repeats that
  would likely decide).

A consistent gain smaller than the margin whose interval excludes 0 is ``better`` (with "smaller
than the margin" said), never ``equivalent``. With fewer than :data:`MIN_DF` degrees of freedom
(test folds - 1) nothing is decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from losskit.app.compare.metrics import higher_is_better
from losskit.app.compare.stats import Posterior, correlated_t, holm, repeats_to_decide

__all__ = ["ALPHA", "MIN_DF", "Test", "paired_tests", "decide", "versus"]

#: the family-wise error rate of the decisions "better" / "worse" over the candidates
ALPHA = 0.05
#: fewer degrees of freedom (test folds - 1) than this and no decision is made
MIN_DF = 5


@dataclass(frozen=True)
class Test:
    """One candidate against the plain loss on one metric (``difference`` = candidate - plain)."""

    loss: str
    versus: str
    metric: str
    difference: float
    ci: tuple[float, float]
    level: float  # the confidence of ``ci``: that of the Holm step that decided
    p_value: float  # the corrected t-test's two-sided p-value, unadjusted
    p_holm: float
    decision: str  # better | equivalent | worse | undecided
    margin: float
    p_better: float  # posterior P(the candidate is better), P(within ±margin), P(worse)
    p_equivalent: float
    p_worse: float
    improvement: float  # the difference signed so that > 0 is better
    folds: int
    more_repeats: int | None = None  # undecided: the extra repeats that would likely decide
    mean: float = math.nan  # the candidate's and the plain loss's means over the same (paired) folds
    plain_mean: float = math.nan

    @property
    def significant(self) -> bool:
        """Decided better (the name of earlier versions of the report)."""
        return self.decision == "better"


def versus(
    a: list[float], b: list[float], metric: str, ratio: float, margin: float, level: float = 1 - ALPHA
) -> tuple[Posterior, str, tuple[float, float]]:
    """``a`` against ``b`` (fold scores) alone: the posterior of the mean difference, the
    decision at ``level`` and its interval."""
    post = correlated_t([x - y for x, y in zip(a, b)], ratio)
    ci = post.interval(level) if post.scale > 0 else (post.mean, post.mean)
    return post, _decision(post, ci, True, metric, margin), ci


def _decision(post: Posterior, ci: tuple[float, float], rejected: bool, metric: str, margin: float) -> str:
    if not math.isfinite(post.mean) or post.df < MIN_DF:
        return "undecided"
    sign = 1.0 if higher_is_better(metric) else -1.0
    if rejected and (ci[0] > 0 or ci[1] < 0):
        return "better" if sign * post.mean > 0 else "worse"
    if -margin < ci[0] and ci[1] < margin:
        return "equivalent"
    return "undecided"


def paired_tests(
    folds: dict[str, list[dict[str, float]]],
    plain: str,
    metric: str,
    test_train_ratio: float,
    margin: float = 0.0,
    folds_per_repeat: int | None = None,
    alpha: float = ALPHA,
) -> list[Test]:
    """Every candidate in ``folds`` (but ``plain``) against ``plain`` on ``metric``, decided."""
    others = [n for n in folds if n != plain]
    base = [f[metric] for f in folds[plain]]
    # a candidate may have fewer folds than the plain loss (it left the design once decided): pair
    # it with the plain loss's first folds
    posts = [correlated_t([f[metric] - b for f, b in zip(folds[n], base)], test_train_ratio) for n in others]
    paired_means = [(_mean([f[metric] for f in folds[n]]), _mean(base[: len(folds[n])])) for n in others]
    p = [post.p_value() for post in posts]
    adjusted = holm(p)
    # Holm's steps, with the level each candidate's interval is shown at
    order = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(order)
    levels = [1 - alpha / max(m, 1)] * len(others)
    rejected = [False] * len(others)
    stopped = False
    stop_level = 1 - alpha / max(m, 1)
    for rank, (v, i) in enumerate(order):
        if not stopped and v < alpha / (m - rank):
            rejected[i] = True
            levels[i] = 1 - alpha / (m - rank)
            continue
        if not stopped:
            stopped = True
            stop_level = 1 - alpha / (m - rank)
        levels[i] = stop_level
    sign = 1.0 if higher_is_better(metric) else -1.0
    out = []
    for i, (name, post) in enumerate(zip(others, posts)):
        ci = post.interval(levels[i]) if post.scale > 0 else (post.mean, post.mean)
        decision = _decision(post, ci, rejected[i], metric, margin)
        good_side = post.above(0.0) if sign > 0 else post.cdf(0.0)
        bad_side = post.cdf(0.0) if sign > 0 else post.above(0.0)
        more = None
        if decision == "undecided" and folds_per_repeat:
            more = repeats_to_decide(post, levels[i], margin, test_train_ratio, folds_per_repeat, min_df=MIN_DF)
        # fmt: off
        out.append(Test(
            name, plain, metric, post.mean, ci, levels[i], p[i], adjusted[i], decision, margin,
            good_side, post.between(-margin, margin), bad_side, sign * post.mean, post.df + 1, more,
            *paired_means[i],
        ))
        # fmt: on
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _num(v: float) -> str:
    return f"{v:.4g}"


def _interval(t: Test) -> str:
    """``+0.013 [+0.002, +0.024]``: one decimal more than the margin has."""
    values = (t.difference, *t.ci)
    if t.margin > 0 and max(abs(v) for v in values) < 1e4 * t.margin:
        places = max(0, 1 - math.floor(math.log10(t.margin)))
        d, lo, hi = (f"{v:+.{places}f}" for v in values)
    else:
        d, lo, hi = (f"{v:+.3g}" for v in values)
    return f"{d} [{lo}, {hi}]"


def _pct(level: float) -> str:
    text = f"{100 * level:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def decide(
    tests: list[Test],
    plain: str,
    metric: str,
    means: dict[str, float],
    design: str,
    *,
    margin: float = 0.0,
    folds_per_repeat: int | None = None,
    others: dict[str, list[Test]] | None = None,
) -> dict[str, Any]:
    """The ``recommendation`` object of ``metrics.json``: ``loss``, ``metric``, ``decision``
    (better | equivalent | undecided), ``margin``, ``significant``, ``p_value`` (Holm-adjusted),
    ``versus``, ``difference``, ``ci``, ``level``, ``p_better`` and the ``text``.

    ``others`` holds the tests of the task's other main metrics, for the sentence that names a
    trade-off (better on this metric, worse on that one)."""
    base: dict[str, Any] = {
        "loss": plain,
        "metric": metric,
        "decision": "undecided",
        "margin": margin,
        "significant": False,
        "p_value": None,
        "versus": plain,
        "difference": None,
        "ci": None,
        "level": None,
        "p_better": None,
    }
    finite = [t for t in tests if not math.isnan(t.p_value)]
    if not tests or not finite:
        base["decision"] = "equivalent" if not tests else "undecided"
        base["text"] = f"Use {plain}: there is no other candidate to compare it with on {metric}."
        if tests:
            base["text"] = f"Use {plain}: no other candidate has a finite {metric} on every test fold."
        return base
    folds = finite[0].folds
    if folds - 1 < MIN_DF:
        base["text"] = (
            f"No verdict at this design: {folds} test folds ({design}) give {folds - 1} degrees of freedom, and at least "
            f"{MIN_DF} are needed to decide anything on {metric}; keep {plain}, and use more folds (e.g. --folds 5 "
            "--repeats 2)."
        )
        return base
    worse = [t for t in tests if t.decision == "worse"]
    worse_text = "".join(f" {t.loss} is worse ({_interval(t)}, {_pct(t.level)} interval)." for t in worse)
    winners = sorted((t for t in tests if t.decision == "better"), key=lambda t: (-t.improvement, t.loss))
    if winners:
        w = winners[0]
        small = (
            f"; smaller than the ±{_num(margin)} margin of practical equivalence" if abs(w.difference) < margin else ""
        )
        mine, theirs = (w.mean, w.plain_mean) if math.isfinite(w.mean) else (means[w.loss], means[plain])
        text = (
            f"Use {w.loss}: better than {plain} on {metric} by {_num(abs(w.difference))} ({_num(mine)} vs "
            f"{_num(theirs)}; difference {_interval(w)}, {_pct(w.level)} interval, P(better) = "
            f"{w.p_better:.3f}; {w.folds} test folds, {_design(w, design, folds_per_repeat)}{small})."
        )
        text += _tradeoffs(w, others, recommended=True) + worse_text
        base.update(
            loss=w.loss,
            decision="better",
            significant=True,
            p_value=w.p_holm,
            difference=w.difference,
            ci=list(w.ci),
            level=w.level,
            p_better=w.p_better,
            text=text,
        )
        return base
    undecided = [t for t in tests if t.decision == "undecided"]
    equivalent = [t for t in tests if t.decision == "equivalent"]
    closest = min(finite, key=lambda t: (t.p_holm, -t.improvement, t.loss))
    base.update(p_value=closest.p_holm, p_better=closest.p_better)
    if undecided:
        parts = [f"{t.loss} ({_interval(t)}, {_pct(t.level)} interval)" for t in undecided]
        wanted = [t.more_repeats for t in undecided if t.more_repeats is not None]
        if wanted:
            k = min(wanted)
            more = (
                f"about {k} more repeat{'s' if k != 1 else ''} of the {folds_per_repeat}-fold cross-validation would "
                f"likely decide (--repeats/--max-repeats)"
                if folds_per_repeat
                else "more folds would likely decide"
            )
        else:
            more = (
                "even 20 more repeats would likely not decide: the difference is too close to 0 or to the margin "
                "for the fold-to-fold noise"
            )
        text = (
            f"Undecided: the data cannot tell {_names(parts)} from {plain} yet on {metric} ({folds} test folds, "
            f"{design}); {more}. Keep {plain} until then."
        )
        if equivalent:
            text += f" {_names([t.loss for t in equivalent])} {'is' if len(equivalent) == 1 else 'are'} equivalent to {plain} within ±{_num(margin)}."
        base["text"] = text + worse_text + "".join(_tradeoffs(t, others) for t in tests)
        return base
    if equivalent:
        base["decision"] = "equivalent"
        base["text"] = (
            f"{plain} and {_names([t.loss for t in equivalent])} are equivalent on {metric} within ±{_num(margin)} "
            f"({folds} test folds, {design}): use the plain loss, {plain}."
            + worse_text
            + "".join(_tradeoffs(t, others) for t in tests)
        )
        return base
    base["decision"] = "better"
    base["significant"] = False
    base["text"] = f"Use {plain}: every other candidate is worse on {metric}." + worse_text
    return base


def _design(t: Test, design: str, folds_per_repeat: int | None) -> str:
    """``"2x5"``: the repeats x folds behind ``t`` (a candidate may have left the design early)."""
    if folds_per_repeat and t.folds % folds_per_repeat == 0:
        return f"{t.folds // folds_per_repeat}x{folds_per_repeat}"
    return design


def _tradeoffs(main: Test, others: dict[str, list[Test]] | None, recommended: bool = False) -> str:
    """The sentences naming what the task's other main metrics decided for ``main.loss`` when it
    differs from the deciding metric's word: " But on macro_f1 it is worse (...)" for a
    recommended loss; for a candidate not decided on the deciding metric, what the other metric
    did decide, and whether that looks like a trade-off."""
    if not others:
        return ""
    out = ""
    for metric, tests in others.items():
        t = next((t for t in tests if t.loss == main.loss), None)
        if t is None or t.decision not in ("better", "worse") or t.decision == main.decision:
            continue
        where = f"({_interval(t)}, {_pct(t.level)} interval)"
        if main.decision in ("better", "worse"):
            subject = "it" if recommended else main.loss
            out += (
                f" But on {metric} {subject} is {t.decision} {where}: the two metrics disagree, so choose by the one "
                "that matters for your use."
            )
            continue
        leaning = "better" if main.improvement > 0 else "worse"
        trade = (
            f": a likely trade-off ({leaning} on {main.metric}, not decided yet, {t.decision} on {metric})"
            if leaning != t.decision
            else ""
        )
        out += f" On {metric}, {main.loss} is decided {t.decision} {where}{trade}."
    return out
