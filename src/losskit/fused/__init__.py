"""Deprecated: the autograd Functions moved to :mod:`losskit.autograd`.

``losskit.fused.linear_cross_entropy`` is the very module ``losskit.autograd.linear_cross_entropy``
(setting ``CHUNK_BYTES`` through either name changes the same budget). This alias goes away in
losskit 0.3.
"""

import sys
import warnings

from losskit.autograd import linear_cross_entropy

warnings.warn(
    "losskit.fused was renamed losskit.autograd; import losskit.autograd.linear_cross_entropy instead "
    "(the alias goes away in losskit 0.3).",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[f"{__name__}.linear_cross_entropy"] = linear_cross_entropy

__all__ = ["linear_cross_entropy"]
