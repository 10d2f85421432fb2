"""Classification modules with torch twins: ``BCELoss``, ``BCEWithLogitsLoss``, ``CrossEntropyLoss``, ``NLLLoss``."""

from __future__ import annotations

import torch

from losskit import checks
from losskit import functional as LF
from losskit.nn.base import WeightedLoss
from losskit.types import Reduction

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss"]


class BCELoss(WeightedLoss):
    r"""Binary cross-entropy on probabilities; see :func:`losskit.functional.binary_cross_entropy`.

    torch equivalent: :class:`torch.nn.BCELoss`.

    Shape: input ``(*)`` probabilities, target the same shape; output scalar, or ``(*)``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.BCELoss()(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
    """

    def __init__(self, weight: torch.Tensor | None = None, *, reduction: Reduction = "mean") -> None:
        super().__init__(weight, reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(WeightedLoss):
    r"""Sigmoid + binary cross-entropy on logits; see
    :func:`losskit.functional.binary_cross_entropy_with_logits`.

    torch equivalent: :class:`torch.nn.BCEWithLogitsLoss`.

    Shape: input ``(*)`` logits, target the same shape; ``pos_weight`` ``(C,)`` with
    ``C = input.shape[-1]``; output scalar, or ``(*)``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.BCEWithLogitsLoss()(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
    """

    pos_weight: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        reduction: Reduction = "mean",
        pos_weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        checks.check_label_smoothing(type(self).__name__, label_smoothing)
        self.register_buffer("pos_weight", pos_weight)
        self.label_smoothing = label_smoothing

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.binary_cross_entropy_with_logits(
            input,
            target,
            weight=self.weight,
            reduction=self.reduction,
            pos_weight=self.pos_weight,
            label_smoothing=self.label_smoothing,
        )

    def settings_text(self) -> str:
        return self._settings("reduction", ("pos_weight", None), ("label_smoothing", 0.0), ("weight", None))


class CrossEntropyLoss(WeightedLoss):
    r"""Softmax cross-entropy on logits; see :func:`losskit.functional.cross_entropy`.

    torch equivalent: :class:`torch.nn.CrossEntropyLoss` (lower peak memory).

    Shape: input ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``; target class indices ``()``,
    ``(N,)`` or ``(N, d1, ...)``, or probabilities of input's shape; output scalar, or the
    per-sample loss for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> loss_fn = losskit.nn.CrossEntropyLoss(label_smoothing=0.1)
        >>> loss_fn(torch.zeros(2, 4), torch.tensor([0, 3]))
        tensor(1.3863)
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, reduction)
        checks.check_label_smoothing("cross_entropy", label_smoothing)
        checks.check_z_loss_and_softcap(type(self).__name__, z_loss, softcap)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        #: the z-loss term of the last call alone (detached), for logging; None without z_loss
        self.last_z_loss: torch.Tensor | None = None

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, *, normalizer: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """``normalizer`` (keyword-only, losskit-only): the mean's denominator for global
        normalization (see :func:`losskit.distributed.global_normalizer`)."""
        if not self.z_loss:
            return LF.cross_entropy(
                input,
                target,
                weight=self.weight,
                ignore_index=self.ignore_index,
                reduction=self.reduction,
                label_smoothing=self.label_smoothing,
                softcap=self.softcap,
                normalizer=normalizer,
            )
        loss, z_term = LF.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            return_z_loss=True,
            normalizer=normalizer,
        )
        self.last_z_loss = z_term.detach()
        return loss

    def settings_text(self) -> str:
        return self._settings(
            "reduction",
            ("ignore_index", -100),
            ("label_smoothing", 0.0),
            ("z_loss", 0.0),
            ("softcap", None),
            ("weight", None),
        )


class NLLLoss(WeightedLoss):
    r"""Negative log-likelihood on log-probabilities; see :func:`losskit.functional.nll_loss`.

    torch equivalent: :class:`torch.nn.NLLLoss`.

    Shape: input ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` log-probabilities; target class
    indices ``()``, ``(N,)`` or ``(N, d1, ...)``; output scalar, or the per-sample loss.

    Example:
        >>> import torch, losskit
        >>> logp = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
        >>> losskit.nn.NLLLoss()(logp, torch.tensor([0]))
        tensor(0.6931)
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)
