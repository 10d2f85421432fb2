"""Property tests: invariants that hold for any shape and option (hypothesis draws them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit.functional as LF


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 9),
    c=st.integers(1, 12),
    spatial=st.lists(st.integers(1, 4), max_size=2),
    smoothing=st.sampled_from([0.0, 0.05, 0.5]),
    reduction=st.sampled_from(["none", "mean", "sum"]),
    scale=st.sampled_from([0.1, 1.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_cross_entropy_equals_torch_for_any_shape(n, c, spatial, smoothing, reduction, scale, seed):
    torch.manual_seed(seed)
    x = torch.randn((n, c, *spatial), dtype=torch.float64) * scale
    t = torch.randint(0, c, (n, *spatial))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a = LF.cross_entropy(x1, t, reduction=reduction, label_smoothing=smoothing)
    b = F.cross_entropy(x2, t, reduction=reduction, label_smoothing=smoothing)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), c=st.integers(2, 10), shift=st.floats(-1e3, 1e3), seed=st.integers(0, 2**16))
def test_cross_entropy_is_invariant_to_shifting_a_row(n, c, shift, seed):
    # softmax(x + k) == softmax(x): adding a constant to every logit of a row changes nothing
    torch.manual_seed(seed)
    x = torch.randn(n, c, dtype=torch.float64)
    t = torch.randint(0, c, (n,))
    torch.testing.assert_close(LF.cross_entropy(x + shift, t), LF.cross_entropy(x, t), rtol=1e-9, atol=1e-9)
