"""Which loss for a segmentation model with a rare small class? losskit compare on the shapes demo.

The shapes set is generated offline: squares, discs and, in about a third of the images, small
triangles that hold under 1 % of the pixels. Cross-entropy, class-weighted cross-entropy, Dice,
cross-entropy + Dice, focal and Tversky each train the same small U-Net on the same folds (cut over
images); each is decided against cross-entropy on the mean IoU, and the report shows test images
with every loss's predicted masks.

.venv/bin/python examples/compare_segmentation.py                # the full comparison (~3 min, 2 cores)
.venv/bin/python examples/compare_segmentation.py --quick        # a smoke run (seconds, no verdict)
"""

from __future__ import annotations

import argparse

import losskit
from losskit.app.images import shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, no verdict")
    parser.add_argument("--out", default="shapes-report", help="report folder (default shapes-report)")
    args = parser.parse_args()

    data = shapes(n=40, size=16) if args.quick else shapes(size=24)  # 200 images, as --dataset shapes
    design = dict(folds=2, repeats=1, max_repeats=1, epochs=2) if args.quick else {}
    result = losskit.compare(data, ignore_index=data.ignore_index, **design)

    rare = data.class_names[-1]  # "triangle"
    print(f"{'loss':<28} {'mean IoU':>9} {'IoU ' + rare:>13}  decision vs cross_entropy")
    for entry in result.payload["results"]:
        decision = (entry.get("versus_plain") or {}).get("decision", "reference")
        if entry["same_as"]:
            decision = f"same model as {entry['same_as']}"
        m = entry["metrics"]
        print(f"{entry['loss']:<28} {m['mean_iou']:>9.3f} {m[f'iou[{rare}]']:>13.3f}  {decision}")
    print(result.recommendation["text"])
    out = result.save(args.out)
    print(f"report: {out / 'report.html'} (segmentation.png: test images and each loss's masks)")


if __name__ == "__main__":
    main()
