"""`replay --workers 2` against one worker, whole process, on the churn capture of conftest.py (200,000
eight-packet connections from as many clients to one NIC behind 1,000 rules). Target: 2 workers
>= 1.6x one on a 2-core machine.

The machine's own ceiling is measured in the same run: one CPU-bound process, then two at once (on
the 2-vCPU machines here two processes have given 1.54-1.80x, not 2x)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from figures import FIGURES, RATES, rate


def _spin(n: int) -> float:
    x = 0
    for i in range(n):
        x += i * i
    return float(x)


def _spin_in(processes: int) -> None:
    subprocess.run([sys.executable, "-c", "import sys, multiprocessing as mp; from test_workers_bench import "
                    f"_spin; mp.get_context('fork').Pool({processes}).map(_spin, [10_000_000] * {processes})"],
                   check=True, cwd=Path(__file__).resolve().parent)


@pytest.mark.parametrize("processes", [1, 2])
def test_the_machines_ceiling_for_two_processes(benchmark, processes):
    benchmark.pedantic(_spin_in, args=(processes,), rounds=3, iterations=1)
    RATES[f"CPU-bound work in {processes} process(es)"] = processes / benchmark.stats.stats.mean
    one, two = "CPU-bound work in 1 process(es)", "CPU-bound work in 2 process(es)"
    if one in RATES and two in RATES:
        FIGURES["parallel ceiling: 2 CPU-bound processes / 1"] = f"{RATES[two] / RATES[one]:.2f}"


def _replay_run(scenario: Path, capture: Path, workers: int) -> None:
    subprocess.run([sys.executable, "-m", "dataplane.cli", "replay", str(scenario), str(capture),
                    "--workers", str(workers)], check=True, capture_output=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_replay_churn_packets_per_second_by_workers(benchmark, scenario, churn, workers):
    capture, count = churn
    benchmark.pedantic(_replay_run, args=(scenario, capture, workers), rounds=3, iterations=1)
    rate(benchmark, f"replay --workers {workers}, churn capture", count)
    one, two = "replay --workers 1, churn capture", "replay --workers 2, churn capture"
    if one in RATES and two in RATES:
        FIGURES["replay --workers 2 / --workers 1, churn"] = f"{RATES[two] / RATES[one]:.2f} (target >= 1.6)"
        ceiling = "parallel ceiling: 2 CPU-bound processes / 1"
        if ceiling in FIGURES:
            FIGURES["replay --workers 2 / --workers 1 / the ceiling"] = \
                f"{RATES[two] / RATES[one] / float(FIGURES[ceiling]):.2f}"
