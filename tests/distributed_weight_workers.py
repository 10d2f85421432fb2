"""Code that runs inside the gloo processes spawned by tests/test_distributed_weights.py:
``linear_cross_entropy`` with DTensor and FSDP2 (``fully_shard``) weights.

Every rank builds the same full-size data from a seed and checks losskit against single-process
torch (``F.cross_entropy`` on ``F.linear``, soft-cap and z-loss written out), never against
losskit itself. Data-parallel cases give each rank a batch of its own, of a different size; the
expected gradient of a data-parallel weight is then the mean over the ranks of each rank's
gradient (what FSDP2 and DDP compute). Each case returns nothing or raises.
"""

from __future__ import annotations

import os
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F

import losskit.functional as LF
from losskit.distributed import dtensor_weights, global_normalizer
from tests._gloo import expect_error

V = 37  # classes: torch.chunk splits them [19, 18] over 2 ranks, [13, 13, 11] over 3
D = 6

#: option sets of the grid: every one is run with reductions none / mean / sum, with and without bias
OPTIONS = {
    "plain": {},
    "ignore": {"ignore": True},
    "ignore_index=-1": {"ignore": True, "ignore_index": -1},
    "smoothing+weight": {"label_smoothing": 0.2, "weight": True, "ignore": True},
    "z+softcap": {"z_loss": 1e-2, "softcap": 2.5, "ignore": True},
}


def _reference(h, W, b, target, weight, reduction, label_smoothing=0.0, z_loss=0.0, softcap=None, ignore_index=-100):
    """Plain torch: cross-entropy of the (soft-capped) logits plus ``z * lse^2`` on the counted
    rows, reduced with cross-entropy's denominator (the sum of the counted targets' weights)."""
    logits = F.linear(h, W, b).reshape(-1, W.shape[0])
    t = target.reshape(-1)
    x = softcap * torch.tanh(logits / softcap) if softcap else logits
    rows = F.cross_entropy(
        x, t, weight=weight, reduction="none", label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    counted = t != ignore_index
    rows = rows + z_loss * torch.logsumexp(x, 1).square() * counted
    if reduction == "none":
        return rows.reshape(target.shape)
    if reduction == "sum":
        return rows.sum()
    safe = torch.where(counted, t, 0)
    return rows.sum() / (counted.sum() if weight is None else (weight[safe] * counted).sum())


def _batch(seed: int, shape: tuple[int, ...], opts: dict):
    """Hidden states, targets and a per-token upstream gradient for ``shape`` (the target's)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*shape, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, shape, generator=g)
    if opts.get("ignore"):
        y[torch.rand(shape, generator=g) < 0.3] = opts.get("ignore_index", -100)
    upstream = torch.randn(shape, generator=g, dtype=torch.float64)
    return h, y, upstream


def _layer(seed: int, bias: bool, opts: dict):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(V, D, generator=g, dtype=torch.float64)
    b = torch.randn(V, generator=g, dtype=torch.float64) if bias else None
    w = torch.rand(V, generator=g, dtype=torch.float64) + 0.1 if opts.get("weight") else None
    return W, b, w


def _kwargs(opts: dict, weight, reduction: str) -> dict:
    kw = {
        "weight": weight,
        "reduction": reduction,
        "label_smoothing": opts.get("label_smoothing", 0.0),
        "z_loss": opts.get("z_loss", 0.0),
        "softcap": opts.get("softcap"),
    }
    if "ignore_index" in opts:
        kw["ignore_index"] = opts["ignore_index"]
    return kw


def _ref_kwargs(kw: dict) -> dict:
    return {**kw, "ignore_index": kw.get("ignore_index", -100)}


def _grid():
    for seed, (name, opts) in enumerate(OPTIONS.items()):
        for reduction in ("none", "mean", "sum"):
            for bias in (False, True):
                yield seed, name, opts, reduction, bias


class _Spy:
    """Counts the calls of the vocabulary-parallel kernel made by the DTensor dispatch."""

    def __init__(self) -> None:
        self.calls = 0
        self.original = dtensor_weights.vocab_parallel_linear_cross_entropy

    def __enter__(self) -> _Spy:
        def counted(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        dtensor_weights.vocab_parallel_linear_cross_entropy = counted
        return self

    def __exit__(self, *exc) -> None:
        dtensor_weights.vocab_parallel_linear_cross_entropy = self.original


def _mesh(world: int):
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cpu", (world,))


def _data_parallel_reference(world, seed, W, b, opts, kw):
    """The mean over the ranks of each rank's gradient of its own batch's loss (rank ``r`` has
    ``5 + 2r`` rows); also every rank's batch, loss and input gradient."""
    W_ref = W.clone().requires_grad_(True)
    b_ref = None if b is None else b.clone().requires_grad_(True)
    per_rank = []
    for r in range(world):
        h, y, up = _batch(1000 * seed + r, (5 + 2 * r,), opts)
        h_ref = h.clone().requires_grad_(True)
        loss = _reference(h_ref, W_ref, b_ref, y, **_ref_kwargs(kw))
        loss.backward(up if kw["reduction"] == "none" else torch.ones((), dtype=torch.float64))
        per_rank.append((h, y, up, loss.detach(), h_ref.grad))
    grads = (W_ref.grad / world, None if b_ref is None else b_ref.grad / world)
    return per_rank, grads


def case_replicated_weight_data_parallel(rank: int, world: int) -> None:
    """A ``Replicate()`` weight (and bias), a batch of its own on every rank: this rank's loss,
    its input gradient, and the ranks' mean weight gradient, replicated."""
    from torch.distributed.tensor import Replicate, distribute_tensor

    mesh = _mesh(world)
    for seed, name, opts, reduction, bias in _grid():
        W, b, w = _layer(seed, bias, opts)
        kw = _kwargs(opts, w, reduction)
        per_rank, (gW, gb) = _data_parallel_reference(world, seed, W, b, opts, kw)
        h, y, up, ref_loss, ref_gh = per_rank[rank]
        Wd = distribute_tensor(W.clone(), mesh, [Replicate()]).requires_grad_(True)
        bd = distribute_tensor(b.clone(), mesh, [Replicate()]).requires_grad_(True) if bias else None
        h_our = h.clone().requires_grad_(True)
        tag = f"{name} {reduction} bias={bias}"
        with _Spy() as spy:
            loss = LF.linear_cross_entropy(h_our, Wd, y, linear_bias=bd, chunk_size=3, **kw)
        assert spy.calls == 0, tag
        assert type(loss) is torch.Tensor, f"{tag}: plain input gives a plain loss, got {type(loss)}"
        torch.testing.assert_close(loss, ref_loss, msg=f"{tag} value")
        loss.backward(up if reduction == "none" else torch.ones((), dtype=torch.float64))
        torch.testing.assert_close(h_our.grad, ref_gh, msg=f"{tag} input grad")
        assert Wd.grad.placements == (Replicate(),), f"{tag}: {Wd.grad.placements}"
        torch.testing.assert_close(Wd.grad.to_local(), gW, msg=f"{tag} weight grad")
        if bias:
            torch.testing.assert_close(bd.grad.to_local(), gb, msg=f"{tag} bias grad")


def case_sharded_weight_tensor_parallel(rank: int, world: int) -> None:
    """A ``Shard(0)`` weight (uneven: V=37) and the same batch on every rank: the vocabulary-parallel
    kernel, the full loss, the full input gradient, this rank's rows of the weight gradient.
    ``input`` plain, and as a replicated DTensor (then the loss is a replicated DTensor)."""
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

    mesh = _mesh(world)
    sizes = [c.shape[0] for c in torch.arange(V).chunk(world)]
    lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])
    for seed, name, opts, reduction, bias in _grid():
        W, b, w = _layer(seed, bias, opts)
        h, y, up = _batch(77 + seed, (2, 5), opts)  # (B, T): the same on every rank
        kw = _kwargs(opts, w, reduction)
        W_ref, h_ref = W.clone().requires_grad_(True), h.clone().requires_grad_(True)
        b_ref = b.clone().requires_grad_(True) if bias else None
        ref = _reference(h_ref, W_ref, b_ref, y, **_ref_kwargs(kw))
        one = up if reduction == "none" else torch.ones((), dtype=torch.float64)
        ref.backward(one)
        for form in ("plain", "dtensor"):
            tag = f"{name} {reduction} bias={bias} input={form}"
            Wd = distribute_tensor(W.clone(), mesh, [Shard(0)]).requires_grad_(True)
            bd = distribute_tensor(b.clone(), mesh, [Shard(0)]).requires_grad_(True) if bias else None
            assert Wd.to_local().shape[0] == hi - lo, (tag, Wd.to_local().shape)
            h_our = h.clone().requires_grad_(True)
            x = h_our if form == "plain" else DTensor.from_local(h_our, mesh, [Replicate()], run_check=False)
            with _Spy() as spy:
                loss = LF.linear_cross_entropy(x, Wd, y, linear_bias=bd, chunk_size=4, **kw)
            assert spy.calls == 1, f"{tag}: the vocabulary-parallel kernel was not used"
            if form == "dtensor":
                assert isinstance(loss, DTensor) and loss.placements == (Replicate(),), tag
                loss.backward(DTensor.from_local(one, mesh, [Replicate()], run_check=False))
                loss = loss.to_local()
            else:
                loss.backward(one)
            torch.testing.assert_close(loss, ref.detach(), msg=f"{tag} value")
            torch.testing.assert_close(h_our.grad, h_ref.grad, msg=f"{tag} input grad")
            assert Wd.grad.placements == (Shard(0),), f"{tag}: {Wd.grad.placements}"
            torch.testing.assert_close(Wd.grad.to_local(), W_ref.grad[lo:hi], msg=f"{tag} weight grad")
            if bias:
                torch.testing.assert_close(bd.grad.to_local(), b_ref.grad[lo:hi], msg=f"{tag} bias grad")
    # one unbatched hidden state (D,) with a () target
    W, _, _ = _layer(0, False, {})
    h, y, _ = _batch(5, (), {})
    Wd = distribute_tensor(W.clone(), mesh, [Shard(0)])
    for reduction in ("none", "mean"):
        torch.testing.assert_close(
            LF.linear_cross_entropy(h, Wd, y, reduction=reduction),
            F.cross_entropy(h @ W.T, y, reduction=reduction),
            msg=f"unbatched {reduction}",
        )


def case_sharded_weight_data_parallel(rank: int, world: int) -> None:
    """A ``Shard(0)`` weight (FSDP2's layout) and a batch of its own on every rank: gathered, this
    rank's loss, and the ranks' mean gradient reduce-scattered into the shard. Calling
    ``.full_tensor()`` on the weight instead loses the other ranks' contributions."""
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = _mesh(world)
    sizes = [c.shape[0] for c in torch.arange(V).chunk(world)]
    lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])
    for seed, name, opts, reduction, bias in _grid():
        W, b, w = _layer(seed, bias, opts)
        kw = _kwargs(opts, w, reduction)
        per_rank, (gW, gb) = _data_parallel_reference(world, seed, W, b, opts, kw)
        h, y, up, ref_loss, ref_gh = per_rank[rank]
        Wd = distribute_tensor(W.clone(), mesh, [Shard(0)]).requires_grad_(True)
        bd = distribute_tensor(b.clone(), mesh, [Shard(0)]).requires_grad_(True) if bias else None
        h_our = h.clone().requires_grad_(True)
        tag = f"{name} {reduction} bias={bias}"
        with _Spy() as spy:
            loss = LF.linear_cross_entropy(h_our, Wd, y, linear_bias=bd, chunk_size=3, **kw)
        assert spy.calls == 0, f"{tag}: different batches must not take the vocabulary-parallel kernel"
        torch.testing.assert_close(loss, ref_loss, msg=f"{tag} value")
        loss.backward(up if reduction == "none" else torch.ones((), dtype=torch.float64))
        torch.testing.assert_close(h_our.grad, ref_gh, msg=f"{tag} input grad")
        assert Wd.grad.placements == (Shard(0),), f"{tag}: {Wd.grad.placements}"
        torch.testing.assert_close(Wd.grad.to_local(), gW[lo:hi], msg=f"{tag} weight grad")
        if bias:
            torch.testing.assert_close(bd.grad.to_local(), gb[lo:hi], msg=f"{tag} bias grad")
    # the naive way: W.full_tensor() hands back this rank's slice of this rank's own gradient
    W, _, _ = _layer(0, False, {})
    per_rank, (gW, _) = _data_parallel_reference(world, 0, W, None, {}, _kwargs({}, None, "mean"))
    h, y, _, _, _ = per_rank[rank]
    Wd = distribute_tensor(W.clone(), mesh, [Shard(0)]).requires_grad_(True)
    LF.linear_cross_entropy(h, Wd.full_tensor(), y).backward()
    naive_error = float((Wd.grad.full_tensor() - gW).abs().max())
    assert naive_error > 1e-2, f"full_tensor() gave the right gradient after all ({naive_error:.3g})"
    _report(
        rank,
        f"data parallel, Shard(0) weight: max |grad error| of .full_tensor() = {naive_error:.3g} "
        f"(max |expected grad| = {float(gW.abs().max()):.3g})",
    )


def _kind(t: torch.Tensor) -> str:
    from torch.distributed.tensor import DTensor

    return f"DTensor{t.placements}" if isinstance(t, DTensor) else "plain"


class _TinyLM(torch.nn.Module):
    """A body and an output layer; ``forward`` returns the loss computed with the head's weight
    (not by calling the head), as fused-loss training code does."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(D, D)
        self.lm_head = torch.nn.Linear(D, V)
        self.seen: list[str] = []

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, normalizer=None) -> torch.Tensor:
        if y is None:  # the hidden states, for a loss computed outside
            return self.hidden(x)
        w = self.lm_head.weight
        self.seen.append(_kind(w))
        return LF.linear_cross_entropy(
            self.hidden(x), w, y, linear_bias=self.lm_head.bias, normalizer=normalizer, chunk_size=4
        )


def _fsdp_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(500 + rank)
    n = 6 + 3 * rank  # a different number of tokens, and of ignored ones, on every rank
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.2 + 0.1 * rank] = -100
    return x, y


def case_fsdp2_fully_shard_gradients_equal_one_process(rank: int, world: int) -> None:
    """``fully_shard`` models trained with ``linear_cross_entropy`` on the head's weight: the
    gathered gradients equal one process's on the whole batch (global mean over real tokens via
    ``normalizer=global_normalizer(...)``; FSDP2 averages over ranks, global_normalizer divides
    by the world size). Three ways the weight reaches the loss: inside the root's forward (a
    plain tensor), from the parent's forward with the head its own FSDP unit (``Shard(0)``
    DTensor), and outside any forward. The naive ``.full_tensor()`` of the last is measured."""
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    reference = _TinyLM().double()
    x_all = torch.cat([_fsdp_batch(r)[0] for r in range(world)])
    y_all = torch.cat([_fsdp_batch(r)[1] for r in range(world)])
    F.cross_entropy(
        F.linear(reference.hidden(x_all), reference.lm_head.weight, reference.lm_head.bias), y_all
    ).backward()
    expected = {n: p.grad for n, p in reference.named_parameters()}
    x, y = _fsdp_batch(rank)
    norm = global_normalizer([y])
    found = {}
    for how in ("root unit", "head unit", "outside forward", "root unit, outside forward", "naive full_tensor"):
        model = _TinyLM().double()
        model.load_state_dict(reference.state_dict())
        if not how.startswith("root unit"):
            fully_shard(model.lm_head)
        fully_shard(model)
        if how in {"root unit", "head unit"}:
            model(x, y, norm).backward()
        else:
            h = model(x)
            head = model.lm_head.weight
            model.seen.append(_kind(head))
            if how == "naive full_tensor":
                head, bias = head.full_tensor(), model.lm_head.bias.full_tensor()
            else:
                bias = model.lm_head.bias
            LF.linear_cross_entropy(h, head, y, linear_bias=bias, normalizer=norm).backward()
        errors = {n: float((p.grad.full_tensor() - expected[n]).abs().max()) for n, p in model.named_parameters()}
        found[how] = (model.seen[0], errors)
    scale = {n: f"{float(g.abs().max()):.3g}" for n, g in expected.items()}
    _report(rank, f"fully_shard: max |expected grad| {scale}; (weight seen, max |grad error|) {found}")
    # FSDP2 hands the root's forward (and, not resharding the root after forward, the code after
    # it) gathered plain tensors; a head that is its own unit stays a Shard(0) DTensor there
    assert found["root unit"][0] == found["root unit, outside forward"][0] == "plain", found
    assert found["head unit"][0] == found["outside forward"][0] == "DTensor(Shard(dim=0),)", found
    for how in ("root unit", "head unit", "outside forward", "root unit, outside forward"):
        assert max(found[how][1].values()) < 1e-12, (how, found[how])
    naive = found["naive full_tensor"][1]
    assert naive["lm_head.weight"] > 1e-3 and naive["lm_head.bias"] > 1e-3, naive
    assert naive["body.weight"] < 1e-12, naive  # the body's gradient is still right


def case_tiny_vocabulary_leaves_a_rank_without_classes(rank: int, world: int) -> None:
    """torch.chunk gives the last rank no row when V is small (V=world-1... here V=2 over 2 or 3
    ranks: [1, 1] / [1, 1, 0]); the tensor-parallel loss still equals one process's."""
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = _mesh(world)
    g = torch.Generator().manual_seed(3)
    v = 2
    W = torch.randn(v, D, generator=g, dtype=torch.float64)
    h = torch.randn(4, D, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, -100])
    W_ref = W.clone().requires_grad_(True)
    ref = F.cross_entropy(h @ W_ref.T, y)
    ref.backward()
    Wd = distribute_tensor(W.clone(), mesh, [Shard(0)]).requires_grad_(True)
    loss = LF.linear_cross_entropy(h, Wd, y)
    torch.testing.assert_close(loss, ref.detach())
    loss.backward()
    torch.testing.assert_close(Wd.grad.full_tensor(), W_ref.grad)


def case_unsupported_layouts_raise(rank: int, world: int) -> None:
    """Layouts the loss cannot compute right raise a LossInputError naming the argument, what it
    got and what it expects, on every rank -- never a silently wrong gradient."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    mesh = _mesh(world)
    W, b, _ = _layer(0, True, {})
    h, y, _ = _batch(1, (5,), {})
    fn = LF.linear_cross_entropy
    cols = distribute_tensor(W.clone(), mesh, [Shard(1)])
    expect_error(
        lambda: fn(h, cols, y),
        "linear_cross_entropy: linear_weight is a DTensor with placements (Shard(dim=1),) on a 1-D mesh",
        "expected (Replicate(),) or (Shard(0),)",
        "linear_weight.redistribute(mesh, [Shard(0)])",
    )
    partial = DTensor.from_local(W.clone(), mesh, [Partial()], run_check=False)
    expect_error(lambda: fn(h, partial, y), "placements (Partial(sum),)", "expected (Replicate(),) or (Shard(0),)")
    rows = distribute_tensor(W.clone(), mesh, [Shard(0)])
    mesh2 = init_device_mesh("cpu", (1, world))
    two_d = distribute_tensor(W.clone(), mesh2, [Replicate(), Shard(0)])
    expect_error(lambda: fn(h, two_d, y), "on a 2-D mesh", "expected a 1-D mesh")
    batch_sharded = DTensor.from_local(h.clone(), mesh, [Shard(0)], run_check=False)
    expect_error(
        lambda: fn(batch_sharded, rows, y),
        "input is a DTensor with placements (Shard(dim=0),)",
        "expected (Replicate(),)",
        "input.to_local()",
    )
    replicated_bias = distribute_tensor(b.clone(), mesh, [Replicate()])
    expect_error(lambda: fn(h, rows, y, linear_bias=replicated_bias), "linear_bias is", "laid out as the weight")
    expect_error(
        lambda: fn(h, rows, y, linear_bias=b),
        "linear_bias is a plain tensor, linear_weight a DTensor with placements (Shard(dim=0),)",
    )
    # tensor parallel (the same batch on every rank) cannot return the z-loss term alone
    expect_error(
        lambda: fn(h, rows, y, z_loss=1e-4, return_z_loss=True), "return_z_loss=True with linear_weight sharded"
    )
    expect_error(
        lambda: fn(h, rows, torch.softmax(torch.randn(5, V, dtype=torch.float64), 1)),
        "target has dtype float64 with linear_weight sharded",
    )
    # data parallel does: the single-process kernel on the gathered weight
    x, t, _ = _batch(10 + rank, (5,), {})
    _, z = fn(x, rows, t, z_loss=1e-2, return_z_loss=True)
    torch.testing.assert_close(z, 1e-2 * torch.logsumexp(x @ W.T, 1).square().mean())
    # replicated DTensor input and weight: the loss and the z-term come back as replicated DTensors
    x_rep = DTensor.from_local(h.clone(), mesh, [Replicate()], run_check=False)
    W_rep = distribute_tensor(W.clone(), mesh, [Replicate()])
    loss, z = fn(x_rep, W_rep, y, z_loss=1e-2, return_z_loss=True)
    assert isinstance(loss, DTensor) and isinstance(z, DTensor) and z.placements == (Replicate(),)
    lse = torch.logsumexp(h @ W.T, 1)
    torch.testing.assert_close(loss.to_local(), F.cross_entropy(h @ W.T, y) + 1e-2 * lse.square().mean())
    # the process group still works afterwards
    torch.testing.assert_close(fn(h, rows, y), F.cross_entropy(h @ W.T, y))


def _report(rank: int, text: str) -> None:
    """Measurements for the log (rank 0 only): the parent prints what the workers report."""
    if rank == 0:
        REPORTS.append(text)


REPORTS: list[str] = []
CASES = [name for name in dir() if name.startswith("case_")]


def entry(rank: int, world: int, port: int, cases: list[str], queue) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        for name in cases:
            REPORTS.clear()
            try:
                globals()[name](rank, world)
                queue.put((rank, name, None, list(REPORTS)))
            except Exception:
                queue.put((rank, name, traceback.format_exc(), list(REPORTS)))
            dist.barrier()
    finally:
        dist.destroy_process_group()
