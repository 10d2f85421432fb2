"""How the guardrails speak: tensor descriptions, the error to raise, and warnings that point at
the user's line (the first frame outside losskit and ``torch.nn``)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import torch

from losskit.errors import LossDtypeError, LossInputError, LossUsageWarning

__all__ = ["describe", "shape_str", "fail", "warn"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # losskit/
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def describe(tensor: torch.Tensor) -> str:
    """``"dtype float32 and shape (8, 10)"`` -- how messages name a tensor."""
    return f"dtype {str(tensor.dtype).replace('torch.', '')} and shape {shape_str(tensor.shape)}"


def shape_str(shape: Sequence[int]) -> str:
    dims = tuple(int(d) for d in shape)
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def fail(message: str, *, dtype: bool = False) -> NoReturn:
    """Raise the error for ``message`` (a :class:`LossDtypeError` when the dtype is the problem)."""
    raise (LossDtypeError if dtype else LossInputError)(message)


def _user_stacklevel() -> int:
    """Stack level of the first frame outside losskit and ``torch.nn`` (the user's call)."""
    frame: FrameType | None = sys._getframe(1)
    level_ = 1
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith((_PACKAGE_DIR, _TORCH_DIR)):
            return level_
        frame = frame.f_back
        level_ += 1
    return 1


def warn(message: str) -> None:
    """Emit a :class:`LossUsageWarning` pointing at the user's line."""
    warnings.warn(message, LossUsageWarning, stacklevel=_user_stacklevel())
