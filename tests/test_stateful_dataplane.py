"""The stateful dataplane: flow records, replies, rule changes, NAT both ways, limits, and the Python API."""

from __future__ import annotations

import copy
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

from dataplane import Dataplane, NetworkSecurityGroup, ValidationErrors, rule_from_azure, scenario_from_document

CLIENT = "203.0.113.7"
REMOTE = "93.184.216.34"


def allow(name, priority, direction, protocol, dport, source="*", destination="*", access="Allow"):
    return {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": destination,
            "destinationPortRange": dport}


SCENARIO = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.1.0.0/16", "fd00:1::/48"], "subnets": [
        {"name": "app", "prefix": "10.1.1.0/24"},
        {"name": "web", "prefix": "10.1.2.0/24", "nsg": "nsg-web"}]}],
    "network_interfaces": [
        {"name": "vm-nic", "subnet": "vnet/app", "private_ips": ["10.1.1.4", "fd00:1::4"], "nsg": "nsg-vm"},
        {"name": "pub-nic", "subnet": "vnet/app", "private_ips": ["10.1.1.5"], "public_ip": "20.1.1.5",
         "nsg": "nsg-vm"},
        {"name": "web1-nic", "subnet": "vnet/web", "private_ips": ["10.1.2.4"]},
        {"name": "web2-nic", "subnet": "vnet/web", "private_ips": ["10.1.2.5"]}],
    "load_balancers": [{"name": "lb", "frontend_ip": "20.1.1.100", "rules": [
        {"protocol": "Tcp", "frontend_port": 80, "backend_port": 8080, "backend_pool": ["web1-nic", "web2-nic"]}]}],
    "network_security_groups": [
        {"name": "nsg-vm", "security_rules": [
            allow("AllowSsh", 100, "Inbound", "Tcp", "22"),
            allow("AllowDnsOut", 100, "Outbound", "Udp", "53"),
            allow("AllowHttpsOut", 110, "Outbound", "Tcp", "443", destination="Internet"),
            allow("DenyAllOut", 4000, "Outbound", "*", "*", access="Deny")]},
        {"name": "nsg-web", "security_rules": [allow("AllowHttp", 100, "Inbound", "Tcp", "8080", source="Internet")]}],
}


def dataplane(**changes) -> Dataplane:
    doc = copy.deepcopy(SCENARIO)
    doc.update(changes)
    return Dataplane(scenario_from_document(doc))


def tcp(src, sport, dst, dport, flags="S"):
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return Ether() / ip / TCP(sport=sport, dport=dport, flags=flags)


def udp(src, sport, dst, dport, payload=b"x"):
    return Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


def handshake(dp, client, sport, server, dport, t=0.0):
    dp.process(tcp(client, sport, server, dport, "S"), t)
    dp.process(tcp(server, dport, client, sport, "SA"), t + 0.01)
    return dp.process(tcp(client, sport, server, dport, "A"), t + 0.02)


# -- flow records and replies ------------------------------------------------------------------

def test_a_reply_passes_although_rules_in_its_direction_deny_it() -> None:
    dp = dataplane()
    assert dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22), 0).rule == "AllowSsh"
    assert dp.check(f"tcp 10.1.1.4:22 > {CLIENT}:50000").rule == "DenyAllOut"
    reply = dp.process(tcp("10.1.1.4", 22, CLIENT, 50000, "SA"), 0.1)
    assert (reply.decision, reply.reason, reply.state) == ("Allow", "flow", "syn-received")


def test_a_handshake_brings_the_flow_to_established() -> None:
    assert handshake(dataplane(), CLIENT, 50000, "10.1.1.4", 22).state == "established"


def test_removing_the_allowing_rule_keeps_a_live_flow_until_it_is_idle() -> None:
    dp = dataplane()
    handshake(dp, CLIENT, 50000, "10.1.1.4", 22)
    dp.remove_rule("nsg-vm", "AllowSsh", now=1.0)
    live = dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "PA"), 200.0)
    assert (live.decision, live.reason) == ("Allow", "flow")
    after_idle = dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "PA"), 200.0 + 241)
    assert (after_idle.decision, after_idle.rule) == ("Deny", "DenyAllInBound")


def test_a_rule_turned_to_deny_does_not_cut_a_live_flow() -> None:
    dp = dataplane()
    handshake(dp, CLIENT, 50000, "10.1.1.4", 22)
    dp.replace_rule("nsg-vm", allow("AllowSsh", 100, "Inbound", "Tcp", "22", access="Deny"), now=1.0)
    assert dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "PA"), 2.0).reason == "flow"
    assert dp.process(tcp(CLIENT, 50001, "10.1.1.4", 22), 2.0).decision == "Deny"


def test_flush_connection_cuts_live_flows_when_the_nsg_changes() -> None:
    doc = copy.deepcopy(SCENARIO)
    doc["network_security_groups"][0]["flush_connection"] = True
    dp = Dataplane(scenario_from_document(doc))
    handshake(dp, CLIENT, 50000, "10.1.1.4", 22)
    dp.remove_rule("nsg-vm", "AllowSsh", now=1.0)
    cut = dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "PA"), 2.0)
    assert (cut.decision, cut.rule) == ("Deny", "DenyAllInBound")
    assert dp.stats.flows_flushed == 1


def test_flush_connection_keeps_flows_the_new_rules_still_allow() -> None:
    doc = copy.deepcopy(SCENARIO)
    doc["network_security_groups"][0]["flush_connection"] = True
    dp = Dataplane(scenario_from_document(doc))
    handshake(dp, CLIENT, 50000, "10.1.1.4", 22)
    dp.add_rule("nsg-vm", allow("AllowRdp", 200, "Inbound", "Tcp", "3389"), now=1.0)
    assert dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "PA"), 2.0).reason == "flow"


def test_a_closed_tcp_flow_ends_after_the_closed_timeout() -> None:
    dp = dataplane()
    handshake(dp, CLIENT, 50000, "10.1.1.4", 22)
    dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "FA"), 1.0)
    dp.process(tcp("10.1.1.4", 22, CLIENT, 50000, "FA"), 1.1)
    assert dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "A"), 1.2).state == "closed"
    late_reply = dp.process(tcp("10.1.1.4", 22, CLIENT, 50000, "A"), 1.2 + 11)
    assert (late_reply.decision, late_reply.rule) == ("Deny", "DenyAllOut")
    assert dp.stats.flows_closed == 1


def test_a_syn_on_the_five_tuple_of_a_closed_connection_opens_a_new_flow_decided_by_the_rules() -> None:
    dp = dataplane()
    handshake(dp, CLIENT, 50000, "10.1.1.4", 22)
    dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "FA"), 1.0)
    dp.process(tcp("10.1.1.4", 22, CLIENT, 50000, "FA"), 1.1)
    dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "A"), 1.2)
    dp.remove_rule("nsg-vm", "AllowSsh", now=1.3)
    again = dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "S"), 1.4)
    assert (again.decision, again.rule) == ("Deny", "DenyAllInBound")
    assert dp.stats.flows_closed == 1


def test_a_tcp_packet_of_an_unknown_flow_without_syn_is_evaluated_as_new() -> None:
    dp = dataplane()
    picked_up = dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "A"), 0)
    assert (picked_up.decision, picked_up.reason, picked_up.state) == ("Allow", "rules", "established")
    assert dp.process(tcp(CLIENT, 50000, "10.1.1.4", 23, "A"), 0).decision == "Deny"


# -- ICMP --------------------------------------------------------------------------------------

def test_an_icmp_echo_reply_passes_by_the_flow_of_its_request() -> None:
    dp = dataplane()
    request = dp.process(Ether() / IP(src="10.1.9.9", dst="10.1.1.4") / ICMP(type=8, id=7), 0)
    assert (request.decision, request.rule) == ("Allow", "AllowVnetInBound")
    reply = dp.process(Ether() / IP(src="10.1.1.4", dst="10.1.9.9") / ICMP(type=0, id=7), 0.1)
    assert (reply.decision, reply.reason) == ("Allow", "flow")


def test_an_echo_reply_with_another_identifier_is_not_part_of_the_flow() -> None:
    dp = dataplane()
    dp.process(Ether() / IP(src="10.1.9.9", dst="10.1.1.4") / ICMP(type=8, id=7), 0)
    stray = dp.process(Ether() / IP(src="10.1.1.4", dst="10.1.9.9") / ICMP(type=0, id=8), 0.1)
    assert (stray.decision, stray.rule) == ("Deny", "DenyAllOut")


def test_an_icmp_error_about_a_live_udp_flow_passes_as_related() -> None:
    dp = dataplane()
    assert dp.process(udp("10.1.1.4", 40000, "8.8.8.8", 53), 0).rule == "AllowDnsOut"
    error = Ether() / IP(src="8.8.8.8", dst="10.1.1.4") / ICMP(type=3, code=3) / \
        IPerror(src="10.1.1.4", dst="8.8.8.8") / UDPerror(sport=40000, dport=53)
    verdict = dp.process(error, 0.1)
    assert (verdict.decision, verdict.state) == ("Allow", "related")


def test_an_icmp_error_sent_to_the_public_ip_about_a_translated_flow_passes_as_related() -> None:
    dp = dataplane()
    assert dp.process(tcp("10.1.1.5", 40000, REMOTE, 443), 0).decision == "Allow"
    error = Ether() / IP(src="198.51.100.1", dst="20.1.1.5") / ICMP(type=3, code=4) / \
        IPerror(src="20.1.1.5", dst=REMOTE, proto=6) / TCPerror(sport=40000, dport=443)
    verdict = dp.process(error, 0.1)
    assert (verdict.decision, verdict.state) == ("Allow", "related")


def test_an_icmp_error_about_the_reply_of_a_load_balanced_flow_passes_as_related() -> None:
    dp = dataplane()
    syn = dp.process(tcp(CLIENT, 50000, "20.1.1.100", 80), 0)
    assert syn.decision == "Allow"
    error = Ether() / IP(src="198.51.100.1", dst="20.1.1.100") / ICMP(type=3, code=1) / \
        IPerror(src="20.1.1.100", dst=CLIENT, proto=6) / TCPerror(sport=80, dport=50000)
    verdict = dp.process(error, 0.1)
    assert (verdict.decision, verdict.state, verdict.nic) == ("Allow", "related", syn.nic)


def test_an_icmp_error_about_no_known_flow_is_decided_by_the_rules() -> None:
    dp = dataplane()
    error = Ether() / IP(src="8.8.8.8", dst="10.1.1.4") / ICMP(type=3, code=3) / \
        IPerror(src="10.1.1.4", dst="8.8.8.8") / UDPerror(sport=40000, dport=53)
    verdict = dp.process(error, 0)
    assert (verdict.decision, verdict.rule) == ("Deny", "DenyAllInBound")


# -- IPv6, fragments, VLANs ---------------------------------------------------------------------

def test_ipv6_flows_are_decided_and_tracked() -> None:
    dp = dataplane()
    assert dp.process(tcp("2001:db8::7", 50000, "fd00:1::4", 22), 0).rule == "AllowSsh"
    assert dp.process(tcp("fd00:1::4", 22, "2001:db8::7", 50000, "SA"), 0.1).reason == "flow"


def test_a_non_first_fragment_gets_the_verdict_of_its_first_fragment() -> None:
    dp = dataplane()
    dp.process(udp("10.1.1.4", 40000, "8.8.8.8", 53), 0)
    answer = IP(src="8.8.8.8", dst="10.1.1.4", id=4242) / UDP(sport=53, dport=40000) / (b"a" * 3000)
    first, *rest = [dp.process(Ether() / f, 0.1) for f in fragment(answer, fragsize=1000)]
    assert (first.decision, first.reason) == ("Allow", "flow")
    assert rest and all((v.decision, v.reason) == ("Allow", "fragment") for v in rest)


def test_a_fragment_whose_first_fragment_was_not_seen_is_decided_alone_without_ports() -> None:
    dp = dataplane()
    answer = IP(src="8.8.8.8", dst="10.1.1.4", id=4243) / UDP(sport=53, dport=40000) / (b"a" * 3000)
    later = fragment(answer, fragsize=1000)[1]
    verdict = dp.process(Ether() / later, 0)
    assert (verdict.decision, verdict.rule) == ("Deny", "DenyAllInBound")
    assert dp.stats.flows_created == 0


def test_vlan_tagged_frames_are_decided_and_share_the_untagged_flow() -> None:
    dp = dataplane()
    syn = IP(src=CLIENT, dst="10.1.1.4") / TCP(sport=50000, dport=22, flags="S")
    assert dp.process(Ether() / Dot1Q(vlan=42) / syn, 0).rule == "AllowSsh"
    reply = IP(src="10.1.1.4", dst=CLIENT) / TCP(sport=22, dport=50000, flags="SA")
    assert dp.process(Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / reply, 0.1).reason == "flow"


# -- NAT ---------------------------------------------------------------------------------------

def test_inbound_to_a_public_ip_is_translated_and_the_reply_leaves_from_it() -> None:
    dp = dataplane()
    syn = dp.process(tcp(CLIENT, 50000, "20.1.1.5", 22), 0)
    assert (syn.decision, syn.nic, syn.rule) == ("Allow", "pub-nic", "AllowSsh")
    assert str(syn.to_json()["translated"]) == f"tcp {CLIENT}:50000 > 10.1.1.5:22"
    reply = dp.process(tcp("10.1.1.5", 22, CLIENT, 50000, "SA"), 0.1)
    assert (reply.decision, reply.reason) == ("Allow", "flow")
    assert reply.to_json()["translated"] == f"tcp 20.1.1.5:22 > {CLIENT}:50000"


def test_outbound_from_a_nic_with_a_public_ip_leaves_translated_and_its_reply_returns() -> None:
    dp = dataplane()
    out = dp.process(tcp("10.1.1.5", 40000, REMOTE, 443), 0)
    assert (out.decision, out.rule) == ("Allow", "AllowHttpsOut")
    assert out.to_json()["translated"] == f"tcp 20.1.1.5:40000 > {REMOTE}:443"
    back = dp.process(tcp(REMOTE, 443, "20.1.1.5", 40000, "SA"), 0.1)
    assert (back.decision, back.reason) == ("Allow", "flow")
    assert back.to_json()["translated"] == f"tcp {REMOTE}:443 > 10.1.1.5:40000"


def test_a_load_balanced_flow_keeps_the_client_source_and_its_reply_leaves_from_the_frontend() -> None:
    dp = dataplane()
    syn = dp.process(tcp(CLIENT, 50000, "20.1.1.100", 80), 0)
    assert (syn.decision, syn.rule) == ("Allow", "AllowHttp")
    backend = "10.1.2.4" if syn.nic == "web1-nic" else "10.1.2.5"
    assert syn.to_json()["translated"] == f"tcp {CLIENT}:50000 > {backend}:8080"
    reply = dp.process(tcp(backend, 8080, CLIENT, 50000, "SA"), 0.1)
    assert reply.to_json()["translated"] == f"tcp 20.1.1.100:80 > {CLIENT}:50000"


def test_the_backend_of_a_load_balanced_flow_is_chosen_from_the_flow_the_same_way_every_time() -> None:
    def backends():
        dp = dataplane()
        return [dp.process(tcp(CLIENT, 50000 + i, "20.1.1.100", 80), 0).nic for i in range(40)]

    chosen = backends()
    assert chosen == backends()
    assert set(chosen) == {"web1-nic", "web2-nic"}


def test_outbound_snat_through_a_shared_frontend_gives_colliding_flows_distinct_ports() -> None:
    dp = dataplane()
    first = dp.process(tcp("10.1.2.4", 40000, REMOTE, 443), 0).to_json()["translated"]
    second = dp.process(tcp("10.1.2.5", 40000, REMOTE, 443), 0).to_json()["translated"]
    assert first.startswith("tcp 20.1.1.100:") and second.startswith("tcp 20.1.1.100:")
    assert first != second


# -- limits, clock, skips ------------------------------------------------------------------------

def test_a_full_flow_table_refuses_new_flows_and_counts_them() -> None:
    dp = dataplane(max_flows_per_nic=2)
    for port in (50000, 50001):
        assert dp.process(tcp(CLIENT, port, "10.1.1.4", 22), 0).decision == "Allow"
    refused = dp.process(tcp(CLIENT, 50002, "10.1.1.4", 22), 0)
    assert (refused.decision, refused.reason) == ("Deny", "flow-limit")
    assert dp.stats.flows_refused == 1
    assert dp.flow_counts()["vm-nic"] == 2


def test_a_full_flow_table_takes_new_flows_again_once_old_ones_expire() -> None:
    dp = dataplane(max_flows_per_nic=1)
    dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22), 0)
    assert dp.process(tcp(CLIENT, 50001, "10.1.1.4", 22), 121).decision == "Allow"


def test_time_comes_only_from_the_packets_timestamps(monkeypatch) -> None:
    frames = [bytes(tcp(CLIENT, 50000, "10.1.1.4", 22, "S")), bytes(tcp("10.1.1.4", 22, CLIENT, 50000, "SA")),
              bytes(tcp(CLIENT, 50000, "10.1.1.4", 22, "A")), bytes(tcp(CLIENT, 50000, "10.1.1.4", 22, "PA"))]

    def no_wall_clock():
        raise AssertionError("the dataplane read the wall clock")

    for name in ("time", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, no_wall_clock)
    dp = dataplane()
    verdicts = [dp.process(frame, ts) for frame, ts in zip(frames, (0.0, 0.1, 0.2, 240.1))]
    assert verdicts[-1].reason == "flow"


def test_flow_timeout_minutes_of_the_vnet_sets_the_idle_timeout() -> None:
    doc = copy.deepcopy(SCENARIO)
    doc["virtual_networks"][0]["flow_timeout_minutes"] = 10
    dp = Dataplane(scenario_from_document(doc))
    handshake(dp, CLIENT, 50000, "10.1.1.4", 22)
    assert dp.process(tcp(CLIENT, 50000, "10.1.1.4", 22, "PA"), 599).reason == "flow"


def test_scenario_timeouts_override_the_defaults() -> None:
    dp = dataplane(timeouts={"udp": 30})
    dp.process(udp("10.1.1.4", 40000, "8.8.8.8", 53), 0)
    late = dp.process(udp("8.8.8.8", 53, "10.1.1.4", 40000), 31)
    assert (late.decision, late.rule) == ("Deny", "DenyAllInBound")


def test_frames_neither_to_nor_from_a_nic_are_skipped() -> None:
    dp = dataplane()
    verdict = dp.process(tcp(CLIENT, 1, REMOTE, 2), 0)
    assert (verdict.decision, verdict.reason) == ("Skip", "not-in-scenario")


def test_non_ip_truncated_and_malformed_frames_are_skipped_and_counted() -> None:
    dp = dataplane()
    frame = bytes(tcp(CLIENT, 50000, "10.1.1.4", 22))
    assert dp.process(Ether() / ARP(), 0).reason == "non-ip"
    assert dp.process(frame[:40], 0).reason == "truncated"
    assert dp.process(frame[:14] + b"\x44" + frame[15:], 0).reason == "malformed"
    assert dp.stats.skipped == {"non-ip": 1, "truncated": 1, "malformed": 1}
    assert dp.stats.packets == 3


# -- the Python API ------------------------------------------------------------------------------

def test_for_nsg_puts_one_nsg_on_one_nic() -> None:
    nsg = NetworkSecurityGroup("solo", [rule_from_azure(allow("AllowWeb", 100, "Inbound", "Tcp", "443"))])
    dp = Dataplane.for_nsg(nsg, nic_ip="10.0.0.4")
    assert dp.check("tcp 198.51.100.1:5000 > 10.0.0.4:443").rule == "AllowWeb"
    assert dp.process(tcp("198.51.100.1", 5000, "10.0.0.4", 80), 0).rule == "DenyAllInBound"


def test_a_rule_added_at_run_time_decides_new_flows() -> None:
    dp = dataplane()
    dp.add_rule("nsg-vm", allow("AllowRdp", 200, "Inbound", "Tcp", "3389"), now=0)
    assert dp.process(tcp(CLIENT, 50000, "10.1.1.4", 3389), 1).rule == "AllowRdp"


def test_a_rule_azure_would_reject_is_rejected_at_run_time_with_azures_code() -> None:
    dp = dataplane()
    with pytest.raises(ValidationErrors) as info:
        dp.add_rule("nsg-vm", allow("Clash", 100, "Inbound", "Tcp", "80"))
    assert [p.code for p in info.value.problems] == ["SecurityRuleConflict"]


def test_flows_lists_the_records_of_every_nic() -> None:
    dp = dataplane()
    handshake(dp, "10.1.2.4", 40000, "10.1.1.4", 22)
    assert sorted(nic for nic, _ in dp.flows()) == ["vm-nic", "web1-nic"]
    assert dp.flow_counts() == {"vm-nic": 1, "pub-nic": 0, "web1-nic": 1, "web2-nic": 0}
