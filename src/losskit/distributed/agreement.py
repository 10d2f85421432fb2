"""Guardrails of the vocabulary-parallel losses: local argument checks, and one exchange that
makes every rank of the group agree on shapes, options and targets -- or raise the same error.

A rank whose inputs are bad must not raise alone: the others would wait in the next collective
for ever. So each rank first records its local problem (:func:`local_problem`), then all ranks
all-gather a small vector of shapes, options and a checksum of the targets (:func:`exchange`),
and every rank raises the same :class:`~losskit.LossInputError` when anything disagrees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from losskit import checks
from losskit.checks import describe, fail, shape_str
from losskit.errors import LossInputError

__all__ = [
    "world",
    "exchange",
    "local_problem",
    "logits_problem",
    "hidden_problem",
    "shard_weight",
    "is_dtensor",
    "dtensor_shard",
]

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def world(group: Any) -> tuple[int, int]:
    """``(rank, world size)`` in ``group``; a clear error when torch.distributed is not set up."""
    if not dist.is_available() or not dist.is_initialized():
        fail(
            "vocab_parallel: torch.distributed is not initialized; expected a process group. Call "
            "torch.distributed.init_process_group(...) first (torchrun sets up the environment)."
        )
    return dist.get_rank(group), dist.get_world_size(group)


def _as_int(value: object, scale: float = 1e6) -> int:
    """An option as an integer for the exchange (-1 for what is not a number, -2 for None)."""
    if value is None:
        return -2
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return -1
    return round(float(value) * scale)


def exchange(
    fn: str,
    group: Any,
    device: torch.device,
    n_rows: int,
    v_local: int,
    problem: str | None,
    target: Any,
    ignore_index: int,
    options: Mapping[str, object],
    weight: torch.Tensor | None = None,
) -> tuple[list[int], int]:
    """All-gather every rank's shapes, ``options`` and target checksum; raise the same error on
    every rank when they disagree. Returns the class offsets of the shards and the class count."""
    ok = int(problem is None)
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex():
        target = torch.zeros(0, dtype=torch.long)  # the local problem is already recorded
    weight_len = -1 if weight is None else (weight.shape[0] if weight.dim() == 1 else -2)
    ids = target.reshape(-1).long()
    counted = ids[ids != ignore_index]
    lo = int(counted.min()) if counted.numel() else 0
    hi = int(counted.max()) if counted.numel() else -1
    checksum = int((ids * torch.arange(1, ids.numel() + 1, device=ids.device) % 1_000_003).sum()) if ids.numel() else 0
    agreed = {"ignore_index": ignore_index, "the length of weight (-1: none)": weight_len}
    encoded = [_REDUCTIONS.get(str(v), -1) if k == "reduction" else _as_int(v) for k, v in options.items()]
    meta = torch.tensor(
        [n_rows, v_local, ok, ids.numel(), checksum, lo, hi, *agreed.values(), *encoded],
        dtype=torch.int64,
        device=device,
    )
    rank, size = world(group)
    gathered = [torch.empty_like(meta) for _ in range(size)]
    dist.all_gather(gathered, meta, group=group)
    rows = [g.tolist() for g in gathered]
    bad = [r for r, m in enumerate(rows) if m[2] != 1]
    if bad:
        if problem is not None:
            fail(f"{fn} (rank {rank}): {problem}")
        fail(
            f"{fn}: rank(s) {bad} passed inputs that failed the local checks (see the error on that rank); "
            "every rank stops here instead of hanging in a collective. Fix the inputs on those ranks."
        )
    names = ["the number of rows of local_logits/input", None, None, "target.numel()", None, None, None]
    names += list(agreed) + list(options)
    for col, name in enumerate(names):
        values = [m[col] for m in rows]
        if name is not None and len(set(values)) > 1:
            shown = values if col < 7 + len(agreed) or name == "reduction" else [v / 1e6 for v in values]
            fail(
                f"{fn}: {name} differs between ranks, got {shown} (by rank); expected the same on every "
                "rank of the group (each rank holds a shard of the classes of the same rows). Pass the "
                "same batch and options on every rank."
            )
    if len({m[4] for m in rows}) > 1:
        fail(
            f"{fn}: target differs between ranks (checksums {[m[4] for m in rows]}); expected the same "
            "global class ids on every rank of the group. Broadcast the targets from one rank."
        )
    sizes = [m[1] for m in rows]
    offsets = [sum(sizes[:r]) for r in range(size)]
    total = sum(sizes)
    if rows[0][8] not in (-1, total):
        fail(
            f"{fn}: weight has length {rows[0][8]} on every rank; expected the full class-weight vector "
            f"({total},) -- all shards' classes ({sizes} by rank). Pass the same full weight on every rank."
        )
    lo_all, hi_all = min(m[5] for m in rows), max(m[6] for m in rows)
    if checks.get_checks() != "off" and rows[0][3] and (lo_all < 0 or hi_all >= total) and hi_all >= lo_all:
        example = hi_all if hi_all >= total else lo_all
        fail(
            f"{fn}: target has class id {example} out of range; expected global ids in [0, {total - 1}] "
            f"(the shards hold {sizes} classes by rank) or ignore_index={ignore_index}. Remap the labels, or "
            "check the shard sizes."
        )
    return offsets, total


def local_problem(
    fn: str,
    weight: torch.Tensor | None,
    reduction: str,
    label_smoothing: float,
    target: Any,
    normalizer: Any,
    z_loss: float,
    softcap: float | None,
) -> str | None:
    """The message of the first local argument check that fails, or None. Raised only after the
    exchange, so that every rank of the group stops together instead of the others hanging."""
    try:
        checks.check_reduction(fn, reduction)
        checks.check_label_smoothing(fn, label_smoothing)
        checks.check_z_loss_and_softcap(fn, z_loss, softcap)
        checks.check_tensor(fn, "target", target)
        if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
            fail(
                f"{fn}: target has {describe(target)}; expected int64 global class ids. Use target.long().", dtype=True
            )
        if weight is not None:
            checks.check_float_input(fn, "weight", weight)
        checks.check_normalizer(fn, normalizer, reduction)
    except LossInputError as exc:
        return str(exc).removeprefix(f"{fn}: ")
    return None


def logits_problem(local_logits: Any, target: torch.Tensor) -> str | None:
    """What is wrong with ``local_logits`` / ``target`` of ``vocab_parallel_cross_entropy``."""
    if not isinstance(local_logits, torch.Tensor) or not local_logits.is_floating_point() or local_logits.dim() != 2:
        got = describe(local_logits) if isinstance(local_logits, torch.Tensor) else type(local_logits).__name__
        return f"local_logits has {got}; expected float logits of shape (N, V_local), this rank's block of classes."
    if target.dim() != 1 or target.shape[0] != local_logits.shape[0]:
        return (
            f"target has shape {shape_str(target.shape)}, local_logits {shape_str(local_logits.shape)}; expected "
            f"target ({local_logits.shape[0]},), one global class id per row. Flatten (B, T) inputs first."
        )
    return None


def hidden_problem(input: Any, local_weight: Any, target: torch.Tensor, local_bias: Any, chunk_size: Any) -> str | None:
    """What is wrong with the arguments of ``vocab_parallel_linear_cross_entropy``."""
    if not (isinstance(input, torch.Tensor) and input.is_floating_point() and input.dim() in (2, 3)):
        return "input must be float hidden states of shape (N, D) or (B, T, D)."
    if not (
        isinstance(local_weight, torch.Tensor)
        and local_weight.dim() == 2
        and local_weight.shape[1] == input.shape[-1]
        and local_weight.dtype == input.dtype
    ):
        got = describe(local_weight) if isinstance(local_weight, torch.Tensor) else type(local_weight).__name__
        return (
            f"local_weight has {got}; expected (V_local, {input.shape[-1]}) in input's dtype, this rank's rows "
            "of the output layer."
        )
    if tuple(target.shape) != tuple(input.shape[:-1]):
        return (
            f"target has shape {shape_str(target.shape)}; expected {shape_str(input.shape[:-1])}, one global "
            f"class id per hidden state of input {shape_str(input.shape)}."
        )
    if local_bias is not None and tuple(local_bias.shape) != (local_weight.shape[0],):
        return f"local_bias has shape {shape_str(local_bias.shape)}; expected ({local_weight.shape[0]},)."
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        return f"chunk_size must be a positive number of rows, got {chunk_size!r}."
    return None


def shard_weight(
    fn: str, weight: torch.Tensor | None, n_classes: int, offset: int, v_local: int, acc: torch.dtype
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The full class weights in the accumulation dtype and this shard's slice of them."""
    if weight is None:
        return None, None
    if weight.dim() != 1 or weight.shape[0] != n_classes:
        fail(
            f"{fn}: weight has shape {shape_str(weight.shape)}; expected the full class-weight vector "
            f"({n_classes},) on every rank (all shards' classes). Pass the same weight on every rank."
        )
    w = weight.to(acc)
    return w, w[offset : offset + v_local]


def is_dtensor(tensor: object) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor``."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        return False
    return isinstance(tensor, DTensor)


def dtensor_shard(fn: str, logits: Any, target: Any) -> tuple[torch.Tensor, Any, Any]:
    """``(local logits, local target, process group)`` of DTensor logits sharded on their last
    axis over a 1-D mesh; a clear error for any other layout."""
    from torch.distributed.tensor import Replicate, Shard

    mesh, placements = logits.device_mesh, logits.placements
    last = logits.dim() - 1
    if mesh.ndim != 1 or not (isinstance(placements[0], Shard) and placements[0].dim in (last, -1)):
        fail(
            f"{fn}: local_logits is a DTensor with placements {tuple(placements)} on a {mesh.ndim}-D mesh; "
            f"expected the logits sharded on their class axis, placements (Shard({last}),) on a 1-D mesh "
            "(as a column-parallel output layer gives). Redistribute with logits.redistribute(mesh, [Shard(-1)])."
        )
    if is_dtensor(target):
        if not all(isinstance(p, Replicate) for p in target.placements):
            fail(
                f"{fn}: target is a DTensor with placements {tuple(target.placements)}; expected a replicated "
                "target (the same ids on every rank). Use target.full_tensor() or a plain tensor."
            )
        target = target.to_local()
    return logits.to_local(), target, mesh.get_group()
