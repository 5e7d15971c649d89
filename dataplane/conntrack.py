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
from typing import Any, Callable, Iterator, Mapping, MutableMapping, NamedTuple

from .addresses import ip_key
from .errors import DataplaneError
from .flows import ICMP, ICMPV6, TCP, UDP
from .rules import DEFAULT_RULE_NAMES

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


def reverse(key):
    """The 5-tuple of a packet going the other way."""
    proto, version, a, a_port, b, b_port = key
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
        return reverse(self.key) if self.reversed else self.key

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


class Outcome(NamedTuple):
    """How a flow was decided at one NIC; shared by every flow decided alike."""

    nsg: str | None
    rule: str | None
    default_rule: bool
    reason: str
    direction: str


RECENT_FLOWS = 32768
"""Packet keys of flows past their first packet, remembered with their records, so that their next
packets skip the NIC lookups. Bounded: the memory per tracked flow stays the flow table's."""


class Conntrack:
    """Every NIC's flow table, and flow identity across them: the records a packet belongs to.

    At its NIC a record is keyed by the 5-tuple as that NIC sees it. A translated record is also indexed
    by the tuple its packets carry beyond the translation (`outside_key`), as Linux conntrack indexes a
    flow by its original and its reply tuple: a packet addressed to a public IP, a load-balancer frontend
    or a port a shared frontend handed out finds its flow by that one look-up. A leg is (NIC, key at the
    NIC, record or None, whether the packet travels as the flow's first did); in the recent-flow table a
    leg goes on with what the C fast path needs (the NIC's timeouts for the protocol, its table).
    """

    def __init__(self, scenario, nics_by_ip: dict, arriving: Callable, translated_ips: frozenset,
                 record_type: type, stats, snat, recent: MutableMapping, listener=None):
        self.nics_by_ip = nics_by_ip
        self.translated_ips = translated_ips
        self.arriving = arriving
        """`route.Router.arriving`: the NIC, address and port a packet to a translated address goes to."""
        self.stats = stats
        self.snat = snat
        self.recent = recent
        self.listener = listener
        self.tables: dict[str, FlowTable] = {}
        for nic in scenario.network_interfaces.values():
            timeouts = Timeouts(scenario.timeouts, scenario.virtual_networks[nic.vnet].flow_timeout_minutes)
            self.tables[nic.name] = FlowTable(timeouts, scenario.max_flows_per_nic, self._ended(nic.name),
                                              record_type)
        self.outside: dict[tuple, tuple] = {}
        """canonical outside key → ((NIC, record), ...): two when both ends of a flow are translated."""
        self._outcomes: dict[tuple, Outcome] = {}
        """(nsg, rule, reason, direction) → its Outcome, shared by every record decided alike."""
        self.expire_due: Callable[[FlowTable, float], tuple[int, int]] | None = None
        """`FastPath.expire_due` where C is built: `advance` in C when the order flows end in is not heard."""

    def nics_v4(self) -> dict[int, tuple]:
        """What the C fast path needs of each NIC by IPv4 address: the NIC, its table's records, the
        table, its TCP timeouts by state and its UDP timeout, and its name."""
        nics = {}
        for ip, nic in self.nics_by_ip.items():
            if ip < 2**32:
                table = self.tables[nic.name]
                nics[ip] = (nic, table.by_key, table, table.timeouts.of_protocol(TCP), table.timeouts.of_protocol(UDP),
                            nic.name)
        return nics

    def publics_v4(self, public_private: dict[int, int]) -> dict[int, tuple]:
        """Public IPv4 address → (what `nics_v4` gives of its NIC, the NIC's private address)."""
        nics = self.nics_v4()
        return {ip: (nics[private], private) for ip, private in public_private.items()
                if ip < 2**32 and private in nics}

    def leg_outcome(self, result, reason: str, direction: str) -> Outcome:
        """What a flow's record at one NIC says: the NSG and rule that allowed it there (`result`, the
        policy's at that NIC), else why it passed (`reason`, the flow's)."""
        if reason == "rules" and result.nsg is not None:
            return self.outcome(result.nsg, result.rule, "rules", direction)
        return self.outcome(None, None, "no-nsg" if reason == "rules" else reason, direction)

    def outcome(self, nsg: str | None, rule: str | None, reason: str, direction: str) -> Outcome:
        slot = (nsg, rule, reason, direction)
        outcome = self._outcomes.get(slot)
        if outcome is None:
            outcome = self._outcomes[slot] = Outcome(nsg, rule, rule in DEFAULT_RULE_NAMES, reason, direction)
        return outcome

    # -- finding a packet's records ---------------------------------------------------------------

    def legs(self, key, route_legs, ts: float, syn: bool) -> tuple[list, Any, bool]:
        """The legs of a packet whose route (for a new flow) is `route_legs`; its key as it finally
        travels when a record translated it (else None); whether any NIC knows the flow. A SYN on the
        5-tuple of a closed connection opens a new one: the closed records end here."""
        legs, translated, found = self._legs(key, route_legs, ts)
        if syn and found:
            for i, (nic, leg_key, record, forward) in enumerate(legs):
                if record is not None and record.state is TcpState.CLOSED:
                    self.tables[nic.name].remove(record, "closed", ts)
                    legs[i] = (nic, leg_key, None, forward)
        return legs, translated, found

    def _legs(self, key, route_legs, ts: float) -> tuple[list, Any, bool]:
        legs = []
        found = False
        tables = self.tables
        for leg in route_legs:
            record, forward = tables[leg.nic.name].find(leg.key, ts)
            if record is not None:
                if record.nat is not None:
                    return self._through_translations(key, ts)
                found = True
            legs.append((leg.nic, leg.key, record, forward))
        if self.outside and canonical(key) in self.outside:
            return self._through_translations(key, ts)
        return legs, None, found

    def _through_translations(self, key, ts: float) -> tuple[list, Any, bool]:
        """The legs of a packet of a translated flow: its source NIC's record translates what leaves it;
        what is addressed to a translation finds the record behind it by its outside key, else goes to
        the NIC a new flow's packet would (the flow is known there no more)."""
        proto, version, src, sport, dst, dport = key
        legs = []
        t = key
        tables = self.tables
        src_nic = self.nics_by_ip.get(ip_key(version, src))
        left = None
        if src_nic is not None:
            left, forward = tables[src_nic.name].find(t, ts)
            legs.append((src_nic, t, left, forward))
            if left is not None and left.nat is not None and forward == (left.outcome.direction == "Outbound"):
                t = (proto, version, left.nat.ip, left.nat.port, dst, dport)
        dst_nic = self.nics_by_ip.get(ip_key(version, dst))
        if dst_nic is None:
            for nic, record in self.outside.get(canonical(t), ()):
                nat = record.nat
                if record is not left and nat.ip == dst and nat.port == dport and \
                        tables[nic.name].get(record.key, ts) is record:
                    forward = record.outcome.direction != "Outbound"
                    t = record.initiator if forward else reverse(record.initiator)
                    legs.append((nic, t, record, forward))
                    return legs, (t if t != key else None), True
            back = self.arriving(src_nic, t)
            if back is not None:
                dst_nic = back.nic
                t = (proto, version, t[2], t[3], back.dst, back.dport)
        if dst_nic is not None:
            record, forward = tables[dst_nic.name].find(t, ts)
            legs.append((dst_nic, t, record, forward))
            if record is not None and record.nat is not None and forward == (record.outcome.direction == "Outbound"):
                t = (proto, version, record.nat.ip, record.nat.port, t[4], t[5])
        return legs, (t if t != key else None), True

    def pass_related(self, addresses, quoted, length: int, ts: float):
        """An ICMP error about a known flow, counted in it (it goes back to whoever sent the quoted
        packet): (NIC, record), or None when no flow is known."""
        found = self._related(addresses, quoted, ts)
        if found is None:
            return None
        nic, record, original = found
        count_packet(record, not original, length)
        return nic, record

    def _related(self, addresses, quoted, ts: float):
        """The leg of the flow a quoted packet belongs to, looked up at the NIC of each of the error's
        addresses, and for an address of no NIC beyond the translations (the quoted packet's source
        is then one)."""
        proto, version, src, sport, dst, dport = quoted
        for ip in addresses:
            nic = self.nics_by_ip.get(ip_key(version, ip))
            if nic is not None:
                record, forward = self.tables[nic.name].find(quoted, ts)
                if record is not None:
                    return nic, record, forward
                continue
            for nic, record in self.outside.get(canonical(quoted), ()):
                if record.nat.ip == src and record.nat.port == sport and \
                        self.tables[nic.name].get(record.key, ts) is record:
                    return nic, record, record.outcome.direction == "Outbound"
        return None

    # -- flows past their first packet ------------------------------------------------------------

    def recent_flow(self, key, ts: float):
        """The recent-flow entry of a packet's key while every record in it is live and not closed."""
        entry = self.recent.get(key)
        if entry is not None:
            for leg in entry[0]:
                record = leg[2]
                if not record.bucket or record.expires <= ts or record.state is TcpState.CLOSED:
                    return None
        return entry

    def remember(self, key, legs: list, translated) -> None:
        """A flow's next packets, both ways when nothing is translated, skip the path search (and take
        the C fast path when built). A flow is remembered at its second packet, likely to have many
        more, when that packet finds its records; from its first when it opens records at several NICs
        untranslated (VM to VM), which the C path, remembering a flow at one NIC itself, cannot."""
        recent = self.recent
        if len(recent) >= RECENT_FLOWS:
            recent.clear()
        recent[key] = self._recent_entry(legs, translated)
        # A reply to a public IP or frontend goes on to the NIC or backend behind it: not these legs backwards.
        if translated is None and ip_key(key[1], key[2]) not in self.translated_ips and \
                all(record.nat is None for _, _, record, _ in legs):
            back = [(nic, reverse(leg_key), record, not forward) for nic, leg_key, record, forward in reversed(legs)]
            recent[reverse(key)] = self._recent_entry(back, None)

    def _recent_entry(self, legs: list, translated) -> tuple:
        """(legs, translated, head): head is what a Verdict says of the flow."""
        tables = self.tables
        nic, _, record, _ = legs[-1]
        outcome = record.outcome
        return (tuple((nic, key, record, forward, tables[nic.name].timeouts.of_protocol(key[0]), tables[nic.name])
                      for nic, key, record, forward in legs), translated,
                (outcome.direction, nic.name, outcome.nsg, outcome.rule))

    def pass_known(self, legs, length: int, moves, ts: float):
        """A packet of a flow every NIC on its path knows: counted and timed at each; the flow's state
        after it (`moves`: the TCP transitions of its flags, None for other protocols)."""
        tables = self.tables
        state = None
        for nic, _, record, forward, *_ in legs:
            count_packet(record, forward, length)
            state = record.state
            if moves is not None:
                state = moves[state][forward]
            tables[nic.name].touch(record, state, ts)
        return state

    # -- new flows --------------------------------------------------------------------------------

    def open(self, nic, key, state, ts: float, outcome: Outcome, length: int, nat=None, started: bool = True):
        """The record of a new flow at a NIC, its first packet counted; None when the table is full.
        `started=False` leaves telling the listener to the caller (`started`), once every NIC has one."""
        record = self.tables[nic.name].open(key, state, ts, outcome, nat)
        if record is None:
            self.stats.flows_refused += 1
            return None
        record.packets_out = 1
        record.bytes_out = length
        if nat is not None:
            outside = canonical(outside_key(record))
            self.outside[outside] = self.outside.get(outside, ()) + ((nic, record),)
        if started:
            self.started(nic.name, record, ts)
        return record

    def open_legs(self, key, legs, results, reason: str, state, ts: float, length: int, fresh: bool):
        """The records of a new flow at each NIC of its route (`route.Leg`s, with the policy's result
        at each) that has none yet (`fresh`: the caller knows none has), a shared frontend's port
        handed out on the way. Returns (None, None, that port or None); or, when a table or the
        frontend's ports are full, (why, the NIC or None, None) with nothing kept."""
        created = []
        port = None  # the port a shared frontend handed out, which the legs after it see
        for leg, result in zip(legs, results):
            nic, nat, leg_key = leg.nic, leg.nat, leg.key
            if port is not None:
                leg_key = leg_key[:3] + (port,) + leg_key[4:]
            if not fresh:
                known = self.tables[nic.name].find(leg_key, ts)[0]
                if known is not None:
                    if known.nat is not None and known.nat.frontend is not None:
                        port = known.nat.port
                    continue
            if nat is not None and nat.frontend is not None:
                port = self.snat.allocate(nat.frontend, key)
                if port is None:
                    self.refuse(created, ts)
                    return "snat-exhausted", None, None
                nat = nat._replace(port=port)
            record = self.open(nic, leg_key, state, ts, self.leg_outcome(result, reason, leg.direction.value), length,
                               nat, started=False)
            if record is None:
                if nat is not None and nat.frontend is not None:
                    self.snat.release(nat.frontend, key, port)
                self.refuse(created, ts)
                return "flow-limit", nic.name, None
            created.append((nic, record))
        for nic, record in created:
            self.started(nic.name, record, ts)
        if fresh and (key[0] == TCP or key[0] == UDP) and all(leg.nat is None for leg in legs):
            self.remember(key, [(nic, leg.key, record, True) for leg, (nic, record) in zip(legs, created)], None)
        return None, None, port

    def started(self, nic_name: str, record, ts: float) -> None:
        self.stats.flows_created += 1
        if self.listener is not None:
            self.listener.flow_started(nic_name, record, ts)

    def refuse(self, created: list, ts: float) -> None:
        """Records a flow refused after some of its NICs had opened them end unreported."""
        for nic, record in created:
            self.tables[nic.name].remove(record, "refused", ts)

    def _ended(self, nic: str) -> Callable[[Any, str, float], None]:
        stats = self.stats

        def ended(record, why: str, when: float) -> None:
            if why == "closed":
                stats.flows_closed += 1
            elif why == "expired":
                stats.flows_expired += 1
            elif why == "flushed":
                stats.flows_flushed += 1
            elif why == "end-of-capture":
                stats.flows_open_at_end += 1
            nat = record.nat
            if nat is not None:
                outside = canonical(outside_key(record))
                kept = tuple(entry for entry in self.outside.get(outside, ()) if entry[1] is not record)
                if kept:
                    self.outside[outside] = kept
                else:
                    self.outside.pop(outside, None)
                if nat.frontend is not None:
                    self.snat.release(nat.frontend, record.initiator, nat.port)
            if self.listener is not None and why != "refused":
                self.listener.flow_ended(nic, record, why, when)
        return ended

    # -- the clock --------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Flows idle past their timeout end, in deadline order across the NICs, so that what a
        listener hears does not depend on which NICs share the run. When nothing hears of them and none
        is translated (no port goes back to a shared frontend), their order changes nothing: the C
        path ends them, table by table."""
        if self.expire_due is not None and self.listener is None and not self.outside:
            stats = self.stats
            for table in self.tables.values():
                if table.due and table.due[0] <= now:
                    closed, expired = self.expire_due(table, now)
                    stats.flows_closed += closed
                    stats.flows_expired += expired
            return
        ending = [(order, table, records) for order, table in enumerate(self.tables.values())
                  if (records := table.ending(now))]
        if len(ending) == 1:  # the common sweep: one NIC's records, already in deadline order
            _, table, records = ending[0]
            for record in records:
                table.expire(record, now)
        elif ending:
            due = [(record.expires, order, record.key, table, record) for order, table, records in ending
                   for record in records]
            due.sort(key=_deadline_order)
            for *_, table, record in due:
                table.expire(record, now)

    def end_all(self, why: str, now: float) -> None:
        for table in self.tables.values():
            table.end_all(why, now)

    def flush(self, nics: list[str], allowed: Callable[[Any], bool], now: float) -> None:
        """The flows at these NICs that the rules no longer allow end (an NSG with flush_connection)."""
        for name in nics:
            table = self.tables[name]
            for record in table:
                if not allowed(record.initiator):
                    table.remove(record, "flushed", now)


def count_packet(record, forward: bool, length: int) -> None:
    """A packet of the flow: `forward`, as its first packet went (out), else back (in)."""
    if forward:
        record.packets_out += 1
        record.bytes_out += length
    else:
        record.packets_in += 1
        record.bytes_in += length


def outside_key(record):
    """The 5-tuple of a translated record's first packet beyond its translation: the source replaced
    for a flow that left its NIC, the destination for one that arrived."""
    proto, version, a, a_port, b, b_port = record.initiator
    nat = record.nat
    if record.outcome.direction == "Outbound":
        return proto, version, nat.ip, nat.port, b, b_port
    return proto, version, a, a_port, nat.ip, nat.port


_deadline_order = operator.itemgetter(0, 1, 2)
