"""Flow records: what makes an NSG stateful (reference §2, §8).

Everything that affects a flow's lifetime lives in this file:
- A flow is keyed by its direction-independent 5-tuple at one NIC; a packet of a known flow, in
  either direction, passes without rule evaluation.
- TCP moves through explicit states (`TCP_TRANSITIONS`); each state has its own idle timeout.
- A flow expires when it has been idle for its state's timeout, measured on the capture's clock:
  the caller passes every timestamp, and no wall clock is ever read.
- Ended flows (expired, closed, flushed) are reported to a listener, which flow logs need.

The table is a dict with a timing wheel of one-second buckets. Touching a flow only moves its
deadline; the wheel finds out lazily when the old bucket comes due, so a packet of an established
flow costs a dict lookup and two stores. `tests/test_conntrack.py` drives it against a model built
on `cachetools.TLRUCache` with the same clock.
"""

from __future__ import annotations

import enum
import heapq
import math
import operator
from typing import Callable, Iterator, Mapping

from .errors import DataplaneError
from .flows import ICMP, ICMPV6, TCP, UDP

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


class TcpState(enum.Enum):
    SYN_SENT = "syn-sent"
    SYN_RECEIVED = "syn-received"
    ESTABLISHED = "established"
    FIN_INITIATOR = "fin-initiator"  # the side that opened the flow sent FIN
    FIN_RESPONDER = "fin-responder"
    CLOSING = "closing"  # both sides sent FIN
    CLOSED = "closed"  # RST, or the last ACK after both FINs

    __hash__ = object.__hash__  # members are singletons; Enum's own __hash__ is Python code on the hot path


class Other(enum.Enum):
    """States of flows without a handshake: UDP, ICMP and every other protocol."""

    ACTIVE = "active"

    __hash__ = object.__hash__


class TcpEvent(enum.Enum):
    SYN = "syn"
    SYNACK = "syn-ack"
    FIN = "fin"
    RST = "rst"
    ACK = "ack"  # anything else: data, pure ACKs


def tcp_event(flags: int) -> TcpEvent:
    if flags & RST:
        return TcpEvent.RST
    if flags & SYN:
        return TcpEvent.SYNACK if flags & ACK else TcpEvent.SYN
    if flags & FIN:
        return TcpEvent.FIN
    return TcpEvent.ACK


S = TcpState
E = TcpEvent
# TCP_TRANSITIONS[state][event][from_initiator] → next state; a missing entry keeps the state.
TCP_TRANSITIONS: dict[TcpState, dict[TcpEvent, tuple[TcpState, TcpState]]] = {
    # (next state when the responder sent it, next state when the initiator sent it)
    S.SYN_SENT: {E.SYNACK: (S.SYN_RECEIVED, S.SYN_SENT), E.ACK: (S.ESTABLISHED, S.SYN_SENT),
                 E.FIN: (S.FIN_RESPONDER, S.FIN_INITIATOR), E.RST: (S.CLOSED, S.CLOSED)},
    S.SYN_RECEIVED: {E.ACK: (S.ESTABLISHED, S.ESTABLISHED), E.FIN: (S.FIN_RESPONDER, S.FIN_INITIATOR),
                     E.RST: (S.CLOSED, S.CLOSED)},
    S.ESTABLISHED: {E.FIN: (S.FIN_RESPONDER, S.FIN_INITIATOR), E.RST: (S.CLOSED, S.CLOSED)},
    S.FIN_INITIATOR: {E.FIN: (S.CLOSING, S.FIN_INITIATOR), E.RST: (S.CLOSED, S.CLOSED)},
    S.FIN_RESPONDER: {E.FIN: (S.FIN_RESPONDER, S.CLOSING), E.RST: (S.CLOSED, S.CLOSED)},
    S.CLOSING: {E.ACK: (S.CLOSED, S.CLOSED), E.RST: (S.CLOSED, S.CLOSED)},
    S.CLOSED: {},
}
del S, E


def tcp_next(state: TcpState, flags: int, from_initiator: bool) -> TcpState:
    moves = TCP_TRANSITIONS[state].get(tcp_event(flags))
    return moves[from_initiator] if moves is not None else state


def tcp_first_state(flags: int) -> TcpState:
    """A SYN opens a flow; any other first packet is a flow picked up mid-stream (README)."""
    if flags & RST:
        return TcpState.CLOSED
    return TcpState.SYN_SENT if flags & SYN and not flags & ACK else TcpState.ESTABLISHED


DEFAULT_TIMEOUTS: dict[str, float] = {
    "tcp_syn": 120.0, "tcp_established": 240.0, "tcp_fin": 120.0, "tcp_closed": 10.0,
    "udp": 240.0, "icmp": 240.0, "other": 240.0, "fragment": 30.0,
}
"""Seconds idle before a flow ends. Azure documents only "at least a few minutes" and 4 minutes
as its default stateful behaviour (§8); FlowTimeoutInMinutes of the VNet replaces the idle
timeout of established TCP, UDP, ICMP and other flows."""


LATEST_TIME = 2.0 ** 53
"""The latest deadline a flow may have, in seconds of capture time: past it a float no longer holds
whole seconds, the timing wheel's unit. Both record types refuse later ones alike (the C record's
bucket is a 64-bit integer, the Python one's is unbounded); capture readers refuse later timestamps."""


class Timeouts:
    def __init__(self, overrides: Mapping[str, float] | None = None, flow_timeout_minutes: int | None = None):
        values = dict(DEFAULT_TIMEOUTS)
        if flow_timeout_minutes is not None:
            for key in ("tcp_established", "udp", "icmp", "other"):
                values[key] = flow_timeout_minutes * 60.0
        values.update(overrides or {})
        self.values = values
        self.tcp = {TcpState.SYN_SENT: values["tcp_syn"], TcpState.SYN_RECEIVED: values["tcp_syn"],
                    TcpState.ESTABLISHED: values["tcp_established"], TcpState.FIN_INITIATOR: values["tcp_fin"],
                    TcpState.FIN_RESPONDER: values["tcp_fin"], TcpState.CLOSING: values["tcp_fin"],
                    TcpState.CLOSED: values["tcp_closed"]}
        self.by_proto = {UDP: values["udp"], ICMP: values["icmp"], ICMPV6: values["icmp"]}
        self.other = values["other"]

    def of_protocol(self, proto: int) -> dict[TcpState, float] | float:
        """TCP's timeouts by state, or the one timeout of a protocol without states."""
        return self.tcp if proto == TCP else self.by_proto.get(proto, self.other)

    def of(self, proto: int, state: TcpState | Other) -> float:
        if proto == TCP:
            return self.tcp[state]  # type: ignore[index]
        return self.by_proto.get(proto, self.other)


def canonical(key):
    """The direction-independent form of a 5-tuple, by which a table keeps its flow: the lower
    endpoint first."""
    proto, version, a, a_port, b, b_port = key
    if a < b or (a == b and a_port <= b_port):
        return key
    return proto, version, b, b_port, a, a_port


class FlowRecord:
    """One flow at one NIC, kept small: a NIC may hold 500,000 of them (reference §3).

    `key` is the direction-independent 5-tuple; `reversed` says whether the side that opened the
    flow is its second endpoint, so `initiator` gives the 5-tuple as the first packet carried it.
    When the C extension is built, `_fastpath.Record` replaces this class: the same fields,
    inline, and outside the garbage collector's reach.
    """

    __slots__ = ("key", "reversed", "state", "expires", "bucket", "outcome",
                 "packets_out", "bytes_out", "packets_in", "bytes_in", "nat")

    def __init__(self, key, reversed_: bool, state, expires: float, outcome, nat=None):
        self.key = key
        self.reversed = reversed_
        self.state = state
        self.expires = expires
        self.bucket = 0
        self.outcome = outcome
        self.packets_out = self.bytes_out = self.packets_in = self.bytes_in = 0
        self.nat = nat

    @property
    def initiator(self):
        if not self.reversed:
            return self.key
        proto, version, a, a_port, b, b_port = self.key
        return proto, version, b, b_port, a, a_port

    def __repr__(self) -> str:
        return f"FlowRecord({self.initiator}, {self.state}, expires={self.expires})"


PureFlowRecord = FlowRecord
try:
    from ._fastpath import Record as FlowRecord  # type: ignore[assignment]  # noqa: F811
except ImportError:  # installed without a C compiler
    pass


EndListener = Callable[[FlowRecord, str, float], None]
"""Called with (record, why, time): why is 'expired', 'closed', 'flushed' or 'end-of-capture'."""


class FlowTable:
    """The flow records of one NIC, bounded by `max_flows`."""

    def __init__(self, timeouts: Timeouts, max_flows: int, on_end: EndListener | None = None,
                 record_type: type = FlowRecord):
        self.timeouts = timeouts
        self.record_type = record_type
        self.max_flows = max_flows
        self.on_end = on_end
        self._flows: dict = {}
        self.wheel: dict[int, list] = {}
        """The timing wheel, second → records due then; with `due`, the heap of its seconds. The C fast
        path schedules into both as `reschedule` does."""
        self.due: list[int] = []
        self.refused = 0

    def __len__(self) -> int:
        return len(self._flows)

    @property
    def by_key(self) -> dict:
        """The records by direction-independent key, live: the C fast path looks flows up in it and
        leaves every change to this class."""
        return self._flows

    def __iter__(self) -> Iterator[FlowRecord]:
        return iter(list(self._flows.values()))

    def get(self, key, now: float) -> FlowRecord | None:
        """The live record for key; one whose deadline has passed is ended on the spot."""
        record = self._flows.get(key)
        if record is not None and record.expires <= now:
            self._end(record, now)
            return None
        return record

    def find(self, key, now: float) -> tuple[FlowRecord | None, bool]:
        """The live record of the flow a packet with this 5-tuple belongs to, and whether the packet
        travels as the flow's first packet did (else it is a reply)."""
        record = self.get(canonical(key), now)
        if record is None:
            return None, False
        return record, record.initiator == key

    def add(self, key, initiator, state, now: float, outcome, nat=None) -> FlowRecord | None:
        """A new record, or None when the table is full (the caller refuses the flow)."""
        if len(self._flows) >= self.max_flows:
            self.advance(now)
            self._end_due_this_second(now)
            if len(self._flows) >= self.max_flows:
                self.refused += 1
                return None
        record = self.record_type(key, initiator is not key and initiator != key, state,
                                  now + self.timeouts.of(key[0], state), outcome, nat)
        self._schedule(record)  # first: a deadline it refuses leaves the table as it was
        old = self._flows.get(key)
        if old is not None:
            self._end(old, now)
        self._flows[key] = record
        return record

    def open(self, key, state, now: float, outcome, nat=None) -> FlowRecord | None:
        """The record of a flow whose first packet carries key, or None when the table is full."""
        return self.add(canonical(key), key, state, now, outcome, nat)

    def touch(self, record: FlowRecord, state, now: float) -> None:
        record.state = state
        proto = record.key[0]
        timeouts = self.timeouts
        expires = record.expires = now + (timeouts.tcp[state] if proto == TCP else
                                          timeouts.by_proto.get(proto, timeouts.other))
        if expires <= record.bucket - 1:  # due in an earlier second than its bucket
            self._schedule(record)

    def reschedule(self, record: FlowRecord) -> None:
        """A record whose deadline moved before its bucket goes to the bucket of its new deadline
        (the C fast path does the same in C, and calls this for a deadline it must refuse)."""
        self._schedule(record)

    def advance(self, now: float) -> None:
        """End every flow whose deadline is at or before now."""
        for record in self.ending(now):
            self._end(record, now)

    def ending(self, now: float) -> list[FlowRecord]:
        """The records whose deadline is at or before now, in deadline order, still in the table (the
        caller ends them with `expire`); the others of the buckets looked at move to their new bucket."""
        due = self.due
        ending = []
        while due and due[0] <= now:
            bucket = heapq.heappop(due)
            for record in self.wheel.pop(bucket):
                if record.bucket != bucket or self._flows.get(record.key) is not record:
                    continue
                if record.expires <= now:
                    record.bucket = 0
                    ending.append(record)
                else:
                    self._schedule(record)
        ending.sort(key=_by_deadline)
        return ending

    def expire(self, record: FlowRecord, now: float) -> None:
        """End a record `ending` returned."""
        self._end(record, now)

    def _end_due_this_second(self, now: float) -> None:
        """`advance` works in whole seconds; a full table also frees the records of the current second
        whose deadline has passed."""
        bucket = math.ceil(now)
        for record in self.wheel.get(bucket, ()):
            if record.bucket == bucket and record.expires <= now and self._flows.get(record.key) is record:
                self._end(record, now)

    def remove(self, record: FlowRecord, why: str, now: float) -> None:
        if self._flows.get(record.key) is record:
            self._end(record, now, why)

    def end_all(self, why: str, now: float) -> None:
        for record in list(self._flows.values()):
            self._end(record, now, why)

    def _schedule(self, record: FlowRecord) -> None:
        if record.expires > LATEST_TIME:
            raise DataplaneError(f"a flow's deadline, {record.expires!r} s, is past the latest time the "
                                 f"dataplane keeps ({LATEST_TIME:.0f} s)")
        bucket = math.ceil(record.expires)
        record.bucket = bucket
        slot = self.wheel.get(bucket)
        if slot is None:
            self.wheel[bucket] = [record]
            heapq.heappush(self.due, bucket)
        else:
            slot.append(record)

    def _end(self, record: FlowRecord, now: float, why: str | None = None) -> None:
        del self._flows[record.key]
        record.bucket = 0
        if why is None:
            why = "closed" if record.state is TcpState.CLOSED else "expired"
        if self.on_end is not None:
            self.on_end(record, why, min(now, record.expires) if why in ("expired", "closed") else now)


_by_deadline = operator.attrgetter("expires", "key")


class FragmentTable:
    """What became of first fragments, by (version, src, dst, protocol, IP id): later fragments carry
    no ports, so they follow their first fragment until the fragment timeout."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._firsts: dict[tuple, tuple[float, object]] = {}

    def remember(self, packet, now: float, outcome) -> None:
        self._firsts[(packet.version, packet.src, packet.dst, packet.proto, packet.ip_id)] = \
            (now + self.timeout, outcome)

    def first(self, packet, now: float):
        """The outcome of the packet's first fragment, or None when there was none or it is too old."""
        entry = self._firsts.get((packet.version, packet.src, packet.dst, packet.proto, packet.ip_id))
        return entry[1] if entry is not None and entry[0] > now else None

    def advance(self, now: float) -> None:
        if self._firsts:
            for key in [k for k, (deadline, _) in self._firsts.items() if deadline <= now]:
                del self._firsts[key]
