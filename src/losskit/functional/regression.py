"""Regression losses: ``mse_loss``, ``l1_loss``, ``huber_loss``, ``smooth_l1_loss``.

torch's element-wise kernels are already optimal, so after losskit's checks these call them;
only the ``weight=`` path (new in torch 2.6+, missing before) is computed here, with torch
2.13's exact weighted-mean denominators (see :mod:`losskit._core.reduction`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losskit import checks
from losskit._core.reduction import reduce, reduce_with_denominator
from losskit.types import Reduction

__all__ = ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"]


def _finish(fn: str, mode: str, loss: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss


def mse_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: None = None,
    reduce: None = None,
    reduction: Reduction = "mean",
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
    mode = checks.check_pair(fn, input, target, weight)
    if weight is None:
        loss = F.mse_loss(input, target, reduction=reduction)
    else:
        loss = reduce_with_denominator(F.mse_loss(input, target, reduction="none") * weight, reduction, weight.sum())
    return _finish(fn, mode, loss, input)


def l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: None = None,
    reduce: None = None,
    reduction: Reduction = "mean",
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
    mode = checks.check_pair(fn, input, target, weight, allow_complex=True)
    if weight is None:
        loss = F.l1_loss(input, target, reduction=reduction)
    else:
        loss = reduce_with_denominator(F.l1_loss(input, target, reduction="none") * weight, reduction, weight.sum())
    return _finish(fn, mode, loss, input)


def huber_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: Reduction = "mean",
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
    checks.check_huber_delta(fn, delta)
    mode = checks.check_pair(fn, input, target, weight)
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
    reduction: Reduction = "mean",
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
    checks.check_smooth_l1_beta(fn, beta)
    mode = checks.check_pair(fn, input, target, None)
    loss = F.smooth_l1_loss(input, target, reduction=reduction, beta=beta)
    return _finish(fn, mode, loss, input)
