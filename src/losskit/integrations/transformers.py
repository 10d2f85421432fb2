"""Hugging Face transformers in one line: ``patch(model)`` makes a causal LM compute its training
loss with losskit's fused :func:`~losskit.functional.linear_cross_entropy`, so the
``batch x sequence x vocabulary`` logits are never built.

The patched ``forward`` runs the stock one with ``labels=None`` while a hook on the output layer
``lm_head`` records its input (the final hidden states, already sliced by ``logits_to_keep``) and
hands ``lm_head`` zero rows in place of the logits. The loss is then the stock
:func:`transformers.loss.loss_utils.ForCausalLMLoss` computed from the hidden states and
``lm_head.weight``: the same label shift, ``ignore_index``, ``shift_labels`` and
``num_items_in_batch``, with each family's step between ``lm_head`` and the loss (a logit
scale, Gemma-2 soft-capping, a router auxiliary loss) read from the class's own ``forward``
(:mod:`losskit.integrations._forward_reader`; the forward itself is in
:mod:`losskit.integrations._fused_forward`). Without ``labels`` the stock ``forward`` runs
untouched, so ``generate()`` and evaluation without labels are unchanged.

``patch`` also takes a model class or an Auto class (every model made afterwards is patched) and
a ``transformers.Trainer`` (its model, and its own loss options such as label smoothing); see
:mod:`losskit.integrations._hf_targets`. :func:`token_metrics` gives ``Trainer.evaluate`` token
accuracy and perplexity without logits.

transformers and peft are imported only when something is patched: ``import losskit`` stays free
of both.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from torch import nn

from losskit.errors import LossInputError
from losskit.integrations._fused_forward import (
    TRAINER_LOSS,
    FusedForward,
    check_model,
    ensure_taps,
    forward_chain,
    has_taps,
    install_taps,
    plan_for,
    remove_taps,
)
from losskit.integrations._hf_targets import (
    foreign_forward,
    fused_forward,
    is_auto_class,
    is_auto_patched,
    is_class_patched,
    is_trainer,
    is_trainer_patched,
    patch_auto_class,
    patch_class,
    patch_trainer,
    trl_forward,
    trl_refusal,
    unpatch_auto_class,
    unpatch_class,
    unpatch_trainer,
)

__all__ = ["patch", "unpatch", "is_patched", "token_metrics"]

T = TypeVar("T")

_EXPECTED = (
    "expected a transformers causal LM with an output layer `lm_head` (e.g. LlamaForCausalLM, or a "
    "PeftModel wrapping one), its class, AutoModelForCausalLM, or a transformers.Trainer"
)


def patch(model: T) -> T:
    r"""Make a causal LM compute its loss with the fused linear + cross-entropy; returns ``model``.

    In place and idempotent (patching twice changes nothing). With ``labels`` the patched
    ``forward`` returns the loss of the stock model,

    .. math::
        \text{loss} = \frac{1}{n} \sum_{i:\,y_{i+1} \ne -100}
        -\log \operatorname{softmax}(f(h_i W^\top + b))_{y_{i+1}}
        \;[+\ c \cdot \text{aux\_loss}]

    (``n`` the count of counted tokens, or ``num_items_in_batch`` when given; ``f`` the family's
    logit scale or soft-cap; ``c`` Mixtral's ``router_aux_loss_coef``), with the same gradient
    for every parameter, and ``logits=None``: no logits are ever built. Without ``labels`` it
    is the stock ``forward`` (logits, ``generate()``). Without grad mode (evaluation) the output
    also carries ``token_statistics`` ``(batch, 3)``: per sequence, the sum of
    :math:`\log p(y_{i+1})`, the count of tokens whose argmax is the label, and the count of
    counted tokens (read by :func:`token_metrics`).

    transformers equivalent: the model's own ``forward`` with ``labels`` (``ForCausalLMLoss``).

    What ``model`` may be:

    * a model (``*ForCausalLM``, a vision-language ``*ForConditionalGeneration``, a PEFT model
      wrapping one -- its base model is patched --, or ``torch.compile`` of one);
    * a model class (``patch(LlamaForCausalLM)``): every instance, made before or after, is
      fused -- ``from_pretrained``, ``from_config``, ``torch.load`` of a pickled model;
      ``unpatch(LlamaForCausalLM)`` restores the class;
    * an Auto class (``AutoModelForCausalLM``, ``AutoModelForImageTextToText``): every model
      its ``from_pretrained`` / ``from_config`` return afterwards is patched (one losskit cannot
      patch is returned stock, with a :class:`~losskit.LossUsageWarning`);
    * a ``transformers.Trainer``: its model is patched and its loss options go through the
      fused loss -- ``label_smoothing_factor`` with the value of the Trainer's
      ``LabelSmoother``; ``model_init``'s models are patched too; options that need the logits
      (``compute_loss_func``, a ``compute_metrics`` other than :func:`token_metrics`,
      ``preprocess_logits_for_metrics``) are named in a warning, once each.

    Honoured as stock: the label shift, ``ignore_index`` (default -100), ``shift_labels``
    (with ``labels``), ``num_items_in_batch`` (int or tensor: the loss is then a sum divided by
    it, as the Trainer's gradient accumulation needs), ``logits_to_keep``, ``attention_mask``,
    ``return_dict``, ``lm_head.bias``, tied embeddings, images (``pixel_values`` and the rest go
    to the base model untouched), and what each family does between ``lm_head`` and the loss,
    read from its ``forward``: Granite's ``logits / config.logits_scaling``, Cohere's
    ``logits * logit_scale``, Gemma 2's ``final_logit_softcapping``, Mixtral's
    ``router_aux_loss_coef * aux_loss``. The patched ``forward`` keeps the stock signature (the
    Trainer keeps ``input_ids``); ``copy.deepcopy``, ``pickle`` and ``torch.save`` of the whole
    module keep it patched; ``torch.compile`` (also ``fullgraph=True``) traces it.

    Args:
        model: what to patch (see above).

    Returns:
        ``model`` itself, patched.

    Note:
        Deliberate differences from the stock model: ``logits`` is ``None`` whenever ``labels``
        is given; with a bfloat16/float16 model the gradients are rounded in other places than
        stock's (the loss is float32 in both, as the stock float32 loss of such logits); when every
        label is ignored the loss is NaN as in stock, and losskit also warns
        (:class:`~losskit.LossUsageWarning`).

    Raises:
        LossInputError: ``model`` is not a causal LM with a plain ``nn.Linear`` ``lm_head``; its
            ``forward`` does something between ``lm_head`` and the loss that losskit does not
            reproduce exactly; it has a custom ``loss_function`` / ``loss_type``; its
            ``forward`` is TRL's fused LM head (TRL >= 1.14 already avoids the logits: nothing
            to patch); or it is a TRL trainer.

    Example:
        >>> import torch, transformers
        >>> from losskit.integrations.transformers import patch
        >>> config = transformers.LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
        >>> model = patch(transformers.LlamaForCausalLM(config))
        >>> ids = torch.randint(0, 97, (2, 8))
        >>> out = model(input_ids=ids, labels=ids)
        >>> out.logits is None, out.loss.shape
        (True, torch.Size([]))
    """
    if isinstance(model, type):
        if is_auto_class(model):
            patch_auto_class(model, _patch_model)
        elif issubclass(model, nn.Module):
            patch_class(model)
        else:
            raise LossInputError(
                f"patch: model is the class {model.__name__}, got a class that is not a torch module; {_EXPECTED}."
            )
    elif is_trainer(model):
        patch_trainer(model, _patch_model, lambda m: _causal_lm("patch", m))
    else:
        _patch_model(model)
    return model


def unpatch(model: T) -> T:
    """Undo :func:`patch`: the model's ``forward`` (or the class's, the Auto class's constructors,
    the Trainer's options) is again exactly what it was; returns ``model``.

    transformers equivalent: none (a model that was never patched).

    Raises:
        LossInputError: ``model`` is not patched -- the message says what its ``forward`` is
            (the stock one, one another library installed such as TRL's fused LM head, or the
            class's patched one, undone by ``unpatch(cls)``).

    Example:
        >>> import transformers
        >>> from losskit.integrations.transformers import patch, unpatch
        >>> config = transformers.LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
        >>> model = unpatch(patch(transformers.LlamaForCausalLM(config)))
        >>> "forward" in vars(model)
        False
    """
    if isinstance(model, type):
        if not is_patched(model):
            raise LossInputError(
                f"unpatch: {model.__name__} is not patched, got its stock class; expected a class given to "
                "losskit.integrations.transformers.patch(cls). Nothing to undo."
            )
        if is_auto_class(model):
            unpatch_auto_class(model)
        else:
            unpatch_class(model)
    elif is_trainer(model):
        unpatch_trainer(model, _unpatch_model, lambda m: _causal_lm("unpatch", m))
    else:
        _unpatch_model(model)
    return model


def is_patched(model: object) -> bool:
    """Whether the fused loss is what ``model`` computes: :func:`patch` was applied to it (or to
    the base model of a PEFT model, to its class, or -- for a Trainer -- to the Trainer).

    A model whose ``forward`` another library replaced after patching (TRL's trainers install
    their own fused LM head) is not: that forward no longer goes through losskit's in training.

    Example:
        >>> import torch
        >>> from losskit.integrations.transformers import is_patched
        >>> is_patched(torch.nn.Linear(2, 2))
        False
    """
    if isinstance(model, type):
        return is_auto_patched(model) if is_auto_class(model) else is_class_patched(model)
    if is_trainer(model):
        return is_trainer_patched(model)
    if not isinstance(model, nn.Module):
        return False
    target = _unwrap(model)
    if fused_forward(target) is not None:
        return True
    chain = forward_chain(target)
    inactive = any(isinstance(f, FusedForward) for f in chain)  # unpatched under another library's wrapper
    return not inactive and trl_forward(target) is None and is_class_patched(type(target))


def token_metrics(eval_pred: Any, compute_result: bool | None = None) -> dict[str, float]:
    r"""Token accuracy and perplexity for ``Trainer(compute_metrics=token_metrics)``, from the
    ``token_statistics`` a patched model returns during evaluation -- no logits needed.

    .. math::
        \text{token\_accuracy} = \frac{\#\{i : \arg\max_c z_{i,c} = y_{i+1}\}}{n}, \qquad
        \text{perplexity} = \exp\Big(-\frac{1}{n} \sum_i \log p(y_{i+1})\Big)

    over the ``n`` counted tokens of the whole evaluation set (labels not ``-100``, shifted as
    the loss shifts them). This perplexity weighs every token once; ``exp(eval_loss)`` is the
    exponential of the mean of per-batch means, which differs when batches count different
    numbers of tokens.

    torch equivalent: ``(logits[:, :-1].argmax(-1) == labels[:, 1:])[mask].float().mean()`` and
    ``exp(cross_entropy(logits[:, :-1][mask], labels[:, 1:][mask]))`` over all batches at once.

    Args:
        eval_pred: the Trainer's ``EvalPrediction`` (or a ``(predictions, label_ids)`` pair):
            ``predictions`` is the ``(N, 3)`` array of token statistics -- the last element when
            the Trainer gathered a tuple of outputs, and a list of such per batch with
            ``eval_do_concat_batches=False``.

    Returns:
        ``{"token_accuracy": ..., "perplexity": ...}`` (NaN when no token was counted); the
        Trainer logs them as ``eval_token_accuracy`` and ``eval_perplexity``.

    Raises:
        LossInputError: the predictions are not token statistics (the model is not patched, or
            ``batch_eval_metrics=True``, which the statistics -- three numbers per sequence --
            do not need).

    Example:
        >>> import numpy as np
        >>> from losskit.integrations.transformers import token_metrics
        >>> stats = np.array([[-2.0, 1.0, 2.0], [-4.0, 2.0, 2.0]])  # sum log p, correct, counted
        >>> metrics = token_metrics((stats, None))
        >>> metrics["token_accuracy"], round(metrics["perplexity"], 4)  # 3 / 4, exp(6 / 4)
        (0.75, 4.4817)
    """
    import numpy as np

    if compute_result is not None:
        raise LossInputError(
            f"token_metrics: compute_result was given ({compute_result!r}: batch_eval_metrics=True); expected "
            "batch_eval_metrics=False. The token statistics are three numbers per sequence, gathered at no cost: "
            "drop batch_eval_metrics."
        )
    predictions = eval_pred[0] if isinstance(eval_pred, tuple) else getattr(eval_pred, "predictions", eval_pred)
    batches = predictions if isinstance(predictions, list) else [predictions]
    arrays = [np.asarray(b[-1] if isinstance(b, tuple) else b, dtype=np.float64) for b in batches]
    if not arrays or any(a.ndim != 2 or a.shape[1] != 3 for a in arrays):
        shapes = [a.shape for a in arrays]
        raise LossInputError(
            f"token_metrics: eval_pred.predictions has shape(s) {shapes}; expected losskit's token statistics "
            "of shape (N, 3), which a patched model returns during evaluation. Patch the model (or the "
            "Trainer) with losskit.integrations.transformers.patch, and leave batch_eval_metrics off."
        )
    totals = np.concatenate(arrays).sum(0)
    counted = totals[2]
    if counted == 0:
        return {"token_accuracy": math.nan, "perplexity": math.nan}
    return {"token_accuracy": float(totals[1] / counted), "perplexity": math.exp(-totals[0] / counted)}


# --- one model -----------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    """``model``, its ``torch.compile`` original, or a PEFT model's base model."""
    model = getattr(model, "_orig_mod", model)
    get_base_model = getattr(model, "get_base_model", None)
    if callable(get_base_model):  # peft.PeftModel
        base = get_base_model()
        if isinstance(base, nn.Module):
            return base
    return model


def _causal_lm(fn: str, model: object) -> nn.Module:
    """The causal LM to patch: ``model`` itself, or what :func:`_unwrap` finds in it."""
    if not isinstance(model, nn.Module):
        raise LossInputError(
            f"{fn}: model has type {type(model).__name__}, got a non-module; {_EXPECTED}. Pass the model "
            "from AutoModelForCausalLM.from_pretrained(...) (or its config)."
        )
    model = _unwrap(model)
    if not isinstance(getattr(model, "lm_head", None), nn.Module) or getattr(model, "config", None) is None:
        raise LossInputError(
            f"{fn}: model ({type(model).__name__}) has no output layer `lm_head` or no `config`; {_EXPECTED}. "
            "Load it with transformers.AutoModelForCausalLM, not AutoModel (which has no output layer)."
        )
    return model


def _patch_model(model: object) -> None:
    target = _causal_lm("patch", model)
    if is_patched(target):  # again: its lm_head may have been replaced since
        ensure_taps(target, plan_for(target))
        return
    owner = trl_forward(target)
    if owner is not None:
        raise trl_refusal("patch", owner)
    plan = plan_for(target)
    check_model("patch", target, plan)
    inner = vars(target).get("forward")  # an instance-level forward (e.g. accelerate's hook), or None
    install_taps(target, plan)
    target.forward = FusedForward(target, inner, plan)


def _unpatch_model(model: object) -> None:
    target = _causal_lm("unpatch", model)
    fused = fused_forward(target)
    name = type(target).__name__
    if fused is not None:
        outermost = vars(target).get("forward") is fused
        if outermost:
            del target.forward
            if fused.inner is not None:
                target.forward = fused.inner
        else:  # another library wrapped it since (accelerate's mixed precision): switched off in place
            fused.active = False
        remove_taps(target, fused.plan)
        target.__dict__.pop(TRAINER_LOSS, None)
        return
    owner = trl_forward(target)
    if owner is not None:
        under = (
            "; losskit's patched forward is underneath, run only when TRL calls the model without its loss head "
            "(unpatch before building the trainer to remove it)"
            if has_taps(target)
            else ""
        )
        raise LossInputError(
            f"unpatch: model ({name}) has TRL's own loss head as its forward ({owner}, installed by TRL's trainer), "
            f"not losskit's{under}; expected a model returned by patch(model). It already trains without the "
            "logits and is TRL's to keep: losskit leaves it."
        )
    if is_class_patched(type(target)):
        raise LossInputError(
            f"unpatch: model ({name}) is patched through its class, got the class's patched forward; expected a "
            f"model patched on its own. Call unpatch({name}) to restore the stock forward of the whole class."
        )
    owner = foreign_forward(target)
    got = "its stock forward" if owner is None else f"an instance forward losskit did not install ({owner})"
    raise LossInputError(
        f"unpatch: model ({name}) is not patched, got {got}; expected a model returned by "
        "losskit.integrations.transformers.patch(model). Nothing to undo: use the model as it is."
    )
