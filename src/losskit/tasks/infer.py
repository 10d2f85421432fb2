"""Which task the targets describe: :func:`infer_task` and its :class:`TaskGuess`."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from losskit.checks import shape_str
from losskit.errors import LossInputError
from losskit.tasks.constants import MANY_CLASSES
from losskit.tasks.labels import (
    LabelEncoder,
    _as_tensor,
    _binary_values,
    _describe_counts,
    _integral,
    _nan_check,
)
from losskit.types import Task

__all__ = ["TaskGuess", "infer_task"]


@dataclass(frozen=True)
class TaskGuess:
    """What :func:`infer_task` concluded.

    Attributes:
        task: the :class:`Task`.
        num_classes: classes (binary: 2, multiclass, token classification and segmentation:
            the class count; multilabel: labels) or, for regression, the number of outputs.
        reason: one sentence saying why (and, when ambiguous, what else it could be).
        num_outputs: the model outputs the loss expects (binary: 1).
        ambiguous: True when another task was plausible (the reason names it).
        encoder: a fitted :class:`LabelEncoder` when labels must be mapped to ``0..K-1`` first.
        layout: for token classification and segmentation with ``input``, the input layout and
            what the loss needs.
        counts: samples per class (binary, multiclass, token and segmentation ids; positives
            per label for multilabel), or ``None``.
    """

    task: Task
    num_classes: int
    reason: str
    num_outputs: int = 1
    ambiguous: bool = False
    encoder: LabelEncoder | None = field(default=None, compare=False)
    layout: str | None = None
    counts: tuple[int, ...] | None = None

    def __str__(self) -> str:
        unit = "output" if self.task == Task.regression else "class"
        plural = "" if self.num_classes == 1 else ("es" if unit == "class" else "s")
        return f"{self.task.value} ({self.num_classes} {unit}{plural}): {self.reason}"


def infer_task(target: Any, input: torch.Tensor | None = None, *, ignore_index: int = -100) -> TaskGuess:
    """Infer the learning task from the targets (and, when given, the model output's shape).

    Decides from dtype, shape and values: continuous floats are regression; one column of
    {0, 1} is binary; integer ids (or strings / categories, through a :class:`LabelEncoder`) are
    multiclass; a {0, 1} matrix with several ones per row is multilabel; ``(N, T)`` ids with
    ``(N, T, V)`` or ``(N, V, T)`` input are token classification; ``(N, H, W)`` ids with
    ``(N, C, H, W)`` input are segmentation. Ambiguous cases get the likeliest answer, and the
    reason says so.

    No torch equivalent.

    Args:
        target: a tensor, NumPy array, pandas Series / DataFrame, or list (strings allowed).
        input: the model output (only its shape and dtype are used), or ``None``.
        ignore_index: an id that marks padding in integer targets; left out of the counts.

    Returns:
        A :class:`TaskGuess` (``task``, ``num_classes``, ``reason``, ...).

    Raises:
        LossInputError: empty targets, NaN targets, or an ``input`` whose shape fits no task
            for these targets.

    Example:
        >>> import torch, losskit
        >>> guess = losskit.infer_task(torch.tensor([0, 2, 1, 2]))
        >>> guess.task == "multiclass", guess.num_classes
        (True, 3)
        >>> losskit.infer_task(torch.randint(0, 9, (4, 16)), input=torch.randn(4, 16, 9)).layout
        'input is (N, T, V) = (4, 16, 9); cross_entropy needs the classes on dim 1: pass input.transpose(1, 2), or input.flatten(0, 1) with target.flatten()'
    """
    fn = "infer_task"
    t, labels = _as_tensor(target, fn)
    if labels is not None:
        return _from_labels(labels, fn)
    assert t is not None
    if t.numel() == 0:
        raise LossInputError(
            f"{fn}: target is empty (shape {shape_str(t.shape)}); expected at least one target. Pass the training labels."
        )
    _nan_check(t, fn)
    if t.is_complex():
        raise LossInputError(f"{fn}: target is complex; expected real targets. Use target.real or target.abs().")
    if input is not None:
        if not isinstance(input, torch.Tensor):
            input = torch.as_tensor(input)
        guess = _with_input(t, input, ignore_index, fn)
        if guess is not None:
            return guess
    return _from_target(t, ignore_index)


def _from_labels(labels: list[Hashable], fn: str) -> TaskGuess:
    if not labels:
        raise LossInputError(f"{fn}: target is empty; expected at least one label. Pass the training labels.")
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in labels):
        raise LossInputError(
            f"{fn}: target has missing labels (None/NaN); expected a label for every sample. "
            "Drop those rows or fill them in."
        )
    enc = LabelEncoder().fit(labels)
    ids = enc.transform(labels)
    counts = tuple(torch.bincount(ids, minlength=len(enc)).tolist())
    k = len(enc)
    shown = ", ".join(repr(c) for c in enc.classes_[:6]) + (", ..." if k > 6 else "")
    if k <= 2:
        note = "" if k == 2 else " (only one label is present: the data cannot teach the other class)"
        return TaskGuess(
            Task.binary,
            2,
            f"non-numeric labels with {k} distinct value(s) ({shown}){note}: binary, encoded "
            f"{enc.classes_[0]!r} -> 0" + (f", {enc.classes_[1]!r} -> 1 (the positive class)" if k == 2 else ""),
            num_outputs=1,
            ambiguous=k < 2,
            encoder=enc,
            counts=counts,
        )
    return TaskGuess(
        Task.multiclass,
        k,
        f"non-numeric labels with {k} distinct values ({shown}): multiclass, encoded to ids 0..{k - 1} in sorted order",
        num_outputs=k,
        encoder=enc,
        counts=counts,
    )


def _id_counts(t: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    ids = t.reshape(-1).long()
    ids = ids[ids != ignore_index]
    if ids.numel() == 0 or int(ids.min()) < 0:
        return ids, ()
    return ids, tuple(torch.bincount(ids).tolist())


def _zero_one_matrix(t: torch.Tensor, num_outputs_hint: int | None = None) -> TaskGuess:
    """A (N, L) matrix of 0/1: multilabel, or one-hot multiclass when every row has one 1."""
    rows = t.reshape(t.shape[0], -1).float()
    per_row = rows.sum(1)
    n_labels = rows.shape[1]
    positives = tuple(int(v) for v in rows.sum(0).tolist())
    if bool((per_row == 1).all()):
        return TaskGuess(
            Task.multiclass,
            n_labels,
            f"a ({rows.shape[0]}, {n_labels}) matrix of 0/1 with exactly one 1 per row is one-hot "
            f"multiclass labels: pass target.argmax(1) (class ids) to cross_entropy",
            num_outputs=n_labels,
            counts=positives,
        )
    several = int((per_row > 1).sum())
    return TaskGuess(
        Task.multilabel,
        n_labels,
        f"a ({rows.shape[0]}, {n_labels}) matrix of 0/1 with several ones in {several} row(s) is "
        f"multilabel ({float(per_row.mean()):.2g} labels per row on average)",
        num_outputs=n_labels,
        counts=positives,
    )


def _from_target(t: torch.Tensor, ignore_index: int) -> TaskGuess:
    column = t.dim() <= 1 or (t.dim() == 2 and t.shape[1] == 1)
    if t.dtype == torch.bool:
        t = t.long()
    if column:
        flat = t.reshape(-1)
        if not flat.is_floating_point():
            return _integer_column(flat, ignore_index)
        return _float_column(flat)
    if t.dim() == 2:
        if _binary_values(t):
            return _zero_one_matrix(t)
        if t.is_floating_point():
            rows = t.double()
            if bool((rows >= 0).all()) and bool(((rows.sum(1) - 1).abs() < 1e-3).all()):
                return TaskGuess(
                    Task.multiclass,
                    t.shape[1],
                    f"rows of non-negative floats summing to 1 are class probabilities (soft "
                    f"labels) over {t.shape[1]} classes: cross_entropy takes them as they are",
                    num_outputs=t.shape[1],
                )
            return TaskGuess(
                Task.regression,
                t.shape[1],
                f"continuous float targets with {t.shape[1]} columns: multi-output regression",
                num_outputs=t.shape[1],
            )
        _, counts = _id_counts(t, ignore_index)
        k = len(counts) if counts else int(t.max()) + 1
        return TaskGuess(
            Task.token_classification,
            k,
            f"a ({t.shape[0]}, {t.shape[1]}) matrix of integer ids looks like sequences of token "
            f"labels (ids up to {k - 1}); pass the model output as input to confirm (it could also "
            "be several class columns)",
            num_outputs=k,
            ambiguous=True,
            counts=counts or None,
        )
    # three or more dims: dense per-pixel targets
    if t.is_floating_point() and not _binary_values(t):
        return TaskGuess(
            Task.regression,
            1,
            f"continuous float targets of shape {shape_str(t.shape)}: dense (per-pixel) regression",
            num_outputs=1,
        )
    _ids, counts = _id_counts(t, ignore_index)
    if _binary_values(t):
        return TaskGuess(
            Task.segmentation,
            2,
            f"0/1 masks of shape {shape_str(t.shape)}: binary segmentation (one logit per pixel "
            "with BCE-with-logits, or 2 classes with cross_entropy)",
            num_outputs=1,
            counts=counts or None,
        )
    k = len(counts) if counts else int(t.max()) + 1
    void = ""
    if counts and k == 256 and counts[255] and sum(1 for c in counts[:255] if c) < 64:
        present = [i for i, c in enumerate(counts[:255]) if c]
        k = max(present) + 1
        counts = counts[:k]
        void = "; 255 looks like the void label: pass ignore_index=255"
    return TaskGuess(
        Task.segmentation,
        k,
        f"integer ids of shape {shape_str(t.shape)} (one per pixel, ids up to {k - 1}): segmentation{void}",
        num_outputs=k,
        counts=counts or None,
    )


def _integer_column(flat: torch.Tensor, ignore_index: int) -> TaskGuess:
    ids = flat[flat != ignore_index]
    if ids.numel() == 0:
        raise LossInputError(
            f"infer_task: every target equals ignore_index={ignore_index}; expected some labels. "
            "Pass the training labels."
        )
    values = torch.unique(ids)
    k = values.numel()
    lo, hi = int(values[0]), int(values[-1])
    if lo >= 0 and hi <= 1:
        counts = tuple(torch.bincount(ids.long(), minlength=2).tolist())
        note = "" if k == 2 else " (only one value is present: the data cannot teach the other class)"
        return TaskGuess(
            Task.binary,
            2,
            f"one column of integer 0/1 labels ({_describe_counts(counts)}): binary{note}",
            num_outputs=1,
            ambiguous=k < 2,
            counts=counts,
        )
    if k == 2:
        enc = LabelEncoder().fit(values.tolist())
        counts = tuple(torch.bincount(enc.transform(ids.tolist()), minlength=2).tolist())
        return TaskGuess(
            Task.binary,
            2,
            f"one column with two distinct integers ({lo} and {hi}): binary, encoded {lo} -> 0, {hi} -> 1",
            num_outputs=1,
            encoder=enc,
            counts=counts,
        )
    contiguous = lo == 0 and hi == k - 1
    n = ids.numel()
    if k <= MANY_CLASSES or (contiguous and n >= 5 * k):
        many = (
            f"; {k} classes is many for a class column: if these are counts or measurements, use regression"
            if k > MANY_CLASSES
            else ""
        )
        if contiguous:
            counts = tuple(torch.bincount(ids.long(), minlength=k).tolist())
            return TaskGuess(
                Task.multiclass,
                k,
                f"integer class ids 0..{k - 1} ({k} classes): multiclass{many}",
                num_outputs=k,
                ambiguous=k > MANY_CLASSES,
                counts=counts,
            )
        enc = LabelEncoder().fit(values.tolist())
        counts = tuple(torch.bincount(enc.transform(ids.tolist()), minlength=k).tolist())
        return TaskGuess(
            Task.multiclass,
            k,
            f"{k} distinct integer labels from {lo} to {hi}, not 0..{k - 1}: multiclass; map them to "
            f"0..{k - 1} with the provided encoder (guess.encoder.transform) before the loss",
            num_outputs=k,
            encoder=enc,
            counts=counts,
        )
    return TaskGuess(
        Task.regression,
        1,
        f"integer targets with {k} distinct values from {lo} to {hi} (about {n / k:.1f} samples per "
        "value) look like counts or measurements: regression (if they are class ids, pass task='multiclass')",
        num_outputs=1,
        ambiguous=True,
    )


def _float_column(flat: torch.Tensor) -> TaskGuess:
    if _binary_values(flat):
        counts = tuple(torch.bincount(flat.long(), minlength=2).tolist())
        return TaskGuess(
            Task.binary,
            2,
            f"a float column holding only 0 and 1 ({_describe_counts(counts)}): most likely binary "
            "labels stored as floats (if it is a measurement, use regression)",
            num_outputs=1,
            ambiguous=True,
            counts=counts,
        )
    values = torch.unique(flat)
    k = values.numel()
    if _integral(flat) and k <= 10 and int(values[0]) == 0 and int(values[-1]) == k - 1:
        counts = tuple(torch.bincount(flat.long(), minlength=k).tolist())
        return TaskGuess(
            Task.multiclass,
            k,
            f"a float column holding only the integers 0..{k - 1}: most likely class ids stored "
            "as floats (use target.long()); if it is an ordinal score, use regression",
            num_outputs=k,
            ambiguous=True,
            counts=counts,
        )
    return TaskGuess(
        Task.regression,
        1,
        f"continuous float targets ({k} distinct values from {float(values[0]):.4g} to "
        f"{float(values[-1]):.4g}): regression",
        num_outputs=1,
    )


def _with_input(t: torch.Tensor, x: torch.Tensor, ignore_index: int, fn: str) -> TaskGuess | None:
    """Use the model output's shape; ``None`` when it adds nothing to the target-only guess."""
    ts, xs = tuple(t.shape), tuple(x.shape)
    integer = not t.is_floating_point() and t.dtype != torch.bool
    if integer and t.dim() == 2 and x.dim() == 3 and xs[0] == ts[0]:
        _, counts = _id_counts(t, ignore_index)
        if xs[1] == ts[1] and xs[2] != ts[1]:
            v = xs[2]
            layout = (
                f"input is (N, T, V) = {shape_str(xs)}; cross_entropy needs the classes on dim 1: "
                "pass input.transpose(1, 2), or input.flatten(0, 1) with target.flatten()"
            )
        elif xs[2] == ts[1]:
            v = xs[1]
            layout = f"input is (N, V, T) = {shape_str(xs)}: the layout cross_entropy expects"
        else:
            return None
        return TaskGuess(
            Task.token_classification,
            v,
            f"(N, T) = {shape_str(ts)} integer ids with a {v}-way output per position: token classification",
            num_outputs=v,
            layout=layout,
            counts=counts or None,
        )
    if integer and t.dim() >= 3 and x.dim() == t.dim() + 1 and xs[0] == ts[0]:
        _, counts = _id_counts(t, ignore_index)
        if xs[2:] == ts[1:]:
            c = xs[1]
            layout = f"input is (N, C, H, W) = {shape_str(xs)}: the layout cross_entropy expects"
        elif xs[1:-1] == ts[1:]:
            c = xs[-1]
            layout = (
                f"input is channels-last (N, H, W, C) = {shape_str(xs)}; cross_entropy needs "
                f"(N, C, H, W): pass input.movedim(-1, 1)"
            )
        else:
            return None
        return TaskGuess(
            Task.segmentation,
            c,
            f"per-pixel integer ids {shape_str(ts)} with a {c}-channel output: segmentation",
            num_outputs=c,
            layout=layout,
            counts=counts or None,
        )
    if t.dim() == 1 and x.dim() == 2 and xs[0] == ts[0] and xs[1] > 1 and (integer or t.dtype == torch.bool):
        guess = _from_target(t, ignore_index)
        c = xs[1]
        return TaskGuess(
            Task.multiclass,
            c,
            f"integer ids {shape_str(ts)} with a {c}-logit output per sample: multiclass"
            + (" (0/1 labels on a 2-logit head; one logit with BCE-with-logits is the alternative)" if c == 2 else ""),
            num_outputs=c,
            encoder=guess.encoder,
            counts=guess.counts,
        )
    if x.dim() >= 1 and xs[0] != (ts[0] if ts else 1):
        raise LossInputError(
            f"{fn}: input has shape {shape_str(xs)} and target {shape_str(ts)}; expected the same "
            "batch size first. Pass the model output for these targets."
        )
    return None
