"""``losskit compare``: train the same model with each candidate loss on the same folds of
repeated (stratified) k-fold cross-validation, decide every candidate against the plain loss
(better, equivalent, worse or undecided: Bayesian correlated t-test, Holm over the candidates),
fit scikit-learn baselines on the same folds, and say which loss to use, how sure, and by how
much; the fits run stacked, on every core or on a Ray cluster.

* :mod:`losskit.app.compare.data` -- targets, folds (validation carved from each training fold), encoding
* :mod:`losskit.app.compare.candidates` -- the candidate losses per task, identical candidates
* :mod:`losskit.app.compare.train` -- the MLP, Adam, early stopping, overfitting flag (one fit)
* :mod:`losskit.app.compare.stacks` -- many models of one architecture as one stacked model
* :mod:`losskit.app.compare.batched` -- training a stack (each member its data, loss, early stopping)
* :mod:`losskit.app.compare.fits` -- a fit task: a pure function of settings, folds and task
* :mod:`losskit.app.compare.engines` -- where tasks run: this process, worker processes, Ray
* :mod:`losskit.app.compare.metrics` -- task-appropriate metrics on each test fold
* :mod:`losskit.app.compare.stats` -- the correlated t posterior, intervals, Holm, forecasts
* :mod:`losskit.app.compare.verdict` -- the four-word decisions and the recommendation
* :mod:`losskit.app.compare.baselines` -- logistic / ridge regression, gradient boosting
* :mod:`losskit.app.compare.stages` -- the engine choice, folds prepared once, stages of fit tasks
* :mod:`losskit.app.compare.run` -- the loop over folds and candidates, the design grown while undecided
* :mod:`losskit.app.compare.results` -- fold scores into metrics.json entries (means, intervals, tests)
* :mod:`losskit.app.compare.report` -- metrics.json, plots, report.html, terminal table

Needs the ``cli`` extra (scikit-learn, scipy, pandas, rich, matplotlib, loky); ``--backend ray`` the ``ray`` extra.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from losskit.app.data import Table
from losskit.errors import LossInputError

if TYPE_CHECKING:
    from losskit.app.compare.inputs import ArrayInput
    from losskit.app.compare.run import Run

__all__ = ["CompareResult", "compare", "run_compare", "MARKER"]

#: a file every report folder holds, so a later run knows it may replace the folder
MARKER = ".losskit-report"


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LossInputError(
            f"--device {name!r} is not a torch device; expected e.g. cpu, cuda, cuda:1 or mps."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LossInputError(
            f"--device {name!r}: CUDA is not available in this torch build or machine; expected an available device. Use --device cpu."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise LossInputError(
            f"--device {name!r}: MPS is not available on this machine; expected an available device. Use --device cpu."
        )
    return device


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LossInputError(f"--out {str(out)!r} is a file; expected a folder for the report. Pass another --out.")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise LossInputError(
            f"--out {str(out)!r} cannot be created: {str(ancestor)!r} is "
            + ("not a folder" if not ancestor.is_dir() else "not writable")
            + "; expected a writable place for the report folder. Pass another --out."
        )
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise LossInputError(
            f"--out {str(out)!r} exists and is not a losskit report (no {MARKER} file); expected a new "
            "or empty folder, or a previous report to replace. Pass another --out; nothing was changed."
        )


class CompareResult:
    """The outcome of :func:`compare`.

    Attributes:
        recommendation: ``{"loss", "metric", "decision", "margin", "significant", "p_value", "versus",
            "difference", "ci", "text", ...}``.
        payload: everything ``metrics.json`` holds.
        model: the recommended loss's model trained on all rows (``save_model=True``), else None.
        out: the report folder once :meth:`save` wrote it.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.payload: dict[str, Any] = run.payload
        self.recommendation: dict[str, Any] = run.payload["recommendation"]
        self.model: nn.Module | None = run.model
        self.out: Path | None = None
        self.seconds = 0.0

    def __repr__(self) -> str:
        return f"CompareResult({self.recommendation['text']!r})"

    def table(self) -> Any:
        """One row per candidate and baseline: the fold means of each metric, the primary
        metric's 95 % interval, and the test against the plain loss (a pandas DataFrame)."""
        import pandas as pd

        primary = self.payload["primary_metric"]
        rows = []
        for r in self.payload["results"]:
            vs = r.get("versus_plain") or {}
            rows.append(
                {
                    "name": r["loss"],
                    "kind": "loss",
                    **r["metrics"],
                    f"{primary}_ci_low": r["ci"][primary][0],
                    f"{primary}_ci_high": r["ci"][primary][1],
                    "difference": vs.get("difference"),
                    "decision": vs.get("decision"),
                    "p_better": vs.get("p_better"),
                    "p_holm": vs.get("p_holm"),
                    "significant": vs.get("significant", False),
                    "same_as": r["same_as"],
                    "recommended": r["loss"] == self.recommendation["loss"],
                }
            )
        for b in self.payload["baselines"]:
            rows.append(
                {
                    "name": b["label"],
                    "kind": "baseline",
                    **b["metrics"],
                    f"{primary}_ci_low": b["ci"][primary][0],
                    f"{primary}_ci_high": b["ci"][primary][1],
                    "recommended": False,
                }
            )
        return pd.DataFrame(rows).set_index("name")

    def save(self, out: str | Path = "losskit-report") -> Path:
        """Write ``metrics.json``, the plots, ``report.html`` (and ``model.pt``, the recommended
        model's ``state_dict``, when there is a model) to the folder ``out``, atomically: into a
        hidden folder beside it, renamed into place when complete, removed on any failure. An
        existing ``out`` is replaced only when it is an earlier losskit report."""
        from losskit.app.compare.report import write_report

        path = Path(out).expanduser().resolve()
        _check_out(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            write_report(tmp, self.run)
            if self.model is not None:
                torch.save(self.model.state_dict(), tmp / "model.pt")
            (tmp / MARKER).write_text("written by losskit compare; a later run may replace this folder\n")
            if path.exists():
                path.rename(old)
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not path.exists():
                old.rename(path)
            raise
        shutil.rmtree(old, ignore_errors=True)
        self.out = path
        return path


def compare(
    data: Any,
    target: Any = None,
    *,
    task: str = "auto",
    losses: str | Sequence[str | nn.Module] | None = None,
    model: Callable[..., nn.Module] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    folds: int = 5,
    repeats: int = 2,
    max_repeats: int | None = None,
    budget: float | None = None,
    margin: float | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    baselines: bool = True,
    metric: str | None = None,
    save_model: bool = False,
    name: str | None = None,
    jobs: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    gpus_per_fit: float = 0,
    ignore_index: int = 255,
) -> CompareResult:
    """Compare candidate losses on your data (and your model) by repeated cross-validation, and
    decide for each candidate: better, equivalent, worse or undecided against the plain loss.

    Every candidate trains the same initial model on the same folds of repeated (stratified)
    k-fold; early stopping uses a validation split carved from each training fold. Fits of one
    architecture train together as one stacked model, spread over ``jobs`` worker processes or a
    Ray cluster (the numbers do not depend on where they run). Each candidate's fold differences
    from the plain loss (cross-entropy, BCE-with-logits, MSE) give the posterior of the mean
    difference (Bayesian correlated t-test, Benavoli et al. 2017 -- the Nadeau–Bengio corrected
    t-test's interval); Holm over the candidates decides which differ from the plain loss, and
    the interval shown is the one that decided: entirely on the good side of 0 is *better*, on
    the bad side *worse*, within ``±margin`` *equivalent*, else *undecided*. While a candidate
    is undecided and more data would likely decide, repeats are added (up to ``max_repeats``).

    Samples of any shape: tables (2-D features, standardized per fold), images ``(N, C, H, W)``
    or any ``(N, *shape)`` your model takes (used as given). A segmentation task has class
    masks ``(N, H, W)`` as targets (``ignore_index`` marks pixels left out), is decided on the
    mean IoU, and its folds are cut over images (stratified by whether an image shows the
    rarest class). A ``Dataset`` whose samples have 2 or more dimensions is read batch by batch,
    never held in memory whole (its fits then run one at a time in this process).

    Args:
        data: a pandas DataFrame (``target`` = its target column name or names), features as an
            array / tensor (``target`` = the labels or masks), a pair ``(X, y)``, a torch
            ``Dataset`` of ``(x, y)`` pairs, or an ``ImageSet`` / ``SegmentationSet`` of
            :mod:`losskit.app.images` (read from folders).
        target: see ``data``.
        task: ``"auto"`` (inferred from the target: integer masks ``(N, H, W)`` matching the
            images are segmentation) or a task name.
        losses: candidate names (see ``losskit compare --help``) and / or loss modules; default
            the task's standard set.
        model: a factory of the model, ``lambda: MyNet()`` or ``lambda d_in, d_out: ...``,
            called with a fixed seed per fold; ``d_in`` is the number of features of a table, the
            first dimension of other samples (an image's channels); ``d_out`` the outputs (classes).
            Default: an MLP sized from a table, a small CNN for images, a small U-Net for
            segmentation (group norm, so the fits stack).
        optimizer: a factory called with the model's parameters (default Adam at ``lr``).
        folds, repeats: k of k-fold (default 5) and the repeats run first (default 2).
        max_repeats: repeats the design may grow to while a candidate is undecided (default 6,
            images 3; ``max_repeats=repeats`` for a fixed design).
        budget: stop adding repeats when the next ones would pass this many seconds (the
            result then depends on the machine's speed).
        margin: the region of practical equivalence, in the deciding metric's units (default
            0.01 for scores in [0, 1]; 1 % of the target's spread for MAE / RMSE).
        epochs, lr: most epochs per fit (early stopping usually ends sooner) and Adam's learning
            rate: default 100 and 1e-3 for tables, 20 and 5e-3 for images (a CPU budget).
        batch_size: default 64, larger for big tables (about 200 steps an epoch, at most 4096);
            16 for images.
        baselines: also fit logistic / ridge regression and gradient boosting on the first
            ``repeats`` x ``folds`` folds.
        metric: the metric the verdict is decided on (default: macro-F1, ROC-AUC or MAE by task;
            balanced accuracy when a class holds under 10 % of the rows).
        save_model: train the recommended loss on all rows afterwards (``result.model``).
        jobs: worker processes (default: one per core that other programs leave free; small
            comparisons run in this process).
        backend: ``"local"`` or ``"ray"`` (``ray_address``, else ``RAY_ADDRESS``, else a local
            Ray instance); ``gpus_per_fit`` GPUs per fit on Ray.
        ignore_index: segmentation: the mask value of pixels left out of losses and metrics
            (default 255, as in PASCAL VOC).

    Returns:
        A :class:`CompareResult`: ``.recommendation``, ``.table()``, ``.save(out)``.

    Raises:
        LossInputError: bad data, task, candidates, or options.

    Example:
        >>> import losskit
        >>> from sklearn.datasets import load_iris
        >>> X, y = load_iris(return_X_y=True)
        >>> result = losskit.compare(X, y, folds=2, repeats=1, max_repeats=1, epochs=2, baselines=False)
        >>> result.recommendation["versus"], result.recommendation["decision"]
        ('cross_entropy', 'undecided')
    """

    from losskit.app.compare.run import compare_table, to_table

    start = time.perf_counter()
    run = compare_table(
        to_table(data, target, name, ignore_index=ignore_index),
        task=task,
        losses=losses,
        model=model,
        optimizer=optimizer,
        folds=folds,
        repeats=repeats,
        max_repeats=max_repeats,
        budget=budget,
        margin=margin,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        baselines=baselines,
        metric=metric,
        save_model=save_model,
        jobs=jobs,
        backend=backend,
        ray_address=ray_address,
        gpus_per_fit=gpus_per_fit,
    )
    result = CompareResult(run)
    result.seconds = time.perf_counter() - start
    return result


def run_compare(
    table: Table | ArrayInput | Any,
    *,
    task: str = "auto",
    losses: str | None = None,
    model: Callable[..., nn.Module] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    out: str | Path = "losskit-report",
    device: str = "cpu",
    folds: int = 5,
    repeats: int = 2,
    max_repeats: int | None = None,
    budget: float | None = None,
    margin: float | None = None,
    baselines: bool = True,
    metric: str | None = None,
    save_model: bool = False,
    jobs: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    gpus_per_fit: float = 0,
    console: Any = None,
    progress: bool = True,
) -> CompareResult:
    """The command line's comparison: :func:`compare` on ``table`` with a progress bar, the
    summary printed to ``console``, and the report saved to ``out``.

    Raises:
        LossInputError: bad data, task, candidate names, device or output folder.
    """
    import resource
    import sys

    from rich.console import Console
    from rich.markup import escape

    from losskit.app.compare.report import print_summary
    from losskit.app.compare.run import compare_table, to_table

    start = time.perf_counter()
    if console is None:
        # a pipe or a log file gets the full table; a terminal its own width
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    path = Path(out).expanduser().resolve()
    _check_out(path)  # before the work, so a bad --out fails at once
    run = compare_table(
        to_table(table),
        task=task,
        losses=losses,
        model=model,
        folds=folds,
        repeats=repeats,
        max_repeats=max_repeats,
        budget=budget,
        margin=margin,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        baselines=baselines,
        metric=metric,
        save_model=save_model,
        jobs=jobs,
        backend=backend,
        ray_address=ray_address,
        gpus_per_fit=gpus_per_fit,
        console=console,
        progress=progress,
    )
    result = CompareResult(run)
    result.save(path)
    print_summary(console, run)
    seconds = time.perf_counter() - start
    result.seconds = seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    console.print(
        f"report: {escape(str(path / 'report.html'))} (metrics.json and the plots beside it"
        + (", model.pt" if run.model is not None else "")
        + f"); {seconds:.1f} s, peak memory {peak:.0f} MB"
    )
    return result
