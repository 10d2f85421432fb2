"""Every docstring example in the package runs and prints what it says; every code block of the
docs site runs, and the site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import losskit

MODULES = sorted(m.name for m in pkgutil.walk_packages(losskit.__path__, "losskit.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


# --- the docs site (docs/*.md, mkdocs.yml) ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
#: a ```python block whose first line starts with this is shown but not run (torchrun snippets)
NOT_RUN = "# not run"


def _load_hooks():
    spec = importlib.util.spec_from_file_location("losskit_docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


HOOKS = _load_hooks()
#: the lines the mkdocs hook replaces by generated tables: not code, wherever they stand
MARKERS = set(HOOKS.TABLES)


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The ```python fenced blocks of a page: (line number of the opening fence, code)."""
    blocks: list[tuple[int, str]] = []
    lines = page.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        opening = re.match(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$", lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i])
            i += 1
        i += 1  # the closing fence
        words = opening["info"].split()
        if words and words[0].lstrip(".{") == "python":
            code = "\n".join(line for line in body if line.strip() not in MARKERS)
            blocks.append((start, code + "\n"))
    return blocks


def _page_id(page: Path) -> str:
    return page.name


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_page_id)
def test_docs_code_blocks_run(page, tmp_path, monkeypatch):
    """Every ```python block of a page runs, in order, in one namespace, in an empty folder;
    a LossUsageWarning a block does not catch itself fails the test (pyproject's filterwarnings)."""
    import torch.distributed as dist

    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for lineno, code in python_blocks(page):
            if code.lstrip().startswith(NOT_RUN):
                continue
            # padded so that a traceback names the page's own line numbers
            exec(compile("\n" * lineno + code, str(page.relative_to(ROOT)), "exec"), namespace)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def test_docs_code_blocks_mostly_run():
    blocks = [code for page in PAGES for _, code in python_blocks(page)]
    skipped = [code for code in blocks if code.lstrip().startswith(NOT_RUN)]
    assert len(blocks) >= 20, f"only {len(blocks)} ```python blocks found in docs/*.md"
    assert len(skipped) <= 0.2 * len(blocks), (
        f"{len(skipped)} of {len(blocks)} docs code blocks are marked {NOT_RUN!r}; most must run"
    )


def test_docs_tables_come_from_the_registry():
    from losskit import registry

    table = HOOKS.replace_markers(f"# t\n\n{HOOKS.REGISTRY_MARKER}\n\nafter\n")
    assert registry.markdown_table() in table and HOOKS.REGISTRY_MARKER not in table
    tasks = HOOKS.replace_markers(HOOKS.TASK_MARKER)
    for task, name in registry.TASK_DEFAULTS.items():
        assert f"| `{task.value}` | `{name}` | `{registry.get(name).module}` |" in tasks
    assert HOOKS.REGISTRY_MARKER in (DOCS / "losses.md").read_text(encoding="utf-8")
    assert HOOKS.TASK_MARKER in (DOCS / "tasks.md").read_text(encoding="utf-8")


def test_docs_lint_page_lists_every_rule():
    pytest.importorskip("libcst")
    from losskit.lint.rules import RULES

    text = (DOCS / "lint.md").read_text(encoding="utf-8")
    assert [r.code for r in RULES if f"| {r.code} |" not in text] == []


def test_mkdocs_build_strict(tmp_path):
    """``mkdocs build --strict`` (as CI runs it) passes with no warning, and the API reference and
    the generated tables are in the pages."""
    pytest.importorskip("mkdocs")
    from losskit import registry

    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    losses = (site / "losses" / "index.html").read_text(encoding="utf-8")
    assert "cross_entropy" in losses
    for spec in registry.LOSSES:  # the registry table, and every loss in the API reference
        assert f"<code>{spec.module}</code>" in losses
        anchor = f'id="losskit.nn.{spec.module}"'
        assert anchor in losses or anchor in (site / "large-vocabulary" / "index.html").read_text(encoding="utf-8")
    tasks = (site / "tasks" / "index.html").read_text(encoding="utf-8")
    assert all(f"<code>{task.value}</code>" in tasks for task in registry.TASK_DEFAULTS)
    assert "losskit:registry-table" not in losses and "losskit:task-table" not in tasks
    assert (site / "compare-report.png").exists()
