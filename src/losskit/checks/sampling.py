"""Value checks on a budget: evenly spaced samples of rows and elements, exact ranges up to a
size, and the after-the-fact diagnosis of a NaN/Inf result."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from losskit.checks.messages import warn

__all__ = [
    "SAMPLE_ROWS",
    "SAMPLE_ELEMENTS",
    "FULL_SCAN_ELEMENTS",
    "sample_rows",
    "sample_values",
    "value_range",
    "warn_nonfinite_result",
    "all_finite",
]

SAMPLE_ROWS = 64


SAMPLE_ELEMENTS = 2**18


FULL_SCAN_ELEMENTS = 2**20


def sample_rows(x: torch.Tensor, class_dim: int) -> torch.Tensor:
    """Up to :data:`SAMPLE_ROWS` (fewer for many classes) evenly spaced rows of ``x`` as a ``(rows, classes)`` matrix.

    ``x`` has the class dimension at ``class_dim`` (1 for ``(N, C, d1, ...)``, 0 for ``(C,)``).
    Only the sampled values are copied, so the cost does not depend on the size of ``x``.
    """
    if x.dim() == 1:
        return x.unsqueeze(0)
    moved = x.movedim(class_dim, -1)  # a view
    flat_rows = moved.shape[:-1].numel()
    count = max(4, min(SAMPLE_ROWS, SAMPLE_ELEMENTS // max(moved.shape[-1], 1)))
    if flat_rows <= count:
        return moved.reshape(-1, moved.shape[-1])
    index = torch.linspace(0, flat_rows - 1, count, device=x.device).long()
    # unravel the flat row index into the leading dims without materialising the reshape
    return moved[_unravel(index, moved.shape[:-1])]


def _unravel(index: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Flat indices -> one index tensor per dim (torch.unravel_index costs 36 MB and 0.3 s on
    its first call, measured with benchmarks/bench_losses.py)."""
    coords = []
    for size in reversed(tuple(shape)):
        coords.append(index % size)
        index = index // size
    return tuple(reversed(coords))


def sample_values(x: torch.Tensor, count: int = 4096) -> torch.Tensor:
    """Up to ``count`` evenly spaced elements of ``x`` as a 1-D tensor (copies only those)."""
    total = x.numel()
    if total <= count:
        return x.reshape(-1)
    index = torch.linspace(0, total - 1, count, device=x.device).long()
    return x[_unravel(index, x.shape)]


def value_range(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of ``x``: exact up to :data:`FULL_SCAN_ELEMENTS`, else over a sample."""
    x = x.detach()
    if x.numel() > FULL_SCAN_ELEMENTS:
        if x.is_contiguous():  # a strided view: no index tensor, no copy
            x = x.view(-1)[:: -(-x.numel() // SAMPLE_ELEMENTS)]
        else:
            x = sample_values(x, SAMPLE_ELEMENTS)
    lo, hi = torch.aminmax(x)
    return float(lo), float(hi)


def all_finite(result: torch.Tensor) -> bool:
    """Whether every value of ``result`` is finite: one read for a reduced (0-d) loss, where
    ``torch.isfinite`` is five operations -- a sizeable part of a small loss's call."""
    if result.dim() == 0:
        return math.isfinite(result.item())
    return bool(torch.isfinite(result.detach()).all())


def warn_nonfinite_result(fn: str, result: torch.Tensor, input: torch.Tensor) -> None:
    """After the fact: if the loss is NaN/Inf, count NaN/Inf in the input and say so.

    Costs one reduction over the *result* (a scalar, or one value per sample), so correct
    inputs pay almost nothing; the input is scanned only once something went wrong.
    """
    if all_finite(result):
        return
    x = input.detach()
    n_nan = int(torch.isnan(x).sum())
    n_inf = int(torch.isinf(x).sum())
    if n_nan or n_inf:
        warn(
            f"{fn}: input contains {n_nan} NaN and {n_inf} Inf value(s) out of {x.numel()}, and "
            "the loss is not finite; expected finite values. Find where they come from with "
            "torch.autograd.set_detect_anomaly(True), lower the learning rate, or clip gradients."
        )
