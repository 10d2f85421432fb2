"""TRL (issue 26, item 6), with the pinned TRL 1.16: its trainers replace ``model.forward`` by
their own fused LM head, which already avoids the logits. losskit recognises that forward: a
model patched before the trainer is built trains exactly as stock TRL (losskit's forward is
bypassed, harmlessly) and ``is_patched`` says so; patching after the trainer is built is
refused in one line; ``unpatch`` names the forward it did not install."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.integrations._tiny_models import VOCAB, logged, make_model, trainer_args

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from losskit import LossInputError  # noqa: E402
from losskit.integrations.transformers import is_patched, patch, unpatch  # noqa: E402


def _tokenizer():
    """A word-level tokenizer built in memory (nothing downloaded): ``t0`` ... ``t96``."""
    from tokenizers import Tokenizer, models

    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t3"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=words, pad_token="t0", bos_token="t1", eos_token="t2")


def _sft(model, output_dir):
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, VOCAB, (int(n),), generator=g).tolist()} for n in [12, 9, 12, 7] * 3]
    args = trl.SFTConfig(**trainer_args(output_dir, gradient_accumulation_steps=1))
    return trl.SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=_tokenizer()
    )


def test_a_model_patched_before_the_trainer_trains_as_stock_trl(tmp_path):
    initial = make_model("llama")
    stock = _sft(copy.deepcopy(initial), tmp_path)
    stock.train()
    model = patch(copy.deepcopy(initial))
    trainer = _sft(model, tmp_path)
    assert not is_patched(model)  # TRL's forward is in place: training does not go through losskit's
    with pytest.raises(LossInputError, match=r"TRL's own loss head .*; losskit's patched forward is underneath"):
        unpatch(model)
    trainer.train()
    for key in ("loss", "mean_token_accuracy", "entropy"):
        torch.testing.assert_close(torch.tensor(logged(trainer, key)), torch.tensor(logged(stock, key)), msg=key)
    assert len(logged(trainer, "loss")) == 3


def test_patching_after_the_trainer_is_built_is_refused_in_one_line(tmp_path):
    trainer = _sft(make_model("llama"), tmp_path)
    for target in (trainer.model, trainer):
        with pytest.raises(LossInputError) as refused:
            patch(target)
        message = str(refused.value)
        assert "\n" not in message
        assert "model.forward is TRL's own loss head (trl.trainer.utils._fused_forward" in message
        assert "nothing to patch" in message
    assert not is_patched(trainer.model) and not is_patched(trainer)
    trainer.train()  # and the trainer still works
    assert len(logged(trainer, "loss")) == 3


def test_unpatch_names_the_forward_it_did_not_install(tmp_path):
    trainer = _sft(make_model("llama"), tmp_path)
    with pytest.raises(LossInputError) as refused:
        unpatch(trainer.model)
    message = str(refused.value)
    assert "TRL's own loss head as its forward (trl.trainer.utils._fused_forward" in message
    assert "stock forward" not in message and "underneath" not in message


def test_a_trl_trainer_without_its_loss_head_is_refused(tmp_path):
    """What TRL before 1.7 (and 1.7-1.13 with loss_type='nll') looks like to losskit: a TRL trainer
    whose model has no TRL forward; those trainers read outputs.logits, which a patched model lacks."""
    trainer = _sft(make_model("llama"), tmp_path)
    del trainer.model.forward  # as those versions leave it
    with pytest.raises(
        LossInputError,
        match=r"trainer is TRL 1\.16\.0's SFTTrainer, without TRL's own loss head.*reads outputs\.logits",
    ):
        patch(trainer)
    assert not is_patched(trainer.model)
