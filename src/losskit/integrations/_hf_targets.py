"""What ``patch`` can be given besides a model: a model class, an Auto class, a Trainer -- and
the forwards other libraries install (TRL's fused LM head), which losskit recognises but never
touches.

* A **model class** (``patch(LlamaForCausalLM)``): its ``forward`` is replaced by the fused one
  (the plan read once, from the stock ``forward``) and its ``__init__`` also installs the
  ``lm_head`` tap, so every model made afterwards -- ``from_pretrained``, ``from_config``, a
  pickled model loaded again -- is fused, also under ``torch.compile(fullgraph=True)``.
* An **Auto class** (``patch(AutoModelForCausalLM)``): its ``from_pretrained`` / ``from_config``
  patch each model they return; a model losskit cannot patch is returned stock, with a warning.
* A **Trainer** (``patch(trainer)``): its model is patched and the Trainer's own loss options are
  handed to the fused loss (``label_smoothing_factor``: the ``LabelSmoother``'s value), or named
  in a warning when they cannot be (see :func:`patch_trainer`).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from typing import Any

from torch import nn

from losskit.errors import LossInputError, LossUsageWarning
from losskit.integrations._forward_reader import read_forward
from losskit.integrations._fused_forward import (
    STOCK,
    TRAINER_LOSS,
    FusedForward,
    TrainerLoss,
    forward_chain,
    fused_call,
    install_taps,
    owner,
    stock_forward,
)

__all__ = [
    "AUTO_CLASSES",
    "foreign_forward",
    "fused_forward",
    "is_auto_class",
    "is_auto_patched",
    "is_class_patched",
    "is_trainer",
    "is_trainer_patched",
    "patch_auto_class",
    "patch_class",
    "patch_trainer",
    "trl_forward",
    "trl_refusal",
    "unpatch_auto_class",
    "unpatch_class",
    "unpatch_trainer",
]

#: the Auto classes whose models have an ``lm_head`` and a causal-LM loss
AUTO_CLASSES = ("AutoModelForCausalLM", "AutoModelForImageTextToText", "AutoModelForMultimodalLM")
_OWN = "_losskit_stock_methods"
_AUTO = "_losskit_stock_constructors"
_TRAINER = "_losskit_trainer_state"
_ABSENT = object()


# --- forwards losskit did not install ------------------------------------------------------------


def foreign_forward(model: nn.Module) -> str | None:
    """Where ``model``'s instance-level ``forward`` comes from (``"accelerate.utils.operations.forward"``),
    or None when it has none."""
    chain = forward_chain(model)
    return owner(chain[0]) if chain else None


def fused_forward(model: nn.Module) -> FusedForward | None:
    """losskit's active forward of ``model`` -- its instance forward, or under wrappers another
    library added since (accelerate) -- unless TRL's fused head sits above it."""
    for forward in forward_chain(model):
        if owner(forward).startswith("trl."):
            return None
        if isinstance(forward, FusedForward):
            return forward if forward.active else None
    return None


def trl_forward(model: nn.Module) -> str | None:
    """The TRL function installed as ``model.forward`` (its fused LM head, maybe under accelerate's
    wrappers), or None."""
    for forward in forward_chain(model):
        if isinstance(forward, FusedForward):
            return None
        if owner(forward).startswith("trl."):
            return owner(forward)
    return None


def trl_refusal(fn: str, owner: str) -> LossInputError:
    return LossInputError(
        f"{fn}: model.forward is TRL's own loss head ({owner}, installed by TRL's trainer: its fused LM head from "
        "TRL 1.14, its chunked loss for loss_type='chunked_nll' in 1.7-1.13), not losskit's; expected a model "
        "losskit can patch. It already computes the loss without building the logits: there is nothing to patch, "
        "train with TRL as it is."
    )


# --- model classes -------------------------------------------------------------------------------


def is_class_patched(cls: type) -> bool:
    return getattr(getattr(cls, "forward", None), STOCK, None) is not None


def patch_class(cls: type[nn.Module]) -> None:
    """Replace ``cls.forward`` by the fused forward and make ``cls.__init__`` install the tap."""
    if is_class_patched(cls):
        return
    stock = stock_forward(cls)
    plan = read_forward(stock)  # refuses a forward it cannot reproduce, now rather than at training

    @functools.wraps(stock)
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return fused_call(self, plan, None, args, kwargs)

    setattr(forward, STOCK, stock)
    own = {name: vars(cls).get(name, _ABSENT) for name in ("forward", "__init__")}  # restored by unpatch
    stock_init = cls.__init__

    @functools.wraps(stock_init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        stock_init(self, *args, **kwargs)
        if type(self).forward is forward and isinstance(getattr(self, "lm_head", None), nn.Linear):
            with contextlib.suppress(AttributeError):  # no submodule to hand labels to: the forward says so
                install_taps(self, plan)

    setattr(cls, _OWN, own)
    setattr(cls, "forward", forward)  # noqa: B010 (mypy: a method cannot be assigned)
    setattr(cls, "__init__", __init__)  # noqa: B010


def unpatch_class(cls: type[nn.Module]) -> None:
    if _OWN not in vars(cls):  # patched through a base class
        base = next(c for c in cls.__mro__[1:] if _OWN in vars(c))
        raise LossInputError(
            f"unpatch: {cls.__name__} is patched through its base class {base.__name__}, got a class that was not "
            f"patched itself; expected a class given to patch(cls). Call unpatch({base.__name__})."
        )
    own = vars(cls)[_OWN]
    delattr(cls, _OWN)
    for name, value in own.items():  # as the class had them: its own, or inherited
        if value is _ABSENT:
            delattr(cls, name)
        else:
            setattr(cls, name, value)


# --- Auto classes --------------------------------------------------------------------------------


def is_auto_class(cls: type) -> bool:
    factory = sys.modules.get("transformers.models.auto.auto_factory")
    base = getattr(factory, "_BaseAutoModelClass", None)
    return base is not None and issubclass(cls, base)


def is_auto_patched(cls: type) -> bool:
    return _AUTO in vars(cls)


def patch_auto_class(cls: type, patch_model: Any) -> None:
    """Make ``cls.from_pretrained`` / ``cls.from_config`` patch every model they return."""
    if cls.__name__ not in AUTO_CLASSES:
        raise LossInputError(
            f"patch: model is the Auto class {cls.__name__}, whose models have no causal-LM loss; expected one of "
            f"{', '.join(AUTO_CLASSES)}. Patch one of those, or the model class itself."
        )
    if is_auto_patched(cls):
        return
    originals = {name: vars(cls).get(name, _ABSENT) for name in ("from_pretrained", "from_config")}
    for name in originals:
        made_by = getattr(cls, name)  # bound to cls

        def construct(_cls: type, /, *args: Any, _made_by: Any = made_by, _name: str = name, **kwargs: Any) -> Any:
            model = _made_by(*args, **kwargs)
            try:
                patch_model(model)
            except LossInputError as error:
                warnings.warn(
                    f"patch({cls.__name__}): {cls.__name__}.{_name} made a {type(model).__name__}, which losskit "
                    f"cannot patch, so it is the stock model. {error}",
                    LossUsageWarning,
                    stacklevel=2,
                )
            return model

        functools.update_wrapper(construct, made_by)
        setattr(cls, name, classmethod(construct))
    setattr(cls, _AUTO, originals)


def unpatch_auto_class(cls: type) -> None:
    for name, original in vars(cls)[_AUTO].items():
        if original is _ABSENT:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    delattr(cls, _AUTO)


# --- Trainers ------------------------------------------------------------------------------------


def is_trainer(obj: object) -> bool:
    module = sys.modules.get("transformers.trainer")
    trainer = getattr(module, "Trainer", None)
    return trainer is not None and isinstance(obj, trainer)


def is_trainer_patched(trainer: object) -> bool:
    return _TRAINER in vars(trainer)


def _is_trl(trainer: object) -> bool:
    return any(c.__module__.split(".")[0] == "trl" for c in type(trainer).__mro__)


def patch_trainer(trainer: Any, patch_model: Any, causal_lm: Any) -> None:
    """Patch the Trainer's model and take over the Trainer's loss options.

    * ``label_smoothing_factor``: the Trainer's ``LabelSmoother`` is switched off, so the labels
      reach the model, whose fused loss smooths them the way the ``LabelSmoother`` does (its
      epsilon and ``ignore_index``, labels shifted for causal-LM classes only, the sum divided by
      ``num_items_in_batch`` or the mean, no router auxiliary loss).
    * ``model_init``: each model it makes (``train()`` calls it) is patched the same way.
    * Warned about, once each, because they need the logits: ``compute_loss_func``,
      ``compute_metrics`` (other than :func:`token_metrics`) and ``preprocess_logits_for_metrics``.
    """
    if _is_trl(trainer):
        owner = trl_forward(causal_lm(trainer.model))
        if owner is not None:
            raise trl_refusal("patch", owner)
        import trl

        raise LossInputError(
            f"patch: trainer is TRL {getattr(trl, '__version__', '?')}'s {type(trainer).__name__}, without TRL's "
            "own loss head; expected a transformers.Trainer. This trainer reads outputs.logits (its loss, entropy, "
            "token accuracy), which a patched model does not return: use TRL >= 1.14 (or loss_type='chunked_nll' "
            "in 1.7-1.13), which avoids the logits itself, and do not patch."
        )
    if _TRAINER in vars(trainer):
        return
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    patch_model(trainer.model)  # raises before anything of the Trainer changes
    smoother = trainer.label_smoother
    state: dict[str, Any] = {"label_smoother": smoother, "model_init": trainer.model_init}
    settings = TrainerLoss()
    if trainer.compute_loss_func is not None:
        _warn_option(
            "compute_loss_func",
            "the Trainer pops the labels and hands it the model's outputs, so the model builds the logits for it "
            "and the fused loss is not used (no memory saved). Compute the loss in the model (drop "
            "compute_loss_func), or use the stock model",
        )
    elif smoother is not None:
        target = causal_lm(trainer.model)
        classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
        settings = TrainerLoss(float(smoother.epsilon), int(smoother.ignore_index), target._get_name() in classes)
        trainer.label_smoother = None  # so the labels reach the model
    metrics = trainer.compute_metrics
    if metrics is not None and getattr(metrics, "__name__", None) != "token_metrics":
        _warn_option(
            "compute_metrics",
            "during evaluation it receives losskit's token statistics (per sequence: sum of log p, correct "
            "tokens, counted tokens) instead of logits. Use compute_metrics=losskit.integrations.transformers."
            "token_metrics (token accuracy, perplexity), or unpatch(trainer) before evaluating",
        )
    if trainer.preprocess_logits_for_metrics is not None:
        _warn_option(
            "preprocess_logits_for_metrics",
            "it receives losskit's token statistics instead of logits. Drop it and use "
            "compute_metrics=losskit.integrations.transformers.token_metrics",
        )

    def configure(model: nn.Module) -> nn.Module:
        patch_model(model)
        causal_lm(model).__dict__[TRAINER_LOSS] = settings
        return model

    configure(trainer.model)
    if trainer.model_init is not None:
        model_init = trainer.model_init
        trainer.model_init = functools.wraps(model_init)(lambda *args: configure(model_init(*args)))
    trainer.__dict__[_TRAINER] = state


def unpatch_trainer(trainer: Any, unpatch_model: Any, causal_lm: Any) -> None:
    state = trainer.__dict__.pop(_TRAINER, None)
    if state is None:
        raise LossInputError(
            f"unpatch: trainer ({type(trainer).__name__}) is not patched; expected a Trainer given to "
            "losskit.integrations.transformers.patch(trainer). Nothing to undo."
        )
    trainer.label_smoother = state["label_smoother"]
    trainer.model_init = state["model_init"]
    causal_lm(trainer.model).__dict__.pop(TRAINER_LOSS, None)
    if not is_class_patched(type(causal_lm(trainer.model))):
        unpatch_model(trainer.model)


def _warn_option(name: str, why: str) -> None:
    warnings.warn(
        f"patch: the Trainer's {name} cannot be honoured by the fused loss: {why}.", LossUsageWarning, stacklevel=4
    )
