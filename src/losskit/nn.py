"""``torch.nn``-style loss modules. Each ``forward`` is one call into :mod:`losskit.functional`.

Constructor arguments are torch's, without the deprecated ``size_average`` / ``reduce``.
Where torch had those deprecated slots before other arguments, the arguments after them are
keyword-only here, so a positional call that worked in torch either means the same thing or
fails loudly -- it never silently binds a value to the wrong argument. Weights are registered
as buffers, so they follow ``.to(device)`` and live in ``state_dict`` like torch's.
"""

from __future__ import annotations

import torch
from torch import nn

from losskit import functional as LF
from losskit.checks import check_label_smoothing, check_reduction, check_z_loss_and_softcap
from losskit.errors import LossInputError

__all__ = [
    "MSELoss",
    "L1Loss",
    "HuberLoss",
    "SmoothL1Loss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "LinearCrossEntropyLoss",
    "SigmoidFocalLoss",
    "FocalLoss",
    "Poly1CrossEntropyLoss",
    "DiceLoss",
    "TverskyLoss",
    "CrossEntropyDiceLoss",
]


def _values(t: torch.Tensor) -> str:
    """A short readable form of a weight vector: its values, or a summary when long."""
    flat = t.detach().flatten().float().cpu()
    if flat.numel() <= 10:
        return "[" + ", ".join(f"{float(v):.4g}" for v in flat) + "]"
    return f"<{flat.numel()} values in [{float(flat.min()):.4g}, {float(flat.max()):.4g}]>"


class _Loss(nn.Module):
    def __init__(self, reduction: str) -> None:
        super().__init__()
        check_reduction(type(self).__name__, reduction)
        self.reduction = reduction
        #: why this loss was configured as it is (filled by :func:`losskit.loss_for`)
        self.reasons: list[str] = []

    def explain(self) -> str:
        """The reasons for this loss and its configuration, in plain words, one per line."""
        if not self.reasons:
            return f"{self!r} was configured by hand; losskit.loss_for(...) records its reasons here."
        return "\n".join(f"- {reason}" for reason in self.reasons)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def _settings(self, *fields: str | tuple[str, object]) -> str:
        """``name=value`` for each field: a bare name is always shown, ``(name, default)`` only
        when the value differs from the default; tensors as their values, strings quoted."""
        parts = []
        for field in fields:
            name, default, always = (field, None, True) if isinstance(field, str) else (*field, False)
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                parts.append(f"{name}={_values(value)}")
            elif always or value != default:
                parts.append(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}")
        return ", ".join(parts)


class _WeightedLoss(_Loss):
    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None, reduction: str) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    r"""Mean squared error, :math:`\ell_i = (x_i - y_i)^2`; see :func:`losskit.functional.mse_loss`.

    torch equivalent: :class:`torch.nn.MSELoss`.

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.MSELoss()(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(2.)
    """

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    r"""Mean absolute error, :math:`\ell_i = |x_i - y_i|`; see :func:`losskit.functional.l1_loss`.

    torch equivalent: :class:`torch.nn.L1Loss`.

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.L1Loss()(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(1.)
    """

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.l1_loss(input, target, reduction=self.reduction)


class HuberLoss(_Loss):
    r"""Huber loss with threshold ``delta``; see :func:`losskit.functional.huber_loss`.

    torch equivalent: :class:`torch.nn.HuberLoss` (same positional order).

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.HuberLoss(delta=1.0)(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0]))
        tensor(1.3125)
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        if not delta > 0:
            LF.huber_loss(torch.zeros(1), torch.zeros(1), delta=delta)  # raises the standard error
        self.delta = delta

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.huber_loss(input, target, reduction=self.reduction, delta=self.delta)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"


class SmoothL1Loss(_Loss):
    r"""Smooth L1 loss with threshold ``beta``; see :func:`losskit.functional.smooth_l1_loss`.

    torch equivalent: :class:`torch.nn.SmoothL1Loss`.

    Shape: input ``(*)``, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.SmoothL1Loss()(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0]))
        tensor(1.3125)
    """

    def __init__(self, *, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        if not beta >= 0:
            LF.smooth_l1_loss(torch.zeros(1), torch.zeros(1), beta=beta)  # raises the standard error
        self.beta = beta

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, beta={self.beta}"


class BCELoss(_WeightedLoss):
    r"""Binary cross-entropy on probabilities; see :func:`losskit.functional.binary_cross_entropy`.

    torch equivalent: :class:`torch.nn.BCELoss`.

    Shape: input ``(*)`` probabilities, target the same shape; output scalar, or ``(*)``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.BCELoss()(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
    """

    def __init__(self, weight: torch.Tensor | None = None, *, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
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
        reduction: str = "mean",
        pos_weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        check_label_smoothing(type(self).__name__, label_smoothing)
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

    def extra_repr(self) -> str:
        return self._settings("reduction", ("pos_weight", None), ("label_smoothing", 0.0), ("weight", None))


class CrossEntropyLoss(_WeightedLoss):
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
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, reduction)
        check_label_smoothing("cross_entropy", label_smoothing)
        check_z_loss_and_softcap(type(self).__name__, z_loss, softcap)
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

    def extra_repr(self) -> str:
        return self._settings("reduction", ("ignore_index", -100), ("label_smoothing", 0.0), ("z_loss", 0.0), ("softcap", None), ("weight", None))


class NLLLoss(_WeightedLoss):
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
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.nll_loss(
            input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction
        )


class LinearCrossEntropyLoss(_WeightedLoss):
    r"""Output layer + cross-entropy in one chunked step; see
    :func:`losskit.functional.linear_cross_entropy`.

    Owns its output layer as ``self.linear`` (an ``nn.Linear(in_features, num_classes)``, the
    same ``state_dict`` keys as torch's module), or shares an existing one:
    :meth:`from_linear` takes a model's LM head (``nn.Linear``) or a bare weight (tied
    embeddings), without copying it.

    torch equivalent: :class:`torch.nn.LinearCrossEntropyLoss` (torch 2.13), plus ``z_loss``
    and ``softcap``. After each call ``last_z_loss`` holds the z-loss term alone (detached),
    for logging.

    Shape: input ``(N, D)`` or ``(B, T, D)``; target ``(N,)`` or ``(B, T)``; output scalar, or
    the per-token loss for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> head = torch.nn.Linear(16, 100, bias=False)
        >>> loss_fn = losskit.nn.LinearCrossEntropyLoss.from_linear(head, z_loss=1e-4)
        >>> loss = loss_fn(torch.randn(2, 5, 16), torch.randint(0, 100, (2, 5)))
        >>> loss.backward(); head.weight.grad.shape
        torch.Size([100, 16])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(weight, reduction)
        check_z_loss_and_softcap(type(self).__name__, z_loss, softcap)
        check_label_smoothing("cross_entropy", label_smoothing)
        self.linear = nn.Linear(in_features, num_classes, bias=bias, device=device, dtype=dtype)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.chunk_size = chunk_size
        self.last_z_loss: torch.Tensor | None = None

    @classmethod
    def from_linear(
        cls, layer: nn.Linear | torch.Tensor, bias: torch.Tensor | None = None, **kwargs: object
    ) -> LinearCrossEntropyLoss:
        """A loss that uses ``layer``'s parameters (shared, not copied): an ``nn.Linear`` or a
        ``(V, D)`` weight such as a tied embedding matrix (then ``bias`` optionally)."""
        if isinstance(layer, nn.Linear):
            if bias is not None:
                from losskit.checks import fail

                fail(
                    "LinearCrossEntropyLoss.from_linear: bias was given together with an nn.Linear; "
                    "expected the bias to come from the layer. Drop the bias argument."
                )
            linear = layer
        elif isinstance(layer, torch.Tensor) and layer.dim() == 2:
            linear = nn.Linear(layer.shape[1], layer.shape[0], bias=False, device="meta")
            linear.weight = layer if isinstance(layer, nn.Parameter) else nn.Parameter(layer)
            if bias is not None:
                linear.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias)
        else:
            from losskit.checks import describe, fail

            got = describe(layer) if isinstance(layer, torch.Tensor) else type(layer).__name__
            fail(
                f"LinearCrossEntropyLoss.from_linear: layer is {got}; expected an nn.Linear or a "
                "2-D (num_classes, in_features) weight. Pass model.lm_head (or its .weight)."
            )
        module = cls(1, 1, device="meta", **kwargs)  # type: ignore[arg-type]
        module.linear = linear
        return module

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, *, normalizer: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """``normalizer``: as :meth:`CrossEntropyLoss.forward`."""
        loss, z_term = LF.linear_cross_entropy(
            input,
            self.linear.weight,
            target,
            linear_bias=self.linear.bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            chunk_size=self.chunk_size,
            return_z_loss=True,
            normalizer=normalizer,
        )
        self.last_z_loss = z_term.detach()
        return loss

    def extra_repr(self) -> str:
        head = (
            f"in_features={self.linear.in_features}, num_classes={self.linear.out_features}, "
            f"bias={self.linear.bias is not None}, "
        )
        return head + self._settings("reduction", ("ignore_index", -100), ("label_smoothing", 0.0), ("z_loss", 0.0), ("softcap", None), ("weight", None))


# --------------------------------------------------------------------------- extras torch lacks


class SigmoidFocalLoss(_Loss):
    r"""Binary / multi-label focal loss on logits; see :func:`losskit.functional.sigmoid_focal_loss`.

    No torch equivalent (torchvision's ``sigmoid_focal_loss`` as a module; the module's default
    reduction is ``"mean"``, like every loss module).

    Shape: input ``(*)`` logits, target the same shape; output scalar, or ``(*)`` for ``"none"``.

    Example:
        >>> import torch, losskit
        >>> losskit.nn.SigmoidFocalLoss()(torch.tensor([0.0]), torch.tensor([1.0]))
        tensor(0.0433)
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, *, reduction: str = "mean") -> None:
        super().__init__(reduction)
        LF.sigmoid_focal_loss(torch.zeros(1), torch.zeros(1), alpha, gamma)  # validates alpha, gamma
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.sigmoid_focal_loss(input, target, self.alpha, self.gamma, self.reduction)

    def extra_repr(self) -> str:
        return self._settings("alpha", "gamma", "reduction")


class FocalLoss(_WeightedLoss):
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
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        LF.focal_loss(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), gamma=gamma)  # validates gamma
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.focal_loss(
            input, target, self.weight, gamma=self.gamma, ignore_index=self.ignore_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return self._settings("gamma", "reduction", ("ignore_index", -100), ("weight", None))


class Poly1CrossEntropyLoss(_WeightedLoss):
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
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        check_label_smoothing(type(self).__name__, label_smoothing)
        LF.poly1_cross_entropy(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), epsilon=epsilon)  # validates
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

    def extra_repr(self) -> str:
        return self._settings("epsilon", "reduction", ("label_smoothing", 0.0), ("ignore_index", -100), ("weight", None))


class DiceLoss(_WeightedLoss):
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
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        from losskit.functional.segmentation import _check_options

        _check_options(type(self).__name__, mode, smooth, eps, reduction)
        self.mode = mode
        self.from_logits = from_logits
        self.smooth = smooth
        self.eps = eps
        self.ignore_index = ignore_index
        self.log_loss = log_loss

    def _kwargs(self) -> dict:
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

    def extra_repr(self) -> str:
        return self._settings(
            "mode", "reduction", ("from_logits", True), ("smooth", 0.0), ("ignore_index", None), ("log_loss", False),
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

    def __init__(self, mode: str = "multiclass", *, alpha: float = 0.5, beta: float = 0.5, **kwargs) -> None:
        super().__init__(mode, **kwargs)
        LF.tversky_loss(torch.zeros(1, 1), torch.zeros(1, 1), "binary", alpha=alpha, beta=beta)  # validates
        self.alpha = alpha
        self.beta = beta

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LF.tversky_loss(input, target, self.mode, alpha=self.alpha, beta=self.beta, **self._kwargs())

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, " + super().extra_repr()


class CrossEntropyDiceLoss(_WeightedLoss):
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
        check_label_smoothing(type(self).__name__, label_smoothing)
        if not dice_weight >= 0:
            raise LossInputError(
                f"CrossEntropyDiceLoss: dice_weight is {dice_weight!r}; expected a number >= 0. "
                "Pass e.g. dice_weight=1.0."
            )
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

    def extra_repr(self) -> str:
        return self._settings(
            "dice_weight", ("ignore_index", -100), ("label_smoothing", 0.0), ("smooth", 0.0), ("weight", None)
        )
