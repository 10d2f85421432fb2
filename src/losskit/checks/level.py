"""The check level: the one switch that turns input checks off or up (``set_checks``, ``LOSSKIT_CHECKS``).

Three levels:

* ``"off"``   -- no checks at all; losskit behaves like the bare computation.
* ``"cheap"`` -- arguments, shapes and dtypes only. Never reads tensor values, so it never
  synchronises an accelerator with the host and never breaks a ``torch.compile`` graph.
* ``"full"``  -- also looks at values (class ids in range, probabilities in ``[0, 1]``, softmax
  output given to a loss that wants logits, ...). Value heuristics look at a fixed-size sample of
  rows, and a NaN/Inf *result* is diagnosed after the fact, so the cost does not grow with the
  size of the input.

The default (``"auto"``) is ``"full"`` for CPU tensors and ``"cheap"`` for tensors on any other
device (CUDA, MPS, XPU, ...), where reading a value costs a host-device synchronisation. Inside
``torch.compile`` value checks are skipped, so ``fullgraph=True`` works with the default.
Choose a level with :func:`set_checks` (also a context manager) or the environment variable
``LOSSKIT_CHECKS`` (read when losskit is imported).
"""

from __future__ import annotations

from types import TracebackType

import torch

from losskit._core.cross_entropy import functorch_active
from losskit.errors import LossInputError
from losskit.types import CHECK_MODES, CheckMode, checks_from_environment

__all__ = ["CheckMode", "set_checks", "get_checks", "level"]

_MODES = CHECK_MODES

_state = {"mode": checks_from_environment()}  # losskit/__init__ warned if it is invalid


class _ChecksContext:
    """Returned by :func:`set_checks`; restores the previous level when used as a context manager."""

    def __init__(self, previous: str) -> None:
        self._previous = previous

    def __enter__(self) -> _ChecksContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _state["mode"] = self._previous

    def __repr__(self) -> str:
        return f"<losskit checks {_state['mode']!r} (previously {self._previous!r})>"


def set_checks(mode: CheckMode) -> _ChecksContext:
    """Set how much losskit checks its inputs: ``"off"``, ``"cheap"``, ``"full"`` or ``"auto"``.

    Works as a plain call (the level stays until changed) and as a context manager (the previous
    level comes back on exit)::

        losskit.set_checks("off")            # from now on
        with losskit.set_checks("full"):     # only inside the block
            loss = losskit.functional.cross_entropy(logits, target)

    ``"auto"`` (the default) means ``"full"`` on CPU and ``"cheap"`` on accelerators.

    Raises:
        LossInputError: ``mode`` is not one of the four levels.
    """
    if mode not in _MODES:
        raise LossInputError(
            f"set_checks: mode is invalid, got {mode!r}; expected one of "
            f"{', '.join(map(repr, _MODES))}. Pass one of these strings."
        )
    previous = _state["mode"]
    _state["mode"] = mode
    return _ChecksContext(previous)


def get_checks() -> str:
    """Return the level set by :func:`set_checks` or ``LOSSKIT_CHECKS`` (``"auto"`` by default)."""
    return _state["mode"]


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    return False  # pragma: no cover - torch < 2.3


def level(tensor: torch.Tensor) -> str:
    """The effective level for a call whose main input is ``tensor``: ``off``, ``cheap`` or ``full``."""
    mode = _state["mode"]
    if mode == "off":
        return "off"
    if mode == "auto":
        mode = "full" if tensor.device.type == "cpu" else "cheap"
    if mode == "full" and (_is_compiling() or functorch_active(tensor)):
        return "cheap"  # value checks read numbers, which torch.compile and torch.func cannot give
    return mode
