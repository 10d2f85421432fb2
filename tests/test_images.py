"""Image folders read with Pillow (class folders, images beside masks) and the bundled image demos.

Every folder is written here, file by file, with Pillow; expected pixels are derived by hand from
what was written (Pillow's documented conversions), never from the reader itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from losskit import LossInputError
from losskit.app.images import (
    ImageSet,
    SegmentationSet,
    digits_images,
    read_class_folders,
    read_segmentation_folders,
    shapes,
)


def _save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _rgb(path: Path, colour=(255, 0, 0), size=(10, 8)) -> Path:
    """``size`` is Pillow's (width, height)."""
    return _save(path, Image.new("RGB", size, colour))


def _gray(path: Path, value=128, size=(10, 8)) -> Path:
    return _save(path, Image.new("L", size, value))


def _mask(path: Path, ids: np.ndarray, mode: str = "L") -> Path:
    image = Image.fromarray(ids.astype(np.uint8))
    if mode == "P":
        image = image.convert("P")  # an L image converts to P with the identity palette: index = value
        assert np.array_equal(np.asarray(image), ids)
    return _save(path, image)


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- class folders ------------------------------------------------------------------------------


def test_class_folders_mixed_modes_become_the_majority_rgb_with_a_note(tmp_path):
    root = tmp_path / "pets"
    _rgb(root / "cat" / "1.png", (255, 0, 0))
    _gray(root / "cat" / "sub" / "2.PNG", 128)  # nested and upper-case ending: still read
    _rgb(root / "dog" / "3.png", (0, 0, 255))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1")
    _rgb(root / "dog" / ".hidden.png")
    _rgb(root / ".cache" / "x.png")  # a hidden folder is no class
    before = _snapshot(root)

    data = read_class_folders(root)

    assert isinstance(data, ImageSet)
    assert data.class_names == ["cat", "dog"] and data.name == "pets"
    assert data.y.tolist() == [0, 0, 1] and data.y.dtype == torch.int64
    assert data.files == [str(root / "cat" / "1.png"), str(root / "cat" / "sub" / "2.PNG"), str(root / "dog" / "3.png")]
    assert data.x.shape == (3, 3, 8, 10) and data.x.dtype == torch.float32
    # grey 128 becomes three equal channels 128/255; the RGB images keep their colours exactly
    torch.testing.assert_close(data.x[1], torch.full((3, 8, 10), 128 / 255))
    torch.testing.assert_close(data.x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(data.x[2, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert data.notes == ["1 of 3 images converted to RGB (the majority mode): 1 L"]
    assert _snapshot(root) == before


def test_class_folders_majority_grey_turns_rgb_into_luma(tmp_path):
    root = tmp_path / "d"
    _gray(root / "a" / "1.png", 10)
    _gray(root / "a" / "2.png", 20)
    _rgb(root / "b" / "3.png", (255, 0, 0))

    data = read_class_folders(root)

    assert data.x.shape == (3, 1, 8, 10)
    # ITU-R 601 luma as Pillow computes it: (255·19595 + 0x8000) >> 16 = 76
    assert round(float(data.x[2, 0, 0, 0]) * 255) == 76
    assert round(float(data.x[0, 0, 0, 0]) * 255) == 10
    assert data.notes == ["1 of 3 images converted to L (the majority mode): 1 RGB"]


def test_transparency_palette_and_16_bit_grey_are_converted(tmp_path):
    root = tmp_path / "d"
    rgba = np.zeros((8, 10, 4), dtype=np.uint8)
    rgba[:, :5] = (0, 255, 0, 255)  # left half opaque green, right half fully transparent black
    _save(root / "a" / "alpha.png", Image.fromarray(rgba))
    palette = Image.new("P", (10, 8), 0)
    palette.putpalette([0, 0, 255] + [0, 0, 0] * 255)  # index 0 shows blue
    _save(root / "a" / "palette.png", palette)
    _rgb(root / "b" / "plain.png", (1, 2, 3))
    deep = np.full((8, 10), 65535, dtype=np.uint16)
    deep[:, 5:] = 32896  # 32896 / 65535 · 255 = 128 exactly
    _save(root / "b" / "deep.png", Image.fromarray(deep))

    data = read_class_folders(root)

    order = [Path(f).name for f in data.files]
    assert order == ["alpha.png", "palette.png", "deep.png", "plain.png"]
    alpha, pal, grey = data.x[0], data.x[1], data.x[2]
    torch.testing.assert_close(alpha[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(alpha[:, 0, 9], torch.tensor([1.0, 1.0, 1.0]))  # transparent: on white
    torch.testing.assert_close(pal[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(grey[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(grey[:, 0, 9], torch.full((3,), 128 / 255))
    assert len(data.notes) == 1 and data.notes[0].startswith("3 of 4 images converted to RGB (the majority mode): ")
    assert "1 RGBA (transparency composited on white)" in data.notes[0] and "1 P" in data.notes[0]


def test_sizes_differ_resize_to_the_most_common_or_to_image_size(tmp_path):
    root = tmp_path / "d"
    _rgb(root / "a" / "1.png", (40, 80, 120), size=(10, 8))
    _rgb(root / "a" / "2.png", (40, 80, 120), size=(10, 8))
    _rgb(root / "b" / "3.png", (40, 80, 120), size=(6, 6))

    common = read_class_folders(root)
    assert common.x.shape == (3, 3, 8, 10)
    # a plain colour stays that colour under bilinear resampling
    torch.testing.assert_close(
        common.x[2], torch.tensor([40, 80, 120]).div(255).float()[:, None, None].expand(3, 8, 10)
    )
    assert common.notes == [
        "1 of 3 images resized to 8×10, the most common size (sizes found: 6×6, 8×10); pass image_size (--image-size) to choose"
    ]

    square = read_class_folders(root, image_size=4)
    assert square.x.shape == (3, 3, 4, 4) and square.notes == ["3 of 3 images resized to 4×4 (image_size)"]
    assert read_class_folders(root, image_size=(5, 7)).x.shape == (3, 3, 5, 7)


@pytest.mark.parametrize("image_size", [0, -3, (4,), (4, 0), 2.5, "32", True])
def test_a_bad_image_size_is_refused(tmp_path, image_size):
    _rgb(tmp_path / "a" / "1.png")
    _rgb(tmp_path / "b" / "2.png")
    with pytest.raises(LossInputError, match="image_size is .*; expected a positive int"):
        read_class_folders(tmp_path, image_size=image_size)


# --- segmentation folders -------------------------------------------------------------------------


def test_segmentation_masks_l_and_p_with_class_names_and_ignore_kept(tmp_path):
    images, masks = tmp_path / "voc" / "images", tmp_path / "voc" / "masks"
    a = np.array([[0, 1, 1, 0], [0, 2, 2, 255], [0, 0, 0, 255]])
    b = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [255, 0, 2, 2]])
    _rgb(images / "a.jpg", (10, 20, 30), size=(4, 3))
    _rgb(images / "b.png", (10, 20, 30), size=(4, 3))
    _mask(masks / "a.png", a, "L")
    _mask(masks / "b.png", b, "P")
    (masks / "classes.txt").write_text("background\ncar\nperson\n\n")
    before = _snapshot(tmp_path)

    data = read_segmentation_folders(images, masks)

    assert isinstance(data, SegmentationSet)
    assert data.class_names == ["background", "car", "person"] and data.ignore_index == 255
    assert data.name == "voc" and data.files == [str(images / "a.jpg"), str(images / "b.png")]
    assert data.x.shape == (2, 3, 3, 4) and data.masks.dtype == torch.int64
    assert data.masks.tolist() == [a.tolist(), b.tolist()]
    assert data.notes == []
    assert _snapshot(tmp_path) == before


def test_masks_resize_by_nearest_neighbour_keep_only_their_ids(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    ids = np.array([[0, 2, 0, 2], [2, 0, 2, 0], [1, 255, 1, 255], [0, 1, 0, 1]])
    _rgb(images / "x.png", size=(4, 4))
    _mask(masks / "x.png", ids)

    up = read_segmentation_folders(images, masks, image_size=8)
    # nearest neighbour by 2: every pixel becomes a 2×2 block
    assert up.masks[0].tolist() == np.kron(ids, np.ones((2, 2), dtype=int)).tolist()
    assert up.class_names == ["background", "class 1", "class 2"]

    down = read_segmentation_folders(images, masks, image_size=2)
    # Pillow samples the source pixel under each target pixel's centre: (0.5 · 2, 1.5 · 2) = (1, 3)
    assert down.masks[0].tolist() == ids[1::2, 1::2].tolist() == [[0, 0], [1, 1]]
    # a bilinear resize of this checkerboard of 0 and 2 would give 1; nearest never invents an id
    wide = read_segmentation_folders(images, masks, image_size=(3, 5))
    assert set(wide.masks.unique().tolist()) <= {0, 1, 2, 255}


def test_num_classes_and_absent_classes_note(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _rgb(images / "x.png", size=(3, 2))
    _mask(masks / "x.png", np.array([[0, 0, 3], [0, 3, 3]]))

    data = read_segmentation_folders(images, masks, num_classes=5)
    assert data.class_names == ["background", "class 1", "class 2", "class 3", "class 4"]
    assert data.notes == ["classes in no mask: class 1, class 2, class 4"]


# --- every bad input: one line naming the file, nothing changed -------------------------------------


def _truncated_png(path: Path) -> Path:
    _rgb(path, (200, 100, 50), size=(32, 32))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return path


def _class_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A valid two-class folder; returns (root, a file of class b)."""
    root = tmp_path / "cls"
    _rgb(root / "a" / "1.png")
    return root, _rgb(root / "b" / "2.png")


def _seg_pair(tmp_path: Path, n: int = 2) -> tuple[Path, Path]:
    images, masks = tmp_path / "seg" / "images", tmp_path / "seg" / "masks"
    for i in range(n):
        _rgb(images / f"{i}.png", size=(4, 3))
        _mask(masks / f"{i}.png", np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]))
    return images, masks


def _unreadable(tmp_path):
    root, _ = _class_pair(tmp_path)
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"this is not a png")
    return lambda: read_class_folders(root), [str(bad), "cannot be read"]


def _truncated_image(tmp_path):
    root, _ = _class_pair(tmp_path)
    bad = _truncated_png(root / "b" / "cut.png")
    return lambda: read_class_folders(root), [str(bad), "cannot be read"]


def _truncated_segmentation_image(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = _truncated_png(images / "0.png")
    _mask(masks / "0.png", np.zeros((32, 32)))  # the header's size matches: the pixels are cut
    return lambda: read_segmentation_folders(images, masks), [str(bad), "cannot be read"]


def _truncated_mask(tmp_path):
    images, masks = _seg_pair(tmp_path)
    _rgb(images / "big.png", size=(32, 32))
    ids = np.random.default_rng(0).integers(0, 2, (32, 32))
    bad = _mask(masks / "big.png", ids)
    bad.write_bytes(bad.read_bytes()[:-40])
    return lambda: read_segmentation_folders(images, masks), [str(bad), "mask", "cannot be read"]


def _empty_class_folder(tmp_path):
    root, _ = _class_pair(tmp_path)
    empty = root / "c"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    return lambda: read_class_folders(root), [str(empty), "holds no image"]


def _one_class_only(tmp_path):
    root = tmp_path / "cls"
    _rgb(root / "only" / "1.png")
    return lambda: read_class_folders(root), [str(root), "1 class folder ('only')", "at least 2"]


def _flat_folder(tmp_path):
    root = tmp_path / "flat"
    _rgb(root / "1.png")
    _rgb(root / "2.png")
    return lambda: read_class_folders(root), [str(root), "0 class folders and 2 images directly inside it"]


def _id_beyond_classes_txt(tmp_path):
    images, masks = _seg_pair(tmp_path)
    (masks / "classes.txt").write_text("background\nroad\n")
    bad = _mask(masks / "1.png", np.array([[0, 1, 1, 0], [0, 1, 7, 0], [0, 0, 0, 0]]))
    return lambda: read_segmentation_folders(images, masks), [str(bad), "holds the id 7", "0..1"]


def _id_beyond_num_classes(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = _mask(masks / "0.png", np.array([[0, 1, 1, 0], [0, 1, 3, 0], [0, 0, 0, 254]]))
    return lambda: read_segmentation_folders(images, masks, num_classes=3), [
        str(bad),
        "holds the id 3",
        "num_classes=3",
    ]


def _size_mismatch(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = _mask(masks / "1.png", np.zeros((3, 5)))
    return lambda: read_segmentation_folders(images, masks), [str(images / "1.png"), str(bad), "3×4", "3×5"]


def _mask_without_image(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = _mask(masks / "orphan.png", np.zeros((3, 4)))
    return lambda: read_segmentation_folders(images, masks), [str(bad), "has no image"]


def _image_without_mask(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = _rgb(images / "lonely.jpg", size=(4, 3))
    return lambda: read_segmentation_folders(images, masks), [str(bad), "has no mask", "lonely.png"]


def _rgb_mask(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = _rgb(masks / "1.png", (128, 0, 0), size=(4, 3))  # VOC's colour for class 1, saved as RGB
    return lambda: read_segmentation_folders(images, masks), [str(bad), "mode RGB", "class ids", "mode L or P"]


def _jpeg_mask(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = _save(masks / "2.jpg", Image.new("L", (4, 3)))
    _rgb(images / "2.png", size=(4, 3))
    return lambda: read_segmentation_folders(images, masks), [str(bad), "JPEG"]


def _bad_classes_txt(tmp_path):
    images, masks = _seg_pair(tmp_path)
    bad = masks / "classes.txt"
    bad.write_text("background\n\nroad\n")
    return lambda: read_segmentation_folders(images, masks), [str(bad), "empty name on line 2"]


def _only_background(tmp_path):
    images, masks = _seg_pair(tmp_path, n=1)
    _mask(masks / "0.png", np.array([[0, 0, 0, 0], [0, 0, 255, 0], [0, 0, 0, 0]]))
    return lambda: read_segmentation_folders(images, masks), [str(masks), "only class 0"]


BAD_INPUTS: dict[str, Callable] = {
    "unreadable file": _unreadable,
    "truncated PNG": _truncated_image,
    "truncated PNG beside a mask": _truncated_segmentation_image,
    "truncated mask": _truncated_mask,
    "empty class folder": _empty_class_folder,
    "one class only": _one_class_only,
    "images but no class folder": _flat_folder,
    "mask id beyond classes.txt": _id_beyond_classes_txt,
    "mask id beyond num_classes": _id_beyond_num_classes,
    "image and mask sizes differ": _size_mismatch,
    "mask without image": _mask_without_image,
    "image without mask": _image_without_mask,
    "RGB mask": _rgb_mask,
    "JPEG mask": _jpeg_mask,
    "blank line in classes.txt": _bad_classes_txt,
    "masks hold background only": _only_background,
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_input_names_the_file_on_one_line_and_changes_nothing(tmp_path, case):
    call, expected = BAD_INPUTS[case](tmp_path)
    before = _snapshot(tmp_path)

    with pytest.raises(LossInputError) as caught:
        call()

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(("read_class_folders: ", "read_segmentation_folders: "))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert _snapshot(tmp_path) == before


def test_missing_folders_and_bad_options_are_named(tmp_path):
    with pytest.raises(LossInputError, match=r"root '.*nowhere' does not exist"):
        read_class_folders(tmp_path / "nowhere")
    images, masks = _seg_pair(tmp_path)
    with pytest.raises(LossInputError, match=r"masks '.*0.png' is a file, not a folder"):
        read_segmentation_folders(images, masks / "0.png")
    with pytest.raises(LossInputError, match="ignore_index is 1, a class id"):
        read_segmentation_folders(images, masks, ignore_index=1, num_classes=3)
    with pytest.raises(LossInputError, match="num_classes is 1; expected an int ≥ 2"):
        read_segmentation_folders(images, masks, num_classes=1)
    (masks / "classes.txt").write_text("background\nroad\nsky\n")
    with pytest.raises(LossInputError, match="num_classes is 2 but .*classes.txt' names 3 classes"):
        read_segmentation_folders(images, masks, num_classes=2)


# --- the bundled demos --------------------------------------------------------------------------------


def test_digits_images_are_sklearns_digits_over_16():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = digits_images()
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == torch.float32
    np.testing.assert_array_equal(data.x[:, 0].numpy(), (bunch.images / 16).astype(np.float32))
    np.testing.assert_array_equal(data.y.numpy(), bunch.target)
    assert data.class_names == [str(i) for i in range(10)] and data.name == "digits"
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0


def test_shapes_is_deterministic_per_seed():
    a, b, c = shapes(seed=3), shapes(seed=3), shapes(seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, c.masks)


def test_shapes_has_the_documented_classes_and_a_rare_small_class():
    data = shapes()
    assert data.x.shape == (200, 3, 32, 32) and data.x.dtype == torch.float32
    assert data.masks.shape == (200, 32, 32) and data.masks.dtype == torch.int64
    assert float(data.x.min()) >= 0.0 and float(data.x.max()) <= 1.0
    assert data.class_names == ["background", "square", "disc", "triangle"] and data.ignore_index == 255
    assert set(data.masks.unique().tolist()) == {0, 1, 2, 3, 255}
    # the shares the docstring of shapes() states for the defaults, in per cent
    shares = {k: round(float((data.masks == k).float().mean()) * 100, 2) for k in (0, 1, 2, 3, 255)}
    assert shares == {0: 85.07, 1: 5.16, 2: 3.38, 3: 0.54, 255: 5.86}
    with_triangle = int((data.masks == 3).flatten(1).any(1).sum())
    assert with_triangle == 60
    # rare: in a minority of the images, and small where present (at most 2 triangles of ≤ 16 pixels)
    per_image = (data.masks == 3).flatten(1).sum(1)
    assert int(per_image.max()) <= 32 and int(per_image[per_image > 0].min()) >= 9


@pytest.mark.parametrize(("argument", "value"), [("n", 5), ("size", 8), ("n", 2.0)])
def test_shapes_refuses_too_small_a_set(argument, value):
    with pytest.raises(LossInputError, match=f"shapes: {argument} is"):
        shapes(**{argument: value})
