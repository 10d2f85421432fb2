"""Regression modules: ``MSELoss``, ``L1Loss``, ``HuberLoss``, ``SmoothL1Loss``."""

from __future__ import annotations

import torch

from losskit import checks
from losskit import functional as LF
from losskit.nn.base import Loss
from losskit.types import Reduction

__all__ = ["MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss"]


class MSELoss(Loss):
    r"""Mean squared error, :math:`\ell_i = (x_i - y_i)^2`; see :func:`losskit.functional.mse_loss`.

    torch equivalent: :class:`torch.nn.MSELoss`.

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.MSELoss()(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(2.)
    """

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.mse_loss(input, target, reduction=self.reduction)


class L1Loss(Loss):
    r"""Mean absolute error, :math:`\ell_i = |x_i - y_i|`; see :func:`losskit.functional.l1_loss`.

    torch equivalent: :class:`torch.nn.L1Loss`.

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.L1Loss()(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(1.)
    """

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.l1_loss(input, target, reduction=self.reduction)


class HuberLoss(Loss):
    r"""Huber loss with threshold ``delta``; see :func:`losskit.functional.huber_loss`.

    torch equivalent: :class:`torch.nn.HuberLoss` (same positional order).

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.HuberLoss(delta=1.0)(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0]))
        tensor(1.3125)
    """

    def __init__(self, reduction: Reduction = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        checks.check_huber_delta("huber_loss", delta)
        self.delta = delta

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.huber_loss(input, target, reduction=self.reduction, delta=self.delta)

    def settings_text(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"


class SmoothL1Loss(Loss):
    r"""Smooth L1 loss with threshold ``beta``; see :func:`losskit.functional.smooth_l1_loss`.

    torch equivalent: :class:`torch.nn.SmoothL1Loss`.

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.SmoothL1Loss()(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0]))
        tensor(1.3125)
    """

    def __init__(self, *, reduction: Reduction = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        checks.check_smooth_l1_beta("smooth_l1_loss", beta)
        self.beta = beta

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)

    def settings_text(self) -> str:
        return f"reduction={self.reduction!r}, beta={self.beta}"
