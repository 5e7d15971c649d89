"""Replay, whole process, against the least a stateful firewall must do per packet (`bench/limit.c`:
map the capture, parse Ethernet/IPv4/TCP, look the 5-tuple up in an open-addressing table, create on a
miss), in the same run, on two captures the bench generates:

- busy flows: 2,500 connections of 660 packets each (1.65 M packets), interleaved;
- flow churn: 200,000 eight-packet TCP connections (1.6 M packets), a new one every 0.5 ms.

Both go from the Internet to one NIC whose NSG holds 1,000 rules (the captures and the scenario are
fixtures of conftest.py). Targets: replay ÷ limit >= 0.12
(busy) and >= 0.06 (churn).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from figures import FIGURES, RATES, rate

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def limit(tmp_path_factory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build bench/limit.c")
    program = tmp_path_factory.mktemp("limit") / "limit"
    subprocess.run([compiler, "-O2", "-o", str(program), str(HERE / "limit.c")], check=True)
    return program


def _limit_run(limit: Path, capture: Path) -> int:
    out = subprocess.run([str(limit), str(capture)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def _replay_run(scenario: Path, capture: Path) -> None:
    subprocess.run([sys.executable, "-m", "dataplane.cli", "replay", str(scenario), str(capture)], check=True,
                   capture_output=True)


@pytest.mark.parametrize("kind", ["busy", "churn"])
def test_limit_packets_per_second(benchmark, request, limit, kind):
    capture, count = request.getfixturevalue(kind)
    assert benchmark.pedantic(_limit_run, args=(limit, capture), rounds=3, iterations=1) == count
    rate(benchmark, f"limit program, {kind} capture", count)


@pytest.mark.parametrize("kind", ["busy", "churn"])
def test_replay_packets_per_second_against_the_limit(benchmark, request, scenario, kind):
    capture, count = request.getfixturevalue(kind)
    benchmark.pedantic(_replay_run, args=(scenario, capture), rounds=2, iterations=1)
    name = f"replay (whole process, 1,000 rules), {kind} capture"
    rate(benchmark, name, count)
    limit_name = f"limit program, {kind} capture"
    if limit_name in RATES:
        target = "0.12" if kind == "busy" else "0.06"
        FIGURES[f"replay / limit, {kind}"] = f"{RATES[name] / RATES[limit_name]:.3f} (target >= {target})"
