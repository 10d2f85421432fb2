"""flake8 plugin: ``flake8 --select LK`` runs losskit's lint rules (entry point ``LK``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import losskit
from losskit.lint.engine import lint_source


class Plugin:
    name = "losskit"
    version = losskit.__version__

    def __init__(self, tree: Any, lines: list[str], filename: str = "<stdin>") -> None:
        self.lines = lines
        self.filename = filename

    def run(self) -> Iterator[tuple[int, int, str, type]]:
        for f in lint_source("".join(self.lines), self.filename):
            yield f.line, f.col - 1, f"{f.code} {f.message}", type(self)
