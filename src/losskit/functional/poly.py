"""Poly-1 cross-entropy (Leng et al. 2022), which torch lacks: ``poly1_cross_entropy``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losskit import checks
from losskit._core import cross_entropy as core
from losskit._core.reduction import reduce_index_rows, reduce_with_denominator
from losskit.autograd.cross_entropy import cross_entropy_unreduced
from losskit.functional._small import long_ids, small_and_plain, warn_after_fused
from losskit.types import Reduction

__all__ = ["poly1_cross_entropy"]


def poly1_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    epsilon: float = 1.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Poly-1 loss: cross-entropy plus :math:`\varepsilon (1 - p_t)`, the first term of its Taylor series.

    .. math::
        \ell_n = \operatorname{CE}_n + \varepsilon\,(1 - p_{t,n}), \qquad
        p_{t,n} = \sum_c y'_{n,c}\, \operatorname{softmax}(x_n)_c

    where :math:`y'` is the (label-smoothed) one-hot or probability target, as in the paper's
    reference code. With class indices the whole row is multiplied by :math:`w_{y_n}` and the
    mean divides by :math:`\sum w_{y_n}` over counted targets, as :func:`cross_entropy`; so
    ``epsilon=0`` is exactly :func:`cross_entropy`. No torch equivalent.

    Note:
        With class-probability targets ``weight`` enters the cross-entropy term only (as in
        :func:`cross_entropy`); the poly term is unweighted and the mean divides by the number
        of samples.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: int64 class indices (``(N,)``, ``(N, d1, ...)``) or class probabilities of
            ``input``'s shape.
        weight: ``(C,)`` weight per class.
        epsilon: coefficient of the poly term (the paper tunes it in ``[-1, 10]``; 1 is its
            default; must be ``> -1`` so the loss stays a decreasing function of :math:`p_t`).
        ignore_index: class id whose targets count neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``, as :func:`cross_entropy`.

    Returns:
        A scalar, or the per-sample loss for ``"none"``.

    Raises:
        LossInputError: as :func:`cross_entropy`; ``epsilon <= -1`` or not finite.

    References:
        Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
        Functions", ICLR 2022.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.poly1_cross_entropy(torch.zeros(1, 2), torch.tensor([0]))  # ln 2 + (1 - 1/2)
        tensor(1.1931)
    """
    fn = "poly1_cross_entropy"
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    checks.check_poly_epsilon(fn, epsilon)
    mode, prob_target = checks.check_logits_and_target(fn, input, target, weight, ignore_index)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]
    if not prob_target and small_and_plain(input, target, weight, False, mode, ignore_index):
        # torch's fused ops: cross_entropy, plus nll_loss of eps (p'_c - 1), which picks
        # eps w_t (1 - p'_t) and divides by the same sum of w_t (reduced alike, so they add)
        ce = F.cross_entropy(
            input,
            long_ids(target),
            weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        p = torch.softmax(input, class_dim)
        if label_smoothing:
            p = p * (1.0 - label_smoothing) + label_smoothing / n_classes
        loss = ce + F.nll_loss(
            (p - 1.0) * epsilon, long_ids(target), weight, ignore_index=ignore_index, reduction=reduction
        )
        warn_after_fused(fn, mode, reduction, loss, input, target, weight, ignore_index, False)
        return loss
    x = core.flatten_classes(input)
    if prob_target:
        rows, _ = cross_entropy_unreduced(x, core.flatten_classes(target), weight, ignore_index, label_smoothing, True)
        probs = torch.softmax(x.to(rows.dtype), dim=1)
        y = core.flatten_classes(target).to(rows.dtype)
        if label_smoothing:
            y = y * (1.0 - label_smoothing) + label_smoothing / n_classes
        rows = rows + epsilon * (1.0 - (probs * y).sum(1))
        n_rows = rows.numel()
        loss = reduce_with_denominator(rows, reduction, float(n_rows) if n_rows else float("nan"))
        if reduction == "none":
            loss = loss.reshape(tuple(input.shape[:class_dim]) + tuple(input.shape[class_dim + 1 :]))
        loss = loss.to(torch.promote_types(input.dtype, target.dtype))
        denominator = None
    else:
        # CE rows weighted as torch weighs them (smoothing terms by w_c), poly term by w_y
        ids = core.flatten_ids(target.long(), input.dim())
        ce_rows, _ = cross_entropy_unreduced(x, ids, weight, ignore_index, label_smoothing, False)
        _, safe, counted, logp_t = core.log_softmax_at_targets(input, target, ignore_index)
        p_t = logp_t.exp().reshape(ce_rows.shape).to(ce_rows.dtype)
        if label_smoothing:
            p_t = (1.0 - label_smoothing) * p_t + label_smoothing / n_classes
        poly = epsilon * (1.0 - p_t)
        if weight is not None:
            poly = poly * weight.to(poly.dtype)[safe.reshape(poly.shape)]
        denominator = None
        if reduction == "mean":
            denominator = core.index_denominator(ids, weight, ignore_index, n_classes)
        loss = reduce_index_rows(
            ce_rows + poly, counted.reshape(ce_rows.shape), reduction, denominator, tuple(target.shape), input.dtype
        )
    if mode != "off":
        checks.warn_if_empty_or_all_ignored(fn, reduction, input.numel() // max(n_classes, 1), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss
