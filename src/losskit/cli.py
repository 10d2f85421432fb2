"""The ``losskit`` command (also ``python -m losskit``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import losskit
from losskit.data import BUILTIN_DATASETS


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
    rec = sub.add_parser(
        "recommend",
        help="infer the task of a data set's target and print the loss to use, with reasons",
        description="Infer the task from the target column (regression, binary, multiclass, "
        "multilabel, ...), show the class balance, and print the configured losskit loss "
        "(losskit.loss_for) with the reasons for each choice. With no data it uses digits.",
    )
    rec.add_argument("data", nargs="?", metavar="FILE", help="a CSV or Parquet file with a header row")
    rec.add_argument("--target", action="append", metavar="COL", help="target column of FILE (repeat for multi-output)")
    rec.add_argument(
        "--dataset", metavar="NAME", help=f"a data set bundled with scikit-learn: {', '.join(BUILTIN_DATASETS)}"
    )
    rec.add_argument(
        "--task", default="auto", choices=["auto"] + [t.value for t in losskit.Task], help="override the inferred task"
    )
    rec.add_argument(
        "--imbalance", default="auto", choices=["auto", "none", "balanced", "effective"],
        help="class weighting (default auto: weights from a 3:1 imbalance on)",
    )
    rec.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    return parser


def _missing_extra(command: str, exc: ModuleNotFoundError) -> int | None:
    top = (exc.name or "").split(".")[0]
    if top in ("sklearn", "rich", "pandas"):
        package = {"sklearn": "scikit-learn"}.get(top, top)
        print(
            f"losskit {command}: the package {package!r} is missing; this command needs the 'cli' "
            "extra. Install it with: pip install 'losskit[cli]'",
            file=sys.stderr,
        )
        return 2
    return None


def _recommend(args: argparse.Namespace) -> int:
    import json

    from losskit.data import load_dataset, load_file
    from losskit.recommend import print_recommendation, recommend

    if args.data and args.dataset:
        print("losskit recommend: pass either FILE or --dataset, not both.", file=sys.stderr)
        return 2
    if args.target and not args.data:
        print(
            "losskit recommend: --target names a column of FILE, but no FILE was given; expected "
            "FILE --target COL (the bundled --dataset tables know their target).",
            file=sys.stderr,
        )
        return 2
    table = load_file(args.data, args.target) if args.data else load_dataset(args.dataset or "digits")
    result = recommend(table, task=args.task, imbalance=args.imbalance)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_recommendation(result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "recommend":
        try:
            return _recommend(args)
        except ModuleNotFoundError as exc:
            code = _missing_extra("recommend", exc)
            if code is None:
                raise
            return code
        except losskit.LossInputError as exc:
            print(f"losskit recommend: {exc}", file=sys.stderr)
            return 2
    if args.command == "demo":
        try:
            from losskit.demo import run_demo

            run_demo(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        except ModuleNotFoundError as exc:
            code = _missing_extra("demo", exc)
            if code is None:
                raise
            return code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
