"""The header-space engine cuts the space exactly where the brute-force reference changes its mind."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import Direction, NetworkSecurityGroup, rule_from_azure
from dataplane.addresses import AddressResolver, ServiceTags
from dataplane.headerspace import (DESTINATION_PORT, PROTOCOL, MatchSet, Partition, Point, everything,
                                   intersect, merge, merge_regions, rule_match_sets, subtract)

from reference import Environment, ReferenceEvaluator

VNET = ("10.0.0.0/16", "fd00:1::/48")
TAGS = {"TestTag": ("13.64.0.0/16", "2603:1000::/40")}
ASGS = {"AsgWeb": ("10.0.1.4", "10.0.1.5", "fd00:1::4")}
ENV = Environment(VNET, TAGS, ASGS)


def resolver() -> AddressResolver:
    return AddressResolver(VNET, service_tags=ServiceTags(TAGS), asgs=ASGS)


def rule(name, priority, access="Allow", protocol="*", source="*", destination="*", sport="*", dport="*") -> dict:
    return {"name": name, "priority": priority, "direction": "Inbound", "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "destinationAddressPrefix": destination, "sourcePortRange": sport,
            "destinationPortRange": dport}


def inbound(*rules: dict) -> list:
    return NetworkSecurityGroup("nsg", [rule_from_azure(r) for r in rules]).rules_in_order(Direction.INBOUND)


def first_match(rules, point: Point) -> int:
    return ReferenceEvaluator(rules, ENV).first_match(point.protocol, point.family, point.source,
                                                      point.source_port, point.destination, point.destination_port)


def region_of(regions, point: Point):
    found = [r for r in regions if r.contains(point)]
    assert len(found) == 1, f"{point} lies in {len(found)} regions"
    return found[0]


# -- interval sets --------------------------------------------------------------------------------

def test_merge_joins_overlapping_and_adjacent_intervals():
    assert merge([(5, 9), (1, 3), (4, 4), (20, 30), (25, 40)]) == ((1, 9), (20, 40))


def test_subtract_and_intersect_are_exact_on_interval_sets():
    assert subtract(((0, 100),), ((10, 20), (50, 50))) == ((0, 9), (21, 49), (51, 100))
    assert intersect(((0, 10), (20, 30)), ((5, 25),)) == ((5, 10), (20, 25))


def test_a_rule_with_specific_ports_is_empty_for_protocols_without_ports():
    rules = inbound(rule("IcmpWithPorts", 100, protocol="Icmp", dport="80"))
    assert rule_match_sets(rules, resolver())[4].sets[0].empty


# -- partitions against the reference --------------------------------------------------------------

def test_a_rule_covered_by_two_higher_rules_together_is_decided_only_by_them():
    rules = inbound(rule("A", 100, source="10.0.0.0/9"), rule("B", 110, source="10.128.0.0/9"),
                    rule("Wide", 120, source="10.0.0.0/8"))
    rl = rule_match_sets(rules, resolver())[4]
    leaves = Partition([rl], rl.sets[2], [rl.all & ~(1 << 2)]).leaves()
    assert sorted(leaf[0] for leaf in leaves) == [0, 1]
    assert all(first_match(rules, point) == leaf[0] for leaf, point in leaves.items())


def test_a_packet_without_ports_meets_only_rules_that_cover_every_port():
    rules = inbound(rule("Ports", 100, access="Deny", dport="0-65535"), rule("Some", 110, access="Deny", dport="1-65535"))
    rl = rule_match_sets(rules, resolver())[4]
    regions = Partition([rl], everything(4)).regions(lambda leaf: True)
    icmp = Point(4, 1, 1, 0, 2, 0)
    assert region_of(regions, icmp).leaf == (0,) == (first_match(rules, icmp),)


def test_regions_of_two_lists_carry_both_first_matches():
    old = inbound(rule("Ssh", 100, access="Deny", protocol="Tcp", dport="22"))
    new = inbound(rule("Ssh", 100, access="Deny", protocol="Tcp", dport="22-23"))
    lists = [rule_match_sets(r, resolver())[4] for r in (old, new)]
    regions = Partition(lists, everything(4)).regions(lambda leaf: leaf[0] != leaf[1])
    telnet = Point(4, 6, 1, 40000, 2, 23)
    assert region_of(regions, telnet).leaf == (first_match(old, telnet), first_match(new, telnet))
    assert all(r.fields[DESTINATION_PORT] == ((23, 23),) for r in regions)


def test_merging_joins_regions_that_differ_in_one_field():
    whole = everything(4)
    a = Partition([], whole).regions(lambda leaf: True)[0]
    halves = [a._replace(fields=(a.fields[PROTOCOL], ((0, 9),)) + a.fields[2:]),
              a._replace(fields=(a.fields[PROTOCOL], ((10, 2**32 - 1),)) + a.fields[2:])]
    assert merge_regions(halves) == [a]


PORTS = st.sampled_from(["*", "22", "80", "443", "1000-2000", "1500-2500", "0-1023", "1024-65535"])
PROTOCOLS = st.sampled_from(["*", "Tcp", "Udp", "Icmp", "Esp"])
ADDRESSES = st.sampled_from(["*", "10.0.0.0/8", "10.0.1.0/24", "10.0.1.4", "192.168.0.0/16", "VirtualNetwork",
                             "Internet", "TestTag", "fd00:1::/48", "2603:1000::/40", "0.0.0.0/1"])
RULES = st.lists(st.tuples(st.sampled_from(["Allow", "Deny"]), PROTOCOLS, ADDRESSES, PORTS, ADDRESSES, PORTS),
                 min_size=1, max_size=8)


def _nsg(spec) -> list:
    return inbound(*(rule(f"r{i}", 100 + i, a, p, s, d, sp, dp) for i, (a, p, s, sp, d, dp) in enumerate(spec)))


def _points(draw_ints, family: int) -> list[Point]:
    """Points on and around the boundaries the rules use, and a few anywhere."""
    v4 = ["10.0.1.4", "10.0.1.5", "10.0.0.1", "10.200.0.1", "192.168.1.1", "13.64.1.1", "8.8.8.8", "168.63.129.16",
          "127.0.0.1", "200.1.1.1"]
    v6 = ["fd00:1::4", "fd00:1::9", "2603:1000::1", "2001:db8::1", "::1"]
    addresses = [int(ipaddress.ip_address(a)) for a in (v4 if family == 4 else v6)]
    ports = [0, 22, 23, 80, 443, 999, 1000, 1500, 2000, 2001, 2500, 2501, 1023, 1024, 65535]
    out = []
    for proto, src, sport, dst, dport in draw_ints:
        out.append(Point(family, proto, addresses[src % len(addresses)], ports[sport % len(ports)],
                         addresses[dst % len(addresses)], ports[dport % len(ports)]))
    return out


@settings(max_examples=60, deadline=None)
@given(spec=RULES, family=st.sampled_from([4, 6]),
       samples=st.lists(st.tuples(st.sampled_from([6, 17, 1, 58, 50, 47]), st.integers(0, 20), st.integers(0, 20),
                                  st.integers(0, 20), st.integers(0, 20)), min_size=20, max_size=40))
def test_every_packet_lies_in_one_region_whose_leaf_is_the_references_first_match(spec, family, samples):
    rules = _nsg(spec)
    rl = rule_match_sets(rules, resolver())[family]
    regions = Partition([rl], everything(family)).regions(lambda leaf: True)
    for point in _points(samples, family):
        assert region_of(regions, point).leaf[0] == first_match(rules, point), point


@settings(max_examples=60, deadline=None)
@given(spec=RULES, family=st.sampled_from([4, 6]), which=st.integers(0, 7))
def test_each_leaf_witness_is_decided_by_that_leaf_within_the_universe(spec, family, which):
    rules = _nsg(spec)
    rl = rule_match_sets(rules, resolver())[family]
    universe: MatchSet = rl.sets[which % len(spec)]
    if universe.empty:
        return
    for leaf, point in Partition([rl], universe).leaves().items():
        assert first_match(rules, point) == leaf[0]
        assert first_match([rules[which % len(spec)]], point) == 0, "the witness lies outside the universe"
