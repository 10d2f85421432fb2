"""Regression losses: ``mse_loss``, ``l1_loss``, ``huber_loss``, ``smooth_l1_loss``.

torch's element-wise kernels are already optimal, so after losskit's checks these call them;
only the ``weight=`` path (new in torch 2.6+, missing before) is computed here, with torch
2.13's exact weighted-mean denominators (see :mod:`losskit.functional._reduce`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losskit import checks
from losskit.checks import describe, fail, shape_str, warn
from losskit.functional._reduce import reduce, reduce_with_denominator

__all__ = ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"]


def _check_pair(fn: str, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> str:
    """Checks shared by the regression losses; returns the effective check level."""
    checks.check_float_input(fn, "input", input)
    checks.check_tensor(fn, "target", target)
    mode = checks.level(input)
    if mode == "off":
        return mode
    if target.dtype == torch.bool or target.is_complex():
        fail(
            f"{fn}: target has {describe(target)}; expected a real-valued tensor. "
            "Use target.float().",
            dtype=True,
        )
    if input.shape != target.shape:
        _shape_mismatch(fn, input, target)
    if weight is not None:
        checks.check_tensor(fn, "weight", weight)
        if weight.shape != input.shape:
            fail(
                f"{fn}: weight has shape {shape_str(weight.shape)}; expected the shape of input "
                f"{shape_str(input.shape)} (one weight per element). Expand it, e.g. "
                "weight.expand_as(input), or multiply the unreduced loss yourself."
            )
    if mode == "full" and input.dim() >= 2 and input.shape[-1] > 1 and input.numel() > 0:
        rows = checks.sample_rows(target.detach(), target.dim() - 1)
        one_hot = bool(((rows == 0) | (rows == 1)).all()) and bool((rows == 1).sum(-1).eq(1).all())
        if one_hot:
            warn(
                f"{fn}: target of {describe(target)} looks like one-hot class labels; expected "
                "continuous regression targets. For classification use "
                "losskit.functional.cross_entropy(input, target.argmax(-1)), which trains faster "
                "and gives calibrated probabilities."
            )
    return mode


def _shape_mismatch(fn: str, input: torch.Tensor, target: torch.Tensor) -> None:
    got = f"got input {shape_str(input.shape)} and target {shape_str(target.shape)}"
    if (
        not target.is_floating_point()
        and input.dim() == target.dim() + 1
        and input.shape[:-1] == target.shape
        and input.shape[-1] > 1
    ):
        fail(
            f"{fn}: target holds integer class labels of shape {shape_str(target.shape)} while "
            f"input has {input.shape[-1]} columns, {got}; expected equal shapes. This is a "
            "classification problem: use losskit.functional.cross_entropy(input, target)."
        )
    if input.dim() == target.dim() + 1 and input.shape[-1] == 1 and input.shape[:-1] == target.shape:
        fix = "Use input.squeeze(-1) (or target.unsqueeze(-1))."
    elif target.dim() == input.dim() + 1 and target.shape[-1] == 1 and target.shape[:-1] == input.shape:
        fix = "Use target.squeeze(-1) (or input.unsqueeze(-1))."
    else:
        fix = "Reshape one of them so both have the same shape."
    try:
        broadcast = f" torch would broadcast them to {shape_str(torch.broadcast_shapes(input.shape, target.shape))} and return a wrong loss."
    except RuntimeError:
        broadcast = ""
    fail(f"{fn}: input and target shapes differ, {got}; expected equal shapes.{broadcast} {fix}")


def _finish(fn: str, mode: str, loss: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss


def mse_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Mean squared error between ``input`` and ``target``.

    .. math::
        \ell_i = w_i (x_i - y_i)^2, \qquad
        \text{mean} = \frac{\sum_i \ell_i}{\sum_i w_i} \;(\text{or } \tfrac{1}{n}\textstyle\sum_i \ell_i
        \text{ without weight}), \qquad \text{sum} = \sum_i \ell_i

    torch equivalent: :func:`torch.nn.functional.mse_loss` (same arguments and values).

    Args:
        input: predictions, any shape ``(*)``, floating point.
        target: ground truth, the same shape as ``input``.
        size_average, reduce: torch's deprecated arguments, kept only so positional calls line
            up; anything but ``None`` raises with the equivalent ``reduction``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: per-element weights of ``input``'s shape; the mean divides by ``weight.sum()``.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``reduction="none"``.

    Raises:
        LossInputError: shapes differ (torch only warns and broadcasts to a wrong value),
            integer class labels against a multi-column input, bad ``weight`` or ``reduction``.

    Note:
        torch warns and broadcasts when the shapes differ; losskit raises instead.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(2.)
    """
    fn = "mse_loss"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    mode = _check_pair(fn, input, target, weight)
    if weight is None:
        loss = F.mse_loss(input, target, reduction=reduction)
    else:
        loss = reduce_with_denominator(
            F.mse_loss(input, target, reduction="none") * weight, reduction, weight.sum()
        )
    return _finish(fn, mode, loss, input)


def l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Mean absolute error between ``input`` and ``target``.

    .. math::
        \ell_i = w_i |x_i - y_i|, \qquad
        \text{mean} = \frac{\sum_i \ell_i}{\sum_i w_i} \;(\text{or } \tfrac{1}{n}\textstyle\sum_i \ell_i
        \text{ without weight})

    torch equivalent: :func:`torch.nn.functional.l1_loss`.

    Args:
        input: predictions, any shape ``(*)``, floating point.
        target: ground truth, the same shape as ``input``.
        size_average, reduce: deprecated; anything but ``None`` raises.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: per-element weights of ``input``'s shape; the mean divides by ``weight.sum()``.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``reduction="none"``.

    Raises:
        LossInputError: as :func:`mse_loss`.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.l1_loss(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(1.)
    """
    fn = "l1_loss"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    mode = _check_pair(fn, input, target, weight)
    if weight is None:
        loss = F.l1_loss(input, target, reduction=reduction)
    else:
        loss = reduce_with_denominator(
            F.l1_loss(input, target, reduction="none") * weight, reduction, weight.sum()
        )
    return _finish(fn, mode, loss, input)


def huber_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Huber loss: quadratic for small errors, linear (slope ``delta``) for large ones.

    .. math::
        \ell_i = w_i \begin{cases} \tfrac12 (x_i - y_i)^2 & |x_i - y_i| < \delta \\
        \delta (|x_i - y_i| - \tfrac12 \delta) & \text{otherwise} \end{cases}, \qquad
        \text{mean} = \tfrac{1}{n} \textstyle\sum_i \ell_i

    With ``weight`` the mean is the plain mean of the weighted terms (divides by the number of
    elements, not by ``weight.sum()``), exactly as torch 2.13.

    torch equivalent: :func:`torch.nn.functional.huber_loss`.

    Args:
        input: predictions, any shape ``(*)``.
        target: ground truth, the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        delta: switch point between the quadratic and linear parts; must be positive.
        weight: per-element weights of ``input``'s shape.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``reduction="none"``.

    Raises:
        LossInputError: ``delta <= 0``, and as :func:`mse_loss`.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.huber_loss(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0]))
        tensor(1.3125)
    """
    fn = "huber_loss"
    checks.check_reduction(fn, reduction)
    if not delta > 0:
        fail(
            f"huber_loss: delta must be positive, got {delta!r}; expected a float > 0 (the error "
            "size where the loss turns from quadratic to linear). Use e.g. delta=1.0."
        )
    mode = _check_pair(fn, input, target, weight)
    if weight is None:
        loss = F.huber_loss(input, target, reduction=reduction, delta=delta)
    else:
        loss = reduce(F.huber_loss(input, target, reduction="none", delta=delta) * weight, reduction)
    return _finish(fn, mode, loss, input)


def smooth_l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> torch.Tensor:
    r"""Smooth L1 loss: Huber loss divided by ``beta`` (``beta = 0`` is the L1 loss).

    .. math::
        \ell_i = \begin{cases} \tfrac{0.5 (x_i - y_i)^2}{\beta} & |x_i - y_i| < \beta \\
        |x_i - y_i| - \tfrac12 \beta & \text{otherwise} \end{cases}

    torch equivalent: :func:`torch.nn.functional.smooth_l1_loss`.

    Args:
        input: predictions, any shape ``(*)``.
        target: ground truth, the same shape.
        size_average, reduce: deprecated; anything but ``None`` raises.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        beta: switch point; must be ``>= 0``.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``reduction="none"``.

    Raises:
        LossInputError: ``beta < 0``, and as :func:`mse_loss`.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.smooth_l1_loss(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0]))
        tensor(1.3125)
    """
    fn = "smooth_l1_loss"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    if not beta >= 0:
        fail(
            f"smooth_l1_loss: beta must be non-negative, got {beta!r}; expected a float >= 0. "
            "Use e.g. beta=1.0 (beta=0 gives the L1 loss)."
        )
    mode = _check_pair(fn, input, target, None)
    loss = F.smooth_l1_loss(input, target, reduction=reduction, beta=beta)
    return _finish(fn, mode, loss, input)
