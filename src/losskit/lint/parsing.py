"""Reading a file as Python does: the syntax check of a file no rule needs, and room for libcst on
long expressions.

libcst walks a syntax tree recursively, a few Python frames per level, so a long flat sum (``a +
b + ... `` with hundreds of terms, as generated tables have) exceeds the default recursion limit
long before CPython's own compiler gives up. Such a file is valid Python and is linted like any
other: :func:`with_deep_stack` runs the work again in a thread with a large stack and a high
recursion limit. ``LK000`` means that Python itself cannot read the file.
"""

from __future__ import annotations

import ast
import sys
import threading
import warnings
from collections.abc import Callable
from typing import TypeVar

__all__ = ["compiles", "deep_statements", "deepest_line", "short", "with_deep_stack"]

T = TypeVar("T")

#: a thread's stack for deep syntax trees: Python's compiler refuses expressions nested deeper
#: than about 3,000 levels at the default recursion limit; libcst needs ~6 frames a level
_STACK_BYTES = 512 * 1024 * 1024
_RECURSION_LIMIT = 200_000
_lock = threading.Lock()


def with_deep_stack(work: Callable[[], T]) -> T:
    """``work()`` in a thread with a 512 MiB stack and a recursion limit of 200,000 (restored
    after); its exception, if any, is raised here."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    with _lock:  # the recursion limit and the stack size of new threads are process-wide
        old_limit, old_size = sys.getrecursionlimit(), threading.stack_size()
        try:
            threading.stack_size(_STACK_BYTES)
            sys.setrecursionlimit(_RECURSION_LIMIT)
            thread = threading.Thread(target=run, name="losskit-lint-deep")
            thread.start()
            thread.join()
        finally:
            sys.setrecursionlimit(old_limit)
            threading.stack_size(old_size)
    if error:
        raise error[0]
    return result[0]


#: a top-level statement nested deeper than this (a generated table's sum of hundreds of terms)
#: is left out of what libcst reads when no rule needs it: libcst's parse of it grows with the
#: square of its depth (seconds for a 2,000-term sum)
DEEP = 150
_LONG = 1500  # characters: shorter statements cannot be that deep, and are not walked


def deep_statements(tree: ast.Module, lines: list[str]) -> list[tuple[int, int]]:
    """The (first, last) lines of the top-level statements of ``tree`` nested deeper than
    :data:`DEEP` (``lines``: the source's lines, to skip short statements without walking them)."""
    spans = []
    for node in tree.body:
        start, end = node.lineno, node.end_lineno or node.lineno
        if sum(len(line) for line in lines[start - 1 : end]) < _LONG:
            continue
        stack: list[tuple[ast.AST, int]] = [(node, 0)]
        while stack:
            sub, depth = stack.pop()
            if depth > DEEP:
                spans.append((min([start, *(d.lineno for d in getattr(node, "decorator_list", []))]), end))
                break
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(sub))
    return spans


def deepest_line(tree: ast.AST) -> int:
    """The line of the most deeply nested node (walked without recursion)."""
    best, best_line = 0, 1
    stack: list[tuple[ast.AST, int, int]] = [(tree, 0, 1)]
    while stack:
        node, depth, line = stack.pop()
        line = getattr(node, "lineno", line)
        if depth > best:
            best, best_line = depth, line
        stack.extend((child, depth + 1, line) for child in ast.iter_child_nodes(node))
    return best_line


def short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def compiles(source: str, path: str) -> bool:
    """Whether ``source`` compiles: the syntax check of a file no rule needs, at half the cost of
    ``ast.parse`` (no Python objects for the tree). False for anything it rejects -- the caller
    then parses with ``ast`` and reports exactly what the parser says (compiling also rejects
    a few things the parser accepts, such as ``return`` outside a function)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences and the like: not ours
            compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True
