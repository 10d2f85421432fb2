"""The losses, listed once: name, functional, module, task kinds, input, options, torch twin.

Everything that needs a list of losses reads it from here: the task table of
:func:`losskit.loss_for` (:data:`TASK_DEFAULTS`), ``losskit compare``'s candidates
(:data:`CANDIDATES`) and the command line's choices, :func:`losskit.doctor`'s idea of what a
loss expects as input (:attr:`LossSpec.input`), the docs' table of losses
(:func:`markdown_table`) and the tests that hold every registered loss against torch.

Adding a loss means one :class:`LossSpec` here (see CONTRIBUTING.md). A leaf module: it names
functions and classes by string and resolves them on use, so it imports no loss code.

Example:
    >>> from losskit import registry
    >>> spec = registry.get("cross_entropy")
    >>> spec.module, spec.torch_function
    ('CrossEntropyLoss', 'torch.nn.functional.cross_entropy')
    >>> spec.module_class()
    CrossEntropyLoss()
    >>> registry.TASK_DEFAULTS["binary"]
    'binary_cross_entropy_with_logits'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from losskit.errors import LossInputError
from losskit.types import Task

__all__ = [
    "InputKind",
    "LossSpec",
    "LOSSES",
    "get",
    "by_module",
    "find",
    "losses_for",
    "TASK_DEFAULTS",
    "ROBUST_REGRESSION",
    "SEGMENTATION_WITH_DICE",
    "Candidate",
    "CANDIDATES",
    "COMPARE_TASKS",
    "candidates_for",
    "default_candidates",
    "plain_candidate",
    "markdown_table",
]

#: What a loss expects as its ``input``: class logits (softmax inside), binary logits (sigmoid
#: inside), log-probabilities, probabilities, real values, hidden states (fused output layer), or
#: scores that are logits or probabilities depending on the options (Dice's ``from_logits``).
InputKind = Literal["logits", "binary_logits", "log_probs", "probs", "values", "hidden", "scores"]

_CLASSES = (Task.multiclass, Task.token_classification, Task.segmentation)
_BINARY = (Task.binary, Task.multilabel)


@dataclass(frozen=True)
class LossSpec:
    """One loss of losskit."""

    #: registry key; the functional's name when there is one
    name: str
    #: class name in :mod:`losskit.nn`
    module: str
    #: the function in :mod:`losskit.functional`, or ``None`` (a module-only combination)
    functional: str | None
    #: what ``input`` must be
    input: InputKind
    #: the task kinds it serves
    tasks: tuple[Task, ...]
    #: the options beyond ``(input, target)`` and ``reduction``, by their argument names
    options: tuple[str, ...]
    #: the torch twin, dotted (``None``: torch has no equivalent)
    torch_function: str | None
    torch_module: str | None
    #: one line for tables and help texts
    summary: str
    #: options of the function that the module does not take (as torch's module does not)
    module_lacks: tuple[str, ...] = ()

    @property
    def functional_fn(self) -> Callable[..., Any]:
        """The function ``losskit.functional.<functional>``."""
        if self.functional is None:
            raise LossInputError(
                f"registry: {self.name} has no functional form; expected a loss with one. Use "
                f"losskit.nn.{self.module} instead."
            )
        module = importlib.import_module("losskit.functional")
        fn: Callable[..., Any] = getattr(module, self.functional)
        return fn

    @property
    def module_class(self) -> type[Any]:
        """The class ``losskit.nn.<module>``."""
        cls: type[Any] = getattr(importlib.import_module("losskit.nn"), self.module)
        return cls

    @property
    def torch_equivalent(self) -> str:
        """The torch twin for tables: the function, else the module, else ``"none"``."""
        return self.torch_function or self.torch_module or "none"

    def resolve_torch(self) -> Callable[..., Any] | None:
        """The torch function of :attr:`torch_function` (``None`` when torch has none)."""
        if self.torch_function is None:
            return None
        module, _, attr = self.torch_function.rpartition(".")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return fn


def _loss(
    name: str,
    module: str,
    input: InputKind,
    tasks: tuple[Task, ...],
    options: tuple[str, ...],
    summary: str,
    *,
    functional: str | Literal[True] | None = True,
    twin: tuple[str, str] | None = None,
    module_lacks: tuple[str, ...] = (),
) -> LossSpec:
    """A :class:`LossSpec`; ``twin`` is ``(torch function, torch module)`` by their short names."""
    return LossSpec(
        name=name,
        module=module,
        functional=name if functional is True else functional,
        input=input,
        tasks=tasks,
        options=options,
        torch_function=None if twin is None else f"torch.nn.functional.{twin[0]}",
        torch_module=None if twin is None else f"torch.nn.{twin[1]}",
        summary=summary,
        module_lacks=module_lacks,
    )


#: Every loss, in the order of the docs' table.
LOSSES: tuple[LossSpec, ...] = (
    _loss(
        "mse_loss",
        "MSELoss",
        "values",
        (Task.regression,),
        ("weight",),
        "squared error",
        module_lacks=("weight",),
        twin=("mse_loss", "MSELoss"),
    ),
    _loss(
        "l1_loss",
        "L1Loss",
        "values",
        (Task.regression,),
        ("weight",),
        "absolute error",
        module_lacks=("weight",),
        twin=("l1_loss", "L1Loss"),
    ),
    _loss(
        "huber_loss",
        "HuberLoss",
        "values",
        (Task.regression,),
        ("delta", "weight"),
        "quadratic near 0, linear beyond delta: robust to outliers",
        module_lacks=("weight",),
        twin=("huber_loss", "HuberLoss"),
    ),
    _loss(
        "smooth_l1_loss",
        "SmoothL1Loss",
        "values",
        (Task.regression,),
        ("beta",),
        "Huber divided by beta",
        twin=("smooth_l1_loss", "SmoothL1Loss"),
    ),
    _loss(
        "binary_cross_entropy",
        "BCELoss",
        "probs",
        _BINARY,
        ("weight",),
        "binary cross-entropy on probabilities",
        twin=("binary_cross_entropy", "BCELoss"),
    ),
    _loss(
        "binary_cross_entropy_with_logits",
        "BCEWithLogitsLoss",
        "binary_logits",
        _BINARY,
        ("weight", "pos_weight", "label_smoothing"),
        "sigmoid + binary cross-entropy, stable",
        twin=("binary_cross_entropy_with_logits", "BCEWithLogitsLoss"),
    ),
    _loss(
        "cross_entropy",
        "CrossEntropyLoss",
        "logits",
        _CLASSES,
        ("weight", "ignore_index", "label_smoothing", "z_loss", "softcap", "normalizer"),
        "softmax cross-entropy, class ids or probabilities",
        twin=("cross_entropy", "CrossEntropyLoss"),
    ),
    _loss(
        "nll_loss",
        "NLLLoss",
        "log_probs",
        _CLASSES,
        ("weight", "ignore_index"),
        "negative log-likelihood of log-probabilities",
        twin=("nll_loss", "NLLLoss"),
    ),
    _loss(
        "linear_cross_entropy",
        "LinearCrossEntropyLoss",
        "hidden",
        (Task.multiclass, Task.token_classification),
        ("linear_bias", "weight", "ignore_index", "label_smoothing", "z_loss", "softcap", "chunk_size", "normalizer"),
        "output layer + cross-entropy, never holding the logits",
        module_lacks=("linear_bias",),
        twin=("linear_cross_entropy", "LinearCrossEntropyLoss"),
    ),
    _loss(
        "sigmoid_focal_loss",
        "SigmoidFocalLoss",
        "binary_logits",
        _BINARY,
        ("alpha", "gamma"),
        "focal loss for binary / multi-label targets (Lin et al. 2017)",
    ),
    _loss(
        "focal_loss",
        "FocalLoss",
        "logits",
        _CLASSES,
        ("weight", "gamma", "ignore_index"),
        "softmax focal loss: down-weights easy examples",
    ),
    _loss(
        "poly1_cross_entropy",
        "Poly1CrossEntropyLoss",
        "logits",
        _CLASSES,
        ("weight", "epsilon", "ignore_index", "label_smoothing"),
        "cross-entropy + epsilon (1 - p_t) (Leng et al. 2022)",
    ),
    _loss(
        "dice_loss",
        "DiceLoss",
        "scores",
        (Task.segmentation,),
        ("mode", "weight", "from_logits", "smooth", "eps", "ignore_index", "log_loss"),
        "soft Dice for segmentation",
    ),
    _loss(
        "tversky_loss",
        "TverskyLoss",
        "scores",
        (Task.segmentation,),
        ("mode", "alpha", "beta", "weight", "from_logits", "smooth", "eps", "ignore_index", "log_loss"),
        "Tversky: Dice with separate false-positive / false-negative weights",
    ),
    _loss(
        "cross_entropy_dice",
        "CrossEntropyDiceLoss",
        "logits",
        (Task.segmentation,),
        ("weight", "ignore_index", "label_smoothing", "dice_weight", "smooth"),
        "cross-entropy + Dice (nnU-Net's objective)",
        functional=None,
    ),
)

_BY_NAME: dict[str, LossSpec] = {spec.name: spec for spec in LOSSES}
_BY_MODULE: dict[str, LossSpec] = {spec.module: spec for spec in LOSSES}


def get(name: str) -> LossSpec:
    """The loss registered as ``name``; a clear error listing the names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise LossInputError(
            f"registry: no loss named {name!r}; expected one of {', '.join(_BY_NAME)}. See losskit.registry.LOSSES."
        ) from None


def by_module(name: str) -> LossSpec | None:
    """The loss whose module class (losskit's, or its torch twin) is called ``name``."""
    return _BY_MODULE.get(name)


def find(loss_fn: object) -> LossSpec | None:
    """The registered loss behind ``loss_fn``: a losskit or torch module (by class name) or a
    function of :mod:`losskit.functional` / :mod:`torch.nn.functional` (by name)."""
    is_module = hasattr(loss_fn, "forward")
    name = type(loss_fn).__name__ if is_module else getattr(loss_fn, "__name__", type(loss_fn).__name__)
    return _BY_MODULE.get(name) or _BY_NAME.get(name)


def losses_for(task: Task | str) -> list[LossSpec]:
    """The losses that serve ``task``, in table order."""
    the_task = Task.parse(task)
    return [spec for spec in LOSSES if the_task in spec.tasks]


#: The task table: the loss :func:`losskit.loss_for` configures for each task.
TASK_DEFAULTS: Mapping[Task, str] = {
    Task.regression: "mse_loss",
    Task.binary: "binary_cross_entropy_with_logits",
    Task.multiclass: "cross_entropy",
    Task.multilabel: "binary_cross_entropy_with_logits",
    Task.token_classification: "cross_entropy",
    Task.segmentation: "cross_entropy",
}
#: regression with outliers (or ``robust=True``) switches to this loss
ROBUST_REGRESSION = "huber_loss"
#: segmentation with ``dice=True``
SEGMENTATION_WITH_DICE = "cross_entropy_dice"


@dataclass(frozen=True)
class Candidate:
    """A configured variant of a registered loss that ``losskit compare`` can train with.

    ``options`` are fixed constructor arguments; ``fitted`` names the arguments computed from
    the training targets: ``"weight"`` (:func:`losskit.class_weights`), ``"pos_weight"``
    (:func:`losskit.pos_weight`) or ``"delta"`` (Huber's delta as :func:`losskit.loss_for`
    sizes it).
    """

    name: str
    loss: str
    tasks: tuple[Task, ...]
    options: Mapping[str, object] = field(default_factory=dict)
    fitted: tuple[str, ...] = ()
    #: the tasks whose default set of candidates include it
    default_for: tuple[Task, ...] = ()
    #: the plain loss of its tasks: the one every other candidate is tested against
    plain: bool = False
    #: the candidate this one is the same model as when its fitted option is neutral (all class
    #: weights equal, a ``pos_weight`` of 1): then it is reported as such and not trained
    same_as: str | None = None

    @property
    def spec(self) -> LossSpec:
        return get(self.loss)


#: label smoothing of the ``+label_smoothing`` candidates
LABEL_SMOOTHING = 0.1
#: focal loss settings (Lin et al. 2017 defaults)
FOCAL_GAMMA, FOCAL_ALPHA = 2.0, 0.25

_REG = (Task.regression,)
_MC = (Task.multiclass,)
_SEG = (Task.segmentation,)
#: Tversky's weights of false positives (alpha) and false negatives (beta) for the compare
#: candidate: missing a small structure costs more than a stray pixel (Salehi et al. 2017)
TVERSKY_ALPHA, TVERSKY_BETA = 0.3, 0.7

#: ``losskit compare``'s candidates, in the order they are listed and trained.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("bce_with_logits", "binary_cross_entropy_with_logits", _BINARY, default_for=_BINARY, plain=True),
    Candidate(
        "bce_with_logits+pos_weight",
        "binary_cross_entropy_with_logits",
        _BINARY,
        fitted=("pos_weight",),
        default_for=_BINARY,
        same_as="bce_with_logits",
    ),
    Candidate(
        "bce_with_logits+label_smoothing",
        "binary_cross_entropy_with_logits",
        _BINARY,
        {"label_smoothing": LABEL_SMOOTHING},
    ),
    Candidate(
        "focal", "sigmoid_focal_loss", _BINARY, {"alpha": FOCAL_ALPHA, "gamma": FOCAL_GAMMA}, default_for=_BINARY
    ),
    Candidate("cross_entropy", "cross_entropy", _MC, default_for=_MC, plain=True),
    Candidate(
        "cross_entropy+label_smoothing", "cross_entropy", _MC, {"label_smoothing": LABEL_SMOOTHING}, default_for=_MC
    ),
    Candidate(
        "cross_entropy+class_weights",
        "cross_entropy",
        _MC,
        fitted=("weight",),
        default_for=_MC,
        same_as="cross_entropy",
    ),
    Candidate("focal", "focal_loss", _MC, {"gamma": FOCAL_GAMMA}, default_for=_MC),
    Candidate("poly1", "poly1_cross_entropy", _MC, {"epsilon": 1.0}),
    Candidate("mse", "mse_loss", _REG, default_for=_REG, plain=True),
    Candidate("l1", "l1_loss", _REG, default_for=_REG),
    # Huber's delta as loss_for sizes it (1.345 robust std of the standardized targets);
    # smooth-L1 keeps torch's beta=1 (one std): with delta = beta they would be the same loss up
    # to a factor
    Candidate("huber", "huber_loss", _REG, fitted=("delta",), default_for=_REG),
    Candidate("smooth_l1", "smooth_l1_loss", _REG, {"beta": 1.0}, default_for=_REG),
    # segmentation: every candidate also gets the data's ignore value (``ignore_index``); class
    # weights come from the pixel frequencies of the fold's training masks
    Candidate("cross_entropy", "cross_entropy", _SEG, default_for=_SEG, plain=True),
    Candidate(
        "cross_entropy+class_weights",
        "cross_entropy",
        _SEG,
        fitted=("weight",),
        default_for=_SEG,
        same_as="cross_entropy",
    ),
    Candidate("dice", "dice_loss", _SEG, {"mode": "multiclass"}, default_for=_SEG),
    Candidate("cross_entropy+dice", SEGMENTATION_WITH_DICE, _SEG, default_for=_SEG),
    Candidate("focal", "focal_loss", _SEG, {"gamma": FOCAL_GAMMA}, default_for=_SEG),
    Candidate(
        "tversky",
        "tversky_loss",
        _SEG,
        {"mode": "multiclass", "alpha": TVERSKY_ALPHA, "beta": TVERSKY_BETA},
        default_for=_SEG,
    ),
)

#: the tasks ``losskit compare`` trains for (those with candidates)
COMPARE_TASKS: tuple[Task, ...] = tuple(t for t in Task if any(t in c.tasks for c in CANDIDATES))


def candidates_for(task: Task | str) -> dict[str, Candidate]:
    """``losskit compare``'s candidates for ``task`` by name, in order."""
    the_task = Task.parse(task)
    return {c.name: c for c in CANDIDATES if the_task in c.tasks}


def plain_candidate(task: Task | str) -> str:
    """The plain loss of ``task`` that ``losskit compare`` tests every other candidate against."""
    the_task = Task.parse(task)
    return next(c.name for c in CANDIDATES if the_task in c.tasks and c.plain)


def default_candidates(task: Task | str) -> tuple[str, ...]:
    """The names ``losskit compare`` trains for ``task`` when ``--losses`` is not given."""
    the_task = Task.parse(task)
    return tuple(c.name for c in CANDIDATES if the_task in c.default_for)


def markdown_table() -> str:
    """The table of losses for the docs: name, module, input, tasks, torch equivalent."""
    rows = [
        "| functional | module | input | tasks | torch equivalent | what it is |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for spec in LOSSES:
        fn = f"`{spec.functional}`" if spec.functional else "--"
        tasks = ", ".join(t.value for t in spec.tasks)
        torch_eq = f"`{spec.torch_equivalent}`" if spec.torch_equivalent != "none" else "none"
        rows.append(f"| {fn} | `{spec.module}` | {spec.input} | {tasks} | {torch_eq} | {spec.summary} |")
    return "\n".join(rows) + "\n"
