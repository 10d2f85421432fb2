"""Files in, findings out: walk paths (honouring .gitignore), lint, fix atomically, format."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from losskit.lint.engine import PARSE_ERROR, Finding, fix_source, lint_source

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
    "node_modules",
}


class LintUsageError(Exception):
    """A path that does not exist or cannot be read (exit status 2)."""


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    fixed: int = 0
    fixed_files: list[str] = field(default_factory=list)


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
    """The ``*.py`` files under ``paths`` (files given directly are always included)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise LintUsageError(f"{raw}: no such file or folder; expected Python files or folders to lint")
        if p.is_file():
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
                if name.endswith(".py") and not _ignored(f.resolve(), specs):
                    out.append(f)
    return out


def _write_atomically(path: Path, text: str) -> None:
    """Temporary file in the same folder, then rename over the original (keeps its mode)."""
    mode = path.stat().st_mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".losskit-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def lint_paths(
    paths: Sequence[str],
    *,
    fix: bool = False,
    unsafe_fixes: bool = False,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
) -> LintResult:
    result = LintResult()
    for path in collect_files(paths):
        try:
            source = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LintUsageError(f"{path}: cannot read the file ({exc})") from None
        result.files += 1
        name = str(path)
        if fix or unsafe_fixes:
            first = lint_source(source, name, select=select, ignore=ignore)
            if first and not any(f.code == PARSE_ERROR for f in first):
                new, applied = fix_source(source, name, unsafe=unsafe_fixes, select=select, ignore=ignore)
                if applied and new != source:
                    _write_atomically(path, new)
                    result.fixed += applied
                    result.fixed_files.append(name)
                    source = new
        result.findings.extend(lint_source(source, name, select=select, ignore=ignore))
    return result


def format_findings(findings: list[Finding], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([f.to_dict() for f in findings], indent=2)
    if fmt == "github":
        return "\n".join(
            f"::error file={f.path},line={f.line},col={f.col},title={f.code}::{f.code} {f.message}" for f in findings
        )
    return "\n".join(f"{f.path}:{f.line}:{f.col}: {f.code} {f.message}{' [*]' if f.fixable else ''}" for f in findings)
