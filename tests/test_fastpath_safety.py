"""The C fast path is safe: it frees what it holds, outlives the Python calls it makes, and answers
misuse with an exception, never a crash of the interpreter.

Misuse that crashed the interpreter runs in a child interpreter, so a crash fails one test, not pytest.
"""

from __future__ import annotations

import gc
import math
import os
import struct
import subprocess
import sys
import textwrap
import weakref
from array import array
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane import Dataplane, scenario_from_document
from dataplane.classifier import Rules
from dataplane.conntrack import LATEST_TIME, FlowRecord, FlowTable, PureFlowRecord, TcpState
from dataplane.decode import Packet
from dataplane.errors import CaptureError, DataplaneError
from dataplane.pipeline import CLOSED, TCP_MOVES_BY_FLAGS, FastPath, RecentTable, Verdict
from dataplane.replay import Tally
from dataplane.replay import Capture, Frame, NumberedLines, Outputs, PcapWriter, pcap_record, replay
from dataplane.rules import Direction
from dataplane.shards import Shards, shard_filter_of

from test_pipeline_fast_path import HOSTS, SCENARIO, frame

needs_c = pytest.mark.skipif(FastPath is None, reason="the C extension was not built (no compiler at install)")
pytestmark = needs_c

CLIENT, WEB = HOSTS[6], HOSTS[0]
SYN = Packet(4, 6, CLIENT, WEB, 40000, 8080, 0x02, -1, -1, 0, 54, 0, 0, False, False, (), None)
SYN_ACK = SYN._replace(src=WEB, dst=CLIENT, sport=8080, dport=40000, tcp_flags=0x12)
ACK = SYN._replace(tcp_flags=0x10)
RST = SYN._replace(tcp_flags=0x04)
TESTS = Path(__file__).resolve().parent


def in_child(code: str) -> subprocess.CompletedProcess:
    """Run code in a child interpreter that has this file's names, so that a crash fails one test."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    script = "from test_fastpath_safety import *\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


def busy_dataplane() -> Dataplane:
    """A dataplane with one connection (client to web1:8080) in its recent-flow table: until 1.1 s,
    when its next sweep is due, the connection's packets pass in C."""
    dp = Dataplane(scenario_from_document(SCENARIO))
    for i, p in enumerate([SYN, SYN_ACK, ACK]):
        dp.process(frame(p), 0.1 + i * 0.01)
    return dp


def test_a_deleted_dataplane_is_collected() -> None:
    dp = busy_dataplane()
    alive = weakref.ref(dp)
    del dp
    gc.collect()
    assert alive() is None


def test_the_c_path_moves_an_earlier_deadline_in_the_timing_wheel_as_reschedule_does() -> None:
    """A RST moves the flow's deadline earlier than its bucket: the C path files the record under its
    new second itself, as FlowTable.reschedule would."""
    dp = busy_dataplane()
    table = dp.conntrack.tables["web1"]
    passed = dp._fast.packets
    dp.process(frame(RST), 0.15)
    assert dp._fast.packets == passed + 1, "the RST passed in C"
    record = next(iter(table))
    pure = FlowTable(table.timeouts, table.max_flows)
    copy = PureFlowRecord(record.key, record.reversed, record.state, record.expires, record.outcome)
    pure.reschedule(copy)
    assert record.bucket == copy.bucket == math.ceil(record.expires)
    assert record in table.wheel[record.bucket] and record.bucket in table.due


def fast_path_arguments() -> dict:
    """What Dataplane gives its FastPath, by name, for tests that change one of them."""
    return {"recent": RecentTable(32768), "moves": TCP_MOVES_BY_FLAGS, "closed": CLOSED, "packet_type": Packet,
            "verdict_type": Verdict, "nics": {}, "new_at_nic": busy_dataplane()._new_at_nic,
            "inbound": Direction.INBOUND, "translated": frozenset(), "publics": {},
            "new_translated": busy_dataplane()._new_translated}


def test_pass_frames_given_a_list_instead_of_an_iterator_raises() -> None:
    child = in_child("""
        try:
            busy_dataplane().pass_frames([(0.5, 1, frame(ACK), 54)], 10.0, 4096)
        except TypeError as e:
            print("TypeError", e)
    """)
    assert (child.returncode, child.stdout[:10]) == (0, "TypeError "), child.stderr


@pytest.mark.parametrize("kind", ["packet_type", "verdict_type"])
def test_a_packet_or_verdict_type_that_is_not_a_tuple_is_refused(kind) -> None:
    arguments = fast_path_arguments()

    class NotATuple:
        _fields = arguments[kind]._fields

    with pytest.raises(TypeError, match=kind):
        FastPath(**arguments | {kind: NotATuple})


@pytest.mark.parametrize("kind", ["packet_type", "verdict_type"])
def test_a_packet_or_verdict_type_with_other_fields_than_the_c_path_fills_is_refused(kind) -> None:
    class Renamed(NamedTuple):
        first: int

    with pytest.raises(TypeError, match="_fields"):
        FastPath(**fast_path_arguments() | {kind: Renamed})


def test_an_uninitialised_fast_path_raises() -> None:
    child = in_child("""
        fast = FastPath.__new__(FastPath)
        for call in (lambda: fast.process(frame(ACK), 0.5), lambda: fast.pass_frames(iter([]), 1.0, 1)):
            try:
                call()
            except TypeError:
                print("TypeError")
    """)
    assert (child.returncode, child.stdout) == (0, "TypeError\nTypeError\n"), child.stderr


@pytest.mark.parametrize("name", ["key", "state", "outcome", "nat"])
def test_a_flow_record_field_cannot_be_deleted(name) -> None:
    record = busy_dataplane().conntrack.tables["web1"].by_key[(6, 4, WEB, 8080, CLIENT, 40000)]
    with pytest.raises(AttributeError, match=name):
        delattr(record, name)


def test_a_linktype_too_large_for_a_c_long_is_not_ethernet() -> None:
    dp = busy_dataplane()
    odd = (0.5, 2**64, frame(ACK), 54)
    assert dp.pass_frames(iter([odd]), 10.0, 4096) == (0, None, odd)


def test_a_flow_record_whose_deadline_is_not_a_number_raises_before_its_flag_is_read() -> None:
    class Flag:
        def __bool__(self):
            raise AssertionError("read with the deadline's error pending")

    with pytest.raises(TypeError):
        FlowRecord((6, 4, 1, 2, 3, 4), Flag(), TcpState.SYN_SENT, "soon", None)


def _moves_where(flags: int, change) -> list[dict]:
    moves = [dict(by_state) for by_state in TCP_MOVES_BY_FLAGS]
    change(moves[flags])
    return moves


@pytest.mark.parametrize("moves", [
    _moves_where(0x10, lambda by_state: by_state.pop(TcpState.CLOSING)),
    _moves_where(0x10, lambda by_state: by_state.update({TcpState.CLOSING: (TcpState.CLOSED,)})),
    _moves_where(0x10, lambda by_state: by_state.update({TcpState.CLOSING: (TcpState.CLOSED, "closed")})),
    _moves_where(0, lambda by_state: by_state.update({f"state {i}": by_state[TcpState.CLOSED] for i in range(2)})),
], ids=["a state missing", "a move not a pair", "a next state unknown", "more than eight states"])
def test_moves_that_do_not_map_every_flags_byte_s_states_to_pairs_of_them_are_refused(moves) -> None:
    with pytest.raises(TypeError, match="moves"):
        FastPath(**{**fast_path_arguments(), "moves": moves})


def test_a_flow_in_a_state_the_moves_do_not_know_is_refused_by_the_c_path() -> None:
    """The C path reads the moves by index: a state outside them goes to the dicts, which say what is wrong."""
    dp = busy_dataplane()
    for _, (legs, _, _) in dp.conntrack.recent.items():
        for leg in legs:
            leg[2].state = "listening"
    with pytest.raises(KeyError, match="without moves"):
        dp.process(frame(ACK), 0.3)


@pytest.mark.parametrize("packet", [ACK, SYN._replace(proto=17, dst=HOSTS[3], tcp_flags=0)], ids=["tcp", "udp"])
def test_a_timeout_that_is_not_a_number_raises(packet) -> None:
    dp = busy_dataplane()
    if packet.proto == 17:
        dp.process(frame(packet, 20), 0.2)
        dp.process(frame(packet._replace(src=packet.dst, dst=packet.src, sport=8080, dport=40000), 20), 0.21)
    with pytest.raises(TypeError):
        for key, (legs, translated, head) in dp.conntrack.recent.items():
            nic, leg_key, record, forward, timeouts, table = legs[0]
            timeouts = {state: "soon" for state in timeouts} if isinstance(timeouts, dict) else "soon"
            dp.conntrack.recent[key] = (((nic, leg_key, record, forward, timeouts, table),), translated, head)
        dp.process(frame(packet, 20), 0.3)


def test_a_recent_flow_whose_legs_hold_no_c_flow_record_is_refused() -> None:
    child = in_child("""
        dp = busy_dataplane()
        try:
            for key, (legs, translated, head) in dp.conntrack.recent.items():
                dp.conntrack.recent[key] = ((legs[0][:2] + ("not a record",) + legs[0][3:],), translated, head)
            dp.process(frame(ACK), 0.5)
        except TypeError:
            print("TypeError")
    """)
    assert (child.returncode, child.stdout) == (0, "TypeError\n"), child.stderr


def test_a_recent_flow_entry_of_another_shape_is_refused() -> None:
    child = in_child("""
        dp = busy_dataplane()
        try:
            for key, _ in dp.conntrack.recent.items():
                dp.conntrack.recent[key] = ("legs", None)
            dp.process(frame(ACK), 0.5)
        except TypeError:
            print("TypeError")
    """)
    assert (child.returncode, child.stdout) == (0, "TypeError\n"), child.stderr


def test_rules_of_another_shape_are_refused() -> None:
    fields = ([0], [0])
    with pytest.raises(ValueError):
        Rules([b"\x01" * 8], fields, fields, fields, fields, [0] * 256, 1, b"\x00")  # no set 1
    with pytest.raises(ValueError):
        Rules([b"\x01" * 4], fields, fields, fields, fields, [0] * 256, 0, b"\x00")  # a set of half a word
    with pytest.raises(ValueError):
        Rules([b"\x01" * 8], ([0, 0], [0, 0]), fields, fields, fields, [0] * 256, 0, b"\x00")  # starts not ascending
    with pytest.raises(ValueError):
        Rules.__new__(Rules).lookup(6, 1, 2, 3, 4)  # never initialised


def test_a_chain_or_decision_of_another_shape_is_refused() -> None:
    child = in_child("""
        from dataplane.conntrack import Other
        from dataplane.platform import PLATFORM_ADDRESSES
        from dataplane.pipeline import TCP_FIRST_STATES

        to_db = SYN._replace(src=HOSTS[0], dst=HOSTS[2], dport=1433)
        for packet, chain_of, memo_of, between_of in (
                (SYN, lambda nic, outbound: "chain", None, None),
                (SYN, None, lambda nic, slot: (True, "result", "Inbound", "web1"), None),
                (to_db, None, None, lambda source, destination, slots: (False, (1,) * 6, "Inbound", "db", "outcome"))):
            dp = Dataplane(scenario_from_document(SCENARIO))
            dp.advance(0.0)
            dp._fast.decide_new_flows(chain_of or dp._chain_for_c, memo_of or dp._decided_in_c,
                                      between_of or dp._decided_between_in_c, tuple(TCP_FIRST_STATES), Other.ACTIVE,
                                      PLATFORM_ADDRESSES)
            try:
                dp.process(frame(packet), 0.5)
            except TypeError:
                print("TypeError")
        try:
            dp._fast.decide_new_flows(None, None, None, (), None, set())
        except TypeError:
            print("TypeError")
    """)
    assert (child.returncode, child.stdout) == (0, "TypeError\n" * 4), child.stderr


@pytest.mark.parametrize("wheel, due, by_key", [([], [], {}), ({}, [1], {}), ({1: ["a record"]}, [1], {}),
                                                ({1: [FlowRecord((6, 4, 1, 2, 3, 4), False, TcpState.SYN_SENT, 0.5, None)]},
                                                 ["one"], {})],
                         ids=["wheel-not-a-dict", "bucket-missing", "not-a-record", "bucket-not-a-number"])
def test_ending_the_due_flows_of_a_table_of_another_shape_is_refused(wheel, due, by_key) -> None:
    class Table(NamedTuple):
        wheel: object
        due: list
        by_key: dict

    with pytest.raises(TypeError):
        busy_dataplane()._fast.expire_due(Table(wheel, due, by_key), 5.0)


def two_acks(tmp_path: Path, times: tuple[float, float]) -> str:
    """A capture of two ACKs of the busy connection: a walk takes the second (the reader reads the first)."""
    path = str(tmp_path / "two.pcap")
    writer = PcapWriter(path, 1)
    for ts in times:
        writer.write(ts, frame(ACK), len(frame(ACK)))
    writer.close()
    return path


@pytest.mark.parametrize("lines", ["lines", [], (bytearray(),), (bytearray(), b""), (b"", bytearray())], ids=repr)
def test_verdict_lines_kept_in_something_else_than_two_bytearrays_are_refused(lines, tmp_path) -> None:
    path = two_acks(tmp_path, (0.2, 0.3))
    dp = busy_dataplane()
    capture = Capture(path)
    next(capture.frames())  # the headers read: the walk goes on from the second record
    with pytest.raises(TypeError):
        capture.walk(dp.pass_records, 1.0, 10, None, False, lines, 0)


@pytest.mark.parametrize("frames", ["frames", ([], bytearray()), (bytearray(), b""), ([],), ((), bytearray())],
                         ids=repr)
def test_allowed_records_kept_in_something_else_than_a_list_or_two_bytearrays_are_refused(frames, tmp_path) -> None:
    dp = busy_dataplane()
    capture = Capture(two_acks(tmp_path, (0.2, 0.3)))
    next(capture.frames())
    with pytest.raises(TypeError):
        capture.walk(dp.pass_records, 1.0, 10, None, False, None, 0, frames)


@pytest.mark.parametrize("bad", ["a bytes type", "not a type", "no shard filter", "no bytearray", "no places"])
def test_reading_frames_in_c_refuses_a_frame_type_not_a_tuples_and_a_shard_without_its_places(bad, tmp_path) -> None:
    dp = busy_dataplane()
    shard = shard_filter_of(Shards.of(scenario_from_document(SCENARIO), 2), 0)
    rest = {"a bytes type": (bytes,), "not a type": ("Frame",), "no shard filter": (Frame, None, bytearray()),
            "no bytearray": (Frame, shard, "places"), "no places": (Frame, shard)}[bad]
    capture = Capture(two_acks(tmp_path, (0.2, 0.3)))
    next(capture.frames())
    with pytest.raises(TypeError):
        capture.walk(dp.read_frames, 1.0, 10, *rest)


def test_the_walk_appends_each_allowed_record_and_its_index(tmp_path) -> None:
    dp = busy_dataplane()
    capture = Capture(two_acks(tmp_path, (0.2, 0.3)))
    next(capture.frames())
    records, places = bytearray(), bytearray()
    assert capture.walk(dp.pass_records, 1.0, 10, None, False, None, 7, (records, places))[0] == 1
    assert array("q", places).tolist() == [7]
    assert records == pcap_record(0.3, frame(ACK), len(frame(ACK)))


def test_the_walk_appends_each_verdict_line_and_its_index(tmp_path) -> None:
    path = two_acks(tmp_path, (0.2, 0.3))
    dp = busy_dataplane()
    capture = Capture(path)
    next(capture.frames())
    with pytest.raises(TypeError):
        dp._fast.verdict_lines("not callable")
    lines = NumberedLines(bytearray(), bytearray())
    assert capture.walk(dp.pass_records, 1.0, 10, None, False, lines, 7)[0] == 1
    assert array("q", lines.indexes).tolist() == [7]
    assert lines.text.startswith(b'{"index": 7, "ts": 0.3, "flow": "tcp ') and lines.text.count(b"\n") == 1


def test_a_walk_after_lines_turn_tab_separated_writes_them_so_for_flows_it_wrote_in_json_before(tmp_path) -> None:
    dp = busy_dataplane()
    capture = Capture(acks(tmp_path, [0.2, 0.25, 0.5]))
    next(capture.frames())
    lines = NumberedLines(bytearray(), bytearray())
    capture.walk(dp.pass_records, 1.0, 1, None, False, lines, 1)
    dp.tab_separated_lines()
    capture.walk(dp.pass_records, 1.0, 1, None, False, lines, 2)
    json_line, tsv_line = bytes(lines.text).decode().splitlines()
    assert json_line.startswith('{"index": 1, "ts": 0.25, ')
    assert tsv_line == "2\t0.5\ttcp 203.0.113.9:40000 > 10.2.1.4:8080\tInbound\tweb1\tAllow\tnsg-web\t" \
                       "AllowHttpNic\tflow\testablished\t\t\t\t"


def test_whatifs_walk_refuses_what_it_cannot_use(tmp_path) -> None:
    """A flow must be a list of six items or more when watched and when counted; `pass_pair` takes a Tally,
    a callable and another dataplane's C path."""
    path = two_acks(tmp_path, (0.2, 0.3))
    child = in_child(f"""
        from dataplane.whatif import Tally
        tally, flow = Tally(), ["flow", None, 0.0, 0.0, 0, 0]
        for bad in ("flow", [0, 0]):
            try:
                tally.watch((6, 4, CLIENT, 40000, WEB, 8080), bad)
            except TypeError:
                print("TypeError")
        tally.watch((6, 4, CLIENT, 40000, WEB, 8080), flow)
        del flow[2:]
        one, two = busy_dataplane(), busy_dataplane()
        for other, counts, noted in ((two, {{}}, print), (two, tally, None), (one, tally, print), (two, tally, print)):
            capture = Capture({path!r})
            next(capture.frames())  # the headers read: the walk goes on from the second record
            try:
                capture.walk(one.walk_with(other), math.inf, 10, None, counts, noted, (set(), {{}}, {{}}, {{}}))
            except TypeError:
                print("TypeError")
    """)
    assert (child.returncode, child.stdout) == (0, "TypeError\n" * 6), child.stderr


def acks(tmp_path: Path, times: list[float], extra: int = 0) -> str:
    """A capture of ACKs of the busy connection, each `extra` bytes longer on the wire than captured."""
    path = str(tmp_path / "acks.pcap")
    writer = PcapWriter(path, 1)
    for ts in times:
        writer.write(ts, frame(ACK), len(frame(ACK)) + extra)
    writer.close()
    return path


KEY = (6, 4, CLIENT, 40000, WEB, 8080)


def test_the_reports_walk_counts_the_packets_of_a_watched_flow_with_their_length_on_the_wire(tmp_path):
    dp, tally = busy_dataplane(), Tally(by_minute=True)
    tally.watch(KEY, "flow")
    capture = Capture(acks(tmp_path, [0.2, 0.25, 0.5, 0.75], extra=4))
    next(capture.frames())
    assert capture.walk(dp.pass_records, 0.6, 10, None, False, None, 0, None, tally)[0] == 2
    assert tally.taken(False) == []  # nothing closed yet: the minute may go on
    assert tally.taken(True) == [("flow", 0, 2, 2 * (len(frame(ACK)) + 4), 0.25, 0.5)]
    assert tally.taken(True) == []


def test_the_reports_walk_stops_at_a_flow_the_tally_does_not_watch(tmp_path) -> None:
    dp, tally = busy_dataplane(), Tally(by_minute=True)
    tally.watch(KEY[:2] + (CLIENT, 40001) + KEY[4:], "another flow")
    capture = Capture(acks(tmp_path, [0.2, 0.3]))
    next(capture.frames())
    assert capture.walk(dp.pass_records, 1.0, 10, None, False, None, 0, None, tally)[0] == 0
    assert dp.stats.packets == 3  # the ACK was left to Python, not passed


def test_the_reports_walk_decides_a_new_flow_and_counts_its_next_packets_through_a_placeholder(tmp_path) -> None:
    """The flow comes back with its frame's length on the wire and its place; its next packets count to a
    placeholder the collector fills (`Traffic.decided_in_c`)."""
    dp, tally = Dataplane(scenario_from_document(SCENARIO)), Tally(by_minute=True)
    path = str(tmp_path / "connection.pcap")
    writer = PcapWriter(path, 1)
    for ts, p in ((0.1, ACK), (0.2, SYN), (0.25, SYN_ACK), (0.5, ACK)):
        writer.write(ts, frame(p), len(frame(p)) + 4)
    writer.close()
    capture = Capture(path)
    next(capture.frames())
    dp.advance(0.1)
    taken, _, decided = capture.walk(dp.pass_records, 1.0, 10, None, False, None, 5, None, tally)
    (verdict, wirelen, at, placeholder), = decided
    assert (taken, verdict.decision, wirelen, at, placeholder) == (3, "Allow", len(frame(SYN)) + 4, 5, [None])
    placeholder[0] = "the connection"
    assert tally.taken(True) == [(["the connection"], 0, 2, len(frame(SYN_ACK)) + len(frame(ACK)) + 8, 0.25, 0.5)]


def test_a_flow_watched_anew_keeps_what_was_counted_to_what_was_watched_before(tmp_path) -> None:
    dp, tally = busy_dataplane(), Tally(by_minute=True)
    tally.watch(KEY, "before")
    capture = Capture(acks(tmp_path, [0.2, 0.3, 0.4, 0.5]))
    next(capture.frames())
    assert capture.walk(dp.pass_records, 1.0, 2, None, False, None, 0, None, tally)[0] == 2
    tally.watch((6, 4, WEB, 8080, CLIENT, 40000), "after")  # the same flow, the other way round
    assert capture.walk(dp.pass_records, 1.0, 10, None, False, None, 0, None, tally)[0] == 1
    assert [(watched, packets) for watched, _, packets, *_ in tally.taken(True)] == [("before", 2), ("after", 1)]


def test_a_packet_of_another_minute_closes_what_its_flow_counted_in_the_minute_before(tmp_path) -> None:
    dp, tally = busy_dataplane(), Tally(by_minute=True)
    tally.watch(KEY, "flow")
    dp.advance(59.5)
    capture = Capture(acks(tmp_path, [59.5, 59.75, 59.875, 60.125, 60.25]))
    next(capture.frames())
    assert capture.walk(dp.pass_records, 61.0, 10, None, False, None, 0, None, tally)[0] == 4
    assert tally.taken(False) == [("flow", 0, 2, 2 * len(frame(ACK)), 59.75, 59.875)]
    assert tally.taken(True) == [("flow", 1, 2, 2 * len(frame(ACK)), 60.125, 60.25)]


def test_the_report_s_walk_of_merged_frames_counts_watched_flows_and_stops_at_others() -> None:
    """`pass_frames` with a tally: a watched flow's packets pass with their lengths on the wire; the first
    packet of a flow nobody watches comes back for Python."""
    dp, tally = busy_dataplane(), Tally(by_minute=True)
    tally.watch(KEY, "flow")
    other = ACK._replace(sport=40001)
    frames = iter([(0.2, 1, frame(ACK), 100), (0.25, 1, frame(SYN_ACK), 90), (0.3, 1, frame(other), 80)])
    passed, last, stopped = dp.pass_frames(frames, 1.0, 10, tally)
    assert (passed, last, stopped) == (2, 0.25, (0.3, 1, frame(other), 80))
    assert tally.taken(True) == [("flow", 0, 2, 190, 0.2, 0.25)]
    assert dp.pass_frames(iter([(0.35, 1, frame(ACK), 100)]), 1.0, 10, Tally(by_minute=True))[0] == 0  # known, unwatched


def test_the_report_s_walk_of_merged_frames_refuses_frames_without_their_length_and_other_tallies() -> None:
    dp = busy_dataplane()
    for frames, tally in (([(0.2, 1, frame(ACK))], Tally(by_minute=True)), ([(0.2, 1, frame(ACK), 54)], Tally()),
                          ([(0.2, 1, frame(ACK), 54)], "tally")):
        with pytest.raises(TypeError):
            dp.pass_frames(iter(frames), 1.0, 10, tally)


def test_the_reports_tally_and_whatifs_are_not_interchangeable(tmp_path) -> None:
    """`pass_records` takes a tally by minute, `pass_pair` whatif's; `taken` is the report's; a Tally's kind is
    set once."""
    by_minute, changed = Tally(by_minute=True), Tally()
    dp = busy_dataplane()
    capture = Capture(acks(tmp_path, [0.2, 0.3]))
    next(capture.frames())
    for bad in (changed, "tally"):
        with pytest.raises(TypeError):
            capture.walk(dp.pass_records, 1.0, 10, None, False, None, 0, None, bad)
    with pytest.raises(TypeError):
        capture.walk(dp.walk_with(busy_dataplane()), 1.0, 10, None, by_minute, print, (set(), {}, {}, {}))
    with pytest.raises(TypeError):
        changed.taken(True)
    with pytest.raises(ValueError):
        by_minute.__init__()


def test_a_truncated_capture_is_summed_up_alike_with_and_without_per_packet_outputs(tmp_path) -> None:
    """The capture breaks off while the C path passes a busy flow's frames in a batch."""
    capture = tmp_path / "cut.pcap"
    writer = PcapWriter(str(capture), 1)
    for i, p in enumerate([SYN, SYN_ACK] + [ACK, SYN_ACK._replace(tcp_flags=0x18)] * 20):
        writer.write(0.1 + i * 0.01, frame(p), len(frame(p)))
    writer.close()
    capture.write_bytes(capture.read_bytes()[:-10])
    summaries = []
    for outputs in (Outputs(), Outputs(verdicts=str(tmp_path / "verdicts.jsonl"))):
        with pytest.raises(CaptureError) as broken:
            replay(scenario_from_document(SCENARIO), [str(capture)], outputs)
        summaries.append(broken.value.summary.to_json())
    bare, full = summaries
    assert bare == full
    assert full["capture_seconds"] == pytest.approx(0.4)


def pcapng_in_whole_seconds(path: Path, seconds: int, data: bytes) -> None:
    """A pcapng whose interface counts time in seconds (if_tsresol 0), with one packet at `seconds`."""
    section = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    interface = struct.pack("<IIHHIHHBxxxHHI", 1, 32, 1, 0, 262144, 9, 1, 0, 0, 0, 32)
    padded = data + bytes(-len(data) % 4)
    packet = struct.pack("<IIIIIII", 6, 32 + len(padded), 0, seconds >> 32, seconds & 0xFFFFFFFF, len(data),
                         len(data)) + padded + struct.pack("<I", 32 + len(padded))
    path.write_bytes(section + interface + packet)


def test_a_pcapng_timestamp_past_the_latest_time_is_refused_with_its_byte_offset(tmp_path) -> None:
    capture = tmp_path / "far.pcapng"
    pcapng_in_whole_seconds(capture, 2**63, frame(SYN))
    with pytest.raises(CaptureError, match=r"byte 60: timestamp 9223372036854775808 s") as refused:
        list(Capture(capture).frames())
    assert refused.value.file == str(capture)


def test_a_pcapng_timestamp_at_the_latest_time_is_read(tmp_path) -> None:
    capture = tmp_path / "far.pcapng"
    pcapng_in_whole_seconds(capture, int(LATEST_TIME), frame(SYN))
    assert [f.ts for f in Capture(capture).frames()] == [LATEST_TIME]


@pytest.mark.parametrize("accelerated", [True, False], ids=["c", "python"])
def test_both_builds_refuse_a_flow_whose_deadline_is_past_the_latest_time(accelerated) -> None:
    dp = Dataplane(scenario_from_document(SCENARIO), accelerated=accelerated)
    with pytest.raises(DataplaneError, match="past the latest time"):
        dp.process(frame(SYN), LATEST_TIME)


@pytest.mark.parametrize("accelerated", [True, False], ids=["c", "python"])
def test_both_builds_keep_a_flow_whose_deadline_is_at_the_latest_time(accelerated) -> None:
    dp = Dataplane(scenario_from_document(SCENARIO), accelerated=accelerated)
    assert dp.process(frame(SYN), LATEST_TIME - 120).decision == "Allow"
    assert [r.bucket for _, r in dp.flows()] == [LATEST_TIME]


@pytest.mark.parametrize("peer, port", [(HOSTS[4], 40000), (HOSTS[5], 80)], ids=["public-ip", "frontend"])
def test_a_reply_to_a_translated_address_in_a_new_second_is_decided_as_the_python_path_decides(peer, port) -> None:
    """A peer whose address is a NIC's public IP or a frontend: the replies to it reach that NIC or a
    backend too. The last reply comes when the tables are due for a sweep."""
    request = SYN._replace(src=peer, sport=port)
    reply = SYN_ACK._replace(dst=peer, dport=port)
    conversation = [(0.1, request), (0.11, reply), (0.12, request._replace(tcp_flags=0x10)),
                    (1.5, reply._replace(tcp_flags=0x18))]
    fast = Dataplane(scenario_from_document(SCENARIO))
    slow = Dataplane(scenario_from_document(SCENARIO), accelerated=False)
    for ts, p in conversation:
        assert fast.process(frame(p), ts) == slow.process(frame(p), ts), ts


BUSY_ENTRIES = [item for item in busy_dataplane().conntrack.recent.items() if item[0][2] == CLIENT]
KEYS = st.tuples(st.sampled_from([6, 17]), st.sampled_from([4, 6]), st.integers(0, 3), st.integers(0, 2),
                 st.integers(0, 3), st.integers(0, 2))


@given(st.lists(st.one_of(st.tuples(st.just("set"), KEYS, st.integers(0, 2)), st.tuples(st.just("get"), KEYS),
                          st.just(("clear",))), max_size=60))
def test_the_recent_flow_table_keeps_what_a_dict_keeps(operations) -> None:
    """IPv4 keys go to the C slots, IPv6 ones to the dict beside them: both behave as one dict."""
    (_, (legs, translated, head)), = BUSY_ENTRIES
    entries = [(legs, translated, head), (legs, (6, 4, 1, 2, 3, 4), head), (legs + legs, None, head)]
    table, model = RecentTable(32768), {}
    for operation in operations:
        if operation[0] == "set":
            table[operation[1]] = model[operation[1]] = entries[operation[2]]
        elif operation[0] == "get":
            assert table.get(operation[1]) == model.get(operation[1])
            assert (operation[1] in table) == (operation[1] in model)
        else:
            table.clear()
            model.clear()
        assert len(table) == len(model)
    assert sorted(table.items()) == sorted(model.items())
