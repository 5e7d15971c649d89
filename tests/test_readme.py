"""The README's promises hold: its Python example runs, and its commands name real files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_python_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block, "the README has a Python example"
    monkeypatch.chdir(ROOT)
    exec(compile(block.group(1), "README.md", "exec"), {})
    assert "Statistics(" in capsys.readouterr().out


def test_readme_starts_with_the_two_setup_commands() -> None:
    commands = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    assert "dataplane replay pcaps/demo/scenario.yaml pcaps/demo/*.pcap" in commands
    assert "pytest" in commands


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[test]'" in ci and "-m pytest -q" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
