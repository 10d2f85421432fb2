"""Labels as ids: :class:`LabelEncoder` and the small helpers that read targets of any form."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import torch

from losskit.errors import LossInputError

__all__ = ["LabelEncoder"]


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
        with contextlib.suppress(TypeError):
            seen = sorted(seen)  # type: ignore[type-var]  # mixed, unorderable labels keep their order
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
        raise LossInputError(
            f"{fn}: targets are empty (or all ignore_index); expected class ids. Pass the training labels."
        )
    if int(ids.min()) < 0:
        raise LossInputError(
            f"{fn}: targets contain negative ids (e.g. {int(ids.min())}); expected ids 0..C-1 or "
            f"ignore_index={ignore_index}. Map labels with losskit.LabelEncoder, or pass ignore_index."
        )
    return ids, None
