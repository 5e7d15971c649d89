"""Start-up of the `dataplane` command, whole process: `--help`, `lint` of a one-rule NSG and `replay` of an
empty capture, against `python -c pass` in the same run. Targets: `--help` and `lint` under 150 ms,
about five bare interpreter starts.

The runs may write bytecode (`__pycache__`, ignored by git) even where PYTHONDONTWRITEBYTECODE is set:
an installed package has its bytecode, and timing the compiler instead would hide what imports cost.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from figures import FIGURES, rate, ratio

ROOT = Path(__file__).resolve().parents[1]
NSG = ROOT / "pcaps" / "demo" / "nsg-jump-locked.json"
SCENARIO = ROOT / "pcaps" / "demo" / "scenario.yaml"
ROUNDS = 15


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def empty_capture(tmp_path_factory) -> Path:
    """A pcap of no packets: its 24-byte file header alone."""
    path = tmp_path_factory.mktemp("startup") / "empty.pcap"
    path.write_bytes((ROOT / "pcaps" / "demo" / "web.pcap").read_bytes()[:24])
    return path


def _start(benchmark, env: dict[str, str], name: str, *argv: str) -> None:
    def run() -> None:
        subprocess.run([sys.executable, *argv], check=True, capture_output=True, env=env, cwd=ROOT)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    rate(benchmark, name, 1)
    FIGURES[f"{name}: wall time"] = f"{benchmark.stats.stats.mean * 1000:.0f} ms"


def test_bare_interpreter_start(benchmark, env):
    _start(benchmark, env, "python -c pass", "-c", "pass")


def test_help_start(benchmark, env):
    _start(benchmark, env, "dataplane --help", "-m", "dataplane.cli", "--help")
    ratio("--help / bare interpreter (time)", "python -c pass", "dataplane --help", "<= 5, under 150 ms")


def test_lint_start(benchmark, env):
    _start(benchmark, env, "dataplane lint", "-m", "dataplane.cli", "lint", str(NSG))
    ratio("lint / bare interpreter (time)", "python -c pass", "dataplane lint", "<= 5, under 150 ms")


def test_replay_empty_capture_start(benchmark, env, empty_capture):
    _start(benchmark, env, "dataplane replay (empty capture)", "-m", "dataplane.cli", "replay", str(SCENARIO),
           str(empty_capture))
    ratio("replay of an empty capture / bare interpreter (time)", "python -c pass",
          "dataplane replay (empty capture)", "none set")
