"""The dataplane's fast paths decide as its plain paths do.

`Dataplane.process` takes shortcuts: a new flow that touches one NIC untranslated asks the policy
for that NIC alone (`_new_at_nic`), busy flows skip the NIC lookups (`Conntrack.recent`), and where the C
extension is built, the packets of busy flows pass in C (`_fastpath.c`) and flow records live in C.
Here a dataplane with the shortcuts and one without them see the same random packets and must agree
on every verdict, every record and every counter; and every new flow's verdict agrees with
`Policy.decide_key`, the stateless answer.
"""

from __future__ import annotations

import gc
import gzip
import itertools
import json
import math
import os
import struct
import threading
from pathlib import Path
from unittest import mock

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.utils import PcapNgWriter, rdpcap

from dataplane import Dataplane, NetworkSecurityGroup, load_scenario, scenario_from_document
from dataplane.conntrack import FlowRecord, PureFlowRecord, TcpState
from dataplane.decode import Packet, decode_frame
from dataplane.pipeline import FastPath
from dataplane.policy import Policy
from dataplane.errors import CaptureError
from dataplane.flowlog import FlowLogs
from dataplane.replay import Capture, Outputs, Update, count_hits, left_to_python, replay

from datafiles import SHARED_PCAPS, scenario_frames, shared_captures

needs_c = pytest.mark.skipif(FastPath is None, reason="the C extension was not built (no compiler at install)")

ASG = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/applicationSecurityGroups/"


def rule(name, priority, direction, access, protocol, dport, source="*", destination="*", **extra):
    data = {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": destination,
            "destinationPortRange": dport}
    for side in ("source", "destination"):
        if f"{side}Asg" in extra:
            del data[f"{side}AddressPrefix"]
            data[f"{side}ApplicationSecurityGroups"] = [{"id": ASG + extra[f"{side}Asg"]}]
    return data


SCENARIO = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.2.0.0/16"], "subnets": [
        {"name": "front", "prefix": "10.2.1.0/24", "nsg": "nsg-front"},
        {"name": "back", "prefix": "10.2.2.0/24", "nsg": "nsg-back"},
        {"name": "open", "prefix": "10.2.3.0/24"}]}],
    "network_interfaces": [
        {"name": "web1", "subnet": "vnet/front", "private_ips": ["10.2.1.4"], "application_security_groups": ["Web"],
         "nsg": "nsg-web"},
        {"name": "web2", "subnet": "vnet/front", "private_ips": ["10.2.1.5"], "application_security_groups": ["Web"]},
        {"name": "db", "subnet": "vnet/back", "private_ips": ["10.2.2.4"], "application_security_groups": ["Db"]},
        {"name": "jump", "subnet": "vnet/open", "private_ips": ["10.2.3.4"], "public_ip": "20.2.3.4"}],
    "load_balancers": [{"name": "lb", "frontend_ip": "20.2.1.100", "rules": [
        {"protocol": "Tcp", "frontend_port": 80, "backend_port": 8080, "backend_pool": ["web1", "web2"]}]}],
    "network_security_groups": [
        {"name": "nsg-front", "security_rules": [
            rule("AllowHttp", 100, "Inbound", "Allow", "Tcp", "8080", source="Internet"),
            rule("DenyUdp", 200, "Inbound", "Deny", "Udp", "*")]},
        {"name": "nsg-web", "security_rules": [
            rule("AllowHttpNic", 100, "Inbound", "Allow", "Tcp", "8080"),
            rule("DenyOutUdp", 100, "Outbound", "Deny", "Udp", "*", destination="Internet")]},
        {"name": "nsg-back", "security_rules": [
            rule("AllowSql", 100, "Inbound", "Allow", "Tcp", "1433", sourceAsg="Web", destinationAsg="Db"),
            rule("DenySql", 110, "Inbound", "Deny", "*", "1433"),
            rule("DenyInternetOut", 100, "Outbound", "Deny", "*", "*", destination="Internet")]}],
}

HOSTS = [int.from_bytes(bytes(map(int, ip.split("."))), "big") for ip in (
    "10.2.1.4", "10.2.1.5", "10.2.2.4", "10.2.3.4", "20.2.3.4", "20.2.1.100", "203.0.113.9", "10.2.9.9")]
PORTS = [80, 8080, 1433, 22, 40000, 40001]
packets = st.builds(
    lambda proto, src, dst, sport, dport, flags: Packet(
        4, proto, src, dst, sport if proto != 1 else 0, dport if proto != 1 else 0, flags if proto == 6 else 0,
        8 if proto == 1 else -1, 0 if proto == 1 else -1, 0, 60, 0, 0, False, False, (), None),
    st.sampled_from([6, 17, 1]), st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.sampled_from(PORTS),
    st.sampled_from(PORTS), st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x04]))


def plain(dp: Dataplane) -> Dataplane:
    """The same dataplane without its shortcuts: every new flow through `_new`, no recent-flow cache.
    Build it with `accelerated=False` to keep the C path out too."""
    dp._new_at_nic = lambda p, ts, key, nic, direction, fragment_alone: dp._new(p, ts, key, fragment_alone)
    process = dp.process

    def process_without_recent(packet, ts, linktype=1):
        dp.conntrack.recent.clear()
        return process(packet, ts, linktype)

    dp.process = process_without_recent
    return dp


def fields(verdict) -> tuple:
    return (verdict.decision, verdict.reason, verdict.direction, verdict.nic, verdict.nsg, verdict.rule,
            verdict.state, verdict.translated)


def frame(packet: Packet, payload: int = 0) -> bytes:
    """The Ethernet frame of a decoded IPv4 packet (checksums left zero: nothing here reads them)."""
    proto = packet.proto
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", packet.sport, packet.dport, 0, 0, 0x50, packet.tcp_flags, 1024, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", packet.sport, packet.dport, 8 + payload, 0)
    else:
        l4 = struct.pack("!BBHHH", packet.icmp_type, packet.icmp_code, 0, packet.icmp_id, 1)
    l4 += bytes(payload)
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(l4), packet.ip_id, 0, 64, proto, 0, packet.src, packet.dst)
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip + l4


def records(dp: Dataplane) -> list[tuple]:
    return sorted((nic, r.key, r.initiator, r.state, r.expires, r.bucket, r.outcome, r.packets_out, r.bytes_out,
                   r.packets_in, r.bytes_in, r.nat) for nic, r in dp.flows())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(packets, st.floats(0, 150)), min_size=1, max_size=60))
def test_the_fast_paths_give_the_verdicts_of_the_plain_paths(sequence) -> None:
    fast = Dataplane(scenario_from_document(SCENARIO))
    slow = plain(Dataplane(scenario_from_document(SCENARIO)))
    now = 0.0
    for packet, dt in sequence:
        now += dt
        assert fields(fast.process(packet, now)) == fields(slow.process(packet, now)), packet


# A few conversations, packets both ways, mostly short gaps: flows get busy (the C path's case), some
# close, some idle out. Some peers are a NIC's public IP or a load-balancer frontend (their packets and
# replies are translated), and many packets are the first of a new second, when the tables are swept.
conversations = st.lists(st.tuples(st.sampled_from([6, 6, 17]),
                                   st.sampled_from([HOSTS[2], HOSTS[4], HOSTS[5], HOSTS[6], HOSTS[7]]),
                                   st.sampled_from([HOSTS[0], HOSTS[1], HOSTS[2], HOSTS[4], HOSTS[5]]),
                                   st.sampled_from([40000, 80]), st.sampled_from([1433, 8080, 80, 22])),
                         min_size=1, max_size=3)
steps = st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.sampled_from([0x02, 0x12, 0x10, 0x10, 0x18, 0x11, 0x04]),
                           st.sampled_from([0.0, 0.001, 0.01, 0.2, 0.5, 0.9, 1.0, 9.0, 125.0, 250.0]),
                           st.integers(0, 1400)),
                 min_size=1, max_size=60)


@needs_c
@settings(max_examples=120, deadline=None)
@given(conversations, steps)
def test_the_c_path_leaves_the_verdicts_records_and_counters_of_the_python_path(flows, sequence) -> None:
    """Frames in, as a capture gives them: the C path decodes them and passes the packets of busy flows."""
    fast = Dataplane(scenario_from_document(SCENARIO))
    slow = Dataplane(scenario_from_document(SCENARIO), accelerated=False)
    now = 0.0
    for which, reply, flags, dt, payload in sequence:
        proto, client, server, client_port, port = flows[which % len(flows)]
        src, dst, sport, dport = (server, client, port, client_port) if reply else (client, server, client_port, port)
        packet = Packet(4, proto, src, dst, sport, dport, flags if proto == 6 else 0, -1, -1, 0, 0, 0, 0, False,
                        False, (), None)
        now += dt
        data = frame(packet, payload)
        assert fast.process(data, now) == slow.process(data, now), packet
    assert records(fast) == records(slow)
    assert fast.stats == slow.stats


@needs_c
def test_a_connection_from_outside_to_one_nic_passes_in_c_from_its_second_packet() -> None:
    """Both directions of an untranslated flow at one NIC are remembered, in C, at its second packet."""
    dp = Dataplane(scenario_from_document(SCENARIO))
    client, web = HOSTS[6], HOSTS[0]
    syn = Packet(4, 6, client, web, 40000, 8080, 0x02, -1, -1, 0, 54, 0, 0, False, False, (), None)
    syn_ack = syn._replace(src=web, dst=client, sport=8080, dport=40000, tcp_flags=0x12)
    ack, data = syn._replace(tcp_flags=0x10), syn_ack._replace(tcp_flags=0x18)
    for i, p in enumerate([syn, syn_ack] + [ack, data] * 10):
        assert dp.process(frame(p), i * 0.01).reason == ("rules" if i == 0 else "flow")
    assert dp._fast.packets == 21
    assert (dp.stats.packets, dp.stats.allowed) == (22, 22), "the C path's packets are folded into the counters"


@needs_c
def test_a_connection_between_two_nics_passes_in_c_from_its_reply() -> None:
    """A flow opened untranslated at two NICs is remembered at its first packet: the C path cannot find a
    flow's records at two NICs itself, and its reply would otherwise go through Python to be remembered."""
    dp = Dataplane(scenario_from_document(SCENARIO))
    web, db = HOSTS[0], HOSTS[2]
    syn = Packet(4, 6, web, db, 40000, 1433, 0x02, -1, -1, 0, 54, 0, 0, False, False, (), None)
    syn_ack = syn._replace(src=db, dst=web, sport=1433, dport=40000, tcp_flags=0x12)
    ack, data = syn._replace(tcp_flags=0x10), syn_ack._replace(tcp_flags=0x18)
    verdicts = [dp.process(frame(p), i * 0.01) for i, p in enumerate([syn, syn_ack] + [ack, data] * 10)]
    assert [v.reason for v in verdicts] == ["rules"] + ["flow"] * 21
    assert verdicts[0].rule == "AllowSql" and verdicts[-1].nic == "web1"
    assert dp._fast.packets == 21


@needs_c
@pytest.mark.parametrize("client, server, port", [(2, 0, 8080), (0, 2, 1433), (1, 2, 22), (2, 3, 22), (3, 0, 8080)],
                         ids=["db-web1-allowed", "web1-db-by-asg", "web2-db-denied", "db-jump-no-nsg", "jump-web1"])
def test_a_connection_between_two_nics_decided_in_c_is_decided_as_the_python_path_decides(client, server, port):
    """Its first packet decided in C (not the first of a second, where Python sweeps first), then every
    later packet both ways, through the flow's records at both NICs or denied again."""
    fast = Dataplane(scenario_from_document(SCENARIO))
    slow = Dataplane(scenario_from_document(SCENARIO), accelerated=False)
    syn = Packet(4, 6, HOSTS[client], HOSTS[server], 40000, port, 0x02, -1, -1, 0, 54, 0, 0, False, False, (), None)
    syn_ack = syn._replace(src=syn.dst, dst=syn.src, sport=port, dport=40000, tcp_flags=0x12)
    ack, data = syn._replace(tcp_flags=0x10), syn_ack._replace(tcp_flags=0x18)
    fast.advance(0.0)
    slow.advance(0.0)
    for i, p in enumerate([syn, syn_ack, ack, data, ack, data._replace(tcp_flags=0x11), ack._replace(tcp_flags=0x11)]):
        assert fast.process(frame(p), 0.1 + i * 0.01) == slow.process(frame(p), 0.1 + i * 0.01), i
    assert fast._fast.created in (0, 2) and fast._fast.packets == 7, "every packet was decided in C"
    assert records(fast) == records(slow)
    assert fast.stats == slow.stats


@needs_c
def test_flow_records_in_c_behave_as_the_python_records() -> None:
    key = (6, 4, 20, 443, 10, 50000)
    records = [cls(key, True, TcpState.ESTABLISHED, 12.5, "outcome", None) for cls in (FlowRecord, PureFlowRecord)]
    for record in records:
        record.bucket = 13
        record.packets_out += 2
        record.bytes_in += 1500
        record.state = TcpState.FIN_INITIATOR
    c, python = records
    for name in ("key", "reversed", "state", "expires", "bucket", "outcome", "packets_out", "bytes_out",
                 "packets_in", "bytes_in", "nat", "initiator"):
        assert getattr(c, name) == getattr(python, name), name
    assert c.initiator == (6, 4, 10, 50000, 20, 443)
    assert repr(c) == repr(python)


@needs_c
def test_flow_records_in_c_are_invisible_to_the_garbage_collector() -> None:
    """Half a million live flows must not make every collection walk half a million objects."""
    assert not gc.is_tracked(FlowRecord((6, 4, 1, 2, 3, 4), False, TcpState.SYN_SENT, 1.0, None))


ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pcaps" / "demo"
DEMO_CAPTURES = sorted(p.name for p in DEMO.glob("*.pcap"))


def capture_and_scenario(name: str) -> tuple[Path, Path]:
    if name in DEMO_CAPTURES:
        return DEMO / name, DEMO / "scenario.yaml"
    return SHARED_PCAPS / name, ROOT / "tests" / "fixtures" / "shared-captures" / "scenario.yaml"


@needs_c
@pytest.mark.parametrize("name", DEMO_CAPTURES + shared_captures(), ids=str)
def test_every_capture_is_decided_alike_by_the_c_and_the_python_path(name) -> None:
    capture, scenario = capture_and_scenario(name)
    fast = Dataplane(load_scenario(scenario))
    slow = Dataplane(load_scenario(scenario), accelerated=False)
    frames = Capture(str(capture)).frames() if name in DEMO_CAPTURES else scenario_frames(capture)
    for ts, linktype, data, _ in frames:
        assert fast.process(data, ts, linktype) == slow.process(data, ts, linktype), ts
    assert records(fast) == records(slow)
    assert fast.stats == slow.stats


REPLAYS = {name: ([name], []) for name in DEMO_CAPTURES} | {
    "all demo captures merged": (DEMO_CAPTURES, []),
    "rule removal with an update at 120 s": (["rule-removal.pcap"], [f"120={DEMO / 'nsg-jump-locked.json'}"])}


@pytest.mark.parametrize("name", REPLAYS, ids=str)
def test_a_replay_without_per_packet_outputs_counts_what_one_with_them_counts(name, tmp_path) -> None:
    """Without outputs the replay lets the C path pass busy flows' packets in batches, stopping for
    updates and for every other packet."""
    names, updates = REPLAYS[name]
    captures = [str(DEMO / n) for n in names]
    bare = replay(load_scenario(DEMO / "scenario.yaml"), captures, updates=[Update.parse(u) for u in updates])
    full = replay(load_scenario(DEMO / "scenario.yaml"), captures, Outputs(verdicts=str(tmp_path / "v.jsonl")),
                  updates=[Update.parse(u) for u in updates])
    assert bare.to_json() == full.to_json()


def _as_pcapng(source: Path, target: Path) -> None:
    with PcapNgWriter(str(target)) as out:
        for packet in rdpcap(str(source)):
            out.write(packet)


@pytest.mark.parametrize("form", ["pcapng", "gzip", "pipe"])
@pytest.mark.parametrize("name", DEMO_CAPTURES, ids=str)
def test_a_replay_reads_every_capture_form_into_the_c_path_as_it_reads_pcap(name, form, tmp_path) -> None:
    """The C path walks the reader's buffer: a mapped file, or a window refilled from gzip or a pipe."""
    source = DEMO / name
    if form == "pcapng":
        capture = tmp_path / "capture.pcapng"
        _as_pcapng(source, capture)
    elif form == "gzip":
        capture = tmp_path / "capture.pcap.gz"
        capture.write_bytes(gzip.compress(source.read_bytes()))
    else:
        capture = tmp_path / "capture.fifo"
        os.mkfifo(capture)
        threading.Thread(target=lambda: capture.write_bytes(source.read_bytes()), daemon=True).start()
    scenario = load_scenario(DEMO / "scenario.yaml")
    expected = replay(scenario, [str(source)], Outputs(verdicts=str(tmp_path / "v.jsonl"))).to_json()
    assert replay(load_scenario(DEMO / "scenario.yaml"), [str(capture)]).to_json() == expected


def _pcap_of(timed: list[tuple[float, bytes]], cut: int) -> bytes:
    records = b"".join(struct.pack("<IIII", int(t), round(t % 1 * 1e6), len(f), len(f)) + f for t, f in timed)
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + records[:len(records) - cut]


def _pcapng_of(timed: list[tuple[float, bytes]], cut: int) -> bytes:
    blocks = [struct.pack("<IIIHHQI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, 0xFFFFFFFFFFFFFFFF, 28),
              struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20)]
    for t, f in timed:
        padded = f + bytes(-len(f) % 4)
        micros = round(t * 1e6)
        blocks.append(struct.pack("<IIIIIII", 6, 32 + len(padded), 0, micros >> 32, micros & 0xFFFFFFFF, len(f), len(f))
                      + padded + struct.pack("<I", 32 + len(padded)))
    data = b"".join(blocks)
    return data[:len(data) - cut]


def timed_frames(flows: list[tuple], sequence: list[tuple]) -> list[tuple[float, bytes]]:
    """The frames of random conversations (`conversations`, `steps`), each with its time."""
    now, timed = 1_700_000_000.0, []
    for which, reply, flags, dt, payload in sequence:
        proto, client, server, client_port, port = flows[which % len(flows)]
        src, dst, sport, dport = (server, client, port, client_port) if reply else (client, server, client_port, port)
        now += dt
        timed.append((now, frame(Packet(4, proto, src, dst, sport, dport, flags if proto == 6 else 0, -1, -1, 0, 0, 0,
                                        0, False, False, (), None), payload)))
    return timed


@needs_c
@settings(max_examples=60, deadline=None)
@given(conversations, steps, st.sampled_from(["pcap", "pcapng"]), st.integers(0, 40))
def test_the_c_walk_of_a_capture_counts_what_the_per_packet_path_counts(tmp_path_factory, flows, sequence, form, cut):
    """Random conversations (public IPs, frontends, second boundaries, flows closing and idling out),
    written as a capture that may break off mid-record: a replay that lets the C code walk the buffer
    sums up what one deciding every packet in Python sums up, error included."""
    timed = timed_frames(flows, sequence)
    folder = tmp_path_factory.mktemp("walk")
    capture = folder / f"random.{form}"
    capture.write_bytes((_pcap_of if form == "pcap" else _pcapng_of)(timed, cut))
    summaries = []
    for outputs in (Outputs(), Outputs(verdicts=str(folder / "v.jsonl"))):
        try:
            summaries.append(replay(scenario_from_document(SCENARIO), [str(capture)], outputs).to_json())
        except CaptureError as e:
            summaries.append(e.summary.to_json())  # type: ignore[attr-defined]
    assert summaries[0] == summaries[1]


PLATFORM_HOST = 0xA83F8110  # 168.63.129.16: the policy treats it apart, so the C path leaves it to Python


def walked_in_c(doc: dict, capture: Path) -> tuple[Dataplane, dict]:
    """A replay's loop without outputs: C walks the buffer deciding what it can, hits only; Python the rest."""
    dp, hits = Dataplane(scenario_from_document(doc)), {}
    reader = Capture(str(capture))
    try:
        for ts, linktype, data, _ in left_to_python(reader.frames(), reader, dp.pass_records, None, hits,
                                                    lambda: math.inf, lambda *taken: None):
            count_hits(hits, [dp.process(data, ts, linktype)])
    finally:
        reader.close()
    return dp, hits


def decided_in_python(doc: dict, capture: Path) -> tuple[Dataplane, dict]:
    dp, hits = Dataplane(scenario_from_document(doc), accelerated=False), {}
    reader = Capture(str(capture))
    try:
        for ts, linktype, data, _ in reader.frames():
            count_hits(hits, [dp.process(data, ts, linktype)])
    finally:
        reader.close()
    return dp, hits


# Peers outside the scenario (the Internet, the VNet beyond its NICs, the platform) and NICs opening
# flows to NICs behind two NSGs, one or none, on ports some rules allow and some deny (25: SMTP, which
# the policy treats apart), with room for a few flows per NIC or for all.
new_flows = st.lists(st.tuples(st.sampled_from([6, 6, 17]),
                               st.sampled_from([HOSTS[6], HOSTS[7], PLATFORM_HOST, HOSTS[0], HOSTS[2]]),
                               st.sampled_from(HOSTS[:4]), st.sampled_from([40000, 25, 80]),
                               st.sampled_from([8080, 1433, 25, 22])),
                     min_size=1, max_size=3)
# Most gaps short, so that most first packets fall within a second the tables were swept in: the C path's.
dense_steps = st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x04]),
                                 st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.2, 0.9, 9.0, 125.0]), st.integers(0, 1400)),
                       min_size=1, max_size=60)


@needs_c
@settings(max_examples=60, deadline=None)
@given(new_flows, dense_steps, st.sampled_from([1, 2, 1_000]))
def test_new_flows_decided_in_c_leave_the_records_counters_and_hits_of_the_python_path(tmp_path_factory, flows,
                                                                                     sequence, max_flows):
    timed = timed_frames(flows, sequence)
    capture = tmp_path_factory.mktemp("decide") / "random.pcap"
    capture.write_bytes(_pcap_of(timed, 0))
    doc = SCENARIO | {"max_flows_per_nic": max_flows}
    fast, fast_hits = walked_in_c(doc, capture)
    slow, slow_hits = decided_in_python(doc, capture)
    assert records(fast) == records(slow)
    assert fast.stats == slow.stats
    assert fast_hits == slow_hits


def _syn_capture(path: Path, client_port: int) -> Path:
    """A SYN to web1 after a frame the reader hands to Python (the first: the C walk starts after it)."""
    stray = Packet(4, 17, HOSTS[6], 0xC6336401, 53, 53, 0, -1, -1, 0, 0, 0, 0, False, False, (), None)
    syn = Packet(4, 6, HOSTS[6], HOSTS[0], client_port, 8080, 0x02, -1, -1, 0, 0, 0, 0, False, False, (), None)
    path.write_bytes(_pcap_of([(1_700_000_000.0, frame(stray)), (1_700_000_000.0, frame(syn))], 0))
    return path


@needs_c
def test_a_rule_added_to_the_nsg_object_decides_the_next_new_flow_the_c_path_decides(tmp_path) -> None:
    """The C path keeps each NIC's chain of NSGs and the results met; a changed NSG makes it build them again."""
    dp, hits = Dataplane(scenario_from_document(SCENARIO)), {}

    def walk(capture: Path) -> None:
        reader = Capture(str(capture))
        for ts, linktype, data, _ in left_to_python(reader.frames(), reader, dp.pass_records, None, hits,
                                                    lambda: math.inf, lambda *taken: None):
            assert dp.process(data, ts, linktype).reason == "not-in-scenario"
        reader.close()

    walk(_syn_capture(tmp_path / "before.pcap", 40000))
    dp.nsg("nsg-web").replace_rule(rule("AllowHttpNic", 200, "Inbound", "Allow", "Tcp", "8080"))
    dp.nsg("nsg-web").add_rule(rule("DenyHttp", 150, "Inbound", "Deny", "Tcp", "8080"))
    walk(_syn_capture(tmp_path / "after.pcap", 40001))
    assert (dp._fast.allowed, dp._fast.denied, dp._fast.created) == (1, 1, 1), "both SYNs were decided in C"
    assert hits == {("nsg-front", "AllowHttp"): 2, ("nsg-web", "AllowHttpNic"): 1, ("nsg-web", "DenyHttp"): 1}


def _raw_pcap_of(timed: list[tuple[int, int, bytes]]) -> bytes:
    """Records with their seconds and microseconds as given."""
    records = b"".join(struct.pack("<IIII", sec, usec, len(f), len(f)) + f for sec, usec, f in timed)
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + records


@needs_c
@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999)),
                          st.tuples(st.sampled_from([0, 1, 2, 2**30, 2**31 - 1, 2**31, 1_700_000_000]),
                                    st.sampled_from([0, 1, 5, 500_000, 999_999]))),
                min_size=1, max_size=30))
def test_the_c_walk_writes_each_time_as_python_does(tmp_path_factory, times) -> None:
    """A verdict line's time is repr(ts), which the C walk writes without Python's digit search for whole
    microseconds from 1 s to 2**31 s: times in and out of that range, one connection's packets."""
    times = sorted(times)
    syn, ack = (frame(Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 8080, flags, -1, -1, 0, 0, 0, 0, False, False, (), None), 0)
                for flags in (0x02, 0x10))
    folder = tmp_path_factory.mktemp("times")
    capture = folder / "times.pcap"
    capture.write_bytes(_raw_pcap_of([(sec, usec, syn if i == 0 else ack) for i, (sec, usec) in enumerate(times)]))
    alone, with_denied = _verdict_files(SCENARIO, capture, folder)
    assert alone == with_denied


@needs_c
@settings(max_examples=40, deadline=None)
@given(st.lists(st.builds(lambda second, ns: second * 10**9 + ns, st.sampled_from([0, 1, 1000, 2**30, 1_700_000_000, 2**31]),
                          st.integers(0, 10**9 - 1)), min_size=1, max_size=30))
def test_the_c_walk_writes_times_in_nanoseconds_as_python_does(tmp_path_factory, times) -> None:
    """pcapng with nanosecond times (if_tsresol 9): many are no whole microsecond, and go through Python's repr."""
    syn, ack = (frame(Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 8080, flags, -1, -1, 0, 0, 0, 0, False, False, (), None), 0)
                for flags in (0x02, 0x10))
    blocks = [struct.pack("<IIIHHQI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, 0xFFFFFFFFFFFFFFFF, 28),
              struct.pack("<IIHHIHHBxxxHHI", 1, 32, 1, 0, 65535, 9, 1, 9, 0, 0, 32)]
    for i, ns in enumerate(sorted(times)):
        f = syn if i == 0 else ack
        padded = f + bytes(-len(f) % 4)
        blocks.append(struct.pack("<IIIIIII", 6, 32 + len(padded), 0, ns >> 32, ns & 0xFFFFFFFF, len(f), len(f))
                      + padded + struct.pack("<I", 32 + len(padded)))
    folder = tmp_path_factory.mktemp("nanoseconds")
    capture = folder / "times.pcapng"
    capture.write_bytes(b"".join(blocks))
    alone, with_denied = _verdict_files(SCENARIO, capture, folder)
    assert alone == with_denied


def _verdict_files(scenario: dict | Path, capture: Path, folder: Path) -> tuple[bytes, bytes]:
    """The verdict lines of a replay writing them alone (the C walk writes those of the packets it passes)
    and of one also writing the denied packets (every verdict from `Dataplane.process`, in Python)."""
    files = []
    for name, extra in (("alone", {}), ("with-denied", {"denied": str(folder / "denied.pcap")})):
        loaded = load_scenario(scenario) if isinstance(scenario, Path) else scenario_from_document(scenario)
        try:
            replay(loaded, [str(capture)], Outputs(verdicts=str(folder / f"{name}.jsonl"), **extra))
        except CaptureError:
            pass
        files.append((folder / f"{name}.jsonl").read_bytes())
    return files[0], files[1]


@pytest.mark.parametrize("name", DEMO_CAPTURES, ids=str)
def test_the_verdict_lines_written_in_c_are_those_python_writes_on_every_demo_capture(name, tmp_path) -> None:
    alone, with_denied = _verdict_files(DEMO / "scenario.yaml", DEMO / name, tmp_path)
    assert alone == with_denied and alone.count(b"\n") == len(list(Capture(str(DEMO / name)).frames()))


@needs_c
@settings(max_examples=40, deadline=None)
@given(conversations, steps, st.sampled_from(["pcap", "pcapng"]), st.integers(0, 40))
def test_the_verdict_lines_written_in_c_are_those_python_writes(tmp_path_factory, flows, sequence, form, cut) -> None:
    """Random conversations, written as a capture that may break off mid-record: the same lines, up to the break."""
    folder = tmp_path_factory.mktemp("lines")
    capture = folder / f"random.{form}"
    capture.write_bytes((_pcap_of if form == "pcap" else _pcapng_of)(timed_frames(flows, sequence), cut))
    alone, with_denied = _verdict_files(SCENARIO, capture, folder)
    assert alone == with_denied


def _written_alone_and_by_python(scenario: dict | Path, capture: Path | list[Path], folder: Path, updates=(),
                                 **files: str) -> tuple[list, list]:
    """Outputs the C path takes part in (flow logs and the denied packets, which hear of new flows only; the
    allowed packets, whose frames it writes) written alone, and written beside the translated packets
    (every packet through `Dataplane.process`)."""
    written = []
    captures = [str(c) for c in capture] if isinstance(capture, list) else [str(capture)]
    for run, extra in (("alone", {}), ("by-python", {"translated": str(folder / "translated.pcap")})):
        loaded = load_scenario(scenario) if isinstance(scenario, Path) else scenario_from_document(scenario)
        outputs = Outputs(**{option: str(folder / f"{run}-{name}") for option, name in files.items()}, **extra)
        try:
            replay(loaded, captures, outputs, updates=[Update.parse(u) for u in updates])
        except CaptureError:
            pass
        written.append([(folder / f"{run}-{name}").read_bytes() for name in files.values()])
    return written[0], written[1]


def _flow_log_files(scenario: dict | Path, capture: Path | list[Path], folder: Path, updates=()) -> tuple[list, list]:
    return _written_alone_and_by_python(scenario, capture, folder, updates, flow_log="nsg.json",
                                        vnet_flow_log="vnet.json")


def _flow_log_records_of_python(doc: dict, capture: Path) -> list[dict]:
    """The NSG and VNet flow log records of replay's loop with every packet in Python (no C path at all)."""
    records: list[dict] = []
    logs = FlowLogs(lambda kind, record: records.append(record))
    dp, last = Dataplane(scenario_from_document(doc), listener=logs, accelerated=False), None
    reader = Capture(str(capture))
    try:
        for ts, linktype, data, _ in reader.frames():
            logs.verdict(dp.process(data, ts, linktype))
            last = ts
    except CaptureError:
        pass
    finally:
        reader.close()
    if last is not None:
        dp.close(last)
    logs.close()
    return json.loads(json.dumps(records))


@needs_c
@settings(max_examples=40, deadline=None)
@given(new_flows, dense_steps)
def test_flows_decided_in_c_are_logged_as_the_python_path_logs_them(tmp_path_factory, flows, sequence) -> None:
    """New flows from outside to a NIC and between NICs, decided in C whether walked or processed one by one:
    the flow logger hears of each record made there as of those Python makes."""
    folder = tmp_path_factory.mktemp("c-logs")
    capture = folder / "random.pcap"
    capture.write_bytes(_pcap_of(timed_frames(flows, sequence), 0))
    replay(scenario_from_document(SCENARIO), [str(capture)], Outputs(flow_log=str(folder / "nsg.json"),
                                                                      vnet_flow_log=str(folder / "vnet.json")))
    written = [json.loads((folder / name).read_text())["records"] for name in ("nsg.json", "vnet.json")]
    python = _flow_log_records_of_python(SCENARIO, capture)
    assert written[0] + written[1] == [r for r in python if "systemId" in r] + [r for r in python if "systemId" not in r]


@needs_c
def test_a_flow_denied_in_c_is_logged_before_the_flows_the_walk_decides_after_it(tmp_path) -> None:
    """A walk that decides a new flow stops after it, so its deny tuple comes before the next flow's begin."""
    stray = Packet(4, 17, HOSTS[6], 0xC6336401, 53, 53, 0, -1, -1, 0, 0, 0, 0, False, False, (), None)
    ssh = Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 22, 0x02, -1, -1, 0, 0, 0, 0, False, False, (), None)
    web = Packet(4, 6, HOSTS[6], HOSTS[0], 40001, 8080, 0x02, -1, -1, 0, 0, 0, 0, False, False, (), None)
    capture = tmp_path / "deny-then-allow.pcap"
    capture.write_bytes(_pcap_of([(1_700_000_000.0 + dt, frame(p)) for dt, p in ((0, stray), (0.1, ssh), (0.2, web))], 0))
    replay(scenario_from_document(SCENARIO), [str(capture)], Outputs(flow_log=str(tmp_path / "nsg.json")))
    written = json.loads((tmp_path / "nsg.json").read_text())["records"]
    assert [r["resourceId"].rsplit("/", 1)[1] for r in written] == ["NSG-FRONT", "NSG-WEB"]
    assert written == [r for r in _flow_log_records_of_python(SCENARIO, capture) if "systemId" in r]


@pytest.mark.parametrize("name", REPLAYS, ids=str)
def test_the_flow_logs_of_a_replay_writing_them_alone_are_those_of_every_packet_through_python(name, tmp_path):
    """Every demo capture, the captures merged (the frames walked in C one by one) and an update mid-capture."""
    names, updates = REPLAYS[name]
    alone, by_python = _flow_log_files(DEMO / "scenario.yaml", [DEMO / n for n in names], tmp_path, updates)
    assert alone == by_python


@needs_c
@settings(max_examples=40, deadline=None)
@given(conversations, steps, st.sampled_from(["pcap", "pcapng"]), st.integers(0, 40))
def test_the_flow_logs_of_random_conversations_written_alone_are_those_of_every_packet_through_python(
        tmp_path_factory, flows, sequence, form, cut) -> None:
    """Flows begin, carry packets across minutes, are denied, idle out and close; the capture may break off."""
    folder = tmp_path_factory.mktemp("logs")
    capture = folder / f"random.{form}"
    capture.write_bytes((_pcap_of if form == "pcap" else _pcapng_of)(timed_frames(flows, sequence), cut))
    alone, by_python = _flow_log_files(SCENARIO, capture, folder)
    assert alone == by_python


@needs_c
def test_a_minute_that_ends_between_two_packets_of_a_second_closes_with_the_packets_before_it(tmp_path) -> None:
    """The sweep of idle flows runs once a second; the minute's C tuple must still stop at the minute."""
    minute = 1_700_000_040.0
    client, server = (HOSTS[6], 40000), (HOSTS[0], 8080)
    packets = [(-0.5, client, server, 0x02), (-0.45, server, client, 0x12), (-0.4, client, server, 0x10),
               (-0.2, client, server, 0x18), (0.2, server, client, 0x18), (30.0, client, server, 0x18)]
    timed = [(minute + dt, frame(Packet(4, 6, src[0], dst[0], src[1], dst[1], flags, -1, -1, 0, 0, 0, 0, False, False,
                                        (), None), 100)) for dt, src, dst, flags in packets]
    capture = tmp_path / "boundary.pcap"
    capture.write_bytes(_pcap_of(timed, 0))
    alone, by_python = _flow_log_files(SCENARIO, capture, tmp_path)
    assert alone == by_python


PACKETS_OUT = {"denied": {"denied": "denied.pcap"}, "allowed": {"allowed": "allowed.pcap"},
               "allowed and denied": {"allowed": "allowed.pcap", "denied": "denied.pcap"},
               "allowed and flow logs": {"allowed": "allowed.pcap", "flow_log": "nsg.json"}}


@pytest.mark.parametrize("name", REPLAYS, ids=str)
@pytest.mark.parametrize("outputs", PACKETS_OUT, ids=str)
def test_the_packets_a_replay_writes_by_decision_are_those_of_every_packet_through_python(name, outputs, tmp_path):
    names, updates = REPLAYS[name]
    alone, by_python = _written_alone_and_by_python(DEMO / "scenario.yaml", [DEMO / n for n in names], tmp_path,
                                                    updates, **PACKETS_OUT[outputs])
    assert alone == by_python


@needs_c
@settings(max_examples=30, deadline=None)
@given(conversations, steps, st.sampled_from(list(PACKETS_OUT)), st.sampled_from(["pcap", "pcapng"]),
       st.integers(0, 40))
def test_the_packets_of_random_conversations_written_by_decision_are_those_of_every_packet_through_python(
        tmp_path_factory, flows, sequence, outputs, form, cut) -> None:
    """Captures in both forms, which may break off mid-record: the C walk writes pcap records as `PcapWriter`."""
    folder = tmp_path_factory.mktemp("packets")
    capture = folder / f"random.{form}"
    capture.write_bytes((_pcap_of if form == "pcap" else _pcapng_of)(timed_frames(flows, sequence), cut))
    alone, by_python = _written_alone_and_by_python(SCENARIO, capture, folder, **PACKETS_OUT[outputs])
    assert alone == by_python


@needs_c
@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_allowed_packets_keep_their_length_on_the_wire(order, tmp_path) -> None:
    """Frames whose last 4 bytes (the Ethernet checksum) the capture did not keep: the C walk writes each
    record's length on the wire as Python does, from a capture of either byte order."""
    syn = Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 8080, 0x02, -1, -1, 0, 0, 0, 0, False, False, (), None)
    ack = syn._replace(tcp_flags=0x10)
    reply = syn._replace(src=HOSTS[0], dst=HOSTS[6], sport=8080, dport=40000, tcp_flags=0x12)
    records = []
    for i, p in enumerate([syn, reply, ack, ack, reply, ack, reply, ack]):
        data = frame(p, 100)
        records.append(struct.pack(order + "IIII", 1_700_000_000, 1000 * i + 1, len(data), len(data) + 4) + data)
    capture = tmp_path / "no-checksums.pcap"
    capture.write_bytes(struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records))
    alone, by_python = _written_alone_and_by_python(SCENARIO, capture, tmp_path, allowed="allowed.pcap")
    assert alone == by_python and struct.unpack_from("<I", alone[0], 24 + 12)[0] == len(frame(syn, 100)) + 4


@needs_c
def test_a_new_flow_the_c_walk_allows_is_written_with_the_allowed_packets(tmp_path) -> None:
    stray = Packet(4, 17, HOSTS[6], 0xC6336401, 53, 53, 0, -1, -1, 0, 0, 0, 0, False, False, (), None)
    syn = Packet(4, 6, HOSTS[6], HOSTS[0], 40001, 8080, 0x02, -1, -1, 0, 0, 0, 0, False, False, (), None)
    capture = tmp_path / "allowed-syn.pcap"
    capture.write_bytes(_pcap_of([(1_700_000_000.0, frame(stray)), (1_700_000_000.1, frame(syn))], 0))
    alone, by_python = _written_alone_and_by_python(SCENARIO, capture, tmp_path, allowed="allowed.pcap")
    assert alone == by_python and alone[0].endswith(frame(syn))


def _reports(scenario: dict | Path, capture: Path | list[Path], folder: Path, updates=(), workers: int = 1) -> list:
    """The report's collector (its totals) of a replay writing the report alone, where the C walk counts the
    packets of known flows (`Tally(by_minute=True)`), and beside the translated packets: every packet
    through `Dataplane.process` and `Traffic.verdict`."""
    kept = []
    captures = [str(c) for c in capture] if isinstance(capture, list) else [str(capture)]
    with mock.patch("dataplane.report.render_replay_report", lambda summary, traffic, path, **_: kept.append(traffic)):
        for extra in ({}, {"translated": str(folder / "translated.pcap")}):
            loaded = load_scenario(scenario) if isinstance(scenario, Path) else scenario_from_document(scenario)
            try:
                replay(loaded, captures, Outputs(report=str(folder / "report.html"), **extra),
                       updates=[Update.parse(u) for u in updates], workers=workers)
            except CaptureError:
                pass
    return [(t.first_ts, t.last_ts, dict(t.counts), dict(t.rule_packets), t.rule_access,
             [(f.id, f.key, f.first_seen, f.last_seen, f.packets, f.bytes, f.allowed, f.denied, f.decision, f.nsg,
               f.rule, f.denied_by, f.evaluations) for f in t.flows]) for t in kept]


@pytest.mark.parametrize("name", REPLAYS, ids=str)
def test_the_report_of_a_replay_writing_it_alone_is_that_of_every_packet_through_python(name, tmp_path) -> None:
    names, updates = REPLAYS[name]
    alone, by_python = _reports(DEMO / "scenario.yaml", [DEMO / n for n in names], tmp_path, updates)
    assert alone == by_python


@needs_c
@settings(max_examples=25, deadline=None)
@given(conversations, steps, st.sampled_from(["pcap", "pcapng"]), st.integers(0, 40), st.sampled_from([1, 2]))
def test_the_report_of_random_conversations_counted_in_c_is_that_of_every_packet_through_python(
        tmp_path_factory, flows, sequence, form, cut, workers) -> None:
    """Flows across minutes, translated, denied, idling out and starting again on the same ports; one worker or
    two (whose collectors keep each packet's place)."""
    folder = tmp_path_factory.mktemp("report")
    capture = folder / f"random.{form}"
    capture.write_bytes((_pcap_of if form == "pcap" else _pcapng_of)(timed_frames(flows, sequence), cut))
    alone, by_python = _reports(SCENARIO, capture, folder, workers=workers)
    assert alone == by_python


@needs_c
@pytest.mark.parametrize("form", ["pcap", "pcapng"])
def test_packets_counted_in_c_fall_in_the_minute_python_puts_them_in(form, tmp_path) -> None:
    """Times a hair before, at and after minute boundaries, and times going back: into the minute before, and
    before the first packet."""
    syn = Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 8080, 0x02, -1, -1, 0, 0, 0, 0, False, False, (), None)
    ack, reply = syn._replace(tcp_flags=0x10), syn._replace(src=HOSTS[0], dst=HOSTS[6], sport=8080, dport=40000,
                                                            tcp_flags=0x12)
    base = 1_700_000_040.0
    times = [-0.5, -0.4, -0.6, -0.000001, 0.0, 0.000001, 59.999999, 60.0, 30.0, 120.000001, 119.999999]
    timed = [(base + dt, frame(p, 10 * i)) for i, (dt, p) in enumerate(zip(times, [syn, reply] + [ack, reply] * 5))]
    capture = tmp_path / f"minutes.{form}"
    capture.write_bytes((_pcap_of if form == "pcap" else _pcapng_of)(timed, 0))
    alone, by_python = _reports(SCENARIO, capture, tmp_path)
    assert alone == by_python and len({minute for minute, *_ in alone[2]}) == 4


@needs_c
@settings(max_examples=15, deadline=None)
@given(conversations, steps, st.integers(2, 3), st.sampled_from([1, 2]))
def test_the_report_of_random_conversations_in_several_captures_counted_in_c_is_that_of_python(
        tmp_path_factory, flows, sequence, files, workers) -> None:
    """The frames dealt out to several captures, which the replay merges by time (`pass_frames`), in one
    process or two."""
    folder = tmp_path_factory.mktemp("merged")
    timed, captures = timed_frames(flows, sequence), []
    for n in range(files):
        captures.append(folder / f"part{n}.pcap")
        captures[-1].write_bytes(_pcap_of(timed[n::files], 0))
    alone, by_python = _reports(SCENARIO, captures, folder, workers=workers)
    assert alone == by_python


@needs_c
def test_a_report_of_several_captures_passes_the_packets_of_known_flows_in_c(tmp_path, monkeypatch) -> None:
    processed = []
    process = Dataplane.process
    monkeypatch.setattr(Dataplane, "process", lambda self, *args: processed.append(args) or process(self, *args))
    captures = [str(DEMO / "web.pcap"), str(DEMO / "rule-removal.pcap")]
    replay(load_scenario(DEMO / "scenario.yaml"), captures, Outputs(report=str(tmp_path / "report.html")))
    assert 0 < len(processed) < sum(len(list(Capture(c).frames())) for c in captures) / 2


@needs_c
def test_connections_counted_before_the_collector_hears_of_them_are_counted_once_it_does(tmp_path) -> None:
    """Forty connections in one walk: the tally grows as it watches them, closing what each counted before
    the collector heard of any (`Traffic.take_counts` keeps such counts until it does)."""
    stray = Packet(4, 17, HOSTS[6], HOSTS[0], 53, 53, 0, -1, -1, 0, 0, 0, 0, False, False, (), None)
    packets = [stray]
    for port in range(40000, 40040):
        syn = Packet(4, 6, HOSTS[6], HOSTS[0], port, 8080, 0x02, -1, -1, 0, 0, 0, 0, False, False, (), None)
        packets += [syn, syn._replace(src=HOSTS[0], dst=HOSTS[6], sport=8080, dport=port, tcp_flags=0x12)]
    packets += [p._replace(tcp_flags=0x10) for p in packets[1::2]]
    capture = tmp_path / "forty.pcap"
    capture.write_bytes(_pcap_of([(1_700_000_000.05 + i / 1000, frame(p)) for i, p in enumerate(packets)], 0))
    alone, by_python = _reports(SCENARIO, capture, tmp_path)
    assert alone == by_python and [flow[4] for flow in alone[5][1:]] == [3] * 40


@needs_c
@pytest.mark.parametrize("output", ["flow_log", "denied", "allowed", "report"])
def test_a_replay_writing_flow_logs_or_packets_by_decision_alone_passes_the_packets_of_known_flows_in_c(
        output, tmp_path, monkeypatch) -> None:
    """Only new flows, the first packet of each minute or second, and what C leaves reach Python."""
    processed = []
    process = Dataplane.process
    monkeypatch.setattr(Dataplane, "process", lambda self, *args: processed.append(args) or process(self, *args))
    capture = DEMO / "web.pcap"
    replay(load_scenario(DEMO / "scenario.yaml"), [str(capture)], Outputs(**{output: str(tmp_path / "out")}))
    assert 0 < len(processed) < len(list(Capture(str(capture)).frames())) / 2


@pytest.mark.parametrize("accelerated", [True, False], ids=["c", "python"])
def test_an_nsg_put_in_a_new_dict_of_the_scenarios_nsgs_decides_the_next_new_flow(accelerated) -> None:
    dp = Dataplane(scenario_from_document(SCENARIO), accelerated=accelerated)
    syn = Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 8080, 0x02, -1, -1, 0, 54, 0, 0, False, False, (), None)
    dp.advance(0.0)
    assert dp.process(frame(syn), 0.1).rule == "AllowHttpNic"
    dp.scenario.network_security_groups = {**dp.scenario.network_security_groups,
                                           "nsg-web": NetworkSecurityGroup("nsg-web")}
    assert dp.process(frame(syn._replace(sport=40001)), 0.2).rule == "DenyAllInBound"


def test_the_c_extension_is_built_where_ci_asks_for_it() -> None:
    if os.environ.get("DATAPLANE_REQUIRE_C") != "1":
        pytest.skip("DATAPLANE_REQUIRE_C=1 is set by .ci/run, where a compiler is known to be present")
    assert FastPath is not None, "pip install built the package without dataplane/_fastpath.c"


@needs_c
def test_the_c_decoder_gives_the_packets_of_the_python_decoder() -> None:
    dp = Dataplane(scenario_from_document(SCENARIO))
    for proto, flags, payload in itertools.product((6, 17), (0x02, 0x10, 0x19), (0, 1, 700)):
        p = Packet(4, proto, HOSTS[6], HOSTS[7], 1234, 80, flags if proto == 6 else 0, -1, -1, 0, 0, 77, 0, False,
                   False, (), None)
        data = frame(p, payload)
        decoded = dp._fast.process(data, 0.0)
        if len(data) >= 54:  # shorter frames go to the Python decoder, as decode_frame's own fast path does
            assert decoded == decode_frame(data)
        else:
            assert decoded is None


# Frames built as the C decoder's common case (Ethernet, IPv4 without options or fragments, TCP or
# UDP), of any protocol and size, then perhaps cut short, padded, or with a few bytes overwritten.
built_frames = st.builds(
    lambda proto, flags, src, dst, sport, dport, ip_id, payload: frame(
        Packet(4, proto, src, dst, sport, dport, flags, 8, 0, sport, 0, ip_id, 0, False, False, (), None), payload),
    st.sampled_from([6, 6, 17, 17, 1, 47]), st.integers(0, 255), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535),
    st.integers(0, 60))
edits = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=3)
unswept = Dataplane(scenario_from_document(SCENARIO))
"""Its first sweep is due, so its C path returns a frame's decoded packet as it is, changing nothing."""


@needs_c
@settings(max_examples=1000, deadline=None)
@given(built_frames, edits, st.integers(0, 100), st.binary(max_size=8))
def test_the_c_decoder_decodes_generated_frames_as_the_python_decoder(data, overwritten, kept, padding) -> None:
    common = data[23] in (6, 17) and len(data) >= 54 and not overwritten and kept >= len(data)
    for at, value in overwritten:
        if at < len(data):
            data = data[:at] + bytes([value]) + data[at + 1:]
    data = data[:kept] + padding
    decoded = unswept._fast.process(data, 0.0)
    if decoded is not None:
        assert decoded == decode_frame(data)
    else:
        assert not common, "the C decoder left a common frame to the Python decoder"


def test_every_new_flow_is_decided_as_policy_decide_key_decides_it() -> None:
    policy = Policy(scenario_from_document(SCENARIO))
    for proto, src, dst, dport in itertools.product((6, 17), HOSTS, HOSTS, PORTS):
        if src == dst:
            continue
        dp = Dataplane(scenario_from_document(SCENARIO))
        verdict = dp.process(Packet(4, proto, src, dst, 40000, dport, 0x02 if proto == 6 else 0, -1, -1, 0, 60, 0,
                                    0, False, False, (), None), 0.0)
        if verdict.decision == "Skip":
            continue
        decision = policy.decide_key((proto, 4, src, 40000, dst, dport))
        assert (verdict.decision, verdict.nsg, verdict.rule, verdict.reason) == \
            (decision.decision, decision.nsg, decision.rule, decision.reason), (proto, src, dst, dport)


def test_a_rule_added_to_the_nsg_object_itself_decides_the_next_new_flow() -> None:
    """The per-packet path caches each NIC's compiled chain; any NSG change must reach it."""
    dp = Dataplane(scenario_from_document(SCENARIO))
    syn = Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 8080, 0x02, -1, -1, 0, 54, 0, 0, False, False, (), None)
    assert dp.process(frame(syn), 0.0).rule == "AllowHttpNic"
    dp.nsg("nsg-web").replace_rule(rule("AllowHttpNic", 200, "Inbound", "Allow", "Tcp", "8080"))
    dp.nsg("nsg-web").add_rule(rule("DenyHttp", 150, "Inbound", "Deny", "Tcp", "8080"))
    assert dp.process(frame(syn._replace(sport=40001)), 1.0).rule == "DenyHttp"


def test_an_nsg_deployed_in_place_of_another_decides_the_next_new_flow() -> None:
    dp = Dataplane(scenario_from_document(SCENARIO))
    syn = Packet(4, 6, HOSTS[6], HOSTS[0], 40000, 8080, 0x02, -1, -1, 0, 54, 0, 0, False, False, (), None)
    assert dp.process(frame(syn), 0.0).rule == "AllowHttpNic"
    dp.replace_nsg(NetworkSecurityGroup("nsg-web"), now=1.0)
    assert dp.process(frame(syn._replace(sport=40001)), 1.0).rule == "DenyAllInBound"


@needs_c
def test_the_c_path_times_each_nics_tcp_flows_out_by_its_vnets_flow_timeout() -> None:
    """The C path reads each NIC's TCP timeouts once per table: flows at NICs of VNets with different
    FlowTimeoutInMinutes keep their own, as in the Python path."""
    spec = {"virtual_networks": [
        {"name": f"vnet{minutes}", "address_space": [f"10.{minutes}.0.0/16"], "flow_timeout_minutes": minutes,
         "subnets": [{"name": "s", "prefix": f"10.{minutes}.1.0/24"}]} for minutes in (4, 30)],
        "network_interfaces": [{"name": f"vm{minutes}", "subnet": f"vnet{minutes}/s",
                                "private_ips": [f"10.{minutes}.1.4"]} for minutes in (4, 30)]}
    client = HOSTS[6]
    servers = [int.from_bytes(bytes((10, minutes, 1, 4)), "big") for minutes in (4, 30)]
    dataplanes = [Dataplane(scenario_from_document(spec)), Dataplane(scenario_from_document(spec), accelerated=False)]
    for dp in dataplanes:
        for i, server in enumerate(servers):
            syn = Packet(4, 6, client, server, 40000, 443, 0x02, -1, -1, 0, 60, 0, 0, False, False, (), None)
            replies = [syn._replace(src=server, dst=client, sport=443, dport=40000, tcp_flags=0x12),
                       syn._replace(tcp_flags=0x10), syn._replace(tcp_flags=0x18)]
            for k, p in enumerate([syn, *replies, *replies[1:] * 3]):
                dp.process(frame(p), 1.0 + i * 0.1 + k * 0.001)
    fast, slow = (records(dp) for dp in dataplanes)
    assert fast == slow
    assert sorted(round(r[4] - 1.0) for r in fast) == [240, 1800]
