"""``linear_cross_entropy`` with DTensor / FSDP2 weights across 2 and 3 gloo processes on
loopback, against single-process torch.

All cases of one world size run in one set of spawned processes (spawning and importing FSDP2
cost seconds), with a hard deadline: a hung collective fails the test instead of stalling CI.
The per-rank code is in tests/distributed_weight_workers.py.
"""

from __future__ import annotations

import sys

import pytest

from tests import distributed_weight_workers as workers
from tests._gloo import run_cases

DEADLINE_S = 180


def _run(world: int) -> tuple[dict[str, dict[int, str | None]], list[str]]:
    """Every case on ``world`` processes: ``{case: {rank: traceback or None}}`` and the
    measurements rank 0 reported."""
    return run_cases(workers, world, DEADLINE_S)


@pytest.mark.parametrize("world", [2, 3], ids=lambda w: f"world{w}")
def test_every_case_on_gloo_ranks(world):
    """One test per world size (not per case): under pytest-xdist a module-scoped fixture would be
    set up, and the processes spawned, once per xdist worker."""
    outcome, reports = _run(world)
    for line in reports:  # shown with pytest -s: the measured error of the naive .full_tensor()
        print(f"[world {world}] {line}", file=sys.stderr)
    failed = {case: {rank: err for rank, err in by_rank.items() if err} for case, by_rank in outcome.items()}
    failed = {case: errors for case, errors in failed.items() if errors}
    assert not failed, "\n".join(
        f"{case}, rank {r} of {world}:\n{e}" for case, errors in failed.items() for r, e in errors.items()
    )


def test_cases_cover_the_issue():
    assert set(workers.CASES) == {
        "case_replicated_weight_data_parallel",
        "case_sharded_weight_tensor_parallel",
        "case_sharded_weight_data_parallel",
        "case_fsdp2_fully_shard_gradients_equal_one_process",
        "case_tiny_vocabulary_leaves_a_rank_without_classes",
        "case_unsupported_layouts_raise",
    }


def test_plain_tensors_import_nothing_distributed():
    """Without DTensor arguments the dispatch is one ``sys.modules`` lookup: neither DTensor's
    module nor losskit.distributed gets imported."""
    import subprocess
    import textwrap

    code = """
        import sys
        import torch
        import losskit.functional as LF
        h, W, y = torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 4, 2])
        loss = LF.linear_cross_entropy(h, W, y)
        print(sorted(m for m in ("torch.distributed.tensor", "losskit.distributed") if m in sys.modules))
        # (after the check: torch.testing imports torch.distributed.tensor itself)
        torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(h @ W.T, y))
        """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
