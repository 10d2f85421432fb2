"""Test-fold metrics that fit the task (scikit-learn, and the expected calibration error in a few
lines of torch: torchmetrics' binning, without its import, which pulls in the text metrics and
transformers and costs seconds), under fixed keys.

binary: ``roc_auc``, ``average_precision``, ``f1`` (at the threshold that maximizes F1 on the
validation split), ``brier``, ``ece``, ``log_loss``; multiclass: ``macro_f1``,
``balanced_accuracy``, ``accuracy``, ``log_loss``, ``ece``; multilabel: ``micro_f1``,
``macro_f1``, ``macro_roc_auc``, ``ece`` and ``f1[<label>]`` per label; regression: ``mae``,
``rmse``, ``r2`` (in the target's original units; averaged over outputs); segmentation:
``mean_iou``, ``mean_dice``, ``pixel_accuracy`` and ``iou[<class>]`` per class (see
:func:`losskit.app.compare.segmentation.segmentation_metrics`). ECE is the expected
calibration error, 15 equal-width bins, L1 (multilabel: every (row, label) probability).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from losskit.tasks import Task

__all__ = [
    "METRICS",
    "PRIMARY",
    "MAIN",
    "HIGHER_IS_BETTER",
    "IMBALANCED",
    "Evaluation",
    "evaluate",
    "calibration_error",
    "tune_threshold",
    "higher_is_better",
    "deciding_metric",
    "default_margin",
]

METRICS: dict[Task, tuple[str, ...]] = {
    Task.binary: ("roc_auc", "average_precision", "f1", "brier", "ece", "log_loss"),
    Task.multiclass: ("macro_f1", "balanced_accuracy", "accuracy", "log_loss", "ece"),
    Task.multilabel: ("micro_f1", "macro_f1", "macro_roc_auc", "ece"),
    Task.regression: ("mae", "rmse", "r2"),
    Task.segmentation: ("mean_iou", "mean_dice", "pixel_accuracy"),
}
#: the metric the verdict is decided on
PRIMARY: dict[Task, str] = {
    Task.binary: "roc_auc",
    Task.multiclass: "macro_f1",
    Task.multilabel: "macro_f1",
    Task.regression: "mae",
    Task.segmentation: "mean_iou",
}
#: the metrics that speak for a task: a decision on one of them is checked against the others, and
#: the verdict names a trade-off (better on one, worse on another)
MAIN: dict[Task, tuple[str, ...]] = {
    Task.binary: ("roc_auc", "average_precision"),
    Task.multiclass: ("macro_f1", "balanced_accuracy"),
    Task.multilabel: ("macro_f1", "micro_f1"),
    Task.regression: ("mae", "rmse"),
    # Dice weighs a class's overlap differently from IoU (2x / (1 + x) of it): a loss can win on
    # one and not the other when it trades small classes against large ones
    Task.segmentation: ("mean_iou", "mean_dice"),
}
#: a multiclass target whose smallest class has a smaller share of the rows (and less than half
#: its share if the classes were balanced, so ten balanced classes are not "imbalanced") is
#: imbalanced: the verdict decides on balanced accuracy (every class counts the same)
IMBALANCED = 0.10
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "average_precision": True,
    "f1": True,
    "brier": False,
    "ece": False,
    "log_loss": False,
    "macro_f1": True,
    "micro_f1": True,
    "macro_roc_auc": True,
    "balanced_accuracy": True,
    "accuracy": True,
    "mae": False,
    "rmse": False,
    "r2": True,
    "mean_iou": True,
    "mean_dice": True,
    "pixel_accuracy": True,
}
ECE_BINS = 15


def deciding_metric(task: Task, y: torch.Tensor, num_outputs: int) -> tuple[str, str | None]:
    """The metric the verdict decides on for ``task``, and the reason when it is not the task's
    usual one (an imbalanced multiclass target decides on balanced accuracy)."""
    if task == Task.multiclass and len(y):
        counts = torch.bincount(y.long().reshape(-1), minlength=num_outputs).double()
        share = float(counts.min() / counts.sum())
        if share < IMBALANCED and share < 0.5 / num_outputs:
            return "balanced_accuracy", (
                f"the smallest class holds {share:.1%} of the rows (under {IMBALANCED:.0%}): the verdict decides on "
                "balanced_accuracy, where every class counts the same; macro_f1 is checked beside it"
            )
    return PRIMARY[task], None


def default_margin(metric: str, y: torch.Tensor) -> float:
    """The region of practical equivalence of ``metric`` (``±margin``, in the metric's units):
    0.01 for scores in [0, 1] (F1, ROC-AUC, balanced accuracy, accuracy, average precision, R²,
    ECE), 0.01 nats for the log loss, 0.005 for the Brier score; for errors in the target's
    units, 1 % of the target's spread: its mean absolute deviation from the median (MAE) or its
    standard deviation (RMSE), averaged over outputs."""
    name = metric.split("[", maxsplit=1)[0]
    if name == "brier":
        return 0.005
    if name in ("mae", "rmse"):
        t = y.double().reshape(len(y), -1)
        if name == "mae":
            spread = (t - t.median(0).values).abs().mean(0)
        else:
            spread = t.std(0) if len(t) > 1 else torch.zeros(t.shape[1], dtype=torch.float64)
        return float(0.01 * spread.mean())
    return 0.01


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric`` (per-label ``f1[...]`` and per-class ``iou[...]`` keys: higher)."""
    return HIGHER_IS_BETTER.get(metric, True)


@dataclass
class Evaluation:
    """Metrics plus what the plots need: probabilities / predictions and targets."""

    metrics: dict[str, float]
    scores: torch.Tensor  # probabilities (classification) or predictions in original units
    target: torch.Tensor  # ids / 0-1 labels, or targets in original units


def _float(value: object) -> float:
    v = float(value)  # type: ignore[arg-type]
    return v if math.isfinite(v) else float("nan")


def _top_label(probs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    confidence, predicted = probs.max(1)
    return confidence, (predicted == y).float()


def calibration_error(confidence: torch.Tensor, hit: torch.Tensor, bins: int = ECE_BINS) -> float:
    """The expected calibration error (L1): ``sum_b |accuracy_b - confidence_b| * share_b`` over
    ``bins`` equal-width bins of ``confidence`` in [0, 1] (a confidence of exactly 1 has a bin of
    its own), as torchmetrics' ``binary_calibration_error`` / ``multiclass_calibration_error``
    compute it (``hit``: 1 where the prediction was right, or the binary label). The tests
    compare it with torchmetrics."""
    conf = confidence.reshape(-1).float()
    if conf.numel() == 0:
        return math.nan
    acc = hit.reshape(-1).to(conf.dtype)
    edges = torch.linspace(0, 1, bins + 1, dtype=conf.dtype)
    index = torch.bucketize(conf, edges, right=True) - 1
    count = torch.zeros(bins + 1, dtype=conf.dtype).scatter_add_(0, index, torch.ones_like(conf))
    conf_sum = torch.zeros(bins + 1, dtype=conf.dtype).scatter_add_(0, index, conf)
    acc_sum = torch.zeros(bins + 1, dtype=conf.dtype).scatter_add_(0, index, acc)
    conf_bin = torch.nan_to_num(conf_sum / count)
    acc_bin = torch.nan_to_num(acc_sum / count)
    share = count / count.sum()
    return _float(((acc_bin - conf_bin).abs() * share).sum())


def tune_threshold(p_val: torch.Tensor, y_val: torch.Tensor) -> float:
    """The probability threshold with the best F1 on the validation split (0.5 when undefined)."""
    from sklearn.metrics import precision_recall_curve

    y = y_val.reshape(-1).long().numpy()
    if y.min() == y.max():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p_val.reshape(-1).double().numpy())
    f1 = 2 * precision * recall / (precision + recall + 1e-12)
    return float(thresholds[int(f1[:-1].argmax())]) if len(thresholds) else 0.5


def evaluate(
    task: Task,
    scores: torch.Tensor,
    target: torch.Tensor,
    num_outputs: int,
    threshold: float = 0.5,
    label_names: list[str] | None = None,
    ignore_index: int = 255,
) -> Evaluation:
    """Metrics of ``scores`` (probabilities, or predictions in original units; segmentation:
    predicted class ids) on ``target``; ``label_names`` name the labels (multilabel) or the
    classes (segmentation, whose ``ignore_index`` pixels are left out)."""
    import numpy as np
    import sklearn.metrics as M

    if task == Task.segmentation:
        from losskit.app.compare.segmentation import segmentation_metrics

        ids, truth = scores.detach().long().cpu(), target.detach().long().cpu()
        return Evaluation(segmentation_metrics(ids, truth, num_outputs, ignore_index, label_names), ids, truth)
    scores = scores.detach().double().cpu()
    target = target.detach().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes absent from a small test fold, undefined scores
        if task == Task.regression:
            pred, true = scores.reshape(len(scores), -1).numpy(), target.reshape(len(target), -1).double().numpy()
            metrics = {
                "mae": _float(M.mean_absolute_error(true, pred)),
                "rmse": _float(math.sqrt(M.mean_squared_error(true, pred))),
                "r2": _float(M.r2_score(true, pred)),
            }
            return Evaluation(metrics, scores, target.double())
        if task == Task.binary:
            p = scores.reshape(-1).clamp(0, 1)
            y = target.reshape(-1).long()
            pn, yn = p.numpy(), y.numpy()
            metrics = {
                "roc_auc": _float(M.roc_auc_score(yn, pn)) if yn.min() != yn.max() else math.nan,
                "average_precision": _float(M.average_precision_score(yn, pn)),
                "f1": _float(M.f1_score(yn, (pn >= threshold).astype(int), zero_division=0)),
                "brier": _float(M.brier_score_loss(yn, pn)),
                "ece": calibration_error(p, y),
                "log_loss": _float(M.log_loss(yn, pn, labels=[0, 1])),
            }
            return Evaluation(metrics, p, y)
        if task == Task.multiclass:
            probs = scores / scores.sum(1, keepdim=True).clamp_min(1e-300)
            y = target.long()
            k = num_outputs
            yn, pred = y.numpy(), probs.argmax(1).numpy()
            metrics = {
                "macro_f1": _float(M.f1_score(yn, pred, labels=list(range(k)), average="macro", zero_division=0)),
                "balanced_accuracy": _float(M.balanced_accuracy_score(yn, pred)),
                "accuracy": _float(M.accuracy_score(yn, pred)),
                "log_loss": _float(M.log_loss(yn, probs.numpy(), labels=list(range(k)))),
                "ece": calibration_error(*_top_label(probs.float(), y)),
            }
            return Evaluation(metrics, probs, y)
        probs = scores.clamp(0, 1)
        y = target.long()
        yn, pred = y.numpy(), (probs.numpy() >= threshold).astype(int)
        per_label = M.f1_score(yn, pred, average=None, zero_division=0)
        aucs = [
            M.roc_auc_score(yn[:, j], probs[:, j].numpy())
            for j in range(yn.shape[1])
            if yn[:, j].min() != yn[:, j].max()
        ]
        metrics = {
            "micro_f1": _float(M.f1_score(yn, pred, average="micro", zero_division=0)),
            "macro_f1": _float(M.f1_score(yn, pred, average="macro", zero_division=0)),
            "macro_roc_auc": _float(np.mean(aucs)) if aucs else math.nan,
            "ece": calibration_error(probs, y),
        }
        names = label_names or [str(j) for j in range(yn.shape[1])]
        metrics.update({f"f1[{name}]": _float(v) for name, v in zip(names, per_label)})
        return Evaluation(metrics, probs, y)
