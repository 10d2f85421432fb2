"""The ``losskit`` command (also ``python -m losskit``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import losskit


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="losskit",
        description="PyTorch losses with exact torch.nn parity, lower memory, and guardrails.",
    )
    parser.add_argument("--version", action="version", version=f"losskit {losskit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train a small MLP on scikit-learn's digits with losskit.nn.CrossEntropyLoss",
        description="Train a small MLP on scikit-learn's bundled digits data with "
        "losskit.nn.CrossEntropyLoss; print train/validation loss and accuracy per epoch.",
    )
    demo.add_argument("--epochs", type=_positive_int, default=20, help="training epochs (default 20)")
    demo.add_argument("--batch-size", type=_positive_int, default=64, help="batch size (default 64)")
    demo.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    demo.add_argument("--seed", type=int, default=0, help="random seed for split, init and batches (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        try:
            from losskit.demo import run_demo

            run_demo(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("sklearn", "rich"):
                print(
                    f"losskit demo: the package {exc.name.split('.')[0]!r} is missing; the demo needs "
                    "the 'demo' extra. Install it with: pip install 'losskit[demo]'",
                    file=sys.stderr,
                )
                return 2
            raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
