"""A tour of losskit's guardrails: each classic loss mistake and what losskit says about it.

.venv/bin/python examples/guardrails_tour.py
"""

from __future__ import annotations

import warnings

import torch

import losskit
import losskit.functional as LF


def show(title: str, call) -> None:
    print(f"\n== {title}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
        except losskit.LossInputError as exc:
            print(f"  {type(exc).__name__}: {exc}")
    for w in caught:
        print(f"  {w.category.__name__}: {w.message}")


def main() -> None:
    torch.manual_seed(0)
    logits = torch.randn(16, 5)
    labels = torch.randint(0, 5, (16,))
    show("softmax before cross_entropy", lambda: LF.cross_entropy(logits.softmax(1), labels))
    show(
        "class id out of range",
        lambda: LF.cross_entropy(logits, labels.clamp(max=3).index_fill(0, torch.tensor([2]), 7)),
    )
    show("(N, 1) targets", lambda: LF.cross_entropy(logits, labels.unsqueeze(1)))
    show("integer one-hot targets", lambda: LF.cross_entropy(logits, torch.nn.functional.one_hot(labels, 5)))
    show("float class indices", lambda: LF.cross_entropy(logits, labels.float()))
    show("multi-hot rows as probabilities", lambda: LF.cross_entropy(logits, (torch.rand(16, 5) > 0.5).float()))
    show(
        "sigmoid before BCE-with-logits",
        lambda: LF.binary_cross_entropy_with_logits(logits.sigmoid(), torch.rand(16, 5)),
    )
    show("logits to binary_cross_entropy", lambda: LF.binary_cross_entropy(logits, torch.rand(16, 5)))
    show("broadcasting regression loss", lambda: LF.mse_loss(torch.randn(16, 1), torch.randn(16)))
    show("regression loss on class labels", lambda: LF.mse_loss(logits, labels))
    show("raw logits to nll_loss", lambda: LF.nll_loss(logits * 3, labels))
    show("every target ignored", lambda: LF.cross_entropy(logits, torch.full((16,), -100)))
    show("NaN in the input", lambda: LF.cross_entropy(logits.index_fill(0, torch.tensor([3]), float("nan")), labels))


if __name__ == "__main__":
    main()
