"""Static analysis: `analyze` of a ClassBench-derived NSG and `diff` of two versions that
differ in 20 rules, each to finish under 5 s on one core.

ClassBench rules have no access: every fourth rule is made a Deny, so that rules override each other.
The 1k seeds have 721-918 rules; the 10k sets give exactly 1,000 (their first rules).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from dataplane import Direction, NetworkSecurityGroup
from dataplane.addresses import AddressResolver
from dataplane.analysis import analyze_nsg, diff_nsgs
from dataplane.rules import Access

from figures import FIGURES
from reference import classbench_rules

CLASSBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "classbench"
SETS = ["acl1_1k", "fw1_1k", "ipc1_1k", "acl1_10k", "fw1_10k"]
TARGET_SECONDS = 5.0
CHANGED = 20


def classbench_nsg(name: str) -> NetworkSecurityGroup:
    if not (CLASSBENCH / name).is_file():
        pytest.skip(f"{CLASSBENCH / name} not found: the shared data folder sits beside the repository")
    rules, _ = classbench_rules(CLASSBENCH / name)
    return NetworkSecurityGroup(name, [dataclasses.replace(r, access=Access.DENY if i % 4 == 0 else Access.ALLOW)
                                       for i, r in enumerate(rules[:1000])])


def changed_version(nsg: NetworkSecurityGroup) -> NetworkSecurityGroup:
    """Twenty rules spread over the NSG: half change access, half widen their destination ports."""
    rules = list(nsg.rules)
    for k in range(CHANGED):
        i = (k * len(rules)) // CHANGED + 7
        rule = rules[i]
        if k % 2:
            rules[i] = dataclasses.replace(rule, access=Access.ALLOW if rule.access is Access.DENY else Access.DENY)
        else:
            lo, hi = rule.destination_ports[0]
            rules[i] = dataclasses.replace(rule, destination_port_range="80" if (lo, hi) == (0, 65535)
                                           else f"{lo}-{min(hi + 10, 65535)}")
    return NetworkSecurityGroup(nsg.name, rules)


def _cpu_seconds(benchmark, run) -> float:
    """CPU time of one run (a shared machine's wall clock says more about the neighbours)."""
    spent = []

    def timed():
        start = time.process_time()
        result = run()
        spent.append(time.process_time() - start)
        return result

    benchmark.pedantic(timed, rounds=1, iterations=1)
    return spent[0]


@pytest.mark.parametrize("name", SETS)
def test_analyze(benchmark, name):
    nsg = classbench_nsg(name)
    seconds = _cpu_seconds(benchmark, lambda: analyze_nsg(nsg, Direction.INBOUND, AddressResolver(())))
    FIGURES[f"analyze {name} ({len(nsg.rules)} rules)"] = f"{seconds:.2f} s CPU (target < {TARGET_SECONDS:.0f} s)"
    assert seconds < TARGET_SECONDS


@pytest.mark.parametrize("name", SETS)
def test_diff(benchmark, name):
    old = classbench_nsg(name)
    new = changed_version(old)
    found = []
    seconds = _cpu_seconds(benchmark, lambda: found.extend(diff_nsgs(old, new, Direction.INBOUND,
                                                                     AddressResolver(()))))
    FIGURES[f"diff {name} ({CHANGED} rules changed)"] = \
        f"{seconds:.2f} s CPU, {len(found)} regions (target < {TARGET_SECONDS:.0f} s)"
    assert found and seconds < TARGET_SECONDS
