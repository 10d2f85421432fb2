"""Binary cross-entropy: ``binary_cross_entropy`` (on probabilities) and
``binary_cross_entropy_with_logits`` (torch parity, plus label smoothing).

torch's element-wise kernels are already optimal, so after losskit's checks
(:mod:`losskit.checks.binary`) these call them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losskit import checks
from losskit.checks import fail, shape_str
from losskit.types import Reduction

__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits"]


def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    reduce: None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Binary cross-entropy between probabilities and targets in ``[0, 1]``.

    .. math::
        \ell_i = -w_i \big(y_i \log x_i + (1 - y_i) \log(1 - x_i)\big)

    (log terms clamped at -100, as torch). torch equivalent:
    :func:`torch.nn.functional.binary_cross_entropy` (torch's kernel, after losskit's checks).
    Prefer :func:`binary_cross_entropy_with_logits`: it is numerically stable.

    Args:
        input: probabilities in ``[0, 1]``, any shape ``(*)``.
        target: float targets in ``[0, 1]``, the same shape.
        weight: weights broadcastable to ``input``.
        size_average, reduce: deprecated; anything but ``None`` raises.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``"none"``.

    Raises:
        LossInputError: input outside ``[0, 1]`` (logits: use the ``_with_logits`` form),
            target outside ``[0, 1]`` or not float, shape mismatch, bad ``weight``.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.binary_cross_entropy(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
    """
    fn = "binary_cross_entropy"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    mode = checks.check_binary(fn, input, target, weight)
    if mode == "full" and input.numel() > 0:
        lo, hi = checks.value_range(input)
        if lo < 0 or hi > 1:
            checks.fail_input_range(fn, input)
    try:
        loss = F.binary_cross_entropy(input, target, weight=weight, reduction=reduction)
    except RuntimeError as err:
        # torch's CPU kernel checks every element; name the problem the losskit way.
        if mode != "off" and "input should be between 0 and 1" in str(err):
            checks.fail_input_range(fn, input)
        if mode != "off" and "target should be between 0 and 1" in str(err):
            checks.fail_target_range(fn, target)
        raise
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    reduce: None = None,
    reduction: Reduction = "mean",
    pos_weight: torch.Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Sigmoid + binary cross-entropy in one numerically stable step.

    .. math::
        \ell_{i,c} = -w_{i,c}\big(p_c\, y_{i,c} \log \sigma(x_{i,c})
        + (1 - y_{i,c}) \log(1 - \sigma(x_{i,c}))\big)

    ``pos_weight`` :math:`p_c` weighs positives per class (broadcast with the target, as in torch).
    ``label_smoothing`` :math:`\varepsilon` (losskit-only) first pulls every target towards 1/2:
    :math:`y' = (1 - \varepsilon)\, y + \varepsilon / 2` (Szegedy et al. 2016 for two classes).
    torch equivalent: :func:`torch.nn.functional.binary_cross_entropy_with_logits` (torch's
    kernel, after losskit's checks).

    Args:
        input: logits, any shape ``(*)``.
        target: float targets in ``[0, 1]``, the same shape.
        weight: weights broadcastable to ``input``.
        size_average, reduce: deprecated; anything but ``None`` raises.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        pos_weight: weight of positive examples, broadcast with ``target`` as in torch: ``(C,)``
            (``C = input.shape[-1]``), ``(1,)``, ``(C, 1, 1)`` for ``(N, C, H, W)`` logits, or
            input's full shape.
        label_smoothing: in ``[0, 1]``; 0 (the default) is torch's loss.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``"none"``.

    Raises:
        LossInputError: integer targets, targets outside ``[0, 1]``, shape mismatch, bad
            ``weight`` / ``pos_weight`` / ``label_smoothing``.

    Warns:
        LossUsageWarning: input that looks like sigmoid output (every value in ``[0, 1]``).

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.binary_cross_entropy_with_logits(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
        >>> LF.binary_cross_entropy_with_logits(torch.tensor([4.0]), torch.tensor([1.0]), label_smoothing=0.1)
        tensor(0.2181)
    """
    fn = "binary_cross_entropy_with_logits"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    mode = checks.check_binary(fn, input, target, weight)
    if mode != "off" and pos_weight is not None:
        checks.check_tensor(fn, "pos_weight", pos_weight)
        # torch broadcasts pos_weight with the target: (C,) along the last axis, (C, 1, 1) for
        # (N, C, H, W), a full-shape tensor, a single value -- anything that does not grow input
        try:
            fits = torch.broadcast_shapes(pos_weight.shape, input.shape) == input.shape  # type: ignore[no-untyped-call]
        except RuntimeError:
            fits = False
        if not fits:
            last = input.shape[-1] if input.dim() else 1
            fail(
                f"{fn}: pos_weight has shape {shape_str(pos_weight.shape)}, which does not broadcast to "
                f"input {shape_str(input.shape)}; expected one weight per class along the last dimension, "
                f"shape ({last},), a single value (1,), or a shape that broadcasts to input (e.g. (C, 1, 1) "
                "for (N, C, H, W) logits). Compute it per class, e.g. losskit.pos_weight(targets) or "
                "(negatives / positives)."
            )
    if mode == "full":
        checks.warn_if_sigmoid_input(fn, input)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    loss = F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=reduction, pos_weight=pos_weight)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss
