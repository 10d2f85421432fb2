"""Modules for the losses torch lacks: ``SigmoidFocalLoss``, ``FocalLoss``, ``Poly1CrossEntropyLoss``."""

from __future__ import annotations

import torch

from losskit import checks
from losskit import functional as LF
from losskit.nn.base import Loss, WeightedLoss
from losskit.types import Reduction

__all__ = ["SigmoidFocalLoss", "FocalLoss", "Poly1CrossEntropyLoss"]


class SigmoidFocalLoss(Loss):
    r"""Binary / multi-label focal loss on logits; see :func:`losskit.functional.sigmoid_focal_loss`.

    No torch equivalent (torchvision's ``sigmoid_focal_loss`` as a module; the module's default
    reduction is ``"mean"``, like every loss module).

    Shape: input ``(*)`` logits, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.SigmoidFocalLoss()(torch.tensor([0.0]), torch.tensor([1.0]))
        tensor(0.0433)
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, *, reduction: Reduction = "mean") -> None:
        super().__init__(reduction)
        checks.check_focal_options("sigmoid_focal_loss", gamma, alpha)
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.sigmoid_focal_loss(input, target, self.alpha, self.gamma, self.reduction)

    def settings_text(self) -> str:
        return self._settings("alpha", "gamma", "reduction")


class FocalLoss(WeightedLoss):
    r"""Multiclass softmax focal loss; see :func:`losskit.functional.focal_loss`.

    No torch equivalent. ``gamma=0`` is :class:`CrossEntropyLoss`.

    Shape: as :class:`CrossEntropyLoss` with class-index targets.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.FocalLoss(gamma=2.0)(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.1733)
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        gamma: float = 2.0,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        checks.check_focal_options("focal_loss", gamma)
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.focal_loss(
            input, target, self.weight, gamma=self.gamma, ignore_index=self.ignore_index, reduction=self.reduction
        )

    def settings_text(self) -> str:
        return self._settings("gamma", "reduction", ("ignore_index", -100), ("weight", None))


class Poly1CrossEntropyLoss(WeightedLoss):
    r"""Poly-1 cross-entropy; see :func:`losskit.functional.poly1_cross_entropy`.

    No torch equivalent. ``epsilon=0`` is :class:`CrossEntropyLoss`.

    Shape: as :class:`CrossEntropyLoss`.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.Poly1CrossEntropyLoss(epsilon=1.0)(torch.zeros(1, 2), torch.tensor([0]))
        tensor(1.1931)
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        epsilon: float = 1.0,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        checks.check_label_smoothing(type(self).__name__, label_smoothing)
        checks.check_poly_epsilon("poly1_cross_entropy", epsilon)
        self.epsilon = epsilon
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.poly1_cross_entropy(
            input,
            target,
            self.weight,
            epsilon=self.epsilon,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def settings_text(self) -> str:
        return self._settings(
            "epsilon", "reduction", ("label_smoothing", 0.0), ("ignore_index", -100), ("weight", None)
        )
