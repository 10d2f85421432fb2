"""losskit: PyTorch losses with exact ``torch.nn`` parity, lower memory, and guardrails.

* :mod:`losskit.functional` -- the functions, with ``torch.nn.functional``'s names and order.
* :mod:`losskit.nn` -- the modules, with ``torch.nn``'s names.
* :func:`infer_task`, :func:`loss_for`, :func:`class_weights`, :func:`pos_weight` -- choose and
  configure the loss from the targets.
* :func:`doctor` -- sanity checks of a model + loss + batch before a long run.
* :func:`set_checks` -- how much the guardrails check (``off`` / ``cheap`` / ``full`` / ``auto``).
"""

from losskit import functional, nn
from losskit.checks import get_checks, set_checks
from losskit.doctor import DoctorReport, doctor
from losskit.errors import LossDtypeError, LossInputError, LossUsageWarning
from losskit.tasks import LabelEncoder, Task, TaskGuess, class_weights, infer_task, loss_for, pos_weight

__version__ = "0.1.0"

__all__ = [
    "functional",
    "nn",
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
    "LossInputError",
    "LossDtypeError",
    "LossUsageWarning",
    "__version__",
]
