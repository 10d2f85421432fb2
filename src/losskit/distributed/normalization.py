"""Global normalization: the mean over every counted target of an optimizer step, across
micro-batches (gradient accumulation) and data-parallel ranks.

Averaging per-micro-batch or per-rank means weighs a token of a short micro-batch more than a
token of a long one, so the gradient differs from the big batch's whenever the counts of
non-ignored targets differ (the 2024 gradient-accumulation bug of a popular trainer). The fix
is to divide every micro-batch's *summed* loss by one count: the targets of the whole step on
all ranks. DDP then averages the gradients over the ``W`` ranks, so the count handed to the
loss is ``total / W``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

from losskit._core.cross_entropy import index_denominator
from losskit.checks import fail

__all__ = ["global_normalizer", "count_targets"]


def count_targets(
    targets: torch.Tensor | Iterable[torch.Tensor],
    *,
    ignore_index: int = -100,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The number of counted targets (not ``ignore_index``) in one or more tensors of class ids,
    or the sum of their class weights ``weight[t]`` -- the denominator ``cross_entropy``'s mean
    uses. Local: no communication.

    Example:
        >>> import torch
        >>> from losskit.distributed import count_targets
        >>> count_targets([torch.tensor([1, -100, 2]), torch.tensor([0])])
        tensor(3.)
    """
    parts = [targets] if isinstance(targets, torch.Tensor) else list(targets)
    if not parts:
        fail(
            "count_targets: targets is empty; expected one or more tensors of class ids. Pass the step's micro-batch targets."
        )
    total = torch.zeros((), dtype=torch.float64, device=parts[0].device)
    for t in parts:
        if not isinstance(t, torch.Tensor) or t.is_floating_point():
            fail(
                f"count_targets: got {type(t).__name__ if not isinstance(t, torch.Tensor) else t.dtype}; expected "
                "int64 class-id tensors (the targets of each micro-batch). Use target.long()."
            )
        # exactly the denominator cross_entropy's mean uses
        n_classes = weight.shape[0] if weight is not None else torch.iinfo(torch.int64).max
        total = total + index_denominator(t.reshape(-1), weight, ignore_index, n_classes)
    return total.float()


def global_normalizer(
    targets: torch.Tensor | Iterable[torch.Tensor],
    *,
    ignore_index: int = -100,
    weight: torch.Tensor | None = None,
    group: Any = None,
    ddp_average: bool = True,
) -> torch.Tensor:
    """The ``normalizer=`` that makes data-parallel training with gradient accumulation give
    exactly the gradient of one big batch with ``reduction="mean"``.

    Counts the targets of all this rank's micro-batches of the optimizer step
    (:func:`count_targets`), sums the count over the data-parallel ``group`` (one all-reduce of
    one number per step), and divides it by the group size when DDP averages gradients
    (``ddp_average=True``, DDP's behaviour). Pass the result as ``normalizer=`` to
    ``cross_entropy``, ``linear_cross_entropy`` or the vocab-parallel losses for every
    micro-batch of the step. Without torch.distributed initialized it is the local count.

    Args:
        targets: the class-id tensors of this rank's micro-batches of one optimizer step.
        ignore_index: id that does not count.
        weight: class weights, if the loss uses them (the mean divides by their sum).
        group: the data-parallel process group (default: the world). For tensor-parallel
            ranks that share the same batch, pass a group without them.
        ddp_average: divide by the group size because DDP averages the gradients.

    Returns:
        A 0-d float tensor, the same on every rank of ``group``.

    Example:
        >>> import torch
        >>> from losskit.distributed import global_normalizer
        >>> global_normalizer([torch.tensor([1, 2, -100]), torch.tensor([4, 4, 4, 4])])  # single process
        tensor(6.)
    """
    total = count_targets(targets, ignore_index=ignore_index, weight=weight)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        if ddp_average:
            total = total / dist.get_world_size(group)
    if not float(total) > 0:
        fail(
            "global_normalizer: no counted target in the whole step (every target is ignore_index on every "
            "rank); expected at least one. Skip this step, or check the padding."
        )
    return total
