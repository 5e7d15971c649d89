"""Every scenario of the reference's §1, each on a scenario file with the doc's topology:
"How network security groups work" (HIW), the ASG example, the Network Watcher quickstart, and the
NSG diagnostics walk-through (DIAG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane import Policy, load_scenario, parse_flow, scenario_from_document
from dataplane.nsg import read_document

SCENARIOS = Path(__file__).parent / "fixtures" / "scenarios"
INTERNET = "203.0.113.7"
VM = {"VM1": "10.0.1.4", "VM2": "10.0.1.5", "VM3": "10.0.2.4", "VM4": "10.0.3.4"}


def http(name: str, direction: str, access: str = "Allow", priority: int = 100, internet_side: str = "Internet"):
    """The doc's rules: TCP 80 from (inbound) or to (outbound) the internet."""
    source, destination = (internet_side, "*") if direction == "Inbound" else ("*", internet_side)
    return {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": "Tcp",
            "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": destination,
            "destinationPortRange": "80"}


ALLOW_IN = [http("AllowHttpInbound", "Inbound")]
DENY_OUT = [http("DenyHttpOutbound", "Outbound", "Deny")]
DENY_EVERYTHING = [{"name": f"DenyAll{d}", "priority": 100, "direction": d, "access": "Deny", "protocol": "*",
                    "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
                    "destinationPortRange": "*"} for d in ("Inbound", "Outbound")]


def how_nsgs_work(nsg1: list, nsg2: list) -> Policy:
    path = SCENARIOS / "how-nsgs-work.yaml"
    doc = read_document(path)
    doc["network_security_groups"] = [{"name": "NSG1", "security_rules": nsg1},
                                      {"name": "NSG2", "security_rules": nsg2}]
    return Policy(scenario_from_document(doc, file=str(path)))


def inbound(vm: str) -> str:
    return f"tcp {INTERNET}:50000 > {VM[vm]}:80"


def outbound(vm: str) -> str:
    return f"tcp {VM[vm]}:50000 > {INTERNET}:80"


HIW = [
    ("HIW-I1", inbound("VM1"), [], ALLOW_IN, "Deny", "NSG1", "DenyAllInBound"),
    ("HIW-I2", inbound("VM1"), ALLOW_IN, [], "Deny", "NSG2", "DenyAllInBound"),
    ("HIW-I3", inbound("VM1"), ALLOW_IN, ALLOW_IN, "Allow", "NSG2", "AllowHttpInbound"),
    ("HIW-I4", inbound("VM1"), [], ALLOW_IN, "Deny", "NSG1", "DenyAllInBound"),
    ("HIW-I5a", inbound("VM2"), ALLOW_IN, [], "Allow", "NSG1", "AllowHttpInbound"),
    ("HIW-I5b", inbound("VM2"), [], [], "Deny", "NSG1", "DenyAllInBound"),
    ("HIW-I6a", inbound("VM3"), [], ALLOW_IN, "Allow", "NSG2", "AllowHttpInbound"),
    ("HIW-I6b", inbound("VM3"), [], [], "Deny", "NSG2", "DenyAllInBound"),
    ("HIW-I7", inbound("VM4"), [], [], "Allow", None, None),
    ("HIW-O1", outbound("VM1"), [], [], "Allow", "NSG1", "AllowInternetOutBound"),
    ("HIW-O2", outbound("VM1"), ALLOW_IN, DENY_OUT, "Deny", "NSG2", "DenyHttpOutbound"),
    ("HIW-O3", outbound("VM1"), DENY_OUT, [], "Deny", "NSG1", "DenyHttpOutbound"),
    ("HIW-O4a", outbound("VM2"), [], [], "Allow", "NSG1", "AllowInternetOutBound"),
    ("HIW-O4b", outbound("VM2"), DENY_OUT, [], "Deny", "NSG1", "DenyHttpOutbound"),
    ("HIW-O5a", outbound("VM3"), [], DENY_OUT, "Deny", "NSG2", "DenyHttpOutbound"),
    ("HIW-O5b", outbound("VM3"), [], [], "Allow", "NSG2", "AllowInternetOutBound"),
    ("HIW-O6", outbound("VM4"), [], [], "Allow", None, None),
    ("HIW-S1", "tcp 10.0.1.4:50000 > 10.0.1.5:80", [], [], "Allow", "NSG1", "AllowVnetInBound"),
    ("HIW-S1-reverse", "tcp 10.0.1.5:50000 > 10.0.1.4:80", [], [], "Allow", "NSG2", "AllowVnetInBound"),
    ("HIW-S2", "tcp 10.0.1.4:50000 > 10.0.1.5:80", DENY_EVERYTHING, [], "Deny", "NSG1", "DenyAllOutbound"),
    ("HIW-S2-reverse", "tcp 10.0.1.5:50000 > 10.0.1.4:80", DENY_EVERYTHING, [], "Deny", "NSG1", "DenyAllOutbound"),
]


@pytest.mark.parametrize("case, flow, nsg1, nsg2, decision, nsg, rule", HIW, ids=[c[0] for c in HIW])
def test_how_network_security_groups_work(case, flow, nsg1, nsg2, decision, nsg, rule) -> None:
    d = how_nsgs_work(nsg1, nsg2).decide(parse_flow(flow))
    assert (d.decision, d.nsg, d.rule) == (decision, nsg, rule)


def test_inbound_evaluates_the_subnet_nsg_then_the_nic_nsg() -> None:
    d = how_nsgs_work(ALLOW_IN, ALLOW_IN).decide(parse_flow(inbound("VM1")))
    assert [(e.nsg, e.attachment) for e in d.evaluations] == [("NSG1", "subnet vnet1/Subnet1"),
                                                              ("NSG2", "nic vm1-nic")]


def test_outbound_evaluates_the_nic_nsg_then_the_subnet_nsg() -> None:
    d = how_nsgs_work([], []).decide(parse_flow(outbound("VM1")))
    assert [(e.nsg, e.rule) for e in d.evaluations] == [("NSG2", "AllowInternetOutBound"),
                                                        ("NSG1", "AllowInternetOutBound")]


def test_a_deny_ends_evaluation_so_the_next_nsg_is_never_evaluated() -> None:
    d = how_nsgs_work([], ALLOW_IN).decide(parse_flow(inbound("VM1")))
    assert [e.nsg for e in d.evaluations] == ["NSG1"]


def test_a_flow_between_two_vms_is_outbound_at_the_source_then_inbound_at_the_destination() -> None:
    d = how_nsgs_work([], []).decide(parse_flow("tcp 10.0.1.4:50000 > 10.0.2.4:80"))
    assert [(e.nic, e.direction, e.nsg) for e in d.evaluations] == [
        ("vm1-nic", "Outbound", "NSG2"), ("vm1-nic", "Outbound", "NSG1"), ("vm3-nic", "Inbound", "NSG2")]


def test_with_no_nsg_anywhere_every_flow_is_allowed_with_reason_no_nsg() -> None:
    d = how_nsgs_work([], []).decide(parse_flow(f"udp {INTERNET}:5 > 10.0.3.4:9999"))
    assert (d.decision, d.reason) == ("Allow", "no-nsg")


# -- the application security group example --------------------------------------------------

ASG = [
    ("ASG-1", "tcp 203.0.113.7:50000 > 10.0.1.4:80", "Allow", "Allow-HTTP-Inbound-Internet"),
    ("ASG-2", "tcp 203.0.113.7:50000 > 10.0.2.4:80", "Deny", "DenyAllInBound"),
    ("ASG-3", "tcp 10.0.2.4:50000 > 10.0.2.5:1433", "Allow", "Allow-Database-BusinessLogic"),
    ("ASG-4", "tcp 10.0.1.4:50000 > 10.0.2.5:1433", "Deny", "Deny-Database-All"),
    ("ASG-5", "udp 10.0.2.4:50000 > 10.0.2.5:1433", "Deny", "Deny-Database-All"),
    ("ASG-6", "tcp 10.0.1.4:50000 > 10.0.2.4:8443", "Allow", "AllowVnetInBound"),
]


@pytest.mark.parametrize("case, flow, decision, rule", ASG, ids=[c[0] for c in ASG])
def test_application_security_group_example(case, flow, decision, rule) -> None:
    d = Policy(load_scenario(SCENARIOS / "asg-example.yaml")).decide(parse_flow(flow))
    assert (d.decision, d.nsg, d.rule) == (decision, "NSG1", rule)


# -- the Network Watcher quickstart -------------------------------------------------------------

QUICKSTART = [
    ("QS-1", "tcp 10.0.0.4:60000 > 13.107.21.200:80", "Allow", "AllowInternetOutBound"),
    ("QS-2", "tcp 10.0.0.4:60000 > 172.31.0.100:80", "Deny", "DenyAllOutBound"),
    ("QS-3", "tcp 172.31.0.100:60000 > 10.0.0.4:80", "Deny", "DenyAllInBound"),
]


@pytest.mark.parametrize("case, flow, decision, rule", QUICKSTART, ids=[c[0] for c in QUICKSTART])
def test_network_watcher_quickstart(case, flow, decision, rule) -> None:
    d = Policy(load_scenario(SCENARIOS / "quickstart.json")).decide(parse_flow(flow))
    assert (d.decision, d.nsg, d.rule) == (decision, "myVM-nsg", rule)


# -- NSG diagnostics: the fix must go into both NSGs -------------------------------------------

ALLOW_HTTP_ALL = [{"name": "Allow-HTTP-All", "priority": 100, "direction": "Inbound", "access": "Allow",
                   "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
                   "destinationAddressPrefix": "*", "destinationPortRange": "80"}]


def test_diag_internet_to_a_vm_on_80_is_denied_by_default() -> None:
    assert how_nsgs_work([], []).decide(parse_flow(inbound("VM1"))).rule == "DenyAllInBound"


def test_diag_the_fix_in_the_nic_nsg_alone_is_not_enough_when_the_subnet_has_an_nsg() -> None:
    d = how_nsgs_work([], ALLOW_HTTP_ALL).decide(parse_flow(inbound("VM1")))
    assert (d.decision, d.nsg) == ("Deny", "NSG1")


def test_diag_the_fix_in_both_nsgs_allows_the_flow() -> None:
    assert how_nsgs_work(ALLOW_HTTP_ALL, ALLOW_HTTP_ALL).decide(parse_flow(inbound("VM1"))).decision == "Allow"


def test_diag_a_vm_with_a_public_ip_and_no_nsg_is_open_on_every_port() -> None:
    path = SCENARIOS / "how-nsgs-work.yaml"
    doc = read_document(path)
    doc["network_interfaces"][3]["public_ip"] = "20.0.3.4"
    policy = Policy(scenario_from_document(doc, file=str(path)))
    for flow in (f"tcp {INTERNET}:1 > 20.0.3.4:22", f"udp {INTERNET}:1 > 20.0.3.4:3389",
                 "tcp 10.0.3.4:1 > 198.51.100.1:8443"):
        d = policy.decide(parse_flow(flow))
        assert (d.decision, d.reason) == ("Allow", "no-nsg"), flow
