"""losskit: PyTorch losses with exact ``torch.nn`` parity, lower memory, and guardrails.

* :mod:`losskit.functional` -- the functions, with ``torch.nn.functional``'s names and order.
* :mod:`losskit.nn` -- the modules, with ``torch.nn``'s names.
* :func:`infer_task`, :func:`loss_for`, :func:`class_weights`, :func:`pos_weight` -- choose and
  configure the loss from the targets.
* :func:`doctor` -- sanity checks of a model + loss + batch before a long run.
* :func:`set_checks` -- how much the guardrails check (``off`` / ``cheap`` / ``full`` / ``auto``).

The names below load on first use (PEP 562), so ``import losskit`` alone imports neither torch
nor anything else: the ``losskit lint`` command and ``losskit --version`` run without torch.

Example:
    >>> import losskit
    >>> losskit.nn.CrossEntropyLoss(label_smoothing=0.1).describe()
    "CrossEntropyLoss(reduction='mean', label_smoothing=0.1)"
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from losskit.errors import LossDtypeError, LossInputError, LossUsageWarning
from losskit.types import checks_from_environment

checks_from_environment(warn=True)  # a bad LOSSKIT_CHECKS warns here, once; the level falls back to "auto"

__version__ = "0.1.0"

#: public name -> (module, attribute in it; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "functional": ("losskit.functional", None),
    "nn": ("losskit.nn", None),
    "checks": ("losskit.checks", None),
    "registry": ("losskit.registry", None),
    "Task": ("losskit.types", "Task"),
    "TaskGuess": ("losskit.tasks", "TaskGuess"),
    "LabelEncoder": ("losskit.tasks", "LabelEncoder"),
    "infer_task": ("losskit.tasks", "infer_task"),
    "loss_for": ("losskit.tasks", "loss_for"),
    "class_weights": ("losskit.tasks", "class_weights"),
    "pos_weight": ("losskit.tasks", "pos_weight"),
    "doctor": ("losskit.doctor", "doctor"),
    "DoctorReport": ("losskit.doctor", "DoctorReport"),
    "set_checks": ("losskit.checks", "set_checks"),
    "get_checks": ("losskit.checks", "get_checks"),
    "compare": ("losskit.app.compare", "compare"),
}

__all__ = [
    "functional",
    "nn",
    "checks",
    "registry",
    "Task",
    "TaskGuess",
    "LabelEncoder",
    "infer_task",
    "loss_for",
    "class_weights",
    "pos_weight",
    "doctor",
    "DoctorReport",
    "set_checks",
    "get_checks",
    "compare",
    "LossInputError",
    "LossDtypeError",
    "LossUsageWarning",
    "__version__",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'losskit' has no attribute {name!r}")
    try:
        module = importlib.import_module(target[0])
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ModuleNotFoundError(
            f"losskit.{name} needs PyTorch, which is not installed; expected torch >= 2.4. Install the torch "
            "build for your platform first, or pip install 'losskit[torch]'.",
            name="torch",
        ) from exc
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from losskit import checks, functional, nn, registry
    from losskit.app.compare import compare
    from losskit.checks import get_checks, set_checks
    from losskit.doctor import DoctorReport, doctor
    from losskit.tasks import LabelEncoder, TaskGuess, class_weights, infer_task, loss_for, pos_weight
    from losskit.types import Task
