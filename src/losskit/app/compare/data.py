"""Turn a :class:`losskit.data.Table` into standardized train / validation / test tensors.

Numeric features: median-imputed, standardized on the training split. Text / category / bool
features: most-frequent-imputed, one-hot encoded (categories unseen in training are ignored).
Identifier-like text columns (a distinct value in most rows) and columns with no values are
dropped. Labels: encoded to ids (strings sorted), split stratified 60 / 20 / 20 with the seed.
Regression targets are standardized for training; metrics are reported in the original units.
Every such step is recorded in ``notes`` for the report.
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

__all__ = ["Prepared", "prepare", "SPLITS"]

#: train / validation / test fractions
SPLITS = (0.6, 0.2, 0.2)
#: the smallest data set the three splits can be cut from
MIN_ROWS = 20


@dataclass
class Prepared:
    """Tensors for training and evaluation, and what was done to get them."""

    name: str
    task: Task
    guess: TaskGuess
    x_train: torch.Tensor
    x_val: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor
    y_val: torch.Tensor
    y_test: torch.Tensor
    num_outputs: int
    class_names: list[str] | None = None
    feature_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
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
            f"{table.name}: task {task.value!r} needs sequences or images; losskit compare trains an "
            "MLP on tables: expected regression, binary, multiclass or multilabel. Pass --task explicitly."
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


def _features(table: Table, train_idx: Any, notes: list[str]) -> tuple[Any, Any, list[str]]:
    """A fitted scikit-learn ColumnTransformer and the kept columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = table.features
    numeric, categorical, dropped = [], [], []
    n = len(frame)
    for column in frame.columns:
        series = frame[column]
        if series.isna().all():
            dropped.append(f"{column} (no values)")
        elif _is_categorical(series):
            distinct = series.nunique(dropna=True)
            if distinct > 50 and distinct > 0.5 * n:
                dropped.append(f"{column} (identifier-like: {distinct} distinct values)")
            else:
                categorical.append(column)
        else:
            numeric.append(column)
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
            f"categorical columns one-hot encoded: {', '.join(map(str, categorical[:8]))}{', ...' if len(categorical) > 8 else ''}."
        )
    notes.append(f"{len(numeric)} numeric column(s) standardized on the training split.")
    parts = []
    if numeric:
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        parts.append(
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            )
        )
    cat_frame = frame.copy()
    for c in categorical:
        cat_frame[c] = cat_frame[c].astype(object).where(cat_frame[c].notna(), None)
    transformer = ColumnTransformer(parts, sparse_threshold=0.0)
    transformer.fit(cat_frame.iloc[train_idx])
    return transformer, cat_frame, [str(c) for c in transformer.get_feature_names_out()]


def prepare(table: Table, task: str = "auto", seed: int = 0) -> Prepared:
    """Split, encode and standardize ``table`` for :func:`losskit.compare.run_compare`."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    notes: list[str] = []
    if table.dropped_rows:
        notes.append(f"{table.dropped_rows} row(s) without a target were dropped.")
    guess = losskit.infer_task(target_for_losses(table))
    chosen = guess.task if task == "auto" else Task.parse(task)
    if task != "auto" and chosen != guess.task:
        notes.append(f"task set to {chosen.value} by --task (the targets look like {guess.task.value}).")
    elif guess.ambiguous:
        notes.append(f"the task is ambiguous: {guess.reason}.")
    y, class_names = _labels(table, chosen, guess)
    n = len(y)
    if n < MIN_ROWS:
        raise LossInputError(
            f"{table.name}: {n} labelled rows; expected at least {MIN_ROWS} to cut train / validation "
            "/ test splits (60/20/20). Add data."
        )
    stratify = None
    if chosen in (Task.binary, Task.multiclass):
        counts = torch.bincount(y.long())
        rare = [(class_names[i] if class_names else str(i), int(c)) for i, c in enumerate(counts) if c < 3]
        if rare:
            shown = ", ".join(f"{name!r} ({c})" for name, c in rare[:5])
            raise LossInputError(
                f"{table.name}: class(es) {shown} have fewer than 3 rows; expected at least 3 per class "
                "to split train / validation / test stratified. Merge or drop the rare classes."
            )
        stratify = y.long().numpy()
    index = np.arange(n)
    train_idx, rest = train_test_split(index, test_size=0.4, random_state=seed, stratify=stratify)
    val_idx, test_idx = train_test_split(
        rest, test_size=0.5, random_state=seed, stratify=None if stratify is None else stratify[rest]
    )
    notes.append(
        f"split {len(train_idx)} / {len(val_idx)} / {len(test_idx)} rows (train / validation / test, "
        f"{'stratified, ' if stratify is not None else ''}seed {seed})."
    )
    transformer, frame, names = _features(table, train_idx, notes)

    def features(idx: Any) -> torch.Tensor:
        return torch.tensor(np.asarray(transformer.transform(frame.iloc[idx]), dtype=np.float32))

    y_train, y_val, y_test = y[train_idx], y[val_idx], y[test_idx]
    prepared = Prepared(
        name=table.name,
        task=chosen,
        guess=guess,
        x_train=features(train_idx),
        x_val=features(val_idx),
        x_test=features(test_idx),
        y_train=y_train,
        y_val=y_val,
        y_test=y_test,
        num_outputs=1
        if chosen == Task.binary
        else (len(class_names or []) if chosen == Task.multiclass else y.shape[1]),
        class_names=class_names,
        feature_names=names,
        notes=notes,
    )
    if chosen == Task.regression:
        mean = y_train.mean(0)
        std = y_train.std(0) if len(y_train) > 1 else torch.ones_like(mean)
        std = torch.where(std > 0, std, torch.ones_like(std))
        prepared.target_mean, prepared.target_std = mean, std
        prepared.y_train, prepared.y_val, prepared.y_test = ((t - mean) / std for t in (y_train, y_val, y_test))
        notes.append("regression targets standardized for training; metrics are in the original units.")
    return prepared
