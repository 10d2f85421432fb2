"""The candidate losses of ``losskit compare``, by task, under their public names."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import losskit
from losskit.errors import LossInputError
from losskit.tasks import Task

__all__ = ["DEFAULTS", "AVAILABLE", "build", "parse_losses"]

#: label smoothing used by the ``+label_smoothing`` candidates
LABEL_SMOOTHING = 0.1
#: focal loss settings (Lin et al. 2017 defaults)
FOCAL_GAMMA = 2.0
FOCAL_ALPHA = 0.25

DEFAULTS: dict[Task, tuple[str, ...]] = {
    Task.binary: ("bce_with_logits", "bce_with_logits+pos_weight", "focal"),
    Task.multiclass: ("cross_entropy", "cross_entropy+label_smoothing", "cross_entropy+class_weights", "focal"),
    Task.multilabel: ("bce_with_logits", "bce_with_logits+pos_weight", "focal"),
    Task.regression: ("mse", "l1", "huber", "smooth_l1"),
}

Builder = Callable[[torch.Tensor, int], nn.Module]


def _binary(name: str) -> Builder:
    def make(y: torch.Tensor, _: int) -> nn.Module:
        if name == "bce_with_logits":
            return losskit.nn.BCEWithLogitsLoss()
        if name == "bce_with_logits+pos_weight":
            return losskit.nn.BCEWithLogitsLoss(pos_weight=losskit.pos_weight(y))
        if name == "bce_with_logits+label_smoothing":
            return losskit.nn.BCEWithLogitsLoss(label_smoothing=LABEL_SMOOTHING)
        return losskit.nn.SigmoidFocalLoss(alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA)

    return make


def _multiclass(name: str) -> Builder:
    def make(y: torch.Tensor, k: int) -> nn.Module:
        if name == "cross_entropy":
            return losskit.nn.CrossEntropyLoss()
        if name == "cross_entropy+label_smoothing":
            return losskit.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
        if name == "cross_entropy+class_weights":
            return losskit.nn.CrossEntropyLoss(losskit.class_weights(y, num_classes=k))
        if name == "poly1":
            return losskit.nn.Poly1CrossEntropyLoss(epsilon=1.0)
        return losskit.nn.FocalLoss(gamma=FOCAL_GAMMA)

    return make


def _regression(name: str) -> Builder:
    def make(y: torch.Tensor, _: int) -> nn.Module:
        # Huber's delta as losskit.loss_for sizes it (1.345 robust std of the standardized
        # targets); smooth-L1 keeps torch's beta=1 (one std) -- with delta = beta they would be
        # the same loss up to a factor
        return {
            "mse": losskit.nn.MSELoss,
            "l1": losskit.nn.L1Loss,
            "huber": lambda: losskit.loss_for("regression", targets=y, robust=True),
            "smooth_l1": lambda: losskit.nn.SmoothL1Loss(beta=1.0),
        }[name]()

    return make


AVAILABLE: dict[Task, dict[str, Builder]] = {
    Task.binary: {n: _binary(n) for n in ("bce_with_logits", "bce_with_logits+pos_weight", "bce_with_logits+label_smoothing", "focal")},
    Task.multilabel: {n: _binary(n) for n in ("bce_with_logits", "bce_with_logits+pos_weight", "bce_with_logits+label_smoothing", "focal")},
    Task.multiclass: {
        n: _multiclass(n)
        for n in ("cross_entropy", "cross_entropy+label_smoothing", "cross_entropy+class_weights", "focal", "poly1")
    },
    Task.regression: {n: _regression(n) for n in ("mse", "l1", "huber", "smooth_l1")},
}


def parse_losses(task: Task, text: str | None) -> list[str]:
    """The candidates for ``task``: the defaults, or the comma-separated ``--losses``."""
    if text is None:
        return list(DEFAULTS[task])
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = AVAILABLE[task]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise LossInputError(
            f"--losses {text!r}: " + (f"unknown for a {task.value} task: {', '.join(unknown)}" if unknown else "no names")
            + f"; expected a comma-separated list from: {', '.join(known)}."
        )
    if len(set(names)) != len(names):
        raise LossInputError(f"--losses {text!r}: a name is repeated; expected each candidate once.")
    return names


def build(task: Task, name: str, y_train: torch.Tensor, num_outputs: int) -> nn.Module:
    """The configured loss module of candidate ``name``."""
    return AVAILABLE[task][name](y_train, num_outputs)
