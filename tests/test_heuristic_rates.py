"""The value heuristics fire when right (issue 15, item 9): on the generated populations of
tests/heuristic_populations.py, detection is at least 0.95 from each heuristic's smallest input
and legitimate inputs never raise a false alarm, in float32, bfloat16 and float16.
(benchmarks/bench_heuristics.py measures the same with more draws for docs/guardrails.md.)"""

from __future__ import annotations

import pytest

from tests.heuristic_populations import DTYPES, MIN_ELEMENTS, POPULATIONS, SIZES, rate

TRIALS = 60


@pytest.mark.parametrize("pop", POPULATIONS, ids=lambda p: f"{p.heuristic}: {p.kind}: {p.name}")
def test_heuristic_rates(pop):
    for n in SIZES:
        for dtype in DTYPES:
            measured = rate(pop, n, dtype, TRIALS, seed=n)
            if pop.kind == "legitimate":
                assert measured == 0.0, (n, dtype, measured)
            elif n >= MIN_ELEMENTS[pop.heuristic]:
                assert measured >= 0.95, (n, dtype, measured)
