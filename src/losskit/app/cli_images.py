"""The image side of ``losskit compare`` on the command line: the options (``--images``,
``--masks``, ``--image-size``, ``--model``, ``--ignore-index``), the bundled image demos
(``--dataset shapes``, ``--dataset digits-images``), a folder of class folders as ``DATA``, and
the user's model factory named ``module:function``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from losskit.errors import LossInputError

__all__ = ["IMAGE_DATASETS", "add_image_options", "image_input", "model_factory"]

#: the bundled image demos (generated or shipped with scikit-learn: nothing is downloaded)
IMAGE_DATASETS = ("shapes", "digits-images")
#: the side of ``--dataset shapes``'s images: 24 px keeps the default comparison within about
#: three minutes on two cores (32 px costs twice as much per fit)
SHAPES_SIZE = 24


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a size in pixels, N or HxW (e.g. 32 or 48x64), got {text!r}")
    return (values[0], values[-1])


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def add_image_options(cmd: argparse.ArgumentParser) -> None:
    """Add the image options to the ``compare`` parser."""
    group = cmd.add_argument_group(
        "images",
        "DATA may be a folder with one sub-folder of images per class (image classification); "
        "--images/--masks give a segmentation set. Images are read with Pillow.",
    )
    group.add_argument("--images", metavar="DIR", help="folder of images for segmentation (with --masks)")
    group.add_argument(
        "--masks",
        metavar="DIR",
        help="folder of PNG class masks (mode L or P, pixel value = class id), same file stems as --images; "
        "an optional classes.txt names the classes",
    )
    group.add_argument(
        "--image-size", type=_size, metavar="N|HxW", help="resize every image (and mask, nearest) to this size"
    )
    group.add_argument(
        "--ignore-index",
        type=_int,
        default=255,
        metavar="ID",
        help="mask value of pixels left out of losses and metrics (default 255, as in PASCAL VOC)",
    )
    group.add_argument(
        "--model",
        metavar="MODULE:FUNCTION",
        help="your model factory, imported from the current folder or sys.path and called as "
        "FUNCTION(in_channels_or_features, num_outputs) or FUNCTION() (default: MLP / CNN / U-Net by data)",
    )


def image_input(args: argparse.Namespace) -> Any:
    """The image data the options name (an ``ImageSet`` / ``SegmentationSet``), or ``None`` when
    they name a table."""
    from losskit.app import images

    folder = args.data is not None and Path(args.data).is_dir()
    if (args.images is None) != (args.masks is None):
        given = "--images" if args.images is not None else "--masks"
        raise LossInputError(f"{given} is given alone; expected both --images DIR and --masks DIR for segmentation.")
    sources = [s for s in (args.data, args.images, args.dataset) if s is not None]
    if len(sources) > 1:
        raise LossInputError("pass one source of data: a file or folder, --images/--masks, or --dataset.")
    if args.images is not None:
        return images.read_segmentation_folders(
            args.images, args.masks, image_size=args.image_size, ignore_index=args.ignore_index
        )
    if folder:
        if args.target:
            raise LossInputError(
                f"--target is for a table; {args.data!r} is a folder of class folders, whose classes are the labels."
            )
        return images.read_class_folders(args.data, image_size=args.image_size)
    if args.dataset in IMAGE_DATASETS:
        data = images.shapes(size=SHAPES_SIZE) if args.dataset == "shapes" else images.digits_images()
        return _resized(data, args.image_size) if args.image_size else data
    if args.image_size is not None:
        raise LossInputError(
            "--image-size resizes images; expected image data (a folder, --images or an image --dataset)."
        )
    return None


def _resized(data: Any, size: tuple[int, int]) -> Any:
    """A bundled set at ``size``: images bilinear, masks nearest (class ids never blended)."""
    import dataclasses

    import torch.nn.functional as F

    x = F.interpolate(data.x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    if hasattr(data, "masks"):
        masks = F.interpolate(data.masks[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return dataclasses.replace(data, x=x, masks=masks)
    return dataclasses.replace(data, x=x)


def model_factory(spec: str) -> Callable[..., Any]:
    """The function ``spec`` = ``module:function`` names, imported with the current folder on
    ``sys.path`` (as ``python -m`` does); a bad spec is a :class:`LossInputError` in one line."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise LossInputError(
            f"--model {spec!r}: expected MODULE:FUNCTION, e.g. --model mynets:make_unet (a function in mynets.py)."
        )
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error while importing it is theirs
        raise LossInputError(
            f"--model {spec!r}: module {module_name!r} cannot be imported ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); expected a module in the current folder or on sys.path."
        ) from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)  # type: ignore[assignment]
        if factory is None:
            raise LossInputError(
                f"--model {spec!r}: {module_name} has no {attr!r}; expected a function returning a torch.nn.Module."
            )
    if not callable(factory):
        raise LossInputError(f"--model {spec!r}: {attr} is a {type(factory).__name__}; expected a function.")
    return factory
