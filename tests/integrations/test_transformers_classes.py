"""Patching a model class or an Auto class (issue 26, item 3): every model made or loaded
afterwards -- ``from_config``, ``from_pretrained`` of a tiny model saved in a temporary
directory, ``torch.load`` of a whole pickled module -- computes the stock loss and gradients
with the fused loss; ``unpatch`` restores the class. Every stock reference is computed before
the class is patched (a class patch reaches every instance)."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.integrations._tiny_models import VOCAB, assert_same_gradients, batch, make_model

transformers = pytest.importorskip("transformers")

from losskit import LossInputError, LossUsageWarning  # noqa: E402
from losskit.integrations.transformers import is_patched, patch, unpatch  # noqa: E402

Llama = transformers.LlamaForCausalLM
STOCK_FORWARD, STOCK_INIT = Llama.forward, Llama.__init__


@pytest.fixture
def patch_for_test():
    """``patch`` for classes, undone after the test whatever happens (a class is process-wide)."""
    done = []

    def do(cls):
        done.append(cls)
        return patch(cls)

    yield do
    for cls in done:
        if is_patched(cls):
            unpatch(cls)
    assert Llama.forward is STOCK_FORWARD and Llama.__init__ is STOCK_INIT


def _stock_loss_and_gradients(model):
    model = copy.deepcopy(model)
    out = model(**batch())
    out.loss.backward()
    return out.loss.detach(), model


def test_models_made_after_patching_the_class_are_fused(tmp_path, patch_for_test):
    initial = make_model("llama")
    initial.save_pretrained(tmp_path)
    expected, stock = _stock_loss_and_gradients(initial)
    assert patch_for_test(Llama) is Llama and is_patched(Llama)
    made = {
        "from_pretrained": Llama.from_pretrained(tmp_path),
        "auto from_pretrained": transformers.AutoModelForCausalLM.from_pretrained(tmp_path),
        "constructor": Llama(initial.config),
        "auto from_config": transformers.AutoModelForCausalLM.from_config(initial.config),
    }
    for how, model in made.items():
        assert type(model) is Llama and is_patched(model), how
        if how in ("constructor", "auto from_config"):  # random weights: take the saved ones
            model.load_state_dict(initial.state_dict())
        out = model(**batch())
        out.loss.backward()
        assert out.logits is None, how
        torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6, msg=how)
        assert_same_gradients(stock, model)
        assert "forward" not in vars(model)  # the class's forward, not an instance's


def test_a_model_made_before_the_class_was_patched_is_fused_too(patch_for_test):
    model = make_model("llama")
    expected, stock = _stock_loss_and_gradients(model)
    patch_for_test(Llama)
    out = model(**batch())
    out.loss.backward()
    assert out.logits is None and is_patched(model)
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, model)


def test_unpatching_the_class_restores_the_stock_forward(patch_for_test):
    patch_for_test(Llama)
    patch(Llama)  # twice: nothing changes
    model = make_model("llama")
    with pytest.raises(LossInputError, match=r"is patched through its class.*Call unpatch\(LlamaForCausalLM\)"):
        unpatch(model)
    assert unpatch(Llama) is Llama and not is_patched(Llama) and not is_patched(model)
    assert Llama.forward is STOCK_FORWARD and Llama.__init__ is STOCK_INIT
    assert model(**batch()).logits.shape == (3, 11, VOCAB)
    with pytest.raises(LossInputError, match=r"unpatch: LlamaForCausalLM is not patched, got its stock class"):
        unpatch(Llama)


def test_a_subclass_is_patched_through_its_base_and_unpatched_there(patch_for_test):
    class MyLlama(Llama):  # a user's subclass that keeps the forward
        pass

    patch_for_test(Llama)
    model = MyLlama(make_model("llama").config)
    assert is_patched(MyLlama) and is_patched(model) and model(**batch()).logits is None
    with pytest.raises(
        LossInputError, match=r"MyLlama is patched through its base class LlamaForCausalLM.*unpatch\(LlamaForCausalLM\)"
    ):
        unpatch(MyLlama)
    unpatch(Llama)
    assert not is_patched(MyLlama) and model(**batch()).logits is not None
    patch_for_test(MyLlama)  # the subclass on its own, then back: it inherits again
    assert is_patched(MyLlama) and not is_patched(Llama)
    unpatch(MyLlama)
    assert "forward" not in vars(MyLlama) and "__init__" not in vars(MyLlama)


def test_a_class_patched_model_compiles_with_fullgraph(patch_for_test):
    """The hook on lm_head is installed when the model is made, so dynamo never has to."""
    initial = make_model("llama")
    expected, stock = _stock_loss_and_gradients(initial)
    patch_for_test(Llama)
    model = Llama(initial.config)
    model.load_state_dict(initial.state_dict())
    torch._dynamo.reset()
    out = torch.compile(model, backend="aot_eager", fullgraph=True)(**batch())
    out.loss.backward()
    torch._dynamo.reset()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert_same_gradients(stock, model, of_largest=1e-5)


def test_torch_save_of_a_whole_patched_module_loads_patched(tmp_path):
    model = patch(make_model("llama"))
    expected, _ = _stock_loss_and_gradients(unpatch(copy.deepcopy(model)))
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert is_patched(loaded) and loaded.forward.__self__ is loaded
    out = loaded(**batch())
    assert out.logits is None
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6)
    assert unpatch(loaded)(**batch()).logits is not None  # and it unpatches like the original


def test_torch_save_under_a_class_patch_loads_as_the_class_is(tmp_path, patch_for_test):
    """A class-patched model stores no forward of its own: loaded, it is fused while the class is."""
    initial = make_model("llama")
    expected, _ = _stock_loss_and_gradients(initial)
    patch_for_test(Llama)
    torch.save(Llama(initial.config), tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    loaded.load_state_dict(initial.state_dict())
    assert is_patched(loaded) and loaded(**batch()).logits is None
    torch.testing.assert_close(loaded(**batch()).loss, expected, rtol=1e-6, atol=1e-6)
    unpatch(Llama)
    assert not is_patched(loaded) and loaded(**batch()).logits is not None


def test_patching_an_auto_class_patches_every_model_it_makes(tmp_path, patch_for_test):
    auto = transformers.AutoModelForCausalLM
    stock_constructors = (vars(auto)["from_pretrained"], vars(auto)["from_config"])
    initial = make_model("gemma2")
    initial.save_pretrained(tmp_path)
    expected, stock = _stock_loss_and_gradients(initial)
    patch_for_test(auto)
    assert is_patched(auto) and not is_patched(transformers.Gemma2ForCausalLM)
    loaded = auto.from_pretrained(tmp_path)
    made = auto.from_config(initial.config)
    assert is_patched(loaded) and is_patched(made) and "forward" in vars(loaded)  # instance patches
    out = loaded(**batch())
    out.loss.backward()
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6)
    assert_same_gradients(stock, loaded)
    # a family losskit refuses is loaded stock, and says so
    bloom = transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=1, n_head=2)
    with pytest.warns(LossUsageWarning, match=r"patch\(AutoModelForCausalLM\): .*BloomForCausalLM.*stock model"):
        refused = auto.from_config(bloom)
    assert not is_patched(refused)
    unpatch(auto)
    assert (vars(auto)["from_pretrained"], vars(auto)["from_config"]) == stock_constructors
    assert not is_patched(auto.from_config(initial.config))


def test_a_vision_language_model_through_its_auto_class(patch_for_test):
    from tests.integrations._tiny_vlms import make_vlm, vlm_batch

    initial = make_vlm("gemma3")
    inputs = vlm_batch("gemma3", images=True)
    expected = initial(**inputs).loss
    patch_for_test(transformers.AutoModelForImageTextToText)
    model = transformers.AutoModelForImageTextToText.from_config(initial.config)
    model.load_state_dict(initial.state_dict())
    assert is_patched(model)
    torch.testing.assert_close(model(**inputs).loss, expected, rtol=1e-6, atol=1e-6)


def test_what_cannot_be_patched_as_a_class_is_refused_when_patched():
    with pytest.raises(LossInputError, match=r"BloomForCausalLM\) is not decorated with @can_return_tuple"):
        patch(transformers.BloomForCausalLM)
    with pytest.raises(LossInputError, match=r"LlamaModel\) does not take `labels`"):
        patch(transformers.LlamaModel)
    with pytest.raises(LossInputError, match=r"AutoModelForSequenceClassification, whose models have no causal-LM"):
        patch(transformers.AutoModelForSequenceClassification)
    with pytest.raises(LossInputError, match=r"patch: model is the class str, got a class that is not a torch module"):
        patch(str)
    assert not is_patched(transformers.BloomForCausalLM) and not is_patched(transformers.LlamaModel)
