"""``losskit.integrations.transformers.patch``: every family's loss and every parameter's gradient
equal the stock model's, for every keyword the stock loss honours; without labels the model is
the stock one; and what cannot be reproduced exactly is refused with a clear message.

Every expected value comes from the stock transformers model (a deep copy of the patched one's
initial state), never from losskit.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

from tests.integrations._tiny_models import (
    FAMILIES,
    VOCAB,
    assert_same_gradients,
    batch,
    make_model,
    stock_and_patched,
)

transformers = pytest.importorskip("transformers")

from losskit import LossInputError, LossUsageWarning  # noqa: E402
from losskit.integrations.transformers import is_patched, patch, unpatch  # noqa: E402


def _loss_and_backward(model, **inputs):
    out = model(**inputs)
    out.loss.backward()
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_loss_and_every_gradient_equal_the_stock_model(family):
    stock, patched = stock_and_patched(make_model(family))
    inputs = batch()
    expected = _loss_and_backward(stock, **inputs)
    got = _loss_and_backward(patched, **inputs)
    assert type(got) is type(expected)
    assert got.logits is None and expected.logits.shape == (3, 11, VOCAB)
    assert got.loss.dtype == expected.loss.dtype == torch.float32
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, patched)
    if getattr(expected, "aux_loss", None) is not None:  # mixtures of experts: the router's outputs too
        torch.testing.assert_close(got.aux_loss, expected.aux_loss)
        for a, b in zip(got.router_logits, expected.router_logits):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("family", "neutral"),
    [
        ("gemma2", {"final_logit_softcapping": None}),
        ("gemma3", {"final_logit_softcapping": None}),
        ("granite", {"logits_scaling": 1.0}),
        ("cohere", {"logit_scale": 1.0}),
        ("mixtral", {"router_aux_loss_coef": 0.0}),
        ("qwen3_moe", {"router_aux_loss_coef": 0.0}),
        ("granitemoe", {"logits_scaling": 1.0}),
        ("granitemoe", {"router_aux_loss_coef": 0.0}),
    ],
)
def test_each_family_step_changes_the_stock_loss(family, neutral):
    """Without its step the stock loss moves by far more than the tolerance above: the parity
    test would fail if the patch skipped the soft-cap, the scale or the auxiliary loss."""
    inputs = batch()
    with torch.no_grad():
        with_step = make_model(family)(**inputs).loss
        without = make_model(family, **neutral)(**inputs).loss
    assert abs(with_step - without) > 1e-2


@pytest.mark.parametrize(
    "num_items_in_batch",
    [19, torch.tensor(19), torch.tensor(23.5)],
    ids=["int", "int-tensor", "float-tensor"],
)
def test_num_items_in_batch_divides_the_sum(num_items_in_batch):
    stock, patched = stock_and_patched(make_model("llama"))
    inputs = {**batch(), "num_items_in_batch": num_items_in_batch}
    expected = _loss_and_backward(stock, **inputs)
    got = _loss_and_backward(patched, **inputs)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, patched)
    mean = stock(**batch()).loss  # the sum over 19 counted tokens... is not the mean: the test can fail
    assert abs(expected.loss - mean) > 1e-2


def test_mixtral_aux_loss_is_added_after_the_num_items_division():
    stock, patched = stock_and_patched(make_model("mixtral"))
    inputs = {**batch(), "num_items_in_batch": torch.tensor(40.0)}
    expected = _loss_and_backward(stock, **inputs)
    got = _loss_and_backward(patched, **inputs)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got.aux_loss, expected.aux_loss)
    assert_same_gradients(stock, patched)


def test_shift_labels_are_used_as_given():
    stock, patched = stock_and_patched(make_model("qwen2"))
    inputs = batch()
    g = torch.Generator().manual_seed(1)
    shift = torch.randint(0, VOCAB, inputs["labels"].shape, generator=g)  # not the shifted labels
    shift[0, 5:] = -100
    inputs["shift_labels"] = shift
    expected = _loss_and_backward(stock, **inputs)
    got = _loss_and_backward(patched, **inputs)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, patched)


def test_a_custom_ignore_index_is_honoured():
    stock, patched = stock_and_patched(make_model("llama"))
    inputs = batch()
    inputs["labels"] = inputs["labels"].masked_fill(inputs["labels"] == -100, 7)
    expected = _loss_and_backward(stock, **inputs, ignore_index=7)
    got = _loss_and_backward(patched, **inputs, ignore_index=7)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, patched)


@pytest.mark.parametrize("logits_to_keep", [4, torch.tensor([0, 3, 7, 10])], ids=["int", "index-tensor"])
def test_logits_to_keep_slices_the_hidden_states_as_stock(logits_to_keep):
    """With labels the stock model slices anyway; the labels must then match the kept positions."""
    stock, patched = stock_and_patched(make_model("gemma2"))
    inputs = batch()
    inputs["shift_labels"] = inputs["labels"][:, :4].clone()
    expected = _loss_and_backward(stock, **inputs, logits_to_keep=logits_to_keep)
    got = _loss_and_backward(patched, **inputs, logits_to_keep=logits_to_keep)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, patched)


def test_labels_that_do_not_match_the_kept_positions_fail_as_in_stock():
    stock, patched = stock_and_patched(make_model("llama"))
    with pytest.raises(ValueError, match="Expected input batch_size"):
        stock(**batch(), logits_to_keep=3)
    with pytest.raises(LossInputError, match=r"labels give 33 targets .* kept 9 hidden states"):
        patched(**batch(), logits_to_keep=3)


def test_positional_labels_and_return_dict_false():
    stock, patched = stock_and_patched(make_model("llama"))
    inputs = batch()
    # forward(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, labels)
    expected = stock(
        inputs["input_ids"], inputs["attention_mask"], None, None, None, inputs["labels"], False, return_dict=False
    )
    got = patched(
        inputs["input_ids"], inputs["attention_mask"], None, None, None, inputs["labels"], False, return_dict=False
    )
    assert isinstance(got, tuple) and isinstance(expected, tuple)
    assert len(got) == len(expected) - 1  # the stock tuple has the logits too
    torch.testing.assert_close(got[0], expected[0], rtol=1e-6, atol=1e-6)


def test_gradient_checkpointing_gives_the_stock_gradients():
    stock, patched = stock_and_patched(make_model("llama"))
    for model in (stock, patched):
        model.gradient_checkpointing_enable()
        model.train()
    inputs = {**batch(), "use_cache": False}
    expected = _loss_and_backward(stock, **inputs)
    got = _loss_and_backward(patched, **inputs)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, patched)


def test_every_label_ignored_gives_nan_as_stock_with_a_warning():
    """Stock and patched: a NaN mean and zero gradients; losskit also says why (LossUsageWarning)."""
    stock, patched = stock_and_patched(make_model("llama"))
    inputs = batch()
    inputs["labels"] = torch.full_like(inputs["labels"], -100)
    expected = _loss_and_backward(stock, **inputs)
    with pytest.warns(LossUsageWarning, match="every target is ignore_index"):
        got = _loss_and_backward(patched, **inputs)
    assert torch.isnan(expected.loss) and torch.isnan(got.loss)
    assert all(p.grad is None or not p.grad.any() for p in patched.parameters())


def test_bfloat16_loss_is_the_float32_loss_of_bfloat16_logits():
    """bfloat16: the stock loss is the float32 loss of bfloat16 logits; so is the patched one
    (accumulated in float32 and not rounded to bfloat16: that would be ~4e-3 off). Gradients are
    bfloat16 on both sides, rounded in different places."""
    stock, patched = stock_and_patched(make_model("llama").to(torch.bfloat16))
    expected = _loss_and_backward(stock, **batch())
    got = _loss_and_backward(patched, **batch())
    assert got.loss.dtype == torch.float32
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-4, atol=0)
    for p, q in zip(stock.parameters(), patched.parameters()):
        assert torch.linalg.vector_norm((q.grad - p.grad).float()) <= 0.03 * torch.linalg.vector_norm(p.grad.float())


@pytest.mark.parametrize("family", ["llama", "gemma2", "mixtral", "granite", "cohere"])
def test_without_labels_the_stock_logits_are_returned(family):
    stock, patched = stock_and_patched(make_model(family))
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        expected, got = stock(**inputs), patched(**inputs)
    assert got.loss is None
    assert torch.equal(got.logits, expected.logits)


@pytest.mark.parametrize("family", ["llama", "gemma2", "mixtral"])
def test_generate_gives_the_same_tokens(family):
    model = make_model(family).eval()
    prompt = batch(batch_size=2, length=5)
    prompt = {"input_ids": prompt["input_ids"], "attention_mask": torch.ones_like(prompt["input_ids"])}
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    expected = model.generate(**prompt, **kwargs)
    got = patch(model).generate(**prompt, **kwargs)
    assert got.shape == (2, 9)
    assert torch.equal(got, expected)


def test_the_stock_signature_is_kept_for_the_trainer():
    model = make_model("mixtral")
    expected = inspect.signature(model.forward)
    patch(model)
    assert inspect.signature(model.forward) == expected
    assert "input_ids" in inspect.signature(model.forward).parameters


def test_patching_twice_changes_nothing_and_unpatch_restores_the_stock_forward():
    model = make_model("llama")
    stock_forward = type(model).forward
    assert patch(model) is model and is_patched(model)
    first = vars(model)["forward"]
    patch(model)
    assert vars(model)["forward"] is first
    assert unpatch(model) is model and not is_patched(model)
    assert "forward" not in vars(model) and model.forward.__func__ is stock_forward
    assert model(**batch()).logits is not None
    with pytest.raises(LossInputError, match=r"unpatch: model \(LlamaForCausalLM\) is not patched"):
        unpatch(model)


def test_unpatch_restores_an_instance_forward_that_was_there_before():
    model = make_model("llama")
    calls = []
    stock = model.forward

    def wrapped(*args, **kwargs):
        calls.append(1)
        return stock(*args, **kwargs)

    model.forward = wrapped
    patch(model)
    model(**batch()).loss.backward()
    assert calls == [1]  # the patch ran the forward that was in place, not the class's
    unpatch(model)
    assert vars(model)["forward"] is wrapped


def test_deepcopy_of_a_patched_model_is_patched_and_bound_to_the_copy():
    original = patch(make_model("llama"))
    clone = copy.deepcopy(original)
    assert is_patched(clone) and clone.forward.__self__ is clone
    out = clone(**batch())
    out.loss.backward()
    assert out.logits is None
    assert all(p.grad is None for p in original.parameters())
    assert all(p.grad is not None for p in clone.parameters())


# --- what is refused --------------------------------------------------------------------------


def test_a_non_module_is_refused():
    with pytest.raises(
        LossInputError, match=r"patch: model has type str, got a non-module; expected a transformers causal LM"
    ):
        patch("meta-llama/Llama-3.2-1B")


def test_a_model_without_an_output_layer_is_refused():
    base = transformers.LlamaModel(make_model("llama").config)
    with pytest.raises(
        LossInputError, match=r"patch: model \(LlamaModel\) has no output layer `lm_head`.*AutoModelForCausalLM"
    ):
        patch(base)


def test_a_custom_loss_function_is_refused():
    model = make_model("llama")
    model.loss_function = lambda logits, labels, vocab_size, **kwargs: logits.sum()
    with pytest.raises(
        LossInputError, match=r"model.loss_function is .*<lambda>.*expected transformers' default ForCausalLMLoss"
    ):
        patch(model)


def test_a_loss_function_set_after_patching_is_refused_at_the_forward():
    model = patch(make_model("llama"))
    model.loss_function = lambda logits, labels, vocab_size, **kwargs: logits.sum()
    with pytest.raises(LossInputError, match=r"forward: model.loss_function is"):
        model(**batch())


def test_a_loss_type_that_is_not_causal_lm_is_refused():
    model = make_model("llama")
    model.loss_type = "ForMaskedLM"
    with pytest.raises(LossInputError, match=r"loss_type='ForMaskedLM'"):
        patch(model)


def test_a_forward_that_changes_the_logits_in_an_unknown_way_is_refused():
    """A subclass whose forward clamps the logits: the patch cannot reproduce it, so it refuses."""
    from transformers.modeling_outputs import CausalLMOutputWithPast
    from transformers.utils.generic import can_return_tuple

    class Clamped(transformers.LlamaForCausalLM):
        @can_return_tuple
        def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
            outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            hidden_states = outputs.last_hidden_state
            logits = self.lm_head(hidden_states)
            logits = logits.clamp(-5, 5)
            loss = None
            if labels is not None:
                loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
            return CausalLMOutputWithPast(loss=loss, logits=logits)

    model = Clamped(make_model("llama").config)
    with pytest.raises(
        LossInputError,
        match=r"transforms the logits in a way losskit does not know \(`logits = logits.clamp\(-5, 5\)`\)",
    ):
        patch(model)


def test_hooks_on_lm_head_are_refused():
    model = make_model("llama")
    model.lm_head.register_forward_hook(lambda module, args, output: output * 2)
    with pytest.raises(LossInputError, match=r"patch: model.lm_head has forward hooks, got 1 hook"):
        patch(model)


def test_an_accelerate_hook_on_lm_head_is_refused():
    """What a multi-device ``device_map`` or offloading does to lm_head (accelerate's hooks)."""
    hooks = pytest.importorskip("accelerate.hooks")
    model = make_model("llama")
    hooks.add_hook_to_module(model.lm_head, hooks.ModelHook())
    with pytest.raises(LossInputError, match=r"patch: model.lm_head has a replaced forward, got ModelHook"):
        patch(model)


def test_a_quantized_or_wrapped_lm_head_is_refused():
    model = make_model("llama")

    class Wrapped(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    model.lm_head = Wrapped(32, VOCAB, bias=False)
    with pytest.raises(LossInputError, match=r"model.lm_head is a .*Wrapped; expected a plain torch.nn.Linear"):
        patch(model)


def test_a_vocabulary_size_that_differs_from_lm_head_is_refused():
    model = make_model("llama")
    model.config.vocab_size = VOCAB + 3
    with pytest.raises(LossInputError, match=r"config.vocab_size is 100 but lm_head has 97 outputs"):
        patch(model)
