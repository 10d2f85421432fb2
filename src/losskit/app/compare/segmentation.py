"""Segmentation for ``losskit compare``: the test-fold metrics (mean IoU, mean Dice, per-class
IoU, pixel accuracy) and the strata the folds are cut by (folds are over images, never pixels).
"""

from __future__ import annotations

import math

import torch

__all__ = ["confusion_matrix", "segmentation_metrics", "image_strata", "SEGMENTATION_METRICS"]

#: the fixed keys of a segmentation fold (``iou[<class>]`` per class come beside them)
SEGMENTATION_METRICS = ("mean_iou", "mean_dice", "pixel_accuracy")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """``(K, K)`` pixel counts, rows the true class, columns the predicted one, over every
    pixel of ``target`` that is not ``ignore_index`` (``pred`` and ``target``: class ids of the
    same shape)."""
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    index = t * num_classes + p.clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int = 255,
    class_names: list[str] | None = None,
) -> dict[str, float]:
    r"""Metrics of predicted class masks ``pred`` against ``target`` (both ``(N, H, W)`` ids),
    from the confusion matrix of all the fold's pixels whose target is not ``ignore_index``.

    With :math:`TP_c, FP_c, FN_c` the pixel counts of class :math:`c` summed over the fold's
    images (the common definition: PASCAL VOC, Cityscapes, torchmetrics' ``MeanIoU`` over a
    data set):

    * ``iou[c]`` :math:`= TP_c / (TP_c + FP_c + FN_c)`,
    * ``mean_iou``: the mean of ``iou[c]`` over the classes present in the fold's truth or
      prediction (a class absent from both has :math:`0/0`: it is left out of the mean and its
      ``iou[c]`` is NaN),
    * ``mean_dice``: the mean over the same classes of :math:`2 TP_c / (2 TP_c + FP_c + FN_c)`,
    * ``pixel_accuracy``: correct pixels / pixels not ignored.

    No torch equivalent (torchmetrics' ``MeanIoU`` / ``GeneralizedDiceScore`` compute the same
    from a data set's confusion matrix).

    Args:
        pred: predicted class ids ``(N, H, W)`` (or any shape).
        target: true class ids of the same shape; ``ignore_index`` marks pixels left out.
        num_classes: ``K``.
        ignore_index: the target value of ignored pixels.
        class_names: ``K`` names for the ``iou[<name>]`` keys (default ``"0"``, ``"1"``, ...).

    Returns:
        ``{"mean_iou", "mean_dice", "pixel_accuracy", "iou[<name>]" per class}``.

    Example:
        >>> import torch
        >>> t = torch.tensor([[0, 0, 1, 255]])
        >>> p = torch.tensor([[0, 1, 1, 1]])
        >>> m = segmentation_metrics(p, t, 2)
        >>> m["iou[0]"], m["iou[1]"], m["mean_iou"], round(m["pixel_accuracy"], 4)
        (0.5, 0.5, 0.5, 0.6667)
    """
    cm = confusion_matrix(pred, target, num_classes, ignore_index).double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    union = tp + fp + fn
    present = union > 0
    iou = torch.where(present, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    dice = torch.where(present, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.full_like(tp, math.nan))
    total = float(cm.sum())
    names = class_names or [str(c) for c in range(num_classes)]
    metrics = {
        "mean_iou": float(iou[present].mean()) if bool(present.any()) else math.nan,
        "mean_dice": float(dice[present].mean()) if bool(present.any()) else math.nan,
        "pixel_accuracy": float(tp.sum() / total) if total else math.nan,
    }
    metrics.update({f"iou[{name}]": float(v) for name, v in zip(names, iou)})
    return metrics


def image_strata(masks: torch.Tensor, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, str | None]:
    """One stratum per image for the folds: whether it shows the rarest class (by pixels) of
    the masks, so every test fold gets its share of the images that have it. Returns the 0/1
    strata and the rare class's id as text (``None`` when every image shows every class)."""
    flat = masks.reshape(len(masks), -1).long()
    valid = flat != ignore_index
    counts = torch.bincount(flat[valid], minlength=num_classes)[:num_classes]
    seen = counts > 0
    if not bool(seen.any()):
        return torch.zeros(len(masks), dtype=torch.long), None
    rare = int(torch.where(seen, counts, counts.max() + 1).argmin())
    has = (flat == rare).any(1).long()
    if bool(has.all()):
        return torch.zeros(len(masks), dtype=torch.long), None
    return has, str(rare)
