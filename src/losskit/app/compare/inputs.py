"""What ``losskit compare`` accepts as data, turned into a :class:`~losskit.app.data.Table`
(tabular inputs: features standardized per fold, one-hot categories) or an :class:`ArrayInput`
(every other sample shape: images ``(C, H, W)``, segmentation masks, sequences), and the
encoding of an :class:`ArrayInput` into :class:`~losskit.app.compare.data.Encoded`.

Arrays and tensors stay one ``(N, *shape)`` float32 tensor (a fold is indexed out of it). A torch
``Dataset`` whose samples have two or more dimensions is *not* materialised: its rows are a
:class:`LazyRows` view, each batch read with ``dataset[i]`` when it is trained on (a
``TensorDataset`` is already in memory and is used as its tensors). Targets are read once (the
Dataset's ``targets`` attribute when it has one, as torchvision's folders do, else one pass over
the samples, each dropped after its target is read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from losskit.app.data import Table
from losskit.errors import LossInputError
from losskit.tasks import Task

__all__ = ["ArrayInput", "LazyRows", "rows", "to_input", "encode_input"]


class LazyRows:
    """Rows ``index`` of a ``Dataset`` of ``(x, y)`` pairs, read on demand: ``rows[i]`` is one
    sample, ``rows[a:b]`` / ``rows[tensor_of_positions]`` a stacked batch (float32). Quacks
    like the few tensor operations training uses (``len``, indexing, ``.to``, ``.shape``)."""

    def __init__(self, dataset: Any, index: Sequence[int] | np.ndarray, device: torch.device | None = None) -> None:
        self.dataset = dataset
        self.index = np.asarray(index, dtype=np.int64)
        self.device = device

    def __len__(self) -> int:
        return len(self.index)

    def _one(self, position: int) -> torch.Tensor:
        return torch.as_tensor(self.dataset[int(self.index[position])][0]).float()

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            out = self._one(int(key))
        else:
            positions = np.arange(len(self.index))[key.cpu().numpy() if isinstance(key, torch.Tensor) else key]
            out = torch.stack([self._one(int(p)) for p in np.atleast_1d(positions)])
        return out if self.device is None else out.to(self.device)

    def to(self, device: Any) -> LazyRows:
        return LazyRows(self.dataset, self.index, torch.device(device))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._one(0).shape)

    def __reduce__(self) -> Any:  # pickled with its Dataset (never the samples)
        return (LazyRows, (self.dataset, self.index, self.device))


def rows(x: Any, index: Any) -> torch.Tensor:
    """Rows ``index`` of ``x``: a tensor (copied out) or a :class:`LazyRows` view (nothing read)."""
    if isinstance(x, LazyRows):
        return cast(torch.Tensor, LazyRows(x.dataset, x.index[np.asarray(index)]))
    return cast(torch.Tensor, x[torch.as_tensor(np.asarray(index), dtype=torch.long)])


@dataclass
class ArrayInput:
    """Samples of any shape with their targets: ``x`` ``(N, *shape)`` (or :class:`LazyRows`),
    ``y`` ``(N,)`` labels / ``(N, outputs)`` / ``(N, H, W)`` class masks."""

    name: str
    x: Any
    y: torch.Tensor
    task: Task | None = None
    class_names: list[str] | None = None
    ignore_index: int = 255
    files: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def _tensor(value: Any, what: str) -> torch.Tensor:
    try:
        return value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(np.array(value))
    except (TypeError, ValueError) as exc:
        raise LossInputError(
            f"compare: {what} cannot be read as an array ({type(exc).__name__}: {exc}); expected numbers."
        ) from None


def _dataset(data: Any, name: str | None) -> tuple[Any, Any, ArrayInput | None]:
    """A Dataset as ``(x, y)`` tensors (tabular samples, ``TensorDataset``) or a lazy input."""
    n = len(data)
    if n == 0:
        raise LossInputError("compare: the Dataset is empty; expected (x, y) pairs.")
    first = data[0]
    if not (isinstance(first, (tuple, list)) and len(first) == 2):
        raise LossInputError(
            f"compare: the Dataset's items are {type(first).__name__}; expected (x, y) pairs (a sample and its target)."
        )
    if isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) == 2:
        return data.tensors[0], data.tensors[1], None
    if torch.as_tensor(first[0]).dim() < 2:  # tabular samples: a table, standardized per fold
        pairs = [data[i] for i in range(n)]
        return (
            torch.stack([torch.as_tensor(p[0]) for p in pairs]),
            torch.stack([torch.as_tensor(p[1]) for p in pairs]),
            None,
        )
    targets = getattr(data, "targets", None)
    if targets is not None and len(targets) == n:
        y = _tensor(targets, "the Dataset's targets")
    else:  # one pass: each sample is dropped as soon as its target is read
        y = torch.stack([torch.as_tensor(data[i][1]) for i in range(n)])
    lazy = cast(Any, LazyRows(data, np.arange(n)))
    return None, None, ArrayInput(name or type(data).__name__, lazy, y)


def to_input(data: Any, target: Any = None, name: str | None = None, *, ignore_index: int = 255) -> Table | ArrayInput:
    """A :class:`Table` from a Table, a DataFrame (``target`` = column name(s)), 2-D arrays or
    tensors (``data`` = features, ``target`` = labels, or ``data`` = ``(X, y)``), or a torch
    ``Dataset`` of ``(x, y)`` pairs with 1-D samples; an :class:`ArrayInput` for samples of any
    other shape (images, masks), a ``Dataset`` of them (read lazily), or the image sets of
    :mod:`losskit.app.images` (``ImageSet``, ``SegmentationSet``)."""
    import pandas as pd

    if isinstance(data, (Table, ArrayInput)):
        return data
    if hasattr(data, "masks") and hasattr(data, "x"):  # a SegmentationSet
        return ArrayInput(
            data.name, data.x.float(), data.masks.long(), Task.segmentation, list(data.class_names),
            int(data.ignore_index), list(data.files), list(data.notes),
        )  # fmt: skip
    if hasattr(data, "class_names") and hasattr(data, "x") and hasattr(data, "y"):  # an ImageSet
        return ArrayInput(
            data.name, data.x.float(), data.y.long(), None, list(data.class_names), ignore_index,
            list(data.files), list(data.notes),
        )  # fmt: skip
    if isinstance(data, pd.DataFrame):
        if target is None:
            raise LossInputError("compare: target is missing; expected the name of the DataFrame's target column.")
        wanted = [target] if isinstance(target, str) else list(target)
        missing = [c for c in wanted if c not in data.columns]
        if missing:
            raise LossInputError(
                f"compare: target column(s) {missing} not in the DataFrame; expected one of {list(data.columns)[:20]}."
            )
        y = data[wanted[0]] if len(wanted) == 1 else data[wanted]
        keep = y.notna() if len(wanted) == 1 else y.notna().all(axis=1)
        frame = data[keep].reset_index(drop=True)
        y = frame[wanted[0]] if len(wanted) == 1 else frame[wanted]
        return Table(name or "DataFrame", frame.drop(columns=wanted), y, dropped_rows=int((~keep).sum()))
    if isinstance(data, tuple) and len(data) == 2 and target is None:
        data, target = data
    if isinstance(data, torch.utils.data.Dataset) and target is None:
        data, target, lazy = _dataset(data, name)
        if lazy is not None:
            lazy.ignore_index = ignore_index
            return lazy
    if target is None:
        raise LossInputError(
            "compare: no target; expected compare(X, y), compare((X, y)), compare(df, 'col') or a Dataset of (x, y)."
        )
    x, t = _tensor(data, "data"), _tensor(target, "target")
    if x.dim() == 1:
        x = x.reshape(-1, 1)
    if x.dim() < 2 or len(x) != len(t):
        raise LossInputError(
            f"compare: features of shape {tuple(x.shape)} and target of shape {tuple(t.shape)}; expected "
            "(N, ...) samples and (N,), (N, outputs) or (N, H, W) targets with the same N."
        )
    if x.dim() > 2 or t.dim() > 2:
        return ArrayInput(name or "arrays", x.float(), t, ignore_index=ignore_index)
    xn, tn = x.numpy(), t.numpy()
    features = pd.DataFrame(xn, columns=[f"x{i}" for i in range(xn.shape[1])])
    y = (
        pd.Series(tn, name="target")
        if tn.ndim == 1
        else pd.DataFrame(tn, columns=[f"y{i}" for i in range(tn.shape[1])])
    )
    return Table(name or "arrays", features, y)


def _looks_like_masks(x: Any, y: torch.Tensor) -> bool:
    """Integer targets ``(N, H, W)`` whose ``(H, W)`` are the samples' last two dimensions."""
    shape = tuple(x.shape)
    return y.dim() >= 3 and not y.is_floating_point() and tuple(y.shape[1:]) == shape[-(y.dim() - 1) :]


def encode_input(inp: ArrayInput, task: str = "auto") -> Any:
    """:class:`~losskit.app.compare.data.Encoded` of an :class:`ArrayInput`: the targets
    encoded as for a table (classification, regression, multilabel) or as class masks
    (segmentation: ids ``0..K-1`` and ``ignore_index``; ``K`` from the class names, else the
    largest id + 1), the folds stratified by label, or for masks by whether an image shows the
    rarest class."""
    import pandas as pd

    from losskit.app.compare.data import MIN_ROWS, Encoded, encode_target
    from losskit.app.compare.segmentation import image_strata
    from losskit.tasks import TaskGuess

    y = inp.y
    seg = inp.task == Task.segmentation or (task == "auto" and _looks_like_masks(inp.x, y))
    if task not in ("auto", "segmentation") and seg and inp.task == Task.segmentation:
        raise LossInputError(f"{inp.name}: --task {task} for segmentation masks; expected --task segmentation or auto.")
    notes = list(inp.notes)
    if not (seg or task == "segmentation"):
        target: Any = pd.Series(y.numpy()) if y.dim() == 1 else pd.DataFrame(y.reshape(len(y), -1).numpy())
        table = Table(inp.name, None, target, target_names=inp.class_names)
        chosen, guess, labels, class_names, more, warnings = encode_target(table, task)
        if chosen == Task.segmentation:
            raise LossInputError(
                f"{inp.name}: segmentation needs targets (N, H, W) of class ids; got {tuple(y.shape)}."
            )
        num_outputs = (
            1
            if chosen == Task.binary
            else (len(class_names or []) if chosen == Task.multiclass else int(labels.shape[1]))
        )
        notes += more
        return Encoded(
            inp.name, chosen, guess, None, labels, num_outputs, [], [], class_names, notes, warnings,
            x=inp.x, files=inp.files,
        )  # fmt: skip
    if not _looks_like_masks(inp.x, y):
        raise LossInputError(
            f"{inp.name}: segmentation targets of shape {tuple(y.shape)} and dtype {y.dtype} for samples of shape "
            f"{tuple(inp.x.shape)}; expected integer class masks (N, H, W) with the images' H and W."
        )
    masks = y.long()
    ignore = int(inp.ignore_index)
    valid = masks[masks != ignore]
    if len(valid) and int(valid.min()) < 0:
        raise LossInputError(
            f"{inp.name}: the masks hold the negative class id {int(valid.min())}; expected ids 0..K-1 and the ignore "
            f"value {ignore}. Pass the masks' ignore value as ignore_index= (--ignore-index)."
        )
    k = len(inp.class_names) if inp.class_names else (int(valid.max()) + 1 if len(valid) else 0)
    if len(valid) and int(valid.max()) >= k:
        raise LossInputError(
            f"{inp.name}: the masks hold class id {int(valid.max())}, but there are {k} class names; expected ids "
            f"0..{k - 1} or the ignore value {ignore}."
        )
    if k < 2:
        raise LossInputError(
            f"{inp.name}: the masks hold {k} class(es) besides the ignore value {ignore}; expected at least 2 "
            "(e.g. background and an object). Check the masks and --ignore-index."
        )
    if len(masks) < MIN_ROWS:
        raise LossInputError(
            f"{inp.name}: {len(masks)} images; expected at least {MIN_ROWS} to cut cross-validation folds. Add images."
        )
    names = list(inp.class_names) if inp.class_names else [str(c) for c in range(k)]
    strata, rare = image_strata(masks, k, ignore)
    if rare is not None:
        share = float(strata.double().mean())
        notes.append(
            f"folds are cut over images, stratified by whether an image shows the rarest class "
            f"{names[int(rare)]!r} ({share:.0%} of the images do)."
        )
    counts = torch.bincount(valid, minlength=k).double()
    shares = ", ".join(f"{n} {c / counts.sum():.1%}" for n, c in zip(names, counts))
    notes.append(f"pixel shares: {shares}; pixels marked {ignore} are ignored (--ignore-index).")
    guess = TaskGuess(Task.segmentation, k, "class masks (N, H, W)", num_outputs=k)
    return Encoded(
        inp.name, Task.segmentation, guess, None, masks, k, [], [], names, notes, [],
        x=inp.x, ignore_index=ignore, strata=strata if rare is not None else None, files=inp.files,
    )  # fmt: skip
