"""The base of every losskit module: ``reduction`` checked once at construction, torch's
``repr`` (and a readable ``describe()``), class weights as buffers, ``explain()`` for the reasons
:func:`losskit.loss_for` records, and TorchScript through torch's twin."""

from __future__ import annotations

import inspect
from typing import Any

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


def _is_default(value: object, default: object) -> bool:
    if isinstance(value, torch.Tensor) or isinstance(default, torch.Tensor):
        return value is default
    return bool(value == default)


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
            return f"{self.describe()} was configured by hand; losskit.loss_for(...) records its reasons here."
        return "\n".join(f"- {reason}" for reason in self.reasons)

    def settings_text(self) -> str:
        """The settings that make this loss what it is, as ``name=value`` pairs."""
        return f"reduction={self.reduction!r}"

    def describe(self) -> str:
        """The loss and its settings, readable: ``CrossEntropyLoss(reduction='mean',
        label_smoothing=0.1, weight=[1, 2])`` (weights by value, long ones summarised).

        ``repr()`` is torch's -- the bare ``CrossEntropyLoss()`` -- for the losses torch has, so
        that swapping in losskit changes no printed model; ``describe()`` shows the settings.
        """
        return f"{type(self).__name__}({self.settings_text()})"

    def extra_repr(self) -> str:
        # torch's losses print bare ("CrossEntropyLoss()"); losskit's twins print the same
        twin = getattr(nn, type(self).__name__, None)
        if isinstance(twin, type) and issubclass(twin, nn.Module):
            return ""
        return self.settings_text()

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script(module)`` scripts: torch's twin of this loss with the same
        settings and buffers (the same values, by losskit's parity with torch).

        Raises:
            LossInputError: the loss has no torch twin, or a losskit-only option is set (z-loss,
                soft-capping, BCE label smoothing, ...), which TorchScript cannot express.
        """
        name = type(self).__name__
        twin_cls = getattr(nn, name, None)
        if not (isinstance(twin_cls, type) and issubclass(twin_cls, nn.Module)):
            checks.fail(
                f"{name}: torch.jit.script was asked for a loss that torch does not have; expected one of "
                "torch's losses (MSELoss, CrossEntropyLoss, ...). Use torch.compile, or keep the module eager."
            )
        ours = inspect.signature(type(self).__init__).parameters
        theirs = inspect.signature(twin_cls.__init__).parameters
        kwargs: dict[str, Any] = {}
        for arg, param in ours.items():
            if arg == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            value = getattr(self, arg, param.default)
            if arg in theirs:
                if value is not inspect.Parameter.empty:
                    kwargs[arg] = value
            elif not _is_default(value, param.default):
                checks.fail(
                    f"{name}: {arg}={value!r} is losskit-only, so torch.jit.script cannot script this loss; "
                    f"expected {arg}={param.default!r} (torch's {name} has no {arg}). Use torch.compile, or "
                    "keep the module eager."
                )
        twin = self._torch_twin(twin_cls, kwargs)
        return twin.train(self.training)

    def _torch_twin(self, twin_cls: type[nn.Module], kwargs: dict[str, Any]) -> nn.Module:
        return twin_cls(**kwargs)

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
