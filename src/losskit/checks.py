"""Guardrails: the one switch that turns input checks off or up, and the helpers every loss uses.

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

import os
import sys
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Literal, NoReturn

import torch

from losskit.errors import LossDtypeError, LossInputError, LossUsageWarning

__all__ = ["set_checks", "get_checks", "CheckMode"]

CheckMode = Literal["off", "cheap", "full", "auto"]
_MODES = ("off", "cheap", "full", "auto")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))

#: Most rows value heuristics look at (evenly spaced over the batch) ...
SAMPLE_ROWS = 64
#: ... and most elements: with a 256k vocabulary that is 4 rows, never a large copy.
SAMPLE_ELEMENTS = 2**18
#: Range checks read every element up to this size; larger tensors are sampled, because a
#: full min/max pass costs a visible share of an element-wise loss (torch's BCE kernel
#: itself rejects out-of-range values on CPU, and losskit turns that into its own error).
FULL_SCAN_ELEMENTS = 2**20


def _mode_from_env() -> str:
    value = os.environ.get("LOSSKIT_CHECKS", "auto").strip().lower() or "auto"
    if value not in _MODES:
        raise LossInputError(
            f"losskit: environment variable LOSSKIT_CHECKS is invalid, got {value!r}; "
            f"expected one of {', '.join(map(repr, _MODES))}. Fix or unset LOSSKIT_CHECKS."
        )
    return value


_state = {"mode": _mode_from_env()}


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
    if mode == "full" and _is_compiling():
        return "cheap"
    return mode


# --------------------------------------------------------------------------- message helpers


def describe(tensor: torch.Tensor) -> str:
    """``"dtype float32 and shape (8, 10)"`` -- how messages name a tensor."""
    return f"dtype {str(tensor.dtype).replace('torch.', '')} and shape {shape_str(tensor.shape)}"


def shape_str(shape: Sequence[int]) -> str:
    dims = tuple(int(d) for d in shape)
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def fail(message: str, *, dtype: bool = False) -> NoReturn:
    """Raise the error for ``message`` (a :class:`LossDtypeError` when the dtype is the problem)."""
    raise (LossDtypeError if dtype else LossInputError)(message)


def _user_stacklevel() -> int:
    """Stack level of the first frame outside losskit and ``torch.nn`` (the user's call)."""
    frame = sys._getframe(1)
    level_ = 1
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not (filename.startswith(_PACKAGE_DIR) or filename.startswith(_TORCH_DIR)):
            return level_
        frame = frame.f_back
        level_ += 1
    return 1


def warn(message: str) -> None:
    """Emit a :class:`LossUsageWarning` pointing at the user's line."""
    warnings.warn(message, LossUsageWarning, stacklevel=_user_stacklevel())


# --------------------------------------------------------------------------- shared checks


def check_reduction(fn: str, reduction: str) -> None:
    if reduction not in ("none", "mean", "sum"):
        fail(
            f"{fn}: reduction is invalid, got {reduction!r}; expected 'none', 'mean' or 'sum'. "
            "Pass one of these strings (size_average/reduce are not accepted)."
        )


def check_label_smoothing(fn: str, label_smoothing: float) -> None:
    """``label_smoothing`` must lie in ``[0, 1]``."""
    if not 0.0 <= label_smoothing <= 1.0:
        fail(
            f"{fn}: label_smoothing must lie in [0, 1], got {label_smoothing!r}; expected e.g. "
            "0.1. Pass a value between 0.0 (no smoothing) and 1.0."
        )


def check_z_loss_and_softcap(fn: str, z_loss: float, softcap: float | None) -> None:
    """``z_loss`` must be a non-negative number and ``softcap`` ``None`` or positive."""
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or not z_loss >= 0:
        fail(
            f"{fn}: z_loss must be a non-negative number, got {z_loss!r}; expected e.g. 1e-4 "
            "(PaLM's coefficient). Pass 0.0 to turn the z-loss off."
        )
    if softcap is not None and (
        isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or not softcap > 0
    ):
        fail(
            f"{fn}: softcap must be None or a positive number, got {softcap!r}; expected e.g. "
            "30.0 (Gemma 2's final-logit cap). Pass None to turn soft-capping off."
        )


def check_normalizer(fn: str, normalizer: object, reduction: str) -> None:
    """``normalizer`` (global normalization) is a positive number or 0-d tensor, with ``"mean"``."""
    if normalizer is None:
        return
    if reduction != "mean":
        fail(
            f"{fn}: normalizer was given with reduction={reduction!r}; expected reduction='mean' "
            "(the normalizer replaces the mean's denominator). Drop normalizer or use reduction='mean'."
        )
    if isinstance(normalizer, torch.Tensor):
        if normalizer.numel() != 1 or normalizer.is_complex():
            fail(
                f"{fn}: normalizer has shape {shape_str(normalizer.shape)}; expected a single positive "
                "count (a number or a 0-d tensor), e.g. from losskit.distributed.global_normalizer(...)."
            )
        if level(normalizer) == "full" and not float(normalizer) > 0:
            fail(f"{fn}: normalizer is {float(normalizer)!r}; expected a positive count of targets. Check how it was computed.")
        return
    if isinstance(normalizer, bool) or not isinstance(normalizer, (int, float)) or not 0 < normalizer < float("inf"):
        fail(
            f"{fn}: normalizer is {normalizer!r}; expected a positive finite count (a number or a 0-d "
            "tensor), e.g. from losskit.distributed.global_normalizer(...)."
        )


def check_legacy(fn: str, size_average: object, reduce: object) -> None:
    """Reject torch's deprecated ``size_average`` / ``reduce`` with the equivalent ``reduction``."""
    if size_average is None and reduce is None:
        return
    if reduce is False:
        equivalent = "none"
    elif size_average is False:
        equivalent = "sum"
    else:
        equivalent = "mean"
    fail(
        f"{fn}: size_average/reduce are deprecated and not accepted, got size_average="
        f"{size_average!r}, reduce={reduce!r}; expected reduction=. Pass reduction={equivalent!r} "
        "instead."
    )


def check_float_input(fn: str, name: str, tensor: object) -> None:
    if not isinstance(tensor, torch.Tensor):
        fail(
            f"{fn}: {name} is not a tensor, got {type(tensor).__name__}; expected a torch.Tensor. "
            f"Wrap it with torch.as_tensor({name}, dtype=torch.float32)."
        )
    if not tensor.is_floating_point():
        fail(
            f"{fn}: {name} has {describe(tensor)}; expected a floating-point tensor. "
            f"Use {name}.float().",
            dtype=True,
        )


def check_tensor(fn: str, name: str, tensor: object) -> None:
    if not isinstance(tensor, torch.Tensor):
        fail(
            f"{fn}: {name} is not a tensor, got {type(tensor).__name__}; expected a torch.Tensor. "
            f"Wrap it with torch.as_tensor({name})."
        )


def sample_rows(x: torch.Tensor, class_dim: int) -> torch.Tensor:
    """Up to :data:`SAMPLE_ROWS` (fewer for many classes) evenly spaced rows of ``x`` as a ``(rows, classes)`` matrix.

    ``x`` has the class dimension at ``class_dim`` (1 for ``(N, C, d1, ...)``, 0 for ``(C,)``).
    Only the sampled values are copied, so the cost does not depend on the size of ``x``.
    """
    if x.dim() == 1:
        return x.unsqueeze(0)
    moved = x.movedim(class_dim, -1)  # a view
    flat_rows = moved.shape[:-1].numel()
    count = max(4, min(SAMPLE_ROWS, SAMPLE_ELEMENTS // max(moved.shape[-1], 1)))
    if flat_rows <= count:
        return moved.reshape(-1, moved.shape[-1])
    index = torch.linspace(0, flat_rows - 1, count, device=x.device).long()
    # unravel the flat row index into the leading dims without materialising the reshape
    return moved[_unravel(index, moved.shape[:-1])]


def _unravel(index: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Flat indices -> one index tensor per dim (torch.unravel_index costs 36 MB and 0.3 s on
    its first call, measured with benchmarks/bench_losses.py)."""
    coords = []
    for size in reversed(tuple(shape)):
        coords.append(index % size)
        index = index // size
    return tuple(reversed(coords))


def sample_values(x: torch.Tensor, count: int = 4096) -> torch.Tensor:
    """Up to ``count`` evenly spaced elements of ``x`` as a 1-D tensor (copies only those)."""
    total = x.numel()
    if total <= count:
        return x.reshape(-1)
    index = torch.linspace(0, total - 1, count, device=x.device).long()
    return x[_unravel(index, x.shape)]


def value_range(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of ``x``: exact up to :data:`FULL_SCAN_ELEMENTS`, else over a sample."""
    x = x.detach()
    if x.numel() > FULL_SCAN_ELEMENTS:
        if x.is_contiguous():  # a strided view: no index tensor, no copy
            x = x.view(-1)[:: -(-x.numel() // SAMPLE_ELEMENTS)]
        else:
            x = sample_values(x, SAMPLE_ELEMENTS)
    lo, hi = torch.aminmax(x)
    return float(lo), float(hi)


def warn_nonfinite_result(fn: str, result: torch.Tensor, input: torch.Tensor) -> None:
    """After the fact: if the loss is NaN/Inf, count NaN/Inf in the input and say so.

    Costs one reduction over the *result* (a scalar, or one value per sample), so correct
    inputs pay almost nothing; the input is scanned only once something went wrong.
    """
    if bool(torch.isfinite(result.detach()).all()):
        return
    x = input.detach()
    n_nan = int(torch.isnan(x).sum())
    n_inf = int(torch.isinf(x).sum())
    if n_nan or n_inf:
        warn(
            f"{fn}: input contains {n_nan} NaN and {n_inf} Inf value(s) out of {x.numel()}, and "
            "the loss is not finite; expected finite values. Find where they come from with "
            "torch.autograd.set_detect_anomaly(True), lower the learning rate, or clip gradients."
        )
