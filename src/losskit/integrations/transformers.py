"""Hugging Face transformers in one line: ``patch(model)`` makes a causal LM compute its training
loss with losskit's fused :func:`~losskit.functional.linear_cross_entropy`, so the
``batch x sequence x vocabulary`` logits are never built.

The patched ``forward`` runs the stock one with ``labels=None`` while the output layer
``lm_head`` only records its input (the final hidden states, already sliced by
``logits_to_keep``) and returns an empty ``(..., 0)`` tensor in place of the logits. The loss
is then the stock :func:`transformers.loss.loss_utils.ForCausalLMLoss` computed from the hidden
states and ``lm_head.weight``: the same label shift, ``ignore_index``, ``shift_labels`` and
``num_items_in_batch``, with each family's step between ``lm_head`` and the loss (a logit
scale, Gemma-2 soft-capping, a router auxiliary loss) read from the class's own ``forward``
(:mod:`losskit.integrations._forward_reader`). Without ``labels`` the stock ``forward`` runs
untouched, so ``generate()`` and evaluation are unchanged.

transformers and peft are imported only when a model is patched: ``import losskit`` stays free
of both.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, TypeVar, cast

import torch
from torch import nn

from losskit.errors import LossInputError
from losskit.functional import linear_cross_entropy
from losskit.integrations._forward_reader import ForwardPlan, attribute, read_forward

__all__ = ["patch", "unpatch", "is_patched"]

ModelT = TypeVar("ModelT", bound=nn.Module)

#: the instance attribute holding the forward that was in place before ``patch`` (None: the class's)
_INNER = "_losskit_inner_forward"
#: marks the patched forward function
_MARK = "__losskit_patched__"
_EXPECTED = (
    "expected a transformers causal LM with an output layer `lm_head` (e.g. LlamaForCausalLM, or a "
    "PeftModel wrapping one)"
)


def patch(model: ModelT) -> ModelT:
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
    is the stock ``forward`` (logits, ``generate()``).

    transformers equivalent: the model's own ``forward`` with ``labels`` (``ForCausalLMLoss``).

    Honoured as stock: the label shift, ``ignore_index`` (default -100), ``shift_labels``
    (with ``labels``), ``num_items_in_batch`` (int or tensor: the loss is then a sum divided by
    it, as the Trainer's gradient accumulation needs), ``logits_to_keep``, ``attention_mask``,
    ``return_dict``, ``lm_head.bias``, tied embeddings, and what each family does between
    ``lm_head`` and the loss, read from its ``forward``: Granite's
    ``logits / config.logits_scaling``, Cohere's ``logits * logit_scale``, Gemma 2's
    ``final_logit_softcapping``, Mixtral's ``router_aux_loss_coef * aux_loss``. The patched
    ``forward`` keeps the stock signature (the Trainer keeps ``input_ids``) and is bound to
    the model, so ``copy.deepcopy`` copies a patched model.

    Args:
        model: a transformers ``*ForCausalLM`` (or a PEFT model wrapping one: its base model,
            from ``get_base_model()``, is patched; patching before ``get_peft_model`` works too).

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
            reproduce exactly; or it has a custom ``loss_function`` / ``loss_type``.

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
    target = _causal_lm("patch", model)
    if is_patched(target):
        return model
    plan = _check_patchable("patch", target)
    inner = vars(target).get("forward")  # an instance-level forward (e.g. accelerate's hook), or None
    setattr(target, _INNER, inner)
    stock = _class_forward(target)
    target.forward = types.MethodType(_patched_forward(stock, plan), target)
    return model


def unpatch(model: ModelT) -> ModelT:
    """Undo :func:`patch`: the model's ``forward`` is again exactly what it was; returns ``model``.

    transformers equivalent: none (a model that was never patched).

    Raises:
        LossInputError: the model is not patched.

    Example:
        >>> import transformers
        >>> from losskit.integrations.transformers import patch, unpatch
        >>> config = transformers.LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
        >>> model = unpatch(patch(transformers.LlamaForCausalLM(config)))
        >>> "forward" in vars(model)
        False
    """
    target = _causal_lm("unpatch", model)
    if not is_patched(target):
        raise LossInputError(
            f"unpatch: model ({type(target).__name__}) is not patched, got its stock forward; expected a model "
            "returned by losskit.integrations.transformers.patch(model). Nothing to undo: use the model as it is."
        )
    inner = target.__dict__.pop(_INNER, None)
    del target.forward
    if inner is not None:
        target.forward = inner
    return model


def is_patched(model: nn.Module) -> bool:
    """Whether :func:`patch` was applied to ``model`` (or to the base model of a PEFT model).

    Example:
        >>> import torch
        >>> from losskit.integrations.transformers import is_patched
        >>> is_patched(torch.nn.Linear(2, 2))
        False
    """
    get_base_model = getattr(model, "get_base_model", None)
    target = get_base_model() if callable(get_base_model) else model
    forward = vars(target).get("forward") if hasattr(target, "__dict__") else None
    return getattr(getattr(forward, "__func__", None), _MARK, False) is True


# --- checks ------------------------------------------------------------------------------------


def _causal_lm(fn: str, model: object) -> nn.Module:
    """The causal LM to patch: ``model`` itself, or a PEFT model's base model."""
    if not isinstance(model, nn.Module):
        raise LossInputError(
            f"{fn}: model has type {type(model).__name__}, got a non-module; {_EXPECTED}. Pass the model "
            "from AutoModelForCausalLM.from_pretrained(...) (or its config)."
        )
    get_base_model = getattr(model, "get_base_model", None)
    if callable(get_base_model):  # peft.PeftModel
        base = get_base_model()
        if isinstance(base, nn.Module):
            model = base
    if not isinstance(getattr(model, "lm_head", None), nn.Module) or getattr(model, "config", None) is None:
        raise LossInputError(
            f"{fn}: model ({type(model).__name__}) has no output layer `lm_head` or no `config`; {_EXPECTED}. "
            "Load it with transformers.AutoModelForCausalLM, not AutoModel (which has no output layer)."
        )
    return model


def _check_patchable(fn: str, model: nn.Module) -> ForwardPlan:
    """What the stock forward does around the loss; raises when it cannot be reproduced exactly."""
    plan = read_forward(_class_forward(model))
    _check_head(fn, model)
    _check_loss_function(fn, model)
    vocab = attribute(model, plan.vocab_size)
    out_features = _head(model).weight.shape[0]
    if vocab != out_features:
        raise LossInputError(
            f"{fn}: {'.'.join(plan.vocab_size)} is {vocab} but lm_head has {out_features} outputs; expected them "
            "equal (the stock loss reshapes the logits by it). Resize the embeddings with "
            "model.resize_token_embeddings(...), which updates both."
        )
    return plan


def _head(model: nn.Module) -> nn.Linear:
    """``model.lm_head`` (checked by :func:`_check_head` to be a plain ``nn.Linear``)."""
    return cast(nn.Linear, model.lm_head)


def _check_head(fn: str, model: nn.Module) -> None:
    head = cast(nn.Module, model.lm_head)
    if not isinstance(head, nn.Linear) or type(head).forward is not nn.Linear.forward:
        raise LossInputError(
            f"{fn}: model.lm_head is a {type(head).__module__}.{type(head).__name__}; expected a plain "
            "torch.nn.Linear (the fused loss uses lm_head.weight and lm_head.bias directly). A LoRA adapter "
            "or `modules_to_save` on lm_head, or a quantized lm_head, is not supported: leave lm_head out of "
            "target_modules / modules_to_save, or use the stock model."
        )
    if hasattr(head, "_hf_hook") or "forward" in vars(head):
        raise LossInputError(
            f"{fn}: model.lm_head has a replaced forward, got {type(getattr(head, '_hf_hook', None)).__name__} "
            "(accelerate's device_map dispatch or offloading hooks lm_head); expected lm_head.forward to be "
            "nn.Linear's. Load the model on one device (no multi-device device_map, no offloading), or use the "
            "stock model."
        )
    if head._forward_hooks:
        raise LossInputError(
            f"{fn}: model.lm_head has forward hooks, got {len(head._forward_hooks)} hook(s); expected none "
            "(they would see no logits: the patched model never builds them). Remove the hooks, or use the "
            "stock model."
        )


def _check_loss_function(fn: str, model: nn.Module) -> None:
    from transformers.loss.loss_utils import ForCausalLMLoss

    loss_function = model.loss_function
    if loss_function is not ForCausalLMLoss:
        name = getattr(loss_function, "__qualname__", repr(loss_function))
        raise LossInputError(
            f"{fn}: model.loss_function is {name} (loss_type={getattr(model, 'loss_type', None)!r}); expected "
            "transformers' default ForCausalLMLoss, the only loss losskit reproduces. Remove the custom "
            "loss_function / loss_type, or use the stock model."
        )


# --- the patched forward -----------------------------------------------------------------------


def _patched_forward(stock: Any, plan: ForwardPlan) -> Any:
    """A ``forward(self, *args, **kwargs)`` with the stock signature (``functools.wraps``)."""

    @functools.wraps(stock)
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return _forward(self, plan, args, kwargs)

    setattr(forward, _MARK, True)
    return forward


def _stock(model: nn.Module) -> Any:
    inner = vars(model).get(_INNER)
    return inner if inner is not None else types.MethodType(_class_forward(model), model)


def _class_forward(model: nn.Module) -> Any:
    """The ``forward`` of the model's class (the stock one, whatever the instance holds)."""
    return type(model).forward


def _forward(model: nn.Module, plan: ForwardPlan, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    stock = _stock(model)
    try:
        bound = plan.signature.bind(*args, **kwargs)
    except TypeError:
        return stock(*args, **kwargs)  # the stock forward raises its own error
    labels = bound.arguments.get("labels")
    if labels is None:
        return stock(*args, **kwargs)
    _check_head("forward", model)
    _check_loss_function("forward", model)

    extra = dict(bound.arguments.get(plan.var_keyword, {}))
    return_dict = getattr(model.config, "return_dict", True)  # as @can_return_tuple decides
    passed = extra.pop("return_dict", return_dict)
    if passed is not None:
        return_dict = passed
    bound.arguments["labels"] = None
    bound.arguments[plan.var_keyword] = {**extra, "return_dict": True}
    with _HiddenStatesTap(_head(model)) as tap:
        out = stock(*bound.args, **bound.kwargs)
    if tap.hidden is None:
        raise LossInputError(
            f"forward: model ({type(model).__name__}) did not call lm_head, got no hidden states; expected the "
            "stock forward to project them. Patch the unwrapped causal LM."
        )
    loss = _loss(model, plan, tap.hidden, labels, extra)
    aux = getattr(out, "aux_loss", None)
    if plan.aux_coef is not None and aux is not None:
        loss = loss + attribute(model, plan.aux_coef) * aux.to(loss.device)
    values = {field.name: getattr(out, field.name) for field in dataclasses.fields(out)}
    values.update(loss=loss, logits=None)
    result = type(out)(**values)
    return result if return_dict else result.to_tuple()


def _loss(
    model: nn.Module, plan: ForwardPlan, hidden: torch.Tensor, labels: torch.Tensor, extra: dict[str, Any]
) -> torch.Tensor:
    """``ForCausalLMLoss(lm_head(hidden) -> family step, labels, **extra)``, fused."""
    ignore_index = extra.get("ignore_index", -100)
    shift_labels = extra.get("shift_labels")
    num_items_in_batch = extra.get("num_items_in_batch")
    if shift_labels is None:  # tokens < n predict n; as ForCausalLMLoss pads the labels
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    h = hidden.reshape(-1, hidden.shape[-1])
    target = shift_labels.reshape(-1).to(h.device)
    if target.numel() != h.shape[0]:
        raise LossInputError(
            f"forward: labels give {target.numel()} targets (shift_labels of shape {tuple(shift_labels.shape)}) "
            f"but the model kept {h.shape[0]} hidden states (hidden states of shape {tuple(hidden.shape)}); "
            "expected one target per kept position, as the stock loss does. With logits_to_keep, pass labels or "
            "shift_labels for the kept positions only, or logits_to_keep=0."
        )
    if plan.logit_scale is not None:  # (h W^T) * s == (h * s) W^T: scale the smaller operand
        scale = attribute(model, plan.logit_scale)
        h = h / scale if plan.divide_by_scale else h * scale
    cap = None if plan.softcap is None else attribute(model, plan.softcap)
    softcap = None if cap is None else float(cap)
    head = _head(model)
    loss: torch.Tensor = linear_cross_entropy(
        h,
        head.weight,
        target,
        linear_bias=head.bias,
        ignore_index=int(ignore_index),
        reduction="mean" if num_items_in_batch is None else "sum",
        softcap=softcap,
        dtype=torch.promote_types(h.dtype, torch.float32),  # the stock loss upcasts the logits
    )
    if num_items_in_batch is not None:  # as transformers' fixed_cross_entropy
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        loss = loss / num_items_in_batch
    return loss


class _HiddenStatesTap:
    """While active, ``lm_head`` records its input and returns an empty ``(..., 0)`` tensor in place
    of the logits (the stock forward's logit steps then run on nothing)."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head
        self.hidden: torch.Tensor | None = None

    def _record(self, hidden: torch.Tensor) -> torch.Tensor:
        self.hidden = hidden
        return hidden.new_empty(*hidden.shape[:-1], 0)

    def __enter__(self) -> _HiddenStatesTap:
        self.head.forward = self._record
        return self

    def __exit__(self, *exc: object) -> None:
        del self.head.forward
