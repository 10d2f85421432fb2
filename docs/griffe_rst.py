"""A griffe extension for the docs site: the reST bits of losskit's docstrings as Markdown.

losskit's docstrings are Google style with Sphinx markup inside. mkdocstrings renders Markdown,
so before rendering this extension rewrites, in every docstring of the package:

* ``:func:`x``` / ``:class:`` / ``:meth:`` / ``:attr:`` / ``:mod:`` / ``:data:`` / ``:exc:``
  -> a code span that links to ``x`` when ``x`` is documented on the site (an *optional*
  cross-reference: a target that is not documented, e.g. a torch function, stays plain code
  and is never a warning). ``~a.b.c`` shows ``c``, as in Sphinx.
* ``:math:`tex``` -> a code span with the TeX (the site loads no MathJax: nothing comes from
  the network).
* ``.. math::`` blocks -> fenced ``latex`` code blocks.
* ``text::`` + indented literal block -> ``text:`` + the block (Markdown's indented code).
* reST "simple" tables (``=====  =====`` borders) -> Markdown tables.
* ``Example:`` -> ``Examples:``, the section griffe renders as a console session.
* ``#:`` comments above an attribute -> the attribute's docstring (as Sphinx autodoc reads
  them), when it has none.

Nothing in ``src/`` changes; only what mkdocstrings renders.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?P<role>func|class|meth|attr|mod|data|exc|obj|const):`(?P<body>[^`]+)`")
_MATH_ROLE = re.compile(r":math:`(?P<tex>[^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. math::\s*(?P<rest>.*)$")
_TABLE_BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")
_LITERAL_INTRO = re.compile(r"^(?P<text>.*\S)?\s*::\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body = [match["rest"]] if match["rest"] else []
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        depth = min((_indent(b) for b in block if b.strip()), default=0)
        body += [b[depth:] for b in block]
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}```latex")
        out += [f"{indent}{b}".rstrip() for b in body]
        out.append(f"{indent}```")
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


def _literal_blocks(lines: list[str]) -> list[str]:
    out = list(lines)
    for i, line in enumerate(lines):
        match = _LITERAL_INTRO.match(line)
        if not match or line.lstrip().startswith(".."):
            continue
        nxt = next((line2 for line2 in lines[i + 1 :] if line2.strip()), None)
        if nxt is None or _indent(nxt) <= _indent(line):
            continue
        text = match["text"]
        out[i] = (" " * _indent(line) + text + ":") if text else ""
    return out


def _tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _TABLE_BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        indent = " " * _indent(border)
        starts = [m.start() for m in re.finditer(r"=+", border)]
        borders_seen = 1
        rows: list[list[str]] = []
        header_rows = 0
        i += 1
        while i < len(lines) and borders_seen < 3:
            line = lines[i]
            i += 1
            if _TABLE_BORDER.match(line):
                borders_seen += 1
                if borders_seen == 2:
                    header_rows = len(rows)
                continue
            if not line.strip():
                continue
            cells = [
                line[start : starts[k + 1] if k + 1 < len(starts) else None].strip() for k, start in enumerate(starts)
            ]
            if rows and not cells[0] and len(rows) > header_rows:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
            else:
                rows.append(cells)
        header, body = (rows[:header_rows], rows[header_rows:]) if header_rows else ([[""] * len(starts)], rows)
        if out and out[-1].strip():
            out.append("")
        out.append(indent + "| " + " | ".join(" ".join(col) for col in zip(*header)) + " |")
        out.append(indent + "|" + " --- |" * len(starts))
        out += [indent + "| " + " | ".join(row) + " |" for row in body]
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


class RstToMarkdown(griffe.Extension):
    """Rewrite the Sphinx markup of every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._loader = loader
        self._collection = loader.modules_collection
        self._walk(pkg)

    def _walk(self, obj: griffe.Object) -> None:
        if obj.is_attribute and obj.docstring is None:
            self._comment_docstring(obj)
        if obj.docstring is not None:
            obj.docstring.value = self._convert(obj, obj.docstring.value)
        for member in list(obj.members.values()):
            if not member.is_alias:
                self._walk(member)  # type: ignore[arg-type]

    def _comment_docstring(self, attr: griffe.Object) -> None:
        """``#:`` comment lines right above the attribute become its docstring."""
        if attr.lineno is None:
            return
        try:
            lines = attr.module.lines
        except Exception:
            return
        comment: list[str] = []
        k = attr.lineno - 2
        while k >= 0 and lines[k].strip().startswith("#:"):
            comment.insert(0, lines[k].strip()[2:].strip())
            k -= 1
        if comment:
            attr.docstring = griffe.Docstring(
                "\n".join(comment),
                lineno=k + 2,
                endlineno=attr.lineno - 1,
                parent=attr,
                parser=self._loader.docstring_parser,
                parser_options=self._loader.docstring_options,
            )

    def _convert(self, obj: griffe.Object, text: str) -> str:
        # Google style's section is "Examples:"; griffe would make "Example:" an admonition and
        # render its ">>>" lines as nested quotes
        lines = ["Examples:" if line.rstrip() == "Example:" else line for line in text.split("\n")]
        lines = _tables(lines)
        lines = _math_blocks(lines)
        lines = _literal_blocks(lines)
        text = "\n".join(lines)
        text = _MATH_ROLE.sub(lambda m: f"`{m['tex']}`", text)
        return _ROLE.sub(lambda m: self._role(obj, m["role"], m["body"]), text)

    def _role(self, obj: griffe.Object, role: str, body: str) -> str:
        title, target = body, body
        explicit = re.match(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", body)
        if explicit:
            title, target = explicit["title"], explicit["target"]
        target = target.lstrip("!")
        if target.startswith("~"):
            target = target[1:]
            if not explicit:
                title = target.rsplit(".", 1)[-1]
        target = target.lstrip(".")
        identifier = self._identifier(obj, role, target)
        return f'<autoref identifier="{identifier}" optional>`{title}`</autoref>'

    def _identifier(self, obj: griffe.Object, role: str, target: str) -> str:
        """The documented object ``target`` names, seen from ``obj`` (as written if unknown)."""
        candidates = [target]
        head, _, tail = target.partition(".")
        scope: griffe.Object | None = obj
        while scope is not None:
            try:
                resolved = scope.resolve(head)
            except Exception:
                resolved = None
            if resolved:
                candidates.append(f"{resolved}.{tail}" if tail else resolved)
                break
            scope = scope.parent
        for path in candidates:
            found = self._lookup(path, role)
            if found:
                return found
        return target

    def _lookup(self, path: str, role: str) -> str | None:
        try:
            found = self._collection[path]
        except Exception:
            return None
        # a submodule shadows a re-exported function of the same name in griffe (a function
        # `cross_entropy` in module `cross_entropy`): a function role means the function
        if found.is_module and role not in ("mod", "obj"):
            name = path.rsplit(".", 1)[-1]
            inner = found.members.get(name)
            if inner is not None:
                found = inner
        try:
            return str(found.canonical_path)
        except Exception:
            return str(found.path)
