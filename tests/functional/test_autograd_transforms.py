"""Higher-order autograd and torch.func (issue 15, item 4), each against torch itself:
double backward (Hessian-vector products), ``torch.func.grad``, ``vmap`` and ``jvp`` on every
loss that has a torch twin; the fused linear + cross-entropy either matches or says clearly that
it cannot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF

# every test here runs through losskit's kernels and through the small-input path
pytestmark = pytest.mark.usefixtures("softmax_loss_path")

G = torch.Generator().manual_seed(0)


def _logits(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64) * 2


def _ids(n, c, ignore=True):
    t = torch.randint(0, c, (n,), generator=G)
    if ignore:
        t[1] = -100
    return t


CE_CASES = {
    "plain": {},
    "smoothing+weight": {"label_smoothing": 0.2, "weight": torch.rand(5, generator=G, dtype=torch.float64) + 0.1},
    "sum": {"reduction": "sum"},
    "none": {"reduction": "none"},
}


def _hvp(fn, x, v, *args, **kwargs):
    """(gradient, Hessian-vector product) by double backward."""
    x = x.clone().requires_grad_(True)
    loss = fn(x, *args, **kwargs)
    (g,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
    assert g.grad_fn is not None
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return g.detach(), hv


@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy_double_backward_matches_torch(case):
    x, t, v = _logits(6, 5), _ids(6, 5), _logits(6, 5)
    kw = CE_CASES[case]
    ours = _hvp(LF.cross_entropy, x, v, t, **kw)
    theirs = _hvp(F.cross_entropy, x, v, t, **kw)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    assert ours[1].abs().max() > 1e-3  # a random direction: the product is not trivially zero


def test_cross_entropy_double_backward_with_probabilities_and_k_dims():
    x, v = _logits(3, 4, 5), _logits(3, 4, 5)
    p = torch.softmax(_logits(3, 4, 5), 1)
    for a, b in zip(
        _hvp(LF.cross_entropy, x, v, p, label_smoothing=0.1), _hvp(F.cross_entropy, x, v, p, label_smoothing=0.1)
    ):
        torch.testing.assert_close(a, b)
    t = torch.randint(0, 4, (3, 5), generator=G)
    for a, b in zip(_hvp(LF.cross_entropy, x, v, t), _hvp(F.cross_entropy, x, v, t)):
        torch.testing.assert_close(a, b)


def test_cross_entropy_gradgradcheck():
    x = _logits(4, 3).requires_grad_(True)
    t = _ids(4, 3)
    assert torch.autograd.gradgradcheck(lambda a: LF.cross_entropy(a, t, label_smoothing=0.1, z_loss=0.01), (x,))


def _twins():
    """(name, losskit function, torch function, make args) for the eight torch-twin losses."""
    y = torch.rand(6, 4, generator=G, dtype=torch.float64)
    ids = _ids(6, 4)
    return [
        ("mse_loss", LF.mse_loss, F.mse_loss, lambda x: (x, y)),
        ("l1_loss", LF.l1_loss, F.l1_loss, lambda x: (x, y)),
        ("huber_loss", LF.huber_loss, F.huber_loss, lambda x: (x, y)),
        ("smooth_l1_loss", LF.smooth_l1_loss, F.smooth_l1_loss, lambda x: (x, y)),
        ("binary_cross_entropy", LF.binary_cross_entropy, F.binary_cross_entropy, lambda x: (torch.sigmoid(x), y)),
        (
            "binary_cross_entropy_with_logits",
            LF.binary_cross_entropy_with_logits,
            F.binary_cross_entropy_with_logits,
            lambda x: (x, y),
        ),
        ("cross_entropy", LF.cross_entropy, F.cross_entropy, lambda x: (x, ids)),
        ("nll_loss", LF.nll_loss, F.nll_loss, lambda x: (torch.log_softmax(x, 1), ids)),
    ]


TWINS = {name: (ours, theirs, make) for name, ours, theirs, make in _twins()}


@pytest.mark.parametrize("name", list(TWINS))
def test_torch_func_grad_vmap_jvp_match_torch(name):
    ours, theirs, make = TWINS[name]
    x = _logits(6, 4) * 0.5
    # grad
    torch.testing.assert_close(
        torch.func.grad(lambda a: ours(*make(a)))(x), torch.func.grad(lambda a: theirs(*make(a)))(x)
    )
    # vmap over a batch of inputs, with the default checks
    batch = torch.stack([x, x * 0.5, x + 1])
    torch.testing.assert_close(
        torch.vmap(lambda a: ours(*make(a)))(batch), torch.vmap(lambda a: theirs(*make(a)))(batch)
    )
    # jvp
    tangent = _logits(6, 4)
    ours_out, ours_tan = torch.func.jvp(lambda a: ours(*make(a)), (x,), (tangent,))
    theirs_out, theirs_tan = torch.func.jvp(lambda a: theirs(*make(a)), (x,), (tangent,))
    torch.testing.assert_close(ours_out, theirs_out)
    torch.testing.assert_close(ours_tan, theirs_tan)
    assert ours_tan.dtype == theirs_tan.dtype


def test_linear_cross_entropy_under_torch_func_matches_torch():
    h, W, t = _logits(6, 3), _logits(5, 3), _ids(6, 5)
    ours = torch.func.grad(lambda w: LF.linear_cross_entropy(h, w, t, label_smoothing=0.1))(W)
    theirs = torch.func.grad(lambda w: F.cross_entropy(h @ w.T, t, label_smoothing=0.1))(W)
    torch.testing.assert_close(ours, theirs)
    batch = torch.stack([h, h * 2])
    torch.testing.assert_close(
        torch.vmap(lambda a: LF.linear_cross_entropy(a, W, t))(batch),
        torch.vmap(lambda a: F.cross_entropy(a @ W.T, t))(batch),
    )


def test_linear_cross_entropy_double_backward_is_a_clear_error():
    h = _logits(6, 3).requires_grad_(True)
    W, t = _logits(5, 3).requires_grad_(True), _ids(6, 5)
    loss = LF.linear_cross_entropy(h, W, t)
    with pytest.raises(losskit.LossInputError, match=r"create_graph=True \(double backward.*supports double backward"):
        torch.autograd.grad(loss, h, create_graph=True)
    # the first-order gradient is unaffected
    (g,) = torch.autograd.grad(LF.linear_cross_entropy(h, W, t), h)
    torch.testing.assert_close(g, torch.autograd.grad(F.cross_entropy(h @ W.T, t), h)[0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", [*TWINS, "cross_entropy (probabilities)", "poly1_cross_entropy (probabilities)"])
def test_torch_func_jvp_in_float32_keeps_the_dtype(name, reduction):
    """Regression: torch.func.jvp through cross_entropy with probability targets gave a float64
    tangent for reduction="mean" (a 0-d sum divided by a Python float) where torch's is float32.
    Every twin, float32 inputs, tangents along the input and (probabilities) the target."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, generator=gen)
    if name.endswith("(probabilities)"):
        y = torch.softmax(torch.randn(6, 4, generator=gen), 1)
        ty = torch.randn(6, 4, generator=gen)
        ours = getattr(LF, name.split()[0])
        theirs = F.cross_entropy if name.startswith("cross_entropy") else None
        primals, tangents = (x, y), (torch.randn(6, 4, generator=gen), ty)
        ours_out, ours_tan = torch.func.jvp(lambda a, b: ours(a, b, reduction=reduction), primals, tangents)
        if theirs is None:  # no torch twin: the tangent's dtype is the primal's, as everywhere in torch
            assert ours_tan.dtype == ours_out.dtype == torch.float32
            return
        ref_out, ref_tan = torch.func.jvp(lambda a, b: theirs(a, b, reduction=reduction), primals, tangents)
    else:
        ours, theirs, make = TWINS[name]
        make32 = lambda a: tuple(t.float() for t in make(a.double()))  # noqa: E731 - the twin's inputs in float32
        if name in ("cross_entropy", "nll_loss"):
            make32 = lambda a: (make(a)[0], make(a)[1])  # noqa: E731 - class ids stay int64
        tangent = torch.randn(6, 4, generator=gen)
        ours_out, ours_tan = torch.func.jvp(lambda a: ours(*make32(a), reduction=reduction), (x,), (tangent,))
        ref_out, ref_tan = torch.func.jvp(lambda a: theirs(*make32(a), reduction=reduction), (x,), (tangent,))
    assert ours_tan.dtype == ref_tan.dtype == torch.float32
    torch.testing.assert_close(ours_out, ref_out)
    torch.testing.assert_close(ours_tan, ref_tan)
