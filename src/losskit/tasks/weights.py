"""Weights from label counts: :func:`class_weights` and :func:`pos_weight`."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from losskit.checks import shape_str
from losskit.errors import LossInputError, LossUsageWarning
from losskit.tasks.labels import _as_tensor, _binary_values, _id_tensor

__all__ = ["class_weights", "pos_weight"]


def class_weights(
    targets: Any,
    method: str = "balanced",
    *,
    beta: float = 0.999,
    num_classes: int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    r"""Per-class weights from label counts, for ``weight=`` of the cross-entropy family.

    * ``"balanced"``: :math:`w_c = n / (C \cdot n_c)` -- scikit-learn's
      ``compute_class_weight("balanced")``; a balanced data set gets all ones.
    * ``"effective"``: :math:`w_c \propto (1 - \beta) / (1 - \beta^{n_c})`, the inverse
      effective number of samples (Cui et al. 2019), normalized to sum to :math:`C`.
    * ``"none"``: all ones.

    No torch equivalent.

    Args:
        targets: class ids of any shape (tensor, array or list; strings are encoded in sorted
            order, as :class:`LabelEncoder`).
        method: ``"balanced"`` | ``"effective"`` | ``"none"``.
        beta: the effective-number hyper-parameter in ``[0, 1)`` (0.9 .. 0.9999 in the paper).
        num_classes: the number of classes ``C`` (default: largest id + 1).
        ignore_index: id left out of the counts (padding, void pixels).

    Returns:
        A float32 tensor ``(C,)``. A class with no samples gets the largest weight of the
        present classes (and a :class:`~losskit.LossUsageWarning`).

    Raises:
        LossInputError: unknown ``method``, ``beta`` outside ``[0, 1)``, non-integer or
            negative ids, ids ``>= num_classes``.

    References:
        King and Zeng, "Logistic Regression in Rare Events Data", 2001 (balanced weights);
        Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.

    Example:
        >>> import torch, losskit
        >>> losskit.class_weights(torch.tensor([0, 0, 0, 1]))     # 4 / (2 * 3), 4 / (2 * 1)
        tensor([0.6667, 2.0000])
    """
    fn = "class_weights"
    if method not in ("balanced", "effective", "none"):
        raise LossInputError(
            f"{fn}: method is {method!r}; expected 'balanced', 'effective' or 'none'. "
            "Pass method='balanced' (n / (C * count)) or method='effective' (Cui et al. 2019)."
        )
    if not (isinstance(beta, (int, float)) and 0 <= beta < 1):
        raise LossInputError(f"{fn}: beta is {beta!r}; expected a number in [0, 1), e.g. 0.999. Pass beta=0.999.")
    ids, _ = _id_tensor(targets, fn, ignore_index)
    hi = int(ids.max())
    if num_classes is None:
        num_classes = hi + 1
    elif hi >= num_classes:
        raise LossInputError(
            f"{fn}: targets contain id {hi} but num_classes={num_classes}; expected ids below "
            f"num_classes. Pass num_classes={hi + 1} or remap the labels."
        )
    counts = torch.bincount(ids, minlength=num_classes).double()
    return _weights_from_counts(counts, method, beta, fn)


def _weights_from_counts(counts: torch.Tensor, method: str, beta: float, fn: str) -> torch.Tensor:
    counts = counts.double()
    k = counts.numel()
    present = counts > 0
    if method == "none":
        return torch.ones(k)
    if method == "balanced":
        weights = counts.sum() / (k * counts.clamp_min(1))
    else:
        effective = (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)) / (1.0 - beta)
        weights = 1.0 / effective.clamp_min(1e-12)
        weights = torch.where(present, weights, torch.zeros_like(weights))
        weights = weights * present.sum() / weights.sum()
    if not bool(present.all()):
        missing = torch.nonzero(~present).flatten().tolist()
        weights = torch.where(present, weights, weights[present].max())
        warnings.warn(
            f"{fn}: class(es) {missing[:10]} have no samples in the targets; they get the largest "
            "weight of the present classes. Check that the labels cover every class.",
            LossUsageWarning,
            stacklevel=3,
        )
    return weights.float()


def pos_weight(targets: Any) -> torch.Tensor:
    r"""``pos_weight`` for :func:`~losskit.functional.binary_cross_entropy_with_logits`: negatives / positives.

    .. math:: p_c = \frac{\#\{y_{\cdot c} = 0\}}{\#\{y_{\cdot c} = 1\}}

    so positives and negatives of each label weigh the same in total (the recipe in
    torch's ``BCEWithLogitsLoss`` documentation). No torch equivalent.

    Args:
        targets: 0/1 labels ``(N,)`` (binary) or ``(N, L)`` (multilabel); bool, int or float.

    Returns:
        A float32 tensor ``(1,)`` for ``(N,)`` targets, ``(L,)`` for ``(N, L)``. A label that
        is never (or always) positive gets 1 and a :class:`~losskit.LossUsageWarning`.

    Raises:
        LossInputError: values other than 0/1, or more than 2 dims.

    Example:
        >>> import torch, losskit
        >>> losskit.pos_weight(torch.tensor([[1, 0], [0, 0], [0, 1], [0, 1]]))
        tensor([3., 1.])
    """
    fn = "pos_weight"
    t, labels = _as_tensor(targets, fn)
    if labels is not None or t is None:
        raise LossInputError(
            f"{fn}: targets are not numeric; expected 0/1 labels of shape (N,) or (N, L). "
            "Encode them first, e.g. losskit.LabelEncoder().fit_transform(labels)."
        )
    if t.dim() > 2 or t.numel() == 0 or not _binary_values(t):
        raise LossInputError(
            f"{fn}: targets have shape {shape_str(t.shape)}"
            + ("" if t.numel() == 0 or _binary_values(t) else " and values other than 0/1")
            + "; expected 0/1 labels of shape (N,) or (N, L). For class ids use "
            "losskit.class_weights(targets)."
        )
    rows = t.reshape(t.shape[0], -1).double() if t.dim() == 2 else t.reshape(-1, 1).double()
    positives = rows.sum(0)
    negatives = rows.shape[0] - positives
    weights = negatives / positives.clamp_min(1)
    degenerate = (positives == 0) | (negatives == 0)
    if bool(degenerate.any()):
        which = torch.nonzero(degenerate).flatten().tolist()
        warnings.warn(
            f"{fn}: label(s) {which[:10]} are never (or always) positive in the targets; they get "
            "pos_weight 1. Check the labels, or drop labels the data cannot teach.",
            LossUsageWarning,
            stacklevel=2,
        )
        weights = torch.where(degenerate, torch.ones_like(weights), weights)
    return weights.float()
