"""losskit lint on any tree: encodings, BOM and line endings kept by fixes, one bad file at a
time (dangling symlink, unreadable, too deep), notebooks cell by cell, --diff, -j N, SARIF and
GitHub output, and no torch import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from losskit.app.cli import main
from losskit.lint import format_findings, lint_paths, lint_source

FIXTURES = Path(__file__).parent / "fixtures"

# one LK108 finding with a safe fix, on line 4 (hand-derived: `nn.MSELoss(` starts at column 7)
LK108_IN = "import torch.nn as nn\n\n# Café\ncrit = nn.MSELoss(size_average=False)\n"
LK108_OUT = 'import torch.nn as nn\n\n# Café\ncrit = nn.MSELoss(reduction="sum")\n'


def test_pep263_encoding_is_read_and_kept(tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes(("# -*- coding: latin-1 -*-\n" + LK108_IN).encode("latin-1"))
    assert [(f.code, f.line, f.col) for f in lint_paths([str(path)]).findings] == [("LK108", 5, 8)]
    lint_paths([str(path)], fix=True)
    assert path.read_bytes() == ("# -*- coding: latin-1 -*-\n" + LK108_OUT).encode("latin-1")
    assert b"Caf\xe9" in path.read_bytes()  # still one latin-1 byte, not UTF-8's two


def test_bom_and_crlf_are_kept(tmp_path):
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbf" + LK108_IN.replace("\n", "\r\n").encode("utf-8"))
    result = lint_paths([str(path)], fix=True)
    assert result.fixed == 1 and result.findings == []
    assert path.read_bytes() == b"\xef\xbb\xbf" + LK108_OUT.replace("\n", "\r\n").encode("utf-8")


def test_undecodable_file_is_one_finding_and_the_run_goes_on(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x = '\xff\xfe'\n")  # not UTF-8, no declaration
    (tmp_path / "b.py").write_text(LK108_IN)
    findings = lint_paths([str(tmp_path)]).findings
    assert [(Path(f.path).name, f.code) for f in findings] == [("a.py", "LK000"), ("b.py", "LK108")]
    assert findings[0].message.startswith("cannot decode the file (invalid or missing encoding declaration)")
    assert "PEP 263" in findings[0].message


def test_dangling_symlink_is_reported_and_the_run_goes_on(tmp_path):
    (tmp_path / "gone.py").symlink_to(tmp_path / "nowhere.py")
    (tmp_path / "b.py").write_text(LK108_IN)
    findings = lint_paths([str(tmp_path)]).findings
    assert [(Path(f.path).name, f.code, f.line) for f in findings] == [("b.py", "LK108", 4), ("gone.py", "LK000", 1)]
    assert "symbolic link" in findings[1].message and "nowhere.py" in findings[1].message
    assert main(["lint", str(tmp_path / "gone.py")]) == 1  # named directly: reported, not a usage error


def test_unreadable_file_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    locked = tmp_path / "a.py"
    locked.write_text(LK108_IN)
    (tmp_path / "b.py").write_text(LK108_IN)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for a user
        from losskit.lint import sources

        real = sources.Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self.name == "a.py":
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(sources.Path, "read_bytes", read_bytes)
    else:
        locked.chmod(0)
    findings = lint_paths([str(tmp_path)], fix=True).findings
    assert [(Path(f.path).name, f.code) for f in findings] == [("a.py", "LK000")]  # b.py was fixed
    assert "cannot read the file (Permission denied)" in findings[0].message


def _table(rows: int, terms: int) -> str:
    """A generated module: a ~26 KB table of constants and one long sum (as code generators write)."""
    table = "\n".join(f"W_{i} = [{', '.join(str((i * 7 + j) % 97 / 97) for j in range(24))}]" for i in range(rows))
    total = " + ".join(f"W_{i % rows}[{i % 24}]" for i in range(terms))
    return f"import torch.nn as nn\n\n{table}\nTOTAL = {total}\ncrit = nn.MSELoss(size_average=False)\n"


LONG_BUT_VALID = {
    "600-term sum": "import torch.nn as nn\n\nx = " + " + ".join(["a"] * 600) + "\nc = nn.MSELoss(size_average=True)\n",
    "2,000-term sum": "x = " + " + ".join(["a"] * 2000) + "\nimport torch.nn as nn\nc = nn.L1Loss(reduce=False)\n",
    "26 KB table, 900-term sum": _table(34, 900),
}


@pytest.mark.parametrize("name", LONG_BUT_VALID)
def test_no_lk000_on_a_file_python_compiles(tmp_path, name):
    """LK000 means Python itself cannot read the file: long valid expressions, which libcst walks
    recursively, are linted (the rest of the file too) and fixed like any other code."""
    source = LONG_BUT_VALID[name]
    compile(source, name, "exec")  # Python reads it
    path = tmp_path / "generated.py"
    path.write_text(source)
    limit = sys.getrecursionlimit()
    findings = lint_paths([str(path)]).findings
    assert sys.getrecursionlimit() == limit  # the deep stack's limit is restored
    assert [f.code for f in findings] == ["LK108"]  # the one real finding; no LK000
    lint_paths([str(path)], fix=True)
    assert "size_average" not in path.read_text() and "reduce=" not in path.read_text()


def test_an_expression_python_cannot_compile_is_one_lk000_finding(tmp_path):
    deep = " + ".join(["a"] * 5000)  # beyond CPython's own recursion limit for compiling
    source = f"import torch.nn.functional as F\n\nx = 1\nloss = F.mse_loss(x, {deep})\n"
    with pytest.raises(RecursionError):
        compile(source, "deep.py", "exec")
    path = tmp_path / "deep.py"
    path.write_text(source)
    (tmp_path / "ok.py").write_text(LK108_IN)
    findings = lint_paths([str(tmp_path)]).findings
    assert [(Path(f.path).name, f.code) for f in findings] == [("deep.py", "LK000"), ("ok.py", "LK108")]
    assert "RecursionError" in findings[0].message


def _notebook(path: Path, cells: list[tuple[str, str]]) -> None:
    path.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [
                    {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True), "outputs": []}
                    for kind, src in cells
                ],
            }
        )
    )


def test_notebook_cell_by_cell(tmp_path):
    nb = tmp_path / "train.ipynb"
    _notebook(
        nb,
        [
            ("markdown", "# Training\nsoftmax then cross-entropy?"),
            ("code", "%matplotlib inline\n!pip install \\\n    torch\nimport torch\nfrom torch import nn"),  # cell 2
            ("code", "criterion = nn.CrossEntropyLoss()\nfiles = !ls\nmodel?"),  # cell 3
            ("code", "%%bash\necho softmax(x) ( unbalanced"),  # cell 4: a cell magic, not Python
            ("code", "def f(:\n    pass"),  # cell 5: does not parse
            ("code", "logits = model(x)\nloss = criterion(torch.softmax(logits, 1), y)"),  # cell 6
        ],
    )
    before = nb.read_bytes()
    result = lint_paths([str(tmp_path)], fix=True, unsafe_fixes=True)
    assert [(f.code, f.cell, f.line, f.col) for f in result.findings] == [("LK000", 5, 1, 7), ("LK101", 6, 2, 18)]
    text = format_findings(result.findings, "text").splitlines()
    assert text[1].startswith(f"{nb}:cell 6:line 2:col 18: LK101 softmax output passed to cross-entropy")
    assert nb.read_bytes() == before and result.fixed == 0  # notebooks are never rewritten
    assert not text[1].endswith("[*]")


def test_diff_prints_the_fixes_and_changes_nothing(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_text(LK108_IN)
    assert main(["lint", "--diff", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == (
        f"--- a/{path}\n+++ b/{path}\n@@ -1,4 +1,4 @@\n import torch.nn as nn\n \n # Café\n"
        '-crit = nn.MSELoss(size_average=False)\n+crit = nn.MSELoss(reduction="sum")\n'
    )
    assert "1 fix(es) in 1 file(s) would be applied; nothing was changed" in err
    assert path.read_text() == LK108_IN
    path.write_text(LK108_OUT)
    assert main(["lint", "--diff", str(path)]) == 0 and capsys.readouterr().out == ""


def test_jobs_give_the_same_findings(tmp_path, capsys):
    for i in range(6):
        (tmp_path / f"m{i}.py").write_text(LK108_IN if i % 2 else "import torch\n")
    expected = [(f"m{i}.py", "LK108", 4, 8) for i in (1, 3, 5)]
    for jobs in (1, 2, 0):
        result = lint_paths([str(tmp_path)], jobs=jobs)
        assert [(Path(f.path).name, f.code, f.line, f.col) for f in result.findings] == expected, jobs
        assert [f.fixable for f in result.findings] == [True] * 3  # survives the trip between processes
    assert main(["lint", "-j", "2", "--fix", str(tmp_path)]) == 0
    assert (tmp_path / "m3.py").read_text() == LK108_OUT
    assert main(["lint", "-j", "-1", str(tmp_path)]) == 2
    assert "--jobs -1: expected 0" in capsys.readouterr().err


def test_sarif(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.py").write_text(LK108_IN)
    assert main(["lint", "--format", "sarif", "m.py"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules][:2] == ["LK000", "LK101"] and "LK113" in {r["id"] for r in rules}
    (result,) = run["results"]
    assert result["ruleId"] == "LK108" and rules[result["ruleIndex"]]["id"] == "LK108"
    assert result["message"]["text"] == 'deprecated size_average=False; use reduction="sum"'
    assert result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "m.py"},
        "region": {"startLine": 4, "startColumn": 8},
    }


def test_github_annotations_escape():
    source = "import torch.nn as nn\nc = nn.MSELoss(size_average=False)\n"
    (finding,) = lint_source(source, "dir,with:odd%name.py")
    assert format_findings([finding], "github") == (
        "::error file=dir%2Cwith%3Aodd%25name.py,line=2,col=5,title=LK108::"
        'LK108 deprecated size_average=False; use reduction="sum"'
    )


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="fmt 'xml' is unknown; expected one of text, json, github, sarif"):
        format_findings([], "xml")


def test_lint_runs_without_torch(tmp_path):
    """`python -m losskit lint` never imports torch, and works where torch cannot be imported (the
    pre-commit hook's environment)."""
    path = tmp_path / "m.py"
    path.write_text("import torch\nimport torch.nn.functional as F\nloss = F.cross_entropy(torch.softmax(x, 1), y)\n")
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "losskit", "lint", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and ": LK101 " in out.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert "libcst" in imported and "torch" not in imported  # the check can see a module load
    blocked = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "from losskit.app.cli import main\n"
        f"sys.exit(main(['lint', '--format', 'json', {str(path)!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert [d["code"] for d in json.loads(out.stdout)] == ["LK101"]


def test_notebook_cells_ipython_would_run_are_not_parse_errors(tmp_path):
    nb = tmp_path / "nb.ipynb"
    _notebook(
        nb,
        [
            ("code", "msg = (\n    'loss %f'\n    % (1.0,))"),  # `%` continuing an expression: not a magic
            ("code", "  x = [1,\n       2]\n  y = x"),  # IPython removes the first line's indentation
            ("code", "import torch.nn as nn\n  \nc = nn.MSELoss(size_average=False)"),
        ],
    )
    found = [(f.code, f.cell, f.line, f.col) for f in lint_paths([str(nb)]).findings]
    assert found == [("LK108", 3, 3, 5)]


def test_cell_magics_that_run_python_are_linted_and_the_others_are_not(tmp_path):
    """%%time / %%timeit / %%capture / %%prun run the cell's body as Python: linted, with the
    cell's own line numbers; %%bash, %%writefile, %%html cells are not Python (the file written by
    %%writefile is linted as a file, if it is in the tree)."""
    nb = tmp_path / "train.ipynb"
    mistake = "loss = F.cross_entropy(torch.softmax(logits, 1), y)"
    _notebook(
        nb,
        [
            ("code", "import torch\nimport torch.nn.functional as F"),  # cell 1
            ("code", f"%%time\nlogits = model(x)\n{mistake}"),  # cell 2: line 3
            ("code", f"%%timeit -n 1 -r 1\n{mistake}"),  # cell 3: line 2
            ("code", f"%%capture captured\n\n{mistake}"),  # cell 4: line 3
            ("code", f"  %%prun -s cumulative\nfor _ in range(2):\n    {mistake}"),  # cell 5: line 3
            ("code", f"%%writefile train.py\nimport torch\nimport torch.nn.functional as F\n{mistake}"),  # cell 6
            ("code", f"%%bash\necho '{mistake}' ( unbalanced"),  # cell 7
            ("code", f"%%html\n<p>{mistake}</p>"),  # cell 8
        ],
    )
    found = [(f.code, f.cell, f.line, f.col) for f in lint_paths([str(nb)]).findings]
    assert found == [("LK101", 2, 3, 24), ("LK101", 3, 2, 24), ("LK101", 4, 3, 24), ("LK101", 5, 3, 28)]
