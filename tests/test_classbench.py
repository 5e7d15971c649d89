"""ClassBench rule sets as NSGs: every trace header is decided as the reference decides it, and never
by a rule after the one ClassBench made the header from.

The bound holds where ClassBench's semantics and Azure's agree. Azure's port conditions constrain
TCP and UDP only (README), so a header of another protocol made from a rule with specific ports
is not bound by that rule; and Azure has no rule for GRE (47), so GRE rules are left out and
their headers are checked against the reference only.
"""

from __future__ import annotations

import pytest

from dataplane.addresses import AddressResolver
from dataplane.classifier import Classifier
from dataplane.rules import DEFAULT_RULES, Direction

from datafiles import CLASSBENCH, need
from reference import ReferenceEvaluator, classbench_rules, classbench_trace

SETS = ["acl1_1k", "fw1_1k", "ipc1_1k"]
FULL = ((0, 65535),)


def compiled_set(name: str):
    rules, index = classbench_rules(need(CLASSBENCH / name))
    rules += [r for r in DEFAULT_RULES if r.direction == Direction.INBOUND]
    return rules, index, Classifier(rules, AddressResolver(["10.0.0.0/16"])), classbench_trace(CLASSBENCH / f"{name}_trace")


@pytest.mark.parametrize("name", SETS)
def test_a_1k_set_fits_azure_limits_as_one_nsg(name: str) -> None:
    from dataplane import NetworkSecurityGroup

    rules, _, _, _ = compiled_set(name)
    NetworkSecurityGroup(name, [r for r in rules if not r.default])


@pytest.mark.parametrize("name", SETS)
def test_no_trace_header_is_decided_by_a_rule_after_its_own(name: str) -> None:
    rules, index, classifier, trace = compiled_set(name)
    bound = 0
    for h in trace:
        own = index.get(h.rule_id)
        if own is None:
            continue
        if h.proto not in (6, 17) and (rules[own].source_ports != FULL or rules[own].destination_ports != FULL):
            continue
        found = classifier.lookup(h.proto, 4, h.src, h.sport, h.dst, h.dport)
        assert 0 <= found <= own, f"{name}: header {h} decided by rule {found}, after its own rule {own}"
        bound += 1
    assert bound > 0.9 * len(trace)


@pytest.mark.parametrize("name", SETS)
def test_every_trace_header_is_decided_as_the_reference_decides(name: str) -> None:
    rules, _, classifier, trace = compiled_set(name)
    reference = ReferenceEvaluator(rules)
    for h in trace:
        key = (h.proto, 4, h.src, h.sport if h.proto in (6, 17) else 0, h.dst, h.dport if h.proto in (6, 17) else 0)
        assert classifier.lookup(*key) == reference.first_match(*key), f"{name}: header {h}"
