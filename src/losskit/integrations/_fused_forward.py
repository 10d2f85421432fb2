"""The forward of a patched model: the stock ``forward`` with ``lm_head`` tapped, and the loss.

With ``labels`` the stock ``forward`` runs with ``labels=None`` while a forward pre-hook on
``lm_head`` (a :class:`HiddenStatesTap`) records its input -- the final hidden states, already
sliced by ``logits_to_keep`` -- and hands ``lm_head`` zero rows, so the logits are never built
(the family's logit steps then run on an empty tensor). The loss is transformers'
``ForCausalLMLoss`` computed from the recorded hidden states and ``lm_head.weight`` by
:func:`~losskit.functional.linear_cross_entropy`, with each family's step read from its
``forward`` (:mod:`losskit.integrations._forward_reader`). A forward that hands ``labels`` to a
submodule before the output layer (Gemma 3's vision-language model) gets them there through a
second pre-hook, exactly as in stock.

The hooks are installed once, when the model is patched or made, and armed for one call: nothing
about the modules changes during a call, so ``torch.compile`` (``fullgraph=True`` included)
traces the patched forward like any other.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from losskit.errors import LossInputError, LossUsageWarning
from losskit.functional import TokenLogProbs, linear_cross_entropy, linear_log_probs
from losskit.integrations._forward_reader import ForwardPlan, attribute, read_forward

__all__ = [
    "TRAINER_LOSS",
    "FusedForward",
    "HiddenStatesTap",
    "TrainerLoss",
    "check_model",
    "ensure_taps",
    "forward_chain",
    "fused_call",
    "has_taps",
    "owner",
    "install_taps",
    "output_with_statistics",
    "remove_taps",
    "stock_forward",
]

#: model.__dict__ key: the :class:`TrainerLoss` that ``patch(trainer)`` sets
TRAINER_LOSS = "_losskit_trainer_loss"
#: model.__dict__ key: the warnings already given for this model
_WARNED = "_losskit_warned"
#: attribute of a class-level patched ``forward``: the stock function it replaced
STOCK = "__losskit_stock__"


@dataclasses.dataclass(frozen=True)
class TrainerLoss:
    """What ``patch(trainer)`` hands the model: the Trainer's ``LabelSmoother`` (``epsilon`` None:
    none), its ``ignore_index``, and whether it shifts the labels (it does for the classes of
    transformers' causal-LM mapping only)."""

    epsilon: float | None = None
    ignore_index: int = -100
    shift: bool = True


def stock_forward(cls: type) -> Any:
    """The stock ``forward`` function of a model class (the one a class patch replaced, if any)."""
    forward = cls.forward  # type: ignore[attr-defined]
    return getattr(forward, STOCK, forward)


def plan_for(model: nn.Module) -> ForwardPlan:
    return read_forward(stock_forward(type(model)))


# --- the hooks ---------------------------------------------------------------------------------


class HiddenStatesTap:
    """Forward pre-hook of ``lm_head``; while armed, records its input and gives it zero rows."""

    def __init__(self) -> None:
        self.armed = False
        self.hidden: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not self.armed:
            return None
        hidden = args[0]
        self.hidden = hidden
        return (hidden[..., :0, :], *args[1:])


class LabelsToSubmodule:
    """Forward pre-hook (with keyword arguments) of the submodule the stock forward hands
    ``labels=labels``: while the tap is armed, puts the labels back in."""

    def __init__(self, tap: HiddenStatesTap) -> None:
        self.tap = tap

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if not self.tap.armed:
            return None
        return args, {**kwargs, "labels": self.tap.labels}


def _find_tap(model: nn.Module, plan: ForwardPlan) -> HiddenStatesTap | None:
    """The armed-on-demand tap of ``model.lm_head`` (and its labels hook, if the plan needs one)."""
    tap = None
    for hook in cast(nn.Module, model.lm_head)._forward_pre_hooks.values():
        if isinstance(hook, HiddenStatesTap):
            tap = hook
    if tap is None or plan.labels_to is None:
        return tap
    for hook in cast(nn.Module, attribute(model, plan.labels_to))._forward_pre_hooks.values():
        if isinstance(hook, LabelsToSubmodule) and hook.tap is tap:
            return tap
    return None


def has_taps(model: nn.Module) -> bool:
    """Whether losskit's hook is on ``model.lm_head`` (it was patched, or made by a patched class)."""
    head = getattr(model, "lm_head", None)
    return isinstance(head, nn.Module) and any(isinstance(h, HiddenStatesTap) for h in head._forward_pre_hooks.values())


def ensure_taps(model: nn.Module, plan: ForwardPlan) -> None:
    """Install the hooks unless ``model`` has them (its ``lm_head`` may have been replaced)."""
    if _find_tap(model, plan) is None:
        install_taps(model, plan)


def _remove_ours(module: nn.Module) -> None:
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, (HiddenStatesTap, LabelsToSubmodule)):
            del module._forward_pre_hooks[key]
            module._forward_pre_hooks_with_kwargs.pop(key, None)


def install_taps(model: nn.Module, plan: ForwardPlan) -> HiddenStatesTap:
    """Put a fresh tap on ``model.lm_head`` (and the labels hook on the plan's submodule)."""
    remove_taps(model, plan)
    if plan.output is not None:
        output_with_statistics(plan.output)  # now: a class cannot be made while dynamo traces
    tap = HiddenStatesTap()
    cast(nn.Module, model.lm_head).register_forward_pre_hook(tap)
    if plan.labels_to is not None:
        cast(nn.Module, attribute(model, plan.labels_to)).register_forward_pre_hook(
            LabelsToSubmodule(tap), with_kwargs=True
        )
    return tap


def remove_taps(model: nn.Module, plan: ForwardPlan | None) -> None:
    head = getattr(model, "lm_head", None)
    if isinstance(head, nn.Module):
        _remove_ours(head)
    if plan is not None and plan.labels_to is not None:
        _remove_ours(cast(nn.Module, attribute(model, plan.labels_to)))


# --- checks ------------------------------------------------------------------------------------


def check_model(fn: str, model: nn.Module, plan: ForwardPlan) -> None:
    """Raise unless ``model``'s output layer and loss are what the fused loss reproduces."""
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
    from transformers.loss.loss_utils import ForCausalLMLoss

    loss_function = model.loss_function
    if loss_function is not ForCausalLMLoss:
        name = getattr(loss_function, "__qualname__", repr(loss_function))
        raise LossInputError(
            f"{fn}: model.loss_function is {name} (loss_type={getattr(model, 'loss_type', None)!r}); expected "
            "transformers' default ForCausalLMLoss, the only loss losskit reproduces. Remove the custom "
            "loss_function / loss_type, or use the stock model."
        )
    vocab = attribute(model, plan.vocab_size)
    out_features = head.weight.shape[0]
    if vocab != out_features:
        raise LossInputError(
            f"{fn}: {'.'.join(plan.vocab_size)} is {vocab} but lm_head has {out_features} outputs; expected them "
            "equal (the stock loss reshapes the logits by it). Resize the embeddings with "
            "model.resize_token_embeddings(...), which updates both."
        )


def warn_once(model: nn.Module, key: str, message: str) -> None:
    """A :class:`~losskit.LossUsageWarning`, once per model and ``key``."""
    warned = model.__dict__.setdefault(_WARNED, set())
    if key not in warned:
        warned.add(key)
        warnings.warn(message, LossUsageWarning, stacklevel=4)


# --- the forward -------------------------------------------------------------------------------


class FusedForward:
    """``model.forward`` of a patched instance: a bound-method look-alike (``__self__``,
    ``__func__``, the stock ``__signature__``) that ``copy.deepcopy`` rebinds to the copy and
    ``pickle`` / ``torch.save`` stores as "the patched forward of this model", so a reloaded
    model is patched too. ``active=False`` (``unpatch`` of a forward another library wrapped
    since, e.g. accelerate's mixed precision) makes it the forward it replaced."""

    def __init__(self, model: nn.Module, inner: Any, plan: ForwardPlan, active: bool = True) -> None:
        self.__self__ = model
        #: the instance-level forward in place before patching (accelerate's hook...), or None
        self.inner = inner
        self.plan = plan
        self.active = active
        self.__signature__ = plan.signature
        self.__name__ = "forward"
        stock = stock_forward(type(model))
        self.__doc__ = stock.__doc__
        fused = self

        @functools.wraps(stock)  # what a bound method has: code that reads forward.__func__ (TRL, accelerate)
        def function(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
            return fused(*args, **kwargs)

        function.__losskit_fused__ = self  # type: ignore[attr-defined]  # found again under their wrappers
        self.__func__ = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        model = self.__self__
        if not self.active:
            return (
                stock_forward(type(model))(model, *args, **kwargs)
                if self.inner is None
                else self.inner(*args, **kwargs)
            )
        return fused_call(model, self.plan, self.inner, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.__self__, self.inner, self.active))

    def __repr__(self) -> str:
        return f"<losskit fused forward of {type(self.__self__).__name__}{'' if self.active else ' (unpatched)'}>"


def _rebuild(model: nn.Module, inner: Any, active: bool = True) -> FusedForward:
    """Unpickling / deep-copying a :class:`FusedForward` (``model``'s state may not be set yet)."""
    return FusedForward(model, inner, plan_for(model), active)


def forward_chain(model: nn.Module) -> list[Any]:
    """``model``'s instance-level forward and the forwards it wraps, outermost first, down to the
    first :class:`FusedForward` (accelerate's ``convert_outputs_to_fp32`` and hooks, TRL's head...)."""
    chain: list[Any] = []
    todo = [vars(model).get("forward")]
    while todo and len(chain) < 16:
        current = todo.pop(0)
        if current is None or any(current is seen for seen in chain):
            continue
        chain.append(current)
        if isinstance(current, FusedForward):
            break
        names = ("__losskit_fused__", "__func__", "__wrapped__", "model_forward", "func")
        todo.extend(getattr(current, name, None) for name in names)
    return chain


def owner(forward: Any) -> str:
    """``"trl.trainer.utils._fused_forward"``: the module and name of the function ``forward`` runs."""
    function = getattr(forward, "__func__", forward)
    code = getattr(function, "__code__", None)
    if code is None:  # a callable object
        return f"{type(function).__module__}.{type(function).__qualname__}"
    return f"{getattr(function, '__globals__', {}).get('__name__', '?')}.{code.co_name}"


def fused_call(model: nn.Module, plan: ForwardPlan, inner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The patched forward: ``inner`` (or the class's stock forward) with the fused loss."""
    run = functools.partial(stock_forward(type(model)), model) if inner is None else inner
    labels = None
    position = plan.labels_position()
    if position is not None and len(args) > position:
        labels = args[position]
        args = (*args[:position], None, *args[position + 1 :])
    elif "labels" in kwargs:
        labels = kwargs["labels"]
        kwargs = {**kwargs, "labels": None}
    if labels is None:
        if "num_items_in_batch" in kwargs and TRAINER_LOSS not in model.__dict__ and not torch.compiler.is_compiling():
            warn_once(
                model,
                "labels-popped",
                "forward: the model was called with num_items_in_batch but without labels, so it built the full "
                "logits and the fused loss was not used; expected labels. transformers.Trainer does this when "
                "`label_smoothing_factor` or `compute_loss_func` is set (it pops the labels and computes the loss "
                "from the logits). Call losskit.integrations.transformers.patch(trainer) after building the "
                "Trainer: it passes the label smoothing to the fused loss.",
            )
        return run(*args, **kwargs)
    check_model("forward", model, plan)

    return_dict = kwargs.get("return_dict")
    if return_dict is None:  # as @can_return_tuple decides
        return_dict = getattr(model.config, "return_dict", True)
    kwargs = {**kwargs, "return_dict": True}
    tap = _find_tap(model, plan)
    if tap is None:  # a model made before its class was patched, or an lm_head replaced since
        if torch.compiler.is_compiling():  # hooks cannot be installed while dynamo traces
            raise LossInputError(
                f"forward: model.lm_head ({type(model).__name__}) has no losskit hook under torch.compile, got an "
                "lm_head replaced after patching (resize_token_embeddings, set_output_embeddings) or a model made "
                "before its class was patched; expected the hook installed before compiling. Call patch(model) "
                "again, or run the model once without torch.compile, before compiling it (fullgraph=True cannot "
                "install it; without fullgraph this call runs uncompiled and installs it)."
            )
        tap = install_taps(model, plan)
    tap.labels = labels
    tap.armed = True
    try:
        out = run(*args, **kwargs)
    finally:
        tap.armed = False
        hidden, tap.hidden, tap.labels = tap.hidden, None, None
    if hidden is None:
        raise LossInputError(
            f"forward: model ({type(model).__name__}) did not call lm_head, got no hidden states; expected the "
            "stock forward to project them. Patch the unwrapped causal LM."
        )
    trainer = model.__dict__.get(TRAINER_LOSS)
    smoothing = None if trainer is None else trainer.epsilon
    loss, statistics = _loss(model, plan, hidden, labels, kwargs, None if smoothing is None else trainer)
    aux = getattr(out, "aux_loss", None)
    if plan.aux_coef is not None and aux is not None and smoothing is None:  # the LabelSmoother adds no aux loss
        loss = loss + attribute(model, plan.aux_coef) * aux.to(loss.device)
    values = {field.name: getattr(out, field.name) for field in dataclasses.fields(out)}
    values.update(loss=loss, logits=None)
    output_type = type(out)
    if statistics is not None:
        made = _WITH_STATISTICS.get(output_type)  # made when the model was patched, for its plan's output
        output_type = made if made is not None else _output_with_statistics_outside_compile(output_type)
        values["token_statistics"] = statistics
    result = output_type(**values)
    return result if return_dict else result.to_tuple()


def _loss(
    model: nn.Module,
    plan: ForwardPlan,
    hidden: torch.Tensor,
    labels: torch.Tensor,
    kwargs: dict[str, Any],
    smoother: TrainerLoss | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``ForCausalLMLoss(lm_head(hidden) -> family step, labels, **kwargs)``, fused -- or, with
    ``smoother``, the Trainer's ``LabelSmoother`` of those logits; and without grad mode (evaluation)
    the per-sequence token statistics too."""
    num_items_in_batch = kwargs.get("num_items_in_batch")
    if smoother is not None:  # transformers' LabelSmoother: its own ignore_index and shift
        ignore_index, label_smoothing = smoother.ignore_index, float(cast(float, smoother.epsilon))
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:] if smoother.shift else labels
    else:
        ignore_index, label_smoothing = kwargs.get("ignore_index", -100), 0.0
        given = kwargs.get("shift_labels")
        # tokens < n predict n; as ForCausalLMLoss pads the labels
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:] if given is None else given
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
    head = cast(nn.Linear, model.lm_head)
    accumulate = torch.promote_types(h.dtype, torch.float32)  # the stock loss upcasts the logits
    statistics = None
    loss: torch.Tensor | None = None
    if not torch.is_grad_enabled():  # evaluation: log p(target) and the argmax, in one pass
        per_token = cast(
            TokenLogProbs,
            linear_log_probs(
                h,
                head.weight,
                target,
                linear_bias=head.bias,
                ignore_index=int(ignore_index),
                softcap=softcap,
                accuracy=True,
                dtype=accumulate,
            ),
        )
        log_p, correct = per_token.log_probs, cast(torch.Tensor, per_token.correct)
        counted = target != ignore_index
        rows = hidden.shape[0] if hidden.dim() == 3 else 1
        statistics = torch.stack(
            [
                log_p.reshape(rows, -1).sum(1),
                correct.reshape(rows, -1).sum(1).to(log_p.dtype),
                counted.reshape(rows, -1).sum(1).to(log_p.dtype),
            ],
            dim=1,
        )
        if label_smoothing == 0.0:
            denominator = counted.sum().to(log_p.dtype) if num_items_in_batch is None else num_items_in_batch
            loss = -log_p.sum() / _on(denominator, log_p.device)
    if loss is None:
        loss = linear_cross_entropy(
            h,
            head.weight,
            target,
            linear_bias=head.bias,
            ignore_index=int(ignore_index),
            label_smoothing=label_smoothing,
            reduction="mean" if num_items_in_batch is None else "sum",
            softcap=softcap,
            dtype=accumulate,
        )
        if num_items_in_batch is not None:  # as transformers' fixed_cross_entropy and LabelSmoother
            loss = loss / _on(num_items_in_batch, loss.device)
    return loss, statistics


def _on(value: Any, device: torch.device) -> Any:
    return value.to(device) if torch.is_tensor(value) else value


# --- the output with token statistics ------------------------------------------------------------

_WITH_STATISTICS: dict[type, type] = {}


def output_with_statistics(output_type: type) -> type:
    """``output_type`` (a transformers ``ModelOutput`` dataclass) with one more field,
    ``token_statistics``: per sequence, the sum of ``log p(target)``, the count of tokens whose
    argmax is the target, and the count of counted tokens -- ``(batch, 3)``, float32."""
    made = _WITH_STATISTICS.get(output_type)
    if made is None:
        name = f"{output_type.__name__}WithTokenStatistics"
        taken = {t.__name__ for t in _WITH_STATISTICS.values()}
        if name in taken:  # another module's class of the same name
            name = f"{name}{len(_WITH_STATISTICS)}"
        made = dataclasses.make_dataclass(
            name,
            [("token_statistics", "torch.Tensor | None", dataclasses.field(default=None))],
            bases=(output_type,),
            namespace={"__module__": __name__, "__doc__": output_with_statistics.__doc__},
        )
        _WITH_STATISTICS[output_type] = made
    return made


#: a class cannot be made while dynamo traces: there, a graph break (once per output class)
_output_with_statistics_outside_compile = cast(
    Callable[[type], type],
    torch.compiler.disable(output_with_statistics),  # type: ignore[no-untyped-call]
)
