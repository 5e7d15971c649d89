"""NSG flow logs (version 2) and VNet flow logs (version 4) from a replay, field by field (reference §6)."""

from __future__ import annotations

import gc
import json
import re
import struct
import tracemalloc
import uuid
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from dataplane import flowlog, load_scenario
from dataplane.pipeline import Dataplane
from dataplane.replay import Outputs, replay
from dataplane.workers import ShardFlowLogs
from frames import ether

DEMO = Path(__file__).resolve().parents[1] / "pcaps" / "demo" / "scenario.yaml"
T0 = 1_700_000_000.0
OFFICE, JUMP_PUBLIC, JUMP = "203.0.113.50", "20.50.1.10", "10.10.3.4"


def packet(t, src, sport, dst, dport, flags, payload=b""):
    p = ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload
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
    assert set(record) == {"time", "systemId", "macAddress", "category", "resourceId", "operationName", "properties"}
    assert record["category"] == "NetworkSecurityGroupFlowEvent"
    assert record["operationName"] == "NetworkSecurityGroupFlowEvents"
    assert record["resourceId"].endswith("/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-JUMP")
    assert record["properties"]["Version"] == 2


def test_record_times_have_seven_fraction_digits_as_azure_writes_them(logs) -> None:
    _, nsg, vnet = logs
    for record in nsg["records"] + vnet["records"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", record["time"]), record["time"]


def test_an_nsg_v2_record_holds_the_flows_of_one_mac_named_beside_its_system_id(logs) -> None:
    _, nsg, _ = logs
    for record in nsg["records"]:
        macs = {by_mac["mac"] for group in record["properties"]["flows"] for by_mac in group["flows"]}
        assert macs == {record["macAddress"]}


def test_the_vnet_acl_id_is_the_guid_of_the_nsg_as_in_nsg_logs(logs) -> None:
    _, nsg, vnet = logs
    system_ids = {record["resourceId"].rsplit("/", 1)[1]: record["systemId"] for record in nsg["records"]}
    acl = vnet["records"][0]["flowRecords"]["flows"][0]["aclID"]
    assert acl == system_ids["NSG-JUMP"] == str(uuid.uuid5(uuid.NAMESPACE_URL, "nsg-jump"))


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


def open_minute_of(logs: flowlog.FlowLogs) -> list:
    """What `logs` keeps of the open minute, after the first packets of a session and a denied scan."""
    dataplane = Dataplane(load_scenario(DEMO), listener=logs)
    for i, p in enumerate(sorted(long_ssh_session()[:3] + denied_scan(), key=lambda p: p.time)):
        if isinstance(logs, ShardFlowLogs):
            logs.at(i, (2,))
        logs.verdict(dataplane.process(bytes(p), float(p.time)))
    for _ in range(2):  # a tuple of tuples is left alone once those inside it are
        gc.collect()
    return logs._tuples


def test_the_open_minutes_tuples_are_plain_tuples_the_collector_stops_tracking() -> None:
    """Namedtuples stay tracked: each full collection walked the whole open minute again."""
    kept = open_minute_of(flowlog.FlowLogs(lambda kind, record: None))
    assert len(kept) == 3 and not any(map(gc.is_tracked, kept))


def test_a_workers_open_minute_keeps_each_tuple_with_its_place_untracked_by_the_collector() -> None:
    scenario = load_scenario(DEMO)
    kept = open_minute_of(ShardFlowLogs({name: i for i, name in enumerate(scenario.network_interfaces)}))
    assert len(kept) == 3 and not any(map(gc.is_tracked, kept))


@pytest.mark.parametrize("wanted, unwanted", [("flow_log", "_vnet_records"), ("vnet_flow_log", "_nsg_records")])
def test_a_replay_makes_the_records_of_the_flow_log_formats_asked_for_only(wanted, unwanted, tmp_path, monkeypatch):
    def refused(minute, tuples):
        raise AssertionError(f"{unwanted} was called for a format nobody asked for")

    monkeypatch.setattr(flowlog, unwanted, refused)
    capture = tmp_path / "session.pcap"
    wrpcap(str(capture), long_ssh_session())
    replay(load_scenario(DEMO), [str(capture)], Outputs(**{wanted: str(tmp_path / "log.json")}))
    assert json.loads((tmp_path / "log.json").read_text())["records"]


def test_the_storage_layout_has_one_compact_document_per_nsg_mac_and_hour(tmp_path: Path) -> None:
    hour_later = [packet(p.time + 3600, p[IP].src, p[TCP].sport + 1, p[IP].dst, p[TCP].dport, p[TCP].flags)
                  for p in long_ssh_session()]
    capture = tmp_path / "two-hours.pcap"
    wrpcap(str(capture), long_ssh_session() + hour_later)
    outputs = Outputs(flow_log_dir=str(tmp_path / "nsg"), vnet_flow_log_dir=str(tmp_path / "vnet"))
    replay(load_scenario(DEMO), [str(capture)], outputs)
    nsg_blobs = sorted((tmp_path / "nsg").rglob("PT1H.json"))
    mac = "macAddress=" + json.loads(nsg_blobs[0].read_text())["records"][0]["macAddress"]
    assert [str(b.relative_to(tmp_path / "nsg")) for b in nsg_blobs] == [
        f"insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/"
        f"RESOURCEGROUPS/DATAPLANE/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-JUMP/y=2023/m=11/d=14/h={h}/"
        f"m=00/macAddress={mac[11:]}/PT1H.json" for h in ("22", "23")]
    assert "\n" not in nsg_blobs[0].read_text()
    vnet_blobs = sorted((tmp_path / "vnet").rglob("PT1H.json"))
    assert len(vnet_blobs) == 2 and all("insights-logs-flowlogflowevent/flowLogResourceID=" in str(b)
                                        for b in vnet_blobs)
    hours = [{r["time"][:13] for r in json.loads(b.read_text())["records"]} for b in nsg_blobs]
    assert hours == [{"2023-11-14T22"}, {"2023-11-14T23"}]


def test_icmp_flows_are_in_vnet_logs_only_and_an_icmp_error_counts_in_its_flow(tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP, UDP, IPerror, UDPerror
    request = ether() / IP(src=JUMP, dst="8.8.8.8") / UDP(sport=5353, dport=53)
    request.time = T0
    error = ether() / IP(src="8.8.8.8", dst=JUMP) / ICMP(type=3, code=3) / IPerror(src=JUMP, dst="8.8.8.8") / \
        UDPerror(sport=5353, dport=53)
    error.time = T0 + 0.1
    ping = ether() / IP(src=JUMP, dst="8.8.8.8") / ICMP(type=8, id=3)
    ping.time = T0 + 0.2
    capture = tmp_path / "icmp.pcap"
    wrpcap(str(capture), [request, error, ping])
    outputs = Outputs(flow_log=str(tmp_path / "nsg.json"), vnet_flow_log=str(tmp_path / "vnet.json"))
    replay(load_scenario(DEMO), [str(capture)], outputs)
    nsg = json.loads((tmp_path / "nsg.json").read_text())
    vnet = json.loads((tmp_path / "vnet.json").read_text())
    assert {fields[5] for _, _, fields in nsg_tuples(nsg)} == {"U"}
    assert {f[5] for _, f in vnet_tuples(vnet)} == {"17", "1"}
    dns_end = next(f for _, f in vnet_tuples(vnet) if f[5] == "17" and f[7] == "E")
    assert dns_end[9:13] == ["1", str(len(request)), "1", str(len(error))]


def _steady_traffic(path: Path, hours: float) -> None:
    """A short TCP connection every 10 s (SYN, SYN-ACK, RST) for `hours` of capture time."""
    template = [bytes(ether() / IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(sport=1024, dport=22, flags="S")),
                bytes(ether() / IP(src=JUMP, dst=OFFICE) / TCP(sport=22, dport=1024, flags="SA")),
                bytes(ether() / IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(sport=1024, dport=22, flags="R"))]
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(int(hours * 360)):
            port = struct.pack("!H", 1024 + i % 60000)
            for j, frame in enumerate(template):
                frame = frame[:34] + port + frame[36:] if j != 1 else frame[:36] + port + frame[38:]
                f.write(struct.pack("<IIII", int(T0) + i * 10, j * 1000, len(frame), len(frame)) + frame)


def _peak_memory_of_a_replay(capture: Path, outputs: Outputs, runs: int = 1) -> int:
    """The lowest of `runs` runs' peaks."""
    peaks = []
    for _ in range(runs):
        scenario = load_scenario(DEMO)
        gc.collect()
        tracemalloc.start()
        try:
            replay(scenario, [str(capture)], outputs)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks)


def _flow_log_memory(tmp_path: Path, hours: float) -> int:
    """Peak memory a replay needs for its flow logs: with them, less without them (the flow tables
    and caches of the dataplane fill up to their own bounds whatever is written). With them, the lower
    of two runs: in whole test sessions one now and then peaked 1.6 MB higher (never alone), something
    else's allocations falling into the traced window."""
    capture = tmp_path / f"{hours}h.pcap"
    _steady_traffic(capture, hours)
    without = _peak_memory_of_a_replay(capture, Outputs())
    with_logs = _peak_memory_of_a_replay(capture, Outputs(
        flow_log=str(tmp_path / f"{hours}-nsg.json"), vnet_flow_log=str(tmp_path / f"{hours}-vnet.json"),
        flow_log_dir=str(tmp_path / f"{hours}-dir")), runs=2)
    return with_logs - without


def test_flow_logs_stream_memory_does_not_grow_with_the_length_of_the_capture(tmp_path: Path) -> None:
    _flow_log_memory(tmp_path, 0.1)  # module-level caches warm up once
    one_hour = _flow_log_memory(tmp_path, 1)
    twelve_hours = _flow_log_memory(tmp_path, 12)
    assert twelve_hours < max(one_hour, 0) * 1.5 + 256 * 1024, (one_hour, twelve_hours)


def test_later_fragments_count_in_their_flow(tmp_path: Path) -> None:
    from scapy.layers.inet import UDP, fragment
    datagram = IP(src=JUMP, dst="8.8.8.8", id=77) / UDP(sport=5353, dport=53) / (b"x" * 3000)
    frames = [ether() / f for f in fragment(datagram, fragsize=1000)]
    for i, f in enumerate(frames):
        f.time = T0 + i * 0.01
    capture = tmp_path / "fragments.pcap"
    wrpcap(str(capture), frames)
    outputs = Outputs(vnet_flow_log=str(tmp_path / "vnet.json"))
    replay(load_scenario(DEMO), [str(capture)], outputs)
    vnet = json.loads((tmp_path / "vnet.json").read_text())
    end = next(f for _, f in vnet_tuples(vnet) if f[5] == "17" and f[7] == "E")
    assert len(frames) == 4
    assert end[9:13] == [str(len(frames)), str(sum(len(f) for f in frames)), "0", "0"]


def test_an_icmpv6_error_counts_in_the_flow_it_quotes(tmp_path: Path) -> None:
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import ICMPv6DestUnreach, IPerror6, IPv6, UDPerror
    web6 = "fd00:10:0:1::4"
    request = ether() / IPv6(src=web6, dst="2001:db8::53") / UDP(sport=5353, dport=53)
    request.time = T0
    error = ether() / IPv6(src="2001:db8::53", dst=web6) / ICMPv6DestUnreach(code=4) / \
        IPerror6(src=web6, dst="2001:db8::53") / UDPerror(sport=5353, dport=53)
    error.time = T0 + 0.1
    capture = tmp_path / "icmp6.pcap"
    wrpcap(str(capture), [request, error])
    outputs = Outputs(vnet_flow_log=str(tmp_path / "vnet.json"))
    replay(load_scenario(DEMO), [str(capture)], outputs)
    vnet = json.loads((tmp_path / "vnet.json").read_text())
    end = next(f for _, f in vnet_tuples(vnet) if f[5] == "17" and f[7] == "E")
    assert end[9:13] == ["1", str(len(request)), "1", str(len(error))]


# Tuples as a minute closes them: IPv4 and IPv6, TCP, UDP, ICMP and others, every state, with or without
# counters, counters past 64 bits, times from 0 to far beyond 2**63 milliseconds.
flow_tuples = st.builds(
    flowlog._Tuple, st.one_of(st.floats(0, 1e17, allow_nan=False), st.sampled_from([1_700_000_000.0, 0.0, 59.999])),
    st.just("nsg-web"), st.just("AllowWeb"), st.just("web"), st.sampled_from([6, 17, 1, 58, 50]),
    st.sampled_from([4, 4, 6]), st.integers(0, 2**32 - 1), st.integers(0, 65535), st.integers(0, 2**32 - 1),
    st.integers(0, 65535), st.sampled_from(["I", "O"]), st.sampled_from(["B", "C", "E", "D"]),
    st.one_of(st.none(), st.tuples(*[st.integers(0, 2**70)] * 4)))


# The same, from a few NSGs, rules and NICs, so that tuples of a group follow each other or alternate.
grouped_tuples = st.builds(lambda t, nsg, rule, nic: t._replace(nsg=nsg, rule=rule, nic=nic), flow_tuples,
                           st.sampled_from(["nsg-web", "nsg-app"]), st.sampled_from(["AllowWeb", "DenyAll"]),
                           st.sampled_from(["web", "app", "db"]))
GROUPINGS = [(flowlog._NIC, flowlog._NSG, flowlog._RULE), (flowlog._NSG, (flowlog._NIC, len), flowlog._RULE),
             (flowlog._RULE,)]
"""The VNet format's keys; the NSG format's, with a function of the NIC (len: "web" and "app" share one,
as two NICs' made-up MACs may); one field."""


IPV6_TUPLE = tuple(flowlog._Tuple(1_700_000_000.0, "nsg", "rule", "nic", 6, 6, 1, 443, 2, 50123, "I", "B", None))
"""A tuple C does not write: Python's `write` does."""


@pytest.mark.skipif(flowlog.group_texts is None, reason="the C extension was not built (no compiler at install)")
@given(st.lists(grouped_tuples, max_size=30), st.booleans(), st.sampled_from(GROUPINGS))
def test_flow_log_tuples_grouped_in_c_are_those_python_groups(tuples, vnet, fields) -> None:
    plain = [tuple(t) for t in tuples]
    in_c = flowlog.grouped_texts(plain, vnet, fields)
    with mock.patch.object(flowlog, "group_texts", None):
        in_python = flowlog.grouped_texts(plain, vnet, fields)
    assert list(in_c.items()) == list(in_python.items())


@pytest.mark.skipif(flowlog.group_texts is None, reason="the C extension was not built (no compiler at install)")
def test_flow_log_tuples_of_ipv4_are_written_in_c() -> None:
    t = tuple(flowlog._Tuple(1_700_000_000.5, "nsg", "rule", "nic", 6, 4, 0x0A000004, 443, 0xCB007107, 50123, "I",
                             "E", (1, 2, 3, 4)))

    def refused(t: tuple) -> str:
        raise AssertionError(f"Python was asked to write {t}")

    assert flowlog.group_texts([t], False, (flowlog._NSG,), flowlog.PROTOCOL_LETTERS, refused) == \
        {("nsg",): ["1700000000,10.0.0.4,203.0.113.7,443,50123,T,I,A,E,1,2,3,4"]}
    assert flowlog.group_texts([t], True, (flowlog._NSG,), None, refused) == \
        {("nsg",): ["1700000000500,10.0.0.4,203.0.113.7,443,50123,6,I,E,NX,1,2,3,4"]}


@pytest.mark.skipif(flowlog.group_texts is None, reason="the C extension was not built (no compiler at install)")
@pytest.mark.parametrize("tuples, fields, error", [
    ([("not", "a", "flow-log tuple")], (flowlog._NSG,), TypeError),
    ([IPV6_TUPLE], (flowlog._NSG,), ZeroDivisionError),
    ([IPV6_TUPLE], ((flowlog._NIC, lambda nic: 1 / 0),), ZeroDivisionError),
    ([IPV6_TUPLE], (13,), ValueError),
    ([IPV6_TUPLE], (), TypeError),
], ids=["not a tuple of 13", "write raises", "a key function raises", "no such field", "no key"])
def test_grouping_in_c_refuses_what_is_not_a_flow_log_tuple_and_passes_on_what_python_raised(tuples, fields, error):
    with pytest.raises(error):
        flowlog.group_texts(tuples, True, fields, None, lambda t: 1 / 0)
