"""The flow table against a model built on cachetools' TLRUCache with the capture clock as its timer,
and the TCP state machine, transition by transition."""

from __future__ import annotations

import pytest
from cachetools import TLRUCache
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dataplane.conntrack import (ACK, FIN, RST, SYN, FlowTable, Other, TcpState, Timeouts, tcp_first_state,
                                 tcp_next)

TIMEOUTS = Timeouts({"tcp_syn": 5, "tcp_established": 20, "tcp_fin": 8, "tcp_closed": 1, "udp": 12, "other": 7})
KEYS = [(6, 4, 1, 1000 + i, 2, 80) for i in range(4)] + [(17, 4, 1, 2000 + i, 2, 53) for i in range(3)] + \
    [(50, 4, 1, 0, 3, 0)]
FLAGS = st.sampled_from([SYN, SYN | ACK, ACK, FIN | ACK, RST, 0x18])
MAX_FLOWS = 5


def first_state(key, flags):
    return tcp_first_state(flags) if key[0] == 6 else Other.ACTIVE


class FlowTableAgainstTLRUCache(RuleBasedStateMachine):
    """Which flows are alive, and which ended, must be what the cachetools model says."""

    def __init__(self):
        super().__init__()
        self.now = 0.0
        self.ended: list[tuple] = []
        self.table = FlowTable(TIMEOUTS, MAX_FLOWS, lambda record, why, when: self.ended.append((record.key, why)))
        self.model = TLRUCache(maxsize=10**6, ttu=lambda key, state, now: now + TIMEOUTS.of(key[0], state),
                               timer=lambda: self.now)
        self.lives = 0

    @rule(dt=st.one_of(st.floats(0, 3), st.sampled_from([0.0, 0.5, 1.0, 5.0, 8.0, 12.0, 20.0, 30.0])))
    def time_passes(self, dt):
        self.now += dt
        self.table.advance(self.now)

    @rule(i=st.integers(0, len(KEYS) - 1), flags=FLAGS)
    def packet(self, i, flags):
        key = KEYS[i]
        self.model.expire()
        record = self.table.get(key, self.now)
        assert (record is not None) == (key in self.model)
        if record is None:
            state = first_state(key, flags)
            added = self.table.add(key, key, state, self.now, None)
            if len(self.model) >= MAX_FLOWS:
                assert added is None, "a full table refuses a new flow"
                return
            assert added is not None
            self.model[key] = state
            self.lives += 1
        else:
            state = tcp_next(record.state, flags, True) if key[0] == 6 else Other.ACTIVE
            self.table.touch(record, state, self.now)
            self.model[key] = state

    @precondition(lambda self: len(self.table) > 0)
    @rule(i=st.integers(0, len(KEYS) - 1))
    def flush(self, i):
        key = KEYS[i]
        record = self.table.get(key, self.now)
        self.model.expire()
        if record is not None:
            self.table.remove(record, "flushed", self.now)
            del self.model[key]

    @invariant()
    def the_same_flows_are_alive_and_every_other_flow_ended_exactly_once(self):
        """A record past its deadline may wait for its second's bucket, but ends as soon as it is looked up."""
        self.model.expire()
        alive = {k for k in KEYS if self.table.get(k, self.now) is not None}
        assert alive == set(self.model.keys())
        for key in alive:
            assert self.table.get(key, self.now).state == self.model[key]
        assert len(self.ended) == self.lives - len(self.model)


FlowTableAgainstTLRUCache.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_flow_table_agrees_with_a_tlru_cache_model = FlowTableAgainstTLRUCache.TestCase


# -- TCP states, one transition each ------------------------------------------------------------

def test_a_syn_opens_a_flow_in_syn_sent() -> None:
    assert tcp_first_state(SYN) is TcpState.SYN_SENT


def test_a_first_packet_without_syn_is_picked_up_as_established() -> None:
    assert tcp_first_state(ACK) is TcpState.ESTABLISHED


def test_a_first_rst_is_closed() -> None:
    assert tcp_first_state(RST | ACK) is TcpState.CLOSED


@pytest.mark.parametrize("state, flags, from_initiator, expected", [
    (TcpState.SYN_SENT, SYN | ACK, False, TcpState.SYN_RECEIVED),
    (TcpState.SYN_SENT, SYN, True, TcpState.SYN_SENT),
    (TcpState.SYN_RECEIVED, ACK, True, TcpState.ESTABLISHED),
    (TcpState.ESTABLISHED, 0x18, True, TcpState.ESTABLISHED),
    (TcpState.ESTABLISHED, FIN | ACK, True, TcpState.FIN_INITIATOR),
    (TcpState.ESTABLISHED, FIN | ACK, False, TcpState.FIN_RESPONDER),
    (TcpState.FIN_INITIATOR, FIN | ACK, False, TcpState.CLOSING),
    (TcpState.FIN_RESPONDER, FIN | ACK, True, TcpState.CLOSING),
    (TcpState.CLOSING, ACK, True, TcpState.CLOSED),
    (TcpState.ESTABLISHED, RST, False, TcpState.CLOSED),
    (TcpState.SYN_SENT, RST | ACK, False, TcpState.CLOSED),
    (TcpState.CLOSED, SYN, True, TcpState.CLOSED),
], ids=lambda v: getattr(v, "value", str(v)))
def test_tcp_transition(state, flags, from_initiator, expected) -> None:
    assert tcp_next(state, flags, from_initiator) is expected


def test_each_tcp_state_has_its_idle_timeout() -> None:
    timeouts = Timeouts()
    assert [timeouts.of(6, s) for s in TcpState] == [120, 120, 240, 120, 120, 120, 10]
    assert (timeouts.of(17, Other.ACTIVE), timeouts.of(1, Other.ACTIVE), timeouts.of(50, Other.ACTIVE)) == \
        (240, 240, 240)


def test_flow_timeout_minutes_replaces_the_established_and_connectionless_timeouts() -> None:
    timeouts = Timeouts(flow_timeout_minutes=10)
    assert (timeouts.of(6, TcpState.ESTABLISHED), timeouts.of(17, Other.ACTIVE)) == (600, 600)
    assert timeouts.of(6, TcpState.SYN_SENT) == 120


def test_scenario_timeouts_override_flow_timeout_minutes() -> None:
    assert Timeouts({"udp": 30}, flow_timeout_minutes=10).of(17, Other.ACTIVE) == 30


def test_a_full_table_stays_bounded_and_counts_what_it_refuses() -> None:
    table = FlowTable(Timeouts(), 100, None)
    for i in range(1000):
        table.add((6, 4, 1, i, 2, 80), (6, 4, 1, i, 2, 80), TcpState.SYN_SENT, 0.0, None)
    assert len(table) == 100
    assert table.refused == 900


def test_a_full_table_takes_a_new_flow_as_soon_as_an_old_one_has_expired() -> None:
    """Deadlines are not whole seconds: a flow that expired 0.2 s ago frees its place now."""
    table = FlowTable(TIMEOUTS, 1, None)
    table.add(KEYS[4], KEYS[4], Other.ACTIVE, 0.5, None)
    assert table.add(KEYS[5], KEYS[5], Other.ACTIVE, 12.7, None) is not None
