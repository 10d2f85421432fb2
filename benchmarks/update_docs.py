"""Regenerate the tables of ``docs/benchmarks.md`` from the benchmarks' latest results.

    .venv/bin/python benchmarks/update_docs.py            # after running the benchmarks
    .venv/bin/python benchmarks/update_docs.py --check    # exit 1 if a marked table is stale

``docs/benchmarks.md`` marks each generated table with a pair of comments::

    <!-- results: bench_linear_cross_entropy -->
    ...
    <!-- end results -->

Between them goes ``benchmarks/results/<name>.md`` (the table the benchmark printed, as
markdown) under a line naming the machine and the date of the JSON beside it. A marker whose
results file does not exist is left as it is (and named on the output). Text outside the markers
(how to read each table) is written by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "benchmarks" / "results"
MARKED = re.compile(r"(<!-- results: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- end results -->)", re.S)


def _stamp(name: str) -> str:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    machine = data.get("machine", {})
    when = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc).strftime("%Y-%m-%d")
    parts = [f"measured {when}"]
    if machine.get("cpus"):
        parts.append(f"{machine['cpus']} CPUs")
    if machine.get("device"):
        parts.append(machine["device"])
    for lib in ("torch", "transformers"):
        if machine.get(lib):
            parts.append(f"{lib} {machine[lib]}")
    if "rounds" in data:
        parts.append(f"{data['rounds']} rounds")
    return "*" + ", ".join(parts) + f" (`benchmarks/results/{name}.json`)*\n\n"


def render(text: str) -> tuple[str, list[str]]:
    """``text`` with every marked table replaced by its results; and the names left as they were."""
    missing: list[str] = []

    def fill(m: re.Match[str]) -> str:
        name = m.group("name")
        table = RESULTS / f"{name}.md"
        if not table.exists():
            missing.append(name)
            return m.group(0)
        return m.group(1) + _stamp(name) + table.read_text().rstrip("\n") + "\n" + m.group(4)

    return MARKED.sub(fill, text), missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether the page is up to date")
    args = parser.parse_args()
    old = DOC.read_text()
    new, missing = render(old)
    for name in missing:
        print(f"no benchmarks/results/{name}.md: that table is left as it is (run benchmarks/{name}.py)")
    if args.check:
        print("docs/benchmarks.md is up to date" if new == old else "docs/benchmarks.md differs from the results")
        return 0 if new == old else 1
    DOC.write_text(new)
    print(f"wrote {DOC.relative_to(ROOT)}" if new != old else "docs/benchmarks.md was already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
