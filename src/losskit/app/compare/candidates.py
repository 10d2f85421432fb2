"""The candidate losses of ``losskit compare``, built from :data:`losskit.registry.CANDIDATES`."""

from __future__ import annotations

import torch
from torch import nn

import losskit
from losskit import registry
from losskit.errors import LossInputError
from losskit.types import Task

__all__ = ["parse_losses", "build", "same_model", "plain"]


def plain(task: Task) -> str:
    """The plain loss every other candidate is tested against."""
    return registry.plain_candidate(task)


def parse_losses(task: Task, text: str | list[str] | None) -> list[str]:
    """The candidates for ``task``: the defaults, the comma-separated ``--losses``, or a list."""
    if text is None:
        return list(registry.default_candidates(task))
    if not isinstance(text, str):
        text = ",".join(text)
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


def build(
    task: Task, name: str, y_train: torch.Tensor, num_outputs: int, *, ignore_index: int | None = None
) -> nn.Module:
    """The configured loss module of candidate ``name``: its fixed options, plus the ones fitted
    on the training targets. Segmentation: every candidate ignores ``ignore_index`` pixels, and
    class weights are balanced weights from the pixel counts of the training masks."""
    candidate = registry.candidates_for(task)[name]
    if "delta" in candidate.fitted:
        module: nn.Module = losskit.loss_for("regression", targets=y_train, robust=True)
        return module
    kwargs = dict(candidate.options)
    if task == Task.segmentation and ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    if "weight" in candidate.fitted:
        kwargs["weight"] = _weights(y_train, num_outputs, ignore_index)
    if "pos_weight" in candidate.fitted:
        kwargs["pos_weight"] = losskit.pos_weight(y_train)
    module = candidate.spec.module_class(**kwargs)
    return module


def same_model(
    task: Task, name: str, y: torch.Tensor, num_outputs: int, *, ignore_index: int | None = None
) -> str | None:
    """The candidate ``name`` is the same model as, on targets ``y``: class weights that are all
    equal (balanced classes) or a ``pos_weight`` of 1 are neutral. ``None`` otherwise."""
    candidate = registry.candidates_for(task).get(name)
    if candidate is None or candidate.same_as is None:
        return None
    if "weight" in candidate.fitted:
        w = _weights(y, num_outputs, ignore_index)
        neutral = bool(torch.allclose(w, w[0].expand_as(w), rtol=1e-6, atol=0.0))
    elif "pos_weight" in candidate.fitted:
        pw = losskit.pos_weight(y)
        neutral = bool(torch.allclose(pw, torch.ones_like(pw), rtol=1e-6, atol=0.0))
    else:
        neutral = False
    return candidate.same_as if neutral else None


def _weights(y: torch.Tensor, num_outputs: int, ignore_index: int | None) -> torch.Tensor:
    """Balanced class weights of the targets (segmentation: of the mask pixels not ignored)."""
    if ignore_index is None:
        return losskit.class_weights(y, num_classes=num_outputs)
    return losskit.class_weights(y, num_classes=num_outputs, ignore_index=ignore_index)
