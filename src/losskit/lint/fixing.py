"""Applying fixes: each finding's fix replaces one node (found by type and position) through a
libcst transformer, pass after pass until none is left; a result that does not parse is an error."""

from __future__ import annotations

import ast
import functools
import io
from collections.abc import Iterable

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from losskit.lint.engine import Fix, lint_source
from losskit.lint.parsing import deep_statements, with_deep_stack

__all__ = ["fix_source"]


class _Apply(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, fixes: list[Fix]) -> None:
        super().__init__()
        self.todo = {(f.node_type, f.line, f.col): f for f in fixes}
        self.done = 0

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:  # type: ignore[override]
        try:
            start = self.get_metadata(PositionProvider, original_node).start
        except KeyError:
            return updated_node
        fix = self.todo.pop((type(original_node), start.line, start.column), None)
        if fix is None:
            return updated_node
        self.done += 1
        return fix.replace(updated_node)


def fix_source(
    source: str,
    path: str = "<string>",
    *,
    unsafe: bool = False,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    max_passes: int = 5,
) -> tuple[str, int]:
    """Apply the (safe, or also unsafe) fixes until none is left; returns the new source and the
    number of fixes applied. A source that does not parse is returned unchanged."""
    applied = 0
    for _ in range(max_passes):
        try:
            new, done = _one_pass(source, path, unsafe, select, ignore)
        except RecursionError:  # valid Python nested deeper than libcst's recursion allows
            new, done = with_deep_stack(functools.partial(_one_pass, source, path, unsafe, select, ignore))
        if done == 0 or new == source:
            break
        ast.parse(new)  # a fix must never produce code that does not parse
        applied += done
        source = new
    return source, applied


def _one_pass(
    source: str, path: str, unsafe: bool, select: Iterable[str] | None, ignore: Iterable[str] | None
) -> tuple[str, int]:
    findings = lint_source(source, path, select=select, ignore=ignore)
    fixes = [f.fix for f in findings if f.fix is not None and (unsafe or not f.fix.unsafe)]
    if not fixes:
        return source, 0
    lines = io.StringIO(source, newline="").readlines()  # as Python numbers lines
    fixed_lines = {f.line for f in fixes}
    spans = [
        (a, b) for a, b in deep_statements(ast.parse(source), lines) if not any(a <= ln <= b for ln in fixed_lines)
    ]
    text = source
    if spans:  # a long generated expression with no fix in it: left out of what libcst reads, put back after
        kept = list(lines)
        for a, b in spans:
            for i in range(a - 1, b):
                kept[i] = kept[i][len(kept[i].rstrip("\r\n")) :] or "\n"
        text = "".join(kept)
    wrapper = MetadataWrapper(cst.parse_module(text), unsafe_skip_copy=True)
    transformer = _Apply(fixes)
    new = wrapper.visit(transformer).code
    if spans:
        out = io.StringIO(new, newline="").readlines()
        if len(out) != len(lines):  # a fix changed the number of lines: redo on the whole file
            wrapper = MetadataWrapper(cst.parse_module(source), unsafe_skip_copy=True)
            transformer = _Apply(fixes)
            return wrapper.visit(transformer).code, transformer.done
        for a, b in spans:
            out[a - 1 : b] = lines[a - 1 : b]
        new = "".join(out)
    return new, transformer.done
