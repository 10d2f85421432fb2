"""Pictures and per-class tables of ``losskit compare`` for images: for segmentation a grid of
test images (the image, the true mask, each candidate's predicted mask) and the per-class IoU
table (report.html and the terminal); for image classification the confusion matrices of the
recommended loss and the plain one. Every prediction shown is out-of-fold (first repeat: each
image predicted by the models that never saw it)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from losskit.tasks import Task

if TYPE_CHECKING:
    from losskit.app.compare.run import Run

__all__ = ["image_plots", "iou_rows", "iou_html", "print_iou", "GRID_IMAGES"]

#: test images in the segmentation grid
GRID_IMAGES = 4


def _trained(run: Run, name: str) -> str:
    """The trained candidate behind ``name`` (a candidate reported as the same model as another)."""
    entry = next((r for r in run.payload["results"] if r["loss"] == name), None)
    return str(entry["same_as"]) if entry and entry.get("same_as") else name


def grid_images(masks: torch.Tensor, num_classes: int, ignore_index: int, count: int = GRID_IMAGES) -> list[int]:
    """``count`` images for the grid: first those showing the rarest class (by pixels), most of it
    first, then the images with the most classes; ties by index."""
    flat = masks.reshape(len(masks), -1).long()
    valid = flat != ignore_index
    counts = torch.bincount(flat[valid], minlength=num_classes)[:num_classes]
    rare = int(torch.where(counts > 0, counts, counts.max() + 1).argmin())
    rare_pixels = (flat == rare).sum(1)
    kinds = torch.stack([(flat == c).any(1) for c in range(num_classes)], 1).sum(1)
    order = sorted(range(len(masks)), key=lambda i: (-int(rare_pixels[i] > 0), -int(kinds[i]), -int(rare_pixels[i]), i))
    return order[:count]


def image_plots(out: Path, run: Run, plt: Any, save: Any) -> list[tuple[str, str]]:
    """The pictures of an image comparison, written into ``out``: ``(file, caption)`` pairs."""
    data = run.data
    if data.x is None:
        return []
    if data.task == Task.segmentation:
        return [_segmentation_grid(out, run, plt, save)]
    if data.task in (Task.multiclass, Task.binary):
        return [_confusions(out, run, plt, save)]
    return []


def _show(x: torch.Tensor) -> Any:
    """An image ``(C, H, W)`` as matplotlib wants it: ``(H, W, C)`` RGB or ``(H, W)`` gray."""
    img = x.detach().float().cpu()
    if img.shape[0] == 1:
        return img[0].numpy()
    return img[:3].permute(1, 2, 0).clamp(0, 1).numpy()


def _segmentation_grid(out: Path, run: Run, plt: Any, save: Any) -> tuple[str, str]:
    import matplotlib.colors as mcolors
    import numpy as np

    data = run.data
    k = data.num_outputs
    names = data.class_names or [str(c) for c in range(k)]
    trained = [n for n in run.histories if n in run.oof]
    picked = grid_images(data.y, k, data.ignore_index)
    palette = [mcolors.to_rgb(c) for c in ("#222222", "tab:blue", "tab:orange", "tab:red", "tab:green", "tab:purple")]
    while len(palette) < k:
        palette.append(mcolors.to_rgb(f"C{len(palette) % 10}"))
    colours = np.array([*palette[:k], (1.0, 1.0, 1.0)])  # the last: ignored pixels, white

    def paint(mask: torch.Tensor) -> Any:
        m = mask.long().clone()
        m[(m < 0) | (m >= k)] = k
        return colours[m.numpy()]

    columns = ["image", "truth", *trained]
    fig, axes = plt.subplots(len(picked), len(columns), figsize=(1.9 * len(columns), 2.0 * len(picked) + 0.8))
    axes = np.atleast_2d(axes)
    for row, i in enumerate(picked):
        panels = [_show(data.x[i]), paint(data.y[i]), *(paint(run.oof[n][i]) for n in trained)]
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=8)
        label = data.files[i] if data.files else f"image {i}"
        axes[row][0].set_ylabel(Path(label).name[:18], fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in range(k)]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="gray"))
    fig.legend(handles, [*names, f"ignored ({data.ignore_index})"], loc="lower center", ncol=min(k + 1, 6), fontsize=8)
    fig.subplots_adjust(bottom=0.12)
    save(plt, fig, out / "segmentation.png", f"{data.name}: test images, true masks and each loss's prediction")
    return (
        "segmentation.png",
        "Test images (out-of-fold, first repeat; those showing the rarest class first), the true mask and the mask "
        "each loss's model predicted; white pixels are ignored.",
    )


def _confusions(out: Path, run: Run, plt: Any, save: Any) -> tuple[str, str]:
    from sklearn.metrics import confusion_matrix

    data = run.data
    p = run.payload
    plain = p["plain"]
    chosen = _trained(run, p["recommendation"]["loss"])
    shown = [plain] if chosen == plain else [chosen, plain]
    k = max(data.num_outputs, 2)
    names = data.class_names or [str(c) for c in range(k)]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown) + 0.6, 4.4), squeeze=False)
    for ax, name in zip(axes[0], shown):
        scores = run.oof[name]
        pred = (scores >= 0.5).long() if data.task == Task.binary else scores.argmax(1)
        cm = confusion_matrix(data.y.long().numpy(), pred.numpy(), labels=list(range(k)))
        share = cm / cm.sum(1, keepdims=True).clip(min=1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        if k <= 12:
            for t in range(k):
                for q in range(k):
                    ax.text(q, t, str(cm[t, q]), ha="center", va="center", fontsize=7,
                            color="white" if share[t, q] > 0.5 else "black")  # fmt: skip
        ax.set_xticks(range(k), names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}{' (recommended)' if name == chosen and chosen != plain else ''}", fontsize=10)
    save(plt, fig, out / "confusion.png", f"{data.name}: confusion matrices (out-of-fold, first repeat)")
    return (
        "confusion.png",
        "Confusion matrices of the out-of-fold predictions of the first repeat (counts; colour: share of the true "
        "class's images), the recommended loss beside the plain one.",
    )


def iou_rows(run: Run) -> tuple[list[str], list[tuple[str, list[float | None]]]]:
    """The class names and, per candidate, its mean IoU of each class over the test folds."""
    data = run.data
    names = data.class_names or []
    rows = [(r["loss"], [r["metrics"].get(f"iou[{c}]") for c in names]) for r in run.payload["results"]]
    return names, rows


def iou_html(run: Run) -> str:
    """The per-class IoU table of a segmentation report (empty for other tasks)."""
    if run.data.task != Task.segmentation:
        return ""
    names, rows = iou_rows(run)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in names)
    body = "".join(
        f'<tr><th scope="row">{html.escape(loss)}</th>'
        + "".join(f"<td>{'-' if v is None else format(v, '.3f')}</td>" for v in values)
        + "</tr>"
        for loss, values in rows
    )
    return (
        "<h2>IoU per class</h2><p>Mean over the test folds of each class's IoU (a fold where a class is absent from "
        f'truth and prediction does not count).</p><table id="iou"><thead><tr><th>loss</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def print_iou(console: Any, run: Run) -> None:
    """The per-class IoU table in the terminal (segmentation only)."""
    if run.data.task != Task.segmentation:
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table as RichTable

    names, rows = iou_rows(run)
    table = RichTable(title="IoU per class (mean over test folds)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("loss", max_width=20, overflow="fold")
    for c in names:
        table.add_column(escape(c), justify="right", max_width=10, overflow="fold")
    for loss, values in rows:
        table.add_row(escape(loss), *("-" if v is None else f"{v:.3f}" for v in values))
    console.print(table, width=min(console.width, 80))
