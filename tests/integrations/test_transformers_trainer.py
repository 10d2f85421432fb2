"""``patch(trainer)`` (issue 26, items 4 and 5): the Trainer's ``label_smoothing_factor`` goes
through the fused loss with the value of the stock Trainer's ``LabelSmoother``; options the patch
cannot honour are named in one warning each; ``token_metrics`` gives ``Trainer.evaluate`` token
accuracy and perplexity without logits. Expected values come from the stock model trained or
evaluated by the stock Trainer (metrics from its logits, by the formulas written out here)."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from tests.integrations._tiny_models import logged, make_model, token_rows, trainer_args

transformers = pytest.importorskip("transformers")

from losskit import LossInputError, LossUsageWarning  # noqa: E402
from losskit.integrations import _fused_forward  # noqa: E402
from losskit.integrations.transformers import is_patched, patch, token_metrics, unpatch  # noqa: E402


def _trainer(model, output_dir, train=None, evaluate=None, **options):
    trainer_options = {k: options.pop(k) for k in list(options) if k in _TRAINER_OPTIONS}
    return transformers.Trainer(
        model=model,
        args=transformers.TrainingArguments(**trainer_args(output_dir, **options)),
        train_dataset=token_rows(12, 12, seed=0) if train is None else train,
        eval_dataset=token_rows(8, 12, seed=1) if evaluate is None else evaluate,
        **trainer_options,
    )


_TRAINER_OPTIONS = ("compute_metrics", "compute_loss_func", "preprocess_logits_for_metrics", "model_init")


@pytest.fixture
def fused_calls(monkeypatch):
    """The label smoothing each call of the fused loss received."""
    seen = []
    original = _fused_forward.linear_cross_entropy

    def counting(*args, **kwargs):
        seen.append(kwargs.get("label_smoothing", 0.0))
        return original(*args, **kwargs)

    monkeypatch.setattr(_fused_forward, "linear_cross_entropy", counting)
    return seen


# --- label smoothing -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gemma2", "mixtral"])
def test_label_smoothing_goes_through_the_fused_loss_with_the_stock_value(family, tmp_path, fused_calls):
    """Gemma 2: smoothing of soft-capped logits; Mixtral: the LabelSmoother adds no router loss."""
    initial = make_model(family)
    stock = _trainer(copy.deepcopy(initial), tmp_path, label_smoothing_factor=0.1)
    stock.train()
    trainer = _trainer(copy.deepcopy(initial), tmp_path, label_smoothing_factor=0.1)
    assert patch(trainer) is trainer and is_patched(trainer) and is_patched(trainer.model)
    trainer.train()
    assert fused_calls and set(fused_calls) == {0.1}  # 3 steps x 2 micro-batches, all fused
    assert len(fused_calls) == 6
    torch.testing.assert_close(torch.tensor(logged(trainer)), torch.tensor(logged(stock)), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the smoothing matters: 10 x the tolerance above, at least
        rows = token_rows(2, 12, seed=0)
        ids, labels = torch.stack([r["input_ids"] for r in rows]), torch.stack([r["labels"] for r in rows])
        smoothed = stock.label_smoother(initial(input_ids=ids), labels, shift_labels=True)
        assert abs(smoothed - initial(input_ids=ids, labels=labels).loss) > 1e-4
    assert trainer.evaluate()["eval_loss"] == pytest.approx(stock.evaluate()["eval_loss"], rel=1e-5)
    # AdamW normalises each update (lr 1e-2): float32 rounding of a near-zero gradient moves a
    # parameter by up to ~1 % of one step
    for (name, p), q in zip(stock.model.named_parameters(), trainer.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_label_smoothing_of_a_model_outside_the_causal_lm_mapping_is_stock_too(tmp_path):
    """transformers' LabelSmoother shifts the labels only for classes in its causal-LM mapping;
    LLaVA is not there, so stock training smooths unshifted labels -- and so does the patch."""
    from tests.integrations._tiny_vlms import make_vlm, vlm_batch

    rows = [
        {k: v[0] for k, v in vlm_batch("llava", images=False, seed=s).items() if k != "attention_mask"}
        for s in range(8)
    ]
    initial = make_vlm("llava")
    stock = _trainer(copy.deepcopy(initial), tmp_path, train=rows, evaluate=rows, label_smoothing_factor=0.2)
    stock.train()
    trainer = patch(_trainer(copy.deepcopy(initial), tmp_path, train=rows, evaluate=rows, label_smoothing_factor=0.2))
    trainer.train()
    torch.testing.assert_close(torch.tensor(logged(trainer)), torch.tensor(logged(stock)), rtol=1e-5, atol=1e-5)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(stock.evaluate()["eval_loss"], rel=1e-5)


def test_a_patched_model_in_a_smoothing_trainer_warns_once(tmp_path, fused_calls):
    """patch(model) alone cannot see the Trainer: the Trainer pops the labels and the model builds
    the logits. The model notices (num_items_in_batch without labels) and says so, once."""
    trainer = _trainer(patch(make_model("llama")), tmp_path, label_smoothing_factor=0.1)
    with pytest.warns(LossUsageWarning, match=r"without labels.*label_smoothing_factor.*patch\(trainer\)") as caught:
        trainer.train()
    assert len([w for w in caught if issubclass(w.category, LossUsageWarning)]) == 1
    assert fused_calls == []


def test_unpatch_trainer_restores_its_label_smoother_and_model(tmp_path):
    trainer = _trainer(make_model("llama"), tmp_path, label_smoothing_factor=0.1)
    smoother = trainer.label_smoother
    patch(trainer)
    assert trainer.label_smoother is None
    assert unpatch(trainer) is trainer
    assert trainer.label_smoother is smoother and not is_patched(trainer) and not is_patched(trainer.model)


def test_model_init_makes_patched_models(tmp_path):
    initial = make_model("llama")
    stock = _trainer(copy.deepcopy(initial), tmp_path, label_smoothing_factor=0.1)
    stock.train()
    trainer = _trainer(None, tmp_path, model_init=lambda: copy.deepcopy(initial), label_smoothing_factor=0.1)
    patch(trainer)
    trainer.train()  # train() calls model_init again
    assert is_patched(trainer.model) and trainer.model is not initial
    torch.testing.assert_close(torch.tensor(logged(trainer)), torch.tensor(logged(stock)), rtol=1e-5, atol=1e-5)


def test_options_that_need_the_logits_are_named_once_each(tmp_path):
    def reads_logits(eval_pred):
        return {"accuracy": float(eval_pred.predictions.argmax(-1).mean())}

    trainer = _trainer(
        make_model("llama"),
        tmp_path,
        compute_metrics=reads_logits,
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.logits.sum(),
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1),
    )
    with pytest.warns(LossUsageWarning) as caught:
        patch(trainer)
    messages = [str(w.message) for w in caught if issubclass(w.category, LossUsageWarning)]
    assert len(messages) == 3
    for option in ("compute_loss_func", "compute_metrics", "preprocess_logits_for_metrics"):
        assert sum(f"Trainer's {option} cannot be honoured" in m for m in messages) == 1, option
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        patch(trainer)  # once: patching again says nothing


# --- token accuracy and perplexity without logits ------------------------------------------------


def _metrics_from_logits(eval_pred):
    """The reference: token accuracy and perplexity from the stock logits (padded with -100)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits, labels = logits[:, :-1], labels[:, 1:]
    counted = labels != -100
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    target_log_p = np.take_along_axis(log_p, np.where(counted, labels, 0)[..., None], -1)[..., 0]
    return {
        "token_accuracy": float((logits.argmax(-1) == labels)[counted].mean()),
        "perplexity": math.exp(-target_log_p[counted].mean()),
    }


def _half_predicted(model, rows):
    """``rows`` whose every other label is the model's own argmax: a token accuracy near 1/2."""
    out = []
    for row in rows:
        with torch.no_grad():
            predicted = model(input_ids=row["input_ids"][None]).logits[0, :-1].argmax(-1)
        labels = row["labels"].clone()
        labels[1::2] = torch.where(labels[1::2] == -100, -100, predicted[0::2])
        out.append({**row, "labels": labels})
    return out


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_token_metrics_through_the_trainer_equal_the_ones_from_stock_logits(family, tmp_path):
    """Evaluation batches of different lengths (the Trainer pads the stock logits across them)."""
    initial = make_model(family)
    evaluate = _half_predicted(initial, token_rows(4, 12, seed=1) + token_rows(4, 9, seed=2))
    stock = _trainer(copy.deepcopy(initial), tmp_path, evaluate=evaluate, compute_metrics=_metrics_from_logits)
    trainer = patch(_trainer(copy.deepcopy(initial), tmp_path, evaluate=evaluate, compute_metrics=token_metrics))
    expected, got = stock.evaluate(), trainer.evaluate()
    assert 0.0 < expected["eval_token_accuracy"] < 1.0 and expected["eval_perplexity"] > 1.0
    assert got["eval_token_accuracy"] == pytest.approx(expected["eval_token_accuracy"], abs=1e-12)
    assert got["eval_perplexity"] == pytest.approx(expected["eval_perplexity"], rel=1e-5)
    assert got["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-5)
    # perplexity over tokens is not exp(eval_loss), a mean of per-batch means
    assert abs(math.log(got["eval_perplexity"]) - got["eval_loss"]) > 1e-4


def test_token_statistics_are_those_of_the_stock_logits():
    model = make_model("llama").eval()
    rows = token_rows(3, 10, seed=4)
    inputs = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"]).logits
        stats = patch(model)(**inputs).token_statistics
    labels = inputs["labels"][:, 1:]
    counted = labels != -100
    log_p = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close(stats[:, 0], (log_p * counted).sum(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats[:, 1], ((logits[:, :-1].argmax(-1) == labels) & counted).sum(1).float())
    torch.testing.assert_close(stats[:, 2], counted.sum(1).float())
    out = model(**inputs)  # with grad: training, no statistics
    assert not hasattr(out, "token_statistics") and out.loss.requires_grad


def test_token_metrics_refuses_what_is_not_token_statistics():
    with pytest.raises(LossInputError, match=r"predictions has shape\(s\) \[\(2, 5, 97\)\]; expected losskit's token"):
        token_metrics((np.zeros((2, 5, 97)), None))
    per_batch = [np.array([[-1.0, 1.0, 1.0]]), (np.zeros((1, 4, 8)), np.array([[-3.0, 0.0, 1.0]]))]
    assert token_metrics((per_batch, None)) == {"token_accuracy": 0.5, "perplexity": pytest.approx(math.exp(2.0))}
    assert math.isnan(token_metrics((np.zeros((2, 3)), None))["perplexity"])
    with pytest.raises(LossInputError, match=r"compute_result was given \(False: batch_eval_metrics=True\)"):
        token_metrics((np.zeros((2, 3)), None), compute_result=False)


def test_under_accelerate_mixed_precision_the_model_stays_patched_and_unpatches(tmp_path):
    """bf16=True: accelerate wraps model.forward (autocast, outputs to float32) around losskit's.
    is_patched still sees losskit's forward; unpatch switches it off under the wrapper."""
    model = patch(make_model("llama"))
    trainer = _trainer(model, tmp_path, bf16=True, max_steps=1)
    trainer.train()
    wrapper = vars(model)["forward"]
    assert getattr(wrapper.__func__, "__globals__", {}).get("__name__", "").startswith("accelerate")
    inputs = token_rows(2, 12, seed=3)
    inputs = {k: torch.stack([r[k] for r in inputs]) for k in inputs[0]}
    assert is_patched(model) and model(**inputs).logits is None
    unpatch(model)
    assert not is_patched(model) and model(**inputs).logits is not None
    with pytest.raises(
        LossInputError, match=r"not patched, got an instance forward losskit did not install \(accelerate"
    ):
        unpatch(model)
    patch(model)
    assert is_patched(model) and model(**inputs).logits is None
