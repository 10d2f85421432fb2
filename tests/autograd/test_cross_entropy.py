"""The cross-entropy kernel's paths: the gradient buffer kept from forward, chunked scratch, row
blocks, a second backward, and a number of operations per call that does not grow with ``N``.

Values and gradients are compared with torch's ``F.cross_entropy``; the paths are forced through
the module's budgets (tiny scratch budgets and row blocks) or by asking for no gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import losskit
import losskit.functional as LF
from losskit._core import cross_entropy as core
from losskit.autograd import cross_entropy as kernel
from tests._parity import TOL, assert_parity

SHAPES = [(37, 11), (3, 5, 4, 6), (2, 7, 33)]


@pytest.fixture(autouse=True)
def _kernel_for_small_inputs(monkeypatch):
    """These tests are about the kernel: small inputs must not take torch's fused ops."""
    from losskit.functional import _small

    monkeypatch.setattr(_small, "SMALL_INPUT_ELEMENTS", -1)


def _targets(shape, prob, dtype=torch.float64):
    if prob:
        return torch.softmax(torch.randn(shape, dtype=torch.float64) * 2, 1).to(dtype)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    t[torch.rand(t.shape) < 0.2] = -100
    return t


@pytest.mark.parametrize("row_block", [1, 5, 32768])
@pytest.mark.parametrize("chunk_bytes", [1, 1000, 10**6])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("prob", [False, True])
def test_chunks_and_row_blocks_do_not_change_results(monkeypatch, row_block, chunk_bytes, shape, prob):
    """Tiny budgets force every split: several rows, one row, a split of one sample's spatial
    axis; row blocks of 1 and 5 rows cut across the chunks. float64 takes the kept-buffer path
    with gradients and the scratch path without; bfloat16 always takes scratch."""
    monkeypatch.setattr(kernel, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(core, "ROW_BLOCK", row_block)
    x = torch.randn(shape, dtype=torch.float64)
    target = _targets(shape, prob)
    options = dict(weight=torch.rand(shape[1], dtype=torch.float64) + 0.1, label_smoothing=0.1)
    assert_parity(
        LF.cross_entropy, F.cross_entropy, [x, target], grad_of=(0, 1) if prob else (0,), reduction="none", **options
    )
    with torch.no_grad():  # no gradient wanted: the scratch path in float64 too
        torch.testing.assert_close(
            LF.cross_entropy(x, target, reduction="none", **options),
            F.cross_entropy(x, target, reduction="none", **options),
            **TOL[torch.float64],
        )
    bf = x.bfloat16()
    assert_parity(LF.cross_entropy, F.cross_entropy, [bf, target.bfloat16() if prob else target], reduction="sum")


@pytest.mark.parametrize("row_block", [3, 32768])
def test_z_loss_and_softcap_through_chunks_and_blocks(monkeypatch, row_block):
    """z-loss reads the row log-sum-exp at the row's maximum; soft-capping takes the scratch path.
    Reference: the formula in plain torch (loss + z lse^2 on the capped logits)."""
    monkeypatch.setattr(kernel, "CHUNK_BYTES", 700)
    monkeypatch.setattr(core, "ROW_BLOCK", row_block)
    x = (torch.randn(9, 13, 5, dtype=torch.float64) * 20).requires_grad_()
    t = torch.randint(0, 13, (9, 5))
    for cap in (None, 30.0):
        capped = x if cap is None else cap * torch.tanh(x / cap)
        ref = F.cross_entropy(capped, t, reduction="sum") + 1e-3 * (torch.logsumexp(capped, 1) ** 2).sum()
        (g_ref,) = torch.autograd.grad(ref, x)
        ours = LF.cross_entropy(x, t, reduction="sum", z_loss=1e-3, softcap=cap)
        (g,) = torch.autograd.grad(ours, x)
        torch.testing.assert_close(ours, ref, **TOL[torch.float64])
        torch.testing.assert_close(g, g_ref, **TOL[torch.float64])


@pytest.mark.parametrize("prob", [False, True])
def test_a_second_backward_recomputes_the_consumed_buffer(prob):
    """backward turns the kept log-probs into the gradient in place; a second backward through
    the same graph (retain_graph=True) must give the same gradient, as torch's does."""
    x = torch.randn(6, 9, requires_grad=True)
    t = _targets((6, 9), prob, torch.float32)
    loss = LF.cross_entropy(x, t, label_smoothing=0.1)
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (second,) = torch.autograd.grad(loss * 2, x)
    x_ref = x.detach().requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(x_ref, t, label_smoothing=0.1), x_ref)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, 2 * expected)


class _CountOps(TorchDispatchMode):
    """Counts the ATen operations dispatched (on an accelerator: the kernel launches)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def _ops_of_one_call(device, dtype, shape, prob, **options):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype).to(device).requires_grad_()
    target = _targets(shape, prob, dtype).to(device)
    with losskit.set_checks("cheap"), _CountOps() as count:  # value checks would read numbers
        LF.cross_entropy(x, target, **options).backward()
    assert x.grad is not None and x.grad.shape == x.shape
    return count.names


CASES = {
    "plain": (False, {}),
    "ignore_index+weight+smoothing": (False, {"weight": True, "label_smoothing": 0.1}),
    "z_loss+softcap": (False, {"z_loss": 1e-4, "softcap": 30.0}),
    "probabilities": (True, {"label_smoothing": 0.1}),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES)
def test_accelerator_path_launches_do_not_grow_with_n(case, dtype):
    """On the meta device (the accelerator path: chunks sized by a device memory budget, no row
    blocks) one forward + backward dispatches the same operations for 64 rows as for 65536, and
    for a segmentation batch of 1 image as for 16. A chunk walk of the old kind (4 MiB chunks)
    would add a few operations per 32 rows: hundreds here."""
    prob, options = CASES[case]
    weight = options.pop("weight", False)

    def ops(shape):
        kw = dict(options, weight=torch.rand(shape[1], device="meta") if weight else None)
        return _ops_of_one_call("meta", dtype, shape, prob, **kw)

    small, large = ops((64, 1000)), ops((65536, 1000))
    assert small == large, f"{len(small)} operations for N=64, {len(large)} for N=65536"
    assert len(small) < 150
    assert ops((1, 21, 64, 64)) == ops((16, 21, 64, 64))


def test_cpu_path_operations_do_not_grow_with_n_below_a_row_block():
    """On a CPU, float32 logits with a gradient take the kept-buffer path: the same operations
    for 64 rows as for 16384 (and parallel regions with them); past ROW_BLOCK rows only the
    serial per-row work repeats, block by block."""
    small = _ops_of_one_call("cpu", torch.float32, (64, 512), False, label_smoothing=0.1)
    large = _ops_of_one_call("cpu", torch.float32, (16384, 512), False, label_smoothing=0.1)
    assert small == large
    assert sum("_log_softmax" in name for name in small) == 1


def test_meta_device_values_have_the_right_shapes():
    """The accelerator path runs end to end on meta (shapes and dtypes as torch's)."""
    x = torch.randn(8, 5, 3, device="meta", requires_grad=True)
    t = torch.randint(0, 5, (8, 3), device="meta")
    with losskit.set_checks("cheap"):
        loss = LF.cross_entropy(x, t, reduction="none")
    assert loss.shape == F.cross_entropy(x, t, reduction="none").shape and loss.dtype == torch.float32


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(37, 11), (3, 5, 4, 6)], ids=str)
def test_rows_that_all_count_take_whole_tensor_operations(monkeypatch, shape, smoothing):
    """Class ids that all count (no ignore_index among them, no weights, no z-loss): forward and
    a mean's or sum's backward run on the whole tensor, without row blocks -- the same operations
    for blocks of 5 rows as for blocks of 7 -- and give torch's values and gradients, a second
    backward included."""
    x = torch.randn(shape, dtype=torch.float64)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    for reduction in ("mean", "sum", "none"):
        assert_parity(LF.cross_entropy, F.cross_entropy, [x, t], reduction=reduction, label_smoothing=smoothing)

    def ops(row_block):
        monkeypatch.setattr(core, "ROW_BLOCK", row_block)
        xg = x.clone().requires_grad_()
        with losskit.set_checks("off"), _CountOps() as count:
            LF.cross_entropy(xg, t, label_smoothing=smoothing).backward()
        return count.names

    assert ops(5) == ops(7)  # blocks of 5 or 7 rows: no operation repeats per block
    names = ops(5)  # one summed nll_loss (forward) and one scatter (backward) over the whole tensor
    assert sum("nll_loss" in n for n in names) == 1 and sum("scatter_add_" in n for n in names) == 1
    assert not any("gather" in n for n in names)  # a mean needs no loss per row
    xg = x.clone().requires_grad_()
    loss = LF.cross_entropy(xg, t, label_smoothing=smoothing)
    (first,) = torch.autograd.grad(loss, xg, retain_graph=True)
    (second,) = torch.autograd.grad(loss * 3, xg)
    x_ref = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(x_ref, t, label_smoothing=smoothing), x_ref)
    torch.testing.assert_close(first, expected, **TOL[torch.float64])
    torch.testing.assert_close(second, 3 * expected, **TOL[torch.float64])


class _Allocations(TorchDispatchMode):
    """The bytes of the new tensors every ATen operation returns (views left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.sizes.append((str(func), t.numel() * t.element_size()))
        return out


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_reduced_segmentation_loss_holds_no_loss_per_pixel(reduction, smoothing):
    """With a mean or a sum, the whole-tensor path returns the sum itself: no tensor of one value
    per pixel is made in forward or backward (torch makes several; the issue's memory target is
    the log-probs that become the gradient, and nothing else of the logits' order). Values,
    gradients and a second backward as torch's."""
    x = torch.randn(2, 21, 24, 24)
    t = torch.randint(0, 21, (2, 24, 24))
    xg = x.clone().requires_grad_()
    with losskit.set_checks("off"), _Allocations() as seen:
        loss = LF.cross_entropy(xg, t, reduction=reduction, label_smoothing=smoothing)
        loss.backward()
    per_pixel = t.numel() * 4  # a float32 per pixel (a bool mask, a byte per pixel, is let pass)
    big = [(name, n) for name, n in seen.sizes if per_pixel <= n < x.nbytes]
    assert big == [], big  # only the log-probs that become the gradient are a float per pixel or more
    assert any(n == x.nbytes for _, n in seen.sizes)
    x_ref = x.clone().requires_grad_()
    ref = F.cross_entropy(x_ref, t, reduction=reduction, label_smoothing=smoothing)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(xg.grad, x_ref.grad)
    xd = x.double().requires_grad_()  # double backward, through the summed forward
    (g,) = torch.autograd.grad(LF.cross_entropy(xd, t, reduction=reduction), xd, create_graph=True)
    xr = x.double().requires_grad_()
    (gr,) = torch.autograd.grad(F.cross_entropy(xr, t, reduction=reduction), xr, create_graph=True)
    v = torch.randn_like(g)
    torch.testing.assert_close(torch.autograd.grad((g * v).sum(), xd)[0], torch.autograd.grad((gr * v).sum(), xr)[0])


def test_one_ignored_row_leaves_the_whole_tensor_path():
    """A single ignored target (or one out of range, with checks off) needs the per-row masks:
    its row is 0 (NaN out of range) and its gradient 0, as torch / the kernel's contract say."""
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    t = torch.randint(0, 6, (4, 5))
    t[2, 3] = -100
    assert_parity(LF.cross_entropy, F.cross_entropy, [x, t], reduction="none")
    t[2, 3] = 9
    with losskit.set_checks("off"):
        rows = LF.cross_entropy(x, t, reduction="none")
    assert torch.isnan(rows[2, 3]) and torch.isfinite(rows[torch.arange(4) != 2]).all()
