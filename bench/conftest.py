"""The benchmark suite: `python -m pytest bench/ --benchmark-only` (not part of the CI test run).

The figures that matter are ratios between benchmarks of the same run (this machine is noisy), so
each benchmark records its rate in `figures.FIGURES` and the ratios are printed together at the end.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

import big_capture
from figures import FIGURES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("dataplane figures (rates and same-run ratios)")
    width = max(len(name) for name in FIGURES)
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name:<{width}}  {value}")


@pytest.fixture(scope="session")
def capture(tmp_path_factory) -> tuple[str, int]:
    """The replay benchmarks' capture (big_capture: VM to VM, two NICs a packet), built once a run."""
    if not big_capture.ECHO.is_file():
        pytest.skip("../shared/data/pcaps not found: the shared data folder sits beside the repository in CI")
    path = tmp_path_factory.mktemp("replay") / "echo-x5.pcap"
    return str(path), big_capture.build(path)


@pytest.fixture(autouse=True, scope="module")
def _collected_between_modules():
    """Each module's benchmarks start without the garbage of the modules before it."""
    gc.collect()
    yield
