"""Focal losses, which torch lacks: ``sigmoid_focal_loss`` (binary / multi-label, torchvision's
semantics) and the softmax ``focal_loss`` (multiclass), Lin et al. 2017."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losskit import checks
from losskit._core import cross_entropy as core
from losskit._core.reduction import reduce, reduce_index_rows
from losskit.functional._small import long_ids, small_and_plain, warn_after_fused
from losskit.types import Reduction

__all__ = ["sigmoid_focal_loss", "focal_loss"]


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> torch.Tensor:
    r"""Focal loss on logits with binary (or soft) targets: cross-entropy down-weighted on easy examples.

    With :math:`p = \sigma(x)` and :math:`p_t = p\,y + (1 - p)(1 - y)`:

    .. math::
        \ell_i = \alpha_t\, (1 - p_{t})^{\gamma}\,
        \operatorname{BCE}(x_i, y_i), \qquad \alpha_t = \alpha\, y + (1 - \alpha)(1 - y)

    and :math:`\alpha_t = 1` when ``alpha < 0``. ``gamma=0, alpha=-1`` is exactly
    :func:`binary_cross_entropy_with_logits`.

    No torch equivalent; the semantics, argument names and defaults (including
    ``reduction="none"``) are ``torchvision.ops.sigmoid_focal_loss``'s, so it is a drop-in
    replacement. :math:`1 - p_t` is computed as :math:`y\,\sigma(-x) + (1 - y)\,\sigma(x)`,
    which does not cancel when :math:`p_t \to 1`; float16/bfloat16 compute in float32.

    Args:
        inputs: logits, any shape ``(*)``.
        targets: float targets in ``[0, 1]`` (usually 0/1), the same shape.
        alpha: weight of the positives in ``[0, 1]``; negative turns the weighting off.
        gamma: focusing exponent ``>= 0``.
        reduction: ``"none"`` (torchvision's default) | ``"mean"`` | ``"sum"``.

    Returns:
        A tensor of ``inputs``'s shape for ``"none"``, else a scalar.

    Raises:
        LossInputError: integer targets, targets outside ``[0, 1]``, shape mismatch, bad
            ``alpha`` / ``gamma`` / ``reduction``.

    Warns:
        LossUsageWarning: inputs that look like sigmoid output.

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]))  # 0.25 * 0.5**2 * ln 2
        tensor([0.0433])
    """
    fn = "sigmoid_focal_loss"
    checks.check_reduction(fn, reduction)
    checks.check_focal_options(fn, gamma, alpha)
    mode = checks.check_binary(fn, inputs, targets, None)
    if mode == "full":
        checks.warn_if_sigmoid_input(fn, inputs)
    x = inputs.float() if inputs.dtype in (torch.float16, torch.bfloat16) else inputs
    y = targets.to(x.dtype)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    if gamma:
        one_minus_pt = y * torch.sigmoid(-x) + (1 - y) * torch.sigmoid(x)
        loss = loss * one_minus_pt.pow(gamma)
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    loss = reduce(loss, reduction).to(inputs.dtype)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, inputs)
    return loss


def focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Multiclass (softmax) focal loss: cross-entropy down-weighted on well-classified samples.

    With :math:`p_{n} = \operatorname{softmax}(x_n)_{y_n}` and class weights :math:`w` (the
    per-class :math:`\alpha` of the paper):

    .. math::
        \ell_n = -w_{y_n}\, (1 - p_n)^{\gamma} \log p_n, \qquad
        \text{mean} = \frac{\sum_n \ell_n}{\sum_{n:\,y_n \ne \text{ignore}} w_{y_n}}

    The mean divides by the summed weights of the counted targets, exactly as
    :func:`cross_entropy`, so ``gamma=0`` is :func:`cross_entropy` with the same ``weight`` and
    ``ignore_index``. No torch equivalent. :math:`1 - p_n` is computed as
    ``-expm1(log p_n)`` (no cancellation when :math:`p_n \to 1`); float16/bfloat16 compute in
    float32.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (segmentation).
        target: int64 class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``.
        weight: ``(C,)`` weight per class (e.g. :func:`losskit.class_weights`).
        gamma: focusing exponent ``>= 0`` (2 in the paper).
        ignore_index: class id whose targets count neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        A scalar, or the per-sample loss ``(N, d1, ..., dK)`` for ``"none"``.

    Raises:
        LossInputError: as :func:`cross_entropy` for class-index targets; bad ``gamma``.

    Warns:
        LossUsageWarning: softmax output as input, every target ignored with ``"mean"``.

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.focal_loss(torch.zeros(1, 2), torch.tensor([0]))  # (1 - 1/2)**2 * ln 2
        tensor(0.1733)
    """
    fn = "focal_loss"
    checks.check_reduction(fn, reduction)
    checks.check_focal_options(fn, gamma)
    mode, _ = checks.check_logits_and_target(fn, input, target, weight, ignore_index, allow_probs=False)
    if (gamma == 0 or gamma >= 1) and small_and_plain(input, target, weight, False, mode, ignore_index):
        # torch's fused ops: nll_loss picks -w_t (1 - p_t)^gamma log p_t and divides by the same
        # sum of w_t. (gamma in (0, 1) stays below: the power's derivative at a class with
        # p = 1 is infinite, and the zero gradient of a non-target class would turn it to NaN.)
        logp = F.log_softmax(input, 0 if input.dim() == 1 else 1)
        modulated = logp * (-torch.expm1(logp)).pow(gamma) if gamma else logp
        loss = F.nll_loss(modulated, long_ids(target), weight, ignore_index=ignore_index, reduction=reduction)
        warn_after_fused(fn, mode, reduction, loss, input, target, weight, ignore_index, False)
        return loss
    _logp, ids, counted, logp_t = core.log_softmax_at_targets(input, target, ignore_index)
    rows = -logp_t
    if gamma:
        rows = rows * (-torch.expm1(logp_t)).pow(gamma)
    if weight is not None:
        rows = rows * weight.to(rows.dtype)[ids]
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    denominator = None
    if reduction == "mean":
        denominator = core.index_denominator(
            core.flatten_ids(target.long(), input.dim()), weight, ignore_index, n_classes
        )
    loss = reduce_index_rows(rows, counted, reduction, denominator, tuple(target.shape), input.dtype)
    if mode != "off":
        checks.warn_if_empty_or_all_ignored(fn, reduction, rows.numel(), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss
