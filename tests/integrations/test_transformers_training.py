"""A patched model in training: under PEFT (LoRA, patched before or after ``get_peft_model``), in
``transformers.Trainer`` with gradient accumulation (same loss curve and parameters as the stock
model), and the example script."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.integrations._tiny_models import assert_same_gradients, batch, logged, make_model, token_rows, trainer_args

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from losskit import LossInputError  # noqa: E402
from losskit.integrations.transformers import is_patched, patch, unpatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _lora(model, **options):
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=options.pop("target_modules", ["q_proj", "v_proj"]),
        init_lora_weights=False,  # random B too: both LoRA factors get a non-zero gradient
        task_type="CAUSAL_LM",
        **options,
    )
    torch.manual_seed(1)
    return peft.get_peft_model(model, config)


@pytest.mark.parametrize("order", ["patch-the-peft-model", "patch-then-get-peft-model"])
def test_lora_loss_and_adapter_gradients_equal_the_stock_peft_model(order):
    stock = _lora(make_model("llama"))
    if order == "patch-the-peft-model":
        patched = _lora(make_model("llama"))
        assert patch(patched) is patched
    else:
        patched = _lora(patch(make_model("llama")))
    assert is_patched(patched) and is_patched(patched.get_base_model())
    inputs = {**batch(), "num_items_in_batch": 21}
    expected, got = stock(**inputs), patched(**inputs)
    expected.loss.backward()
    got.loss.backward()
    assert got.logits is None
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-6, atol=1e-6)
    trainable = [n for n, p in patched.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert_same_gradients(stock, patched)
    unpatch(patched)
    assert not is_patched(patched) and patched(**batch()).logits is not None


def test_lora_on_lm_head_is_refused():
    model = _lora(make_model("llama"), target_modules=["q_proj", "lm_head"])
    with pytest.raises(
        LossInputError, match=r"patch: model.lm_head is a peft.tuners.lora.*expected a plain torch.nn.Linear"
    ):
        patch(model)


def test_lora_on_lm_head_added_after_patching_is_refused_at_the_forward():
    model = _lora(patch(make_model("llama")), target_modules=["lm_head"])
    with pytest.raises(LossInputError, match=r"forward: model.lm_head is a peft"):
        model(**batch())


def _train(model, output_dir):
    args = transformers.TrainingArguments(**trainer_args(output_dir, max_steps=4))
    # a list, not a datasets.Dataset: the Trainer drops every column the forward's signature lacks
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=token_rows(16, 12, seed=0), eval_dataset=token_rows(8, 12, seed=1)
    )
    assert trainer.model_accepts_loss_kwargs  # so it passes num_items_in_batch to the forward
    trainer.train()
    return logged(trainer), trainer.evaluate()["eval_loss"], model


def test_trainer_with_gradient_accumulation_gives_the_stock_loss_curve(tmp_path):
    initial = make_model("llama")
    stock_losses, stock_eval, stock = _train(copy.deepcopy(initial), tmp_path / "stock")
    losses, eval_loss, patched = _train(patch(copy.deepcopy(initial)), tmp_path / "patched")
    assert len(losses) == len(stock_losses) == 4
    assert stock_losses[0] != stock_losses[-1]  # it trained
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(stock_losses), rtol=1e-5, atol=1e-5)
    assert eval_loss == pytest.approx(stock_eval, rel=1e-5)
    for (name, p), q in zip(stock.named_parameters(), patched.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_the_example_script_runs_and_both_curves_and_evaluations_agree():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "finetune_hf_trainer.py"),
            "--steps",
            "3",
            "--vocab",
            "2000",
            "--seq",
            "32",
            "--batch",
            "4",
            "--label-smoothing",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("stock ") for line in lines) and any(line.startswith("losskit ") for line in lines)
    assert "largest loss difference" in out.stdout and "peak memory" in out.stdout
    difference = float(next(line for line in lines if "largest loss difference" in line).split()[-1])
    assert difference < 1e-4
    # evaluation: the patched run's token accuracy and perplexity (no logits) are the stock run's
    evaluations = {line.split()[0]: line for line in lines if " evaluation: " in line}
    assert set(evaluations) == {"stock", "losskit"}
    numbers = {
        k: [float(w.rstrip(",")) for w in v.split() if w.rstrip(",").replace(".", "").isdigit()]
        for k, v in evaluations.items()
    }
    assert numbers["stock"] == pytest.approx(numbers["losskit"], rel=1e-4)
