"""mkdocs hooks (``hooks:`` in mkdocs.yml): the docs' tables come from :mod:`losskit.registry`.

A line holding only a marker comment is replaced by a generated markdown table:

* ``<!-- losskit:registry-table -->`` -> every loss (:func:`losskit.registry.markdown_table`);
* ``<!-- losskit:task-table -->`` -> the task table :data:`losskit.registry.TASK_DEFAULTS`
  (task -> the loss :func:`losskit.loss_for` configures), from :func:`task_table`.

So a loss added to the registry shows up in the docs without anyone editing a page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRY_MARKER = "<!-- losskit:registry-table -->"
TASK_MARKER = "<!-- losskit:task-table -->"


def task_table() -> str:
    """The task table as markdown: task, the loss ``loss_for`` configures, its module, variants
    and every other registered loss that serves the task."""
    from losskit import registry
    from losskit.types import Task

    variants = {
        Task.regression: f"`{registry.get(registry.ROBUST_REGRESSION).module}` with `robust=True` or outliers",
        Task.segmentation: f"`{registry.get(registry.SEGMENTATION_WITH_DICE).module}` with `dice=True`",
    }
    rows = [
        "| task | loss (`losskit.loss_for`) | module | variant | other losses for the task |",
        "| --- | --- | --- | --- | --- |",
    ]
    for task, name in registry.TASK_DEFAULTS.items():
        spec = registry.get(name)
        others = ", ".join(f"`{s.name}`" for s in registry.losses_for(task) if s.name != name) or "--"
        rows.append(
            f"| `{task.value}` | `{spec.functional or spec.name}` | `{spec.module}` | "
            f"{variants.get(task, '--')} | {others} |"
        )
    return "\n".join(rows) + "\n"


def _registry_table() -> str:
    from losskit import registry

    return registry.markdown_table()


TABLES: dict[str, Callable[[], str]] = {REGISTRY_MARKER: _registry_table, TASK_MARKER: task_table}


def replace_markers(markdown: str) -> str:
    """``markdown`` with each marker line replaced by its table (after a blank line)."""
    lines = []
    for line in markdown.split("\n"):
        make = TABLES.get(line.strip())
        lines.append("\n" + make() if make else line)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return replace_markers(markdown)
