"""The benchmark suite: `python -m pytest bench/ --benchmark-only` (not part of the CI test run).

The figures that matter are ratios between benchmarks of the same run (this machine is noisy), so
each benchmark records its rate in `figures.FIGURES` and the ratios are printed together at the end.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from figures import FIGURES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("dataplane figures (rates and same-run ratios)")
    width = max(len(name) for name in FIGURES)
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name:<{width}}  {value}")


@pytest.fixture(autouse=True, scope="module")
def _collected_between_modules():
    """Each module's benchmarks start without the garbage of the modules before it."""
    gc.collect()
    yield
