"""The base of every losskit module: ``reduction`` checked once at construction, a readable
``repr``, class weights as buffers, and ``explain()`` for the reasons :func:`losskit.loss_for`
records."""

from __future__ import annotations

import torch
from torch import nn

from losskit import checks
from losskit.types import Reduction

__all__ = ["Loss", "WeightedLoss"]


def _values(t: torch.Tensor) -> str:
    """A short readable form of a weight vector: its values, or a summary when long."""
    flat = t.detach().flatten().float().cpu()
    if flat.numel() <= 10:
        return "[" + ", ".join(f"{float(v):.4g}" for v in flat) + "]"
    return f"<{flat.numel()} values in [{float(flat.min()):.4g}, {float(flat.max()):.4g}]>"


class Loss(nn.Module):
    def __init__(self, reduction: Reduction) -> None:
        super().__init__()
        checks.check_reduction(type(self).__name__, reduction)
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


class WeightedLoss(Loss):
    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None, reduction: Reduction) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)
