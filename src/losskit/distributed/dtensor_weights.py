r"""``linear_cross_entropy`` with DTensor arguments: an output layer sharded by FSDP2
(``fully_shard``) or by tensor parallelism, on a 1-D device mesh.

How the weight ``W`` is laid out decides how the loss is computed:

* ``Replicate()`` -- every rank holds all of ``W`` (a replicated or ``fully_shard`` + TP
  parameter inside its module's forward). The loss is the single-process kernel on the local
  tensors; ``W``'s gradient is the mean of the ranks' gradients (one all-reduce), so it is the
  same on every rank, as a replicated gradient must be.
* ``Shard(0)``, the same batch on every rank -- tensor parallelism (``ColwiseParallel`` on
  ``lm_head``): each rank holds a block of the classes, and
  :func:`~losskit.distributed.vocab_parallel_linear_cross_entropy` computes the loss of the
  full logits from per-row statistics. Nothing of ``W`` is gathered; ``W.grad`` is ``Shard(0)``
  and ``input``'s gradient is the full one on every rank.
* ``Shard(0)``, a different batch on every rank -- data parallelism, i.e. FSDP2's sharded
  parameter used outside its own module's forward (``lm_head`` wrapped by ``fully_shard`` and
  its weight read by the parent's forward, or by the training loop). ``W`` is all-gathered as
  FSDP2 would, the loss is this rank's, and ``W``'s gradient is reduce-scattered back into the
  shard *averaged over the ranks*, as FSDP2 averages every other parameter's gradient.

The two ``Shard(0)`` cases look alike (a DTensor does not say whether the batch is replicated),
so the ranks tell: one all-gather of six numbers summing each rank's hidden states and targets.
Where the batch is the same on every rank both computations give the same loss and gradients;
the vocabulary-parallel one is taken because it never holds the full weight (unless the
vocabulary is so small that ``torch.chunk`` leaves a rank without classes: then it is gathered).

Why ``W.full_tensor()`` is not enough: its backward hands each rank *its own* gradient's slice,
as if every rank had computed the same gradient -- under data parallelism the other ranks'
contributions to the shard are lost (the gradient is that of one rank's batch, not the mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from losskit.checks import fail
from losskit.distributed.vocab_parallel import vocab_parallel_linear_cross_entropy
from losskit.types import Reduction

__all__ = ["dtensor_linear_cross_entropy", "same_batch_on_every_rank"]

_FN = "linear_cross_entropy"

#: relative tolerance of the hidden-state fingerprints that count as "the same batch" (replicated
#: activations are normally bit-identical; this absorbs reduction-order noise, not other data)
_SAME_BATCH_RTOL = 1e-6


class _AverageGradient(torch.autograd.Function):
    """Identity in forward; in backward the mean of the ranks' gradients (one all-reduce)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return total / dist.get_world_size(ctx.group), None


def _describe_placements(tensor: Any) -> str:
    return f"placements {tuple(tensor.placements)} on a {tensor.device_mesh.ndim}-D mesh"


def _mesh_of(arguments: dict[str, Any]) -> Any:
    """The device mesh every DTensor argument lives on (a clear error when they differ, or the
    mesh is not 1-D)."""
    from torch.distributed.tensor import DTensor

    meshes = {name: t.device_mesh for name, t in arguments.items() if isinstance(t, DTensor)}
    name, mesh = next(iter(meshes.items()))
    for other, other_mesh in meshes.items():
        if other_mesh != mesh:
            fail(
                f"{_FN}: {other} is a DTensor on mesh {other_mesh}, {name} on mesh {mesh}; expected every "
                "DTensor argument on the same device mesh. Redistribute them onto one mesh."
            )
    if mesh.ndim != 1:
        fail(
            f"{_FN}: {name} is a DTensor with {_describe_placements(arguments[name])}; expected a 1-D mesh "
            "(FSDP2 or tensor parallelism alone). With 2-D FSDP + TP, compute the loss inside the module's "
            "forward (FSDP2 gathers its parameter there, leaving the TP layout), or pass the 1-D DTensor "
            "of the tensor-parallel dimension."
        )
    return mesh


def _replicated_local(name: str, tensor: Any, expected: str) -> Any:
    """The local tensor of a replicated DTensor argument (anything else unchanged)."""
    from torch.distributed.tensor import DTensor, Replicate

    if not isinstance(tensor, DTensor):
        return tensor
    if not all(isinstance(p, Replicate) for p in tensor.placements):
        fail(
            f"{_FN}: {name} is a DTensor with {_describe_placements(tensor)}; expected (Replicate(),): "
            f"{expected}. Pass {name}.to_local() (this rank's own tensor), or "
            f"{name}.redistribute(mesh, [Replicate()])."
        )
    return tensor.to_local()


def _layout(name: str, tensor: Any) -> str:
    """``"replicate"`` / ``"shard"`` (rows, i.e. classes, sharded) / ``"plain"`` of the output
    layer's weight or bias; a clear error for any other layout."""
    from torch.distributed.tensor import DTensor, Replicate, Shard

    if not isinstance(tensor, DTensor):
        return "plain"
    placement = tensor.placements[0]
    if isinstance(placement, Replicate):
        return "replicate"
    if isinstance(placement, Shard) and placement.dim in (0, -tensor.dim()):
        return "shard"
    fail(
        f"{_FN}: {name} is a DTensor with {_describe_placements(tensor)}; expected (Replicate(),) or "
        "(Shard(0),) -- the output layer's rows (classes) sharded, as FSDP2 and ColwiseParallel shard "
        f"them. Redistribute first: {name}.redistribute(mesh, [Shard(0)]) (its gradient is redistributed back)."
    )


def _every_rank_holds_classes(n_classes: int, world: int) -> bool:
    """Whether ``Shard(0)`` (``torch.chunk``'s split: blocks of ``ceil(V / world)`` rows) leaves
    no rank without a row -- the vocabulary-parallel kernel needs classes on every rank."""
    return n_classes > 0 and math.ceil(n_classes / math.ceil(n_classes / world)) == world


def same_batch_on_every_rank(input: torch.Tensor, target: torch.Tensor, group: Any) -> bool:
    """Whether every rank of ``group`` holds the same hidden states and targets (tensor
    parallelism) rather than a batch of its own (data parallelism): one all-gather of each rank's
    shapes, an exact checksum of its class ids and two float64 sums of its hidden states."""
    rows = input.reshape(-1, input.shape[-1]) if input.dim() else input.reshape(1, 1)
    position = torch.arange(1, rows.shape[0] + 1, dtype=torch.float64, device=rows.device)
    row_sums = rows.sum(-1, dtype=torch.float64)
    ids = target.reshape(-1)
    if ids.is_floating_point():  # class probabilities
        check = (ids.to(torch.float64) * torch.arange(1, ids.numel() + 1, device=ids.device)).sum()
    else:  # exact: every term is below 1_000_003, the sum below 2**53
        check = (ids.long() * torch.arange(1, ids.numel() + 1, device=ids.device) % 1_000_003).sum().double()
    mine = torch.stack(
        [
            torch.tensor(float(input.numel()), dtype=torch.float64, device=rows.device),
            torch.tensor(float(ids.numel()), dtype=torch.float64, device=rows.device),
            check.to(rows.device),
            row_sums.sum(),
            (row_sums * position).sum(),
            torch.linalg.vector_norm(rows, 1, dtype=torch.float64),  # the scale of the tolerance
        ]
    )
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(everyone, mine, group=group)
    first = everyone[0]
    scale = float(first[5]) + 1e-30
    for other in everyone[1:]:
        if not torch.equal(other[:3], first[:3]):
            return False
        if float((other[3:5] - first[3:5]).abs().max()) > _SAME_BATCH_RTOL * scale:
            return False
    return True


def dtensor_linear_cross_entropy(
    single_process: Callable[..., Any],
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None,
    weight: torch.Tensor | None,
    reduction: Reduction,
    ignore_index: int | None,
    label_smoothing: float,
    options: object | None,
    z_loss: float,
    softcap: float | None,
    chunk_size: int | None,
    return_z_loss: bool,
    normalizer: float | torch.Tensor | None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`losskit.functional.linear_cross_entropy` when an argument is a DTensor (see the
    module's docstring for the layouts). ``single_process`` is that function, called with plain
    tensors (passed in: :mod:`losskit.distributed` sits below :mod:`losskit.functional`).

    ``input``, ``target`` and the class ``weight`` may be replicated DTensors; the output layer's
    ``linear_weight`` / ``linear_bias`` replicated or sharded on their rows, all on one 1-D mesh.
    The loss is a replicated DTensor when ``input`` is a DTensor, a plain tensor otherwise.

    Raises:
        LossInputError: any other placement, meshes that differ or are not 1-D; with a
            vocabulary-sharded weight (tensor parallelism), class-probability targets or
            ``return_z_loss=True`` (not computed by the vocabulary-parallel kernel).
    """
    from torch.distributed.tensor import DTensor, Replicate

    mesh = _mesh_of(
        {"input": input, "linear_weight": linear_weight, "linear_bias": linear_bias, "target": target, "weight": weight}
    )
    group = mesh.get_group()
    wrap = isinstance(input, DTensor)
    same = "the same on every rank"
    h = _replicated_local("input", input, f"hidden states {same} (a batch of its own per rank is a plain tensor)")
    y = _replicated_local("target", target, f"class ids {same}, or a plain tensor of this rank's targets")
    class_weight = _replicated_local("weight", weight, f"the full class-weight vector {same}")
    layout = _layout("linear_weight", linear_weight)
    if linear_bias is not None and _layout("linear_bias", linear_bias) != layout:

        def kind(t: Any) -> str:
            return f"a DTensor with {_describe_placements(t)}" if isinstance(t, DTensor) else "a plain tensor"

        fail(
            f"{_FN}: linear_bias is {kind(linear_bias)}, linear_weight {kind(linear_weight)}; expected the bias "
            "laid out as the weight (its entries are the same classes). Pass the layer's own bias."
        )
    kwargs: dict[str, Any] = {
        "weight": class_weight,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "softcap": softcap,
        "chunk_size": chunk_size,
        "normalizer": normalizer,
    }
    tensor_parallel = (
        layout == "shard"
        and _every_rank_holds_classes(linear_weight.shape[0], mesh.size())
        and (wrap or same_batch_on_every_rank(h, y, group))
    )
    if tensor_parallel:
        result: Any = _vocab_parallel(
            h, linear_weight, y, linear_bias, mesh, group, ignore_index, options, return_z_loss, kwargs
        )
    else:
        w, b = (_whole_layer(t, layout, mesh, group) for t in (linear_weight, linear_bias))
        result = single_process(
            h, w, y, linear_bias=b, ignore_index=ignore_index, options=options, return_z_loss=return_z_loss, **kwargs
        )
    if not wrap:
        return result  # type: ignore[no-any-return]
    parts = result if isinstance(result, tuple) else (result,)
    wrapped: tuple[torch.Tensor, ...] = tuple(
        DTensor.from_local(p, mesh, [Replicate()], run_check=False) for p in parts
    )
    return (wrapped[0], wrapped[1]) if return_z_loss else wrapped[0]


def _whole_layer(tensor: Any, layout: str, mesh: Any, group: Any) -> Any:
    """The whole weight (or bias) as a plain tensor, its gradient averaged over the ranks: each
    rank computed it from a batch of its own (data parallelism)."""
    from torch.distributed.tensor import Partial, Replicate

    if tensor is None or layout == "plain":
        return tensor
    if layout == "shard":  # gathered as FSDP2 does; the mean gradient is reduce-scattered back
        return tensor.redistribute(mesh, [Replicate()]).to_local(grad_placements=[Partial("avg")])
    return _AverageGradient.apply(tensor.to_local(), group)  # type: ignore[no-untyped-call]


def _vocab_parallel(
    h: torch.Tensor,
    linear_weight: Any,
    target: torch.Tensor,
    linear_bias: Any,
    mesh: Any,
    group: Any,
    ignore_index: int | None,
    options: object | None,
    return_z_loss: bool,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    """The tensor-parallel case: this rank's rows through the vocabulary-parallel kernel."""
    if return_z_loss:
        fail(
            f"{_FN}: return_z_loss=True with linear_weight sharded on its rows (tensor parallelism); expected "
            "return_z_loss=False: the vocabulary-parallel kernel returns the loss with the z-loss term in it, "
            "not the term alone. Drop return_z_loss (or log the z-loss from a separate no-grad call)."
        )
    if target.is_floating_point():
        fail(
            f"{_FN}: target has dtype {str(target.dtype).replace('torch.', '')} with linear_weight sharded on its "
            "rows (tensor parallelism); expected int64 class ids (class probabilities would need the full "
            "logits). Pass class ids, or gather the logits."
        )
    if dist.get_rank(group) != mesh.get_local_rank():
        fail(
            f"{_FN}: linear_weight's mesh puts rank {dist.get_rank()} at position {mesh.get_local_rank()} but its "
            f"process group at {dist.get_rank(group)}; expected the mesh in rank order (the shards' class offsets "
            "follow the group). Build the mesh with init_device_mesh."
        )
    if kwargs["chunk_size"] is None and options is not None:
        kwargs = {**kwargs, "chunk_size": getattr(options, "batch_chunk_size", None)}
    w, b = linear_weight.to_local(), None if linear_bias is None else linear_bias.to_local()
    if torch.is_autocast_enabled(h.device.type):  # as F.linear under autocast
        low = torch.get_autocast_dtype(h.device.type)
        h, w, b = h.to(low), w.to(low), None if b is None else b.to(low)
    unbatched = h.dim() == 1
    if unbatched:  # (D,) and (): one row
        h, target = h.unsqueeze(0), target.reshape(1)
    loss = vocab_parallel_linear_cross_entropy(
        h, w, target, local_bias=b, group=group, ignore_index=-100 if ignore_index is None else ignore_index, **kwargs
    )
    return loss.reshape(()) if unbatched and kwargs["reduction"] == "none" else loss
