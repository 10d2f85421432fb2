"""Small inputs on a CPU: torch's own fused operations where they compute what losskit's
kernels would (same values and gradients), the guardrails around them unchanged.

A ``losskit compare`` step trains on a 64 x 10 batch: tens of microseconds of arithmetic, and
ten times that in a kernel's per-call Python and small operations (each a dispatch, and on a
loaded machine possibly a parallel region). The kernels' memory savings do not matter there.
"""

from __future__ import annotations

import math

import torch

from losskit import checks
from losskit._core import cross_entropy as core

__all__ = ["SMALL_INPUT_ELEMENTS", "long_ids", "small_and_plain", "warn_after_fused"]

#: On a CPU, logits of at most this many elements take torch's own fused ``cross_entropy`` (same
#: values and gradients: it is the reference of every parity test). A small batch -- 64 x 10 in a
#: ``losskit compare`` step -- costs tens of microseconds of arithmetic and ten times that in the
#: kernel's per-call Python and operations; the kernel's memory saving does not matter there.
SMALL_INPUT_ELEMENTS = 2**16


def long_ids(target: torch.Tensor) -> torch.Tensor:
    """Class ids as torch's fused ops take them (int64; int8/int16/int32/uint8 ids give the same
    values as int64 ones, as on the kernel's path)."""
    return target if target.dtype == torch.int64 else target.long()


def small_and_plain(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    prob_target: bool,
    mode: str,
    ignore_index: int,
) -> bool:
    """Whether torch's fused op computes what losskit would: small CPU float32/float64 logits,
    targets and weights of torch's dtypes (class ids of any integer dtype: the caller passes
    ``long_ids(target)``, int64 as torch's ops take them), class ids in range or ignored (torch raises for others
    where losskit gives NaN; the full checks have verified them), outside ``torch.compile`` and
    ``torch.func`` (where reading the ids is not possible)."""
    if input.device.type != "cpu" or input.numel() > SMALL_INPUT_ELEMENTS or input.numel() == 0:
        return False
    if input.dtype not in (torch.float32, torch.float64) or (weight is not None and weight.dtype != input.dtype):
        return False
    if prob_target:
        return target.dtype == input.dtype
    integer = not target.dtype.is_floating_point and not target.dtype.is_complex and target.dtype != torch.bool
    if not integer or torch.compiler.is_compiling() or core.functorch_active(input, target, weight):
        return False
    return mode == "full" or core.ids_in_range(target, ignore_index, input.shape[0 if input.dim() == 1 else 1])


def warn_after_fused(
    fn: str,
    mode: str,
    reduction: str,
    loss: torch.Tensor,
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    prob_target: bool,
) -> None:
    """The warnings of a result computed by torch's fused op, as the kernel's path gives them:
    empty batch, every target ignored (its denominator is computed only when the mean is not
    finite, the one way a zero denominator shows), then a non-finite result."""
    if mode == "off":
        return
    class_dim = 0 if input.dim() == 1 else 1
    n_rows = target.numel() if not prob_target else math.prod(input.shape[:class_dim] + input.shape[class_dim + 1 :])
    if n_rows and (mode != "full" or checks.all_finite(loss)):
        return  # neither empty nor, when the values are checked, NaN: nothing to say
    denominator = None
    if mode == "full" and reduction == "mean" and not prob_target and n_rows:
        ids = core.flatten_ids(target, input.dim())
        denominator = core.index_denominator(ids, weight, ignore_index, input.shape[class_dim])
    checks.warn_if_empty_or_all_ignored(fn, reduction, n_rows, denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
