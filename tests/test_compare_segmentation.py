"""`losskit compare` on segmentation masks: the metrics against by-hand values and scikit-learn,
the candidates on masks with ignored pixels, the API on the shapes demo, and the command line on
generated PNG folders and on --dataset shapes (a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import losskit
from losskit import registry
from losskit.app.compare import candidates as cand
from losskit.app.compare.segmentation import image_strata, segmentation_metrics
from losskit.app.images import shapes
from losskit.tasks import Task

TINY = ["--folds", "2", "--repeats", "1", "--max-repeats", "1", "--epochs", "2"]


def _losskit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "losskit", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


# --------------------------------------------------------------------------- metrics


def test_segmentation_metrics_match_a_by_hand_example():
    # two 2x3 images, classes 0, 1, 2 and a class 3 that never occurs; 255 is ignored
    target = torch.tensor([[[0, 0, 1], [1, 1, 255]], [[0, 2, 2], [0, 0, 255]]])
    pred = torch.tensor([[[0, 1, 1], [1, 0, 2]], [[0, 2, 0], [0, 0, 3]]])
    # pixels not ignored (10): (t, p) = (0,0) (0,1) (1,1) (1,1) (1,0) | (0,0) (2,2) (2,0) (0,0) (0,0)
    # class 0: TP 4, FP 2 (t=1 p=0, t=2 p=0), FN 1 (t=0 p=1)  -> IoU 4/7, Dice 8/11
    # class 1: TP 2, FP 1, FN 1                               -> IoU 2/4, Dice 4/6
    # class 2: TP 1, FP 0, FN 1                               -> IoU 1/2, Dice 2/3
    # class 3: predicted only on an ignored pixel             -> absent: NaN, not in the means
    m = segmentation_metrics(pred, target, 4, 255, ["bg", "a", "b", "never"])
    assert m["iou[bg]"] == pytest.approx(4 / 7)
    assert m["iou[a]"] == pytest.approx(0.5)
    assert m["iou[b]"] == pytest.approx(0.5)
    assert math.isnan(m["iou[never]"])
    assert m["mean_iou"] == pytest.approx((4 / 7 + 0.5 + 0.5) / 3)
    assert m["mean_dice"] == pytest.approx((8 / 11 + 4 / 6 + 2 / 3) / 3)
    assert m["pixel_accuracy"] == pytest.approx(7 / 10)


def test_segmentation_metrics_agree_with_scikit_learn_and_ignore_the_ignored_pixels():
    from sklearn.metrics import accuracy_score, f1_score, jaccard_score

    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 4, (6, 9, 7), generator=g)
    pred = torch.randint(0, 4, (6, 9, 7), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    m = segmentation_metrics(pred, target, 4, 255)
    keep = target != 255
    t, p = target[keep].numpy(), pred[keep].numpy()
    assert m["mean_iou"] == pytest.approx(jaccard_score(t, p, average="macro"))
    assert m["mean_dice"] == pytest.approx(f1_score(t, p, average="macro"))
    assert m["pixel_accuracy"] == pytest.approx(accuracy_score(t, p))
    for c, v in enumerate(jaccard_score(t, p, average=None)):
        assert m[f"iou[{c}]"] == pytest.approx(v)
    other = pred.clone()
    other[~keep] = (other[~keep] + 1) % 4  # predictions on ignored pixels do not count
    assert segmentation_metrics(other, target, 4, 255) == m


def test_image_strata_mark_the_images_with_the_rarest_class():
    masks = torch.zeros(4, 3, 3, dtype=torch.long)
    masks[:, 0, :] = 1  # class 1 in every image: 3 pixels each
    masks[2, 2, 2] = 2  # class 2: one pixel, in image 2 only
    masks[3, 1, 1] = 255
    strata, rare = image_strata(masks, 3, 255)
    assert rare == "2"
    assert strata.tolist() == [0, 0, 1, 0]


# --------------------------------------------------------------------------- candidates


@pytest.mark.parametrize("name", list(registry.candidates_for(Task.segmentation)))
def test_every_segmentation_candidate_ignores_the_ignored_pixels(name):
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 3, (2, 5, 6), generator=g)
    masks[:, 0, :2] = 255
    logits = torch.randn(2, 3, 5, 6, generator=g, requires_grad=True)
    loss_fn = cand.build(Task.segmentation, name, masks, 3, ignore_index=255)
    loss = loss_fn(logits, masks)
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None
    # no gradient reaches an ignored pixel's logits, some reaches the others
    assert torch.equal(logits.grad[:, :, 0, :2], torch.zeros(2, 3, 2))
    assert logits.grad[:, :, 1:, :].abs().sum() > 0


def test_class_weights_come_from_the_pixel_frequencies():
    masks = torch.tensor([[[0, 0, 0, 1], [0, 0, 2, 255]]])  # 5 x class 0, 1 x class 1, 1 x class 2
    loss_fn = cand.build(Task.segmentation, "cross_entropy+class_weights", masks, 3, ignore_index=255)
    # balanced: n / (C n_c) = 7 / (3 * 5), 7 / 3, 7 / 3
    torch.testing.assert_close(loss_fn.weight, torch.tensor([7 / 15, 7 / 3, 7 / 3]))


# --------------------------------------------------------------------------- the API


def test_compare_on_a_segmentation_set():
    data = shapes(n=30, size=16, seed=1)
    result = losskit.compare(
        data, folds=2, repeats=1, max_repeats=1, epochs=2, losses="cross_entropy,cross_entropy+dice", jobs=1
    )
    p = result.payload
    assert p["task"] == "segmentation"
    assert p["primary_metric"] == "mean_iou"
    assert p["main_metrics"] == ["mean_iou", "mean_dice"]
    assert p["settings"]["model"] == "unet" and p["settings"]["ignore_index"] == 255
    assert p["baselines"] == [] and any("no scikit-learn baselines" in n for n in p["notes"])
    entry = p["results"][0]
    assert {"mean_iou", "mean_dice", "pixel_accuracy", "iou[triangle]"} <= set(entry["metrics"])
    # the folds are over images: every image is predicted once out of fold, as a whole mask
    oof = result.run.oof["cross_entropy"]
    assert oof.shape == (30, 16, 16) and not torch.isnan(oof).any()
    # fold metrics recomputed from the out-of-fold masks of the test images of fold 1
    from losskit.app.compare.data import make_folds

    split = make_folds(result.run.data, 2, 1, 0)[0]
    again = segmentation_metrics(oof[split.test].long(), data.masks[split.test], 4, 255, data.class_names)
    assert entry["folds"][0]["mean_iou"] == pytest.approx(again["mean_iou"])


def test_masks_with_an_unknown_class_id_are_refused():
    x = torch.rand(24, 1, 6, 6)
    masks = torch.zeros(24, 6, 6, dtype=torch.long)
    masks[3, 2, 2] = 7
    masks[:, 0, 0] = 1
    from losskit.app.images import SegmentationSet

    data = SegmentationSet(x, masks, ["bg", "fg"], 255, [f"m{i}" for i in range(24)], [], "tiny")
    with pytest.raises(losskit.LossInputError, match="class id 7, but there are 2 class names"):
        losskit.compare(data, folds=2, repeats=1, epochs=1)


# --------------------------------------------------------------------------- the command line


def _write_segmentation_folders(root: Path, n: int = 16) -> tuple[Path, Path]:
    from PIL import Image

    data = shapes(n=n, size=16, seed=2)
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(n):
        rgb = (data.x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(images / f"img{i:02d}.png")
        Image.fromarray(data.masks[i].numpy().astype(np.uint8), "L").save(masks / f"img{i:02d}.png")
    (masks / "classes.txt").write_text("\n".join(data.class_names) + "\n")
    return images, masks


def test_cli_on_png_folders_and_bad_masks(tmp_path):
    images, masks = _write_segmentation_folders(tmp_path, n=20)
    out = tmp_path / "report"
    done = _losskit(
        "compare", "--images", str(images), "--masks", str(masks), "--losses", "cross_entropy,dice",
        *TINY, "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["task"] == "segmentation" and payload["n_rows"] == 20
    assert [r["loss"] for r in payload["results"]] == ["cross_entropy", "dice"]
    assert (out / "segmentation.png").stat().st_size > 0
    html = (out / "report.html").read_text()
    assert 'id="iou"' in html and "triangle" in html
    assert "IoU per class" in done.stdout

    # a mask id beyond the classes: one line naming the file, exit 2, no report folder
    from PIL import Image

    bad = np.zeros((16, 16), dtype=np.uint8)
    bad[3, 3] = 9
    Image.fromarray(bad, "L").save(masks / "img05.png")
    out2 = tmp_path / "never"
    done = _losskit("compare", "--images", str(images), "--masks", str(masks), *TINY, "--out", str(out2), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "img05.png" in lines[0], done.stderr
    assert not out2.exists()


def test_cli_dataset_shapes(tmp_path):
    out = tmp_path / "shapes-report"
    done = _losskit(
        "compare", "--dataset", "shapes", "--image-size", "16", "--losses", "cross_entropy,focal", *TINY,
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["dataset"] == "shapes" and payload["task"] == "segmentation"
    assert payload["settings"]["sample_shape"] == [3, 16, 16]
    assert {"iou[background]", "iou[square]", "iou[disc]", "iou[triangle]"} <= set(payload["results"][0]["metrics"])
    for png in ("segmentation.png", "curves.png"):
        assert (out / png).stat().st_size > 0


def test_the_example_runs(tmp_path):
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "compare_segmentation.py"), "--quick", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "IoU triangle" in done.stdout and "tversky" in done.stdout
    assert (tmp_path / "r" / "segmentation.png").exists()
