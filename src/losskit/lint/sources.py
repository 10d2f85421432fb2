"""Reading and writing source files as they are: encoding (PEP 263), byte-order mark and line
endings survive a fix; Jupyter notebooks are read cell by cell.

A fix rewrites text, never bytes: the file is decoded with the encoding Python itself would use
(``tokenize.detect_encoding``: a BOM, a ``# -*- coding: ... -*-`` line, else UTF-8), line endings
stay inside the text (``\\r\\n`` is kept by the parser and the printer), and the new text is
encoded back with the same codec (``utf-8-sig`` writes the BOM back).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Source", "Notebook", "read_source", "read_notebook", "write_atomically", "PYTHON_CELL_MAGICS"]


@dataclass
class Source:
    """A Python file's text and how to write it back byte for byte."""

    text: str
    encoding: str  # "utf-8", "utf-8-sig" (a BOM), "latin-1", ...

    def encode(self, text: str) -> bytes:
        return text.encode(self.encoding)


def read_source(path: Path) -> Source:
    """Raises OSError (unreadable, dangling symlink), SyntaxError (a bad coding declaration) or
    UnicodeDecodeError (bytes that are not in the declared encoding)."""
    data = path.read_bytes()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return Source(data.decode(encoding), encoding)


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary file in the same folder, then rename over the original (keeps its mode); the
    original is never half-written."""
    mode = path.stat().st_mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".losskit-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- notebooks

#: cell magics that run the cell's body as Python in the notebook (``%%time``, ``%%capture out``);
#: any other (``%%bash``, ``%%writefile f.py``, ``%%html``) makes the cell something else
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit"})

#: a line IPython would not hand to Python: ``%magic``, ``!shell``, ``x = !ls``, ``obj?``
_MAGIC = re.compile(r"^\s*([%!]|\w+\s*=\s*[%!]|[\w.]+\?{1,2}\s*$)")


@dataclass
class Notebook:
    """The code cells of a notebook joined into one program (so a criterion defined in one cell
    is known in the next), and where each line came from."""

    cells: list[tuple[int, str]] = field(default_factory=list)  # (1-based cell number, source)
    text: str = ""
    origin: list[tuple[int, int]] = field(default_factory=list)  # line of ``text`` - 1 -> (cell, line)


_STRINGS = re.compile(r"""("[^"\\]*(?:\\.[^"\\]*)*"|'[^'\\]*(?:\\.[^'\\]*)*'|#.*)""")


def _depth_change(line: str) -> int:
    """Brackets opened minus closed on ``line`` (strings and comments left out: an estimate that
    is right for the lines magics could be confused with)."""
    code = _STRINGS.sub("", line)
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def _cell_source(cell: dict[str, object]) -> str:
    source = cell.get("source", "")
    text = "".join(source) if isinstance(source, list) else str(source)
    lines = text.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in PYTHON_CELL_MAGICS:  # %%bash, %%writefile, %%html: not Python here
            return "\n" * len(lines)
        lines = ["", *lines[1:]]  # %%time: the body runs as Python, its lines keep their numbers
    first = next((ln for ln in lines if ln.strip()), "")
    indent = first[: len(first) - len(first.lstrip())]
    if indent:  # IPython removes the first line's indentation from the whole cell
        lines = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines]
    out: list[str] = []
    depth, continued, in_magic = 0, False, False
    for line in lines:
        if in_magic:  # the continuation of `!pip install \`
            out.append("")
            in_magic = line.rstrip().endswith("\\")
            continue
        if depth <= 0 and not continued and _MAGIC.search(line):
            # a magic becomes `pass`: the line numbers and any block the magic sat in are kept
            lead = line[: len(line) - len(line.lstrip())]
            out.append(f"{lead}pass")
            in_magic = line.rstrip().endswith("\\")
            continue
        out.append(line)
        depth = max(0, depth + _depth_change(line))
        continued = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n" if out else ""


def read_notebook(path: Path) -> Notebook:
    """Raises OSError, ValueError (not JSON / not a notebook)."""
    data = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no 'cells' list)")
    nb = Notebook()
    for number, cell in enumerate(data["cells"], start=1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            nb.cells.append((number, _cell_source(cell)))
    return nb


def join_cells(nb: Notebook, skip: set[int]) -> None:
    """Fill ``nb.text`` and ``nb.origin`` from the cells not in ``skip`` (cells that do not parse)."""
    parts = []
    for number, source in nb.cells:
        if number in skip:
            continue
        lines = source.splitlines()
        parts.extend(lines)
        nb.origin.extend((number, i) for i in range(1, len(lines) + 1))
    nb.text = "\n".join(parts) + "\n" if parts else ""
