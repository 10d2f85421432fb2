"""Folders of image files: one sub-folder per class, or an images folder beside a masks folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from losskit.app.images import decode
from losskit.app.images.sets import ImageSet, SegmentationSet
from losskit.errors import LossInputError

__all__ = ["read_class_folders", "read_segmentation_folders"]

#: masks are class ids: a lossy format changes them at every edge
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def _images_to_tensor(who: str, files: Sequence[Path], image_size: tuple[int, int] | None) -> tuple[Any, list[str]]:
    """``(N, C, H, W)`` float32 in ``[0, 1]`` and the notes: one mode (the majority), one size."""
    import numpy as np
    import torch

    headers = [decode.header(who, p) for p in files]
    modes = [m for m, _ in headers]
    sizes = [s for _, s in headers]
    target_mode = decode.majority_mode(modes)
    target_size = image_size or decode.common_size(sizes)
    channels = 1 if target_mode == "L" else 3
    pixels = np.empty((len(files), channels, *target_size), dtype=np.uint8)
    for i, path in enumerate(files):
        pixels[i] = decode.read_pixels(who, path, target_mode, target_size)
    notes = [
        n for n in (decode.conversion_note(modes, target_mode), decode.size_note(sizes, target_size, image_size)) if n
    ]
    return torch.from_numpy(pixels).float().div_(255.0), notes


def read_class_folders(root: str | Path, image_size: int | tuple[int, int] | None = None) -> ImageSet:
    """Images in one sub-folder per class (torchvision's ImageFolder layout), as an :class:`ImageSet`.

    ``root/cat/1.png, root/cat/2.jpg, root/dog/3.png`` gives the classes ``["cat", "dog"]`` (sorted
    folder names) and ``y = [0, 0, 1]``. A class folder is searched recursively; hidden files and
    folders are left out, and so are files whose ending is not an image's (png, jpg/jpeg, bmp,
    gif, tif/tiff, webp, any case). Nothing is written anywhere.

    Every image is decoded fully, so a truncated file is found here, not during training. The
    images are then brought to one mode and one size:

    - mode: the majority among RGB and grayscale (RGB on a tie). Grayscale becomes three equal
      channels or RGB becomes ``L`` (ITU-R 601 luma); transparency is composited on white; palette
      images become RGB; 16-bit grey is scaled to 8 bits. A note counts what was converted.
    - size: with ``image_size`` every image is resized to it (bilinear). Without it, images of
      another size than the most common one are resized to that size, with a note naming the
      sizes found — photos of a class folder rarely share one size, and refusing them would only
      make the user pick a size by hand; the note says how to choose it.

    No torch equivalent (torchvision's ``ImageFolder`` reads the same layout lazily).

    Args:
        root: the folder holding one sub-folder per class.
        image_size: ``s`` for ``s × s`` or ``(height, width)``; ``None`` keeps the most common size.

    Returns:
        An :class:`ImageSet`: ``x`` of shape ``(N, C, H, W)`` float32 in ``[0, 1]`` (``C`` = 1 or 3),
        ``y`` of shape ``(N,)`` int64, ``files`` in the order of ``x``, ``name`` the folder's name.

    Raises:
        LossInputError: ``root`` is not a folder; fewer than 2 class folders; an empty class folder
            (named); an image that cannot be decoded (named); a bad ``image_size``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name, colour in [("cat/1.png", "red"), ("cat/2.jpg", "orange"), ("dog/3.png", "blue")]:
        ...         (Path(tmp) / name).parent.mkdir(exist_ok=True)
        ...         Image.new("RGB", (40, 30), colour).save(Path(tmp) / name)
        ...     data = read_class_folders(tmp, image_size=16)
        >>> tuple(data.x.shape), data.class_names, data.y.tolist()
        ((3, 3, 16, 16), ['cat', 'dog'], [0, 0, 1])
    """
    import torch

    who = "read_class_folders"
    root = decode.check_folder(who, "root", root)
    size = decode.check_image_size(who, image_size)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = decode.image_files(root)
    if len(classes) < 2:
        found = (
            f"{len(classes)} class folder"
            + ("" if len(classes) == 1 else "s")
            + (f" ({classes[0].name!r})" if classes else "")
        )
        if loose:
            found += f" and {len(loose)} images directly inside it"
        raise LossInputError(
            f"{who}: root {str(root)!r} holds {found}; expected one sub-folder per class, at least 2 "
            "(root/cat/1.png, root/dog/2.png). Put each class's images in a folder named after the class."
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        inside = decode.image_files(folder, recursive=True)
        if not inside:
            raise LossInputError(
                f"{who}: class folder {str(folder)!r} holds no image; expected at least one "
                f"{'/'.join(s.lstrip('.') for s in decode.IMAGE_SUFFIXES)} file. Add its images or remove the folder."
            )
        files += inside
        labels += [label] * len(inside)
    x, notes = _images_to_tensor(who, files, size)
    if loose:
        notes.append(f"{len(loose)} images directly in {root.name}/ (outside any class folder) left out")
    return ImageSet(
        x=x,
        y=torch.tensor(labels, dtype=torch.int64),
        class_names=[p.name for p in classes],
        files=[str(p) for p in files],
        notes=notes,
        name=root.name,
    )


def _class_names_file(who: str, path: Path) -> list[str]:
    """The names of ``classes.txt``, one per line (trailing blank lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LossInputError(
            f"{who}: {str(path)!r} cannot be read ({exc}); expected UTF-8 text, one class name per line. Fix or remove it."
        ) from exc
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    blank = [i for i, n in enumerate(names) if not n]
    duplicate = sorted({n for n in names if names.count(n) > 1})
    if len(names) < 2 or blank or duplicate:
        problem = (
            f"{len(names)} name(s)"
            if len(names) < 2
            else f"an empty name on line {blank[0] + 1}"
            if blank
            else f"the name {duplicate[0]!r} twice"
        )
        raise LossInputError(
            f"{who}: {str(path)!r} has {problem}; expected one distinct name per line, line i naming class id i-1, "
            "at least 2 (background first). Fix the file."
        )
    return names


def _pairs(who: str, images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """Each image with the mask of the same stem; an image or a mask alone is an error."""

    def by_stem(files: list[Path], what: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in files:
            if p.stem in out:
                raise LossInputError(
                    f"{who}: {what}s {str(out[p.stem])!r} and {str(p)!r} share the stem {p.stem!r}; expected one {what} "
                    "per stem (masks pair with images by file name without its ending). Rename or remove one."
                )
            out[p.stem] = p
        return out

    image_by_stem = by_stem(decode.image_files(images), "image")
    mask_files = decode.image_files(masks)
    for p in mask_files:
        if p.suffix.lower() in LOSSY_SUFFIXES:
            raise LossInputError(
                f"{who}: mask {str(p)!r} is a JPEG; expected a PNG: JPEG compression changes class ids along "
                "every edge. Save the masks as PNG (mode L or P)."
            )
    mask_by_stem = by_stem(mask_files, "mask")
    if not image_by_stem:
        raise LossInputError(
            f"{who}: images folder {str(images)!r} holds no image; expected image files. Check the path."
        )
    for stem, mask in mask_by_stem.items():
        if stem not in image_by_stem:
            raise LossInputError(
                f"{who}: mask {str(mask)!r} has no image; expected an image named {stem}.<png|jpg|...> in "
                f"{str(images)!r}. Add the image or remove the mask."
            )
    for stem, image in image_by_stem.items():
        if stem not in mask_by_stem:
            raise LossInputError(
                f"{who}: image {str(image)!r} has no mask; expected {stem}.png in {str(masks)!r}. "
                "Add its mask or move the image out of the folder."
            )
    return [(image_by_stem[s], mask_by_stem[s]) for s in sorted(image_by_stem)]


def read_segmentation_folders(
    images: str | Path,
    masks: str | Path,
    image_size: int | tuple[int, int] | None = None,
    ignore_index: int = 255,
    num_classes: int | None = None,
) -> SegmentationSet:
    """Images and their class masks (same file stem) as a :class:`SegmentationSet`.

    ``images/a.jpg`` pairs with ``masks/a.png``. A mask holds one class id per pixel: mode ``L``
    (the grey value is the id) or ``P`` (the palette index is the id, as in Pascal VOC, whatever
    colour the palette shows); ``ignore_index`` (255) marks pixels that are not scored. The
    classes are ``0 .. num_classes-1``; when ``num_classes`` is ``None`` an optional
    ``classes.txt`` in the masks folder names them one per line (and thus gives their count),
    else they are ``0 ..`` the largest id seen, named ``"background", "class 1", ...``.

    Images are decoded fully and brought to one mode and size as in :func:`read_class_folders`;
    masks are resized by nearest neighbour only (interpolating ids would invent classes at
    edges), so a resized mask holds only ids of the original. Nothing is written anywhere.

    No torch equivalent.

    Args:
        images: the folder of images (png, jpg, bmp, gif, tif, webp; hidden files left out).
        masks: the folder of PNG masks, optionally with ``classes.txt``.
        image_size: ``s`` or ``(height, width)``: resize images (bilinear) and masks (nearest).
        ignore_index: the mask value of ignored pixels; kept as is in ``masks``.
        num_classes: the number of classes ``K``; ids must be ``< K`` or ``ignore_index``.

    Returns:
        A :class:`SegmentationSet`: ``x`` ``(N, C, H, W)`` float32 in ``[0, 1]``, ``masks``
        ``(N, H, W)`` int64, in the sorted order of the stems.

    Raises:
        LossInputError: naming the file, for: an unreadable or truncated image or mask; a mask
            without image or an image without mask; an image and mask of different sizes; a mask
            id that is neither a class nor ``ignore_index``; a colour (RGB) mask; a JPEG mask; a
            bad ``classes.txt``; fewer than 2 classes.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     images, masks = Path(tmp, "images"), Path(tmp, "masks")
        ...     images.mkdir()
        ...     masks.mkdir()
        ...     Image.new("RGB", (4, 2), "white").save(images / "a.jpg")
        ...     mask = Image.new("L", (4, 2), 0)  # background
        ...     mask.putpixel((1, 0), 1)  # one car pixel
        ...     mask.putpixel((3, 1), 255)  # one ignored pixel
        ...     mask.save(masks / "a.png")
        ...     _ = (masks / "classes.txt").write_text("background\\ncar\\n")
        ...     data = read_segmentation_folders(images, masks)
        >>> data.masks.tolist(), data.class_names
        ([[[0, 1, 0, 0], [0, 0, 0, 255]]], ['background', 'car'])
    """
    import numpy as np
    import torch

    who = "read_segmentation_folders"
    images = decode.check_folder(who, "images", images)
    masks = decode.check_folder(who, "masks", masks)
    size = decode.check_image_size(who, image_size)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise LossInputError(
            f"{who}: ignore_index is {ignore_index!r}; expected an int (255 as in VOC). Pass e.g. ignore_index=255."
        )
    names: list[str] | None = None
    names_file = masks / "classes.txt"
    if names_file.is_file():
        names = _class_names_file(who, names_file)
        if num_classes is not None and num_classes != len(names):
            raise LossInputError(
                f"{who}: num_classes is {num_classes} but {str(names_file)!r} names {len(names)} classes; expected "
                "the same count. Drop num_classes (the file decides) or fix the file."
            )
    elif num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise LossInputError(
            f"{who}: num_classes is {num_classes!r}; expected an int ≥ 2 (background and one class). Pass the count of classes."
        )
    limit = len(names) if names is not None else num_classes
    if limit is not None and 0 <= ignore_index < limit:
        raise LossInputError(
            f"{who}: ignore_index is {ignore_index}, a class id (classes 0..{limit - 1}); expected an id outside "
            "the classes. Use 255 (the usual value) or the value your masks use for unlabelled pixels."
        )

    pairs = _pairs(who, images, masks)
    ids: list[Any] = []
    seen: set[int] = set()
    for image, mask in pairs:
        _mode, image_hw = decode.header(who, image)
        mask_ids = decode.read_mask(who, mask)
        if mask_ids.shape != image_hw:
            raise LossInputError(
                f"{who}: image {str(image)!r} is {image_hw[0]}×{image_hw[1]} but its mask {str(mask)!r} is "
                f"{mask_ids.shape[0]}×{mask_ids.shape[1]} (height×width); expected the same size. Fix the mask "
                "(resizing to a common size happens after pairing)."
            )
        present = {int(v) for v in np.unique(mask_ids)} - {ignore_index}
        bad = sorted(v for v in present if v < 0 or (limit is not None and v >= limit))
        if bad:
            expected = f"0..{limit - 1}" if limit is not None else "non-negative ids"
            source = f"{str(names_file)!r} names {limit}" if names is not None else f"num_classes={limit}"
            raise LossInputError(
                f"{who}: mask {str(mask)!r} holds the id {bad[0]}, neither a class nor ignore_index={ignore_index}; "
                f"expected {expected} ({source}) or {ignore_index}. Fix the mask, or "
                + ("add the class to classes.txt." if names is not None else "raise num_classes.")
            )
        seen |= present
        ids.append(mask_ids)

    count = limit if limit is not None else max(seen, default=0) + 1
    if count < 2:
        raise LossInputError(
            f"{who}: the masks in {str(masks)!r} hold only class 0 (and ignore_index={ignore_index}); expected at "
            "least 2 classes. Check that the masks hold class ids (0, 1, ...), not an empty labelling."
        )
    class_names = names if names is not None else ["background"] + [f"class {i}" for i in range(1, count)]

    x, notes = _images_to_tensor(who, [image for image, _ in pairs], size)
    target = (int(x.shape[2]), int(x.shape[3]))
    stacked = np.stack([decode.resize_mask(m, target) for m in ids])
    absent = [class_names[i] for i in range(count) if i not in seen]
    if absent:
        notes.append(f"classes in no mask: {', '.join(absent)}")
    return SegmentationSet(
        x=x,
        masks=torch.from_numpy(stacked),
        class_names=class_names,
        ignore_index=ignore_index,
        files=[str(image) for image, _ in pairs],
        notes=notes,
        name=images.parent.name if images.parent == masks.parent and images.parent.name else images.name,
    )
