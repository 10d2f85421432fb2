"""Softmax cross-entropy and NLL: ``cross_entropy`` and ``nll_loss`` (torch parity), with the
losskit-only ``z_loss``, ``softcap``, ``return_z_loss`` and ``normalizer``.

Each function is the guardrails (:mod:`losskit.checks.classification`) then the math: the
chunked kernel :mod:`losskit.autograd.cross_entropy` over the row math of
:mod:`losskit._core.cross_entropy`.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
import torch.nn.functional as F

from losskit import checks
from losskit._core import cross_entropy as core
from losskit._core.autocast import float32_under_autocast
from losskit._core.reduction import reduce_with_denominator
from losskit.autograd.cross_entropy import cross_entropy_unreduced
from losskit.checks import fail
from losskit.functional._small import long_ids, small_and_plain, warn_after_fused
from losskit.types import Reduction

__all__ = ["cross_entropy", "nll_loss"]


@overload
def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: Literal[False] = False,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor: ...


@overload
def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: Literal[True],
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Softmax cross-entropy between logits and class indices or class probabilities.

    For class indices :math:`y_n` with weights :math:`w` and smoothing :math:`\varepsilon`:

    .. math::
        \ell_n = (1-\varepsilon)\, w_{y_n} \big(\operatorname{lse}(x_n) - x_{n,y_n}\big)
        + \frac{\varepsilon}{C} \sum_c w_c \big(\operatorname{lse}(x_n) - x_{n,c}\big),
        \qquad \text{mean} = \frac{\sum_n \ell_n}{\sum_{n:\,y_n \ne \text{ignore}} w_{y_n}}

    For class probabilities :math:`p_{n,c}`: :math:`\ell_n = -\sum_c w_c\, p'_{n,c} \log
    \operatorname{softmax}(x_n)_c` with :math:`p' = (1-\varepsilon) p + \varepsilon / C`, and the
    mean divides by the number of samples.

    losskit-only options (no torch equivalent): ``z_loss`` adds :math:`z \operatorname{lse}(x_n)^2`
    to each counted row (PaLM; reduced like the loss, not multiplied by class weights) and
    ``softcap`` :math:`\kappa` replaces the logits by :math:`\kappa \tanh(x / \kappa)` first
    (Gemma 2).

    torch equivalent: :func:`torch.nn.functional.cross_entropy` (same values and gradients).
    losskit's kernel keeps only one log-sum-exp per row for backward (torch keeps the full
    ``log_softmax``), so its peak memory is lower; float16/bfloat16 accumulate in float32.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (segmentation).
        target: int64 class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``; or class
            probabilities with ``input``'s shape.
        weight: ``(C,)`` rescaling weight per class.
        size_average, reduce: deprecated; anything but ``None`` raises with the equivalent.
        ignore_index: class id whose targets count neither in the loss nor in the mean
            (class indices only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``; mixes the target with the uniform distribution.
        z_loss: coefficient of the z-loss (0 turns it off; 1e-4 in PaLM).
        softcap: logit cap :math:`\kappa > 0`, or ``None``.
        return_z_loss: also return the z-loss term alone (detached, reduced the same way).
        normalizer: with ``reduction="mean"``, divide the summed loss by this count instead of
            the batch's own (global normalization over micro-batches and ranks; see
            :func:`losskit.distributed.global_normalizer`).

    Returns:
        A scalar, or the per-sample loss of shape ``(N, d1, ..., dK)`` for ``"none"``; with
        ``return_z_loss=True`` a pair ``(loss, z_term)``.

    Raises:
        LossInputError: class id out of range, float class indices, integer one-hot targets,
            ``(N, 1)`` targets, probability rows that are negative or do not sum to 1, bad
            ``weight`` / ``reduction`` / ``label_smoothing``.

    Warns:
        LossUsageWarning: softmax output as input, one-hot float targets, NaN/Inf input,
            every target ignored or an empty batch with ``reduction="mean"``.

    Example:
        >>> import torch, losskit.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> LF.cross_entropy(logits, torch.tensor([0, 2]))
        tensor(0.6691)
    """
    fn = "cross_entropy"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    checks.check_z_loss_and_softcap(fn, z_loss, softcap)
    checks.check_normalizer(fn, normalizer, reduction)
    cap = None if softcap is None else float(softcap)
    mode, prob_target = checks.check_logits_and_target(fn, input, target, weight, ignore_index)
    # a float32 op under torch.autocast, as torch's: inputs up-cast, a float32 loss
    device = input.device.type
    input, target = float32_under_autocast(input, device), float32_under_autocast(target, device)
    weight = None if weight is None else float32_under_autocast(weight, device)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]

    if not (z_loss or return_z_loss or cap is not None or normalizer is not None) and small_and_plain(
        input, target, weight, prob_target, mode, ignore_index
    ):
        loss = F.cross_entropy(
            input,
            target if prob_target else long_ids(target),
            weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        warn_after_fused(fn, mode, reduction, loss, input, target, weight, ignore_index, prob_target)
        return loss

    x = core.flatten_classes(input)
    if prob_target:
        out_dtype = torch.promote_types(input.dtype, target.dtype)
        flat_target = core.flatten_classes(target)
        ids = None
        row_shape = tuple(input.shape[:class_dim]) + tuple(input.shape[class_dim + 1 :])
    else:
        out_dtype = input.dtype
        flat_target = ids = core.flatten_ids(target.long(), input.dim())
        row_shape = tuple(target.shape)
    n_rows = x.shape[0] * math.prod(x.shape[2:])
    rows, z_rows = cross_entropy_unreduced(
        x, flat_target, weight, ignore_index, label_smoothing, prob_target, z_loss, cap, summed=reduction != "none"
    )
    denominator: torch.Tensor | float | None = None  # the batch's own count, for the all-ignored warning
    mean_denominator: torch.Tensor | float = 1.0
    if reduction == "mean":
        mean_denominator = core.mean_denominator(
            prob_target=prob_target,
            rows=n_rows,
            ids=ids,
            weight=weight,
            ignore_index=ignore_index,
            n_classes=n_classes,
            normalizer=normalizer,
        )
        if normalizer is None and not prob_target:
            denominator = mean_denominator
    loss = reduce_with_denominator(rows, reduction, mean_denominator)
    z_term = reduce_with_denominator(z_rows, reduction, mean_denominator) if return_z_loss else None
    if reduction == "none":
        loss = loss.reshape(row_shape)
        z_term = None if z_term is None else z_term.reshape(row_shape)
    loss = loss.to(out_dtype)
    if mode != "off" and normalizer is None:
        checks.warn_if_empty_or_all_ignored(fn, reduction, n_rows, denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    if z_term is not None:
        return loss, z_term.to(out_dtype)
    return loss


def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Negative log-likelihood of class indices under log-probabilities.

    .. math::
        \ell_n = -w_{y_n} x_{n, y_n}, \qquad
        \text{mean} = \frac{\sum_n \ell_n}{\sum_{n:\,y_n \ne \text{ignore}} w_{y_n}}

    torch equivalent: :func:`torch.nn.functional.nll_loss`. ``input`` should be
    ``log_softmax`` output; ``cross_entropy(x, y) == nll_loss(log_softmax(x, 1), y)``.

    Args:
        input: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: int64 class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``.
        weight: ``(C,)`` weight per class.
        size_average, reduce: deprecated; anything but ``None`` raises.
        ignore_index: class id that counts neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        A scalar, or the per-sample loss ``(N, d1, ..., dK)`` for ``"none"``.

    Raises:
        LossInputError: as :func:`cross_entropy` for class-index targets.

    Warns:
        LossUsageWarning: input that is not log-probabilities (raw logits or softmax output).

    Example:
        >>> import torch, losskit.functional as LF
        >>> logp = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
        >>> LF.nll_loss(logp, torch.tensor([1]))
        tensor(1.3863)
    """
    fn = "nll_loss"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    checks.check_float_input(fn, "input", input)
    if input.dim() == 0:
        fail(
            f"{fn}: input is a 0-d tensor; expected log-probabilities of shape (C,), (N, C) or "
            "(N, C, d1, ...). Add the class axis, e.g. input.view(1, -1)."
        )
    mode = checks.level(input)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]
    if mode != "off":
        checks.classify_target(fn, input, target, allow_probs=False)
        checks.check_class_weight(fn, weight, n_classes)
    if mode == "full":
        checks.check_class_ids(fn, target, n_classes, ignore_index)
        checks.warn_if_not_log_probs(fn, input, class_dim)

    input = float32_under_autocast(input, input.device.type)  # float32 under autocast, as torch's
    weight = None if weight is None else float32_under_autocast(weight, input.device.type)
    x = core.flatten_classes(input)
    ids = core.flatten_ids(target.long(), input.dim())
    valid, use = core.counted_targets(ids, ignore_index, n_classes)
    safe = core.safe_targets(ids, use)
    picked = -x.gather(1, safe.unsqueeze(1)).squeeze(1)
    if weight is not None:
        picked = picked * weight.to(picked.dtype)[safe]
    rows = core.mark_out_of_range_(picked.masked_fill(~use, 0.0), valid, use)
    denominator = None
    if reduction == "mean":
        denominator = core.index_denominator(ids, weight, ignore_index, n_classes).to(rows.dtype)
    loss = reduce_with_denominator(rows, reduction, denominator if denominator is not None else 1.0)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    if mode != "off":
        checks.warn_if_empty_or_all_ignored(fn, reduction, rows.numel(), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss
