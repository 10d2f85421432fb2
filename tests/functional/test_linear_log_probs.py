"""linear_log_probs (issue 17, item 5): per-token log-probabilities, entropy and accuracy of a
linear layer's output without its logits, against torch's log_softmax on the full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF
from losskit.autograd import linear_cross_entropy as fused


def _case(seed=0, shape=(2, 7), d=4, v=9):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*shape, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(v, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, v, shape, generator=g)
    t.view(-1)[0] = -100
    return h, w, b, t


def _reference(h, w, b, t, softcap=None):
    logits = F.linear(h, w, b)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    log_p = torch.log_softmax(logits, -1)
    ignored = t == -100
    picked = log_p.gather(-1, t.clamp_min(0).unsqueeze(-1)).squeeze(-1).masked_fill(ignored, 0.0)
    entropy = -(log_p.exp() * log_p).sum(-1).masked_fill(ignored, 0.0)
    correct = (logits.argmax(-1) == t) & ~ignored
    return picked, entropy, correct


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("softcap", [None, 2.0])
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_values_and_gradients_match_torch(softcap, chunk, device):
    h, w, b, t = _case()
    if device != "cpu":
        h, w, b = (x.detach().to(device).requires_grad_() for x in (h, w, b))
        t = t.to(device)
    ours = LF.linear_log_probs(h, w, t, linear_bias=b, softcap=softcap, entropy=True, accuracy=True, chunk_size=chunk)
    ref_lp, ref_h, ref_correct = _reference(h, w, b, t, softcap)
    torch.testing.assert_close(ours.log_probs, ref_lp)
    torch.testing.assert_close(ours.entropy, ref_h)
    assert torch.equal(ours.correct, ref_correct)
    # any per-token upstream gradient, on the log-probabilities and on the entropy
    g = torch.Generator().manual_seed(1)
    up_lp, up_h = (
        torch.randn(t.shape, generator=g, dtype=torch.float64).to(h.device),
        torch.randn(t.shape, generator=g, dtype=torch.float64).to(h.device),
    )
    ours_grads = torch.autograd.grad((ours.log_probs * up_lp).sum() + (ours.entropy * up_h).sum(), (h, w, b))
    ref_grads = torch.autograd.grad((ref_lp * up_lp).sum() + (ref_h * up_h).sum(), (h, w, b))
    for a, c in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, c)


def test_plain_call_returns_the_log_probabilities_and_known_values():
    # zero hidden states and weights: uniform over 4 classes, log p = -ln 4, entropy = ln 4
    h, w = torch.zeros(3, 2), torch.zeros(4, 2)
    t = torch.tensor([0, 3, -100])
    lp = LF.linear_log_probs(h, w, t)
    torch.testing.assert_close(lp, torch.tensor([-1.3862944, -1.3862944, 0.0]))
    out = LF.linear_log_probs(h, w, t, entropy=True)
    torch.testing.assert_close(out.entropy, torch.tensor([1.3862944, 1.3862944, 0.0]))
    assert out.correct is None


def test_dtype_float32_keeps_bfloat16_log_probabilities_unrounded():
    """bfloat16 hidden states: accumulated in float32 either way; dtype=float32 returns that, the
    default rounds to bfloat16 (the reference: float32 log_softmax of the bfloat16 logits)."""
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(6, 8, generator=g).bfloat16(), torch.randn(50, 8, generator=g).bfloat16()
    t = torch.randint(0, 50, (6,), generator=g)
    expected = torch.log_softmax((h @ w.t()).float(), -1).gather(1, t[:, None]).squeeze(1)
    full = LF.linear_log_probs(h, w, t, dtype=torch.float32)
    assert full.dtype == torch.float32 and LF.linear_log_probs(h, w, t).dtype == torch.bfloat16
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-5)
    assert (LF.linear_log_probs(h, w, t).float() - expected).abs().max() > 1e-4  # rounding is visible


def test_the_logits_are_never_built_whole(monkeypatch):
    seen = []
    original = fused.chunk_logits
    monkeypatch.setattr(fused, "chunk_logits", lambda h, w, b, buf: seen.append(h.shape[0]) or original(h, w, b, buf))
    import losskit.autograd.linear_log_probs as kernel

    monkeypatch.setattr(kernel, "chunk_logits", fused.chunk_logits)
    h, w, _, t = _case(shape=(20,))
    LF.linear_log_probs(h, w, t, chunk_size=6).sum().backward()
    assert max(seen) == 6 and sum(seen) == 2 * 20  # forward and backward, chunk by chunk


def test_bad_input_is_a_clear_error():
    h, w, _, t = _case()
    with pytest.raises(
        losskit.LossInputError, match=r"target has dtype float32.*expected int64 class ids of shape \(2, 7\)"
    ):
        LF.linear_log_probs(h, w, t.float())
    with pytest.raises(losskit.LossInputError, match=r"class id\(s\) out of range"):
        LF.linear_log_probs(h, w, t.flatten().index_fill(0, torch.tensor([1]), 99).view(t.shape))
    with pytest.raises(losskit.LossInputError, match=r"expected hidden states \(N, D\) or \(B, T, D\)"):
        LF.linear_log_probs(h, w[:, :2], t)
