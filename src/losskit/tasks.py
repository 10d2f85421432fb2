"""Choosing the loss: infer the task from the targets, weigh the classes, configure the loss.

* :class:`Task` and :func:`infer_task` -- which of regression, binary, multiclass, multilabel,
  token classification or segmentation the targets (and optionally the model output) describe,
  with the reason in one sentence.
* :func:`class_weights` and :func:`pos_weight` -- weights from label counts ("balanced" as
  scikit-learn, "effective" as Cui et al. 2019).
* :func:`loss_for` -- a configured losskit module for a task, whose ``explain()`` says why.
* :class:`LabelEncoder` -- strings or arbitrary labels to ``0..K-1`` ids and back.
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from losskit.checks import shape_str
from losskit.errors import LossInputError, LossUsageWarning

__all__ = [
    "Task",
    "TaskGuess",
    "LabelEncoder",
    "infer_task",
    "class_weights",
    "pos_weight",
    "loss_for",
    "IMBALANCE_RATIO_THRESHOLD",
]

#: ``imbalance="auto"`` weighs classes when the largest class count is at least this many
#: times the smallest (3:1 is where class weighting starts to pay off in practice).
IMBALANCE_RATIO_THRESHOLD = 3.0
#: integer targets with more distinct values than this are ambiguous (class ids or counts?)
MANY_CLASSES = 50
#: with ``imbalance="auto"`` no class weights for vocabulary-sized outputs (language modelling)
VOCABULARY_SIZE = 1000
#: a target is an outlier when its modified z-score exceeds 3.5 (Iglewicz and Hoaglin 1993)
OUTLIER_Z = 3.5
#: more than this fraction of outliers counts as heavy tails and switches MSE to Huber
OUTLIER_FRACTION = 0.01
#: Huber's tuning constant: 95% efficiency under Gaussian noise (Huber 1964)
HUBER_K = 1.345


class Task(str, enum.Enum):
    """The learning task; members compare equal to their lower-case names (``Task.binary == "binary"``)."""

    regression = "regression"
    binary = "binary"
    multiclass = "multiclass"
    multilabel = "multilabel"
    token_classification = "token_classification"
    segmentation = "segmentation"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Task | str) -> Task:
        """``Task`` from a member or its name; a clear error for anything else."""
        if isinstance(value, Task):
            return value
        try:
            return cls(str(value).lower().replace("-", "_"))
        except ValueError:
            names = ", ".join(repr(t.value) for t in cls)
            raise LossInputError(
                f"task is {value!r}; expected one of {names} (or a losskit.Task). "
                "Use losskit.infer_task(targets) when unsure."
            ) from None


class LabelEncoder:
    """Map arbitrary labels (strings, categories, sparse integers) to ids ``0..K-1`` and back.

    Labels are sorted when they can be (so ``"no" -> 0, "yes" -> 1``), else kept in order of
    first appearance.

    Example:
        >>> enc = LabelEncoder().fit(["cat", "dog", "cat", "bird"])
        >>> enc.classes_
        ['bird', 'cat', 'dog']
        >>> enc.transform(["dog", "bird"])
        tensor([2, 0])
        >>> enc.inverse_transform(torch.tensor([1]))
        ['cat']
    """

    def __init__(self) -> None:
        self.classes_: list[Hashable] = []
        self._index: dict[Hashable, int] = {}

    def fit(self, labels: Iterable[Hashable]) -> LabelEncoder:
        seen = list(dict.fromkeys(_python_values(labels)))
        try:
            seen = sorted(seen)
        except TypeError:
            pass
        self.classes_ = seen
        self._index = {label: i for i, label in enumerate(seen)}
        return self

    def transform(self, labels: Iterable[Hashable]) -> torch.Tensor:
        values = _python_values(labels)
        unknown = [v for v in dict.fromkeys(values) if v not in self._index]
        if unknown:
            raise LossInputError(
                f"LabelEncoder.transform: labels {unknown[:5]!r} were not seen by fit; expected "
                f"labels among {self.classes_[:10]!r}. Fit the encoder on all splits' labels."
            )
        return torch.tensor([self._index[v] for v in values], dtype=torch.long)

    def fit_transform(self, labels: Iterable[Hashable]) -> torch.Tensor:
        values = _python_values(labels)
        return self.fit(values).transform(values)

    def inverse_transform(self, ids: torch.Tensor | Sequence[int]) -> list[Hashable]:
        return [self.classes_[int(i)] for i in torch.as_tensor(ids).reshape(-1)]

    def __len__(self) -> int:
        return len(self.classes_)

    def __repr__(self) -> str:
        return f"LabelEncoder(classes={self.classes_!r})"


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


# --------------------------------------------------------------------------- helpers


def _python_values(labels: Iterable[Hashable]) -> list[Hashable]:
    if isinstance(labels, torch.Tensor):
        return labels.reshape(-1).tolist()
    if hasattr(labels, "tolist"):  # numpy arrays, pandas Series / Categorical
        values = labels.tolist()
        return values if isinstance(values, list) else [values]
    return list(labels)


def _as_tensor(target: Any, fn: str) -> tuple[torch.Tensor | None, list[Hashable] | None]:
    """A numeric tensor, or ``(None, labels)`` for strings / objects / categories."""
    if isinstance(target, torch.Tensor):
        return target.detach(), None
    if hasattr(target, "dtype") and str(getattr(target, "dtype", "")) in ("category", "object", "string", "str"):
        return None, _python_values(target)
    try:
        return torch.as_tensor(target if not hasattr(target, "to_numpy") else target.to_numpy()), None
    except (TypeError, ValueError, RuntimeError):
        values = _python_values(target)
        if values and isinstance(values[0], (list, tuple)):
            raise LossInputError(
                f"{fn}: target is a nested sequence of non-numbers; expected a tensor, an array, or "
                "a 1-D list of labels. Convert it with torch.tensor(...) or pass one label per sample."
            ) from None
        return None, values


def _describe_counts(counts: Sequence[int], names: Sequence[Hashable] | None = None) -> str:
    names = names if names is not None else range(len(counts))
    pairs = [f"{n}: {c}" for n, c in zip(names, counts)]
    return ", ".join(pairs[:8]) + (", ..." if len(pairs) > 8 else "")


def _binary_values(t: torch.Tensor) -> bool:
    return t.numel() > 0 and bool(((t == 0) | (t == 1)).all())


def _integral(t: torch.Tensor) -> bool:
    return bool((t == t.round()).all())


def _nan_check(t: torch.Tensor, fn: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise LossInputError(
            f"{fn}: target has {bad} missing or infinite value(s) (NaN/Inf); expected finite "
            "targets. Drop those rows or impute them before choosing a loss."
        )


# --------------------------------------------------------------------------- infer_task


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
        raise LossInputError(f"{fn}: target is empty (shape {shape_str(t.shape)}); expected at least one target. Pass the training labels.")
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
            Task.binary, 2,
            f"non-numeric labels with {k} distinct value(s) ({shown}){note}: binary, encoded "
            f"{enc.classes_[0]!r} -> 0" + (f", {enc.classes_[1]!r} -> 1 (the positive class)" if k == 2 else ""),
            num_outputs=1, ambiguous=k < 2, encoder=enc, counts=counts,
        )
    return TaskGuess(
        Task.multiclass, k,
        f"non-numeric labels with {k} distinct values ({shown}): multiclass, encoded to ids 0..{k - 1} in sorted order",
        num_outputs=k, encoder=enc, counts=counts,
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
            Task.multiclass, n_labels,
            f"a ({rows.shape[0]}, {n_labels}) matrix of 0/1 with exactly one 1 per row is one-hot "
            f"multiclass labels: pass target.argmax(1) (class ids) to cross_entropy",
            num_outputs=n_labels, counts=positives,
        )
    several = int((per_row > 1).sum())
    return TaskGuess(
        Task.multilabel, n_labels,
        f"a ({rows.shape[0]}, {n_labels}) matrix of 0/1 with several ones in {several} row(s) is "
        f"multilabel ({float(per_row.mean()):.2g} labels per row on average)",
        num_outputs=n_labels, counts=positives,
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
                    Task.multiclass, t.shape[1],
                    f"rows of non-negative floats summing to 1 are class probabilities (soft "
                    f"labels) over {t.shape[1]} classes: cross_entropy takes them as they are",
                    num_outputs=t.shape[1],
                )
            return TaskGuess(
                Task.regression, t.shape[1],
                f"continuous float targets with {t.shape[1]} columns: multi-output regression",
                num_outputs=t.shape[1],
            )
        ids, counts = _id_counts(t, ignore_index)
        k = len(counts) if counts else int(t.max()) + 1
        return TaskGuess(
            Task.token_classification, k,
            f"a ({t.shape[0]}, {t.shape[1]}) matrix of integer ids looks like sequences of token "
            f"labels (ids up to {k - 1}); pass the model output as input to confirm (it could also "
            "be several class columns)",
            num_outputs=k, ambiguous=True, counts=counts or None,
        )
    # three or more dims: dense per-pixel targets
    if t.is_floating_point() and not _binary_values(t):
        return TaskGuess(
            Task.regression, 1,
            f"continuous float targets of shape {shape_str(t.shape)}: dense (per-pixel) regression",
            num_outputs=1,
        )
    ids, counts = _id_counts(t, ignore_index)
    if _binary_values(t):
        return TaskGuess(
            Task.segmentation, 2,
            f"0/1 masks of shape {shape_str(t.shape)}: binary segmentation (one logit per pixel "
            "with BCE-with-logits, or 2 classes with cross_entropy)",
            num_outputs=1, counts=counts or None,
        )
    k = len(counts) if counts else int(t.max()) + 1
    void = ""
    if counts and k == 256 and counts[255] and sum(1 for c in counts[:255] if c) < 64:
        present = [i for i, c in enumerate(counts[:255]) if c]
        k = max(present) + 1
        counts = counts[:k]
        void = "; 255 looks like the void label: pass ignore_index=255"
    return TaskGuess(
        Task.segmentation, k,
        f"integer ids of shape {shape_str(t.shape)} (one per pixel, ids up to {k - 1}): "
        f"segmentation{void}",
        num_outputs=k, counts=counts or None,
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
            Task.binary, 2, f"one column of integer 0/1 labels ({_describe_counts(counts)}): binary{note}",
            num_outputs=1, ambiguous=k < 2, counts=counts,
        )
    if k == 2:
        enc = LabelEncoder().fit(values.tolist())
        counts = tuple(torch.bincount(enc.transform(ids.tolist()), minlength=2).tolist())
        return TaskGuess(
            Task.binary, 2,
            f"one column with two distinct integers ({lo} and {hi}): binary, encoded {lo} -> 0, {hi} -> 1",
            num_outputs=1, encoder=enc, counts=counts,
        )
    contiguous = lo == 0 and hi == k - 1
    n = ids.numel()
    if k <= MANY_CLASSES or (contiguous and n >= 5 * k):
        many = f"; {k} classes is many for a class column: if these are counts or measurements, use regression" if k > MANY_CLASSES else ""
        if contiguous:
            counts = tuple(torch.bincount(ids.long(), minlength=k).tolist())
            return TaskGuess(
                Task.multiclass, k,
                f"integer class ids 0..{k - 1} ({k} classes): multiclass{many}",
                num_outputs=k, ambiguous=k > MANY_CLASSES, counts=counts,
            )
        enc = LabelEncoder().fit(values.tolist())
        counts = tuple(torch.bincount(enc.transform(ids.tolist()), minlength=k).tolist())
        return TaskGuess(
            Task.multiclass, k,
            f"{k} distinct integer labels from {lo} to {hi}, not 0..{k - 1}: multiclass; map them to "
            f"0..{k - 1} with the provided encoder (guess.encoder.transform) before the loss",
            num_outputs=k, encoder=enc, counts=counts,
        )
    return TaskGuess(
        Task.regression, 1,
        f"integer targets with {k} distinct values from {lo} to {hi} (about {n / k:.1f} samples per "
        "value) look like counts or measurements: regression (if they are class ids, pass task='multiclass')",
        num_outputs=1, ambiguous=True,
    )


def _float_column(flat: torch.Tensor) -> TaskGuess:
    if _binary_values(flat):
        counts = tuple(torch.bincount(flat.long(), minlength=2).tolist())
        return TaskGuess(
            Task.binary, 2,
            f"a float column holding only 0 and 1 ({_describe_counts(counts)}): most likely binary "
            "labels stored as floats (if it is a measurement, use regression)",
            num_outputs=1, ambiguous=True, counts=counts,
        )
    values = torch.unique(flat)
    k = values.numel()
    if _integral(flat) and k <= 10 and int(values[0]) == 0 and int(values[-1]) == k - 1:
        counts = tuple(torch.bincount(flat.long(), minlength=k).tolist())
        return TaskGuess(
            Task.multiclass, k,
            f"a float column holding only the integers 0..{k - 1}: most likely class ids stored "
            "as floats (use target.long()); if it is an ordinal score, use regression",
            num_outputs=k, ambiguous=True, counts=counts,
        )
    return TaskGuess(
        Task.regression, 1,
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
            Task.token_classification, v,
            f"(N, T) = {shape_str(ts)} integer ids with a {v}-way output per position: token classification",
            num_outputs=v, layout=layout, counts=counts or None,
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
            Task.segmentation, c,
            f"per-pixel integer ids {shape_str(ts)} with a {c}-channel output: segmentation",
            num_outputs=c, layout=layout, counts=counts or None,
        )
    if t.dim() == 1 and x.dim() == 2 and xs[0] == ts[0] and xs[1] > 1 and (integer or t.dtype == torch.bool):
        guess = _from_target(t, ignore_index)
        c = xs[1]
        return TaskGuess(
            Task.multiclass, c,
            f"integer ids {shape_str(ts)} with a {c}-logit output per sample: multiclass"
            + (" (0/1 labels on a 2-logit head; one logit with BCE-with-logits is the alternative)" if c == 2 else ""),
            num_outputs=c, encoder=guess.encoder, counts=guess.counts,
        )
    if x.dim() >= 1 and xs[0] != (ts[0] if ts else 1):
        raise LossInputError(
            f"{fn}: input has shape {shape_str(xs)} and target {shape_str(ts)}; expected the same "
            "batch size first. Pass the model output for these targets."
        )
    return None


# --------------------------------------------------------------------------- class weights


def _id_tensor(targets: Any, fn: str, ignore_index: int) -> tuple[torch.Tensor, list[Hashable] | None]:
    t, labels = _as_tensor(targets, fn)
    if labels is not None:
        enc = LabelEncoder().fit(labels)
        return enc.transform(labels), enc.classes_
    assert t is not None
    if t.is_floating_point():
        if not _integral(t):
            raise LossInputError(
                f"{fn}: targets have non-integer float values; expected class ids (integers). "
                "For regression targets there are no class weights; use task='regression'."
            )
        t = t.long()
    ids = t.reshape(-1).long()
    ids = ids[ids != ignore_index]
    if ids.numel() == 0:
        raise LossInputError(f"{fn}: targets are empty (or all ignore_index); expected class ids. Pass the training labels.")
    if int(ids.min()) < 0:
        raise LossInputError(
            f"{fn}: targets contain negative ids (e.g. {int(ids.min())}); expected ids 0..C-1 or "
            f"ignore_index={ignore_index}. Map labels with losskit.LabelEncoder, or pass ignore_index."
        )
    return ids, None


def class_weights(
    targets: Any,
    method: str = "balanced",
    *,
    beta: float = 0.999,
    num_classes: int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    r"""Per-class weights from label counts, for ``weight=`` of the cross-entropy family.

    * ``"balanced"``: :math:`w_c = n / (C \cdot n_c)` -- scikit-learn's
      ``compute_class_weight("balanced")``; a balanced data set gets all ones.
    * ``"effective"``: :math:`w_c \propto (1 - \beta) / (1 - \beta^{n_c})`, the inverse
      effective number of samples (Cui et al. 2019), normalized to sum to :math:`C`.
    * ``"none"``: all ones.

    No torch equivalent.

    Args:
        targets: class ids of any shape (tensor, array or list; strings are encoded in sorted
            order, as :class:`LabelEncoder`).
        method: ``"balanced"`` | ``"effective"`` | ``"none"``.
        beta: the effective-number hyper-parameter in ``[0, 1)`` (0.9 .. 0.9999 in the paper).
        num_classes: the number of classes ``C`` (default: largest id + 1).
        ignore_index: id left out of the counts (padding, void pixels).

    Returns:
        A float32 tensor ``(C,)``. A class with no samples gets the largest weight of the
        present classes (and a :class:`~losskit.LossUsageWarning`).

    Raises:
        LossInputError: unknown ``method``, ``beta`` outside ``[0, 1)``, non-integer or
            negative ids, ids ``>= num_classes``.

    References:
        King and Zeng, "Logistic Regression in Rare Events Data", 2001 (balanced weights);
        Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.

    Example:
        >>> import torch, losskit
        >>> losskit.class_weights(torch.tensor([0, 0, 0, 1]))     # 4 / (2 * 3), 4 / (2 * 1)
        tensor([0.6667, 2.0000])
    """
    fn = "class_weights"
    if method not in ("balanced", "effective", "none"):
        raise LossInputError(
            f"{fn}: method is {method!r}; expected 'balanced', 'effective' or 'none'. "
            "Pass method='balanced' (n / (C * count)) or method='effective' (Cui et al. 2019)."
        )
    if not (isinstance(beta, (int, float)) and 0 <= beta < 1):
        raise LossInputError(f"{fn}: beta is {beta!r}; expected a number in [0, 1), e.g. 0.999. Pass beta=0.999.")
    ids, _ = _id_tensor(targets, fn, ignore_index)
    hi = int(ids.max())
    if num_classes is None:
        num_classes = hi + 1
    elif hi >= num_classes:
        raise LossInputError(
            f"{fn}: targets contain id {hi} but num_classes={num_classes}; expected ids below "
            f"num_classes. Pass num_classes={hi + 1} or remap the labels."
        )
    counts = torch.bincount(ids, minlength=num_classes).double()
    return _weights_from_counts(counts, method, beta, fn)


def _weights_from_counts(counts: torch.Tensor, method: str, beta: float, fn: str) -> torch.Tensor:
    counts = counts.double()
    k = counts.numel()
    present = counts > 0
    if method == "none":
        return torch.ones(k)
    if method == "balanced":
        weights = counts.sum() / (k * counts.clamp_min(1))
    else:
        effective = (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)) / (1.0 - beta)
        weights = 1.0 / effective.clamp_min(1e-12)
        weights = torch.where(present, weights, torch.zeros_like(weights))
        weights = weights * present.sum() / weights.sum()
    if not bool(present.all()):
        missing = torch.nonzero(~present).flatten().tolist()
        weights = torch.where(present, weights, weights[present].max())
        warnings.warn(
            f"{fn}: class(es) {missing[:10]} have no samples in the targets; they get the largest "
            "weight of the present classes. Check that the labels cover every class.",
            LossUsageWarning,
            stacklevel=3,
        )
    return weights.float()


def pos_weight(targets: Any) -> torch.Tensor:
    r"""``pos_weight`` for :func:`~losskit.functional.binary_cross_entropy_with_logits`: negatives / positives.

    .. math:: p_c = \frac{\#\{y_{\cdot c} = 0\}}{\#\{y_{\cdot c} = 1\}}

    so positives and negatives of each label weigh the same in total (the recipe in
    torch's ``BCEWithLogitsLoss`` documentation). No torch equivalent.

    Args:
        targets: 0/1 labels ``(N,)`` (binary) or ``(N, L)`` (multilabel); bool, int or float.

    Returns:
        A float32 tensor ``(1,)`` for ``(N,)`` targets, ``(L,)`` for ``(N, L)``. A label that
        is never (or always) positive gets 1 and a :class:`~losskit.LossUsageWarning`.

    Raises:
        LossInputError: values other than 0/1, or more than 2 dims.

    Example:
        >>> import torch, losskit
        >>> losskit.pos_weight(torch.tensor([[1, 0], [0, 0], [0, 1], [0, 1]]))
        tensor([3., 1.])
    """
    fn = "pos_weight"
    t, labels = _as_tensor(targets, fn)
    if labels is not None or t is None:
        raise LossInputError(
            f"{fn}: targets are not numeric; expected 0/1 labels of shape (N,) or (N, L). "
            "Encode them first, e.g. losskit.LabelEncoder().fit_transform(labels)."
        )
    if t.dim() > 2 or t.numel() == 0 or not _binary_values(t):
        raise LossInputError(
            f"{fn}: targets have shape {shape_str(t.shape)}"
            + ("" if t.numel() == 0 or _binary_values(t) else " and values other than 0/1")
            + "; expected 0/1 labels of shape (N,) or (N, L). For class ids use "
            "losskit.class_weights(targets)."
        )
    rows = t.reshape(t.shape[0], -1).double() if t.dim() == 2 else t.reshape(-1, 1).double()
    positives = rows.sum(0)
    negatives = rows.shape[0] - positives
    weights = negatives / positives.clamp_min(1)
    degenerate = (positives == 0) | (negatives == 0)
    if bool(degenerate.any()):
        which = torch.nonzero(degenerate).flatten().tolist()
        warnings.warn(
            f"{fn}: label(s) {which[:10]} are never (or always) positive in the targets; they get "
            "pos_weight 1. Check the labels, or drop labels the data cannot teach.",
            LossUsageWarning,
            stacklevel=2,
        )
        weights = torch.where(degenerate, torch.ones_like(weights), weights)
    return weights.float()


# --------------------------------------------------------------------------- loss_for


def _imbalance_ratio(counts: Sequence[float]) -> float:
    present = [c for c in counts if c > 0]
    return max(present) / min(present) if present else 1.0


def _robust_scale(column: torch.Tensor) -> tuple[float, float]:
    """(1.4826 * MAD, fraction of outliers by modified z-score)."""
    median = column.median()
    mad = (column - median).abs().median()
    scale = float(1.4826 * mad)
    if scale == 0:
        std = float(column.std()) if column.numel() > 1 else 0.0
        return (std if std > 0 else 1.0), 0.0
    z = 0.6745 * (column - median).abs() / mad
    return scale, float((z > OUTLIER_Z).double().mean())


def loss_for(
    task: Task | str | TaskGuess,
    *,
    targets: Any = None,
    imbalance: str = "auto",
    robust: bool = False,
    label_smoothing: float = 0.0,
    beta: float = 0.999,
    ignore_index: int = -100,
    dice: bool = False,
    num_classes: int | None = None,
) -> nn.Module:
    """A configured losskit loss module for a task, following the usual choice per task.

    ============================  =================================================================
    task                          loss
    ============================  =================================================================
    ``regression``                :class:`~losskit.nn.MSELoss`; :class:`~losskit.nn.HuberLoss`
                                  with ``delta = 1.345 * 1.4826 * MAD`` of the targets when
                                  ``robust=True`` or more than 1% of targets are outliers
                                  (modified z-score > 3.5)
    ``binary``                    :class:`~losskit.nn.BCEWithLogitsLoss` with ``pos_weight``
    ``multiclass``                :class:`~losskit.nn.CrossEntropyLoss` with class weights
    ``multilabel``                :class:`~losskit.nn.BCEWithLogitsLoss` with per-label ``pos_weight``
    ``token_classification``      :class:`~losskit.nn.CrossEntropyLoss` with ``ignore_index``
    ``segmentation``              :class:`~losskit.nn.CrossEntropyLoss`, or
                                  :class:`~losskit.nn.CrossEntropyDiceLoss` with ``dice=True``
    ============================  =================================================================

    ``imbalance``: ``"none"``; ``"balanced"`` (:math:`n / (C \\cdot n_c)`); ``"effective"``
    (Cui et al. 2019, with ``beta``); ``"auto"`` -- ``"balanced"`` only when the largest class
    is at least :data:`IMBALANCE_RATIO_THRESHOLD` (3) times the smallest (never for
    vocabulary-sized outputs above 1000 classes). The returned module's ``explain()`` gives the
    reasons in plain words. No torch equivalent.

    Args:
        task: a :class:`Task`, its name, a :class:`TaskGuess`, or ``"auto"`` (infer it from
            ``targets``).
        targets: the training targets, used for weights, Huber's ``delta`` and the class count.
        imbalance: ``"auto"`` | ``"none"`` | ``"balanced"`` | ``"effective"``.
        robust: regression: use Huber even without outliers.
        label_smoothing: for the cross-entropy and BCE losses.
        beta: for ``imbalance="effective"``.
        ignore_index: padding / void id for class-index targets.
        dice: segmentation: add a Dice term.
        num_classes: the class count when it cannot be read off the targets.

    Returns:
        A losskit ``nn.Module`` with ``reasons`` and ``explain()``.

    Raises:
        LossInputError: unknown task or ``imbalance``; weights asked for without ``targets``.

    Example:
        >>> import torch, losskit
        >>> y = torch.tensor([0] * 90 + [1] * 10)
        >>> loss_fn = losskit.loss_for("binary", targets=y)
        >>> loss_fn
        BCEWithLogitsLoss(reduction='mean', pos_weight=[9])
        >>> print(loss_fn.explain())
        - task: binary.
        - imbalance='auto': the classes are imbalanced 9:1 (counts 0: 90, 1: 10), at or above the 3:1 threshold, so positives are weighted.
        - pos_weight = negatives / positives = 90 / 10 = 9: positives and negatives weigh the same in total.
    """
    from losskit import nn as lnn

    fn = "loss_for"
    if imbalance not in ("auto", "none", "balanced", "effective"):
        raise LossInputError(
            f"{fn}: imbalance is {imbalance!r}; expected 'auto', 'none', 'balanced' or 'effective'. "
            "Pass imbalance='auto' to weigh classes only when they are clearly imbalanced."
        )
    guess: TaskGuess | None = task if isinstance(task, TaskGuess) else None
    if isinstance(task, str) and task == "auto":
        if targets is None:
            raise LossInputError(f"{fn}: task='auto' needs targets; expected targets=... to infer the task from. Pass targets or name the task.")
        guess = infer_task(targets, ignore_index=ignore_index)
    the_task = guess.task if guess is not None else Task.parse(task)  # type: ignore[arg-type]
    reasons = [f"task: {the_task.value}" + (f" (inferred: {guess.reason})." if guess is not None else ".")]
    if imbalance in ("balanced", "effective") and targets is None and the_task != Task.regression:
        raise LossInputError(
            f"{fn}: imbalance={imbalance!r} needs the training targets to count classes; expected "
            "targets=... . Pass targets, or imbalance='none'."
        )

    if the_task == Task.regression:
        return _regression_loss(targets, robust, reasons, lnn)

    if the_task in (Task.binary, Task.multilabel):
        module = lnn.BCEWithLogitsLoss(label_smoothing=label_smoothing)
        if targets is not None:
            t, labels = _as_tensor(targets, fn)
            if labels is not None:
                t = LabelEncoder().fit_transform(labels)
                reasons.append("labels are not numeric: encoded in sorted order (the last is the positive class).")
            elif t is not None and not _binary_values(t):
                enc = LabelEncoder().fit(_python_values(t))
                if len(enc) == 2 and the_task == Task.binary:
                    t = enc.transform(_python_values(t))
                    reasons.append(f"labels {enc.classes_} encoded to 0/1.")
            pw = _binary_pos_weight(t, imbalance, beta, the_task, reasons)
            if pw is not None:
                module.pos_weight = pw
        else:
            reasons.append("no targets given: no pos_weight.")
        if label_smoothing:
            reasons.append(f"label_smoothing={label_smoothing}: targets become y(1-e) + e/2.")
        module.reasons = reasons
        return module

    # the softmax tasks
    weight = None
    counts: tuple[int, ...] | None = None
    names: list[Hashable] | None = None
    if targets is not None:
        t, labels = _as_tensor(targets, fn)
        if t is not None and t.is_floating_point() and t.dim() == 2 and not _integral(t):
            reasons.append("targets are class probabilities: no class weights.")
        else:
            if t is not None and t.dim() == 2 and _binary_values(t) and the_task == Task.multiclass:
                t = t.argmax(1)
                reasons.append("one-hot targets: counted by their argmax (pass target.argmax(1) to the loss).")
            ids, names = _id_tensor(t if t is not None else labels, fn, ignore_index)
            k = num_classes or (guess.num_classes if guess is not None else int(ids.max()) + 1)
            k = max(k, int(ids.max()) + 1)
            counts = tuple(torch.bincount(ids, minlength=k).tolist())
            num_classes = k
    use = imbalance
    if imbalance == "auto":
        if counts is None:
            use = "none"
            if targets is None:
                reasons.append("no targets given: no class weights.")
        elif num_classes and num_classes > VOCABULARY_SIZE:
            use = "none"
            reasons.append(
                f"imbalance='auto': {num_classes} classes is vocabulary-sized (language modelling), "
                "where class weights are not used."
            )
        else:
            ratio = _imbalance_ratio(counts)
            shown = _describe_counts(counts, names)
            if ratio >= IMBALANCE_RATIO_THRESHOLD:
                use = "balanced"
                reasons.append(
                    f"imbalance='auto': the classes are imbalanced {ratio:.3g}:1 (counts {shown}), "
                    f"at or above the {IMBALANCE_RATIO_THRESHOLD:g}:1 threshold, so classes are weighted."
                )
            else:
                use = "none"
                reasons.append(
                    f"imbalance='auto': the classes are balanced enough ({ratio:.3g}:1, counts {shown}; "
                    f"threshold {IMBALANCE_RATIO_THRESHOLD:g}:1), so no class weights."
                )
    if use in ("balanced", "effective") and counts is not None:
        weight = _weights_from_counts(torch.tensor(counts), use, beta, fn)
        formula = "n / (C * count)" if use == "balanced" else f"inverse effective number (1 - beta^count) / (1 - beta), beta={beta}, normalized to sum to C"
        reasons.append(f"class weights = {formula}: rare classes count more in the loss.")
    if label_smoothing:
        reasons.append(f"label_smoothing={label_smoothing}: targets mix with the uniform distribution.")
    if the_task in (Task.token_classification, Task.segmentation):
        reasons.append(f"ignore_index={ignore_index}: those targets (padding / void) count neither in the loss nor in the mean.")
    if the_task == Task.segmentation and dice:
        module: nn.Module = lnn.CrossEntropyDiceLoss(weight, ignore_index=ignore_index, label_smoothing=label_smoothing)
        reasons.append("dice=True: Dice is added to cross-entropy (nnU-Net's objective): small structures weigh as much as the background.")
    else:
        module = lnn.CrossEntropyLoss(weight, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if guess is not None and guess.layout and "needs" in guess.layout:
        reasons.append(f"layout: {guess.layout}.")
    module.reasons = reasons
    return module


def _binary_pos_weight(
    t: torch.Tensor | None, imbalance: str, beta: float, task: Task, reasons: list[str]
) -> torch.Tensor | None:
    if t is None:
        return None
    if task == Task.binary:
        t = t.reshape(-1)
    rows = t.reshape(t.shape[0], -1).double()
    positives = rows.sum(0)
    negatives = rows.shape[0] - positives
    ratios = torch.maximum(positives, negatives) / torch.minimum(positives, negatives).clamp_min(1)
    worst = float(ratios.max())
    what = "positives are" if task == Task.binary else "each label's positives are"
    use = imbalance
    if imbalance == "auto":
        if task == Task.binary:
            counts = f"counts 0: {int(negatives[0])}, 1: {int(positives[0])}"
        else:
            counts = f"worst label {int(ratios.argmax())}: {int(positives[ratios.argmax()])} positives of {rows.shape[0]}"
        if worst >= IMBALANCE_RATIO_THRESHOLD:
            use = "balanced"
            reasons.append(
                f"imbalance='auto': the classes are imbalanced {worst:.3g}:1 ({counts}), at or above "
                f"the {IMBALANCE_RATIO_THRESHOLD:g}:1 threshold, so {what} weighted."
            )
        else:
            reasons.append(
                f"imbalance='auto': the classes are balanced enough ({worst:.3g}:1, {counts}; "
                f"threshold {IMBALANCE_RATIO_THRESHOLD:g}:1), so no pos_weight."
            )
            return None
    if use == "none":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pw = pos_weight(t if task == Task.multilabel else t.reshape(-1))
    for w in caught:
        reasons.append(str(w.message))
    if use == "effective":
        b = torch.tensor(beta, dtype=torch.float64)
        pw = ((1 - b ** negatives) / (1 - b ** positives.clamp_min(1))).float()
        reasons.append(f"pos_weight = effective-number ratio (1 - beta^negatives) / (1 - beta^positives), beta={beta}.")
    elif task == Task.binary:
        reasons.append(
            f"pos_weight = negatives / positives = {int(negatives[0])} / {int(positives[0])} = "
            f"{float(pw[0]):.4g}: positives and negatives weigh the same in total."
        )
    else:
        reasons.append("pos_weight = negatives / positives per label: each label's positives and negatives weigh the same in total.")
    return pw


def _regression_loss(targets: Any, robust: bool, reasons: list[str], lnn: Any) -> nn.Module:
    if targets is None:
        if robust:
            module = lnn.HuberLoss(delta=1.0)
            reasons.append("robust=True without targets: Huber with delta=1 (pass targets to size delta from their spread).")
        else:
            module = lnn.MSELoss()
            reasons.append("MSE: the default for regression (the conditional mean, optimal under Gaussian noise).")
        module.reasons = reasons
        return module
    t, labels = _as_tensor(targets, "loss_for")
    if t is None:
        raise LossInputError("loss_for: regression targets are not numeric; expected floats. Convert the column to numbers.")
    _nan_check(t, "loss_for")
    columns = t.double().reshape(t.shape[0], -1) if t.dim() else t.double().reshape(1, 1)
    scales, fractions = zip(*(_robust_scale(columns[:, j]) for j in range(columns.shape[1])))
    scale = sorted(scales)[len(scales) // 2]
    outliers = max(fractions)
    if robust or outliers > OUTLIER_FRACTION:
        delta = HUBER_K * scale
        module = lnn.HuberLoss(delta=float(f"{delta:.4g}"))
        if robust:
            reasons.append("robust=True: Huber, quadratic near the target and linear beyond delta.")
        else:
            reasons.append(
                f"{outliers:.1%} of the targets are outliers (modified z-score > {OUTLIER_Z}), above "
                f"{OUTLIER_FRACTION:.0%}: Huber instead of MSE, so they do not dominate the gradient."
            )
        reasons.append(
            f"delta = {HUBER_K} x robust std (1.4826 x MAD = {scale:.4g}) = {delta:.4g}: Huber's "
            "95%-efficiency constant in target units."
        )
        if len(scales) > 1 and max(scales) > 10 * max(min(scales), 1e-12):
            reasons.append("the target columns differ in scale by more than 10x: standardize them so one delta fits all.")
    else:
        module = lnn.MSELoss()
        reasons.append(
            f"MSE: no heavy tails ({outliers:.1%} outliers by modified z-score > {OUTLIER_Z}, "
            f"threshold {OUTLIER_FRACTION:.0%}); pass robust=True for Huber anyway."
        )
    module.reasons = reasons
    return module
