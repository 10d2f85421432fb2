"""losskit compare on a Ray cluster: the same comparison, its fits sent to Ray as tasks.

With ``RAY_ADDRESS`` set (``ray://head:10001``, after ``ray start --head`` on the head node) the
fits go to that cluster; without it, a local Ray instance with ``--jobs`` CPUs is started and
shut down. The report is the same byte for byte as with ``jobs=1`` or local worker processes.

.venv/bin/pip install -e ".[cli,ray]"
.venv/bin/python examples/compare_on_ray.py                # wine, the default design
.venv/bin/python examples/compare_on_ray.py --quick        # a smoke run (seconds, no verdict)
"""

from __future__ import annotations

import argparse

from sklearn.datasets import load_wine

import losskit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, no verdict")
    parser.add_argument("--jobs", type=int, default=2, help="CPUs of a local Ray instance (default 2)")
    parser.add_argument("--out", default="ray-report", help="report folder (default ray-report)")
    args = parser.parse_args()

    x, y = load_wine(return_X_y=True)
    design = dict(folds=2, repeats=1, max_repeats=1, epochs=3, baselines=False) if args.quick else {}
    result = losskit.compare(x, y, backend="ray", jobs=args.jobs, **design)
    print(f"fits ran on {result.run.execution['engine']}")
    print(result.recommendation["text"])
    print(f"report: {result.save(args.out)}")


if __name__ == "__main__":
    main()
