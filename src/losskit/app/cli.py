"""The ``losskit`` command (also ``python -m losskit``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import losskit
from losskit import registry
from losskit.app.cli_images import IMAGE_DATASETS, add_image_options
from losskit.app.data import BUILTIN_DATASETS


def _number(text: str, kind: type[int] | type[float], ok: Callable[[float], bool], expected: str) -> Any:
    """``text`` as a ``kind`` for which ``ok`` holds, else an argparse error saying what was expected."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 1, "a positive integer"))


def _positive_float(text: str) -> float:
    return float(_number(text, float, lambda v: v > 0, "a positive number"))


def _folds(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 2, "an integer >= 2 (the k of k-fold)"))


def _non_negative_float(text: str) -> float:
    value = float(_number(text, float, lambda v: v >= 0, "a number >= 0"))
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (what was wrong and where to look), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}. Run '{self.prog} --help' for the options.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        "--dataset", metavar="NAME", help=f"a bundled data set: {', '.join(BUILTIN_DATASETS + IMAGE_DATASETS)}"
    )
    rec.add_argument(
        "--task", default="auto", choices=["auto"] + [t.value for t in losskit.Task], help="override the inferred task"
    )
    rec.add_argument(
        "--imbalance",
        default="auto",
        choices=["auto", "none", "balanced", "effective"],
        help="class weighting (default auto: weights from a 3:1 imbalance on)",
    )
    rec.add_argument("--json", action="store_true", help="print the recommendation as JSON")

    cmp_ = sub.add_parser(
        "compare",
        help="train one model per candidate loss on real data and compare them (report in --out)",
        description="Infer the task, train the same MLP with each candidate loss on the same folds of "
        "repeated stratified k-fold (early stopping on a validation split of each training fold; the fits "
        "stacked and spread over every core, or a Ray cluster), decide each loss against the plain one -- "
        "better, equivalent (within --margin), worse or undecided (Bayesian correlated t-test, Holm over the "
        "candidates), adding repeats while a candidate is undecided -- fit scikit-learn baselines on the same "
        "folds, and print a verdict. Writes metrics.json, PNG plots and report.html to --out. "
        "With no data it runs on scikit-learn's digits.",
    )
    cmp_.add_argument(
        "data", nargs="?", metavar="DATA", help="a CSV or Parquet file with a header row, or a folder of class folders"
    )
    cmp_.add_argument(
        "--target", action="append", metavar="COL", help="target column of DATA (repeat for multilabel / multi-output)"
    )
    cmp_.add_argument(
        "--dataset", metavar="NAME", help=f"a bundled data set: {', '.join(BUILTIN_DATASETS + IMAGE_DATASETS)}"
    )
    cmp_.add_argument(
        "--task",
        default="auto",
        choices=["auto"] + [t.value for t in registry.COMPARE_TASKS],
        help="override the inferred task",
    )
    cmp_.add_argument(
        "--losses",
        metavar="A,B,...",
        help="comma-separated candidates (default: the task's standard set); "
        + "; ".join(f"{t.value}: {', '.join(registry.candidates_for(t))}" for t in registry.COMPARE_TASKS),
    )
    cmp_.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="most epochs per candidate; early stopping usually ends sooner (default 100; images 20)",
    )
    cmp_.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="batch size (default 64; for large tables about 200 steps an epoch, at most 4096)",
    )
    cmp_.add_argument("--lr", type=_positive_float, default=None, help="Adam learning rate (default 1e-3; images 5e-3)")
    cmp_.add_argument("--seed", type=int, default=0, help="seed for splits, initial weights and batches (default 0)")
    cmp_.add_argument(
        "--out", default="losskit-report", metavar="DIR", help="report folder (default ./losskit-report/)"
    )
    cmp_.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps, ... (default cpu)")
    cmp_.add_argument("--folds", type=_folds, default=5, help="k of repeated k-fold (default 5)")
    cmp_.add_argument(
        "--repeats", type=_positive_int, default=2, help="repeats of k-fold run first (default 2: 10 test folds)"
    )
    cmp_.add_argument(
        "--max-repeats",
        type=_positive_int,
        default=None,
        metavar="N",
        help="add repeats, up to N in all, while a candidate is undecided and more data would likely decide "
        "(default 6, images 3; pass --max-repeats equal to --repeats for a fixed design)",
    )
    cmp_.add_argument(
        "--budget",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop adding repeats when the next ones would pass this many seconds (the verdict then depends "
        "on the machine's speed)",
    )
    cmp_.add_argument(
        "--margin",
        type=_non_negative_float,
        default=None,
        help="the region of practical equivalence in the deciding metric's units: within ±margin is 'equivalent' "
        "(default 0.01 for scores in [0, 1]; 1%% of the target's spread for mae / rmse)",
    )
    cmp_.add_argument(
        "--metric", metavar="NAME", help="metric the verdict is decided on (default: macro_f1, roc_auc or mae by task)"
    )
    cmp_.add_argument("--no-baselines", action="store_true", help="skip the scikit-learn baselines")
    cmp_.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes for the fits, one thread each (default: one per core that other programs leave "
        "free; small comparisons run in this process; with --device cuda: one per visible GPU)",
    )
    cmp_.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="where the fits run: this machine (default) or a Ray cluster (RAY_ADDRESS or --ray-address, "
        "else a local Ray instance; needs the 'ray' extra)",
    )
    cmp_.add_argument(
        "--ray-address", metavar="ADDR", help="the Ray cluster to use with --backend ray (e.g. ray://host:10001)"
    )
    cmp_.add_argument(
        "--gpus-per-fit",
        type=_non_negative_float,
        default=0,
        metavar="G",
        help="GPUs Ray reserves for each fit with --backend ray --device cuda (e.g. 1, or 0.5 to share one)",
    )
    cmp_.add_argument(
        "--save-model",
        action="store_true",
        help="train the recommended loss on all rows; write its state_dict to --out/model.pt",
    )
    add_image_options(cmp_)
    doc = sub.add_parser(
        "doctor",
        help="sanity checks for a model + loss + batch (losskit.doctor); --demo shows what it catches",
        description="losskit.doctor(model, loss_fn, batch) is a Python call. --demo runs it on a "
        "deliberately broken setup (softmax head + CrossEntropyLoss + float labels) and on the "
        "fixed one, side by side.",
    )
    doc.add_argument("--demo", action="store_true", help="run the broken and the fixed example")

    lint = sub.add_parser(
        "lint",
        help="find loss misuse in source code (LK1xx rules), with safe automatic fixes",
        description="Find loss misuse in Python files and notebooks: softmax before cross-entropy, "
        "sigmoid before *_with_logits, one-hot or float class targets, deprecated size_average/reduce, "
        "missing zero_grad, loss tensors accumulated after backward without .detach(), log(softmax(x)). "
        "A file that cannot be read, or that Python cannot parse, is one LK000 finding; in a notebook, each "
        "code cell that does not parse is one LK000 finding and the other cells are still checked. "
        "Exit status: 0 no findings, "
        "1 findings, 2 usage error. Suppress a line with '# losskit: ignore[LK101]'.",
    )
    lint.add_argument(
        "paths",
        nargs="*",
        default=["."],
        metavar="PATH",
        help="files or folders (default .); folders honour .gitignore",
    )
    lint.add_argument("--fix", action="store_true", help="apply the safe fixes in place (atomic writes)")
    lint.add_argument(
        "--unsafe-fixes",
        action="store_true",
        help="also apply fixes that change behaviour (remove a softmax/sigmoid feeding a loss)",
    )
    lint.add_argument("--select", metavar="CODES", help="comma-separated codes or prefixes to report (e.g. LK101,LK11)")
    lint.add_argument("--ignore", metavar="CODES", help="comma-separated codes or prefixes to skip")
    lint.add_argument(
        "--diff", action="store_true", help="print the unified diff of the fixes and change nothing (exit 1 if any)"
    )
    lint.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="N", help="lint in N processes (0: one per CPU; default 1)"
    )
    lint.add_argument(
        "--format",
        choices=["text", "json", "github", "sarif"],
        default="text",
        help="output format: text (default), json, github (workflow annotations), sarif (code scanning)",
    )
    return parser


def _codes(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    from losskit.lint.engine import PARSE_ERROR
    from losskit.lint.rules import BY_CODE

    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    known = set(BY_CODE) | {PARSE_ERROR}
    unknown = [c for c in codes if not any(k.startswith(c) for k in known)]
    if unknown or not codes:
        raise losskit.LossInputError(
            f"{flag} {text!r}: unknown code(s) {unknown or '(none given)'}; expected codes or prefixes of "
            f"{', '.join(sorted(known))}."
        )
    return codes


def _lint(args: argparse.Namespace) -> int:
    from losskit.lint.runner import LintUsageError, format_findings, lint_paths

    select, ignore = _codes(args.select, "--select"), _codes(args.ignore, "--ignore")
    if args.jobs < 0:
        raise losskit.LossInputError(f"--jobs {args.jobs}: expected 0 (one per CPU) or a positive number of processes.")
    try:
        result = lint_paths(
            args.paths,
            fix=args.fix,
            unsafe_fixes=args.unsafe_fixes,
            select=select,
            ignore=ignore,
            diff=args.diff,
            jobs=args.jobs,
        )
    except LintUsageError as exc:
        print(f"losskit lint: {exc}", file=sys.stderr)
        return 2
    if args.diff:
        sys.stdout.write("".join(result.diffs))
        print(
            f"{result.fixed} fix(es) in {len(result.diffs)} file(s) would be applied; nothing was changed",
            file=sys.stderr,
        )
        return 1 if result.diffs else 0
    text = format_findings(result.findings, args.format)
    if text:
        print(text)
    if args.format == "text":
        fixable = sum(f.fixable for f in result.findings)
        summary = f"{len(result.findings)} finding(s) in {result.files} file(s)"
        if result.fixed:
            summary += f"; fixed {result.fixed} in {len(result.fixed_files)} file(s)"
        if fixable:
            summary += f"; {fixable} fixable with --fix"
        print(summary, file=sys.stderr)
    return 1 if result.findings else 0


def _load_table(args: argparse.Namespace) -> Any:
    from losskit.app.data import load_dataset, load_file

    if args.data and args.dataset:
        raise losskit.LossInputError("pass either a data file or --dataset, not both.")
    if args.target and not args.data:
        raise losskit.LossInputError(
            "--target names a column of a data file, but no file was given; expected FILE --target COL "
            "(the bundled --dataset tables know their target)."
        )
    return load_file(args.data, args.target) if args.data else load_dataset(args.dataset or "digits")


def _compare(args: argparse.Namespace) -> int:
    from losskit.app.cli_images import image_input, model_factory

    def inputs() -> tuple[Any, Any]:
        import losskit.app.compare.run  # noqa: F401  (torch and compare: beside Ray's start)

        model = model_factory(args.model) if args.model else None
        images = image_input(args)
        return model, images if images is not None else _load_table(args)

    from losskit.app import ray_local, workers

    if (
        args.backend == "ray"
        and not (args.ray_address or os.environ.get("RAY_ADDRESS"))
        and (args.jobs is None or args.jobs >= 1)
    ):
        # a local instance starts in about 4.5 s of waiting: the data loads meanwhile
        cpus = args.jobs or workers.cpu_count()
        model, data = ray_local.start_beside(inputs, cpus, baselines=workers.baselines_wanted(args))
    else:
        workers.prestart_for_command(args)
        model, data = inputs()
    from losskit.app.compare import run_compare
    from losskit.app.compare.engines import WorkerDied

    try:
        run_compare(
            data,
            task=args.task,
            losses=args.losses,
            model=model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            out=args.out,
            device=args.device,
            folds=args.folds,
            repeats=args.repeats,
            max_repeats=args.max_repeats,
            budget=args.budget,
            margin=args.margin,
            baselines=not args.no_baselines,
            metric=args.metric,
            save_model=args.save_model,
            jobs=args.jobs,
            backend=args.backend,
            ray_address=args.ray_address,
            gpus_per_fit=args.gpus_per_fit,
        )
    except WorkerDied as exc:
        print(f"losskit compare: {exc}.", file=sys.stderr)
        return 1
    finally:
        ray_local.shutdown()  # started here and not handed to a run (a bad option): stopped
        workers.stop_prestarted()  # likewise
    return 0


def _missing_extra(command: str, exc: ModuleNotFoundError) -> int | None:
    top = (exc.name or "").split(".")[0]
    if top in ("sklearn", "rich", "pandas", "matplotlib", "loky"):
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

    from losskit.app.recommend import print_recommendation, recommend

    table = _load_table(args)
    result = recommend(table, task=args.task, imbalance=args.imbalance)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_recommendation(result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``losskit`` command; returns its exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:  # output piped into `head` and closed early: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "lint":
        try:
            return _lint(args)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing in ("libcst", "pathspec"):
                print(
                    f"losskit lint: the package {missing!r} is missing; lint needs the 'lint' extra. Install it with: "
                    "pip install 'losskit[lint]'",
                    file=sys.stderr,
                )
                return 2
            raise
        except losskit.LossInputError as exc:
            print(f"losskit lint: {exc}", file=sys.stderr)
            return 2
    if args.command in ("recommend", "compare"):
        try:
            return _recommend(args) if args.command == "recommend" else _compare(args)
        except ModuleNotFoundError as exc:
            code = _missing_extra(args.command, exc)
            if code is None:
                raise
            return code
        except losskit.LossInputError as exc:
            print(f"losskit {args.command}: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # e.g. an --out folder that cannot be written
            where = f" ({exc.filename})" if exc.filename else ""
            print(
                f"losskit {args.command}: {exc.strerror or exc}{where}; expected a readable data file and a "
                "writable --out folder. Check the paths and permissions.",
                file=sys.stderr,
            )
            return 2
        except KeyboardInterrupt:
            print(f"losskit {args.command}: interrupted; no report was written.", file=sys.stderr)
            return 130

    if args.command == "doctor":
        if not args.demo:
            print(
                "losskit doctor: doctor checks your own model in Python: "
                "losskit.doctor(model, loss_fn, (inputs, targets)).  Run `losskit doctor --demo` to see "
                "what it catches.",
                file=sys.stderr,
            )
            return 2
        try:
            from losskit.app.doctor_demo import run_demo as run_doctor_demo

            reports = run_doctor_demo()
        except ModuleNotFoundError as exc:
            code = _missing_extra("doctor", exc)
            if code is None:
                raise
            return code
        return 0 if not list(reports.values())[-1].checks or list(reports.values())[-1].ok else 1
    if args.command == "demo":
        try:
            from losskit.app.demo import run_demo

            run_demo(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        except ModuleNotFoundError as exc:
            code = _missing_extra("demo", exc)
            if code is None:
                raise
            return code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
