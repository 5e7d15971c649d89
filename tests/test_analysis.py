"""`analyze`, `diff` and `exposure` are exact: planted findings are found, clean rules are not, and every
example flow and region is checked with the brute-force reference evaluator."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import Direction, NetworkSecurityGroup, Policy, parse_flow, rule_from_azure, scenario_from_document
from dataplane.addresses import AddressResolver, ServiceTags
from dataplane.analysis import (analyze_nsg, chaining_findings, diff_chains, diff_nsgs, exposure,
                                never_hit_findings)
from dataplane.cli import main
from dataplane.headerspace import Point
from dataplane.rules import Access

from reference import Environment, ReferenceEvaluator

VNET = ("10.0.0.0/16",)
ENV = Environment(VNET)
INBOUND = Direction.INBOUND


def resolver() -> AddressResolver:
    return AddressResolver(VNET, service_tags=ServiceTags({}))


def rule(name, priority, access="Allow", protocol="Tcp", source="*", dport="*", destination="*", sport="*",
         direction="Inbound") -> dict:
    return {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "sourcePortRange": sport, "destinationAddressPrefix": destination,
            "destinationPortRange": dport}


def nsg(*rules: dict, name: str = "nsg") -> NetworkSecurityGroup:
    return NetworkSecurityGroup(name, [rule_from_azure(r) for r in rules])


def first(rules, flow_text: str) -> int:
    """The reference evaluator's first matching rule for a flow."""
    return ReferenceEvaluator(rules, ENV).first_match(*parse_flow(flow_text).key)


def findings_of(group: NetworkSecurityGroup) -> dict[tuple[str, str], object]:
    return {(f.rule, f.finding): f for f in analyze_nsg(group, INBOUND, resolver())}


PLANTED = nsg(
    rule("AllowWebLow", 100, source="10.0.0.0/9", dport="80"),
    rule("AllowWebHigh", 110, source="10.128.0.0/9", dport="80"),
    rule("AllowWeb10", 120, source="10.0.0.0/8", dport="80"),         # covered by the two above together
    rule("DenyLow", 130, access="Deny", dport="1000-1999"),
    rule("AllowHigh", 140, dport="2000-2999"),
    rule("DenyMiddle", 150, access="Deny", dport="1500-2500"),        # covered by two ranges of different access
    rule("AllowApi", 160, dport="8000-8100"),
    rule("DenyApiAndMore", 170, access="Deny", dport="8050-9000"),    # part of it is allowed above
    rule("DenyTelnet", 180, access="Deny", source="Internet", dport="23"),  # DenyAllInBound denies it anyway
    rule("AllowHttps", 190, dport="443"),                             # clean
    rule("AllowDnsUdp", 200, protocol="Udp", dport="53"),             # clean
)


def test_a_rule_covered_only_by_two_higher_rules_together_is_shadowed_by_both():
    found = findings_of(PLANTED)[("AllowWeb10", "shadowed")]
    assert found.by == ("AllowWebLow", "AllowWebHigh")


def test_a_port_range_covered_by_two_ranges_of_different_access_is_shadowed():
    found = findings_of(PLANTED)[("DenyMiddle", "shadowed")]
    assert found.by == ("DenyLow", "AllowHigh")


def test_a_rule_whose_part_a_higher_rule_of_the_other_access_takes_is_partly_overridden():
    found = findings_of(PLANTED)[("DenyApiAndMore", "partly-overridden")]
    assert found.by == ("AllowApi",)


def test_a_deny_that_the_default_deny_repeats_is_redundant():
    found = findings_of(PLANTED)[("DenyTelnet", "redundant")]
    assert found.by == ("DenyAllInBound",)


def test_a_shadowed_rule_is_not_also_reported_as_partly_overridden_or_redundant():
    kinds = {kind for rule_, kind in findings_of(PLANTED) if rule_ == "DenyMiddle"}
    assert kinds == {"shadowed"}


def test_clean_rules_are_not_reported():
    reported = {rule_ for rule_, _ in findings_of(PLANTED)}
    assert not reported & {"AllowHttps", "AllowDnsUdp", "DenyLow", "AllowHigh", "AllowApi"}


def test_default_rules_are_context_never_findings():
    assert not {r for r, _ in findings_of(PLANTED)} & {"DenyAllInBound", "AllowVnetInBound",
                                                       "AllowAzureLoadBalancerInBound"}


def test_every_example_flow_shows_its_finding_to_the_reference():
    rules = PLANTED.rules_in_order(INBOUND)
    names = [r.name for r in rules]
    for f in analyze_nsg(PLANTED, INBOUND, resolver()):
        index = names.index(f.rule)
        decider = first(rules, str(f.example))
        assert first([rules[index]], str(f.example)) == 0, f"{f}: the example is not matched by the rule"
        if f.finding == "shadowed":
            assert names[decider] in f.by
        elif f.finding == "partly-overridden":
            assert names[decider] in f.by and rules[decider].access is not rules[index].access
        elif f.finding == "redundant":
            without = rules[:index] + rules[index + 1:]
            assert decider == index
            assert without[first(without, str(f.example))].access is rules[index].access


def test_an_icmp_rule_is_shadowed_by_a_higher_rule_for_every_protocol_without_ports():
    group = nsg(rule("DenyAllOther", 100, access="Deny", protocol="*"), rule("AllowPing", 110, protocol="Icmp"))
    found = findings_of(group)[("AllowPing", "shadowed")]
    assert found.by == ("DenyAllOther",)


def test_a_port_rule_does_not_shadow_icmp():
    group = nsg(rule("DenyAllPorts", 100, access="Deny", protocol="*", dport="1-65535"),
                rule("AllowPing", 110, protocol="Icmp"))
    assert ("AllowPing", "shadowed") not in findings_of(group)


def test_never_hit_rules_come_with_a_flow_they_would_decide():
    group = nsg(rule("AllowHttps", 100, dport="443"), rule("AllowSsh", 110, dport="22"))
    found = never_hit_findings(group, INBOUND, resolver(), ["AllowSsh"])
    assert [(f.rule, f.finding) for f in found] == [("AllowSsh", "never-hit")]
    rules = group.rules_in_order(INBOUND)
    assert rules[first(rules, str(found[0].example))].name == "AllowSsh"


# -- scenarios ------------------------------------------------------------------------------------

def scenario(subnet_rules: list[dict], nic_rules: list[dict], **extra):
    return scenario_from_document(_scenario_document(subnet_rules, nic_rules, **extra), file="scenario.yaml")


def _scenario_document(subnet_rules: list[dict], nic_rules: list[dict], **extra) -> dict:
    return {
        "virtual_networks": [{"name": "vnet", "address_space": ["10.1.0.0/16"],
                              "subnets": [{"name": "web", "prefix": "10.1.1.0/24", "nsg": "nsg-subnet"}]}],
        "network_interfaces": [
            {"name": "web1", "subnet": "vnet/web", "private_ips": ["10.1.1.4"], "public_ip": "20.0.0.4",
             "nsg": "nsg-nic"},
            {"name": "app1", "subnet": "vnet/web", "private_ips": ["10.1.1.5"], "nsg": "nsg-nic"}],
        "load_balancers": [{"name": "lb", "frontend_ip": "20.0.0.100",
                            "rules": [{"protocol": "Tcp", "frontend_port": 443, "backend_port": 8443,
                                       "backend_pool": ["app1"]}], **extra}],
        "network_security_groups": [{"name": "nsg-subnet", "security_rules": subnet_rules},
                                    {"name": "nsg-nic", "security_rules": nic_rules}]}


def test_an_allow_that_the_other_nsg_of_the_path_always_denies_has_no_effect_by_chaining():
    sc = scenario([rule("AllowRdpAdmins", 100, source="198.51.100.0/24", dport="3389")],
                  [rule("DenyRdp", 100, access="Deny", dport="3389")])
    found = [f for f in chaining_findings(sc, INBOUND) if f.rule == "AllowRdpAdmins"]
    assert {f.nic for f in found} == {"web1", "app1"}
    assert all(f.by == ("nsg-nic/DenyRdp",) for f in found)
    assert Policy(sc).decide(found[0].example).decision == "Deny"


def test_an_allow_that_the_other_nsg_lets_through_in_part_has_an_effect():
    sc = scenario([rule("AllowWeb", 100, dport="80-443")], [rule("DenyHttp", 100, access="Deny", dport="80")])
    assert not [f for f in chaining_findings(sc, INBOUND) if f.rule == "AllowWeb"]


EXPOSED_SUBNET = [rule("AllowWeb", 100, source="Internet", dport="80"),
                  rule("AllowWebPorts", 110, source="Internet", dport="443-1000"),
                  rule("AllowLbBackend", 115, source="Internet", dport="8443"),
                  rule("AllowSshOffice", 120, source="198.51.100.0/24", dport="22"),
                  rule("AllowAdminNat", 130, source="Internet", dport="2222")]
EXPOSED_NIC = [rule("AllowWebAndRdp", 100, source="Internet", dport="80-3389"),   # 3389 closed on the subnet
               rule("AllowSql", 110, source="Internet", dport="1433"),             # closed on the subnet
               rule("AllowHighPorts", 120, source="Internet", dport="8000-9000"),
               rule("AllowSshOffice", 130, source="198.51.100.0/24", dport="22"),
               rule("AllowAdminNat", 140, source="Internet", dport="2222")]
NAT_RULE = {"inbound_nat_rules": [{"protocol": "Tcp", "frontend_port": 50022, "backend_port": 2222,
                                   "network_interface": "web1"}]}


@pytest.fixture(scope="module")
def exposed():
    """Both NSGs on the path; a public IP on web1, a load-balancer rule to app1, an inbound NAT rule to web1."""
    sc = scenario(EXPOSED_SUBNET, EXPOSED_NIC, **NAT_RULE)
    return sc, exposure(sc)


def _reference_open(sc, nic_name: str, source: str, proto: int, port: int) -> bool:
    """Subnet NSG then NIC NSG, inbound, with the brute-force evaluator, on the NSGs' view of the flow."""
    nic = sc.network_interfaces[nic_name]
    env = Environment(("10.1.0.0/16",), {}, {})
    key = (proto, 4, int(ipaddress.IPv4Address(source)), 50000, int(nic.private_ips[0]), port)
    for name in (nic.subnet.nsg, nic.nsg):
        rules = sc.network_security_groups[name].rules_in_order(INBOUND)
        if rules[ReferenceEvaluator(rules, env).first_match(*key)].access is Access.DENY:
            return False
    return True


def _reported_open(found, nic: str, via: str, source: str, port: int) -> bool:
    src = int(ipaddress.IPv4Address(source))
    return any(e.nic == nic and e.via == via and e.region.ported
               and any(lo <= src <= hi for lo, hi in e.region.fields[1])
               and any(lo <= port <= hi for lo, hi in e.region.fields[4]) for e in found)


PORTS = sorted({0, 21, 22, 23, 79, 80, 81, 442, 443, 1433, 2221, 2222, 2223, 3389, 3390, 8000, 8443, 8444, 9000,
                65535})


@pytest.mark.parametrize("source", ["203.0.113.9", "198.51.100.7"])
def test_ports_reported_open_through_the_public_ip_are_exactly_those_the_reference_allows(exposed, source):
    sc, found = exposed
    for port in PORTS:
        assert _reported_open(found, "web1", "public-ip", source, port) == \
            _reference_open(sc, "web1", source, 6, port), port


def test_a_port_open_on_the_nic_nsg_but_closed_on_the_subnet_nsg_is_not_reported(exposed):
    _, found = exposed
    assert not _reported_open(found, "web1", "public-ip", "203.0.113.9", 3389)
    assert not _reported_open(found, "web1", "public-ip", "203.0.113.9", 1433)


def test_a_load_balancer_rule_exposes_its_backend_port_on_the_pool_nic(exposed):
    sc, found = exposed
    lb = [e for e in found if e.nic == "app1" and e.via == "load-balancer"]
    assert [(e.frontend, e.region.fields[4]) for e in lb] == [("20.0.0.100:443", ((8443, 8443),))]
    assert _reference_open(sc, "app1", "203.0.113.9", 6, 8443)


def test_an_inbound_nat_rule_exposes_its_backend_port_on_its_nic(exposed):
    _, found = exposed
    nat = [e for e in found if e.via == "inbound-nat"]
    assert [(e.nic, e.frontend, e.region.fields[4]) for e in nat] == [("web1", "20.0.0.100:50022", ((2222, 2222),))]
    assert _reference_open(exposed[0], "web1", "203.0.113.9", 6, 2222)


def test_management_ports_are_called_out(exposed):
    _, found = exposed
    ssh = [e for e in found if e.nic == "web1" and e.via == "public-ip" and (22, 22) in e.region.fields[4]]
    assert ssh and all("management" in e.calls_out for e in ssh)


def test_every_exposure_example_is_allowed_by_the_scenario_and_lands_on_its_nic(exposed):
    sc, found = exposed
    policy = Policy(sc)
    for e in found:
        decision = policy.decide(e.example)
        assert decision.decision == "Allow", e
        assert arrival(policy, e.example.key).nic.name == e.nic, e


def test_the_internet_does_not_reach_private_addresses(exposed):
    _, found = exposed
    assert not [e for e in found if e.via == "private"]


# -- diff -----------------------------------------------------------------------------------------

def test_diff_of_identical_versions_is_empty():
    assert diff_nsgs(PLANTED, PLANTED, INBOUND, resolver()) == []


def test_diff_names_the_deciding_rule_before_and_after():
    old = nsg(rule("DenyTelnet", 100, access="Deny", dport="23"), rule("AllowOld", 110, dport="20-30"))
    new = nsg(rule("AllowOld", 110, dport="20-30"))
    regions = diff_nsgs(old, new, INBOUND, resolver())
    assert {(r.before.rule, r.after.rule, r.region.fields[4]) for r in regions} == {
        ("DenyTelnet", "AllowOld", ((23, 23),))}


def test_diff_merges_a_changed_port_range_into_one_region_per_family():
    old = nsg(rule("AllowWeb", 100, source="Internet", dport="80"))
    new = nsg(rule("AllowWeb", 100, source="Internet", dport="80-90"))
    regions = diff_nsgs(old, new, INBOUND, resolver())
    assert sorted(r.region.family for r in regions) == [4, 6]
    assert all(r.region.fields[4] == ((81, 90),) for r in regions)


def test_diff_of_two_scenarios_compares_each_nics_chain():
    old = scenario([rule("AllowWeb", 100, dport="80")], [rule("AllowWeb", 100, dport="80")])
    new = scenario([rule("AllowWeb", 100, dport="80-81")], [rule("AllowWeb", 100, dport="80-81")])
    regions = diff_chains(old, new, INBOUND)
    assert {r.nic for r in regions} == {"web1", "app1"}
    assert all(r.after.rule == "nsg-nic/AllowWeb" and r.region.fields[4] == ((81, 81),) for r in regions)
    assert Policy(new).decide(regions[0].example).decision == "Allow"
    assert Policy(old).decide(regions[0].example).decision == "Deny"


ACCESS = st.sampled_from(["Allow", "Deny"])
PROTO = st.sampled_from(["*", "Tcp", "Udp", "Icmp"])
ADDRESS = st.sampled_from(["*", "10.0.0.0/8", "10.0.1.0/24", "10.0.1.4", "VirtualNetwork", "Internet",
                           "192.168.0.0/16", "fd00::/8"])
PORT = st.sampled_from(["*", "22", "80", "443", "1000-2000", "1500-2500", "0-1023"])
RULE = st.tuples(ACCESS, PROTO, ADDRESS, PORT, ADDRESS, PORT)


def _version(spec) -> NetworkSecurityGroup:
    return nsg(*(rule(f"r{i}", 100 + 10 * i, a, p, s, dp, d, sp) for i, (a, p, s, sp, d, dp) in enumerate(spec)))


FLOW_ADDRESSES = ["10.0.1.4", "10.0.1.9", "10.0.9.9", "10.9.9.9", "192.168.1.1", "203.0.113.9", "168.63.129.16"]
FLOW_ADDRESSES_V6 = ["fd00::1", "2001:db8::1"]
FLOW_PORTS = [0, 22, 80, 443, 999, 1000, 1500, 2000, 2001, 2500, 2501, 1023, 1024, 65535]


def _flows(samples) -> list[str]:
    out = []
    for proto, src, sport, dst, dport, v6 in samples:
        addresses = FLOW_ADDRESSES_V6 if v6 else FLOW_ADDRESSES
        a, b = addresses[src % len(addresses)], addresses[dst % len(addresses)]
        p, q = FLOW_PORTS[sport % len(FLOW_PORTS)], FLOW_PORTS[dport % len(FLOW_PORTS)]
        if proto in ("tcp", "udp"):
            a, b = (f"[{a}]", f"[{b}]") if v6 else (a, b)
            out.append(f"{proto} {a}:{p} > {b}:{q}")
        else:
            out.append(f"{proto} {a} > {b}")
    return out


@settings(max_examples=40, deadline=None)
@given(old=st.lists(RULE, min_size=1, max_size=6), changes=st.lists(st.tuples(st.integers(0, 5), RULE), max_size=3),
       samples=st.lists(st.tuples(st.sampled_from(["tcp", "udp", "icmp", "esp"]), st.integers(0, 9),
                                  st.integers(0, 20), st.integers(0, 9), st.integers(0, 20), st.booleans()),
                        min_size=30, max_size=60))
def test_diff_regions_hold_every_sampled_flow_decided_differently_and_only_such_examples(old, changes, samples):
    new = list(old)
    for where, replacement in changes:
        new[where % len(new)] = replacement
    before, after = _version(old), _version(new)
    rules_before, rules_after = before.rules_in_order(INBOUND), after.rules_in_order(INBOUND)
    regions = diff_nsgs(before, after, INBOUND, resolver())

    def differs(flow: str) -> bool:
        return rules_before[first(rules_before, flow)].access is not rules_after[first(rules_after, flow)].access

    for region in regions:
        assert differs(str(region.example)), region
    for flow in _flows(samples):
        point = parse_flow(flow)
        inside = [r for r in regions if r.region.contains(_point(point))]
        assert bool(inside) == differs(flow), flow
        assert len(inside) <= 1, f"{flow} is in {len(inside)} regions: regions overlap"


def _point(flow) -> Point:
    return Point(flow.version, flow.protocol, int(flow.src), flow.sport, int(flow.dst), flow.dport)


# -- command lines --------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    def write(name: str, group: NetworkSecurityGroup) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(group.to_azure()))
        return str(path)
    return write


def test_analyze_prints_one_json_object_per_finding_in_the_contracts_shape(files, capsys):
    path = files("nsg.json", PLANTED)
    assert main(["analyze", path, "--direction", "inbound", "--json", "--address-space", "10.0.0.0/16"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"nsg", "direction", "rule", "finding", "by", "example"} <= lines[0].keys()
    assert ("AllowWeb10", "shadowed") in {(x["rule"], x["finding"]) for x in lines}


def test_analyze_strict_exits_1_on_findings(files):
    assert main(["analyze", files("nsg.json", PLANTED), "--strict"]) == 1


def test_analyze_strict_exits_0_on_a_clean_nsg(files):
    assert main(["analyze", files("nsg.json", nsg(rule("AllowHttps", 100, dport="443"))), "--strict"]) == 0


def test_diff_exits_1_when_the_versions_differ_and_0_when_not(files, capsys):
    old = files("old.json", nsg(rule("AllowWeb", 100, dport="80")))
    new = files("new.json", nsg(rule("AllowWeb", 100, dport="80-81")))
    assert main(["diff", old, old]) == 0
    assert main(["diff", old, new, "--json", "--direction", "inbound"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines and {"protocols", "source", "source_ports", "destination", "destination_ports", "before", "after",
                      "example"} <= lines[0].keys()
    assert lines[0]["destination_ports"] == ["81-81"]


def test_diff_of_an_nsg_and_a_scenario_is_a_usage_error(files, tmp_path, capsys):
    other = tmp_path / "scenario.yaml"
    other.write_text("virtual_networks: []\n")
    assert main(["diff", files("old.json", PLANTED), str(other)]) == 2
    assert "one of each" in capsys.readouterr().err


def test_exposure_of_a_missing_scenario_exits_2(tmp_path, capsys):
    assert main(["exposure", "--scenario", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_in_a_scenario_examples_go_to_the_nics_the_nsg_filters(tmp_path, capsys):
    path = tmp_path / "scenario.yaml"
    path.write_text(json.dumps(_scenario_document([rule("AllowWeb", 100, dport="80"),
                                                   rule("DenyWeb", 110, access="Deny", dport="80")], [])))
    assert main(["analyze", "--scenario", str(path), "--direction", "inbound", "--json"]) == 0
    (found,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (found["rule"], found["finding"]) == ("DenyWeb", "shadowed")
    assert parse_flow(found["example"]).dst in {ipaddress.ip_address("10.1.1.4"), ipaddress.ip_address("10.1.1.5")}


def test_analyze_with_traffic_reports_the_rules_no_flow_hit(tmp_path, capsys):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    path = tmp_path / "scenario.yaml"
    path.write_text(json.dumps(_scenario_document(EXPOSED_SUBNET, EXPOSED_NIC)))
    capture = tmp_path / "web.pcap"
    syn = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="203.0.113.9", dst="20.0.0.4") / \
        TCP(sport=50000, dport=80, flags="S")
    wrpcap(str(capture), [syn])
    assert main(["analyze", "--scenario", str(path), "--direction", "inbound", "--traffic", str(capture),
                 "--json"]) == 0
    never = {(x["nsg"], x["rule"]) for x in map(json.loads, capsys.readouterr().out.splitlines())
             if x["finding"] == "never-hit"}
    assert ("nsg-subnet", "AllowSshOffice") in never and ("nsg-nic", "AllowSql") in never
    assert ("nsg-subnet", "AllowWeb") not in never and ("nsg-nic", "AllowWebAndRdp") not in never


def arrival(policy: Policy, key):
    """The leg where a flow arrives inbound at a NIC, or None when it reaches none."""
    route = policy.route.legs(key)
    leg = route.legs[-1] if route.legs and route.blocked is None else None
    return leg if leg is not None and leg.direction is Direction.INBOUND else None


def _nsg_view(key) -> Point:
    proto, version, src, sport, dst, dport = key
    return Point(version, proto, src, sport, dst, dport)


def _frontend_agrees_with_policy(sc, found, frontend: str, source: str) -> None:
    """A connection to the frontend is allowed by the scenario exactly when a region of the NIC it lands on,
    reached through that frontend, holds it as the NSGs see it."""
    policy = Policy(sc)
    for proto in ("tcp", "udp"):
        for port in PORTS:
            flow = parse_flow(f"{proto} {source}:50000 > {frontend}:{port}")
            decision = policy.decide(flow)
            leg = arrival(policy, flow.key)
            reported = [e for e in found if e.via in ("load-balancer", "inbound-nat")
                        and e.frontend in (None, f"{frontend}:{port}") and leg is not None and e.nic == leg.nic.name
                        and e.region.contains(_nsg_view(leg.key))]
            assert bool(reported) == (decision.decision == "Allow"), (proto, port, decision)


def test_connections_to_the_load_balancer_frontend_are_reported_exactly_when_the_scenario_allows(exposed):
    sc, found = exposed
    _frontend_agrees_with_policy(sc, found, "20.0.0.100", "203.0.113.9")


def test_an_ha_ports_rule_exposes_every_port_but_those_other_rules_of_its_frontend_take():
    rules = [{"protocol": "All", "frontend_port": 0, "backend_pool": ["app1"]},
             {"protocol": "Tcp", "frontend_port": 443, "backend_port": 8443, "backend_pool": ["web1"]}]
    sc = scenario(EXPOSED_SUBNET, EXPOSED_NIC, rules=rules)
    found = exposure(sc)
    ha = [e for e in found if e.nic == "app1" and e.via == "load-balancer"]
    assert ha and not [e for e in ha if e.region.contains(_nsg_view((6, 4, 0xCB007109, 50000, 0x0A010105, 443)))]
    _frontend_agrees_with_policy(sc, found, "20.0.0.100", "203.0.113.9")
