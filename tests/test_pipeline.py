"""The Dataplane, one behaviour per test: flow records and replies, rule changes at run time, ICMP,
IPv6, fragments, VLANs, NAT both ways, limits, the capture clock, skips, and the Python API.

The scenario: subnet `app` (app1, app2, app3) behind nsg-app, which denies all outbound traffic but
DNS, SQL, HTTPS and ICMP; `db` with its own NSG that flushes connections on change; `edge` with a
public IP; a load balancer whose frontend DNATs 443 to app1/app2:8443 and SNATs app2 and app3 out.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, fragment
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, fragment6)
from scapy.layers.l2 import Dot1AD, Dot1Q

from dataplane import (Dataplane, DataplaneError, NetworkSecurityGroup, RuleError, ValidationErrors, parse_flow,
                       rule_from_azure)
from dataplane import scenario_from_document
from dataplane.decode import Packet
from dataplane.flows import flow_text, key_to_flow
from dataplane.pipeline import Verdict
from frames import ether

OFFICE = "198.51.100.7"  # allowed to SSH to edge and to send UDP to app
STRANGER = "192.0.2.9"  # an Internet host no rule allows
REMOTE = "93.184.216.34"
DNS = "8.8.8.8"
FRONTEND = "20.4.1.100"
EDGE_PUBLIC = "20.4.3.4"
APP1, APP2, APP3, DB, EDGE = "10.4.1.4", "10.4.1.5", "10.4.1.6", "10.4.2.4", "10.4.3.4"
APP1_V6 = "fd00:4::1:4"


def rule(name, priority, direction, access, protocol, dport, source="*", destination="*"):
    return {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": destination,
            "destinationPortRange": dport}


SCENARIO = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.4.0.0/16", "fd00:4::/48"], "subnets": [
        {"name": "app", "prefix": "10.4.1.0/24", "nsg": "nsg-app"},
        {"name": "data", "prefix": "10.4.2.0/24"},
        {"name": "edge", "prefix": "10.4.3.0/24"}]}],
    "network_interfaces": [
        {"name": "app1", "subnet": "vnet/app", "private_ips": [APP1, APP1_V6]},
        {"name": "app2", "subnet": "vnet/app", "private_ips": [APP2]},
        {"name": "app3", "subnet": "vnet/app", "private_ips": [APP3]},
        {"name": "db", "subnet": "vnet/data", "private_ips": [DB], "nsg": "nsg-db"},
        {"name": "edge", "subnet": "vnet/edge", "private_ips": [EDGE], "public_ip": EDGE_PUBLIC, "nsg": "nsg-edge"}],
    "load_balancers": [{"name": "lb", "frontend_ip": FRONTEND, "outbound_pool": ["app2", "app3"], "rules": [
        {"protocol": "Tcp", "frontend_port": 443, "backend_port": 8443, "backend_pool": ["app1", "app2"]}]}],
    "network_security_groups": [
        {"name": "nsg-app", "security_rules": [
            rule("AllowHttps", 100, "Inbound", "Allow", "Tcp", "8443", source="Internet"),
            rule("AllowHttpsV6", 105, "Inbound", "Allow", "Tcp", "443", destination="fd00:4::/48"),
            rule("AllowUdpFromOffice", 110, "Inbound", "Allow", "Udp", "*", source="198.51.100.0/24"),
            rule("AllowDnsOut", 100, "Outbound", "Allow", "Udp", "53"),
            rule("AllowSqlOut", 110, "Outbound", "Allow", "Tcp", "1433", destination="10.4.2.0/24"),
            rule("AllowHttpsOut", 120, "Outbound", "Allow", "Tcp", "443", destination="Internet"),
            rule("AllowIcmpOut", 130, "Outbound", "Allow", "Icmp", "*"),
            rule("DenyAllOut", 4000, "Outbound", "Deny", "*", "*")]},
        {"name": "nsg-db", "flush_connection": True, "security_rules": [
            rule("AllowSql", 200, "Inbound", "Allow", "Tcp", "1433", source="10.4.1.0/24"),
            rule("DenyAllIn", 4000, "Inbound", "Deny", "*", "*"),
            rule("DenyAllOut", 4000, "Outbound", "Deny", "*", "*")]},
        {"name": "nsg-edge", "security_rules": [
            rule("AllowSsh", 300, "Inbound", "Allow", "Tcp", "22", source="198.51.100.0/24"),
            rule("AllowIcmpIn", 110, "Inbound", "Allow", "Icmp", "*"),
            rule("AllowHttpsOut", 100, "Outbound", "Allow", "Tcp", "443"),
            rule("DenyAllOut", 4000, "Outbound", "Deny", "*", "*")]}],
}


def dataplane(listener=None, **changes) -> Dataplane:
    doc = copy.deepcopy(SCENARIO)
    doc.update(changes)
    return Dataplane(scenario_from_document(doc), listener=listener)


def ip(src, dst):
    return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)


def tcp(src, sport, dst, dport, flags="S"):
    return ether() / ip(src, dst) / TCP(sport=sport, dport=dport, flags=flags)


def udp(src, sport, dst, dport, payload=b"q"):
    return ether() / ip(src, dst) / UDP(sport=sport, dport=dport) / payload


def key(proto, src, sport, dst, dport):
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return proto, a.version, int(a), sport, int(b), dport


def outcome(verdict):
    return verdict.decision, verdict.reason, verdict.rule


class Recorder:
    """A FlowListener that keeps what it was told."""

    def __init__(self):
        self.events = []

    def flow_started(self, nic, record, ts):
        self.events.append(("started", nic, record.initiator, ts))

    def flow_ended(self, nic, record, why, ts):
        self.events.append((why, nic, record.initiator, ts))


def sql_connection(dp, client=APP1, sport=50000, t=0.0):
    dp.process(tcp(client, sport, DB, 1433, "S"), t)
    dp.process(tcp(DB, 1433, client, sport, "SA"), t + 0.01)
    return dp.process(tcp(client, sport, DB, 1433, "A"), t + 0.02)


def ssh_session_closed_by_fins(dp):
    """OFFICE's SSH session to edge, opened and closed by FINs from 0.0 to 0.5 s; the last ACK's verdict."""
    dp.process(tcp(OFFICE, 50000, EDGE, 22, "S"), 0.0)
    dp.process(tcp(EDGE, 22, OFFICE, 50000, "SA"), 0.1)
    dp.process(tcp(OFFICE, 50000, EDGE, 22, "A"), 0.2)
    dp.process(tcp(OFFICE, 50000, EDGE, 22, "FA"), 0.3)
    dp.process(tcp(EDGE, 22, OFFICE, 50000, "FA"), 0.4)
    return dp.process(tcp(OFFICE, 50000, EDGE, 22, "A"), 0.5)


# -- flow records: replies, rule changes, timeouts -------------------------------------------------

def test_a_reply_passes_although_rules_in_its_direction_deny_it() -> None:
    dp = dataplane()
    assert outcome(dp.process(tcp(APP1, 50000, DB, 1433), 0)) == ("Allow", "rules", "AllowSql")
    assert dp.check(f"tcp {DB}:1433 > {APP1}:50000").rule == "DenyAllOut"
    reply = dp.process(tcp(DB, 1433, APP1, 50000, "SA"), 0.1)
    assert (reply.decision, reply.reason, reply.state) == ("Allow", "flow", "syn-received")


def test_a_udp_reply_passes_by_the_flow_its_request_opened() -> None:
    dp = dataplane()
    assert dp.process(udp(APP1, 40000, DNS, 53), 0).rule == "AllowDnsOut"
    reply = dp.process(udp(DNS, 53, APP1, 40000), 0.2)
    assert (reply.decision, reply.reason, reply.state) == ("Allow", "flow", "active")


def test_a_packet_of_another_five_tuple_is_not_part_of_the_flow() -> None:
    dp = dataplane()
    dp.process(udp(APP1, 40000, DNS, 53), 0)
    assert outcome(dp.process(udp(DNS, 53, APP1, 40001), 0.2)) == ("Deny", "rules", "DenyAllInBound")


def test_removing_the_allowing_rule_keeps_a_live_flow_passing() -> None:
    dp = dataplane()
    dp.process(tcp(OFFICE, 50000, EDGE, 22), 0)
    dp.remove_rule("nsg-edge", "AllowSsh", now=1.0)
    assert outcome(dp.process(tcp(EDGE, 22, OFFICE, 50000, "SA"), 2.0)) == ("Allow", "flow", "AllowSsh")
    assert outcome(dp.process(tcp(OFFICE, 50000, EDGE, 22, "A"), 3.0)) == ("Allow", "flow", "AllowSsh")


def test_after_the_idle_timeout_the_next_packet_is_decided_by_the_rules_as_they_are_now() -> None:
    dp = dataplane()
    dp.process(tcp(OFFICE, 50000, EDGE, 22, "S"), 0)
    dp.process(tcp(EDGE, 22, OFFICE, 50000, "SA"), 0.1)
    dp.process(tcp(OFFICE, 50000, EDGE, 22, "A"), 0.2)
    dp.remove_rule("nsg-edge", "AllowSsh", now=1.0)
    assert dp.process(tcp(OFFICE, 50000, EDGE, 22, "PA"), 0.2 + 239.9).reason == "flow"
    late = dp.process(tcp(OFFICE, 50000, EDGE, 22, "PA"), 0.2 + 239.9 + 240)
    assert outcome(late) == ("Deny", "rules", "DenyAllInBound")


def test_a_deny_rule_added_above_the_allowing_rule_does_not_cut_a_live_flow() -> None:
    dp = dataplane()
    dp.process(tcp(OFFICE, 50000, EDGE, 22), 0)
    dp.add_rule("nsg-edge", rule("DenySsh", 150, "Inbound", "Deny", "Tcp", "22"), now=1.0)
    assert dp.process(tcp(OFFICE, 50000, EDGE, 22, "A"), 2.0).reason == "flow"
    assert outcome(dp.process(tcp(OFFICE, 50001, EDGE, 22), 2.0)) == ("Deny", "rules", "DenySsh")


def test_flush_connection_cuts_a_live_flow_at_once_when_its_allowing_rule_goes() -> None:
    recorder = Recorder()
    dp = dataplane(listener=recorder)
    sql_connection(dp)
    dp.remove_rule("nsg-db", "AllowSql", now=5.0)
    assert ("flushed", "db", key(6, APP1, 50000, DB, 1433), 5.0) in recorder.events
    cut = dp.process(tcp(APP1, 50000, DB, 1433, "PA"), 5.5)
    assert outcome(cut) == ("Deny", "rules", "DenyAllIn")
    assert dp.stats.flows_flushed == 1


def test_flush_connection_cuts_a_live_flow_when_a_deny_rule_is_added() -> None:
    dp = dataplane()
    sql_connection(dp)
    dp.add_rule("nsg-db", rule("DenySqlFromApp1", 150, "Inbound", "Deny", "Tcp", "1433", source=APP1), now=5.0)
    assert outcome(dp.process(tcp(DB, 1433, APP1, 50000, "PA"), 5.5)) == ("Deny", "rules", "DenyAllOut")


def test_flush_connection_keeps_a_live_flow_the_changed_rules_still_allow() -> None:
    dp = dataplane()
    sql_connection(dp)
    dp.add_rule("nsg-db", rule("AllowRdp", 300, "Inbound", "Allow", "Tcp", "3389"), now=5.0)
    assert dp.process(tcp(APP1, 50000, DB, 1433, "PA"), 5.5).reason == "flow"


def test_flush_connection_leaves_the_flows_of_other_nsgs_alone() -> None:
    """Only the NICs the changed NSG is attached to are re-evaluated."""
    dp = dataplane()
    dp.process(tcp(OFFICE, 50000, EDGE, 22), 0)
    dp.replace_nsg(NetworkSecurityGroup("nsg-db", [], flush_connection=True), now=1.0)
    assert dp.process(tcp(EDGE, 22, OFFICE, 50000, "SA"), 2.0).reason == "flow"


def test_each_nic_keeps_its_own_record_of_a_flow_between_two_nics() -> None:
    dp = dataplane()
    sql_connection(dp)
    records = {nic: record for nic, record in dp.flows()}
    assert set(records) == {"app1", "db"}
    assert records["app1"].initiator == records["db"].initiator == key(6, APP1, 50000, DB, 1433)
    assert (records["db"].packets_out, records["db"].packets_in) == (2, 1)


def test_flow_timeout_minutes_of_the_vnet_sets_how_long_an_idle_udp_flow_lives() -> None:
    doc = copy.deepcopy(SCENARIO)
    doc["virtual_networks"][0]["flow_timeout_minutes"] = 5
    dp = Dataplane(scenario_from_document(doc))
    dp.process(udp(APP1, 40000, DNS, 53), 0)
    assert dp.process(udp(DNS, 53, APP1, 40000), 299.9).reason == "flow"
    assert dp.process(udp(DNS, 53, APP1, 40000), 299.9 + 300).decision == "Deny"


def test_scenario_timeouts_set_the_closed_timeout_of_a_reset_connection() -> None:
    dp = dataplane(timeouts={"tcp_closed": 2})
    dp.process(tcp(OFFICE, 50000, EDGE, 22), 0)
    assert dp.process(tcp(EDGE, 22, OFFICE, 50000, "R"), 1.0).state == "closed"
    assert dp.process(tcp(OFFICE, 50000, EDGE, 22, "A"), 2.9).reason == "flow"
    assert dp.process(tcp(EDGE, 22, OFFICE, 50000, "A"), 2.9 + 2).decision == "Deny"


def test_a_tcp_flow_closed_by_fins_ends_after_the_closed_timeout() -> None:
    dp = dataplane()
    assert ssh_session_closed_by_fins(dp).state == "closed"
    late_reply = dp.process(tcp(EDGE, 22, OFFICE, 50000, "A"), 0.5 + 11)
    assert outcome(late_reply) == ("Deny", "rules", "DenyAllOut")
    assert dp.stats.flows_closed == 1


def test_a_syn_on_the_five_tuple_of_a_closed_connection_opens_a_new_flow_decided_by_the_rules() -> None:
    dp = dataplane()
    ssh_session_closed_by_fins(dp)
    dp.remove_rule("nsg-edge", "AllowSsh", now=0.6)
    again = dp.process(tcp(OFFICE, 50000, EDGE, 22, "S"), 0.7)
    assert outcome(again) == ("Deny", "rules", "DenyAllInBound")
    assert dp.stats.flows_closed == 1


def test_a_tcp_packet_of_an_unknown_flow_without_syn_is_evaluated_as_new() -> None:
    """README: mid-stream pickup; an allowed one opens a record in the established state."""
    dp = dataplane()
    picked_up = dp.process(tcp(OFFICE, 50000, EDGE, 22, "PA"), 0)
    assert (picked_up.decision, picked_up.reason, picked_up.state) == ("Allow", "rules", "established")
    assert dp.process(tcp(EDGE, 22, OFFICE, 50000, "PA"), 0.1).reason == "flow"


def test_a_tcp_packet_of_an_unknown_flow_without_syn_is_denied_when_the_rules_deny_a_new_flow() -> None:
    dp = dataplane()
    stray = dp.process(tcp(STRANGER, 443, EDGE, 50000, "SA"), 0)
    assert outcome(stray) == ("Deny", "rules", "DenyAllInBound")
    assert dp.flow_counts()["edge"] == 0


# -- ICMP ---------------------------------------------------------------------------------------

def test_an_icmp_echo_request_opens_a_flow_its_reply_passes_by() -> None:
    dp = dataplane()
    request = dp.process(ether() / IP(src=APP1, dst=REMOTE) / ICMP(type=8, id=77, seq=1), 0)
    assert outcome(request) == ("Allow", "rules", "AllowIcmpOut")
    reply = dp.process(ether() / IP(src=REMOTE, dst=APP1) / ICMP(type=0, id=77, seq=1), 0.05)
    assert (reply.decision, reply.reason, reply.nic) == ("Allow", "flow", "app1")


def test_an_echo_reply_with_another_identifier_is_not_part_of_the_flow() -> None:
    dp = dataplane()
    dp.process(ether() / IP(src=APP1, dst=REMOTE) / ICMP(type=8, id=77), 0)
    stray = dp.process(ether() / IP(src=REMOTE, dst=APP1) / ICMP(type=0, id=78), 0.05)
    assert outcome(stray) == ("Deny", "rules", "DenyAllInBound")


def test_an_icmpv6_echo_reply_passes_by_the_flow_of_its_request() -> None:
    dp = dataplane()
    dp.process(ether() / IPv6(src=APP1_V6, dst="2001:db8::9") / ICMPv6EchoRequest(id=5), 0)
    reply = dp.process(ether() / IPv6(src="2001:db8::9", dst=APP1_V6) / ICMPv6EchoReply(id=5), 0.05)
    assert (reply.decision, reply.reason) == ("Allow", "flow")


def test_an_echo_to_a_public_ip_is_translated_and_its_reply_leaves_from_the_public_ip() -> None:
    dp = dataplane()
    request = dp.process(ether() / IP(src=STRANGER, dst=EDGE_PUBLIC) / ICMP(type=8, id=9), 0)
    assert (request.decision, request.nic, request.rule) == ("Allow", "edge", "AllowIcmpIn")
    reply = dp.process(ether() / IP(src=EDGE, dst=STRANGER) / ICMP(type=0, id=9), 0.05)
    assert (reply.decision, reply.reason) == ("Allow", "flow")
    assert reply.translated == key(1, EDGE_PUBLIC, 9, STRANGER, 9)


def test_an_icmp_error_about_a_live_udp_flow_passes_as_related_to_it() -> None:
    dp = dataplane()
    dp.process(udp(APP1, 40000, DNS, 53), 0)
    error = ether() / IP(src="192.0.2.1", dst=APP1) / ICMP(type=3, code=3) / \
        IPerror(src=APP1, dst=DNS) / UDPerror(sport=40000, dport=53)
    verdict = dp.process(error, 0.1)
    assert (verdict.decision, verdict.reason, verdict.state, verdict.nic, verdict.rule) == \
        ("Allow", "flow", "related", "app1", "AllowDnsOut")


@pytest.mark.parametrize("nic, private, public", [("edge", EDGE, EDGE_PUBLIC), ("app3", APP3, FRONTEND)],
                         ids=["public-ip", "load-balancer-snat"])
def test_an_icmp_error_sent_to_the_public_address_of_a_translated_flow_passes_as_related(nic, private,
                                                                                        public) -> None:
    dp = dataplane()
    out = dp.process(tcp(private, 40000, REMOTE, 443), 0)
    error = ether() / IP(src="192.0.2.1", dst=public) / ICMP(type=3, code=4) / \
        IPerror(src=public, dst=REMOTE, proto=6) / TCPerror(sport=out.translated[3], dport=443)
    verdict = dp.process(error, 0.1)
    assert (verdict.decision, verdict.reason, verdict.state, verdict.nic) == ("Allow", "flow", "related", nic)


def test_an_icmp_error_about_the_reply_of_a_load_balanced_flow_passes_as_related() -> None:
    dp = dataplane()
    syn = dp.process(tcp(REMOTE, 50000, FRONTEND, 443), 0)
    error = ether() / IP(src="192.0.2.1", dst=FRONTEND) / ICMP(type=3, code=1) / \
        IPerror(src=FRONTEND, dst=REMOTE, proto=6) / TCPerror(sport=443, dport=50000)
    verdict = dp.process(error, 0.1)
    assert (verdict.decision, verdict.state, verdict.nic) == ("Allow", "related", syn.nic)


def test_an_icmp_error_about_a_flow_that_has_expired_is_decided_by_the_rules() -> None:
    dp = dataplane()
    dp.process(udp(APP1, 40000, DNS, 53), 0)
    error = ether() / IP(src="192.0.2.1", dst=APP1) / ICMP(type=11, code=0) / \
        IPerror(src=APP1, dst=DNS) / UDPerror(sport=40000, dport=53)
    assert outcome(dp.process(error, 240.0)) == ("Deny", "rules", "DenyAllInBound")


def test_an_icmp_error_does_not_open_a_flow() -> None:
    dp = dataplane()
    error = ether() / IP(src=APP1, dst=STRANGER) / ICMP(type=3, code=1) / \
        IPerror(src=STRANGER, dst=APP1) / UDPerror(sport=1, dport=2)
    assert outcome(dp.process(error, 0)) == ("Allow", "rules", "AllowIcmpOut")
    assert dp.flow_counts()["app1"] == 0


# -- IPv6 ---------------------------------------------------------------------------------------

def test_an_ipv6_flow_is_decided_by_ipv6_rules_and_its_reply_passes() -> None:
    dp = dataplane()
    assert outcome(dp.process(tcp("2001:db8::7", 50000, APP1_V6, 443), 0)) == ("Allow", "rules", "AllowHttpsV6")
    assert dp.process(tcp(APP1_V6, 443, "2001:db8::7", 50000, "SA"), 0.1).reason == "flow"


def test_ipv6_extension_headers_do_not_change_the_verdict() -> None:
    dp = dataplane()
    packet = ether() / IPv6(src="2001:db8::7", dst=APP1_V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / \
        TCP(sport=50000, dport=443, flags="S")
    verdict = dp.process(packet, 0)
    assert outcome(verdict) == ("Allow", "rules", "AllowHttpsV6")
    assert dp.process(tcp(APP1_V6, 443, "2001:db8::7", 50000, "SA"), 0.1).reason == "flow"


def test_an_ipv4_address_and_an_ipv6_address_with_the_same_integer_are_different_hosts() -> None:
    """::a04:104 is 10.4.1.4 as an integer, but is not app1."""
    dp = dataplane()
    verdict = dp.process(tcp("2001:db8::7", 50000, "::a04:104", 443), 0)
    assert (verdict.decision, verdict.reason) == ("Skip", "not-in-scenario")


# -- fragments ----------------------------------------------------------------------------------

def fragments(packet, size=512):
    return [ether() / f for f in fragment(packet, fragsize=size)]


def test_the_fragments_of_an_allowed_datagram_follow_its_first_fragment() -> None:
    dp = dataplane()
    parts = fragments(IP(src=OFFICE, dst=APP1, id=31) / UDP(sport=5000, dport=6000) / (b"x" * 1400))
    verdicts = [dp.process(f, 0.01 * i) for i, f in enumerate(parts)]
    assert outcome(verdicts[0]) == ("Allow", "rules", "AllowUdpFromOffice")
    assert len(verdicts) == 3
    assert [outcome(v) for v in verdicts[1:]] == [("Allow", "fragment", "AllowUdpFromOffice")] * 2


def test_the_fragments_of_a_denied_datagram_are_denied_by_the_same_rule() -> None:
    dp = dataplane()
    parts = fragments(IP(src=STRANGER, dst=APP1, id=32) / UDP(sport=5000, dport=6000) / (b"x" * 1400))
    verdicts = [dp.process(f, 0) for f in parts]
    assert [outcome(v) for v in verdicts] == [("Deny", "rules", "DenyAllInBound")] + \
        [("Deny", "fragment", "DenyAllInBound")] * 2


def test_ipv6_fragments_follow_their_first_fragment() -> None:
    dp = dataplane()
    dp.process(udp(APP1_V6, 40000, "2001:db8::53", 53), 0)
    answer = IPv6(src="2001:db8::53", dst=APP1_V6) / IPv6ExtHdrFragment(id=0xBEEF) / \
        UDP(sport=53, dport=40000) / (b"a" * 2000)
    verdicts = [dp.process(ether() / f, 0.1) for f in fragment6(answer, 1000)]
    assert len(verdicts) >= 2
    assert [(v.decision, v.reason) for v in verdicts] == [("Allow", "flow")] + \
        [("Allow", "fragment")] * (len(verdicts) - 1)


def test_a_fragment_before_its_first_is_decided_alone_without_ports_and_opens_no_flow() -> None:
    """README: only rules whose port conditions cover every port can match it."""
    dp = dataplane()
    parts = fragments(IP(src=OFFICE, dst=EDGE, id=33) / TCP(sport=50000, dport=22, flags="S") / (b"x" * 1400))
    early = dp.process(parts[1], 0)
    assert outcome(early) == ("Deny", "rules", "DenyAllInBound")
    assert outcome(dp.process(parts[0], 0.01)) == ("Allow", "rules", "AllowSsh")
    assert outcome(dp.process(parts[2], 0.02)) == ("Allow", "fragment", "AllowSsh")


def test_a_fragment_before_its_first_is_allowed_alone_by_a_rule_for_every_port() -> None:
    dp = dataplane()
    parts = fragments(IP(src=OFFICE, dst=APP1, id=34) / UDP(sport=5000, dport=6000) / (b"x" * 1400))
    early = dp.process(parts[2], 0)
    assert (early.decision, early.reason, early.rule, early.state) == ("Allow", "rules", "AllowUdpFromOffice", None)
    assert dp.flow_counts()["app1"] == 0


def test_a_fragment_after_the_fragment_timeout_no_longer_follows_its_first() -> None:
    dp = dataplane(timeouts={"fragment": 5})
    parts = fragments(IP(src=OFFICE, dst=EDGE, id=35) / TCP(sport=50000, dport=22, flags="S") / (b"x" * 1400))
    dp.process(parts[0], 0)
    assert dp.process(parts[1], 4.9).reason == "fragment"
    assert outcome(dp.process(parts[2], 5.0)) == ("Deny", "rules", "DenyAllInBound")


def test_fragments_of_different_datagrams_are_told_apart_by_ip_id() -> None:
    dp = dataplane()
    allowed = fragments(IP(src=OFFICE, dst=EDGE, id=36) / TCP(sport=50000, dport=22, flags="S") / (b"x" * 1400))
    other = fragments(IP(src=OFFICE, dst=EDGE, id=37) / TCP(sport=50000, dport=23, flags="S") / (b"x" * 1400))
    dp.process(allowed[0], 0)
    assert outcome(dp.process(other[0], 0)) == ("Deny", "rules", "DenyAllInBound")
    assert dp.process(allowed[1], 0.01).decision == "Allow"
    assert outcome(dp.process(other[1], 0.01)) == ("Deny", "fragment", "DenyAllInBound")


# -- VLANs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("tags", [
    pytest.param(lambda: Dot1Q(vlan=100), id="802.1Q"),
    pytest.param(lambda: Dot1AD(vlan=10) / Dot1Q(vlan=20), id="Q-in-Q 802.1ad"),
    pytest.param(lambda: Dot1Q(vlan=10, type=0x8100) / Dot1Q(vlan=20), id="Q-in-Q 0x8100 twice"),
])
def test_a_vlan_tagged_frame_is_decided_as_its_untagged_packet_and_shares_its_flow(tags) -> None:
    dp = dataplane()
    tagged = ether() / tags() / IP(src=OFFICE, dst=EDGE) / TCP(sport=50000, dport=22, flags="S")
    verdict = dp.process(bytes(tagged), 0)
    assert outcome(verdict) == ("Allow", "rules", "AllowSsh")
    assert verdict.packet.vlans
    assert dp.process(tcp(EDGE, 22, OFFICE, 50000, "SA"), 0.1).reason == "flow"


def test_a_vlan_tag_with_the_old_q_in_q_ethertype_0x9100_is_decided() -> None:
    dp = dataplane()
    frame = ether(type=0x9100) / Dot1Q(vlan=20) / IP(src=OFFICE, dst=EDGE) / TCP(sport=50000, dport=22, flags="S")
    verdict = dp.process(bytes(frame), 0)
    assert outcome(verdict) == ("Allow", "rules", "AllowSsh")
    assert verdict.packet.vlans == (20,)


# -- NAT ----------------------------------------------------------------------------------------

def test_an_inbound_flow_to_a_public_ip_is_translated_to_the_nics_private_address() -> None:
    dp = dataplane()
    verdict = dp.process(tcp(OFFICE, 50000, EDGE_PUBLIC, 22), 0)
    assert (verdict.decision, verdict.nic, verdict.rule) == ("Allow", "edge", "AllowSsh")
    assert verdict.translated == key(6, OFFICE, 50000, EDGE, 22)


def test_the_reply_to_a_flow_through_a_public_ip_leaves_translated_back_to_the_public_ip() -> None:
    dp = dataplane()
    dp.process(tcp(OFFICE, 50000, EDGE_PUBLIC, 22), 0)
    reply = dp.process(tcp(EDGE, 22, OFFICE, 50000, "SA"), 0.1)
    assert (reply.decision, reply.reason) == ("Allow", "flow")
    assert reply.translated == key(6, EDGE_PUBLIC, 22, OFFICE, 50000)


@pytest.mark.parametrize("nic, private, public", [("edge", EDGE, EDGE_PUBLIC), ("app3", APP3, FRONTEND)],
                         ids=["public-ip", "load-balancer-snat"])
def test_an_outbound_flow_leaves_translated_and_its_reply_is_translated_back(nic, private, public) -> None:
    dp = dataplane()
    out = dp.process(tcp(private, 41000, REMOTE, 443), 0)
    assert (out.decision, out.rule) == ("Allow", "AllowHttpsOut")
    assert out.translated == key(6, public, 41000, REMOTE, 443)
    back = dp.process(tcp(REMOTE, 443, public, 41000, "SA"), 0.1)
    assert (back.decision, back.reason, back.nic) == ("Allow", "flow", nic)
    assert back.translated == key(6, REMOTE, 443, private, 41000)


def test_a_load_balanced_flow_reaches_a_backend_and_its_reply_leaves_from_the_frontend() -> None:
    dp = dataplane()
    syn = dp.process(tcp(REMOTE, 50000, FRONTEND, 443), 0)
    assert (syn.decision, syn.rule) == ("Allow", "AllowHttps")
    backend = {"app1": APP1, "app2": APP2}[syn.nic]
    assert syn.translated == key(6, REMOTE, 50000, backend, 8443)
    reply = dp.process(tcp(backend, 8443, REMOTE, 50000, "SA"), 0.1)
    assert (reply.decision, reply.reason, reply.nic) == ("Allow", "flow", syn.nic)
    assert reply.translated == key(6, FRONTEND, 443, REMOTE, 50000)
    assert dp.process(tcp(REMOTE, 50000, FRONTEND, 443, "A"), 0.2).translated == syn.translated


def test_a_frontend_port_without_a_load_balancing_rule_is_denied() -> None:
    dp = dataplane()
    verdict = dp.process(tcp(REMOTE, 50000, FRONTEND, 5555), 0)
    assert (verdict.decision, verdict.reason) == ("Deny", "no-lb-rule")


def test_outbound_snat_gives_flows_of_different_nics_with_the_same_source_port_different_ports() -> None:
    dp = dataplane()
    first = dp.process(tcp(APP2, 41000, REMOTE, 443), 0).translated
    second = dp.process(tcp(APP3, 41000, REMOTE, 443), 0).translated
    assert first[2] == second[2] == key(6, FRONTEND, 0, REMOTE, 443)[2]
    assert first[3] != second[3]
    for nic, private, translated in (("app2", APP2, first), ("app3", APP3, second)):
        back = dp.process(tcp(REMOTE, 443, FRONTEND, translated[3], "SA"), 0.1)
        assert (back.reason, back.nic) == ("flow", nic)
        assert back.translated == key(6, REMOTE, 443, private, 41000)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([APP2, APP3]), st.sampled_from([1024, 1025, 41000, 41001, 65535])),
                min_size=1, max_size=10, unique=True))
def test_outbound_snat_never_gives_two_live_flows_the_same_frontend_port(flows) -> None:
    dp = dataplane()
    ports = [dp.process(tcp(src, sport, REMOTE, 443), 0).translated[3] for src, sport in flows]
    assert len(set(ports)) == len(ports)
    for (src, sport), port in zip(flows, ports):
        back = dp.process(tcp(REMOTE, 443, FRONTEND, port, "SA"), 0.1)
        assert back.translated == key(6, REMOTE, 443, src, sport)


def test_a_snat_port_is_given_back_when_its_flow_ends() -> None:
    """The frontend keeps a client's source port when it is free (README), so the port is seen to come
    back; the closed flow's deadline is 10.1 s, and the table notices within the next second."""
    dp = dataplane()
    assert dp.process(tcp(APP2, 41000, REMOTE, 443), 0).translated[3] == 41000
    assert dp.process(tcp(APP3, 41000, REMOTE, 80), 0).translated[3] == 41000, "another remote end: no collision"
    dp.process(tcp(REMOTE, 443, FRONTEND, 41000, "R"), 0.1)
    assert dp.process(tcp(APP3, 41000, REMOTE, 443), 5.0).translated[3] != 41000, "closed, not yet ended"
    dp2 = dataplane()
    dp2.process(tcp(APP2, 41000, REMOTE, 443), 0)
    dp2.process(tcp(REMOTE, 443, FRONTEND, 41000, "R"), 0.1)
    later = dp2.process(tcp(APP3, 41000, REMOTE, 443), 12.0)
    assert later.translated == key(6, FRONTEND, 41000, REMOTE, 443)


def test_a_translated_flow_is_found_by_its_outside_tuple_only_while_it_lives() -> None:
    """Conntrack indexes a translated record by the tuple beyond its translation (the reply tuple after
    NAT): the index holds it while the record lives, and forgets it when the flow ends."""
    dp = dataplane()
    port = dp.process(tcp(APP2, 41000, REMOTE, 443), 0).translated[3]
    outside = key(6, FRONTEND, port, REMOTE, 443)
    [(nic, record)] = dp.conntrack.outside[min(outside, outside[:2] + outside[4:] + outside[2:4],
                                               key=lambda k: (k[2], k[3]))]
    assert (nic.name, record.initiator) == ("app2", key(6, APP2, 41000, REMOTE, 443))
    dp.advance(1000.0)
    assert dp.conntrack.outside == {}


def test_a_flow_between_two_translated_ends_passes_both_ways() -> None:
    """app2 leaves by the frontend (SNAT, its source port below the frontend's range, so changed) to
    edge's public IP (DNAT): both records have the same outside tuple, and each packet finds the record
    of the NIC it goes to."""
    groups = copy.deepcopy(SCENARIO["network_security_groups"])
    groups[2]["security_rules"].append(rule("AllowHttpsIn", 120, "Inbound", "Allow", "Tcp", "443"))
    dp = dataplane(network_security_groups=groups)
    request = dp.process(tcp(APP2, 1000, EDGE_PUBLIC, 443), 0)
    assert (request.decision, request.nic, request.rule) == ("Allow", "edge", "AllowHttpsIn")
    assert request.translated == key(6, FRONTEND, 1024, EDGE, 443)
    reply = dp.process(tcp(EDGE, 443, FRONTEND, 1024, "SA"), 0.1)
    assert (reply.decision, reply.reason, reply.nic) == ("Allow", "flow", "app2")
    assert reply.translated == key(6, EDGE_PUBLIC, 443, APP2, 1000)
    assert [(nic, record.state.value, record.packets_in) for nic, record in dp.flows()] == \
        [("app2", "syn-received", 1), ("edge", "syn-received", 1)]


def test_a_snat_port_handed_to_a_flow_the_table_refused_is_free_again() -> None:
    dp = dataplane(max_flows_per_nic=1)
    dp.process(tcp(APP2, 41000, REMOTE, 443), 0)
    assert dp.process(tcp(APP2, 41001, REMOTE, 443), 0).reason == "flow-limit"
    assert dp.process(tcp(APP3, 41001, REMOTE, 443), 0).translated[3] == 41001


def test_a_packet_to_the_frontend_for_a_snat_port_no_flow_holds_is_not_let_in() -> None:
    dp = dataplane()
    dp.process(tcp(APP2, 41000, REMOTE, 443), 0)
    stray = dp.process(tcp(REMOTE, 443, FRONTEND, 41001, "SA"), 0.1)
    assert stray.decision == "Deny"


# -- limits --------------------------------------------------------------------------------------

def test_a_full_flow_table_refuses_a_new_flow_and_counts_it() -> None:
    dp = dataplane(max_flows_per_nic=2)
    for sport in (50000, 50001):
        assert dp.process(tcp(OFFICE, sport, EDGE, 22), 0).decision == "Allow"
    refused = dp.process(tcp(OFFICE, 50002, EDGE, 22), 0.5)
    assert (refused.decision, refused.reason, refused.nic) == ("Deny", "flow-limit", "edge")
    assert (dp.stats.flows_refused, dp.stats.denied, dp.flow_counts()["edge"]) == (1, 1, 2)


def test_a_full_flow_table_takes_new_flows_again_once_old_ones_expire() -> None:
    dp = dataplane(max_flows_per_nic=1)
    dp.process(tcp(OFFICE, 50000, EDGE, 22), 0)
    assert outcome(dp.process(tcp(OFFICE, 50001, EDGE, 22), 121)) == ("Allow", "rules", "AllowSsh")


def test_a_full_flow_table_still_passes_the_packets_of_its_flows() -> None:
    dp = dataplane(max_flows_per_nic=1)
    dp.process(tcp(OFFICE, 50000, EDGE, 22), 0)
    dp.process(tcp(OFFICE, 50001, EDGE, 22), 0.1)
    assert dp.process(tcp(EDGE, 22, OFFICE, 50000, "SA"), 0.2).reason == "flow"


def test_a_flow_refused_at_its_destination_leaves_no_record_at_its_source() -> None:
    recorder = Recorder()
    dp = dataplane(listener=recorder, max_flows_per_nic=1)
    sql_connection(dp, client=APP2)
    refused = dp.process(tcp(APP1, 50000, DB, 1433), 1.0)
    assert (refused.decision, refused.reason, refused.nic) == ("Deny", "flow-limit", "db")
    assert dp.flow_counts()["app1"] == 0
    assert [e for e in recorder.events if e[1] == "app1"] == []
    assert dp.stats.flows_refused == 1


def test_memory_stays_bounded_while_a_full_table_refuses_flows() -> None:
    dp = dataplane(max_flows_per_nic=200)
    frames = [bytes(tcp(OFFICE, 1024 + i, EDGE, 22)) for i in range(3000)]
    for i, frame in enumerate(frames[:1000]):
        dp.process(frame, i / 1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, frame in enumerate(frames[1000:]):
            dp.process(frame, 1 + i / 1000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert dp.flow_counts()["edge"] == 200
    assert dp.stats.flows_refused == 2800
    assert grown < 64 * 1024


# -- the capture clock --------------------------------------------------------------------------

def test_time_comes_only_from_the_packets_timestamps(monkeypatch) -> None:
    def no_clock(*args, **kwargs):
        raise AssertionError("the dataplane read the wall clock")

    syn, syn_ack, ack, data = (bytes(tcp(OFFICE, 50000, EDGE, 22, "S")), bytes(tcp(EDGE, 22, OFFICE, 50000, "SA")),
                               bytes(tcp(OFFICE, 50000, EDGE, 22, "A")), bytes(tcp(OFFICE, 50000, EDGE, 22, "PA")))
    dp = dataplane()
    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns"):
        monkeypatch.setattr(time, name, no_clock)
    monkeypatch.setattr(datetime, "datetime", None)
    start = 1_700_000_000.0
    dp.process(syn, start)
    dp.process(syn_ack, start + 0.1)
    dp.process(ack, start + 0.2)
    assert dp.process(data, start + 240.1).reason == "flow"
    assert dp.process(data, start + 480.1 + 1e-3).reason == "rules", "idle past its timeout: a new flow"


def test_a_flow_ends_at_its_deadline_on_the_capture_clock() -> None:
    recorder = Recorder()
    dp = dataplane(listener=recorder)
    dp.process(udp(APP1, 40000, DNS, 53), 10.0)
    dp.process(udp(APP2, 40000, DNS, 53), 1000.0)
    assert ("expired", "app1", key(17, APP1, 40000, DNS, 53), 250.0) in recorder.events
    assert dp.stats.flows_expired == 1


def test_close_ends_every_live_flow_as_open_at_the_end_of_the_capture() -> None:
    recorder = Recorder()
    dp = dataplane(listener=recorder)
    sql_connection(dp)
    dp.close(5.0)
    assert sorted(e for e in recorder.events if e[0] == "end-of-capture") == [
        ("end-of-capture", "app1", key(6, APP1, 50000, DB, 1433), 5.0),
        ("end-of-capture", "db", key(6, APP1, 50000, DB, 1433), 5.0)]
    assert dp.stats.flows_open_at_end == 2


# -- skips ---------------------------------------------------------------------------------------

def test_a_frame_between_two_internet_hosts_is_skipped_as_not_in_the_scenario() -> None:
    dp = dataplane()
    verdict = dp.process(tcp(REMOTE, 1, STRANGER, 2), 0)
    assert (verdict.decision, verdict.reason) == ("Skip", "not-in-scenario")
    assert dp.stats.skipped == {"not-in-scenario": 1}


def test_a_frame_between_vnet_addresses_that_are_no_nics_is_skipped() -> None:
    dp = dataplane()
    assert dp.process(udp("10.4.9.9", 1, "10.4.9.10", 2), 0).reason == "not-in-scenario"


def test_a_frame_cut_inside_any_header_is_skipped_as_truncated() -> None:
    dp = dataplane()
    frame = bytes(ether() / Dot1Q(vlan=3) / IP(src=OFFICE, dst=EDGE) / TCP(sport=50000, dport=22, flags="S"))
    for length in range(0, 18 + 20 + 14):
        verdict = dp.process(frame[:length], 0)
        assert (verdict.decision, verdict.reason) == ("Skip", "truncated"), length


@pytest.mark.parametrize("frame, reason", [
    (bytes(ether() / IP(src=OFFICE, dst=EDGE, ihl=3) / TCP()), "malformed"),
    (bytes(ether(type=0x0800) / IPv6(src="2001:db8::1", dst=APP1_V6) / TCP()), "malformed"),
    (bytes(ether(type=0x86DD) / IP(src=OFFICE, dst=EDGE) / TCP()), "malformed"),
    (bytes(ether(type=0x0806) / (b"\x00" * 28)), "non-ip"),
], ids=["ihl-below-5", "ipv6-in-ipv4-ethertype", "ipv4-in-ipv6-ethertype", "arp"])
def test_a_malformed_or_non_ip_frame_is_skipped_with_its_reason(frame, reason) -> None:
    verdict = dataplane().process(frame, 0)
    assert (verdict.decision, verdict.reason) == ("Skip", reason)


VALID_FRAMES = [bytes(f) for f in (
    tcp(OFFICE, 50000, EDGE, 22),
    ether() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / IP(src=APP1, dst=DNS) / UDP(sport=1, dport=53),
    ether() / IPv6(src="2001:db8::7", dst=APP1_V6) / IPv6ExtHdrHopByHop() / TCP(dport=443),
    ether() / IP(src="192.0.2.1", dst=APP1) / ICMP(type=3) / IPerror(src=APP1, dst=DNS) / UDPerror(dport=53),
)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID_FRAMES), st.integers(0, 120), st.binary(min_size=1, max_size=8),
       st.integers(0, 120))
def test_no_frame_makes_the_dataplane_raise(frame, at, garbage, cut) -> None:
    """Corrupt bytes anywhere and cut the frame anywhere: a verdict comes out, never an exception."""
    damaged = (frame[:at] + garbage + frame[at + len(garbage):])[:cut]
    verdict = dataplane().process(damaged, 0)
    assert verdict.decision in ("Allow", "Deny", "Skip")


# -- the Python API ------------------------------------------------------------------------------

def test_for_nsg_puts_one_nsg_on_one_nic_with_an_optional_public_ip() -> None:
    nsg = NetworkSecurityGroup("solo", [rule_from_azure(rule("AllowWeb", 100, "Inbound", "Allow", "Tcp", "443"))])
    dp = Dataplane.for_nsg(nsg, nic_ip="10.9.0.4", address_space="10.9.0.0/16", public_ip="20.9.0.4")
    verdict = dp.process(tcp(REMOTE, 50000, "20.9.0.4", 443), 0)
    assert (verdict.decision, verdict.nic, verdict.nsg, verdict.rule) == ("Allow", "vm-nic", "solo", "AllowWeb")
    assert verdict.translated == key(6, REMOTE, 50000, "10.9.0.4", 443)
    assert dp.check(f"tcp {REMOTE}:1 > 10.9.0.4:80").rule == "DenyAllInBound"


def test_check_takes_the_flow_notation_or_a_flow_and_changes_no_state() -> None:
    dp = dataplane()
    text = f"tcp {OFFICE}:50000 > {EDGE_PUBLIC}:22"
    decision = dp.check(text)
    assert decision == dp.check(parse_flow(text))
    assert (decision.decision, decision.rule, decision.translated) == \
        ("Allow", "AllowSsh", key(6, OFFICE, 50000, EDGE, 22))
    assert sum(dp.flow_counts().values()) == 0


def test_add_rule_returns_the_rule_and_decides_the_next_new_flow() -> None:
    dp = dataplane()
    added = dp.add_rule("nsg-edge", rule("AllowRdp", 200, "Inbound", "Allow", "Tcp", "3389"), now=0)
    assert (added.name, added.priority) == ("AllowRdp", 200)
    assert outcome(dp.process(tcp(STRANGER, 50000, EDGE, 3389), 1)) == ("Allow", "rules", "AllowRdp")


def test_replace_rule_changes_a_rule_in_place() -> None:
    dp = dataplane()
    dp.replace_rule("nsg-edge", rule("AllowSsh", 100, "Inbound", "Allow", "Tcp", "2222", source="198.51.100.0/24"))
    assert dp.process(tcp(OFFICE, 50000, EDGE, 22), 0).decision == "Deny"
    assert dp.process(tcp(OFFICE, 50000, EDGE, 2222), 0).rule == "AllowSsh"


def test_remove_rule_returns_the_removed_rule_and_new_flows_fall_through() -> None:
    dp = dataplane()
    assert dp.remove_rule("nsg-edge", "AllowSsh").name == "AllowSsh"
    assert dp.check(f"tcp {OFFICE}:50000 > {EDGE}:22").rule == "DenyAllInBound"


def test_a_rule_azure_would_reject_is_rejected_at_run_time_with_azures_code() -> None:
    dp = dataplane()
    with pytest.raises(ValidationErrors) as info:
        dp.add_rule("nsg-edge", rule("Clash", 300, "Inbound", "Allow", "Tcp", "80"))
    assert [p.code for p in info.value.problems] == ["SecurityRuleConflict"]


def test_a_rule_change_on_an_nsg_the_scenario_lacks_is_an_error_naming_it() -> None:
    with pytest.raises(DataplaneError, match="nsg-missing"):
        dataplane().add_rule("nsg-missing", rule("AllowRdp", 200, "Inbound", "Allow", "Tcp", "3389"))


def test_removing_a_rule_the_nsg_lacks_is_an_error_and_changes_nothing() -> None:
    dp = dataplane()
    with pytest.raises(RuleError):
        dp.remove_rule("nsg-edge", "NoSuchRule")
    assert dp.check(f"tcp {OFFICE}:50000 > {EDGE}:22").rule == "AllowSsh"


def test_flows_lists_each_record_with_its_initiator_state_and_counters() -> None:
    dp = dataplane()
    sql_connection(dp)
    dp.process(tcp(DB, 1433, APP1, 50000, "PA") / (b"r" * 100), 0.5)
    records = dict(dp.flows())
    record = records["db"]
    assert (record.initiator, record.state.value) == (key(6, APP1, 50000, DB, 1433), "established")
    assert (record.packets_out, record.packets_in) == (2, 2)
    assert record.bytes_in == len(tcp(DB, 1433, APP1, 50000, "SA")) + len(tcp(DB, 1433, APP1, 50000, "PA")) + 100


def test_flow_counts_has_every_nic_and_follows_expiry() -> None:
    dp = dataplane()
    sql_connection(dp)
    dp.process(udp(APP1, 40000, DNS, 53), 100)
    assert dp.flow_counts() == {"app1": 2, "app2": 0, "app3": 0, "db": 1, "edge": 0}
    dp.advance(300.0)
    assert dp.flow_counts() == {"app1": 1, "app2": 0, "app3": 0, "db": 0, "edge": 0}


def test_statistics_count_packets_by_outcome() -> None:
    dp = dataplane()
    sql_connection(dp)
    dp.process(tcp(STRANGER, 1, EDGE, 23), 1)
    dp.process(tcp(REMOTE, 1, STRANGER, 2), 1)
    stats = dp.stats
    assert (stats.packets, stats.allowed, stats.denied, stats.skipped, stats.flows_created) == \
        (5, 3, 1, {"not-in-scenario": 1}, 2)


def test_a_listener_hears_every_flow_start() -> None:
    recorder = Recorder()
    dp = dataplane(listener=recorder)
    sql_connection(dp, t=3.0)
    assert sorted(e for e in recorder.events if e[0] == "started") == [
        ("started", "app1", key(6, APP1, 50000, DB, 1433), 3.0),
        ("started", "db", key(6, APP1, 50000, DB, 1433), 3.0)]


def test_a_verdict_prints_as_the_contracts_json_line() -> None:
    verdict = dataplane().process(tcp(OFFICE, 50000, EDGE_PUBLIC, 22), 1.5)
    assert verdict.to_json(7) == {
        "index": 7, "ts": 1.5, "flow": f"tcp {OFFICE}:50000 > {EDGE_PUBLIC}:22", "direction": "Inbound",
        "nic": "edge", "decision": "Allow", "nsg": "nsg-edge", "rule": "AllowSsh", "reason": "rules",
        "state": "syn-sent", "translated": f"tcp {OFFICE}:50000 > {EDGE}:22"}


names = st.one_of(st.none(), st.text(max_size=12))
addresses = st.one_of(st.tuples(st.just(4), st.integers(0, 2**32 - 1)), st.tuples(st.just(6), st.integers(0, 2**128 - 1)))


@st.composite
def verdicts(draw):
    version, src = draw(addresses)
    dst = draw(st.integers(0, 2**32 - 1 if version == 4 else 2**128 - 1))
    proto = draw(st.sampled_from([6, 17, 1, 58, 50, 47]))
    ports = draw(st.tuples(st.integers(0, 65535), st.integers(0, 65535)))
    packet = Packet(version, proto, src, dst, *ports, 0, -1, -1, 0, 60, 0, 0, False, False, (), None)
    translated = (proto, version, dst, ports[1], src, ports[0]) if draw(st.booleans()) else None
    return Verdict(draw(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 2**40))),
                   draw(st.sampled_from(["Allow", "Deny", "Skip"])), draw(st.text(max_size=12)), draw(names),
                   draw(names), draw(names), draw(names), draw(names), draw(st.one_of(st.none(), st.just(packet))),
                   translated, draw(st.text(max_size=12)))


@settings(max_examples=300)
@given(verdicts(), st.integers(0, 2**40))
def test_a_verdicts_json_line_is_the_json_of_its_contract_object(verdict, index) -> None:
    """`json_line` keeps the JSON after the flow between lines: it must write what `json.dumps` writes."""
    assert verdict.json_line(index) == json.dumps(verdict.to_json(index))


@given(addresses, addresses, st.sampled_from([6, 17, 1, 58, 50, 0, 255]), st.integers(0, 65535), st.integers(0, 65535))
def test_a_flows_text_is_the_flow_notation(a, b, proto, sport, dport) -> None:
    key = (proto, a[0], a[1], sport, b[1] if b[0] == a[0] else a[1], dport)
    assert flow_text(key) == str(key_to_flow(key))


def test_a_sweep_ends_flows_in_deadline_order_across_nics() -> None:
    """What a listener hears does not depend on which NICs share a run (replay --workers)."""
    from pathlib import Path

    class Ended:
        def __init__(self) -> None:
            self.nics: list[str] = []

        def flow_started(self, nic, record, ts) -> None:
            pass

        def flow_ended(self, nic, record, why, ts) -> None:
            self.nics.append(nic)

    ended = Ended()
    demo = Path(__file__).resolve().parents[1] / "pcaps" / "demo" / "scenario.yaml"
    dp = Dataplane.from_file(demo, listener=ended)
    first = ether() / IP(src="203.0.113.50", dst="20.50.1.10") / TCP(sport=53000, dport=22, flags="S")
    second = ether() / IP(src="198.51.100.7", dst="20.50.1.100") / TCP(sport=53001, dport=80, flags="S")
    assert dp.process(bytes(first), 0.0).decision == "Allow"
    assert dp.process(bytes(second), 0.5).nic in ("web1-nic", "web2-nic")
    dp.advance(10_000.0)
    assert ended.nics[0] == "jump-nic" and len(ended.nics) == 2
