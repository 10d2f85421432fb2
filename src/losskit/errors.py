"""The exceptions and warnings losskit raises.

Every message follows one pattern so that a user can act on it without reading source code::

    "<function>: <argument> <what is wrong>, got <actual>; expected <expected>. <how to fix>."
"""

from __future__ import annotations

__all__ = ["LossInputError", "LossDtypeError", "LossUsageWarning"]


class LossInputError(ValueError):
    """Bad input to a loss: wrong shape, out-of-range value, invalid option.

    A ``ValueError``, so existing ``except ValueError`` handlers keep working.
    """


class LossDtypeError(LossInputError, TypeError):
    """Bad input whose problem is its dtype (float class indices, integer BCE targets, ...).

    Both a :class:`LossInputError` (so a ``ValueError``) and a ``TypeError``.
    """


class LossUsageWarning(UserWarning):
    """Input that can be computed but is very likely a mistake (softmax before cross-entropy, ...)."""
