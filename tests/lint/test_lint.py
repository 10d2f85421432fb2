"""losskit lint: fixture files per rule (TorchFix style), fixes, the command, the flake8 plugin,
and a run over real code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from losskit.app.cli import main
from losskit.lint import fix_source, lint_source
from losskit.lint.rules import BY_CODE, RULES

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def _expected(txt: Path) -> list[str]:
    return [line.strip() for line in txt.read_text().splitlines() if line.strip()]


CASES = sorted(p for p in FIXTURES.glob("*/*.py") if not p.name.endswith((".in.py", ".out.py")))
FIXES = sorted(FIXTURES.glob("*/*.in.py"))


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_findings(path):
    code = path.parent.name
    got = [f"{f.line}:{f.col} {f.code}" for f in lint_source(path.read_text(), str(path), select=[code])]
    assert got == _expected(path.with_suffix(".txt"))


@pytest.mark.parametrize("path", FIXES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_fixes(path):
    import libcst

    code = path.parent.name
    unsafe = path.name.startswith("unsafe")
    source = path.read_text()
    fixed, applied = fix_source(source, str(path), unsafe=unsafe, select=[code])
    assert applied >= 1
    assert fixed == path.with_name(path.name.replace(".in.py", ".out.py")).read_text()
    libcst.parse_module(fixed)  # fixed files parse
    remaining = [f for f in lint_source(fixed, str(path), select=[code]) if f.fix is not None and (unsafe or f.fixable)]
    assert remaining == []  # and lint again without the fixed findings
    if not unsafe:  # the safe pass leaves unsafe-only fixes alone
        assert fix_source(source, str(path), unsafe=False, select=[code])[0] == fixed


def test_every_rule_has_positive_and_negative_fixtures_and_unique_codes():
    codes = [r.code for r in RULES]
    assert len(codes) == len(set(codes))
    assert codes == ["LK101", "LK102", "LK103", "LK104", "LK105", "LK106", "LK107", "LK108", "LK110", "LK111", "LK113"]
    for code in codes:
        assert _expected(FIXTURES / code / "bad.txt"), code
        assert (FIXTURES / code / "good.py").exists() and _expected(FIXTURES / code / "good.txt") == [], code
        assert BY_CODE[code].summary
    for code in ("LK103", "LK106", "LK108", "LK111"):  # the safe fixes the issue names
        assert (FIXTURES / code / "fix.in.py").exists(), code


def test_suppression_comments():
    src = (
        "import torch, torch.nn.functional as F\n"
        "a = F.cross_entropy(torch.softmax(x, 1), y)  # losskit: ignore[LK101]\n"
        "b = F.cross_entropy(torch.softmax(x, 1), y)  # losskit: ignore\n"
        "c = F.cross_entropy(torch.softmax(x, 1), y.float())  # losskit: ignore[LK106]\n"
        "d = F.cross_entropy(torch.softmax(x, 1), y)  # losskit: ignore[LK999]\n"
    )
    assert [(f.line, f.code) for f in lint_source(src)] == [(4, "LK101"), (5, "LK101")]


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(
        "import torch\nimport torch.nn.functional as F\n\n\ndef f(x, y):\n"
        "    return F.cross_entropy(x, y.float()) + F.cross_entropy(torch.softmax(x, 1), y)\n"
    )
    (tmp_path / "pkg" / "clean.py").write_text(
        "import torch.nn.functional as F\n\n\ndef f(x, y):\n    return F.cross_entropy(x, y)\n"
    )
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "gen.py").write_text(
        "import torch\nimport torch.nn.functional as F\nF.cross_entropy(torch.softmax(a, 1), b)\n"
    )
    (tmp_path / ".gitignore").write_text("build/\n")
    return tmp_path


def test_cli_text_exit_status_and_gitignore(tmp_path, capsys):
    root = _project(tmp_path)
    assert main(["lint", str(root)]) == 1
    out, err = capsys.readouterr()
    assert "train.py:6:31: LK106 " in out and out.rstrip().endswith("[*]") is False
    assert "gen.py" not in out  # .gitignore'd
    assert "2 finding(s) in 2 file(s); 1 fixable with --fix" in err
    assert main(["lint", str(root / "pkg" / "clean.py")]) == 0
    assert main(["lint", str(root / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["lint", str(root), "--select", "LK9"]) == 2


def test_cli_json_github_select_ignore(tmp_path, capsys):
    root = _project(tmp_path)
    assert main(["lint", str(root / "pkg"), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["code"] for d in data] == ["LK106", "LK101"]
    assert all(set(d) == {"code", "path", "cell", "line", "col", "message", "fixable"} for d in data)
    assert data[0]["fixable"] is True and data[1]["fixable"] is False
    assert main(["lint", str(root / "pkg"), "--format", "github", "--select", "LK101"]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith("::error file=") and ",line=6,col=" in line and "title=LK101::LK101 softmax" in line
    assert main(["lint", str(root / "pkg"), "--ignore", "LK1"]) == 0


def test_cli_fix_rewrites_atomically_and_keeps_unparsable_files(tmp_path, capsys):
    root = _project(tmp_path)
    target = root / "pkg" / "train.py"
    os.chmod(target, 0o640)
    broken = root / "pkg" / "broken.py"
    broken.write_text("def f(:\n    return F.cross_entropy(torch.softmax(x, 1), y.float())\n")
    before_broken = broken.read_bytes()
    assert main(["lint", str(root / "pkg"), "--fix"]) == 1  # the unsafe LK101 and the parse error remain
    captured = capsys.readouterr()
    assert "fixed 1 in 1 file(s)" in captured.err
    assert "y.long()" in target.read_text() and "torch.softmax(x, 1)" in target.read_text()
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert broken.read_bytes() == before_broken and "LK000" in captured.out
    assert not list((root / "pkg").glob("*.losskit-tmp"))
    assert main(["lint", str(target), "--unsafe-fixes"]) == 0
    assert "F.cross_entropy(x, y.long()) + F.cross_entropy(x, y)" in target.read_text()


def test_flake8_plugin(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import torch\nimport torch.nn.functional as F\n\nloss = F.cross_entropy(torch.softmax(x, 1), y)\n")
    out = subprocess.run(
        [sys.executable, "-m", "flake8", "--select", "LK", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1, out.stderr
    assert f"{path}:4:24: LK101 softmax output passed to cross-entropy" in out.stdout


def test_pre_commit_hook_file():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "id: losskit-lint" in text and "entry: losskit lint" in text and "types_or: [python, jupyter]" in text


def test_real_code_run_is_clean_and_reviewed():
    """Lint this repository's examples, torch's own nn sources and torch's loss test suite
    (common_nn.py): no crash, no parse error, and exactly the findings reviewed by hand."""
    import torch

    from losskit.lint.runner import lint_paths

    torch_dir = Path(torch.__file__).parent
    result = lint_paths(
        [str(ROOT / "examples"), str(torch_dir / "nn"), str(torch_dir / "testing" / "_internal" / "common_nn.py")]
    )
    assert result.files > 100
    codes = [f.code for f in result.findings]
    assert "LK000" not in codes
    reviewed = {(Path(f.path).name, f.code) for f in result.findings}
    assert reviewed == REVIEWED, sorted(reviewed - REVIEWED) + ["<- new / missing ->"] + sorted(REVIEWED - reviewed)


#: findings on the real-code run, each read by hand (file, code):
#: - guardrails_tour.py: the tour commits these mistakes on purpose to show the runtime guardrails
#:   (softmax before cross_entropy, one-hot targets, float class ids, sigmoid before *_with_logits);
#: - common_nn.py LK108: the BCEWithLogitsLoss_legacy_enum test passes reduce=False on purpose;
#: - common_nn.py LK113: hand-written references -(t * sigmoid(i).log() + ...) of BCE tests.
#: torch/nn itself: no finding. No false positive found.
REVIEWED: set[tuple[str, str]] = {
    ("guardrails_tour.py", "LK101"),
    ("guardrails_tour.py", "LK102"),
    ("guardrails_tour.py", "LK105"),
    ("guardrails_tour.py", "LK106"),
    ("common_nn.py", "LK108"),
    ("common_nn.py", "LK113"),
}


def test_criterion_on_self_and_every_import_form_of_softmax():
    """Issue 15, item 12: a criterion stored on self in __init__ and called in another method,
    with softmax imported four ways -- each call is one LK101."""
    src = """\
import torch
import torch.nn as nn
from torch.nn.functional import softmax
import torch.nn.functional as F


class Trainer:
    def __init__(self, model):
        self.model = model
        self.loss = nn.CrossEntropyLoss()

    def step(self, x, y):
        probs = softmax(self.model(x), dim=1)
        return self.loss(probs, y)

    def step2(self, x, y):
        return self.loss(F.softmax(self.model(x), 1), y)

    def step3(self, x, y):
        return self.loss(torch.softmax(self.model(x), 1), y)

    def step4(self, x, y):
        return self.loss(self.model(x).softmax(1), y)

    def clean(self, x, y):
        return self.loss(self.model(x), y)
"""
    assert [(f.line, f.code) for f in lint_source(src)] == [(14, "LK101"), (17, "LK101"), (20, "LK101"), (23, "LK101")]


#: issue 18, item 4: a model's forward followed to the loss, hand-built one-hot targets
FORWARD_FIXTURES = [
    "LK101/nofix_forward.py",
    "LK101/nofix_tuple.py",
    "LK102/nofix_forward.py",
    "LK103/nofix_forward.py",
    "LK104/nofix_forward.py",
    "LK113/nofix_forward.py",
]
CLEAN_EVERYWHERE = [
    "LK101/good_forward.py",
    "LK101/good_tuple.py",
    "LK102/good_forward.py",
    "LK103/good_forward.py",
    "LK104/good_forward.py",
    "LK107/good_hand_built.py",
    "LK107/good_flow.py",
    "LK111/good_returned.py",
]


@pytest.mark.parametrize("name", FORWARD_FIXTURES)
def test_forward_activation_findings_have_no_fix(name):
    """Changing a model's forward changes what it predicts everywhere: not even an unsafe fix."""
    path = FIXTURES / name
    source = path.read_text()
    code = path.parent.name
    findings = lint_source(source, str(path), select=[code])
    assert findings and all(f.fix is None for f in findings)
    assert fix_source(source, str(path), unsafe=True, select=[code]) == (source, 0)


@pytest.mark.parametrize("name", CLEAN_EVERYWHERE)
def test_clean_model_and_target_patterns_are_clean_for_every_rule(name):
    """A sigmoid model used for predictions, (logits, probabilities) tuples, masks and heatmaps,
    class indices from a generator, a returned sum the caller backpropagates: no rule reports
    them (not only the rule whose folder holds them)."""
    path = FIXTURES / name
    assert lint_source(path.read_text(), str(path)) == []


def test_forward_activation_message_names_the_forward():
    (finding,) = lint_source((FIXTURES / "LK104/nofix_forward.py").read_text(), "train.py", select=["LK104"])
    assert finding.message.startswith("Classifier.forward (line 16) ends in softmax, so the model's output")
    assert "end forward in log_softmax, or return the logits and use cross_entropy" in finding.message
    first = lint_source((FIXTURES / "LK101/nofix_forward.py").read_text(), "train.py", select=["LK101"])[0]
    assert first.message.startswith("Net.forward (line 18) ends in softmax")
    assert "return the logits from forward and apply softmax only for predictions" in first.message


def test_forward_activation_in_a_notebook_names_the_forward_without_a_line(tmp_path):
    """The model in one cell, the loop in another: found, and the message gives no line number
    (the engine sees the joined cells, whose line numbers are not the cell's)."""
    from losskit.lint import lint_paths

    nb = tmp_path / "train.ipynb"
    cells = [
        "import torch\nfrom torch import nn\nimport torch.nn.functional as F",
        "class Net(nn.Module):\n    def forward(self, x):\n        return F.softmax(x, dim=1)",
        "model = Net()\ncriterion = nn.CrossEntropyLoss()",
        "for x, y in loader:\n    loss = criterion(model(x), y)",
    ]
    nb.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [
                    {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                    for c in cells
                ],
            }
        )
    )
    (finding,) = lint_paths([str(nb)]).findings
    assert (finding.code, finding.cell, finding.line, finding.col) == ("LK101", 4, 2, 22)
    assert finding.message.startswith("Net.forward ends in softmax, so")


def test_self_attributes_are_per_class():
    """Class B's self.criterion (MSE) and self.softmax (Identity) do not take A's meaning, nor
    the other way round, in either order of the classes in the file."""
    a = (
        "class A:\n    def __init__(self):\n        self.criterion = nn.CrossEntropyLoss()\n"
        "        self.softmax = nn.Softmax(dim=1)\n\n    def step(self, out, y):\n"
        "        return self.criterion(self.softmax(out), y)\n"
    )
    b = (
        "class B:\n    def __init__(self):\n        self.criterion = nn.MSELoss()\n"
        "        self.softmax = nn.Identity()\n\n    def step(self, out, y):\n"
        "        return self.criterion(self.softmax(out), y) + nn.CrossEntropyLoss()(self.softmax(out), y)\n"
    )
    head = "from torch import nn\n\n\n"
    assert [(f.line, f.code) for f in lint_source(head + a + "\n\n" + b)] == [(10, "LK101")]
    assert [(f.line, f.code) for f in lint_source(head + b + "\n\n" + a)] == [(19, "LK101")]


def test_the_prefilter_keeps_what_the_rules_need(monkeypatch):
    """Every fixture gives the same findings when libcst reads the whole file as when it reads
    only what the prefilter keeps (forward of a model class, module-level scatter_, ...)."""
    from losskit.lint import engine

    cases = [p for p in CASES if p.parent.name != "LK000"]
    reduced = {p: lint_source(p.read_text(), str(p)) for p in cases}
    monkeypatch.setattr(engine, "relevant_source", lambda source, tree, codes: source)
    monkeypatch.setattr(engine, "text_could_match", lambda source, codes: True)
    for p in cases:
        assert lint_source(p.read_text(), str(p)) == reduced[p], p


def test_lk113_unsafe_fix_names_functional_through_the_file_imports():
    """Issue 18, item 4: the fused form is written with the file's own names; no fix where it
    cannot be named, nor for ``F.softmax(x, 1).log()`` (its inner call starts at the same place,
    and fixes find their node by type and start)."""
    src = "import torch\n\n\ndef f(z):\n    return torch.log(1 - torch.sigmoid(z))\n"
    fixed = src.replace("torch.log(1 - torch.sigmoid(z))", "torch.nn.functional.logsigmoid(-z)")
    assert fix_source(src, unsafe=True) == (fixed, 1)
    assert fix_source(src) == (src, 0)  # unsafe: it changes the numbers where the original is -inf
    bare = "from torch import log, sigmoid\n\n\ndef f(z):\n    return log(sigmoid(z))\n"
    (finding,) = lint_source(bare)
    assert finding.code == "LK113" and finding.fix is None
    method = lint_source((FIXTURES / "LK113" / "bad.py").read_text(), select=["LK113"])
    assert [(f.line, f.fix_kind) for f in method] == [(6, "unsafe"), (7, ""), (9, "")]


def test_prefilter_keeps_a_model_class_that_has_only_other_methods():
    """A subclass of a model of the file, with neither __init__ nor forward: kept whole (blanking
    every method would leave a class without a body, which does not parse), and followed."""
    src = (
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "class Base(nn.Module):\n    def forward(self, x):\n        return F.softmax(x, 1)\n\n\n"
        "class Helper(Base):\n    def describe(self):\n        return 'helper'\n\n\n"
        "class Unrelated(Base):\n    def other(self):\n        return 1\n\n\n"
        "model = Helper()\nloss = F.cross_entropy(model(x), y)\n"
    )
    assert [(f.line, f.code) for f in lint_source(src)] == [(21, "LK101")]


def test_prefilter_counts_lines_as_python_does_form_feeds_included(monkeypatch):
    """A form feed (^L, between sections of older code) is whitespace to Python, a line break to
    ``str.splitlines``: the prefilter must number lines as the parser does, or it blanks the
    wrong ones and the finding is lost."""
    from losskit.lint import engine

    src = (
        "import torch.nn.functional as F\n\x0c\n\x0c\ndef helper():\n    return 1\n\x0c\n\n"
        "def train(x, y):\n    p = F.softmax(x, 1)\n    return F.cross_entropy(p, y)\n"
    )
    expected = [(10, "LK101")]
    assert [(f.line, f.code) for f in lint_source(src)] == expected
    monkeypatch.setattr(engine, "relevant_source", lambda source, tree, codes: source)
    monkeypatch.setattr(engine, "text_could_match", lambda source, codes: True)
    assert [(f.line, f.code) for f in lint_source(src)] == expected


@pytest.mark.parametrize(
    "source",
    [
        "def f(:\n    pass\n",  # a syntax error: LK000 at the parser's line
        "x = 1\nreturn x\n",  # compile rejects it, the parser accepts it: no finding, as before
        "s = '\\d'\n",  # an invalid escape: a warning of the compiler, not a finding
    ],
)
def test_a_file_no_rule_needs_is_still_syntax_checked_as_the_parser_does(source):
    import ast

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(source)
        expected = []
    except SyntaxError as exc:
        expected = [("LK000", exc.lineno)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [(f.code, f.line) for f in lint_source(source)] == expected


def test_help_says_what_lk000_means_for_files_and_notebook_cells(capsys):
    with pytest.raises(SystemExit):
        main(["lint", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "that Python cannot parse, is one LK000 finding" in text
    assert "in a notebook, each code cell that does not parse is one LK000 finding" in text
