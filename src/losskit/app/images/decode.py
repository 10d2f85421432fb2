"""Reading image files with Pillow: listing, decoding fully, one mode, one size.

Every failure raises :class:`~losskit.LossInputError` naming the file. Pillow and numpy are
imported inside the functions (``import losskit`` loads neither).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from losskit.errors import LossInputError

#: the file name endings read as images (compared lower-case)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Pillow modes of one grey channel (16-bit and float ones are scaled to 8 bits)
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

Size = tuple[int, int]  # (height, width), as in a tensor


def visible(path: Path, root: Path) -> bool:
    """False for hidden files and files inside hidden folders (``.DS_Store``, ``.ipynb_checkpoints``)."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` (by ending, case-insensitive), hidden ones left out, sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and visible(p, folder))


def check_folder(who: str, argument: str, folder: Any) -> Path:
    path = Path(folder)
    if not path.is_dir():
        state = "does not exist" if not path.exists() else "is a file, not a folder"
        raise LossInputError(f"{who}: {argument} {str(path)!r} {state}; expected a folder of images. Check the path.")
    return path


def check_image_size(who: str, image_size: int | Sequence[int] | None) -> Size | None:
    """``image_size`` as ``(height, width)``: an int ``s`` means ``(s, s)``."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 1:
        return (image_size, image_size)
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in image_size)
    ):
        return (int(image_size[0]), int(image_size[1]))
    raise LossInputError(
        f"{who}: image_size is {image_size!r}; expected a positive int (square images) or a "
        "(height, width) pair of positive ints. Pass e.g. image_size=64 (--image-size 64)."
    )


def header(who: str, path: Path, what: str = "image") -> tuple[str, Size]:
    """Mode and ``(height, width)`` from the file's header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode, (img.height, img.width)
    except Exception as exc:
        raise unreadable(who, path, what, exc) from exc


def unreadable(who: str, path: Path, what: str, exc: BaseException) -> LossInputError:
    reason = (str(exc).strip() or type(exc).__name__).replace(f" '{path}'", "").replace(str(path), "the file")
    expected = "PNG (mode L or P)" if what == "mask" else "image (png, jpg, bmp, gif, tif or webp)"
    return LossInputError(
        f"{who}: {what} {str(path)!r} cannot be read ({reason}); expected a complete {expected} file. "
        "Replace or remove the file."
    )


def family(mode: str) -> str:
    """``"L"`` for modes of one grey channel, ``"RGB"`` for everything else (palette, CMYK, alpha)."""
    return "L" if mode in GRAY_MODES else "RGB"


def majority_mode(modes: Sequence[str]) -> str:
    """The mode every image is converted to: the majority among RGB and grayscale (RGB on a tie,
    which keeps every colour)."""
    gray = sum(family(m) == "L" for m in modes)
    return "L" if gray > len(modes) - gray else "RGB"


def conversion_note(modes: Sequence[str], target: str) -> str | None:
    """``"3 of 10 images converted to RGB (the majority mode): 2 L, 1 RGBA (transparency on white)"``."""
    converted = Counter(m for m in modes if m != target)
    if not converted:
        return None
    parts = [
        f"{n} {m}" + (" (transparency composited on white)" if m in ALPHA_MODES else "")
        for m, n in sorted(converted.items())
    ]
    mixed = len({family(m) for m in modes}) > 1
    why = " (the majority mode)" if mixed else ""
    return f"{sum(converted.values())} of {len(modes)} images converted to {target}{why}: {', '.join(parts)}"


def common_size(sizes: Sequence[Size]) -> Size:
    """The most common ``(height, width)``; the larger one on a tie (no detail is thrown away twice)."""
    counts = Counter(sizes)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1], s))


def size_note(sizes: Sequence[Size], target: Size, image_size: Size | None) -> str | None:
    other = sum(s != target for s in sizes)
    if not other:
        return None
    if image_size is not None:
        return f"{other} of {len(sizes)} images resized to {target[0]}×{target[1]} (image_size)"
    return (
        f"{other} of {len(sizes)} images resized to {target[0]}×{target[1]}, the most common size "
        f"(sizes found: {', '.join(f'{h}×{w}' for h, w in sorted(set(sizes)))}); pass image_size "
        "(--image-size) to choose"
    )


def to_mode(img: Any, target: str) -> Any:
    """``img`` as an 8-bit ``target`` image (``"L"`` or ``"RGB"``).

    Transparency is composited on white; 16-bit and 32-bit integer grey (``I;16``, ``I``) is
    scaled from ``0 .. 65535``; float grey (``F``) is read as ``0 .. 1`` when its maximum is at
    most 1, else as ``0 .. 255``; palette images become RGB (or grey from RGB).
    """
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode == target:
        return img
    if mode.startswith("I") or mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if mode == "F":
            values = values if values.size and values.max() <= 1.0 else values / 255.0
        else:
            values = values / 65535.0
        grey = Image.fromarray(np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8))
        return grey if target == "L" else grey.convert("RGB")
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert(target)
    return img.convert(target)


def read_pixels(who: str, path: Path, target_mode: str, size: Size) -> Any:
    """The fully decoded image as a ``(C, H, W)`` uint8 array in ``target_mode`` at ``size``
    (bilinear resampling)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as opened:
            opened.load()  # decodes every byte: a truncated file fails here, not later
            img = to_mode(opened, target_mode)
            if (img.height, img.width) != size:
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except LossInputError:
        raise
    except Exception as exc:
        raise unreadable(who, path, "image", exc) from exc
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_mask(who: str, path: Path) -> Any:
    """The fully decoded mask as an ``(H, W)`` int64 array of class ids (mode ``L``, ``P`` (the
    palette index is the id), ``1`` or 16-bit grey ``I;16``/``I``)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in {"L", "P", "1"} or mode.startswith("I"):
                return np.asarray(img).astype(np.int64)
    except Exception as exc:
        raise unreadable(who, path, "mask", exc) from exc
    raise LossInputError(
        f"{who}: mask {str(path)!r} has mode {mode} (colours); expected a mode L or P PNG whose pixel values "
        "are class ids (0, 1, ..., and the ignore index, 255 by default). Save the ids, not colours: "
        "a palette PNG as in VOC (mode P) or a grey PNG (mode L) — "
        "Image.open(p).convert('L') if each grey value already is a class id."
    )


def resize_mask(ids: Any, size: Size) -> Any:
    """``ids`` at ``size`` by nearest neighbour: every pixel keeps a class id present before."""
    import numpy as np
    from PIL import Image

    if ids.shape == size:
        return ids
    img = Image.fromarray(ids.astype(np.int32))
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.NEAREST)).astype(np.int64)
