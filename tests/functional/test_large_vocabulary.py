"""linear_cross_entropy against the plain-torch reference (full logits, then F.cross_entropy),
z-loss / soft-capping against hand-written references and hand-derived values."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF
from losskit import LossDtypeError, LossInputError, LossUsageWarning
from losskit.autograd import linear_cross_entropy as fused
from tests._parity import linear_cross_entropy_reference

# float32 products over D and V accumulate in a different order than one big GEMM
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=2e-6)}


def _case(n, d, v, dtype, seed=0, batch=None, bias=False, ignore_every=None):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, n, d) if batch else (n, d)
    h = torch.randn(shape, generator=g, dtype=dtype)
    w = torch.randn(v, d, generator=g, dtype=dtype) / math.sqrt(d) * 3
    b = torch.randn(v, generator=g, dtype=dtype) if bias else None
    t = torch.randint(0, v, shape[:-1], generator=g)
    if ignore_every:  # random ignore_index positions
        t[torch.rand(t.shape, generator=g) < 1 / ignore_every] = -100
    return h, w, b, t


def _grads(fn, h, w, b, t, upstream_seed=1, **kwargs):
    leaves = [x.detach().clone().requires_grad_() if x is not None else None for x in (h, w, b)]
    loss = fn(leaves[0], leaves[1], t, linear_bias=leaves[2], **kwargs)
    g = torch.randn(loss.shape, generator=torch.Generator().manual_seed(upstream_seed), dtype=loss.dtype)
    wrt = [x for x in leaves if x is not None]
    return loss.detach(), torch.autograd.grad(loss, wrt, g)


OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"weight": "random"},
    {"weight": "random", "label_smoothing": 0.25},
    {"z_loss": 1e-3},
    {"softcap": 4.0},
    {"z_loss": 1e-2, "softcap": 2.5, "label_smoothing": 0.1},
]


#: the numerics tests run on every device the machine has (CUDA where there is one)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize(
    "shape",
    [(37, 16, 101, None, False), (19, 8, 53, 2, True), (64, 24, 250, None, True)],
    ids=["N37-V101", "B2xT19-V53-bias", "N64-V250-bias"],
)
def test_matches_reference(device, dtype, reduction, options, shape):
    n, d, v, batch, bias = shape
    h, w, b, t = (
        x if x is None else x.to(device) for x in _case(n, d, v, dtype, batch=batch, bias=bias, ignore_every=5)
    )
    kwargs = dict(options)
    if kwargs.get("weight") == "random":
        kwargs["weight"] = (torch.rand(v, generator=torch.Generator().manual_seed(3), dtype=dtype) + 0.2).to(device)
    ref_loss, ref_grads = _grads(linear_cross_entropy_reference, h, w, b, t, reduction=reduction, **kwargs)
    # chunk_size=7: N is not a multiple of it, so the last chunk is short
    loss, grads = _grads(LF.linear_cross_entropy, h, w, b, t, reduction=reduction, chunk_size=7, **kwargs)
    torch.testing.assert_close(loss, ref_loss, **TOL[dtype])
    for ours, theirs in zip(grads, ref_grads):
        torch.testing.assert_close(ours, theirs, **TOL[dtype])


def test_default_chunking_and_one_chunk_agree_with_reference():
    h, w, b, t = _case(300, 32, 999, torch.float64, bias=True, ignore_every=9)
    ref_loss, ref_grads = _grads(linear_cross_entropy_reference, h, w, b, t)
    for chunk in (None, 1, 300, 1000):
        loss, grads = _grads(LF.linear_cross_entropy, h, w, b, t, chunk_size=chunk)
        torch.testing.assert_close(loss, ref_loss, **TOL[torch.float64])
        for ours, theirs in zip(grads, ref_grads):
            torch.testing.assert_close(ours, theirs, **TOL[torch.float64])


def test_only_some_inputs_require_grad():
    h, w, _, t = _case(40, 8, 30, torch.float64)
    w_leaf = w.clone().requires_grad_()
    LF.linear_cross_entropy(h, w_leaf, t, chunk_size=16).backward()
    w_ref = w.clone().requires_grad_()
    F.cross_entropy(h @ w_ref.T, t).backward()
    torch.testing.assert_close(w_leaf.grad, w_ref.grad)
    h_leaf = h.clone().requires_grad_()
    LF.linear_cross_entropy(h_leaf, w, t, reduction="sum").backward()
    h_ref = h.clone().requires_grad_()
    F.cross_entropy(h_ref @ w.T, t, reduction="sum").backward()
    torch.testing.assert_close(h_leaf.grad, h_ref.grad)


def test_backward_twice_with_retained_graph_and_scaled_upstream():
    h, w, _, t = _case(30, 6, 20, torch.float64)
    h1 = h.clone().requires_grad_()
    loss = LF.linear_cross_entropy(h1, w, t)
    (g1,) = torch.autograd.grad(loss, h1, retain_graph=True)
    (g3,) = torch.autograd.grad(loss * 3, h1, retain_graph=True)
    (g1_again,) = torch.autograd.grad(loss, h1)
    h2 = h.clone().requires_grad_()
    (ref,) = torch.autograd.grad(F.cross_entropy(h2 @ w.T, t), h2)
    torch.testing.assert_close(g1, ref)
    torch.testing.assert_close(g1_again, ref)
    torch.testing.assert_close(g3, 3 * ref)


def test_no_grad_forward_matches():
    h, w, b, t = _case(50, 8, 30, torch.float64, bias=True)
    with torch.no_grad():
        ours = LF.linear_cross_entropy(h.requires_grad_(), w, t, linear_bias=b)
    torch.testing.assert_close(ours, F.cross_entropy(F.linear(h.detach(), w, b), t))


def test_hand_derived_values():
    # h = 0: every logit is 0, so lse = ln V and the loss is ln V for each counted row.
    h, w = torch.zeros(4, 3), torch.randn(5, 3)
    t = torch.tensor([0, 1, -100, 4])
    torch.testing.assert_close(LF.linear_cross_entropy(h, w, t), torch.tensor(math.log(5)))
    # z-loss adds z * lse^2 = 0.1 * ln(5)^2 per counted row (3 rows, mean over 3)
    loss, z = LF.linear_cross_entropy(h, w, t, z_loss=0.1, return_z_loss=True)
    torch.testing.assert_close(z, torch.tensor(0.1 * math.log(5) ** 2))
    torch.testing.assert_close(loss, torch.tensor(math.log(5) + 0.1 * math.log(5) ** 2))
    # soft-cap 1: logits (100, 0) become (tanh(100), 0) = (1, 0); target 1 costs
    # lse(1, 0) - 0 = ln(1 + e) = 1.31326...
    h1, w1 = torch.tensor([[1.0]]), torch.tensor([[100.0], [0.0]])
    torch.testing.assert_close(
        LF.linear_cross_entropy(h1, w1, torch.tensor([1]), softcap=1.0), torch.tensor(math.log(1 + math.e))
    )


def test_extreme_logits_stay_finite_and_exact():
    # logits of +-1e4: lse is the max, so the loss is exactly the gap to the target's logit
    h = torch.tensor([[1.0], [1.0]])
    w = torch.tensor([[1e4], [-1e4], [0.0]])
    loss = LF.linear_cross_entropy(h, w, torch.tensor([0, 2]), reduction="none")
    torch.testing.assert_close(loss, torch.tensor([0.0, 1e4]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_targets_far_below_the_row_maximum_match_torch(dtype, reduction):
    # logits spread over hundreds: most targets' probabilities underflow (p_t < 1e-30), where
    # the log-sum-exp cannot come from the target's own probability
    h, w, b, t = _case(40, 8, 50, dtype, seed=3, bias=True)
    w = w * 60
    kw = dict(reduction=reduction, label_smoothing=0.1, weight=torch.rand(50, dtype=dtype) + 0.5, z_loss=1e-4)
    got, got_g = _grads(LF.linear_cross_entropy, h, w, b, t, chunk_size=16, **kw)
    want, want_g = _grads(linear_cross_entropy_reference, h, w, b, t, **kw)
    probs = torch.softmax(F.linear(h, w, b).double(), 1).gather(1, t.unsqueeze(1))
    assert (probs < 1e-30).float().mean() > 0.5  # the case the fallback exists for
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-3)
    torch.testing.assert_close(got, want, **tol)
    for a, e in zip(got_g, want_g):
        torch.testing.assert_close(a, e, **tol)


def test_dtype_float32_keeps_a_bfloat16_loss_unrounded():
    h, w, _, t = _case(64, 16, 300, torch.float32, seed=5)
    h, w = h.bfloat16(), w.bfloat16()
    want = F.cross_entropy(F.linear(h, w).float(), t)  # Hugging Face's causal-LM loss
    got = LF.linear_cross_entropy(h, w, t, dtype=torch.float32)
    assert got.dtype == torch.float32 and LF.linear_cross_entropy(h, w, t).dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-6)  # bf16 rounding would be ~4e-3
    loss, z = LF.linear_cross_entropy(h, w, t, dtype=torch.float64, z_loss=1e-3, return_z_loss=True)
    assert loss.dtype == z.dtype == torch.float64


def test_all_targets_ignored_matches_torch_nan_and_zero_gradient():
    h, w, _, _ = _case(6, 4, 9, torch.float32)
    t = torch.full((6,), -100)
    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    with pytest.warns(LossUsageWarning, match="every target is ignore_index"):
        loss = LF.linear_cross_entropy(h1, w1, t)
    loss.backward()
    h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    ref = F.cross_entropy(h2 @ w2.T, t)
    ref.backward()
    assert torch.isnan(loss) and torch.isnan(ref)
    torch.testing.assert_close(h1.grad, h2.grad)
    torch.testing.assert_close(w1.grad, w2.grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_at_least_as_accurate_as_torch(dtype):
    h, w, b, t = _case(200, 64, 500, torch.float32, bias=True, ignore_every=7)
    exact_loss, exact_grads = _grads(linear_cross_entropy_reference, *(x.double() for x in (h, w, b)), t)
    low = [x.to(dtype) for x in (h, w, b)]
    loss, grads = _grads(LF.linear_cross_entropy, *low, t, chunk_size=64)
    torch_loss, torch_grads = _grads(linear_cross_entropy_reference, *low, t)
    assert loss.dtype == dtype and all(g.dtype == dtype for g in grads)

    def error(a, exact):
        return ((a.double() - exact).abs().max() / exact.abs().max()).item()

    # the products run in the low dtype for both; losskit accumulates the softmax, the loss
    # and grad_weight in float32, so its error is at most torch's (plus rounding noise)
    assert error(loss, exact_loss) <= 1.5 * error(torch_loss, exact_loss) + 1e-3
    for ours, theirs, exact in zip(grads, torch_grads, exact_grads):
        assert error(ours, exact) <= 1.5 * error(theirs, exact) + 1e-3
        assert error(ours, exact) < (2e-2 if dtype == torch.bfloat16 else 3e-3)


def test_bfloat16_accumulates_weight_gradient_in_float32():
    # 4096 rows each add 2**-9 to one weight-gradient entry's magnitude: a bfloat16 running sum
    # stalls once the sum's spacing exceeds the increment; a float32 accumulator does not
    n = 4096
    h = torch.ones(n, 1, dtype=torch.bfloat16)
    w = torch.zeros(2, 1, dtype=torch.bfloat16, requires_grad=True)
    t = torch.zeros(n, dtype=torch.long)
    LF.linear_cross_entropy(h, w, t, reduction="sum").backward()
    # d/dw0 = sum_rows (p0 - 1) * h = n * (0.5 - 1) = -2048 exactly (bf16 holds it)
    assert w.grad[0, 0].item() == -2048.0 and w.grad[1, 0].item() == 2048.0


def test_autocast_runs_products_in_low_precision_and_stays_close():
    h, w, _, t = _case(128, 32, 300, torch.float32)
    h.requires_grad_(), w.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = LF.linear_cross_entropy(h, w, t)
    loss.backward()
    assert loss.dtype == torch.float32 and w.grad.dtype == torch.float32
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = linear_cross_entropy_reference(h2, w2, t)
    ref.backward()
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=2e-2, atol=2e-3)
    for ours, theirs in ((h.grad, h2.grad), (w.grad, w2.grad)):
        scale = theirs.abs().max()
        torch.testing.assert_close(ours / scale, theirs / scale, rtol=2e-2, atol=2e-2)


def test_never_allocates_the_full_logits(monkeypatch):
    # With a 64 KiB budget, no allocation may reach the N x V logits' size (N*V*4 = 3.2 MB)
    monkeypatch.setattr(fused, "CHUNK_BYTES", 64 * 2**10)
    monkeypatch.setattr(fused, "CHUNK_MIN_ROWS", 1)
    n, d, v = 800, 16, 1000
    h, w, _, t = _case(n, d, v, torch.float32)
    h.requires_grad_(), w.requires_grad_()
    from torch.profiler import ProfilerActivity, profile

    for reduction in ("mean", "none"):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            loss = LF.linear_cross_entropy(h, w, t, reduction=reduction)
            loss.backward(torch.ones_like(loss))
        largest = max(e.cpu_memory_usage for e in prof.events())
        assert largest < n * v * 4 / 4, (reduction, largest)
        # an op's allocations (the profiler sums an op's children) stay within about two
        # chunks or the (V, D) weight gradient, never near the 3.2 MB of full logits
        assert largest <= 2 * max(v * d * 4, 64 * 2**10)


@pytest.mark.parametrize(
    ("v", "dtype", "softcap", "min_rows", "rows"),
    [
        # hand-derived from the 64 MiB (67,108,864-byte) budget for one chunk of float32 logits:
        (32768, torch.float32, None, 1, 512),  # 64 MiB / (32768 x 4 B)
        (32768, torch.float32, 30.0, 1, 256),  # soft-capping keeps a second float32 buffer
        (32768, torch.float64, None, 1, 256),  # float64 logits take 8 B
        (256000, torch.bfloat16, None, 1, 43),  # 4 B float32 + 2 B bf16 product: floor(64 Mi / 1.536 M)
        # ... and never fewer rows than the minimum (the weight gradient's pass per chunk)
        (256000, torch.bfloat16, None, 512, 512),
        (32768, torch.float64, None, 512, 512),
        (8192, torch.float32, None, 512, 2048),  # the budget allows more
    ],
)
def test_chunks_hold_as_many_rows_as_the_budget_allows(monkeypatch, v, dtype, softcap, min_rows, rows):
    """The rows of each chunk's logits, as the kernel really builds them, for 2.5 chunks' worth of
    rows: two full chunks of the hand-computed size and the remainder."""
    assert fused.CHUNK_MIN_ROWS == 512  # the default the last cases use
    monkeypatch.setattr(fused, "CHUNK_MIN_ROWS", min_rows)
    seen = []
    original = fused.chunk_logits

    def record(h, w, b, buf):
        seen.append(h.shape[0])
        return original(h, w, b, buf)

    monkeypatch.setattr(fused, "chunk_logits", record)
    n = 2 * rows + rows // 2
    h = torch.randn(n, 2, dtype=dtype)
    w = torch.randn(v, 2, dtype=dtype) * 0.01
    LF.linear_cross_entropy(h, w, torch.randint(0, v, (n,)), softcap=softcap)
    assert seen == [rows, rows, rows // 2]


def test_a_short_batch_is_one_chunk(monkeypatch):
    seen = []
    original = fused.chunk_logits
    monkeypatch.setattr(fused, "chunk_logits", lambda h, w, b, buf: seen.append(h.shape[0]) or original(h, w, b, buf))
    LF.linear_cross_entropy(torch.randn(10, 2), torch.randn(32768, 2), torch.randint(0, 32768, (10,)))
    assert seen == [10]


def test_torch_options_argument_is_accepted():
    h, w, _, t = _case(20, 4, 11, torch.float64)
    options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=3)
    torch.testing.assert_close(LF.linear_cross_entropy(h, w, t, options=options), F.cross_entropy(h @ w.T, t))


def test_torch_compile_fullgraph():
    h, w, _, t = _case(40, 8, 30, torch.float32)
    compiled = torch.compile(
        lambda h, w, t: LF.linear_cross_entropy(h, w, t, z_loss=1e-3), backend="aot_eager", fullgraph=True
    )
    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    compiled(h1, w1, t).backward()
    h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    linear_cross_entropy_reference(h2, w2, t, z_loss=1e-3).backward()
    torch.testing.assert_close(h1.grad, h2.grad, **TOL[torch.float32])
    torch.testing.assert_close(w1.grad, w2.grad, **TOL[torch.float32])


# --------------------------------------------------------------------------- guardrails


@pytest.mark.parametrize(
    "make, pattern, error",
    [
        (lambda h, w, t: (h, w, t.float()), r"target has dtype float32.*Use target\.long\(\)", LossDtypeError),
        (lambda h, w, t: (h, w, t.unsqueeze(-1)), r"target has shape \(10, 1\).*squeeze\(-1\)", LossInputError),
        (lambda h, w, t: (h, w[:, :3], t), r"linear_weight has shape \(7, 3\); expected \(V, 4\)", LossInputError),
        (lambda h, w, t: (h, w.double(), t), r"linear_weight has dtype float64.*same dtype", LossInputError),
        (
            lambda h, w, t: (h.reshape(1, 1, 10, 4), w, t),
            r"input has shape \(1, 1, 10, 4\); expected hidden states",
            LossInputError,
        ),
        (lambda h, w, t: (h[0], w, t), r"target has shape \(10,\); expected \(\) \(one class id", LossInputError),
        (lambda h, w, t: (h, w, torch.where(t == 0, 9, t)), r"class id\(s\) out of range \(e\.g\. 9", LossInputError),
    ],
)
def test_guardrails(make, pattern, error):
    h, w, _, t = _case(10, 4, 7, torch.float32)
    t[0] = 0
    with pytest.raises(error, match=pattern):
        LF.linear_cross_entropy(*make(h, w, t))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"z_loss": -1.0}, r"z_loss must be a non-negative number, got -1\.0"),
        ({"softcap": 0.0}, r"softcap must be None or a positive number, got 0\.0"),
        ({"chunk_size": 0}, r"chunk_size must be a positive number of rows, got 0"),
        ({"weight": torch.ones(3)}, r"weight has shape \(3,\); expected one weight per class, shape \(7,\)"),
        ({"linear_bias": torch.ones(3)}, r"linear_bias has dtype float32 and shape \(3,\); expected shape \(7,\)"),
        ({"label_smoothing": 1.5}, r"label_smoothing must lie in \[0, 1\], got 1\.5"),
        ({"reduction": "avg"}, r"reduction"),
    ],
)
def test_argument_guardrails(kwargs, pattern):
    h, w, _, t = _case(10, 4, 7, torch.float32)
    with pytest.raises(LossInputError, match=pattern):
        LF.linear_cross_entropy(h, w, t, **kwargs)


def test_out_of_range_id_with_checks_off_gives_nan_not_a_crash():
    h, w, _, t = _case(4, 3, 5, torch.float32)
    t[1] = 17
    with losskit.set_checks("off"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = LF.linear_cross_entropy(h, w, t, reduction="none")
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2, 3]]).all()


# --------------------------------------------------------------------------- cross_entropy extras


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("z_loss, softcap", [(1e-2, None), (0.0, 3.0), (1e-3, 2.0)])
@pytest.mark.parametrize("kind", ["indices", "probabilities", "segmentation"])
def test_cross_entropy_z_loss_and_softcap(reduction, z_loss, softcap, kind):
    g = torch.Generator().manual_seed(0)
    weight = torch.rand(11, generator=g, dtype=torch.float64) + 0.5
    if kind == "segmentation":
        x = torch.randn(3, 11, 4, 5, generator=g, dtype=torch.float64) * 4
        t = torch.randint(0, 11, (3, 4, 5), generator=g)
        t[0, 0] = -100
    else:
        x = torch.randn(17, 11, generator=g, dtype=torch.float64) * 4
        if kind == "indices":
            t = torch.randint(0, 11, (17,), generator=g)
            t[3] = -100
        else:
            t = torch.softmax(torch.randn(17, 11, generator=g, dtype=torch.float64), 1)

    def reference(x):
        capped = x if softcap is None else softcap * torch.tanh(x / softcap)
        rows = F.cross_entropy(capped, t, weight=weight, reduction="none", label_smoothing=0.1)
        counted = (t != -100) if not t.is_floating_point() else torch.ones_like(rows, dtype=torch.bool)
        lse = torch.logsumexp(capped, 1)
        z = torch.where(counted, z_loss * lse**2, torch.zeros_like(lse))
        if reduction == "none":
            return rows + z, z
        if reduction == "sum":
            return (rows + z).sum(), z.sum()
        den = float(rows.numel()) if t.is_floating_point() else (weight[t.clamp(min=0)] * counted).sum()
        return (rows + z).sum() / den, z.sum() / den

    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss, z = LF.cross_entropy(
        x1,
        t,
        weight=weight,
        reduction=reduction,
        label_smoothing=0.1,
        z_loss=z_loss,
        softcap=softcap,
        return_z_loss=True,
    )
    ref, ref_z = reference(x2)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    (loss * up).sum().backward()
    (ref * up).sum().backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(z, ref_z.detach())
    torch.testing.assert_close(x1.grad, x2.grad)


def test_cross_entropy_z_loss_gradcheck():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, -100, 1, 2])
    assert torch.autograd.gradcheck(lambda x: LF.cross_entropy(x, t, z_loss=0.1, softcap=2.0), (x,))


def test_linear_cross_entropy_gradcheck():
    h = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 4, -100, 1, 2, 2])
    for reduction in ("mean", "none"):
        assert torch.autograd.gradcheck(
            lambda h, w, b: LF.linear_cross_entropy(
                h, w, t, linear_bias=b, reduction=reduction, z_loss=0.05, softcap=3.0, label_smoothing=0.1, chunk_size=4
            ),
            (h, w, b),
        )


# --------------------------------------------------------------------------- torch 2.13 drop-in (issue 15, item 7)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_unbatched_input_with_a_0_dim_target_as_torch(reduction):
    h, w = torch.randn(4, dtype=torch.float64, requires_grad=True), torch.randn(6, 4, dtype=torch.float64)
    t = torch.tensor(3)
    ours = LF.linear_cross_entropy(h, w, t, reduction=reduction)
    theirs = F.linear_cross_entropy(h, w, t, reduction=reduction)
    torch.testing.assert_close(ours, theirs)
    assert ours.shape == theirs.shape == ()


def test_ignore_index_none_is_torchs_default():
    h, w = torch.randn(5, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    t = torch.tensor([1, -100, 2, 5, -100])
    torch.testing.assert_close(LF.linear_cross_entropy(h, w, t, ignore_index=None), F.linear_cross_entropy(h, w, t))
    torch.testing.assert_close(LF.linear_cross_entropy(h, w, t), F.linear_cross_entropy(h, w, t))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_probability_targets_as_torch(smoothing):
    h = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(torch.randn(5, 6, dtype=torch.float64), 1)
    ours = LF.linear_cross_entropy(h, w, p, label_smoothing=smoothing)
    theirs = F.linear_cross_entropy(h, w, p, label_smoothing=smoothing)
    torch.testing.assert_close(ours, theirs)
    g_ours = torch.autograd.grad(ours, (h, w))
    g_theirs = torch.autograd.grad(theirs, (h, w))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b)
    with pytest.raises(losskit.LossInputError, match=r"ignore_index=-100 was given with class-probability targets"):
        LF.linear_cross_entropy(h, w, p, ignore_index=-100)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"bias": True, "label_smoothing": 0.1, "ignore_index": 2, "reduction": "sum"},
        {"out_features": (2,)},
        {"bias": True, "out_features": (2, 3), "reduction": "none"},
        {"weight": torch.rand(5) + 0.1, "options": torch.nn.LinearCrossEntropyOptions(batch_chunk_size=2)},
    ],
    ids=["defaults", "bias+smoothing+ignore", "out_features", "out_features 2-d", "weight+options"],
)
def test_module_is_a_drop_in_for_torchs(kwargs):
    torch.manual_seed(0)
    theirs = torch.nn.LinearCrossEntropyLoss(3, 5, **kwargs)
    ours = losskit.nn.LinearCrossEntropyLoss(3, 5, **kwargs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    h = torch.randn(4, 3)
    t = torch.randint(0, 5, (4, *kwargs.get("out_features", ())))
    torch.testing.assert_close(ours(h, t), theirs(h, t))
    ours(h, t).sum().backward()
    theirs(h, t).sum().backward()
    torch.testing.assert_close(ours.linear.weight.grad, theirs.linear.weight.grad)


def test_from_linear_on_a_computed_weight_passes_gradients_back():
    """Scaled (or tied) embeddings computed in forward: the loss must not detach them."""
    base = torch.randn(5, 3, requires_grad=True)
    h, t = torch.randn(4, 3), torch.randint(0, 5, (4,))
    losskit.nn.LinearCrossEntropyLoss.from_linear(base * 2.0)(h, t).backward()
    ours = base.grad.clone()
    base.grad = None
    F.cross_entropy(h @ (base * 2.0).T, t).backward()
    torch.testing.assert_close(ours, base.grad)
    leaf = torch.randn(5, 3, requires_grad=True)  # a plain leaf tensor, not a Parameter
    losskit.nn.LinearCrossEntropyLoss.from_linear(leaf)(h, t).backward()
    torch.testing.assert_close(leaf.grad, torch.autograd.grad(F.cross_entropy(h @ leaf.T, t), leaf)[0])


def test_ignored_rows_are_dropped_before_any_matrix_product(monkeypatch):
    """With 75 of 100 targets ignored, the kernel builds logits for the 25 counted rows only;
    the values and gradients stay torch's (rows ignored get zero loss and zero gradient)."""
    seen = []
    original = fused.chunk_logits
    monkeypatch.setattr(fused, "chunk_logits", lambda h, w, b, buf: seen.append(h.shape[0]) or original(h, w, b, buf))
    h = torch.randn(100, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 7, (100,))
    t[torch.randperm(100)[:75]] = -100
    for reduction in ("mean", "none"):
        seen.clear()
        ours = LF.linear_cross_entropy(h, w, t, reduction=reduction)
        upstream = torch.ones_like(ours) if reduction == "mean" else torch.randn(100, dtype=torch.float64)
        g_ours = torch.autograd.grad(ours, (h, w), upstream)
        assert sum(seen) == 25 * (1 if reduction == "mean" else 2)  # "none" recomputes in backward
        theirs = F.cross_entropy(h @ w.T, t, reduction=reduction)
        torch.testing.assert_close(ours, theirs)
        for a, b in zip(g_ours, torch.autograd.grad(theirs, (h, w), upstream)):
            torch.testing.assert_close(a, b)
