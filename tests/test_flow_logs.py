"""NSG flow logs (version 2) and VNet flow logs (version 4) from a replay, field by field (reference §6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from dataplane import load_scenario
from dataplane.replay import Outputs, replay

DEMO = Path(__file__).resolve().parents[1] / "pcaps" / "demo" / "scenario.yaml"
T0 = 1_700_000_000.0
OFFICE, JUMP_PUBLIC, JUMP = "203.0.113.50", "20.50.1.10", "10.10.3.4"


def packet(t, src, sport, dst, dport, flags, payload=b""):
    p = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload
    p.time = t
    return p


def long_ssh_session() -> list:
    """A session of 3.5 minutes: handshake, a request and a reply every 20 s, FIN both ways."""
    c, s = (OFFICE, 50123), (JUMP, 22)
    packets = [packet(T0 + 5, *c, JUMP_PUBLIC, 22, "S"), packet(T0 + 5.01, *s, *c, "SA"),
               packet(T0 + 5.02, *c, JUMP_PUBLIC, 22, "A")]
    for i in range(1, 11):
        packets.append(packet(T0 + 5 + 20 * i, *c, JUMP_PUBLIC, 22, "PA", b"q" * 40))
        packets.append(packet(T0 + 5.05 + 20 * i, *s, *c, "PA", b"r" * 300))
    packets += [packet(T0 + 215, *c, JUMP_PUBLIC, 22, "FA"), packet(T0 + 215.01, *s, *c, "FA"),
                packet(T0 + 215.02, *c, JUMP_PUBLIC, 22, "A")]
    return packets


def denied_scan() -> list:
    return [packet(T0 + 10 + i, "198.18.7.7", 40000, JUMP_PUBLIC, port, "S") for i, port in enumerate((23, 23, 80))]


@pytest.fixture
def logs(tmp_path: Path) -> tuple[list, dict, dict]:
    packets = sorted(long_ssh_session() + denied_scan(), key=lambda p: p.time)
    capture = tmp_path / "session.pcap"
    wrpcap(str(capture), packets)
    outputs = Outputs(flow_log=str(tmp_path / "nsg.json"), vnet_flow_log=str(tmp_path / "vnet.json"))
    replay(load_scenario(DEMO), [str(capture)], outputs)
    return packets, json.loads((tmp_path / "nsg.json").read_text()), json.loads((tmp_path / "vnet.json").read_text())


def nsg_tuples(doc: dict) -> list[tuple[str, str, list[str]]]:
    """(nsg resource id, rule, tuple fields) in record order."""
    return [(record["resourceId"], group["rule"], t.split(","))
            for record in doc["records"] for group in record["properties"]["flows"]
            for by_mac in group["flows"] for t in by_mac["flowTuples"]]


def vnet_tuples(doc: dict) -> list[tuple[str, list[str]]]:
    return [(group["rule"], t.split(",")) for record in doc["records"] for flow in record["flowRecords"]["flows"]
            for group in flow["flowGroups"] for t in group["flowTuples"]]


def session_tuples(doc: dict) -> list[list[str]]:
    return [fields for _, _, fields in nsg_tuples(doc) if fields[3] == "50123"]


def test_an_nsg_v2_record_has_azures_structure(logs) -> None:
    _, nsg, _ = logs
    record = nsg["records"][0]
    assert set(record) == {"time", "systemId", "category", "resourceId", "operationName", "properties"}
    assert record["category"] == "NetworkSecurityGroupFlowEvent"
    assert record["operationName"] == "NetworkSecurityGroupFlowEvents"
    assert record["resourceId"].endswith("/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-JUMP")
    assert record["properties"]["Version"] == 2
    assert record["time"].endswith("Z")


def test_the_begin_tuple_has_thirteen_fields_and_empty_counters(logs) -> None:
    _, nsg, _ = logs
    begin = session_tuples(nsg)[0]
    assert begin == [str(int(T0 + 5)), OFFICE, JUMP, "50123", "22", "T", "I", "A", "B", "", "", "", ""]


def test_a_long_flow_is_logged_begin_then_continuing_then_end(logs) -> None:
    _, nsg, _ = logs
    states = [fields[8] for fields in session_tuples(nsg)]
    assert states[0] == "B" and states[-1] == "E"
    assert set(states[1:-1]) == {"C"} and len(states) >= 4


def test_the_counters_add_up_to_the_packets_and_bytes_of_the_flow(logs) -> None:
    packets, nsg, _ = logs
    session = [p for p in packets if TCP in p and 50123 in (p[TCP].sport, p[TCP].dport)]
    sent = [p for p in session if p[TCP].sport == 50123]
    received = [p for p in session if p[TCP].dport == 50123]
    counted = [list(map(int, fields[9:13])) for fields in session_tuples(nsg)[1:]]
    assert [sum(column) for column in zip(*counted)] == [
        len(sent), sum(len(p) for p in sent), len(received), sum(len(p) for p in received)]


def test_tuples_are_timed_by_the_capture_clock_minute_by_minute(logs) -> None:
    _, nsg, _ = logs
    times = [record["time"] for record in nsg["records"]]
    assert times == sorted(times)
    assert times[0].startswith("2023-11-14T22:13:00")


def test_allowed_flows_name_the_user_rule_and_denied_flows_the_default_rule(logs) -> None:
    _, nsg, _ = logs
    rules = {(rule, fields[7]) for _, rule, fields in nsg_tuples(nsg)}
    assert ("UserRule_AllowSshFromOffice", "A") in rules
    assert ("DefaultRule_DenyAllInBound", "D") in rules


def test_denied_packets_give_one_tuple_per_five_tuple_per_minute(logs) -> None:
    _, nsg, _ = logs
    denied = [fields for _, _, fields in nsg_tuples(nsg) if fields[7] == "D"]
    assert sorted(f[4] for f in denied) == ["23", "80"]


def test_a_denied_inbound_tuple_shows_the_destination_the_nsg_saw_after_translation(logs) -> None:
    _, nsg, _ = logs
    denied = next(fields for _, _, fields in nsg_tuples(nsg) if fields[7] == "D")
    assert denied[:5] == [str(int(T0 + 10)), "198.18.7.7", JUMP, "40000", "23"]


def test_a_vnet_v4_record_has_azures_structure(logs) -> None:
    _, _, vnet = logs
    record = vnet["records"][0]
    assert set(record) == {"time", "flowLogVersion", "flowLogGUID", "macAddress", "category", "flowLogResourceID",
                           "targetResourceID", "operationName", "flowRecords"}
    assert (record["flowLogVersion"], record["category"], record["operationName"]) == (
        4, "FlowLogFlowEvent", "FlowLogFlowEvent")
    assert record["targetResourceID"].endswith("/networkInterfaces/jump-nic")
    assert record["flowRecords"]["flows"][0]["aclID"].endswith("/NETWORKSECURITYGROUPS/NSG-JUMP")


def test_vnet_tuples_use_milliseconds_protocol_numbers_and_the_encryption_field(logs) -> None:
    _, _, vnet = logs
    rule, begin = next((r, f) for r, f in vnet_tuples(vnet) if f[3] == "50123")
    assert rule == "UserRule_AllowSshFromOffice"
    assert begin == [str(int((T0 + 5) * 1000)), OFFICE, JUMP, "50123", "22", "6", "I", "B", "NX", "0", "0", "0", "0"]


def test_denied_flows_have_state_d_in_the_vnet_format(logs) -> None:
    _, _, vnet = logs
    denied = [(rule, f) for rule, f in vnet_tuples(vnet) if f[7] == "D"]
    assert {f[4] for _, f in denied} == {"23", "80"}
    assert all(rule == "DefaultRule_DenyAllInBound" and f[8] == "NX" for rule, f in denied)


def test_vnet_counters_add_up_like_the_nsg_ones(logs) -> None:
    _, nsg, vnet = logs
    nsg_sums = [sum(int(f[i]) for f in session_tuples(nsg)[1:]) for i in range(9, 13)]
    vnet_sums = [sum(int(f[i]) for _, f in vnet_tuples(vnet) if f[3] == "50123") for i in range(9, 13)]
    assert nsg_sums == vnet_sums
