"""Pick and configure the loss for a task: :func:`loss_for`."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any, cast

import torch
from torch import nn

from losskit import registry
from losskit.errors import LossInputError
from losskit.tasks.constants import (
    HUBER_K,
    IMBALANCE_RATIO_THRESHOLD,
    OUTLIER_FRACTION,
    OUTLIER_Z,
    VOCABULARY_SIZE,
)
from losskit.tasks.infer import TaskGuess, infer_task
from losskit.tasks.labels import (
    LabelEncoder,
    _as_tensor,
    _binary_values,
    _describe_counts,
    _id_tensor,
    _integral,
    _nan_check,
    _python_values,
)
from losskit.tasks.weights import _weights_from_counts, pos_weight
from losskit.types import Task

__all__ = ["loss_for"]


def _with_reasons(module: Any, reasons: list[str]) -> nn.Module:
    """``module`` (a losskit loss) with its ``reasons`` recorded for ``explain()``."""
    module.reasons = reasons
    return cast(nn.Module, module)


def _default_module(task: Task) -> type[nn.Module]:
    """The module class of the task table's loss for ``task`` (:data:`losskit.registry.TASK_DEFAULTS`)."""
    return registry.get(registry.TASK_DEFAULTS[task]).module_class


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
        >>> loss_fn.describe()
        "BCEWithLogitsLoss(reduction='mean', pos_weight=[9])"
        >>> print(loss_fn.explain())
        - task: binary.
        - imbalance='auto': the classes are imbalanced 9:1 (counts 0: 90, 1: 10), at or above the 3:1 threshold, so positives are weighted.
        - pos_weight = negatives / positives = 90 / 10 = 9: positives and negatives weigh the same in total.
    """
    fn = "loss_for"
    if imbalance not in ("auto", "none", "balanced", "effective"):
        raise LossInputError(
            f"{fn}: imbalance is {imbalance!r}; expected 'auto', 'none', 'balanced' or 'effective'. "
            "Pass imbalance='auto' to weigh classes only when they are clearly imbalanced."
        )
    guess: TaskGuess | None = task if isinstance(task, TaskGuess) else None
    if isinstance(task, str) and task == "auto":
        if targets is None:
            raise LossInputError(
                f"{fn}: task='auto' needs targets; expected targets=... to infer the task from. Pass targets or name the task."
            )
        guess = infer_task(targets, ignore_index=ignore_index)
    the_task = guess.task if guess is not None else Task.parse(task)  # type: ignore[arg-type]
    reasons = [f"task: {the_task.value}" + (f" (inferred: {guess.reason})." if guess is not None else ".")]
    if imbalance in ("balanced", "effective") and targets is None and the_task != Task.regression:
        raise LossInputError(
            f"{fn}: imbalance={imbalance!r} needs the training targets to count classes; expected "
            "targets=... . Pass targets, or imbalance='none'."
        )

    if the_task == Task.regression:
        return _regression_loss(targets, robust, reasons)

    if the_task in (Task.binary, Task.multilabel):
        module: nn.Module = _default_module(the_task)(label_smoothing=label_smoothing)
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
        return _with_reasons(module, reasons)

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
        formula = (
            "n / (C * count)"
            if use == "balanced"
            else f"inverse effective number (1 - beta^count) / (1 - beta), beta={beta}, normalized to sum to C"
        )
        reasons.append(f"class weights = {formula}: rare classes count more in the loss.")
    if label_smoothing:
        reasons.append(f"label_smoothing={label_smoothing}: targets mix with the uniform distribution.")
    if the_task in (Task.token_classification, Task.segmentation):
        reasons.append(
            f"ignore_index={ignore_index}: those targets (padding / void) count neither in the loss nor in the mean."
        )
    if the_task == Task.segmentation and dice:
        module = registry.get(registry.SEGMENTATION_WITH_DICE).module_class(
            weight, ignore_index=ignore_index, label_smoothing=label_smoothing
        )
        reasons.append(
            "dice=True: Dice is added to cross-entropy (nnU-Net's objective): small structures weigh as much as the background."
        )
    else:
        module = _default_module(the_task)(weight, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if guess is not None and guess.layout and "needs" in guess.layout:
        reasons.append(f"layout: {guess.layout}.")
    return _with_reasons(module, reasons)


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
            counts = (
                f"worst label {int(ratios.argmax())}: {int(positives[ratios.argmax()])} positives of {rows.shape[0]}"
            )
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
        pw = ((1 - b**negatives) / (1 - b ** positives.clamp_min(1))).float()
        reasons.append(f"pos_weight = effective-number ratio (1 - beta^negatives) / (1 - beta^positives), beta={beta}.")
    elif task == Task.binary:
        reasons.append(
            f"pos_weight = negatives / positives = {int(negatives[0])} / {int(positives[0])} = "
            f"{float(pw[0]):.4g}: positives and negatives weigh the same in total."
        )
    else:
        reasons.append(
            "pos_weight = negatives / positives per label: each label's positives and negatives weigh the same in total."
        )
    return pw


def _regression_loss(targets: Any, robust: bool, reasons: list[str]) -> nn.Module:
    if targets is None:
        module: nn.Module
        if robust:
            module = registry.get(registry.ROBUST_REGRESSION).module_class(delta=1.0)
            reasons.append(
                "robust=True without targets: Huber with delta=1 (pass targets to size delta from their spread)."
            )
        else:
            module = _default_module(Task.regression)()
            reasons.append("MSE: the default for regression (the conditional mean, optimal under Gaussian noise).")
        return _with_reasons(module, reasons)
    t, _labels = _as_tensor(targets, "loss_for")
    if t is None:
        raise LossInputError(
            "loss_for: regression targets are not numeric; expected floats. Convert the column to numbers."
        )
    _nan_check(t, "loss_for")
    columns = t.double().reshape(t.shape[0], -1) if t.dim() else t.double().reshape(1, 1)
    scales, fractions = zip(*(_robust_scale(columns[:, j]) for j in range(columns.shape[1])))
    scale = sorted(scales)[len(scales) // 2]
    outliers = max(fractions)
    if robust or outliers > OUTLIER_FRACTION:
        delta = HUBER_K * scale
        module = registry.get(registry.ROBUST_REGRESSION).module_class(delta=float(f"{delta:.4g}"))
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
            reasons.append(
                "the target columns differ in scale by more than 10x: standardize them so one delta fits all."
            )
    else:
        module = _default_module(Task.regression)()
        reasons.append(
            f"MSE: no heavy tails ({outliers:.1%} outliers by modified z-score > {OUTLIER_Z}, "
            f"threshold {OUTLIER_FRACTION:.0%}); pass robust=True for Huber anyway."
        )
    return _with_reasons(module, reasons)
