"""The small shared vocabulary of losskit's signatures: the ``reduction`` literal and the task kinds.

A leaf module (it imports only :mod:`losskit.errors`), so the registry, the checks, the losses
and the task logic can all use it without importing each other.
"""

from __future__ import annotations

import enum
from typing import Literal, get_args

from losskit.errors import LossInputError

__all__ = ["Reduction", "REDUCTIONS", "Task"]

#: How a loss reduces its per-element values, as in ``torch.nn``.
Reduction = Literal["none", "mean", "sum"]
#: The values of :data:`Reduction`, in order.
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


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
