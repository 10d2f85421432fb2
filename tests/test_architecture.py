"""The layout's rules, checked on the source: layers, no cycles, no borrowed private names, small
modules, and an ``import losskit`` that loads none of what only the application uses."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "losskit"

#: what each part of the library may import at module level (besides torch and the stdlib);
#: "errors" and "types" are the leaves everyone may use
ALLOWED = {
    "errors": set(),
    "types": {"errors"},
    "registry": {"errors", "types"},
    "_core": {"types"},
    "checks": {"_core", "errors", "types"},
    "autograd": {"_core", "errors", "types"},
    "fused": {"autograd"},  # the deprecated alias of autograd
    "functional": {"_core", "autograd", "checks", "errors", "types"},
    "nn": {"functional", "checks", "types", "errors"},
    "distributed": {"_core", "autograd", "checks", "errors", "types"},
    "tasks": {"checks", "errors", "registry", "types"},
    "doctor": {"checks", "errors", "registry", "tasks", "types"},
    "lint": {"errors"},
    # transformers / peft are imported inside functions only: `import losskit` loads neither
    "integrations": {"functional", "errors", "types"},
    "app": {"registry", "tasks", "doctor", "errors", "types", "checks"},
    "__init__": {"functional", "nn", "checks", "doctor", "errors", "tasks", "types", "registry"},
    "__main__": {"app"},
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _top_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of the imports at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _all_imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
    return found


MODULES = _modules()


def test_layers_import_only_what_they_may():
    wrong = []
    for name, path in MODULES.items():
        mine = _part(name)
        for target, names in _top_level_imports(path):
            if not target.startswith("losskit"):
                continue
            targets = [target] if target != "losskit" else [f"losskit.{n}" for n in names]
            for t in targets:
                other = _part(t) if t != "losskit" else "__init__"
                if other != mine and other not in ALLOWED[mine]:
                    wrong.append(f"{name} imports {t}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        mine = _part(name)
        for target, _names in _top_level_imports(path):
            if target.startswith("losskit."):
                other = _part(target)
                if other != mine:
                    graph.setdefault(mine, set()).add(other)

    def reach(start: str, node: str, seen: set[str]) -> bool:
        for nxt in graph.get(node, ()):
            if nxt == start:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reach(start, nxt, seen):
                    return True
        return False

    cyclic = [p for p in graph if p != "__init__" and reach(p, p, set())]
    assert not cyclic, f"import cycles through {cyclic}: {graph}"


def test_no_private_name_is_borrowed_from_another_package():
    wrong = []
    for name, path in MODULES.items():
        package = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
        for target, names in _all_imports(path):
            if not target.startswith("losskit"):
                continue
            target_package = (
                target if (SRC.parent / target.replace(".", "/") / "__init__.py").exists() else target.rsplit(".", 1)[0]
            )
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target_package != package:
                wrong.append(f"{name} imports {private} from {target}")
            # a private module of another package (losskit._core is the library's internal math,
            # private to losskit as a whole, not to a sibling package)
            parts = target.split(".")
            for i, part in enumerate(parts[1:], start=1):
                owner = ".".join(parts[:i])
                if part.startswith("_") and part != "_core" and not package.startswith(owner):
                    wrong.append(f"{name} imports the private module {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_over_500_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 500}
    assert not long


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_import_losskit_loads_no_application_dependency():
    out = _run(
        """
        import sys
        import losskit, losskit.functional, losskit.nn, losskit.distributed, losskit.registry
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pandas", "sklearn", "matplotlib", "rich", "libcst", "torchmetrics", "scipy", "PIL"})
        print(heavy)
        print(sorted(m for m in sys.modules if m.startswith("losskit.app") or m.startswith("losskit.lint")))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]


@pytest.mark.parametrize("module", ["losskit.functional", "losskit.nn", "losskit"])
def test_the_library_imports_with_only_torch_installed(module):
    """Every third-party package but torch (and what torch itself imports) is made unimportable."""
    out = _run(
        f"""
        import sys, importlib.abc
        import torch  # torch and its own dependencies load first
        allowed = set(sys.modules)

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                top = name.split(".")[0]
                if top in {{"numpy", "pandas", "sklearn", "matplotlib", "rich", "libcst", "torchmetrics", "scipy", "pyarrow", "pathspec"}}:
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import {module}
        print("ok")
        """
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_old_fused_path_is_a_deprecated_alias_of_the_same_module():
    out = _run(
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import losskit.fused.linear_cross_entropy as old
        import losskit.autograd.linear_cross_entropy as new
        print(old is new, [str(w.message)[:45] for w in caught if w.category is DeprecationWarning])
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True ['losskit.fused was renamed losskit.autograd; i']"


def test_without_torch_the_library_says_how_to_install_it():
    out = _run(
        """
        import sys, importlib.abc

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ModuleNotFoundError(f"No module named {name!r}", name="torch")
                return None

        sys.meta_path.insert(0, Block())
        import losskit  # torch-free
        print(losskit.__version__)
        try:
            losskit.nn
        except ModuleNotFoundError as exc:
            print(exc)
        """
    )
    assert out.returncode == 0, out.stderr
    version, message = out.stdout.strip().splitlines()
    assert version and "losskit.nn needs PyTorch, which is not installed" in message and "losskit[torch]" in message
