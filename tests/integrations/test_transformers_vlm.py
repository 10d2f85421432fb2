"""Vision-language models (issue 26, item 2): Gemma 3, Qwen2-VL, Qwen2.5-VL, LLaVA and Mllama,
patched, give the stock loss and every parameter's gradient -- on text alone and with images
(random pixels of the processor's shape; the image tokens' labels are -100). Expected values
come from the stock model (a deep copy of the patched one's initial state)."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.integrations._tiny_models import assert_same_gradients
from tests.integrations._tiny_vlms import IMAGE, VLMS, make_vlm, vlm_batch

transformers = pytest.importorskip("transformers")

from losskit.integrations.transformers import is_patched, patch  # noqa: E402


@pytest.mark.parametrize("images", [False, True], ids=["text", "images"])
@pytest.mark.parametrize("name", list(VLMS))
def test_loss_and_every_gradient_equal_the_stock_model(name, images):
    stock = make_vlm(name)
    patched = patch(copy.deepcopy(stock))
    inputs = vlm_batch(name, images)
    expected, got = stock(**inputs), patched(**inputs)
    expected.loss.backward()
    got.loss.backward()
    assert is_patched(patched) and got.logits is None
    assert expected.logits.shape == (*inputs["input_ids"].shape, 120)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, patched, of_largest=1e-5)
    if images:  # the image reached the loss: the vision tower has non-zero gradients, in both
        vision = [n for n, p in stock.named_parameters() if ("vision" in n or "visual" in n) and p.grad is not None]
        assert vision and any(stock.get_parameter(n).grad.abs().max() > 1e-6 for n in vision)


@pytest.mark.parametrize("name", ["gemma3", "qwen2_vl", "llava", "mllama"])
def test_the_image_changes_the_loss(name):
    """The with-images parity above is not text-only parity in disguise: the pixels move the loss."""
    model = make_vlm(name)
    inputs = vlm_batch(name, images=True)
    with torch.no_grad():
        first = model(**inputs).loss
        inputs["pixel_values"] = torch.randn_like(inputs["pixel_values"])  # other random pixels
        second = model(**inputs).loss
    assert abs(first - second) > 1e-4
    assert (inputs["labels"][inputs["input_ids"] == IMAGE] == -100).all()


def test_gemma3_hands_the_labels_to_its_base_model_as_stock():
    """Gemma 3's forward passes ``labels=labels`` to its base model before the output layer; the
    patched model does too (through a hook), though its own forward runs with labels=None."""
    seen = {}

    def record(key):
        def hook(module, args, kwargs):
            seen[key] = kwargs.get("labels")

        return hook

    stock = make_vlm("gemma3")
    patched = patch(copy.deepcopy(stock))
    stock.model.register_forward_pre_hook(record("stock"), with_kwargs=True)
    patched.model.register_forward_pre_hook(record("patched"), with_kwargs=True)
    inputs = vlm_batch("gemma3", images=True)
    stock(**inputs)
    patched(**inputs)
    assert seen["stock"] is inputs["labels"] and seen["patched"] is inputs["labels"]
    patched(input_ids=inputs["input_ids"])  # without labels: none handed on
    assert seen["patched"] is None


@pytest.mark.parametrize("name", ["gemma3", "qwen2_vl"])
def test_generate_with_an_image_gives_the_same_tokens(name):
    model = make_vlm(name).eval()
    inputs = {k: v for k, v in vlm_batch(name, images=True).items() if k != "labels"}
    kwargs = dict(max_new_tokens=3, do_sample=False, pad_token_id=0)
    expected = model.generate(**inputs, **kwargs)
    got = patch(model).generate(**inputs, **kwargs)
    assert torch.equal(got, expected)
