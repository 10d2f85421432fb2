"""Code that runs inside the gloo processes spawned by tests/test_distributed.py.

Every rank builds the same full-size data from a seed, takes its shard, and checks losskit's
distributed losses against single-process torch references computed on the full data.
Each case returns nothing or raises; the parent collects ``(rank, case, error)``.
"""

from __future__ import annotations

import os
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F

import losskit.functional as LF
from losskit.distributed import global_normalizer, vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy
from tests._gloo import expect_error

#: uneven shard sizes of V = 37 classes, by world size
SHARDS = {2: [13, 24], 3: [5, 19, 13]}
V = 37


def _bounds(rank: int, world: int) -> tuple[int, int]:
    sizes = SHARDS[world]
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


OPTIONS = {
    "plain": {},
    "ignore": {"ignore": True},
    "smoothing": {"label_smoothing": 0.2},
    "weight": {"weight": True},
    "all": {"weight": True, "ignore": True, "label_smoothing": 0.1},
}


def _data(seed: int, n: int = 23, ignore: bool = False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, V, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, V, (n,), generator=g)
    if ignore:
        target[torch.rand(n, generator=g) < 0.3] = -100
    weight = torch.rand(V, generator=g, dtype=torch.float64) + 0.1
    upstream = torch.randn(n, generator=g, dtype=torch.float64)
    return logits, target, weight, upstream


def case_vocab_parallel_cross_entropy(rank: int, world: int) -> None:
    lo, hi = _bounds(rank, world)
    for seed, (name, opts) in enumerate(OPTIONS.items()):
        for reduction in ("none", "mean", "sum"):
            full, target, weight, upstream = _data(seed, ignore=opts.get("ignore", False))
            kw = dict(reduction=reduction, label_smoothing=opts.get("label_smoothing", 0.0))
            w = weight if opts.get("weight") else None
            ref_in = full.clone().requires_grad_(True)
            ref = F.cross_entropy(ref_in, target, weight=w, **kw)
            ref.backward(upstream if reduction == "none" else torch.ones((), dtype=torch.float64))
            local = full[:, lo:hi].clone().requires_grad_(True)
            ours = vocab_parallel_cross_entropy(local, target, weight=w, **kw)
            torch.testing.assert_close(ours, ref.detach(), msg=f"{name} {reduction} value")
            ours.backward(upstream if reduction == "none" else torch.ones((), dtype=torch.float64))
            torch.testing.assert_close(local.grad, ref_in.grad[:, lo:hi], msg=f"{name} {reduction} grad")
    # float32 and a normalizer
    full, target, _, _ = _data(99)
    local = full[:, lo:hi].float().requires_grad_(True)
    ours = vocab_parallel_cross_entropy(local, target, normalizer=100.0)
    torch.testing.assert_close(ours, F.cross_entropy(full.float(), target, reduction="sum") / 100, rtol=1e-5, atol=1e-6)


def case_vocab_parallel_linear_cross_entropy(rank: int, world: int) -> None:
    lo, hi = _bounds(rank, world)
    d = 6
    for seed, (name, opts) in enumerate(OPTIONS.items()):
        for reduction in ("none", "mean", "sum"):
            for bias in (False, True):
                g = torch.Generator().manual_seed(100 + seed)
                h = torch.randn(4, 7, d, generator=g, dtype=torch.float64)
                W = torch.randn(V, d, generator=g, dtype=torch.float64)
                b = torch.randn(V, generator=g, dtype=torch.float64) if bias else None
                target = torch.randint(0, V, (4, 7), generator=g)
                if opts.get("ignore"):
                    target[torch.rand(4, 7, generator=g) < 0.3] = -100
                w = torch.rand(V, generator=g, dtype=torch.float64) + 0.1 if opts.get("weight") else None
                upstream = torch.randn(4, 7, generator=g, dtype=torch.float64)
                kw = dict(reduction=reduction, label_smoothing=opts.get("label_smoothing", 0.0))
                h_ref, W_ref = h.clone().requires_grad_(True), W.clone().requires_grad_(True)
                b_ref = b.clone().requires_grad_(True) if bias else None
                ref = F.cross_entropy(F.linear(h_ref, W_ref, b_ref).permute(0, 2, 1), target, weight=w, **kw)
                up = upstream if reduction == "none" else torch.ones((), dtype=torch.float64)
                ref.backward(up)
                h_our = h.clone().requires_grad_(True)
                W_our = W[lo:hi].clone().requires_grad_(True)
                b_our = b[lo:hi].clone().requires_grad_(True) if bias else None
                ours = vocab_parallel_linear_cross_entropy(
                    h_our, W_our, target, local_bias=b_our, weight=w, chunk_size=5, **kw
                )
                tag = f"{name} {reduction} bias={bias}"
                torch.testing.assert_close(ours, ref.detach(), msg=f"{tag} value")
                ours.backward(up)
                torch.testing.assert_close(h_our.grad, h_ref.grad, msg=f"{tag} input grad")
                torch.testing.assert_close(W_our.grad, W_ref.grad[lo:hi], msg=f"{tag} weight grad")
                if bias:
                    torch.testing.assert_close(b_our.grad, b_ref.grad[lo:hi], msg=f"{tag} bias grad")


def _capped_reference(logits, target, weight, reduction, label_smoothing, z_loss, softcap):
    """Plain torch: cross-entropy of soft-capped logits plus z * lse^2 on the counted rows, reduced
    with cross-entropy's denominator (the written-out formula, not losskit's code)."""
    x = softcap * torch.tanh(logits / softcap) if softcap else logits
    rows = F.cross_entropy(x, target, weight=weight, reduction="none", label_smoothing=label_smoothing)
    counted = target != -100
    rows = rows + z_loss * torch.logsumexp(x, 1).square() * counted
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    safe = target.clamp_min(0)
    return rows.sum() / (counted.sum() if weight is None else (weight[safe] * counted).sum())


ZS_OPTIONS = {
    "z": {"z_loss": 1e-2},
    "cap": {"softcap": 2.5},
    "z+cap+all": {"z_loss": 1e-2, "softcap": 2.5, "weight": True, "ignore": True, "label_smoothing": 0.1},
}


def case_vocab_parallel_z_loss_and_softcap(rank: int, world: int) -> None:
    """z-loss and soft-capping on sharded logits and on the sharded output layer equal the
    single-process loss, in value and gradients."""
    lo, hi = _bounds(rank, world)
    for seed, (name, opts) in enumerate(ZS_OPTIONS.items()):
        z, cap, ls = opts.get("z_loss", 0.0), opts.get("softcap"), opts.get("label_smoothing", 0.0)
        for reduction in ("none", "mean", "sum"):
            full, target, weight, upstream = _data(50 + seed, ignore=opts.get("ignore", False))
            w = weight if opts.get("weight") else None
            up = upstream if reduction == "none" else torch.ones((), dtype=torch.float64)
            ref_in = full.clone().requires_grad_(True)
            ref = _capped_reference(ref_in, target, w, reduction, ls, z, cap)
            ref.backward(up)
            single = LF.cross_entropy(full, target, w, reduction=reduction, label_smoothing=ls, z_loss=z, softcap=cap)
            torch.testing.assert_close(single, ref.detach(), msg=f"{name} {reduction} single-process value")
            local = full[:, lo:hi].clone().requires_grad_(True)
            ours = vocab_parallel_cross_entropy(
                local, target, weight=w, reduction=reduction, label_smoothing=ls, z_loss=z, softcap=cap
            )
            torch.testing.assert_close(ours, ref.detach(), msg=f"{name} {reduction} value")
            ours.backward(up)
            torch.testing.assert_close(local.grad, ref_in.grad[:, lo:hi], msg=f"{name} {reduction} grad")
            # the fused form on hidden states and this rank's rows of the output layer
            g = torch.Generator().manual_seed(70 + seed)
            h = torch.randn(23, 5, generator=g, dtype=torch.float64)
            W = torch.randn(V, 5, generator=g, dtype=torch.float64)
            h_ref, W_ref = h.clone().requires_grad_(True), W.clone().requires_grad_(True)
            ref = _capped_reference(h_ref @ W_ref.T, target, w, reduction, ls, z, cap)
            ref.backward(up)
            h_our, W_our = h.clone().requires_grad_(True), W[lo:hi].clone().requires_grad_(True)
            ours = vocab_parallel_linear_cross_entropy(
                h_our,
                W_our,
                target,
                weight=w,
                reduction=reduction,
                label_smoothing=ls,
                z_loss=z,
                softcap=cap,
                chunk_size=4,
            )
            torch.testing.assert_close(ours, ref.detach(), msg=f"{name} {reduction} fused value")
            ours.backward(up)
            torch.testing.assert_close(h_our.grad, h_ref.grad, msg=f"{name} {reduction} fused input grad")
            torch.testing.assert_close(W_our.grad, W_ref.grad[lo:hi], msg=f"{name} {reduction} fused weight grad")


def case_mismatches_raise_on_every_rank(rank: int, world: int) -> None:
    lo, hi = _bounds(rank, world)
    full, target, _, _ = _data(5)
    local = full[:, lo:hi]
    # rank 1 passes a target of the wrong shape: every rank raises, none hangs
    bad = target[:-1] if rank == 1 else target
    if rank == 1:
        expect_error(lambda: vocab_parallel_cross_entropy(local, bad), "(rank 1)", "target has shape (22,)")
    else:
        expect_error(
            lambda: vocab_parallel_cross_entropy(local, bad), "rank(s) [1] passed inputs that failed the local checks"
        )
    # different targets on different ranks
    other = target.clone()
    if rank == world - 1:
        other[0] = (other[0] + 1) % V
    expect_error(lambda: vocab_parallel_cross_entropy(local, other), "target differs between ranks")
    # different reductions
    expect_error(
        lambda: vocab_parallel_cross_entropy(local, target, reduction="sum" if rank == 0 else "mean"),
        "reduction differs between ranks",
    )
    expect_error(
        lambda: vocab_parallel_cross_entropy(local, target, z_loss=1e-4 if rank == 0 else 0.0),
        "z_loss differs between ranks, got [0.0001, 0.0",
    )
    expect_error(
        lambda: vocab_parallel_cross_entropy(local, target, softcap=-1.0), "softcap must be None or a positive number"
    )
    # an id beyond the last shard
    high = target.clone()
    high[3] = V + 4
    expect_error(lambda: vocab_parallel_cross_entropy(local, high), f"class id {V + 4} out of range", f"[0, {V - 1}]")
    # a local check failing on one rank only (float targets on rank 0): every rank stops
    if rank == 0:
        expect_error(
            lambda: vocab_parallel_cross_entropy(local, target.float()), "(rank 0)", "expected int64 global class ids"
        )
    else:
        expect_error(
            lambda: vocab_parallel_cross_entropy(local, target),
            "rank(s) [0] passed inputs that failed the local checks",
        )
    # a bad option on one rank only
    expect_error(
        lambda: vocab_parallel_cross_entropy(local, target, label_smoothing=1.5 if rank == world - 1 else 0.0),
        "label_smoothing" if rank == world - 1 else "failed the local checks",
    )
    # class weights: wrong length everywhere, or different lengths on different ranks
    expect_error(
        lambda: vocab_parallel_cross_entropy(local, target, weight=torch.ones(V - 1, dtype=torch.float64)),
        f"weight has length {V - 1} on every rank",
        f"({V},)",
    )
    expect_error(
        lambda: vocab_parallel_cross_entropy(local, target, weight=torch.ones(V + rank, dtype=torch.float64)),
        "the length of weight (-1: none) differs between ranks",
    )
    W = torch.randn(V, 3, dtype=torch.float64)
    h = torch.randn(23, 3, dtype=torch.float64)
    expect_error(
        lambda: vocab_parallel_linear_cross_entropy(h, W[lo:hi], target if rank else target[:5]),
        "(rank 0)" if rank == 0 else "rank(s) [0] passed inputs",
    )
    # the process group still works afterwards
    ok = vocab_parallel_cross_entropy(local, target)
    torch.testing.assert_close(ok, F.cross_entropy(full, target))


def _micro_batches(rank: int, seed: int, d: int, v: int):
    """Rank ``rank``'s 3 micro-batches: different lengths and padding on every rank."""
    g = torch.Generator().manual_seed(1000 * seed + rank)
    out = []
    for k in range(3):
        n = 3 + 4 * rank + 5 * k  # unequal token counts across ranks and micro-batches
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randint(0, v, (n,), generator=g)
        y[torch.rand(n, generator=g) < 0.25 * (rank + 1) / 2] = -100
        out.append((x, y))
    return out


def case_ddp_gradient_accumulation_equals_one_big_batch(rank: int, world: int) -> None:
    from contextlib import nullcontext

    from torch.nn.parallel import DistributedDataParallel as DDP

    d, v = 5, 11
    torch.manual_seed(0)
    model = torch.nn.Linear(d, v).double()
    reference = torch.nn.Linear(d, v).double()
    reference.load_state_dict(model.state_dict())
    ddp = DDP(model)
    mine = _micro_batches(rank, 7, d, v)
    norm = global_normalizer([y for _, y in mine])
    for k, (x, y) in enumerate(mine):
        with ddp.no_sync() if k < len(mine) - 1 else nullcontext():
            loss = LF.cross_entropy(ddp(x), y, normalizer=norm)
            loss.backward()
    everything = [mb for r in range(world) for mb in _micro_batches(r, 7, d, v)]
    x_all = torch.cat([x for x, _ in everything])
    y_all = torch.cat([y for _, y in everything])
    F.cross_entropy(reference(x_all), y_all).backward()
    torch.testing.assert_close(model.weight.grad, reference.weight.grad)
    torch.testing.assert_close(model.bias.grad, reference.bias.grad)
    # the usual per-micro-batch mean / accumulation steps is not the big batch's gradient
    naive = torch.nn.Linear(d, v).double()
    naive.load_state_dict(reference.state_dict())
    ddp_naive = DDP(naive)
    for k, (x, y) in enumerate(mine):
        with ddp_naive.no_sync() if k < len(mine) - 1 else nullcontext():
            (LF.cross_entropy(ddp_naive(x), y) / len(mine)).backward()
    assert not torch.allclose(naive.weight.grad, reference.weight.grad)


def case_vocab_parallel_head_with_global_normalization(rank: int, world: int) -> None:
    """Tensor parallel head shared by all ranks (same batch), normalizer over micro-batches only."""
    lo, hi = _bounds(rank, world)
    d = 4
    g = torch.Generator().manual_seed(3)
    W = torch.randn(V, d, generator=g, dtype=torch.float64)
    micro = []
    for n in (5, 9):
        y = torch.randint(0, V, (n,), generator=g)
        y[0] = -100
        micro.append((torch.randn(n, d, generator=g, dtype=torch.float64), y))
    # each rank is its own data-parallel group here (every rank of the tensor-parallel group sees the batch)
    singles = [dist.new_group([r]) for r in range(world)]
    norm = global_normalizer([y for _, y in micro], group=singles[rank])
    W_local = W[lo:hi].clone().requires_grad_(True)
    for x, y in micro:
        vocab_parallel_linear_cross_entropy(x, W_local, y, normalizer=norm).backward()
    W_ref = W.clone().requires_grad_(True)
    x_all = torch.cat([x for x, _ in micro])
    y_all = torch.cat([y for _, y in micro])
    F.cross_entropy(x_all @ W_ref.t(), y_all).backward()
    torch.testing.assert_close(W_local.grad, W_ref.grad[lo:hi])


def case_vocab_parallel_dtensor_and_btv_logits(rank: int, world: int) -> None:
    """(B, T, V_r) local logits, and DTensor logits sharded on the class axis (torch's
    loss_parallel layout), with label smoothing and weight + ignore_index (which loss_parallel
    lacks), against the single-process loss on the full logits."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard

    g = torch.Generator().manual_seed(7)
    full = torch.randn(2, 5, V, generator=g, dtype=torch.float64) * 2
    target = torch.randint(0, V, (2, 5), generator=g)
    target[0, :2] = -100
    weight = torch.rand(V, generator=g, dtype=torch.float64) + 0.1
    mesh = init_device_mesh("cpu", (world,))
    sizes = [c.shape[-1] for c in torch.chunk(full, world, -1)]  # DTensor's Shard split
    lo = sum(sizes[:rank])
    for name, kw in {
        "plain": {},
        "smoothing+weight": {"label_smoothing": 0.1, "weight": weight},
        "z+cap": {"z_loss": 0.01, "softcap": 3.0},
    }.items():
        for reduction in ("mean", "none"):
            up = (
                torch.randn(2, 5, generator=g, dtype=torch.float64)
                if reduction == "none"
                else torch.ones((), dtype=torch.float64)
            )
            ref_in = full.clone().requires_grad_(True)
            ref = _capped_reference(
                ref_in.flatten(0, 1),
                target.flatten(),
                kw.get("weight"),
                reduction,
                kw.get("label_smoothing", 0.0),
                kw.get("z_loss", 0.0),
                kw.get("softcap"),
            )
            ref = ref.reshape(2, 5) if reduction == "none" else ref
            ref.backward(up)
            for form in ("btv", "dtensor"):
                local = full[..., lo : lo + sizes[rank]].clone().requires_grad_(True)
                logits = local if form == "btv" else DTensor.from_local(local, mesh, [Shard(2)], run_check=False)
                t = target if form == "btv" else DTensor.from_local(target, mesh, [Replicate()], run_check=False)
                ours = vocab_parallel_cross_entropy(logits, t, reduction=reduction, **kw)
                torch.testing.assert_close(ours, ref.detach(), msg=f"{form} {name} {reduction} value")
                ours.backward(up)
                torch.testing.assert_close(
                    local.grad, ref_in.grad[..., lo : lo + sizes[rank]], msg=f"{form} {name} {reduction} grad"
                )
    bad = DTensor.from_local(full[..., lo : lo + sizes[rank]].clone(), mesh, [Shard(0)], run_check=False)
    expect_error(lambda: vocab_parallel_cross_entropy(bad, target), "expected the logits sharded on their class axis")


def case_vocab_parallel_default_chunks_with_uneven_and_empty_shards(rank: int, world: int) -> None:
    """Without chunk_size, every rank must walk the same chunks (each all-reduces row statistics):
    a budget that gives shards of different sizes different rows per chunk, and a rank holding no
    classes at all, once hung or mixed up the collectives."""
    import losskit.autograd.linear_cross_entropy as kernel

    layouts = {2: ([13, 24], [0, 37]), 3: ([5, 19, 13], [0, 20, 17])}[world]
    budget, least = kernel.CHUNK_BYTES, kernel.CHUNK_MIN_ROWS
    kernel.CHUNK_BYTES = 8 * 4 * 24  # 8 rows of the 24-class shard, 14 of the 13-class one
    kernel.CHUNK_MIN_ROWS = 1
    try:
        for sizes in layouts:
            lo = sum(sizes[:rank])
            hi = lo + sizes[rank]
            g = torch.Generator().manual_seed(sum(sizes[:2]))
            h = torch.randn(53, 6, generator=g, dtype=torch.float64)
            W = torch.randn(V, 6, generator=g, dtype=torch.float64)
            target = torch.randint(0, V, (53,), generator=g)
            h_ref, W_ref = h.clone().requires_grad_(True), W.clone().requires_grad_(True)
            ref = F.cross_entropy(h_ref @ W_ref.T, target, label_smoothing=0.1)
            ref.backward()
            h_our, W_our = h.clone().requires_grad_(True), W[lo:hi].clone().requires_grad_(True)
            ours = vocab_parallel_linear_cross_entropy(h_our, W_our, target, label_smoothing=0.1)
            torch.testing.assert_close(ours, ref.detach(), msg=f"{sizes} value")
            ours.backward()
            torch.testing.assert_close(h_our.grad, h_ref.grad, msg=f"{sizes} input grad")
            torch.testing.assert_close(W_our.grad, W_ref.grad[lo:hi], msg=f"{sizes} weight grad")
    finally:
        kernel.CHUNK_BYTES, kernel.CHUNK_MIN_ROWS = budget, least


CASES = [name for name in dir() if name.startswith("case_")]


def entry(rank: int, world: int, port: int, cases: list[str], queue) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        for name in cases:
            try:
                globals()[name](rank, world)
                queue.put((rank, name, None))
            except Exception:
                queue.put((rank, name, traceback.format_exc()))
            dist.barrier()
    finally:
        dist.destroy_process_group()
