"""The compiled classifier decides exactly as the brute-force reference, and as the README says."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane import Direction, NetworkSecurityGroup, Policy, rule_from_azure
from dataplane.addresses import AddressResolver, ServiceTags
from dataplane.classifier import Classifier, Rules

from reference import Environment, ReferenceEvaluator

VNET = ("10.0.0.0/16", "fd00:1::/48")
TAGS = {"TestTag": ("13.64.0.0/16", "40.80.0.0/12", "2603:1000::/40")}
ASGS = {"AsgWeb": ("10.0.1.4", "10.0.1.5", "fd00:1::4"), "AsgDb": ("10.0.2.4",), "AsgEmpty": ()}
ENV = Environment(VNET, TAGS, ASGS)
INBOUND = Direction.INBOUND
SINGULAR = {f"{side}{plural}": f"{side}{singular}" for side in ("source", "destination")
            for plural, singular in (("AddressPrefixes", "AddressPrefix"), ("PortRanges", "PortRange"),
                                     ("ApplicationSecurityGroups", "AddressPrefix"))}


def resolver() -> AddressResolver:
    return AddressResolver(VNET, service_tags=ServiceTags(TAGS), asgs=ASGS)


def compile_rules(rules) -> Classifier:
    return Classifier(rules, resolver())


def rule(name="r", priority=100, access="Allow", protocol="*", source="*", destination="*", sport="*",
         dport="*", **extra) -> dict:
    data = {"name": name, "priority": priority, "direction": "Inbound", "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "destinationAddressPrefix": destination, "sourcePortRange": sport,
            "destinationPortRange": dport}
    for plural, value in extra.items():
        data.pop(SINGULAR[plural])
        data[plural] = value
    return data


def inbound(*rules: dict) -> list:
    return NetworkSecurityGroup("nsg", [rule_from_azure(r) for r in rules]).rules_in_order(INBOUND)


def key(flow: str) -> tuple:
    from dataplane import parse_flow

    return parse_flow(flow).key


# -- random NSGs and flows ----------------------------------------------------------------------

def v4_prefixes():
    return st.tuples(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 8, 16, 24, 30, 31, 32])).map(
        lambda t: str(ipaddress.IPv4Network(t, strict=False)))


def v6_prefixes():
    return st.tuples(st.integers(0, 2**128 - 1), st.sampled_from([0, 3, 48, 64, 127, 128])).map(
        lambda t: str(ipaddress.IPv6Network(t, strict=False)))


NEAR_V4 = st.sampled_from(["10.0.0.0/16", "10.0.1.0/24", "10.0.1.4/32", "13.64.1.0/24", "168.63.129.16/32",
                           "172.31.0.0/16"])
NEAR_V6 = st.sampled_from(["fd00:1::/64", "fd00:1::4/128", "2603:1000::/48"])
TAG_ITEMS = ["VirtualNetwork", "Internet", "AzureLoadBalancer", "TestTag", "testtag", "internet"]


@st.composite
def sides(draw, prefix: str, family) -> dict:
    """One side of a rule in every shape Azure accepts: *, a tag, a prefix, a list, ASGs."""
    shape = draw(st.sampled_from(["any", "tag", "prefix", "list", "asgs"]))
    if shape == "any":
        return {f"{prefix}AddressPrefix": "*"}
    if shape == "tag":
        return {f"{prefix}AddressPrefix": draw(st.sampled_from(TAG_ITEMS))}
    if shape == "prefix":
        return {f"{prefix}AddressPrefix": draw(family)}
    if shape == "list":
        items = draw(st.lists(family, min_size=1, max_size=5, unique=True))
        return {f"{prefix}AddressPrefixes": items}
    names = draw(st.lists(st.sampled_from(sorted(ASGS)), min_size=1, max_size=2, unique=True))
    return {f"{prefix}ApplicationSecurityGroups": [{"id": f"/subscriptions/s/asg/{n}"} for n in names]}


port_numbers = st.one_of(st.sampled_from([0, 1, 22, 80, 443, 65534, 65535]), st.integers(0, 65535))


@st.composite
def port_texts(draw) -> str:
    lo = draw(port_numbers)
    hi = draw(st.one_of(st.just(lo), st.integers(lo, 65535)))
    return str(lo) if lo == hi else f"{lo}-{hi}"


@st.composite
def port_sides(draw, prefix: str) -> dict:
    shape = draw(st.sampled_from(["any", "one", "list", "full-list"]))
    if shape == "any":
        return {f"{prefix}PortRange": "*"}
    if shape == "one":
        return {f"{prefix}PortRange": draw(st.one_of(port_texts(), st.just("0-65535")))}
    if shape == "full-list":
        split = draw(st.integers(0, 65534))
        return {f"{prefix}PortRanges": [f"0-{split}", f"{split + 1}-65535"]}
    return {f"{prefix}PortRanges": draw(st.lists(port_texts(), min_size=1, max_size=4, unique=True))}


@st.composite
def nsg_rules(draw, most: int = 12) -> list:
    count = draw(st.integers(1, most))
    priorities = draw(st.lists(st.integers(100, 4096), min_size=count, max_size=count, unique=True))
    rules = []
    for i, priority in enumerate(priorities):
        data = {"name": f"r{i}", "priority": priority, "direction": "Inbound",
                "access": draw(st.sampled_from(["Allow", "Deny"])),
                "protocol": draw(st.sampled_from(["Tcp", "Udp", "Icmp", "Esp", "Ah", "*", "tcp"]))}
        family = NEAR_V4 | v4_prefixes() if draw(st.booleans()) else NEAR_V6 | v6_prefixes()
        for side in ("source", "destination"):
            data.update(draw(sides(side, family)))
            data.update(draw(port_sides(side)))
        rules.append(rule_from_azure(data))
    return NetworkSecurityGroup("random", rules).rules_in_order(INBOUND)


def edges(rules) -> tuple[list[int], list[int], list[int]]:
    """Addresses and ports at the edges of every prefix and range the rules name."""
    v4, v6, ports = [0, 2**32 - 1], [0, 2**128 - 1], [0, 65535]
    items = [p for r in rules for p in r.sources + r.destinations] + [a for v in ASGS.values() for a in v] + \
        [p for v in TAGS.values() for p in v] + list(VNET) + ["168.63.129.16", "172.31.0.100", "13.107.21.200"]
    for item in items:
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue
        lo, hi = int(net.network_address), int(net.broadcast_address)
        (v4 if net.version == 4 else v6).extend([lo, hi, max(lo - 1, 0), min(hi + 1, 2**net.max_prefixlen - 1)])
    for r in rules:
        for lo, hi in r.source_ports + r.destination_ports:
            ports.extend([lo, hi, max(lo - 1, 0), min(hi + 1, 65535)])
    return v4, v6, ports


@st.composite
def flows_for(draw, rules_edges) -> tuple:
    v4, v6, ports = rules_edges
    version = draw(st.sampled_from([4, 6]))
    addresses = st.one_of(st.sampled_from(v4 if version == 4 else v6),
                          st.integers(0, 2**32 - 1 if version == 4 else 2**128 - 1))
    port = st.one_of(st.sampled_from(ports), st.integers(0, 65535))
    proto = draw(st.sampled_from([6, 17, 1, 58, 50, 51, 47, 0]))
    ported = proto in (6, 17)
    return (proto, version, draw(addresses), draw(port) if ported else 0, draw(addresses),
            draw(port) if ported else 0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_compiled_lookup_equals_the_reference_on_random_nsgs_and_flows(data) -> None:
    rules = data.draw(nsg_rules())
    compiled = compile_rules(rules)
    reference = ReferenceEvaluator(rules, ENV)
    flows = flows_for(edges(rules))
    for _ in range(25):
        k = data.draw(flows)
        assert compiled.lookup(*k) == reference.first_match(*k), k


@pytest.mark.skipif(Rules is None, reason="the C extension was not built (no compiler at install)")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_c_lookup_equals_the_reference_on_random_nsgs_and_ipv4_flows(data) -> None:
    """The C path's copy of the tables (`Classifier.c_rules`), up to 90 rules: rule sets of one and of two words."""
    rules = data.draw(nsg_rules(most=90))
    rules_in_c = compile_rules(rules).c_rules()
    reference = ReferenceEvaluator(rules, ENV)
    flows = flows_for(edges(rules))
    for _ in range(25):
        k = data.draw(flows)
        if k[1] == 4:
            proto, _, src, sport, dst, dport = k
            assert rules_in_c.lookup(proto, src, sport, dst, dport) == reference.first_match(*k), k


# -- behaviours, one each -------------------------------------------------------------------------

def test_the_first_matching_rule_in_priority_order_wins() -> None:
    rules = inbound(rule("AllowWeb", 200, dport="80"), rule("DenyWeb", 100, access="Deny", dport="80"))
    assert compile_rules(rules).match(*key("tcp 1.2.3.4:5 > 10.0.1.4:80")).name == "DenyWeb"


def test_a_default_rule_decides_when_no_custom_rule_matches() -> None:
    rules = inbound(rule("AllowWeb", 100, dport="80"))
    assert compile_rules(rules).match(*key("tcp 1.2.3.4:5 > 10.0.1.4:81")).name == "DenyAllInBound"


def test_an_augmented_rule_stays_one_rule_however_many_prefixes_and_ports_it_holds() -> None:
    sources = [f"20.{i}.0.0/16" for i in range(100)]
    destinations = [f"10.0.{i}.0/24" for i in range(100)]
    ports = [str(1000 + 10 * i) for i in range(10)]
    rules = inbound(rule("Augmented", 100, sourceAddressPrefixes=sources, destinationAddressPrefixes=destinations,
                         destinationPortRanges=ports))
    compiled = compile_rules(rules)
    assert len(compiled.rules) == 1 + 3
    assert compiled.match(*key("tcp 20.99.1.1:5 > 10.0.99.7:1090")).name == "Augmented"
    assert compiled.match(*key("tcp 20.99.1.1:5 > 10.0.99.7:1091")).name == "DenyAllInBound"


def test_a_rule_with_specific_ports_does_not_match_icmp_esp_or_ah() -> None:
    compiled = compile_rules(inbound(rule("AnyProtoPort80", 100, dport="80")))
    for flow in ("icmp 1.2.3.4 > 10.0.1.4", "esp 1.2.3.4 > 10.0.1.4", "ah 1.2.3.4 > 10.0.1.4"):
        assert compiled.match(*key(flow)).name == "DenyAllInBound", flow


def test_a_rule_whose_port_ranges_join_to_every_port_matches_portless_protocols() -> None:
    compiled = compile_rules(inbound(rule("AllPortsInTwo", 100, destinationPortRanges=["0-30000", "30001-65535"])))
    assert compiled.match(*key("esp 1.2.3.4 > 10.0.1.4")).name == "AllPortsInTwo"


def test_protocol_star_matches_every_ip_protocol() -> None:
    compiled = compile_rules(inbound(rule("Everything", 100)))
    for flow in ("tcp 1.2.3.4:1 > 10.0.1.4:2", "udp 1.2.3.4:1 > 10.0.1.4:2", "icmp 1.2.3.4 > 10.0.1.4",
                 "esp 1.2.3.4 > 10.0.1.4", "47 1.2.3.4 > 10.0.1.4"):
        assert compiled.match(*key(flow)).name == "Everything", flow


def test_icmp_matches_icmpv6() -> None:
    compiled = compile_rules(inbound(rule("Ping", 100, protocol="Icmp")))
    assert compiled.match(*key("icmpv6 2001:db8::1 > fd00:1::4")).name == "Ping"
    assert compiled.match(*key("icmp 1.2.3.4 > 10.0.1.4")).name == "Ping"


def test_ports_at_0_and_65535_are_matched() -> None:
    compiled = compile_rules(inbound(rule("Edges", 100, protocol="Udp", sport="0", dport="65535")))
    assert compiled.match(*key("udp 1.2.3.4:0 > 10.0.1.4:65535")).name == "Edges"
    assert compiled.match(*key("udp 1.2.3.4:1 > 10.0.1.4:65535")).name == "DenyAllInBound"


def test_an_ipv6_prefix_never_matches_an_ipv4_packet() -> None:
    compiled = compile_rules(inbound(rule("AllV6", 100, source="::/0")))
    assert compiled.match(*key("tcp [2001:db8::1]:5 > [fd00:1::4]:80")).name == "AllV6"
    assert compiled.match(*key("tcp 1.2.3.4:5 > 10.0.1.4:80")).name == "DenyAllInBound"


def test_an_application_security_group_without_members_matches_nothing() -> None:
    compiled = compile_rules(inbound(rule("ToEmpty", 100, destinationApplicationSecurityGroups=[{"id": "AsgEmpty"}])))
    assert compiled.match(*key("tcp 1.2.3.4:5 > 10.0.1.4:80")).name == "DenyAllInBound"


def test_an_application_security_group_matches_its_members_addresses() -> None:
    compiled = compile_rules(inbound(rule("ToWeb", 100, destinationApplicationSecurityGroups=[{"id": "x/AsgWeb"}])))
    assert compiled.match(*key("tcp 1.2.3.4:5 > 10.0.1.5:80")).name == "ToWeb"
    assert compiled.match(*key("tcp 1.2.3.4:5 > 10.0.1.6:80")).name == "DenyAllInBound"


def test_a_service_tag_is_matched_case_insensitively() -> None:
    compiled = compile_rules(inbound(rule("FromTag", 100, source="testTAG")))
    assert compiled.match(*key("tcp 13.64.200.1:5 > 10.0.1.4:80")).name == "FromTag"


def test_a_rule_change_is_seen_by_the_next_lookup() -> None:
    nsg = NetworkSecurityGroup("nsg", [rule_from_azure(rule("AllowSsh", 200, dport="22"))])
    policy = Policy.for_nsg(nsg, address_space=VNET)
    ssh = key("tcp 1.2.3.4:5 > 10.0.1.4:22")
    assert policy.evaluate_nsg(nsg, INBOUND, ssh).name == "AllowSsh"
    nsg.add_rule(rule("DenySsh", 100, access="Deny", dport="22"))
    assert policy.evaluate_nsg(nsg, INBOUND, ssh).name == "DenySsh"
    nsg.remove_rule("DenySsh")
    assert policy.evaluate_nsg(nsg, INBOUND, ssh).name == "AllowSsh"


def test_an_unknown_service_tag_is_an_error_naming_it() -> None:
    from dataplane.errors import ValidationErrors

    with pytest.raises(ValidationErrors, match="unknown service tag 'NoSuchTag'"):
        compile_rules(inbound(rule("FromNowhere", 100, source="NoSuchTag")))


def test_field_matches_reports_each_field_of_each_rule() -> None:
    compiled = compile_rules(inbound(rule("AllowSsh", 100, protocol="Tcp", source="1.2.3.0/24", dport="22")))
    fields = dict(compiled.field_matches(*key("tcp 1.2.4.4:5 > 10.0.1.4:22")))[compiled.rules[0]]
    assert fields == {"protocol": True, "source": False, "source port": True, "destination": True,
                      "destination port": True}
