"""``torch.compile`` of a patched model (issue 26, item 1): the default (inductor) and
``aot_eager`` backends, ``fullgraph=True``, and ``TrainingArguments(torch_compile=True)`` give
the stock model's loss and gradients (the stock model runs eagerly: the reference)."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.integrations._tiny_models import (
    VOCAB,
    assert_same_gradients,
    batch,
    logged,
    make_model,
    token_rows,
    trainer_args,
)

transformers = pytest.importorskip("transformers")

from losskit.integrations.transformers import patch  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles new models: without a reset, dynamo's recompilation limit for the
    shared forward code is reached after a few tests (and fullgraph=True then fails)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("family", "backend", "fullgraph"),
    [
        ("llama", "aot_eager", True),
        ("gemma2", "aot_eager", True),  # the soft-cap inside the graph
        ("granite", "aot_eager", False),  # the logit scale
        ("llama", "inductor", True),  # torch.compile's default backend
    ],
)
def test_compiled_patched_model_gives_the_stock_loss_and_gradients(family, backend, fullgraph):
    stock = make_model(family)
    patched = patch(copy.deepcopy(stock))
    compiled = torch.compile(patched, backend=backend, fullgraph=fullgraph)
    inputs = batch()
    expected = stock(**inputs)
    expected.loss.backward()
    got = compiled(**inputs)
    got.loss.backward()
    assert got.logits is None
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-5, atol=1e-6)
    assert_same_gradients(stock, patched, of_largest=1e-5)
    with torch.no_grad():  # evaluation, compiled too: the loss and the token statistics
        evaluated = compiled(**batch(seed=1))
        reference = stock(**batch(seed=1))
    torch.testing.assert_close(evaluated.loss, reference.loss, rtol=1e-5, atol=1e-6)
    labels = batch(seed=1)["labels"][:, 1:]
    counted = labels != -100
    correct = (reference.logits[:, :-1].argmax(-1) == labels) & counted
    torch.testing.assert_close(
        evaluated.token_statistics[:, 1:], torch.stack([correct.sum(1), counted.sum(1)], 1).float()
    )


def test_an_lm_head_replaced_after_patching_under_fullgraph_is_a_clear_error():
    """The hook on lm_head cannot be installed while dynamo traces: fullgraph=True says what to do;
    without fullgraph that one call runs uncompiled, installs it, and gives the stock loss."""
    stock = make_model("llama")
    patched = patch(copy.deepcopy(stock))
    patched.lm_head = copy.deepcopy(stock.lm_head)  # e.g. what resize_token_embeddings does
    with pytest.raises(Exception) as raised:  # dynamo's Unsupported, carrying losskit's error
        torch.compile(patched, backend="aot_eager", fullgraph=True)(**batch())
    assert "LossInputError" in str(raised.value)
    assert "has no losskit hook under torch.compile" in str(raised.value) and "Call patch(model) again" in str(
        raised.value
    )
    loss = torch.compile(patched, backend="aot_eager")(**batch()).loss
    torch.testing.assert_close(loss, stock(**batch()).loss, rtol=1e-5, atol=1e-6)
    fresh = patch(copy.deepcopy(stock))
    fresh.lm_head = copy.deepcopy(stock.lm_head)
    patch(fresh)  # patching again installs the hook: fullgraph holds
    loss = torch.compile(fresh, backend="aot_eager", fullgraph=True)(**batch()).loss
    torch.testing.assert_close(loss, stock(**batch()).loss, rtol=1e-5, atol=1e-6)


def test_trainer_with_torch_compile_gives_the_stock_loss_curve(tmp_path):
    def train(model, compile_):
        args = transformers.TrainingArguments(
            **trainer_args(tmp_path, torch_compile=compile_, torch_compile_backend="aot_eager" if compile_ else None)
        )
        trainer = transformers.Trainer(model=model, args=args, train_dataset=token_rows(12, 12, seed=0))
        trainer.train()
        return logged(trainer), model

    initial = make_model("llama")
    expected, stock = train(copy.deepcopy(initial), compile_=False)
    torch._dynamo.utils.counters.clear()
    got, patched = train(patch(copy.deepcopy(initial)), compile_=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the Trainer did compile
    assert len(got) == 3 and expected[0] != expected[-1]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-5)
    # AdamW normalises each update (lr 1e-2): float32 rounding of a near-zero gradient, ordered
    # differently by the compiled graph, moves a parameter by up to ~1 % of one step
    for (name, p), q in zip(stock.named_parameters(), patched.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    assert patched.lm_head.out_features == VOCAB
