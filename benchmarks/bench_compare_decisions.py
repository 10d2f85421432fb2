"""``losskit compare``'s decisions where the truth is known: the false-alarm rate on identical
candidates trained with real noise, the power on real gains, and the stability over seeds.

    .venv/bin/python benchmarks/bench_compare_decisions.py                   # every case (an hour or two)
    .venv/bin/python benchmarks/bench_compare_decisions.py --cases null --seeds 15
    .venv/bin/python benchmarks/bench_compare_decisions.py --quick           # a smoke run (tests)

Cases (``losskit.compare`` with its default design unless said):

* ``null`` -- identical candidates: an MLP with dropout (the noise) trained with
  ``cross_entropy`` and two ``torch.nn.CrossEntropyLoss()`` modules (``mse`` and two
  ``torch.nn.MSELoss()`` for regression): the same loss, each fit its own dropout masks. Data
  sets: wine, breast cancer, iris, diabetes. Any ``better`` or ``worse`` is a false alarm.
* ``heavy`` -- regression with heavy-tailed noise (2,000 rows, 5 features, Student-t noise with
  1.5 degrees of freedom): a robust loss (l1, huber, smooth_l1) should be decided better than
  mse on MAE.
* ``imbalance`` -- three classes at 90 / 8 / 2 % (3,000 rows, 10 features): class weights should
  be decided better on balanced accuracy (the deciding metric of an imbalanced target), or the
  trade-off with macro-F1 named.
* ``digits`` -- the default run: label smoothing's consistent gain (about +0.01 macro-F1) must
  never be called equivalent while its interval excludes 0; and the run's time.

Every case runs ``--seeds`` seeds (the data's and compare's); prints per case and candidate the
count of each decision, and writes ``benchmarks/results/bench_compare_decisions.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _dropout_mlp(d_in: int, d_out: int):
    from torch import nn

    return nn.Sequential(
        nn.Linear(d_in, 64),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(64, d_out),
    )


def heavy_tailed(seed: int, n: int = 2000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + rng.standard_t(1.5, size=n)
    return x, y


def imbalanced(seed: int, n: int = 3000):
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n, n_features=10, n_informative=5, n_classes=3, weights=[0.9, 0.08, 0.02], class_sep=1.0,
        random_state=seed,
    )  # fmt: skip


def _run(x, y, seed: int, quick: bool, **kwargs):
    from losskit.app.compare import compare

    if quick:
        kwargs = {**kwargs, "folds": 2, "repeats": 3, "max_repeats": 3, "epochs": 3}
    start = time.perf_counter()
    result = compare(x, y, seed=seed, baselines=False, **kwargs)
    return result, time.perf_counter() - start


def _record(result, seconds: float) -> dict:
    p = result.payload
    return {
        "seconds": seconds,
        "design": f"{p['settings']['repeats']}x{p['settings']['folds']}",
        "metric": p["primary_metric"],
        "recommendation": p["recommendation"]["loss"],
        "decision": p["recommendation"]["decision"],
        "text": p["recommendation"]["text"],
        "candidates": {
            r["loss"]: {
                "decision": r["versus_plain"]["decision"],
                "difference": r["versus_plain"]["difference"],
                "ci": r["versus_plain"]["ci"],
                "p_value": r["versus_plain"]["p_value"],
                "other_metrics": {m: o["decision"] for m, o in r["versus_plain"]["other_metrics"].items()},
            }
            for r in p["results"]
            if r.get("versus_plain")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="null,heavy,imbalance,digits")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case (default: null 12, others 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny designs, one seed")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    import torch
    from sklearn import datasets

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    runs: dict[str, list[dict]] = collections.defaultdict(list)
    for case in cases:
        seeds = args.seeds or (12 if case == "null" else 5)
        if args.quick:
            seeds = 1
        for seed in range(seeds):
            if case == "null":
                for name in ("wine", "breast_cancer", "iris", "diabetes"):
                    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
                    if name == "diabetes":
                        losses = ["mse", torch.nn.MSELoss(), torch.nn.MSELoss()]
                    else:
                        losses = ["cross_entropy" if name != "breast_cancer" else "bce_with_logits"]
                        twin = torch.nn.CrossEntropyLoss if name != "breast_cancer" else torch.nn.BCEWithLogitsLoss
                        losses += [twin(), twin()]
                    result, seconds = _run(x, y, seed, args.quick, model=_dropout_mlp, losses=losses)
                    runs[f"null/{name}"].append(_record(result, seconds))
            elif case == "heavy":
                result, seconds = _run(*heavy_tailed(seed), seed, args.quick)
                runs["heavy"].append(_record(result, seconds))
            elif case == "imbalance":
                result, seconds = _run(*imbalanced(seed), seed, args.quick)
                runs["imbalance"].append(_record(result, seconds))
            elif case == "digits":
                x, y = datasets.load_digits(return_X_y=True)
                if args.quick:
                    x, y = x[:400], y[:400]
                result, seconds = _run(x, y, seed, args.quick)
                runs["digits"].append(_record(result, seconds))
            last = next(reversed(runs.values()))[-1]
            print(
                f"{case} seed {seed}: {last['design']} {last['seconds']:.0f} s: {last['text'][:150]}", file=sys.stderr
            )

    lines = [
        "| case | candidate | runs | better | equivalent | worse | undecided | designs | seconds (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    summary: dict[str, dict] = {}
    for case, records in runs.items():
        names = list(records[0]["candidates"])
        designs = collections.Counter(r["design"] for r in records)
        for name in names:
            counts = collections.Counter(r["candidates"][name]["decision"] for r in records)
            summary.setdefault(case, {})[name] = dict(counts)
            lines.append(
                f"| {case} | {name} | {len(records)} | {counts['better']} | {counts['equivalent']} | {counts['worse']} "
                f"| {counts['undecided']} | {', '.join(f'{d} ({c})' for d, c in sorted(designs.items()))} "
                f"| {float(np.median([r['seconds'] for r in records])):.0f} |"
            )
    nulls = [c for case, rs in runs.items() if case.startswith("null/") for r in rs for c in r["candidates"].values()]
    if nulls:
        alarms = sum(c["decision"] in ("better", "worse") for c in nulls)
        lines.append("")
        lines.append(
            f"False alarms on identical candidates: {alarms} of {len(nulls)} comparisons decided better or worse "
            f"({alarms / len(nulls):.1%}); "
            f"median p-value {float(np.median([c['p_value'] for c in nulls if c['p_value'] is not None])):.2f}."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench_compare_decisions" + ("_quick" if args.quick else "")
    import torch as _torch

    record = {"machine": {"torch": _torch.__version__}, "runs": runs, "summary": summary}
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
