"""Test-split metrics with torchmetrics (and scikit-learn's ``log_loss``), under fixed keys.

classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (macro over classes or labels),
``auroc`` (macro), ``ece`` (expected calibration error, 15 equal-width bins, L1), ``log_loss``;
regression: ``mae``, ``rmse``, ``r2`` (in the target's original units; averaged over outputs).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from losskit.tasks import Task

__all__ = ["CLASSIFICATION_METRICS", "REGRESSION_METRICS", "HIGHER_IS_BETTER", "Evaluation", "evaluate"]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "ece", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
HIGHER_IS_BETTER = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "auroc": True,
    "ece": False,
    "log_loss": False,
    "mae": False,
    "rmse": False,
    "r2": True,
}
ECE_BINS = 15


@dataclass
class Evaluation:
    """Metrics plus what the plots need: probabilities / predictions and targets."""

    metrics: dict[str, float]
    scores: torch.Tensor  # probabilities (classification) or predictions in original units
    target: torch.Tensor  # ids / 0-1 labels, or targets in original units


def _float(value: torch.Tensor | float) -> float:
    v = float(value)
    return v if math.isfinite(v) else float("nan")


def evaluate(
    task: Task,
    outputs: torch.Tensor,
    target: torch.Tensor,
    num_outputs: int,
    target_mean: torch.Tensor | None = None,
    target_std: torch.Tensor | None = None,
) -> Evaluation:
    """Metrics of the model ``outputs`` on ``target`` (the test split)."""
    import torchmetrics.functional as TMF
    import torchmetrics.functional.classification as C
    from sklearn.metrics import log_loss

    outputs = outputs.detach().float().cpu()
    target = target.detach().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about classes absent from a small test split
        if task == Task.regression:
            scaled = target_mean is not None and target_std is not None
            pred = outputs * target_std + target_mean if scaled else outputs  # type: ignore[operator]
            true = target * target_std + target_mean if scaled else target  # type: ignore[operator]
            metrics = {
                "mae": _float(TMF.mean_absolute_error(pred, true)),
                "rmse": _float(TMF.mean_squared_error(pred, true, squared=False)),
                "r2": _float(
                    TMF.r2_score(pred.squeeze(-1), true.squeeze(-1))
                    if pred.shape[-1] == 1
                    else TMF.r2_score(pred, true, multioutput="uniform_average")
                ),
            }
            return Evaluation(metrics, pred, true)
        if task == Task.binary:
            p = torch.sigmoid(outputs.reshape(-1))
            y = target.reshape(-1).long()
            both = torch.stack([1 - p, p], 1)
            metrics = {
                "accuracy": _float(C.binary_accuracy(p, y)),
                "precision": _float(C.multiclass_precision(both, y, 2, average="macro")),
                "recall": _float(C.multiclass_recall(both, y, 2, average="macro")),
                "f1": _float(C.multiclass_f1_score(both, y, 2, average="macro")),
                "auroc": _float(C.binary_auroc(p, y)),
                "ece": _float(C.binary_calibration_error(p, y, n_bins=ECE_BINS, norm="l1")),
                "log_loss": _float(log_loss(y.numpy(), p.double().numpy(), labels=[0, 1])),
            }
            return Evaluation(metrics, p, y)
        if task == Task.multiclass:
            probs = torch.softmax(outputs, 1)
            y = target.long()
            k = num_outputs
            metrics = {
                "accuracy": _float(C.multiclass_accuracy(probs, y, k, average="micro")),
                "precision": _float(C.multiclass_precision(probs, y, k, average="macro")),
                "recall": _float(C.multiclass_recall(probs, y, k, average="macro")),
                "f1": _float(C.multiclass_f1_score(probs, y, k, average="macro")),
                "auroc": _float(C.multiclass_auroc(probs, y, k, average="macro")),
                "ece": _float(C.multiclass_calibration_error(probs, y, k, n_bins=ECE_BINS, norm="l1")),
                "log_loss": _float(log_loss(y.numpy(), probs.double().numpy(), labels=list(range(k)))),
            }
            return Evaluation(metrics, probs, y)
        probs = torch.sigmoid(outputs)
        y = target.long()
        k = num_outputs
        metrics = {
            "accuracy": _float(C.multilabel_accuracy(probs, y, k, average="micro")),
            "precision": _float(C.multilabel_precision(probs, y, k, average="macro")),
            "recall": _float(C.multilabel_recall(probs, y, k, average="macro")),
            "f1": _float(C.multilabel_f1_score(probs, y, k, average="macro")),
            "auroc": _float(C.multilabel_auroc(probs, y, k, average="macro")),
            # label-wise calibration: every (sample, label) probability against its 0/1 truth
            "ece": _float(C.binary_calibration_error(probs.reshape(-1), y.reshape(-1), n_bins=ECE_BINS, norm="l1")),
            "log_loss": _float(log_loss(y.reshape(-1).numpy(), probs.reshape(-1).double().numpy(), labels=[0, 1])),
        }
        return Evaluation(metrics, probs, y)
