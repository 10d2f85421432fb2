"""Bundled offline image data: scikit-learn's digits as images, and generated shapes with masks."""

from __future__ import annotations

from typing import Any

from losskit.app.images.sets import ImageSet, SegmentationSet
from losskit.errors import LossInputError

__all__ = ["digits_images", "shapes", "SHAPES_CLASSES", "CLASS_COLOURS"]

SHAPES_CLASSES = ("background", "square", "disc", "triangle")

#: each object class's typical RGB colour; every object's colour is jittered by up to ±0.15 per
#: channel, so a triangle (orange) can look like a square (red): its size and shape tell it apart
CLASS_COLOURS = {1: (0.85, 0.3, 0.3), 2: (0.3, 0.45, 0.85), 3: (0.9, 0.55, 0.25)}


def digits_images() -> ImageSet:
    """scikit-learn's 1797 handwritten digits as ``(1797, 1, 8, 8)`` images in ``[0, 1]``.

    ``x = load_digits().images / 16`` (the pixels are counts 0..16), one channel; ``y`` the digit,
    ``class_names`` ``"0" .. "9"``. Bundled with scikit-learn: nothing is downloaded.

    Example:
        >>> data = digits_images()
        >>> tuple(data.x.shape), data.class_names[:3]
        ((1797, 1, 8, 8), ['0', '1', '2'])
    """
    import torch
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)
    return ImageSet(
        x=x,
        y=torch.from_numpy(bunch.target).long(),
        class_names=[str(int(t)) for t in bunch.target_names],
        files=[f"digits[{i}]" for i in range(len(x))],
        notes=[],
        name="digits",
    )


def _border(obj: Any) -> Any:
    """The pixels of ``obj`` (a boolean mask) with a 4-neighbour outside it."""
    import numpy as np

    padded = np.pad(obj, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return obj & ~inner


def _draw(rng: Any, size: int) -> tuple[Any, Any]:
    """One image ``(3, size, size)`` float and its mask ``(size, size)`` int64."""
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # background: a greyish base colour, a slow random wave (texture) and pixel noise
    base = rng.uniform(0.3, 0.6) + rng.uniform(-0.05, 0.05, 3)
    wave = np.sin(xx * rng.uniform(0.15, 0.5) + yy * rng.uniform(0.15, 0.5) + rng.uniform(0, 2 * np.pi))
    image = base[:, None, None] + 0.12 * wave[None] * rng.choice([-1.0, 1.0], 3)[:, None, None]
    mask = np.zeros((size, size), dtype=np.int64)
    ignore = np.zeros((size, size), dtype=bool)

    def paint(obj: Any, label: int, with_border: bool) -> None:
        colour = np.asarray(CLASS_COLOURS[label]) + rng.uniform(-0.15, 0.15, 3)
        image[:, obj] = colour[:, None]
        mask[obj] = label
        ignore[obj] = False
        if with_border:
            ignore[_border(obj)] = True

    for _ in range(rng.integers(1, 3)):  # 1-2 squares
        side = int(rng.integers(size // 5, size // 3 + 1))
        top, left = rng.integers(0, size - side, 2)
        obj = (yy >= top) & (yy < top + side) & (xx >= left) & (xx < left + side)
        paint(obj, 1, True)
    for _ in range(rng.integers(0, 3)):  # 0-2 discs
        radius = rng.uniform(size / 10, size / 6)
        cy, cx = rng.uniform(radius, size - radius, 2)
        paint((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2, 2, True)
    if rng.random() < 0.3:  # the rare class: 1-2 small triangles in about 30 % of the images
        for _ in range(rng.integers(1, 3)):
            h = int(rng.integers(3, 5))
            for _attempt in range(20):  # on background only, so it is never hidden
                top, left = rng.integers(1, size - h - 1, 2)
                rows = yy - top
                obj = (rows >= 0) & (rows < h) & (np.abs(xx - left - h + 1) <= rows)
                if not (mask[obj].any() or ignore[obj].any()):
                    paint(obj, 3, False)
                    break
    image = image + rng.normal(0.0, 0.06, image.shape)
    mask[ignore] = 255
    return np.clip(image, 0.0, 1.0), mask


def shapes(n: int = 200, size: int = 32, seed: int = 0) -> SegmentationSet:
    """A generated segmentation set with a rare small class: squares, discs and a few small triangles.

    Each ``size × size`` RGB image has a textured greyish background (a base grey, a random slow
    wave, Gaussian noise σ = 0.06), 1-2 reddish squares (side ``size/5 .. size/3``), 0-2 bluish
    discs (radius ``size/10 .. size/6``) and — in about 30 % of the images only — 1-2 small orange
    triangles (height 3-4 pixels, 9-16 pixels each) on the background: the **rare class**. Colours
    are jittered (:data:`CLASS_COLOURS` ± 0.15 per channel) so that a triangle's colour overlaps a
    square's: size and shape tell them apart. As in Pascal VOC, the 1-pixel border of
    every square and disc is ``255`` (ignored); the triangles have no border (they would vanish).

    Pixel shares for the defaults (``n=200, size=32, seed=0``), measured: background 85.1 %,
    square 5.2 %, disc 3.4 %, triangle 0.54 % (in 60 of the 200 images), ignored 5.9 %. So few
    triangle pixels make cross-entropy under-segment them; class weights, Dice, focal or Tversky losses
    are what help — the question ``losskit compare --dataset shapes`` answers.

    Deterministic for a given ``seed`` (numpy's ``default_rng``); generated in about 0.1 s for the
    default 200 images (measured on one core); nothing is downloaded.

    Args:
        n: number of images (≥ 10).
        size: height and width in pixels (≥ 16).
        seed: the random seed.

    Returns:
        A :class:`SegmentationSet`: ``x`` ``(n, 3, size, size)`` float32 in ``[0, 1]``, ``masks``
        ``(n, size, size)`` int64 with ids 0-3 and 255, ``class_names`` ``background, square,
        disc, triangle``.

    Example:
        >>> data = shapes(n=20, size=32, seed=1)
        >>> tuple(data.x.shape), tuple(data.masks.shape), data.class_names
        ((20, 3, 32, 32), (20, 32, 32), ['background', 'square', 'disc', 'triangle'])
    """
    import numpy as np
    import torch

    for argument, value, least in (("n", n, 10), ("size", size, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise LossInputError(
                f"shapes: {argument} is {value!r}; expected an int ≥ {least}. Pass e.g. n=200, size=32."
            )
    rng = np.random.default_rng(seed)

    drawn = [_draw(rng, size) for _ in range(n)]
    x = torch.from_numpy(np.stack([d[0] for d in drawn])).float()
    masks = torch.from_numpy(np.stack([d[1] for d in drawn]))
    return SegmentationSet(
        x=x,
        masks=masks,
        class_names=list(SHAPES_CLASSES),
        ignore_index=255,
        files=[f"shapes[{i}]" for i in range(n)],
        notes=[],
        name="shapes",
    )
