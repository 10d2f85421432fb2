"""Files in, findings out: walk paths (honouring .gitignore), lint each file on its own (one bad
file is one ``LK000`` finding, never the end of the run), fix atomically, in ``-j N`` processes."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from losskit.lint.engine import PARSE_ERROR, Finding, lint_source, not_checked
from losskit.lint.fixing import fix_source
from losskit.lint.formats import format_findings
from losskit.lint.sources import join_cells, read_notebook, read_source, write_atomically

__all__ = ["LintResult", "collect_files", "lint_paths", "format_findings"]

_ALWAYS_SKIPPED = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    ".ipynb_checkpoints",
    "node_modules",
}
_SUFFIXES = (".py", ".ipynb")


class LintUsageError(Exception):
    """A path that does not exist or cannot be read (exit status 2)."""


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    fixed: int = 0
    fixed_files: list[str] = field(default_factory=list)
    #: with ``diff=True``: the unified diff of the fixes, per file (nothing is written)
    diffs: list[str] = field(default_factory=list)


def _gitignore_specs(root: Path) -> list[tuple[Path, object]]:
    import pathspec

    specs: list[tuple[Path, object]] = []
    for ignore in [root / ".gitignore", *root.rglob(".gitignore")] if root.is_dir() else []:
        try:
            lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        specs.append((ignore.parent, pathspec.GitIgnoreSpec.from_lines(lines)))
    return specs


def _ignored(path: Path, specs: list[tuple[Path, object]]) -> bool:
    for base, spec in specs:
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        text = rel.as_posix() + ("/" if path.is_dir() else "")
        if spec.match_file(text):  # type: ignore[attr-defined]
            return True
    return False


def collect_files(paths: Sequence[str]) -> list[Path]:
    """The ``*.py`` and ``*.ipynb`` files under ``paths`` (files given directly are always
    included, also a dangling symlink: it is reported, not skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists() and not p.is_symlink():
            raise LintUsageError(f"{raw}: no such file or folder; expected Python files or folders to lint")
        if not p.is_dir():
            out.append(p)
            continue
        specs = _gitignore_specs(p.resolve())
        for dirpath, dirnames, filenames in os.walk(p):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if d not in _ALWAYS_SKIPPED and not _ignored((here / d).resolve(), specs)
            )
            for name in sorted(filenames):
                f = here / name
                if name.endswith(_SUFFIXES) and not _ignored(f.absolute(), specs):
                    out.append(f)
    return out


@dataclass(frozen=True)
class _Options:
    fix: bool = False
    unsafe_fixes: bool = False
    diff: bool = False
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None


@dataclass
class _FileResult:
    findings: list[Finding] = field(default_factory=list)
    fixed: int = 0
    diff: str = ""


_DECLARE = "save it as UTF-8 or declare its encoding on line 1 or 2 (PEP 263: '# -*- coding: latin-1 -*-')"


def _unreadable(name: str, exc: BaseException, path: Path) -> Finding:
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        why = f"cannot read the file: it is a symbolic link to {os.readlink(path)!r}, which does not exist"
    elif isinstance(exc, UnicodeDecodeError):
        why = f"cannot decode the file as {exc.encoding} (byte {exc.start}: {exc.reason}); {_DECLARE}"
    elif isinstance(exc, SyntaxError):  # tokenize.detect_encoding
        why = f"cannot decode the file ({exc.msg}); {_DECLARE}"
    elif isinstance(exc, OSError):
        why = f"cannot read the file ({exc.strerror or exc})"
    else:
        why = f"cannot read the file ({exc})"
    return not_checked(name, why)


def _lint_python(path: Path, opts: _Options) -> _FileResult:
    name = str(path)
    try:
        src = read_source(path)
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return _FileResult([_unreadable(name, exc, path)])
    text, out = src.text, _FileResult()
    first = lint_source(text, name, select=opts.select, ignore=opts.ignore)
    wants_fix = opts.fix or opts.unsafe_fixes or opts.diff
    if wants_fix and any(f.fix_kind for f in first) and not any(f.code == PARSE_ERROR for f in first):
        new, applied = fix_source(text, name, unsafe=opts.unsafe_fixes, select=opts.select, ignore=opts.ignore)
        if applied and new != text:
            if opts.diff:
                out.diff = "".join(
                    difflib.unified_diff(
                        text.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
                    )
                )
            else:
                write_atomically(path, src.encode(new))  # same encoding, BOM and line endings
                text = new
            out.fixed = applied
    out.findings = first if text == src.text else lint_source(text, name, select=opts.select, ignore=opts.ignore)
    return out


def _lint_notebook(path: Path, opts: _Options) -> _FileResult:
    """Cell by cell: a cell that does not parse is one LK000 finding; the others are linted as one
    program; findings point at ``cell N``, ``line M`` of that cell. Notebooks are never rewritten."""
    name = str(path)
    try:
        nb = read_notebook(path)
    except (OSError, ValueError) as exc:
        return _FileResult([_unreadable(name, exc, path)])
    out = _FileResult()
    broken: set[int] = set()
    for number, source in nb.cells:
        for f in lint_source(source, name, select=(PARSE_ERROR,)):
            if f.code == PARSE_ERROR:
                broken.add(number)
                if _selected(PARSE_ERROR, opts):
                    out.findings.append(dataclasses.replace(f, cell=number))
    join_cells(nb, broken)
    for f in lint_source(nb.text, name, select=opts.select, ignore=opts.ignore):
        if f.code == PARSE_ERROR or not 1 <= f.line <= len(nb.origin):
            continue
        cell, line = nb.origin[f.line - 1]
        out.findings.append(dataclasses.replace(f, cell=cell, line=line, fix=None, fix_kind=""))
    return out


def _selected(code: str, opts: _Options) -> bool:
    if opts.select and not any(code.startswith(s) for s in opts.select):
        return False
    return not (opts.ignore and any(code.startswith(s) for s in opts.ignore))


def _lint_one(path: Path, opts: _Options) -> _FileResult:
    try:
        result = _lint_notebook(path, opts) if path.suffix == ".ipynb" else _lint_python(path, opts)
    except RecursionError:
        result = _FileResult([not_checked(str(path), "an expression is nested too deeply (recursion limit)")])
    result.findings = [dataclasses.replace(f, fix=None) for f in result.findings]  # picklable
    return result


def lint_paths(
    paths: Sequence[str],
    *,
    fix: bool = False,
    unsafe_fixes: bool = False,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    diff: bool = False,
    jobs: int = 1,
) -> LintResult:
    """Lint (and with ``fix`` / ``unsafe_fixes`` rewrite, or with ``diff`` only show the fixes of)
    the files under ``paths``, in ``jobs`` processes (0: one per CPU)."""
    opts = _Options(fix, unsafe_fixes, diff, tuple(select) if select else None, tuple(ignore) if ignore else None)
    files = collect_files(paths)
    jobs = (os.cpu_count() or 1) if jobs == 0 else jobs
    if jobs > 1 and len(files) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(files))) as pool:
            chunk = max(1, min(32, len(files) // (jobs * 8)))
            results = list(pool.map(_lint_one, files, [opts] * len(files), chunksize=chunk))
    else:
        results = [_lint_one(f, opts) for f in files]
    result = LintResult(files=len(files))
    for path, r in zip(files, results, strict=True):
        result.findings.extend(r.findings)
        if r.diff:
            result.diffs.append(r.diff)
        if r.fixed:
            result.fixed += r.fixed
            if not diff:
                result.fixed_files.append(str(path))
    return result
