"""``LinearCrossEntropyLoss``: the output layer and cross-entropy in one chunked step."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from losskit import checks
from losskit import functional as LF
from losskit.nn.base import WeightedLoss
from losskit.types import Reduction

__all__ = ["LinearCrossEntropyLoss"]


class LinearCrossEntropyLoss(WeightedLoss):
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
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        reduction: Reduction = "mean",
        weight: torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        options: object | None = None,
        z_loss: float = 0.0,
        softcap: float | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(weight, reduction)
        checks.check_z_loss_and_softcap(type(self).__name__, z_loss, softcap)
        checks.check_label_smoothing("cross_entropy", label_smoothing)
        self.num_classes = num_classes
        self.out_features = tuple(out_features)
        outputs = num_classes * math.prod(self.out_features)
        #: the output layer: an nn.Linear (torch's state_dict keys), or a shared head's tensors
        self.linear: nn.Module = nn.Linear(in_features, outputs, bias=bias, device=device, dtype=dtype)
        self.options = options
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
                checks.fail(
                    "LinearCrossEntropyLoss.from_linear: bias was given together with an nn.Linear; "
                    "expected the bias to come from the layer. Drop the bias argument."
                )
            linear: nn.Module = layer
        elif isinstance(layer, nn.Parameter) and layer.dim() == 2 and (bias is None or isinstance(bias, nn.Parameter)):
            head = nn.Linear(layer.shape[1], layer.shape[0], bias=False, device="meta")
            head.weight = layer
            head.register_parameter("bias", bias)
            linear = head
        elif isinstance(layer, torch.Tensor) and layer.dim() == 2:
            # a plain tensor (e.g. scaled or tied embeddings computed in forward) is held by
            # reference, not wrapped in a new Parameter: its gradient flows back to its source
            linear = _TensorHead(layer, bias)
        else:
            got = checks.describe(layer) if isinstance(layer, torch.Tensor) else type(layer).__name__
            checks.fail(
                f"LinearCrossEntropyLoss.from_linear: layer is {got}; expected an nn.Linear or a "
                "2-D (num_classes, in_features) weight. Pass model.lm_head (or its .weight)."
            )
        module = cls(1, 1, device="meta", **kwargs)  # type: ignore[arg-type]
        module.linear = linear
        module.num_classes = int(cast(torch.Tensor, linear.weight).shape[0])
        return module

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, *, normalizer: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """``normalizer``: as :meth:`CrossEntropyLoss.forward`."""
        linear_weight = cast(torch.Tensor, self.linear.weight)
        linear_bias = cast("torch.Tensor | None", self.linear.bias)
        if self.out_features:  # (C, *out_features, D), as torch's module: K-dim classes per row
            linear_weight = linear_weight.reshape(self.num_classes, *self.out_features, linear_weight.shape[-1])
            if linear_bias is not None:
                linear_bias = linear_bias.reshape(self.num_classes, *self.out_features)
        loss, z_term = LF.linear_cross_entropy(
            input,
            linear_weight,
            target,
            linear_bias=linear_bias,
            options=self.options,
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

    def __prepare_scriptable__(self) -> nn.Module:
        checks.fail(
            "LinearCrossEntropyLoss: torch.jit.script cannot script the fused loss, got a request to script "
            "it; expected an eager or torch.compile'd module (torch 2.13's own LinearCrossEntropyLoss cannot "
            "be scripted either). Use torch.compile(model), or keep the loss eager."
        )

    def settings_text(self) -> str:
        head = (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, "
            f"bias={self.linear.bias is not None}, "
        )
        return head + self._settings(
            "reduction",
            ("ignore_index", None),
            ("label_smoothing", 0.0),
            ("out_features", ()),
            ("z_loss", 0.0),
            ("softcap", None),
            ("weight", None),
        )

    def extra_repr(self) -> str:
        # torch's LinearCrossEntropyLoss repr, field for field; losskit-only settings after them
        torch_part = (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, out_features={self.out_features}, "
            f"bias={self.linear.bias is not None}, reduction={self.reduction}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, options={self.options}"
        )
        extra = self._settings(("z_loss", 0.0), ("softcap", None), ("chunk_size", None))
        return torch_part + (", " + extra if extra else "")


class _TensorHead(nn.Module):
    """An output layer made of tensors held by reference (not Parameters), so that gradients
    reach whatever they were computed from (tied or scaled embeddings). A weight computed in a
    step's forward must be handed over again the next step."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
