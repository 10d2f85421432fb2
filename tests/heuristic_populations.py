"""Generated populations for measuring the value heuristics of the guardrails (issue 15, item 9):
for each heuristic a *mistake* population (it should fire) and *legitimate* populations (it
must stay quiet), by size and dtype. ``rate(...)`` runs a heuristic through the public function
with the default ("full") checks and counts how often it fires.

Used by tests/test_heuristic_rates.py (asserted, small trial counts) and by
benchmarks/bench_heuristics.py (the table in docs/guardrails.md, large trial counts).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF


@dataclass(frozen=True)
class Population:
    """One generated population: ``make(n, dtype, g)`` gives the arguments of ``call``."""

    heuristic: str
    kind: str  # "mistake" or "legitimate"
    name: str
    make: Callable[[int, torch.dtype, torch.Generator], tuple[torch.Tensor, ...]]
    call: Callable[..., object]


def _fires(call: Callable[..., object], args: tuple[torch.Tensor, ...]) -> bool:
    """Whether the guardrail spoke: a LossUsageWarning, or a LossInputError for the error rules."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call(*args)
        except losskit.LossInputError:
            return True
    return any(issubclass(w.category, losskit.LossUsageWarning) for w in caught)


def rate(pop: Population, n: int, dtype: torch.dtype, trials: int, seed: int = 0) -> float:
    """The share of ``trials`` draws of size ``n`` on which the heuristic fires."""
    g = torch.Generator().manual_seed(seed)
    with losskit.set_checks("full"):
        hits = sum(_fires(pop.call, pop.make(n, dtype, g)) for _ in range(trials))
    return hits / trials


def _randn(shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator, sd: float = 1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=g) * sd).to(dtype)


C = 10  # classes of the softmax populations; rows = max(1, n // C) so that n counts elements


def _ce_rows(n: int) -> int:
    return max(1, n // C)


def _ids(rows: int, g: torch.Generator, c: int = C) -> torch.Tensor:
    return torch.randint(0, c, (rows,), generator=g)


def _bce(x: torch.Tensor, y: torch.Tensor) -> object:
    return LF.binary_cross_entropy_with_logits(x, y)


POPULATIONS: list[Population] = [
    # softmax output given to cross_entropy
    Population(
        "softmax before cross_entropy",
        "mistake",
        "softmax(logits, sd 1)",
        lambda n, dt, g: (torch.softmax(_randn((_ce_rows(n), C), torch.float32, g), 1).to(dt), _ids(_ce_rows(n), g)),
        LF.cross_entropy,
    ),
    Population(
        "softmax before cross_entropy",
        "mistake",
        "softmax(logits, sd 5)",
        lambda n, dt, g: (
            torch.softmax(_randn((_ce_rows(n), C), torch.float32, g, 5.0), 1).to(dt),
            _ids(_ce_rows(n), g),
        ),
        LF.cross_entropy,
    ),
    Population(
        "softmax before cross_entropy",
        "legitimate",
        "logits, sd 0.1 (init)",
        lambda n, dt, g: (_randn((_ce_rows(n), C), dt, g, 0.1), _ids(_ce_rows(n), g)),
        LF.cross_entropy,
    ),
    Population(
        "softmax before cross_entropy",
        "legitimate",
        "logits, sd 1",
        lambda n, dt, g: (_randn((_ce_rows(n), C), dt, g), _ids(_ce_rows(n), g)),
        LF.cross_entropy,
    ),
    # sigmoid output given to binary_cross_entropy_with_logits
    Population(
        "sigmoid before BCE-with-logits",
        "mistake",
        "sigmoid(logits, sd 1)",
        lambda n, dt, g: (
            torch.sigmoid(_randn((n,), torch.float32, g)).to(dt),
            torch.randint(0, 2, (n,), generator=g).to(dt),
        ),
        _bce,
    ),
    Population(
        "sigmoid before BCE-with-logits",
        "legitimate",
        "logits, sd 1",
        lambda n, dt, g: (_randn((n,), dt, g), torch.randint(0, 2, (n,), generator=g).to(dt)),
        _bce,
    ),
    Population(
        "sigmoid before BCE-with-logits",
        "legitimate",
        "logits, sd 3",
        lambda n, dt, g: (_randn((n,), dt, g, 3.0), torch.randint(0, 2, (n,), generator=g).to(dt)),
        _bce,
    ),
    # logits given to binary_cross_entropy (an error: values outside [0, 1])
    Population(
        "logits given to BCE",
        "mistake",
        "logits, sd 1",
        lambda n, dt, g: (_randn((n,), dt, g), torch.randint(0, 2, (n,), generator=g).to(dt)),
        LF.binary_cross_entropy,
    ),
    Population(
        "logits given to BCE",
        "legitimate",
        "sigmoid(logits)",
        lambda n, dt, g: (
            torch.sigmoid(_randn((n,), torch.float32, g)).to(dt),
            torch.randint(0, 2, (n,), generator=g).to(dt),
        ),
        LF.binary_cross_entropy,
    ),
    # one-hot class labels given to a regression loss
    Population(
        "one-hot targets in regression",
        "mistake",
        "mse(outputs, one_hot(y))",
        lambda n, dt, g: (_randn((_ce_rows(n), C), dt, g), F.one_hot(_ids(_ce_rows(n), g), C).to(dt)),
        LF.mse_loss,
    ),
    Population(
        "one-hot targets in regression",
        "legitimate",
        "mse(outputs, continuous)",
        lambda n, dt, g: (_randn((_ce_rows(n), C), dt, g), _randn((_ce_rows(n), C), dt, g)),
        LF.mse_loss,
    ),
    Population(
        "one-hot targets in regression",
        "legitimate",
        "Brier: mse(softmax, one_hot)",
        lambda n, dt, g: (
            torch.softmax(_randn((_ce_rows(n), C), torch.float32, g), 1).to(dt),
            F.one_hot(_ids(_ce_rows(n), g), C).to(dt),
        ),
        LF.mse_loss,
    ),
    # class ids given to a regression loss with one output per class (an error)
    Population(
        "class ids in regression",
        "mistake",
        "mse((N, C) outputs, (N,) ids)",
        lambda n, dt, g: (_randn((_ce_rows(n), C), dt, g), _ids(_ce_rows(n), g)),
        LF.mse_loss,
    ),
    Population(
        "class ids in regression",
        "legitimate",
        "mse((N, C), (N, C) floats)",
        lambda n, dt, g: (_randn((_ce_rows(n), C), dt, g), _randn((_ce_rows(n), C), dt, g)),
        LF.mse_loss,
    ),
]

#: the smallest number of elements from which the heuristic is expected to catch its mistake
MIN_ELEMENTS = {
    "softmax before cross_entropy": 20,  # two rows of 10 classes
    "sigmoid before BCE-with-logits": 16,
    "logits given to BCE": 8,
    "one-hot targets in regression": 20,
    "class ids in regression": 10,
}
SIZES = (8, 16, 20, 64, 1024)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
