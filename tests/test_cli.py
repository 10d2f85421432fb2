"""The `losskit` command and the README/CI contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from losskit.app.cli import main
from losskit.app.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_python_dash_m_runs_the_demo():
    out = subprocess.run(
        [sys.executable, "-m", "losskit", "demo", "--epochs", "2"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "epoch   2  train loss" in out.stdout and "val acc" in out.stdout
    assert "best validation accuracy" in out.stdout


def test_demo_learns_digits():
    # an MLP on standardised digits reaches > 90% validation accuracy within 8 epochs
    results = run_demo(epochs=8, seed=0)
    assert results[-1].val_accuracy > 0.9
    assert results[-1].train_loss < results[0].train_loss


@pytest.mark.parametrize(
    "argv,message",
    [
        (["demo", "--epochs", "0"], "expected a positive integer, got 0"),
        (["demo", "--lr", "x"], "expected a positive number, got 'x'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_quick_start_is_two_commands_and_ci_runs_the_test_one():
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert commands[0].strip().endswith(".venv/bin/losskit compare")
    assert "pytest" in commands[1]
    assert commands[1].strip() in (ROOT / ".ci" / "run").read_text()


def test_guardrails_example_runs_and_shows_every_mistake():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "guardrails_tour.py")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    sections = out.stdout.split("\n== ")[1:]
    assert len(sections) == 13
    for section in sections:  # every mistake produced an error or a warning
        assert "LossInputError" in section or "LossDtypeError" in section or "LossUsageWarning" in section, section
