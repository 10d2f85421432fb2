"""The candidate losses of ``losskit compare``, built from :data:`losskit.registry.CANDIDATES`."""

from __future__ import annotations

import torch
from torch import nn

import losskit
from losskit import registry
from losskit.errors import LossInputError
from losskit.types import Task

__all__ = ["parse_losses", "build"]


def parse_losses(task: Task, text: str | None) -> list[str]:
    """The candidates for ``task``: the defaults, or the comma-separated ``--losses``."""
    if text is None:
        return list(registry.default_candidates(task))
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = registry.candidates_for(task)
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise LossInputError(
            f"--losses {text!r}: "
            + (f"unknown for a {task.value} task: {', '.join(unknown)}" if unknown else "no names")
            + f"; expected a comma-separated list from: {', '.join(known)}."
        )
    if len(set(names)) != len(names):
        raise LossInputError(f"--losses {text!r}: a name is repeated; expected each candidate once.")
    return names


def build(task: Task, name: str, y_train: torch.Tensor, num_outputs: int) -> nn.Module:
    """The configured loss module of candidate ``name``: its fixed options, plus the ones fitted
    on the training targets."""
    candidate = registry.candidates_for(task)[name]
    if "delta" in candidate.fitted:
        module: nn.Module = losskit.loss_for("regression", targets=y_train, robust=True)
        return module
    kwargs = dict(candidate.options)
    if "weight" in candidate.fitted:
        kwargs["weight"] = losskit.class_weights(y_train, num_classes=num_outputs)
    if "pos_weight" in candidate.fitted:
        kwargs["pos_weight"] = losskit.pos_weight(y_train)
    module = candidate.spec.module_class(**kwargs)
    return module
