"""Property-based parity with torch (issue 15, item 11): generated shapes (0-sized and unbatched
included), dtypes (float64 / float32 / bfloat16 / float16), every option and reduction, every
check level, and autocast -- values, gradients and dtypes equal torch's for the eight torch-twin
losses and ``linear_cross_entropy``.

Budget: ``LOSSKIT_PROPERTY_EXAMPLES`` examples per test (default 40, about a minute on 2 cores);
set it higher for a longer search, e.g. ``LOSSKIT_PROPERTY_EXAMPLES=2000``.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import losskit
import losskit.functional as LF

EXAMPLES = int(os.environ.get("LOSSKIT_PROPERTY_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
#: (rtol, atol) of values and gradients by dtype; low precision rounds differently in its
#: intermediate steps, torch's kernels and losskit's float32 accumulation both included
TOL = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (3e-2, 3e-2),
    torch.float16: (1e-2, 1e-2),
}

dtypes = st.sampled_from(DTYPES)
reductions = st.sampled_from(["none", "mean", "sum"])
levels = st.sampled_from(["off", "cheap", "full"])


def _run(fn, args, grad_of, kwargs, autocast):
    """(value, gradients) of fn(*args, **kwargs); warnings about the random data are not the point."""
    args = [
        a.detach().clone().requires_grad_(i in grad_of) if isinstance(a, torch.Tensor) else a
        for i, a in enumerate(args)
    ]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with warnings.catch_warnings(), ctx:
        warnings.simplefilter("ignore")
        out = fn(*args, **kwargs)
    up = torch.ones_like(out) if out.dim() else torch.ones((), dtype=out.dtype)
    grads = torch.autograd.grad(out, [args[i] for i in grad_of], up, allow_unused=True) if out.requires_grad else []
    return out.detach(), [None if g is None else g.detach() for g in grads]


def assert_parity(ours_fn, torch_fn, args, *, grad_of=(0,), level="full", autocast=False, **kwargs):
    with losskit.set_checks(level):
        ours, ours_grads = _run(ours_fn, args, grad_of, kwargs, autocast)
    theirs, their_grads = _run(torch_fn, args, grad_of, kwargs, autocast)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    rtol, atol = TOL[args[0].dtype]
    scale = max(1.0, float(theirs.double().abs().nan_to_num(0, 0, 0).max()) if theirs.numel() else 1.0)
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol * scale, equal_nan=True)
    for a, b in zip(ours_grads, their_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype
            g_scale = max(1.0, float(b.double().abs().nan_to_num(0, 0, 0).max()) if b.numel() else 1.0)
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol * g_scale, equal_nan=True)


@st.composite
def batch_shapes(draw, min_dims=0, max_dims=3):
    """Shapes with 0-sized and size-1 axes."""
    return tuple(draw(st.lists(st.integers(0, 5), min_size=min_dims, max_size=max_dims)))


@SETTINGS
@given(
    name=st.sampled_from(["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"]),
    shape=batch_shapes(),
    dtype=dtypes,
    reduction=reductions,
    level=levels,
    weighted=st.booleans(),
    param=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**16),
)
def test_regression_losses(name, shape, dtype, reduction, level, weighted, param, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype)
    y = torch.randn(shape, generator=g).to(dtype)
    kw = {"reduction": reduction}
    if name == "huber_loss":
        kw["delta"] = param
    if name == "smooth_l1_loss":
        kw["beta"] = param
    if weighted and name != "smooth_l1_loss":
        kw["weight"] = torch.rand(shape, generator=g).to(dtype)
    assert_parity(getattr(LF, name), getattr(F, name), [x, y], level=level, **kw)


@SETTINGS
@given(
    shape=batch_shapes(max_dims=3),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    reduction=reductions,
    level=levels,
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_binary_cross_entropy(shape, dtype, reduction, level, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    p = (torch.rand(shape, generator=g) * 0.98 + 0.01).to(dtype)
    y = torch.rand(shape, generator=g).to(dtype)
    kw = {"reduction": reduction}
    if weighted:
        kw["weight"] = torch.rand(shape[-1:] if shape else (), generator=g).to(dtype)
    assert_parity(LF.binary_cross_entropy, F.binary_cross_entropy, [p, y], level=level, **kw)


@SETTINGS
@given(
    shape=batch_shapes(min_dims=1, max_dims=4),
    dtype=dtypes,
    reduction=reductions,
    level=levels,
    pos=st.sampled_from(["none", "last", "scalar", "full"]),
    weighted=st.booleans(),
    autocast=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_binary_cross_entropy_with_logits(shape, dtype, reduction, level, pos, weighted, autocast, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    y = torch.randint(0, 2, shape, generator=g).to(dtype)
    kw = {"reduction": reduction}
    if pos == "last":
        kw["pos_weight"] = (torch.rand(shape[-1:], generator=g) + 0.5).to(dtype)
    elif pos == "scalar":
        kw["pos_weight"] = torch.tensor([2.0]).to(dtype)
    elif pos == "full":
        kw["pos_weight"] = (torch.rand(shape, generator=g) + 0.5).to(dtype)
    if weighted:
        kw["weight"] = torch.rand(shape[-1:], generator=g).to(dtype)
    assert_parity(
        LF.binary_cross_entropy_with_logits,
        F.binary_cross_entropy_with_logits,
        [x, y],
        level=level,
        autocast=autocast,
        **kw,
    )


@st.composite
def classification_case(draw):
    """(input shape, class count): unbatched (C,), (N, C) and (N, C, d1, ...), N may be 0."""
    c = draw(st.integers(1, 7))
    kind = draw(st.sampled_from(["unbatched", "flat", "kdim"]))
    if kind == "unbatched":
        return (c,), c
    n = draw(st.integers(0, 6))
    extra = draw(st.lists(st.integers(1, 4), min_size=0 if kind == "flat" else 1, max_size=0 if kind == "flat" else 2))
    return (n, c, *extra), c


def _target_shape(shape):
    return () if len(shape) == 1 else (shape[0], *shape[2:])


@SETTINGS
@given(
    case=classification_case(),
    dtype=dtypes,
    reduction=reductions,
    level=levels,
    probabilities=st.booleans(),
    weighted=st.booleans(),
    ignore=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.1, 0.5]),
    autocast=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cross_entropy(case, dtype, reduction, level, probabilities, weighted, ignore, smoothing, autocast, seed):
    shape, c = case
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        kw["weight"] = (torch.rand(c, generator=g) + 0.1).to(dtype)
    if probabilities:
        class_dim = 0 if len(shape) == 1 else 1
        target = torch.softmax(torch.randn(shape, generator=g) * 2, class_dim).to(dtype)
        grad_of = (0, 1) if dtype in (torch.float64, torch.float32) else (0,)
    else:
        target = torch.randint(0, c, _target_shape(shape), generator=g)
        if ignore and target.numel():
            target[torch.rand(target.shape, generator=g) < 0.3] = -100
        grad_of = (0,)
    assert_parity(LF.cross_entropy, F.cross_entropy, [x, target], grad_of=grad_of, level=level, autocast=autocast, **kw)


@SETTINGS
@given(
    case=classification_case(),
    dtype=st.sampled_from([torch.float64, torch.float32, torch.bfloat16]),
    reduction=reductions,
    level=levels,
    weighted=st.booleans(),
    ignore_index=st.sampled_from([-100, 0, 3]),
    seed=st.integers(0, 2**16),
)
def test_nll_loss(case, dtype, reduction, level, weighted, ignore_index, seed):
    shape, c = case
    g = torch.Generator().manual_seed(seed)
    class_dim = 0 if len(shape) == 1 else 1
    x = torch.log_softmax(torch.randn(shape, generator=g) * 2, class_dim).to(dtype)
    target = torch.randint(0, c, _target_shape(shape), generator=g)
    kw = {"reduction": reduction, "ignore_index": ignore_index}
    if weighted:
        kw["weight"] = (torch.rand(c, generator=g) + 0.1).to(dtype)
    assert_parity(LF.nll_loss, F.nll_loss, [x, target], level=level, **kw)


@SETTINGS
@given(
    n=st.integers(0, 9),
    d=st.integers(1, 6),
    v=st.integers(1, 9),
    batched=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32, torch.bfloat16]),
    reduction=reductions,
    level=levels,
    bias=st.booleans(),
    weighted=st.booleans(),
    ignore=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.2]),
    chunk=st.sampled_from([None, 1, 4]),
    seed=st.integers(0, 2**16),
)
def test_linear_cross_entropy(
    n, d, v, batched, dtype, reduction, level, bias, weighted, ignore, smoothing, chunk, seed
):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn((2, n, d) if batched else (n, d), generator=g).to(dtype)
    w = torch.randn(v, d, generator=g).to(dtype)
    b = torch.randn(v, generator=g).to(dtype) if bias else None
    t = torch.randint(0, v, h.shape[:-1], generator=g)
    if ignore and t.numel():
        t[torch.rand(t.shape, generator=g) < 0.3] = -100
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        kw["weight"] = (torch.rand(v, generator=g) + 0.1).to(dtype)

    def ours(h_, w_, t_, b_):
        return LF.linear_cross_entropy(h_, w_, t_, linear_bias=b_, chunk_size=chunk, **kw)

    def theirs(h_, w_, t_, b_):
        logits = F.linear(h_, w_, b_)
        loss = F.cross_entropy(logits.reshape(-1, v), t_.reshape(-1), **kw)
        return loss.reshape(t_.shape) if reduction == "none" else loss

    grad_of = (0, 1, 3) if bias else (0, 1)
    assert_parity(ours, theirs, [h, w, t, b], grad_of=grad_of, level=level)
