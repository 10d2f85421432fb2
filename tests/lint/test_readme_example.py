"""The README's `losskit lint` example output is what the tool prints, character for character."""

from __future__ import annotations

import re
from pathlib import Path

from losskit.app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Finding loss misuse in code: `losskit lint`")
    return text[start : text.index("\n## ", start + 5)]


def test_readme_lint_example_output_matches(tmp_path, monkeypatch, capsys):
    section = _section()
    program = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    session = re.search(r"```\n(\$ losskit lint .*?)```", section, re.S).group(1)
    commands = re.split(r"^\$ ", session, flags=re.M)[1:]
    assert [c.splitlines()[0] for c in commands] == ["losskit lint train.py", "losskit lint --fix train.py"]
    monkeypatch.chdir(tmp_path)
    Path("train.py").write_text(program)
    for command in commands:
        argv, *expected = command.splitlines()
        assert main(argv.split()[1:]) == 1
        out, err = capsys.readouterr()
        assert (out + err).splitlines() == expected, argv
