"""``losskit compare`` at scale: a generated CSV of 200,000 rows x 50 columns, time per fold.

    .venv/bin/python benchmarks/bench_compare.py            # 200,000 rows, 50 columns
    .venv/bin/python benchmarks/bench_compare.py --quick    # 20,000 rows

The table is generated (45 numeric columns with 1 % missing values, 5 categorical columns; a
binary target from a noisy linear rule), written to a temporary CSV and read back with
``losskit.app.data.load_file``, as the command line does. Then ``losskit compare``'s loop runs
with 2 x 2 folds and a few epochs, at compare's batch size for the table (1024 at 200,000 rows). Prints the time of each phase
and of each fit task (where it ran), and the peak memory of this process; writes ``benchmarks/results/bench_compare.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def make_csv(path: Path, rows: int, columns: int, seed: int = 0) -> None:
    import pandas as pd

    rng = np.random.default_rng(seed)
    numeric = columns - 5
    x = rng.normal(size=(rows, numeric)).astype(np.float32)
    x[rng.random(size=x.shape) < 0.01] = np.nan
    frame = pd.DataFrame(x, columns=[f"n{i}" for i in range(numeric)])
    for j in range(5):
        frame[f"c{j}"] = rng.choice(["red", "green", "blue", "grey"], size=rows)
    logit = np.nan_to_num(x[:, :10]) @ rng.normal(size=10) + (frame["c0"] == "red") * 0.8
    frame["target"] = (logit + rng.logistic(size=rows) > 0).astype(int)
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: compare's choice (1024 at 200,000 rows)")
    args = parser.parse_args()
    rows = args.rows or (20_000 if args.quick else 200_000)

    from rich.console import Console

    from losskit.app.compare.run import compare_table
    from losskit.app.data import load_file

    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        start = time.perf_counter()
        make_csv(path, rows, args.columns)
        timings["write_csv"] = time.perf_counter() - start
        start = time.perf_counter()
        table = load_file(path, "target")
        timings["read_csv"] = time.perf_counter() - start
    start = time.perf_counter()
    run = compare_table(
        table,
        folds=2,
        repeats=2,
        max_repeats=2,  # the fixed 2 x 2 design: no repeats added while undecided
        epochs=args.epochs,
        batch_size=args.batch_size,
        console=Console(stderr=True),
        progress=True,
    )
    timings["compare"] = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    batch = run.payload["settings"]["batch_size"]
    print(f"losskit compare on {rows} rows x {args.columns} columns (2 x 2 folds, {args.epochs} epochs, batch {batch})")
    print(f"{'phase':<24}{'seconds':>10}")
    for phase, seconds in timings.items():
        print(f"{phase:<24}{seconds:>10.1f}")
    for i, seconds in enumerate(run.task_seconds, 1):
        print(f"{'task ' + str(i):<24}{seconds:>10.1f}")
    print(f"{'ran on':<24}{run.execution['engine']:>10}")
    print(f"{'peak memory (MB)':<24}{peak_mb:>10.0f}")
    print(f"verdict: {run.payload['recommendation']['text']}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    record = {
        "rows": rows,
        "columns": args.columns,
        "folds": 2,
        "repeats": 2,
        "epochs": args.epochs,
        "batch_size": batch,
        "seconds": timings,
        "task_seconds": run.task_seconds,
        "execution": run.execution,
        "candidates": run.payload["settings"]["losses"],
        "peak_memory_mb": peak_mb,
        "recommendation": run.payload["recommendation"]["text"],
    }
    (results / "bench_compare.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
