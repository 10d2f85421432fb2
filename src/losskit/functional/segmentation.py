"""Overlap losses for segmentation: ``dice_loss`` and ``tversky_loss``.

Semantics follow segmentation_models_pytorch (``smp.losses.DiceLoss`` / ``TverskyLoss``), the
implementation most segmentation code is written against: scores are computed per class over
the whole batch (all samples and pixels together), a class absent from the batch's targets
contributes 0 (but still counts in the mean over classes), and ``smooth`` / ``eps`` mean what
they mean there. losskit adds per-class ``weight`` and a ``reduction``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losskit import checks
from losskit.checks import describe, fail, shape_str, warn
from losskit.types import Reduction

__all__ = ["dice_loss", "tversky_loss"]


def _prepare(
    fn: str,
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    weight: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return probabilities and targets as ``(N, C, S)`` float tensors, ignored pixels zeroed."""
    checks.check_float_input(fn, "input", input)
    checks.check_tensor(fn, "target", target)
    check_level = checks.level(input)
    if input.dim() < 2:
        fail(
            f"{fn}: input has shape {shape_str(input.shape)}; expected (N, C, d1, ...) with the "
            "batch first and the channel axis second. Add the missing axes, e.g. "
            "input.view(1, 1, -1) for a single binary mask."
        )
    n = input.shape[0]
    if mode == "binary":
        if input.dim() > 2 and input.shape[1] != 1 and input.shape != target.shape:
            fail(
                f"{fn}: input has shape {shape_str(input.shape)} with {input.shape[1]} channels in "
                "mode='binary'; expected one foreground channel (N, 1, d1, ...). Use "
                "mode='multiclass' for class ids or mode='multilabel' for several 0/1 masks."
            )
        if target.numel() != input.numel() or (target.dim() and target.shape[0] != n):
            fail(
                f"{fn}: target has shape {shape_str(target.shape)}, which does not match input "
                f"{shape_str(input.shape)} in mode='binary'; expected one 0/1 target per logit, "
                f"e.g. shape {shape_str(input.shape)} or {shape_str((n,) + tuple(input.shape[2:]))}."
            )
        probs_shape = (n, 1, -1)
        y = target.reshape(probs_shape)
    elif mode == "multiclass":
        expected = (n,) + tuple(input.shape[2:])
        if target.is_floating_point() or target.dtype == torch.bool:
            fail(
                f"{fn}: target has {describe(target)}; expected int64 class ids of shape "
                f"{shape_str(expected)} in mode='multiclass'. Use target.long()"
                + (" (or mode='multilabel' for one 0/1 mask per channel)." if target.shape == input.shape else "."),
                dtype=True,
            )
        if tuple(target.shape) != expected:
            hint = (
                "Use target.squeeze(1)."
                if tuple(target.shape) == (n, 1) + expected[1:]
                else (
                    "Use target.argmax(1) for one-hot masks."
                    if target.shape == input.shape
                    else "Check that input is (N, C, d1, ...) and target (N, d1, ...)."
                )
            )
            fail(
                f"{fn}: target has shape {shape_str(target.shape)}; expected class ids of shape "
                f"{shape_str(expected)} for input {shape_str(input.shape)}. {hint}"
            )
        y = target.reshape(n, -1)
    else:
        if target.shape != input.shape:
            fail(
                f"{fn}: target has shape {shape_str(target.shape)}; expected one 0/1 mask per "
                f"channel, the shape of input {shape_str(input.shape)}, in mode='multilabel'. "
                "For one class id per pixel use mode='multiclass'."
            )
        y = target.reshape(n, input.shape[1], -1)
    n_classes = 1 if mode == "binary" else input.shape[1]
    if weight is not None and check_level != "off":
        checks.check_float_input(fn, "weight", weight)
        if weight.dim() != 1 or weight.shape[0] != n_classes:
            fail(
                f"{fn}: weight has shape {shape_str(weight.shape)}; expected one weight per class, "
                f"shape ({n_classes},). Pass a 1-D tensor of length {n_classes}."
            )
    if check_level == "full" and y.numel():
        counted = y if ignore_index is None else y[y != ignore_index]
        if counted.numel():
            lo, hi = float(counted.min()), float(counted.max())
            if mode == "multiclass" and (lo < 0 or hi >= n_classes):
                fail(
                    f"{fn}: target has class ids from {lo:g} to {hi:g}; expected ids in "
                    f"[0, {n_classes - 1}]"
                    + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
                    + ". Remap the labels, or pass ignore_index for the void label (e.g. 255)."
                )
            if mode != "multiclass" and (lo < 0 or hi > 1):
                fail(
                    f"{fn}: target has values from {lo:g} to {hi:g}; expected 0/1 masks (values in "
                    f"[0, 1])"
                    + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
                    + ". Binarise the mask, e.g. (mask > 0).float(), or pass ignore_index."
                )
        if not from_logits:
            lo, hi = checks.value_range(input)
            if lo < 0 or hi > 1:
                fail(
                    f"{fn}: input has values from {lo:.4g} to {hi:.4g} with from_logits=False; "
                    "expected probabilities in [0, 1]. Pass from_logits=True (the default) for "
                    "raw logits."
                )
        elif input.numel() >= 32:
            sample = checks.sample_values(input.detach())
            if bool((sample >= 0).all()) and bool((sample <= 1).all()):
                warn(
                    f"{fn}: every sampled input value lies in [0, 1], so input looks like "
                    "probabilities; expected raw logits with from_logits=True. Pass "
                    "from_logits=False, or remove the softmax/sigmoid before the loss."
                )

    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    if mode == "multiclass":
        p = x.reshape(n, n_classes, -1)
        if from_logits:
            p = p.log_softmax(dim=1).exp()
        mask = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        ids = torch.where(mask, y.long(), torch.zeros_like(y, dtype=torch.long))
        one_hot = F.one_hot(ids, n_classes).permute(0, 2, 1).to(p.dtype)
        t = one_hot * mask.unsqueeze(1)
        p = p * mask.unsqueeze(1)
    else:
        p = x.reshape(n, n_classes, -1)
        if from_logits:
            p = F.logsigmoid(p).exp()
        y = y.reshape(p.shape)
        mask = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        t = torch.where(mask, y, torch.zeros_like(y)).to(p.dtype)
        p = p * mask
    return p, t


def _reduce_classes(
    loss: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | None, reduction: Reduction, out_dtype: torch.dtype
) -> torch.Tensor:
    # a class absent from the batch's targets contributes 0 (smp's rule: its overlap is undefined)
    loss = loss * (t.sum(dim=(0, 2)) > 0).to(loss.dtype)
    if weight is not None:
        loss = loss * weight.to(loss.dtype)
    if reduction == "none":
        return loss.to(out_dtype)
    if reduction == "sum":
        return loss.sum().to(out_dtype)
    denominator = loss.new_tensor(loss.numel()) if weight is None else weight.to(loss.dtype).sum()
    return (loss.sum() / denominator).to(out_dtype)


def dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str = "multiclass",
    *,
    weight: torch.Tensor | None = None,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    log_loss: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Soft Dice loss: one minus the overlap of predicted and true masks, per class.

    With probabilities :math:`p` and one-hot targets :math:`t`, summed over the batch and
    pixels :math:`i` for each class :math:`c`:

    .. math::
        D_c = \frac{2 \sum_i p_{ic} t_{ic} + s}{\max\!\big(\sum_i p_{ic} + \sum_i t_{ic} + s,\
        \epsilon\big)}, \qquad \ell_c = [\textstyle\sum_i t_{ic} > 0]\,(1 - D_c)

    (or :math:`-\log \max(D_c, \epsilon)` with ``log_loss``). ``"mean"`` is
    :math:`\sum_c w_c \ell_c / \sum_c w_c` (the plain mean over classes without ``weight``).
    A perfect prediction gives 0, a disjoint one 1.

    No torch equivalent; the semantics are ``segmentation_models_pytorch.losses.DiceLoss``'s
    (classes absent from the batch contribute 0 but count in the mean).

    Args:
        input: logits (or probabilities with ``from_logits=False``) ``(N, C, d1, ...)``;
            ``(N, 1, d1, ...)`` in binary mode.
        target: ``binary``: 0/1 mask with ``input``'s number of elements (``(N, 1, ...)`` or
            ``(N, ...)``); ``multiclass``: int64 class ids ``(N, d1, ...)``; ``multilabel``: 0/1
            masks of ``input``'s shape.
        mode: ``"binary"`` | ``"multiclass"`` (softmax over channels) | ``"multilabel"``
            (sigmoid per channel).
        weight: ``(C,)`` weight per class (``(1,)`` in binary mode).
        from_logits: apply softmax (multiclass) or sigmoid first.
        smooth: added to numerator and denominator (0 in smp; 1 is common).
        eps: lower clamp of the denominator.
        ignore_index: target value whose pixels are left out (e.g. 255), or ``None``.
        log_loss: use :math:`-\log D_c` instead of :math:`1 - D_c`.
        reduction: ``"none"`` (the per-class losses ``(C,)``) | ``"mean"`` | ``"sum"``.

    Returns:
        A scalar, or ``(C,)`` for ``"none"``.

    Raises:
        LossInputError: unknown ``mode``, shapes that do not fit the mode, float class ids,
            ids out of range, masks outside ``[0, 1]``, probabilities outside ``[0, 1]`` with
            ``from_logits=False``, bad ``weight`` / ``smooth`` / ``eps`` / ``reduction``.

    References:
        Milletari et al., "V-Net", 3DV 2016; Sudre et al., "Generalised Dice overlap", 2017.

    Example:
        >>> import torch, losskit.functional as LF
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])          # (N=1, 1, 4)
        >>> LF.dice_loss(probs, torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), "binary", from_logits=False)
        tensor(0.3333)
    """
    fn = "dice_loss"
    checks.check_dice_options(fn, mode, smooth, eps, reduction)
    p, t = _prepare(fn, input, target, mode, from_logits, ignore_index, weight)
    dims = (0, 2)
    intersection = (p * t).sum(dims)
    cardinality = (p + t).sum(dims)
    score = (2.0 * intersection + smooth) / (cardinality + smooth).clamp_min(eps)
    loss = -torch.log(score.clamp_min(eps)) if log_loss else 1.0 - score
    return _reduce_classes(loss, t, weight, reduction, input.dtype)


def tversky_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str = "multiclass",
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    weight: torch.Tensor | None = None,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    log_loss: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Tversky loss: Dice with separate weights on false positives and false negatives.

    Per class :math:`c`, summed over the batch and pixels:

    .. math::
        T_c = \frac{TP_c + s}{\max(TP_c + \alpha\, FP_c + \beta\, FN_c + s,\ \epsilon)},\quad
        TP = \sum p t,\ FP = \sum p (1 - t),\ FN = \sum (1 - p) t,\quad
        \ell_c = [\textstyle\sum_i t_{ic} > 0]\,(1 - T_c)

    ``alpha = beta = 0.5`` with ``smooth=0`` is :func:`dice_loss`; ``beta > alpha`` penalises
    missed foreground more (recall over precision). Reduced as :func:`dice_loss`.

    No torch equivalent; the semantics are ``segmentation_models_pytorch.losses.TverskyLoss``'s
    with ``gamma=1``.

    Args:
        input, target, mode, weight, from_logits, smooth, eps, ignore_index, log_loss, reduction: as :func:`dice_loss`.
        alpha: weight of false positives ``>= 0``.
        beta: weight of false negatives ``>= 0``.

    Returns:
        A scalar, or ``(C,)`` for ``"none"``.

    Raises:
        LossInputError: as :func:`dice_loss`; negative ``alpha`` / ``beta``.

    References:
        Salehi et al., "Tversky loss function for image segmentation using 3D fully
        convolutional deep networks", MLMI 2017.

    Example:
        >>> import torch, losskit.functional as LF
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])          # TP 1, FP 1, FN 0
        >>> LF.tversky_loss(probs, torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), "binary",
        ...                 alpha=0.7, beta=0.3, from_logits=False)  # 1 - 1 / (1 + 0.7)
        tensor(0.4118)
    """
    fn = "tversky_loss"
    checks.check_dice_options(fn, mode, smooth, eps, reduction)
    checks.check_tversky_weights(fn, alpha, beta)
    p, t = _prepare(fn, input, target, mode, from_logits, ignore_index, weight)
    dims = (0, 2)
    tp = (p * t).sum(dims)
    fp = (p * (1.0 - t)).sum(dims)
    fn_ = ((1.0 - p) * t).sum(dims)
    score = (tp + smooth) / (tp + alpha * fp + beta * fn_ + smooth).clamp_min(eps)
    loss = -torch.log(score.clamp_min(eps)) if log_loss else 1.0 - score
    return _reduce_classes(loss, t, weight, reduction, input.dtype)
