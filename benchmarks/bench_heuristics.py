"""How often each value heuristic of the guardrails fires: detection rate on the mistake and
false-alarm rate on legitimate inputs, by number of elements and dtype (float32 / bfloat16 /
float16), on the generated populations of tests/heuristic_populations.py.

    .venv/bin/python benchmarks/bench_heuristics.py                    # 500 / 2,000 draws per cell
    .venv/bin/python benchmarks/bench_heuristics.py --legit-trials 30000  # to bound 1e-4 false alarms

Prints a table, writes ``benchmarks/results/bench_heuristics.json``, and rewrites the table in
docs/guardrails.md between its ``<!-- heuristics-table -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.heuristic_populations import DTYPES, MIN_ELEMENTS, POPULATIONS, SIZES, rate  # noqa: E402

START, END = "<!-- heuristics-table -->", "<!-- /heuristics-table -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mistake-trials", type=int, default=500)
    parser.add_argument("--legit-trials", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for pop in POPULATIONS:
        trials = args.mistake_trials if pop.kind == "mistake" else args.legit_trials
        cells = {f"{n}": [rate(pop, n, dt, trials, seed=n) for dt in DTYPES] for n in SIZES}
        rows.append(
            {"heuristic": pop.heuristic, "kind": pop.kind, "population": pop.name, "trials": trials, "rates": cells}
        )
        print(
            f"{pop.heuristic:32s} {pop.kind:10s} {pop.name:32s}",
            "  ".join("/".join(f"{r:.3g}" for r in v) for v in cells.values()),
        )
    out = ROOT / "benchmarks" / "results" / "bench_heuristics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sizes": SIZES, "dtypes": [str(d) for d in DTYPES], "rows": rows}, indent=2) + "\n")
    header = "| heuristic | population | draws | " + " | ".join(f"{n} elements" for n in SIZES) + " |"
    lines = [header, "| --- | --- | ---: | " + " | ".join("---:" for _ in SIZES) + " |"]
    for row in rows:
        what = ("detected" if row["kind"] == "mistake" else "false alarms") + f": {row['population']}"
        cells = ["/".join(f"{r:.3g}" for r in row["rates"][f"{n}"]) for n in SIZES]
        lines.append(f"| {row['heuristic']} | {what} | {row['trials']:,} | " + " | ".join(cells) + " |")
    minimum = ", ".join(f"{k}: {v}" for k, v in MIN_ELEMENTS.items())
    table = (
        "\n".join(lines)
        + f"\n\nEach cell: float32 / bfloat16 / float16. The softmax, one-hot and class-id populations are rows of 10 classes (n // 10 rows, at least one). Smallest input each heuristic is held to: {minimum} elements.\n"
    )
    doc = ROOT / "docs" / "guardrails.md"
    text = doc.read_text()
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        doc.write_text(f"{before}{START}\n{table}{END}{after}")
    print(f"wrote {out} and the table in {doc}")


if __name__ == "__main__":
    main()
