"""The flow table against a model built on cachetools' TLRUCache with the capture clock as its timer,
and the TCP state machine, transition by transition."""

from __future__ import annotations

import math
import tracemalloc

import pytest
from cachetools import TLRUCache
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dataplane.conntrack import (ACK, DEFAULT_TIMEOUTS, FIN, RST, SYN, FlowTable, Other, TcpState, Timeouts,
                                 tcp_first_state, tcp_next)

TIMEOUTS = Timeouts({"tcp_syn": 5, "tcp_established": 20, "tcp_fin": 8, "tcp_closed": 1, "udp": 12, "icmp": 9,
                     "other": 7})
KEYS = [(6, 4, 1, 1000 + i, 2, 80) for i in range(4)] + [(17, 4, 1, 2000 + i, 2, 53) for i in range(3)] + \
    [(1, 4, 1, 7, 2, 7), (50, 4, 1, 0, 3, 0)]
FLAGS = st.sampled_from([SYN, SYN | ACK, ACK, FIN | ACK, RST, RST | ACK, 0x18])
MAX_FLOWS = 3
PSH_ACK = 0x18


def first_state(key, flags):
    return tcp_first_state(flags) if key[0] == 6 else Other.ACTIVE


class FlowTableAgainstTLRUCache(RuleBasedStateMachine):
    """Which flows are alive, and how each one ended, must be what the cachetools model says.

    The table ends flows lazily (a timing wheel of one-second buckets; a lookup ends a dead record
    on the spot), so the checks never look records up: they read the table's records as they are.
    """

    def __init__(self):
        super().__init__()
        self.now = 0.0
        self.swept = 0.0  # when `advance` last ran
        self.reported: list[tuple] = []  # (record, why, when) as on_end received them
        self.table = FlowTable(TIMEOUTS, MAX_FLOWS,
                               lambda record, why, when: self.reported.append((record, why, when)))
        self.deadline: dict[tuple, float] = {}
        self.model = TLRUCache(maxsize=10**6, ttu=self.ttu, timer=lambda: self.now)
        self.record_of: dict[tuple, object] = {}  # the table's record for each key the model holds
        self.expected_ends: dict[int, tuple[str, float]] = {}  # id(record) → (why, when)
        self.records: list = []  # every record the table ever accepted
        self.refused = 0

    def ttu(self, key, state, now):
        self.deadline[key] = now + TIMEOUTS.of(key[0], state)
        return self.deadline[key]

    def expire_model(self) -> None:
        for key, state in self.model.expire():
            why = "closed" if state is TcpState.CLOSED else "expired"
            self.expected_ends[id(self.record_of.pop(key))] = (why, self.deadline[key])

    @rule(dt=st.one_of(st.floats(0, 3), st.integers(0, 60).map(lambda n: n / 2)))
    def time_passes(self, dt):
        self.now += dt
        self.table.advance(self.now)
        self.swept = self.now

    @rule()
    def the_clock_reaches_the_next_whole_second(self):
        """Deadlines that fall on a bucket's boundary are where a timing wheel slips."""
        self.now = math.floor(self.now) + 1.0
        self.table.advance(self.now)
        self.swept = self.now

    @rule(i=st.integers(0, len(KEYS) - 1), flags=FLAGS, from_initiator=st.booleans())
    def packet(self, i, flags, from_initiator):
        key = KEYS[i]
        self.expire_model()
        record = self.table.get(key, self.now)
        assert (record is not None) == (key in self.model)
        if record is None:
            state = first_state(key, flags)
            added = self.table.add(key, key, state, self.now, None)
            if len(self.model) >= MAX_FLOWS:
                assert added is None, "a full table refuses a new flow"
                self.refused += 1
                return
            assert added is not None, "a table with room (once dead flows are gone) takes a new flow"
            self.model[key] = state
            self.record_of[key] = added
            self.records.append(added)
        else:
            state = tcp_next(record.state, flags, from_initiator) if key[0] == 6 else Other.ACTIVE
            self.table.touch(record, state, self.now)
            self.model[key] = state

    @precondition(lambda self: len(self.table) > 0)
    @rule(i=st.integers(0, len(KEYS) - 1))
    def flush(self, i):
        key = KEYS[i]
        self.expire_model()
        record = self.table.get(key, self.now)
        if record is not None:
            self.table.remove(record, "flushed", self.now)
            del self.model[key]
            self.expected_ends[id(self.record_of.pop(key))] = ("flushed", self.now)

    @invariant()
    def the_same_flows_are_alive_in_the_same_states(self):
        self.expire_model()
        live = {record.key: record.state for record in self.table if record.expires > self.now}
        assert live == dict(self.model.items())

    @invariant()
    def a_dead_flow_is_ended_at_most_a_second_after_the_last_sweep_passed_its_deadline(self):
        for record in self.table:
            if record.expires <= self.now:
                assert record.expires > self.swept - 1, record

    @invariant()
    def every_flow_that_ended_was_reported_exactly_once_with_its_cause_and_time(self):
        self.expire_model()
        ids = [id(record) for record, _, _ in self.reported]
        assert len(ids) == len(set(ids)), "a record was reported twice"
        for record, why, when in self.reported:
            assert (why, when) == self.expected_ends[id(record)]
        in_table = {id(record) for record in self.table}
        assert {id(r) for r in self.records} == in_table | set(ids), "a record vanished without a report"
        assert not in_table & set(ids)

    @invariant()
    def refusals_are_counted(self):
        assert self.table.refused == self.refused


FlowTableAgainstTLRUCache.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_flow_table_agrees_with_a_tlru_cache_model = FlowTableAgainstTLRUCache.TestCase


# -- TCP states, one transition each ------------------------------------------------------------

def test_a_syn_opens_a_flow_in_syn_sent() -> None:
    assert tcp_first_state(SYN) is TcpState.SYN_SENT


def test_a_first_packet_without_syn_is_picked_up_as_established() -> None:
    """A capture that begins mid-connection (README: a TCP packet of an unknown flow without SYN)."""
    assert tcp_first_state(ACK) is TcpState.ESTABLISHED
    assert tcp_first_state(SYN | ACK) is TcpState.ESTABLISHED


def test_a_first_rst_is_closed() -> None:
    assert tcp_first_state(RST | ACK) is TcpState.CLOSED


@pytest.mark.parametrize("state, flags, from_initiator, expected", [
    (TcpState.SYN_SENT, SYN | ACK, False, TcpState.SYN_RECEIVED),
    (TcpState.SYN_SENT, SYN, True, TcpState.SYN_SENT),
    (TcpState.SYN_SENT, SYN | ACK, True, TcpState.SYN_SENT),
    (TcpState.SYN_SENT, ACK, False, TcpState.ESTABLISHED),
    (TcpState.SYN_RECEIVED, ACK, True, TcpState.ESTABLISHED),
    (TcpState.SYN_RECEIVED, SYN | ACK, False, TcpState.SYN_RECEIVED),
    (TcpState.ESTABLISHED, PSH_ACK, True, TcpState.ESTABLISHED),
    (TcpState.ESTABLISHED, PSH_ACK, False, TcpState.ESTABLISHED),
    (TcpState.ESTABLISHED, FIN | ACK, True, TcpState.FIN_INITIATOR),
    (TcpState.ESTABLISHED, FIN | ACK, False, TcpState.FIN_RESPONDER),
    (TcpState.FIN_INITIATOR, FIN | ACK, True, TcpState.FIN_INITIATOR),
    (TcpState.FIN_INITIATOR, FIN | ACK, False, TcpState.CLOSING),
    (TcpState.FIN_RESPONDER, FIN | ACK, True, TcpState.CLOSING),
    (TcpState.FIN_INITIATOR, ACK, False, TcpState.FIN_INITIATOR),
    (TcpState.CLOSING, ACK, True, TcpState.CLOSED),
    (TcpState.CLOSING, ACK, False, TcpState.CLOSED),
    (TcpState.ESTABLISHED, RST, False, TcpState.CLOSED),
    (TcpState.ESTABLISHED, RST | ACK, True, TcpState.CLOSED),
    (TcpState.SYN_SENT, RST | ACK, False, TcpState.CLOSED),
    (TcpState.FIN_RESPONDER, RST, True, TcpState.CLOSED),
    (TcpState.CLOSED, SYN, True, TcpState.CLOSED),
    (TcpState.CLOSED, PSH_ACK, False, TcpState.CLOSED),
], ids=lambda v: getattr(v, "value", str(v)))
def test_tcp_transition(state, flags, from_initiator, expected) -> None:
    assert tcp_next(state, flags, from_initiator) is expected


def test_a_whole_connection_moves_through_every_state_and_ends_closed() -> None:
    """SYN → SYN-ACK → ACK → data → FIN → FIN → last ACK, then the closed timeout."""
    ends = []
    table = FlowTable(Timeouts(), 10, lambda record, why, when: ends.append((why, when)))
    key = (6, 4, 1, 40000, 2, 443)
    record = table.add(key, key, tcp_first_state(SYN), 0.0, None)
    seen = [record.state]
    for t, flags, from_initiator in [(0.1, SYN | ACK, False), (0.2, ACK, True), (0.3, PSH_ACK, True),
                                     (5.0, FIN | ACK, True), (5.1, FIN | ACK, False), (5.2, ACK, True)]:
        table.touch(record, tcp_next(record.state, flags, from_initiator), t)
        seen.append(record.state)
    assert seen == [TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.ESTABLISHED,
                    TcpState.FIN_INITIATOR, TcpState.CLOSING, TcpState.CLOSED]
    table.advance(15.1)
    assert table.get(key, 15.1) is record
    table.advance(16.0)
    assert ends == [("closed", 15.2)]
    assert len(table) == 0


def test_a_reset_closes_the_flow_which_ends_after_the_closed_timeout() -> None:
    ends = []
    table = FlowTable(Timeouts(), 10, lambda record, why, when: ends.append((why, when)))
    key = (6, 4, 1, 40000, 2, 443)
    record = table.add(key, key, TcpState.ESTABLISHED, 0.0, None)
    table.touch(record, tcp_next(record.state, RST, False), 100.0)
    assert record.state is TcpState.CLOSED
    assert table.get(key, 109.9) is record
    assert table.get(key, 110.0) is None
    assert ends == [("closed", 110.0)]


# -- timeouts -------------------------------------------------------------------------------------

def test_each_tcp_state_has_its_idle_timeout() -> None:
    timeouts = Timeouts()
    assert {s: timeouts.of(6, s) for s in TcpState} == {
        TcpState.SYN_SENT: 120, TcpState.SYN_RECEIVED: 120, TcpState.ESTABLISHED: 240, TcpState.FIN_INITIATOR: 120,
        TcpState.FIN_RESPONDER: 120, TcpState.CLOSING: 120, TcpState.CLOSED: 10}


def test_udp_icmp_and_other_protocols_have_their_own_idle_timeouts() -> None:
    timeouts = Timeouts({"udp": 30, "icmp": 20, "other": 10})
    assert [timeouts.of(p, Other.ACTIVE) for p in (17, 1, 58, 50, 51, 47)] == [30, 20, 20, 10, 10, 10]


def test_the_default_timeouts_are_the_documented_ones() -> None:
    """README, Semantic choices: 240 s established and connectionless, 120 s handshake and closing,
    10 s closed, 30 s fragments."""
    assert DEFAULT_TIMEOUTS == {"tcp_syn": 120, "tcp_established": 240, "tcp_fin": 120, "tcp_closed": 10,
                                "udp": 240, "icmp": 240, "other": 240, "fragment": 30}


@pytest.mark.parametrize("state, timeout", [(TcpState.SYN_SENT, 120), (TcpState.ESTABLISHED, 240),
                                            (TcpState.FIN_RESPONDER, 120), (TcpState.CLOSED, 10)],
                         ids=lambda v: getattr(v, "value", str(v)))
def test_a_flow_lives_exactly_its_states_idle_timeout_after_its_last_packet(state, timeout) -> None:
    table = FlowTable(Timeouts(), 10, None)
    key = (6, 4, 1, 40000, 2, 443)
    record = table.add(key, key, TcpState.ESTABLISHED, 0.0, None)
    table.touch(record, state, 50.0)
    assert table.get(key, 50.0 + timeout - 0.001) is record
    assert table.get(key, 50.0 + timeout) is None


def test_a_packet_restarts_the_idle_timeout() -> None:
    table = FlowTable(TIMEOUTS, 10, None)
    key = KEYS[4]
    record = table.add(key, key, Other.ACTIVE, 0.0, None)
    for t in range(10, 100, 10):
        table.advance(float(t))
        assert table.get(key, float(t)) is record
        table.touch(record, Other.ACTIVE, float(t))
    table.advance(90.0 + 12)
    assert len(table) == 0


def test_flow_timeout_minutes_replaces_the_established_and_connectionless_timeouts() -> None:
    timeouts = Timeouts(flow_timeout_minutes=10)
    assert [timeouts.of(p, s) for p, s in [(6, TcpState.ESTABLISHED), (17, Other.ACTIVE), (1, Other.ACTIVE),
                                            (50, Other.ACTIVE)]] == [600, 600, 600, 600]


def test_flow_timeout_minutes_leaves_the_handshake_closing_and_fragment_timeouts() -> None:
    timeouts = Timeouts(flow_timeout_minutes=10)
    assert [timeouts.of(6, s) for s in (TcpState.SYN_SENT, TcpState.FIN_INITIATOR, TcpState.CLOSED)] == [120, 120, 10]
    assert timeouts.values["fragment"] == 30


def test_scenario_timeouts_override_flow_timeout_minutes() -> None:
    timeouts = Timeouts({"udp": 30, "tcp_closed": 2}, flow_timeout_minutes=10)
    assert (timeouts.of(17, Other.ACTIVE), timeouts.of(6, TcpState.CLOSED), timeouts.of(6, TcpState.ESTABLISHED)) == \
        (30, 2, 600)


# -- ending flows ---------------------------------------------------------------------------------

def test_an_expired_flow_is_reported_with_its_deadline_not_the_time_it_was_noticed() -> None:
    """Flow logs end a flow when it went idle, even if the next sweep comes much later."""
    ends = []
    table = FlowTable(TIMEOUTS, 10, lambda record, why, when: ends.append((record.key, why, when)))
    table.add(KEYS[4], KEYS[4], Other.ACTIVE, 3.25, None)
    table.advance(1000.0)
    assert ends == [(KEYS[4], "expired", 15.25)]


def test_a_removed_flow_is_reported_once_with_the_given_cause() -> None:
    ends = []
    table = FlowTable(TIMEOUTS, 10, lambda record, why, when: ends.append((why, when)))
    record = table.add(KEYS[4], KEYS[4], Other.ACTIVE, 0.0, None)
    table.remove(record, "flushed", 2.0)
    table.remove(record, "flushed", 3.0)
    table.advance(100.0)
    assert ends == [("flushed", 2.0)]


def test_end_all_reports_every_live_flow_as_open_at_the_end_of_the_capture() -> None:
    ends = []
    table = FlowTable(TIMEOUTS, 10, lambda record, why, when: ends.append((record.key, why, when)))
    for key in KEYS[:3]:
        table.add(key, key, TcpState.ESTABLISHED, 0.0, None)
    table.end_all("end-of-capture", 4.0)
    assert sorted(ends) == [(key, "end-of-capture", 4.0) for key in KEYS[:3]]
    assert len(table) == 0


def test_a_record_knows_which_side_opened_the_flow() -> None:
    """The key is direction-independent; `initiator` gives the 5-tuple as the first packet carried it."""
    table = FlowTable(TIMEOUTS, 10, None)
    key, reply_first = (6, 4, 1, 80, 2, 40000), (6, 4, 2, 40000, 1, 80)
    assert table.add(key, reply_first, TcpState.SYN_SENT, 0.0, None).initiator == reply_first
    other = (6, 4, 1, 81, 2, 40000)
    assert table.add(other, other, TcpState.SYN_SENT, 0.0, None).initiator == other


# -- limits ---------------------------------------------------------------------------------------

def test_a_full_table_refuses_new_flows_and_counts_them() -> None:
    table = FlowTable(Timeouts(), 100, None)
    added = [table.add((6, 4, 1, i, 2, 80), (6, 4, 1, i, 2, 80), TcpState.SYN_SENT, 0.0, None) for i in range(1000)]
    assert sum(record is not None for record in added) == 100
    assert added[100:] == [None] * 900
    assert (len(table), table.refused) == (100, 900)


def test_memory_stays_bounded_while_a_full_table_refuses_flows() -> None:
    """Refused flows leave nothing behind: 50,000 refusals allocate (almost) nothing."""
    table = FlowTable(Timeouts(), 1000, None)
    for i in range(1000):
        table.add((6, 4, 1, i, 2, 80), (6, 4, 1, i, 2, 80), TcpState.SYN_SENT, 0.0, None)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000, 51000):
            table.add((6, 4, 1, i, 2, 80), (6, 4, 1, i, 2, 80), TcpState.SYN_SENT, i / 1000, None)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert table.refused == 50000
    assert grown < 16 * 1024


def test_a_full_table_takes_a_new_flow_as_soon_as_an_old_one_has_expired() -> None:
    """Deadlines are not whole seconds: a flow that expired 0.2 s ago frees its place now."""
    table = FlowTable(TIMEOUTS, 1, None)
    table.add(KEYS[4], KEYS[4], Other.ACTIVE, 0.5, None)
    assert table.add(KEYS[5], KEYS[5], Other.ACTIVE, 12.7, None) is not None


def test_a_full_table_takes_a_new_flow_at_the_instant_a_shortened_deadline_passes() -> None:
    """A RST brings a flow's deadline forward (20.5 → 20.0); at 20.0 its place is free."""
    table = FlowTable(TIMEOUTS, 1, None)
    record = table.add(KEYS[0], KEYS[0], TcpState.ESTABLISHED, 0.5, None)
    table.touch(record, TcpState.CLOSED, 19.0)
    table.advance(20.0)
    assert table.add(KEYS[1], KEYS[1], TcpState.SYN_SENT, 20.0, None) is not None
    assert table.refused == 0
