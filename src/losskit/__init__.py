"""losskit: PyTorch losses with exact ``torch.nn`` parity, lower memory, and guardrails.

* :mod:`losskit.functional` -- the functions, with ``torch.nn.functional``'s names and order.
* :mod:`losskit.nn` -- the modules, with ``torch.nn``'s names.
* :func:`set_checks` -- how much the guardrails check (``off`` / ``cheap`` / ``full`` / ``auto``).
"""

from losskit import functional, nn
from losskit.checks import get_checks, set_checks
from losskit.errors import LossDtypeError, LossInputError, LossUsageWarning

__version__ = "0.1.0"

__all__ = [
    "functional",
    "nn",
    "set_checks",
    "get_checks",
    "LossInputError",
    "LossDtypeError",
    "LossUsageWarning",
    "__version__",
]
