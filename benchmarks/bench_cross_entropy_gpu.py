"""``cross_entropy`` on a GPU against torch: the table of ``bench_losses.py``, on the device.

    .venv/bin/python benchmarks/bench_cross_entropy_gpu.py                        # on CUDA
    .venv/bin/python benchmarks/bench_cross_entropy_gpu.py --device cpu --quick   # a smoke run anywhere

The cross-entropy configs of ``bench_losses.py`` (2048 x 32768, 8192 x 32000, segmentation) with
the same columns: time against torch idle and beside one and two busy host processes (they slow
the host thread that launches the kernels), the ATen operations of one call (about the kernel
launches: constant in N on this path, see ``tests/autograd/test_cross_entropy.py``), and peak
memory from ``torch.cuda.max_memory_allocated`` above the inputs. Any other option of
``bench_losses.py`` passes through (``--only``, ``--busy``, ``--processes``, ``--repeats``).
Writes ``benchmarks/results/bench_cross_entropy_gpu.json`` and ``.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_losses  # after the path above


def main() -> None:
    argv = sys.argv[1:]
    if "--device" not in argv:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here: pass --device cpu (with --quick for a smoke run)")
        argv += ["--device", "cuda"]
    if "--only" not in argv:
        argv += ["--only", "cross_entropy"]
    if "--out" not in argv:
        argv += ["--out", str(bench_losses.ROOT / "benchmarks" / "results" / "bench_cross_entropy_gpu.json")]
    sys.argv = [sys.argv[0], *argv]
    bench_losses.main()


if __name__ == "__main__":
    main()
