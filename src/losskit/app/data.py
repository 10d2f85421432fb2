"""Tables for the command line: scikit-learn's bundled data sets, or a user's CSV / Parquet file.

Needs pandas and scikit-learn (the ``demo`` extra). Nothing is downloaded: the bundled data
sets ship inside scikit-learn.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from losskit.errors import LossInputError

__all__ = ["Table", "BUILTIN_DATASETS", "load_dataset", "load_file"]

#: scikit-learn's bundled data sets (``linnerud`` is multi-output regression)
BUILTIN_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes", "linnerud")


@dataclass
class Table:
    """Features and target of one data set, as pandas objects.

    Attributes:
        name: the data set's name or the file's path.
        features: a DataFrame, one row per sample.
        target: a Series (one target column) or a DataFrame (several, multi-output).
        target_names: names of the class ids when the source has them (scikit-learn), else None.
        dropped_rows: rows left out because their target was missing.
    """

    name: str
    features: Any
    target: Any
    target_names: list[str] | None = None
    dropped_rows: int = 0

    @property
    def target_label(self) -> str:
        if hasattr(self.target, "columns"):
            return ", ".join(map(str, self.target.columns))
        return str(self.target.name)


def load_dataset(name: str) -> Table:
    """One of :data:`BUILTIN_DATASETS`, with feature and target names from scikit-learn."""
    if name not in BUILTIN_DATASETS:
        raise LossInputError(
            f"dataset is {name!r}; expected one of {', '.join(BUILTIN_DATASETS)} (bundled with "
            "scikit-learn). Pass e.g. --dataset digits, or a CSV file with --target."
        )
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    names = getattr(bunch, "target_names", None)
    target_names = [str(n) for n in names] if name not in ("diabetes", "linnerud") and names is not None else None
    return Table(name=name, features=bunch.data, target=bunch.target, target_names=target_names)


def _delimiter(path: Path) -> str:
    """The CSV delimiter, sniffed from the first 64 KiB (the fast C parser reads the rest)."""
    with open(path, newline="", errors="replace") as f:
        sample = f.read(65536)
    lines = sample.splitlines()
    if len(sample) == 65536 and len(lines) > 1:
        sample = "\n".join(lines[:-1])  # drop a line cut in the middle
    return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter


def load_file(path: str | Path, target: str | list[str] | None) -> Table:
    """A CSV (any delimiter pandas sniffs from ``.csv``/``.tsv``) or Parquet file; ``target``
    names the target column(s). Rows whose target is missing are dropped (counted in
    ``dropped_rows``)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise LossInputError(f"data file {str(path)!r} does not exist; expected a CSV or Parquet file. Check the path.")
    if path.is_dir():
        raise LossInputError(
            f"data file {str(path)!r} is a folder; expected a CSV or Parquet file. Pass the file itself."
        )
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise LossInputError(
            f"data file {str(path)!r} is empty; expected a CSV or Parquet table with a header row. Check the file."
        )
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix == ".tsv":
            frame = pd.read_csv(path, sep="\t")
        else:
            frame = pd.read_csv(path, sep=_delimiter(path))
    except ImportError as exc:
        raise LossInputError(
            f"reading {str(path)!r} needs a Parquet engine ({exc}); expected pyarrow to be installed. "
            "Install it with: pip install pyarrow, or save the table as CSV."
        ) from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError, csv.Error) as exc:
        raise LossInputError(
            f"could not read {str(path)!r} as {'Parquet' if suffix in ('.parquet', '.pq') else 'CSV'} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); expected a table with a "
            "header row. Check the file's format."
        ) from None
    if frame.empty or frame.shape[1] < 2:
        raise LossInputError(
            f"{str(path)!r} has {frame.shape[0]} row(s) and {frame.shape[1]} column(s); expected a "
            "header row, at least one feature column and a target column."
        )
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    wanted = [target] if isinstance(target, str) else list(target or [])
    if not wanted:
        raise LossInputError(
            f"no target column given for {str(path)!r}; expected --target COL naming one of its "
            f"columns: {', '.join(columns[:20])}{', ...' if len(columns) > 20 else ''}."
        )
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise LossInputError(
            f"target column(s) {missing} not found in {str(path)!r}; expected one of: "
            f"{', '.join(columns[:20])}{', ...' if len(columns) > 20 else ''}. Check the spelling (it is case-sensitive)."
        )
    keep = frame[wanted].notna().all(axis=1)
    dropped = int((~keep).sum())
    frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise LossInputError(f"every row of {str(path)!r} has a missing target; expected labelled rows.")
    y = frame[wanted[0]] if len(wanted) == 1 else frame[wanted]
    return Table(name=str(path), features=frame.drop(columns=wanted), target=y, dropped_rows=dropped)
