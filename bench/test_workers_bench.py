"""`replay --workers 2` against one worker, whole process, on the churn capture of conftest.py (200,000
eight-packet connections from as many clients to one NIC behind 1,000 rules). Target: 2 workers
>= 1.6x one on a 2-core machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from figures import FIGURES, RATES, rate


def _replay_run(scenario: Path, capture: Path, workers: int) -> None:
    subprocess.run([sys.executable, "-m", "dataplane.cli", "replay", str(scenario), str(capture),
                    "--workers", str(workers)], check=True, capture_output=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_replay_churn_packets_per_second_by_workers(benchmark, scenario, churn, workers):
    capture, count = churn
    benchmark.pedantic(_replay_run, args=(scenario, capture, workers), rounds=2, iterations=1)
    rate(benchmark, f"replay --workers {workers}, churn capture", count)
    one, two = "replay --workers 1, churn capture", "replay --workers 2, churn capture"
    if one in RATES and two in RATES:
        FIGURES["replay --workers 2 / --workers 1, churn"] = f"{RATES[two] / RATES[one]:.2f} (target >= 1.6)"
