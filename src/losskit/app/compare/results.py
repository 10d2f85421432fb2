"""What a comparison's fold scores become in metrics.json: means and intervals per metric, mean
learning curves, the record of each paired test, the baselines' rows (each against the
recommended loss), the versions that produced them."""

from __future__ import annotations

import math
import platform
from typing import Any

import torch

from losskit.app.compare import baselines as base
from losskit.app.compare.data import Encoded
from losskit.app.compare.stats import mean_ci
from losskit.app.compare.train import PATIENCE, TrainResult
from losskit.app.compare.verdict import Test

__all__ = ["baseline_rows", "clean", "mean_curve", "still_improving", "summarize", "test_record", "versions"]


def versions() -> dict[str, str]:
    import sklearn

    import losskit

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "losskit": losskit.__version__,
        "scikit-learn": sklearn.__version__,
    }


def clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


#: the range of each bounded metric: an interval is clipped to it (R² and unbounded errors are not)
_RANGE = {
    **dict.fromkeys(
        ("roc_auc", "average_precision", "f1", "brier", "ece", "macro_f1", "micro_f1", "macro_roc_auc"), (0.0, 1.0)
    ),
    **dict.fromkeys(("balanced_accuracy", "accuracy"), (0.0, 1.0)),
    **dict.fromkeys(("mean_iou", "mean_dice", "pixel_accuracy", "iou"), (0.0, 1.0)),
    **dict.fromkeys(("log_loss", "mae", "rmse"), (0.0, math.inf)),
}


def summarize(
    folds: list[dict[str, float]], ratio: float
) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    keys = list(folds[0]) if folds else []
    means, cis = {}, {}
    for k in keys:
        values = [f[k] for f in folds if math.isfinite(f[k])]
        means[k] = clean(sum(values) / len(values)) if values else None
        lo, hi = mean_ci([f[k] for f in folds], ratio)
        low_bound, high_bound = _RANGE.get(k.split("[")[0], (-math.inf, math.inf))
        cis[k] = [clean(max(lo, low_bound)), clean(min(hi, high_bound))]
    return means, cis


def mean_curve(curves: list[list[float]]) -> list[float | None]:
    longest = max((len(c) for c in curves), default=0)
    out = []
    for e in range(longest):
        values = [c[e] for c in curves if e < len(c) and math.isfinite(c[e])]
        out.append(clean(sum(values) / len(values)) if values else None)
    return out


def still_improving(run: TrainResult) -> bool:
    """Training ran all its epochs while the validation loss was still falling: over its last
    ``PATIENCE`` epochs (all but the first, for shorter runs) the best validation loss improved
    by more than 0.1 % an epoch. A loss that only inched down is not worth more epochs."""
    if not run.hit_max_epochs:
        return False
    finite = [v for v in run.val_loss if math.isfinite(v)]
    if len(finite) < 2:
        return len(finite) == 1
    window = min(PATIENCE, len(finite) - 1)
    before, after = min(finite[:-window]), min(finite)
    return after < before - 0.001 * window * abs(before)


def test_record(t: Test, short: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metric": t.metric,
        "difference": clean(t.difference),
        "ci": [clean(t.ci[0]), clean(t.ci[1])],
        "level": t.level,
        "decision": t.decision,
        "margin": t.margin,
    }
    if short:
        return out
    return {
        **out,
        "p_value": clean(t.p_value),
        "p_holm": clean(t.p_holm),
        "significant": t.significant,
        "p_better": clean(t.p_better),
        "p_equivalent": clean(t.p_equivalent),
        "p_worse": clean(t.p_worse),
        "more_repeats": t.more_repeats,
    }


def baseline_rows(
    baseline_names: list[str],
    data: Encoded,
    fold_scores: dict[str, list[dict[str, float]]],
    chosen: str,
    primary: str,
    ratio: float,
    margin: float,
    constant: dict[str, int],
    warnings: list[str],
    notes: list[str],
    means: dict[str, float],
) -> list[dict[str, Any]]:
    """The baselines' rows, each against the recommended loss on the folds both ran (Holm over
    the baselines): a warning when a baseline is decided better than the network, a note when
    the network is decided better than every baseline, and a degenerate baseline (the same
    prediction for every row of every test fold) flagged and left out."""
    from losskit.app.compare.verdict import paired_tests as decide_pairs

    rows: list[dict[str, Any]] = []
    if not baseline_names:
        return rows
    count = len(fold_scores[baseline_names[0]])
    degenerate = [b for b in baseline_names if constant[b] == count]
    live = [b for b in baseline_names if b not in degenerate]
    network = fold_scores[chosen][:count]
    # each baseline's "difference" is baseline - network; a baseline "better" beats the network
    tests = {
        t.loss: t
        for t in decide_pairs({chosen: network, **{b: fold_scores[b] for b in live}}, chosen, primary, ratio, margin)
    }
    beaten = []
    for b in baseline_names:
        label = base.label(b, data.task)
        row_means, cis = summarize(fold_scores[b], ratio)
        row: dict[str, Any] = {
            "model": b,
            "label": label,
            "metrics": row_means,
            "folds": [{k: clean(v) for k, v in f.items()} for f in fold_scores[b]],
            "ci": cis,
            "degenerate": b in degenerate,
        }
        if b in degenerate:
            warnings.append(
                f"the {label} baseline predicted the same value for every row of every test fold ({primary} "
                f"{means[b]:.4g}): it is degenerate here and left out of the comparison."
            )
            row["versus_recommended"] = {
                "difference": None,
                "ci": [None, None],
                "p_value": None,
                "decision": "degenerate",
            }
        else:
            t = tests[b]
            row["versus_recommended"] = {**test_record(t), "versus": chosen}
            if t.decision == "better":
                warnings.append(
                    f"the {label} baseline beats the network ({chosen}) on {primary}: {means[b]:.4g} vs "
                    f"{means[chosen]:.4g} (difference {t.difference:+.3g} [{t.ci[0]:+.3g}, {t.ci[1]:+.3g}]); a simpler model may do."
                )
            elif t.decision == "worse":
                beaten.append(label)
        rows.append(row)
    if live and len(beaten) == len(live):
        notes.append(
            f"the network ({chosen}) beats the {_and(beaten)} baseline{'s' if len(beaten) > 1 else ''} on {primary}."
        )
    return rows


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def loss_entries(
    names: list[str],
    aliases: dict[str, str],
    fold_scores: dict[str, list[dict[str, float]]],
    histories: dict[str, list[TrainResult]],
    ratio: float,
    tests: list[Test],
    other_tests: dict[str, list[Test]],
) -> list[dict[str, Any]]:
    """One metrics.json entry per candidate: means, intervals, fold scores, mean learning curves
    and its test against the plain loss (on the deciding metric and the other main metrics); a
    candidate that is the same model as another (``aliases``) reports that one's numbers."""
    others = list(other_tests)
    by_loss = {t.loss: t for t in tests}
    results = []
    for name in names:
        source = aliases.get(name, name)
        means, cis = summarize(fold_scores[source], ratio)
        runs = histories[source]
        entry: dict[str, Any] = {
            "loss": name,
            "metrics": means,
            "history": {
                "train_loss": mean_curve([r.train_loss for r in runs]),
                "val_loss": mean_curve([r.val_loss for r in runs]),
                "best_epoch": [r.best_epoch for r in runs],
                "hit_max_epochs": sum(r.hit_max_epochs for r in runs),
                "overfitting": [r.overfitting for r in runs],
            },
            "folds": [{k: clean(v) for k, v in f.items()} for f in fold_scores[source]],
            "ci": cis,
            "same_as": aliases.get(name),
        }
        if source in by_loss and name not in aliases:
            entry["versus_plain"] = {
                **test_record(by_loss[source]),
                "other_metrics": {
                    m: test_record(next(t for t in other_tests[m] if t.loss == source), short=True) for m in others
                },
            }
        results.append(entry)
    return results
