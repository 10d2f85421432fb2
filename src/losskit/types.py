"""The small shared vocabulary of losskit's signatures: the ``reduction`` literal and the task kinds.

A leaf module (it imports only :mod:`losskit.errors`), so the registry, the checks, the losses
and the task logic can all use it without importing each other.
"""

from __future__ import annotations

import enum
import os
import warnings
from typing import Literal, get_args

from losskit.errors import LossInputError, LossUsageWarning

__all__ = ["Reduction", "REDUCTIONS", "CheckMode", "CHECK_MODES", "checks_from_environment", "Task"]

#: How a loss reduces its per-element values, as in ``torch.nn``.
Reduction = Literal["none", "mean", "sum"]
#: The values of :data:`Reduction`, in order.
REDUCTIONS: tuple[str, ...] = get_args(Reduction)

#: How much the guardrails check (see :func:`losskit.set_checks`).
CheckMode = Literal["off", "cheap", "full", "auto"]
#: The values of :data:`CheckMode`, in order.
CHECK_MODES: tuple[str, ...] = get_args(CheckMode)


def checks_from_environment(warn: bool = False) -> str:
    """The level in ``LOSSKIT_CHECKS`` (``"auto"`` when unset). An invalid value means
    ``"auto"``; with ``warn`` a :class:`~losskit.LossUsageWarning` says so (``import losskit``
    warns once; it never fails over an environment variable)."""
    value = os.environ.get("LOSSKIT_CHECKS", "auto").strip().lower() or "auto"
    if value in CHECK_MODES:
        return value
    if warn:
        warnings.warn(
            f"losskit: environment variable LOSSKIT_CHECKS is invalid, got {value!r}; expected one of "
            f"{', '.join(map(repr, CHECK_MODES))}. Using 'auto'; fix or unset LOSSKIT_CHECKS.",
            LossUsageWarning,
            stacklevel=3,
        )
    return "auto"


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
