"""Segmentation modules: ``DiceLoss``, ``TverskyLoss``, ``CrossEntropyDiceLoss``."""

from __future__ import annotations

from typing import Any

import torch

from losskit import checks
from losskit import functional as LF
from losskit.nn.base import WeightedLoss
from losskit.types import Reduction

__all__ = ["DiceLoss", "TverskyLoss", "CrossEntropyDiceLoss"]


class DiceLoss(WeightedLoss):
    r"""Soft Dice loss for segmentation; see :func:`losskit.functional.dice_loss`.

    No torch equivalent (``segmentation_models_pytorch.losses.DiceLoss``'s semantics).

    Shape: input ``(N, C, d1, ...)``; target ``(N, d1, ...)`` ids (multiclass), or masks of
    input's shape (binary, multilabel); output scalar, or ``(C,)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> losskit.nn.DiceLoss("binary", from_logits=False)(probs, torch.tensor([[[1.0, 0, 0, 0]]]))
        tensor(0.3333)
    """

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        weight: torch.Tensor | None = None,
        from_logits: bool = True,
        smooth: float = 0.0,
        eps: float = 1e-7,
        ignore_index: int | None = None,
        log_loss: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        checks.check_dice_options(type(self).__name__, mode, smooth, eps, reduction)
        self.mode = mode
        self.from_logits = from_logits
        self.smooth = smooth
        self.eps = eps
        self.ignore_index = ignore_index
        self.log_loss = log_loss

    def _kwargs(self) -> dict[str, Any]:
        return dict(
            weight=self.weight,
            from_logits=self.from_logits,
            smooth=self.smooth,
            eps=self.eps,
            ignore_index=self.ignore_index,
            log_loss=self.log_loss,
            reduction=self.reduction,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.dice_loss(input, target, self.mode, **self._kwargs())

    def settings_text(self) -> str:
        return self._settings(
            "mode",
            "reduction",
            ("from_logits", True),
            ("smooth", 0.0),
            ("ignore_index", None),
            ("log_loss", False),
            ("weight", None),
        )


class TverskyLoss(DiceLoss):
    r"""Tversky loss for segmentation; see :func:`losskit.functional.tversky_loss`.

    No torch equivalent. ``alpha = beta = 0.5`` is :class:`DiceLoss`.

    Example:
        >>> import torch, losskit
        >>> probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> loss_fn = losskit.nn.TverskyLoss("binary", alpha=0.7, beta=0.3, from_logits=False)
        >>> loss_fn(probs, torch.tensor([[[1.0, 0, 0, 0]]]))
        tensor(0.4118)
    """

    def __init__(self, mode: str = "multiclass", *, alpha: float = 0.5, beta: float = 0.5, **kwargs: Any) -> None:
        super().__init__(mode, **kwargs)
        checks.check_tversky_weights("tversky_loss", alpha, beta)
        self.alpha = alpha
        self.beta = beta

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.tversky_loss(input, target, self.mode, alpha=self.alpha, beta=self.beta, **self._kwargs())

    def settings_text(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, " + super().settings_text()


class CrossEntropyDiceLoss(WeightedLoss):
    r"""Cross-entropy plus Dice for segmentation: :math:`\operatorname{CE} + \lambda\, \operatorname{Dice}`.

    The usual segmentation objective (nnU-Net): cross-entropy gives every pixel a gradient,
    Dice balances small structures against the background. ``weight`` and ``ignore_index``
    apply to both terms; Dice runs in ``"multiclass"`` mode on the softmax of the logits.
    No torch equivalent.

    Shape: input ``(N, C, d1, ...)`` logits, target ``(N, d1, ...)`` class ids; output scalar.

    Example:
        >>> import torch, losskit
        >>> loss_fn = losskit.nn.CrossEntropyDiceLoss(dice_weight=1.0)
        >>> logits = torch.zeros(1, 2, 2, 2)
        >>> loss_fn(logits, torch.tensor([[[0, 1], [1, 0]]]))  # ln 2 + (1 - 1/2)
        tensor(1.1931)
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        dice_weight: float = 1.0,
        smooth: float = 0.0,
    ) -> None:
        super().__init__(weight, "mean")
        checks.check_label_smoothing(type(self).__name__, label_smoothing)
        checks.check_dice_weight(type(self).__name__, dice_weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.dice_weight = dice_weight
        self.smooth = smooth

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = LF.cross_entropy(
            input, target, self.weight, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing
        )
        if not self.dice_weight:
            return ce
        dice = LF.dice_loss(
            input, target, "multiclass", weight=self.weight, ignore_index=self.ignore_index, smooth=self.smooth
        )
        return ce + self.dice_weight * dice

    def settings_text(self) -> str:
        return self._settings(
            "dice_weight", ("ignore_index", -100), ("label_smoothing", 0.0), ("smooth", 0.0), ("weight", None)
        )
