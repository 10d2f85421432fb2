"""Turn a :class:`losskit.app.data.Table` into encoded targets, the folds of repeated
(stratified) k-fold cross-validation, and per-fold standardized tensors.

Numeric features: median-imputed, standardized on each fold's training rows. Text / category /
bool features: most-frequent-imputed, one-hot encoded (categories unseen in training are
ignored). Identifier-like text columns (a distinct value in most rows) are dropped; a column with
no values or with infinite values is bad input. Labels: encoded to ids (strings sorted). Each
training fold gives up a stratified 20 % validation split for early stopping, so the test fold is
never looked at before it is scored. Regression targets are standardized for training; metrics
are in the original units. Every such step is recorded in ``notes`` for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

import losskit
from losskit.app.data import Table
from losskit.app.recommend import target_for_losses
from losskit.errors import LossInputError
from losskit.tasks import LabelEncoder, Task, TaskGuess

__all__ = ["Encoded", "Fold", "FoldData", "encode", "make_folds", "fold_data", "VALIDATION"]

#: the share of each training fold held out for early stopping
VALIDATION = 0.2
#: the smallest data set the folds can be cut from
MIN_ROWS = 20
#: a class with fewer rows than this per test fold is warned about
MIN_PER_FOLD = 5


@dataclass
class Encoded:
    """The whole data set with its targets encoded; features still as a DataFrame."""

    name: str
    task: Task
    guess: TaskGuess
    frame: Any  # the feature DataFrame (categoricals as str objects, NaN for missing)
    y: torch.Tensor
    num_outputs: int
    numeric: list[str]
    categorical: list[str]
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: inputs that are not a table (images, any sample shape): an ``(N, *shape)`` tensor or a
    #: :class:`losskit.app.compare.inputs.LazyRows` over a Dataset; ``frame`` is then ``None``
    x: Any = None
    #: segmentation: the mask value of ignored pixels
    ignore_index: int = 255
    #: strata of the folds when they are not the labels (segmentation: whether an image shows
    #: the rarest class)
    strata: Any = None
    #: one file per row when the data came from files (report pictures)
    files: list[str] | None = None
    #: the feature columns as arrays (:class:`losskit.app.compare.features.Columns`), read by
    #: the first fold
    columns: Any = field(default=None, repr=False, compare=False)

    @property
    def stratify(self) -> Any:
        if self.strata is not None:
            return self.strata.long().numpy()
        return self.y.long().numpy() if self.task in (Task.binary, Task.multiclass) else None

    @property
    def lazy(self) -> bool:
        """The inputs are read from a Dataset batch by batch (not held in memory)."""
        return self.x is not None and not isinstance(self.x, torch.Tensor)


@dataclass(frozen=True)
class Fold:
    """Row indices of one fold: training (fit), validation (early stopping), test (scores)."""

    repeat: int
    fold: int
    fit: Any
    val: Any
    test: Any


@dataclass
class FoldData:
    """Tensors of one fold, features standardized on its training rows."""

    x_fit: torch.Tensor
    x_val: torch.Tensor
    x_test: torch.Tensor
    y_fit: torch.Tensor
    y_val: torch.Tensor
    y_test: torch.Tensor
    #: regression: mean and std the targets were standardized with (per output)
    target_mean: torch.Tensor | None = None
    target_std: torch.Tensor | None = None


def _is_categorical(series: Any) -> bool:
    kind = str(series.dtype)
    return kind in ("object", "category", "bool", "string", "str") or kind.startswith("string")


def _labels(table: Table, task: Task, guess: TaskGuess) -> tuple[torch.Tensor, list[str] | None]:
    """Targets as training tensors: long ids (multiclass), float 0/1 (binary, multilabel),
    float (regression)."""
    y = target_for_losses(table)
    if task == Task.regression:
        if not isinstance(y, torch.Tensor):
            raise LossInputError(
                f"{table.name}: the target is not numeric; expected numbers for regression. Pick a numeric --target or another --task."
            )
        t = y.double()
        return (t.reshape(-1, 1) if t.dim() == 1 else t).float(), None
    if task == Task.multilabel:
        labels01 = y if isinstance(y, torch.Tensor) else None
        if labels01 is None or labels01.dim() != 2 or not bool(((labels01 == 0) | (labels01 == 1)).all()):
            raise LossInputError(
                f"{table.name}: a multilabel target must be several 0/1 columns; expected --target COL "
                "repeated for each label column."
            )
        names = [str(c) for c in table.target.columns] if hasattr(table.target, "columns") else None
        return labels01.float(), names
    if task not in (Task.binary, Task.multiclass):
        raise LossInputError(
            f"{table.name}: task {task.value!r} needs "
            + ("images and class masks (--images DIR --masks DIR)" if task == Task.segmentation else "sequences")
            + "; on a table losskit compare expects regression, binary, multiclass or multilabel. Pass --task explicitly."
        )
    if isinstance(y, torch.Tensor) and y.dim() == 2 and y.shape[1] > 1:
        if bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all()):
            y = y.argmax(1)
        else:
            raise LossInputError(
                f"{table.name}: several target columns for a {task.value} task; expected one label column. Pass one --target."
            )
    if isinstance(y, torch.Tensor) and y.is_floating_point() and not bool((y == y.round()).all()):
        raise LossInputError(
            f"{table.name}: the target has non-integer values, so it is not class labels; expected "
            f"labels for --task {task.value}. Use --task regression."
        )
    values = y.reshape(-1).tolist() if isinstance(y, torch.Tensor) else list(y)
    encoder = guess.encoder or LabelEncoder().fit(values)
    ids = encoder.transform(values)
    names = [str(c) for c in encoder.classes_]
    if table.target_names and len(table.target_names) == len(names) and all(str(i) == n for i, n in enumerate(names)):
        names = list(table.target_names)
    if len(names) < 2:
        raise LossInputError(
            f"{table.name}: the target has one class only ({names[0]!r} in every row); expected at "
            "least two classes to compare losses on. Check the --target column or the data."
        )
    if task == Task.binary and len(names) != 2:
        raise LossInputError(
            f"{table.name}: --task binary, but the target has {len(names)} classes; expected 2. Use --task multiclass."
        )
    return (ids.float() if task == Task.binary else ids), names


def _columns(table: Table, notes: list[str]) -> tuple[Any, list[str], list[str]]:
    """The feature frame (categoricals as str objects, NaN for missing), numeric and
    categorical column names. Bad columns (no values, infinite values) are errors."""
    import numpy as np

    frame = table.features
    numeric, categorical, dropped = [], [], []
    n = len(frame)
    for column in frame.columns:
        series = frame[column]
        if series.isna().all():
            raise LossInputError(
                f"{table.name}: feature column {str(column)!r} has no values (all missing); expected "
                "numbers or categories. Drop the column."
            )
        if _is_categorical(series):
            distinct = series.nunique(dropna=True)
            if distinct > 50 and distinct > 0.5 * n:
                dropped.append(f"{column} (identifier-like: {distinct} distinct values)")
            else:
                categorical.append(str(column))
        else:
            values = series.to_numpy(dtype=float, na_value=np.nan)
            if np.isinf(values).any():
                count = int(np.isinf(values).sum())
                raise LossInputError(
                    f"{table.name}: feature column {str(column)!r} has {count} infinite value(s); expected "
                    "finite numbers. Replace them (e.g. with a missing value) or drop the column."
                )
            numeric.append(str(column))
    if dropped:
        notes.append("dropped feature columns: " + ", ".join(dropped) + ".")
    if not numeric and not categorical:
        raise LossInputError(
            f"{table.name}: no usable feature column (got {', '.join(map(str, frame.columns)) or 'none'}"
            + (f"; dropped {', '.join(dropped)}" if dropped else "")
            + "); expected at least one numeric or categorical column besides the target."
        )
    missing = {c: int(frame[c].isna().sum()) for c in numeric + categorical if frame[c].isna().any()}
    if missing:
        shown = ", ".join(f"{c} ({k})" for c, k in list(missing.items())[:8])
        notes.append(
            f"missing values imputed (median for numbers, most frequent value for categories): {shown}"
            + (", ..." if len(missing) > 8 else "")
            + "."
        )
    if categorical:
        notes.append(
            f"categorical columns one-hot encoded: {', '.join(categorical[:8])}{', ...' if len(categorical) > 8 else ''}."
        )
    notes.append(f"{len(numeric)} numeric column(s) standardized on each fold's training rows.")
    out = frame.copy()
    out.columns = [str(c) for c in out.columns]
    for c in categorical:  # text, NaN where missing (None, NaN, pd.NA): whole-column operations
        out[c] = out[c].astype(str).where(out[c].notna(), np.nan).astype(object)
    return out[numeric + categorical], numeric, categorical


def encode(table: Table, task: str = "auto") -> Encoded:
    """Infer the task, encode the targets and check the feature columns of ``table``."""
    chosen, guess, y, class_names, notes, warnings = encode_target(table, task)
    frame, numeric, categorical = _columns(table, notes)
    num_outputs = (
        1 if chosen == Task.binary else (len(class_names or []) if chosen == Task.multiclass else int(y.shape[1]))
    )
    return Encoded(table.name, chosen, guess, frame, y, num_outputs, numeric, categorical, class_names, notes, warnings)


def encode_target(
    table: Table, task: str = "auto"
) -> tuple[Task, TaskGuess, torch.Tensor, list[str] | None, list[str], list[str]]:
    """The task (inferred, or ``task``), the guess, the encoded targets, the class names, and
    the notes and warnings so far, of ``table``'s target."""
    notes: list[str] = []
    warnings: list[str] = []
    if table.dropped_rows:
        total = table.dropped_rows + len(table.target)
        warnings.append(
            f"{table.dropped_rows} of {total} rows ({table.dropped_rows / total:.1%}) have no target and were left out."
        )
    try:
        guess = losskit.infer_task(target_for_losses(table))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, LossInputError):
            raise
        raise LossInputError(
            f"{table.name}: the target column cannot be read as labels or numbers ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); expected one type of value per target column. "
            "Clean the target column."
        ) from None
    chosen = guess.task if task == "auto" else Task.parse(task)
    if task != "auto" and chosen != guess.task:
        notes.append(f"task set to {chosen.value} by --task (the targets look like {guess.task.value}).")
    elif guess.ambiguous:
        notes.append(f"the task is ambiguous: {guess.reason}.")
    y, class_names = _labels(table, chosen, guess)
    n = len(y)
    if n < MIN_ROWS:
        raise LossInputError(
            f"{table.name}: {n} labelled rows; expected at least {MIN_ROWS} to cut cross-validation folds. Add data."
        )
    return chosen, guess, y, class_names, notes, warnings


def make_folds(data: Encoded, folds: int, repeats: int, seed: int) -> list[Fold]:
    """Repeated (stratified) k-fold; each training fold gives up a (stratified) validation split."""
    import numpy as np
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold, train_test_split

    n = len(data.y)
    stratify = data.stratify
    if folds < 2:
        raise LossInputError(f"--folds {folds}: expected at least 2 folds.")
    if n // folds < 2:
        raise LossInputError(f"{data.name}: {n} rows cannot be cut into {folds} folds; expected fewer --folds.")
    if stratify is not None and data.task == Task.segmentation and np.bincount(stratify, minlength=2).min() < folds:
        stratify = None  # too few images show the rare class to spread it over every fold
    if stratify is not None and data.task == Task.segmentation:
        splitter: Any = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    elif stratify is not None:
        counts = np.bincount(stratify, minlength=data.num_outputs if data.task == Task.multiclass else 2)
        names = data.class_names or [str(i) for i in range(len(counts))]
        rare = [(names[i], int(c)) for i, c in enumerate(counts) if c < folds]
        if rare:
            shown = ", ".join(f"{name!r} ({c})" for name, c in rare[:5])
            raise LossInputError(
                f"{data.name}: class(es) {shown} have fewer rows than --folds {folds}; expected at least one "
                "row per class in every test fold. Merge or drop the rare classes, or pass fewer --folds."
            )
        few = [(names[i], int(c)) for i, c in enumerate(counts) if c < MIN_PER_FOLD * folds]
        if few:
            shown = ", ".join(f"{name!r} ({c})" for name, c in few[:5])
            data.warnings.append(
                f"class(es) {shown} have fewer than {MIN_PER_FOLD} rows per test fold ({folds} folds): their "
                "per-fold metrics are noisy."
            )
        splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    else:
        splitter = RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    out = []
    index = np.arange(n)
    for i, (train, test) in enumerate(splitter.split(index, stratify if stratify is not None else None)):
        try:
            fit, val = train_test_split(
                train,
                test_size=VALIDATION,
                random_state=seed + i,
                stratify=None if stratify is None else stratify[train],
            )
        except ValueError:  # a class too rare to stratify the validation split
            fit, val = train_test_split(train, test_size=VALIDATION, random_state=seed + i)
        out.append(Fold(i // folds, i % folds, np.sort(fit), np.sort(val), np.sort(test)))
    return out


def table_columns(data: Encoded) -> Any:
    """The feature columns of a table as arrays (:class:`~losskit.app.compare.features.Columns`),
    read on the first call, for every fold."""
    from losskit.app.compare.features import Columns

    if data.columns is None:
        data.columns = Columns.of(data.frame, data.numeric, data.categorical)
    return data.columns


def fold_data(data: Encoded, fold: Fold) -> FoldData:
    """Features of ``fold`` standardized on its training rows; regression targets likewise.
    Inputs that are not a table (``data.x``) are taken as they are, row by row."""

    y = data.y
    if data.x is not None:
        from losskit.app.compare.inputs import rows

        fit_x, val_x, test_x = (rows(data.x, idx) for idx in (fold.fit, fold.val, fold.test))
        out = FoldData(fit_x, val_x, test_x, y[fold.fit], y[fold.val], y[fold.test])
    else:
        from losskit.app.compare.features import fold_features

        columns = table_columns(data)
        fit_x, val_x, test_x = (
            torch.from_numpy(a) for a in fold_features(columns, fold.fit, fold.fit, fold.val, fold.test)
        )
        out = FoldData(fit_x, val_x, test_x, y[fold.fit], y[fold.val], y[fold.test])
    if data.task == Task.regression:
        mean = out.y_fit.mean(0)
        std = out.y_fit.std(0) if len(out.y_fit) > 1 else torch.ones_like(mean)
        std = torch.where(std > 0, std, torch.ones_like(std))
        out.target_mean, out.target_std = mean, std
        out.y_fit, out.y_val, out.y_test = ((t - mean) / std for t in (out.y_fit, out.y_val, out.y_test))
    return out
