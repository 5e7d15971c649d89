"""The Dataplane: one packet at a time, with its timestamp, through the stages; a verdict out.

    frame ─ decode ─ fragments ─ route (legs: NIC, translation) ─ conntrack (records) ─┬─ known flow: pass
                                                                                       └─ new flow: policy → records

It never reads a clock or a file: the caller gives each packet's time (the capture's clock), and
files and terminals belong to `replay` and `cli`. Rule changes made through the Dataplane keep
live flows until they idle out, unless the NSG has `flush_connection`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Protocol, Sequence

from .addresses import ip_key
from .conntrack import (RECENT_FLOWS, Conntrack, FlowRecord, FragmentTable, Other, PureFlowRecord, TcpState,
                        Timeouts, tcp_first_state, tcp_next)
from .decode import Packet, Skip, decode_frame, decode_scapy
from .errors import DataplaneError
from .flows import ICMP, ICMPV6, TCP, UDP, Flow, flow_text, parse_flow
from .nat import SnatPorts
from .nsg import NetworkSecurityGroup
from .platform import PLATFORM_ADDRESSES
from .policy import ALLOW, DENY, Decision, Evaluation, Key, LegResult, Policy, combined
from .route import Route
from .rules import Direction, SecurityRule
from .topology import NetworkInterface, Scenario, load_scenario, single_nic_scenario

ECHO_TYPES = {ICMP: (8, 0), ICMPV6: (128, 129)}


class Verdict(NamedTuple):
    """What the dataplane did with one packet. `translated` is the packet's key after NAT, if changed."""

    ts: float
    decision: str  # Allow | Deny | Skip
    reason: str
    direction: str | None
    nic: str | None
    nsg: str | None
    rule: str | None
    state: str | None
    packet: Packet | None
    translated: Key | None = None
    detail: str = ""
    evaluations: tuple[Evaluation, ...] = ()

    @property
    def flow(self) -> str | None:
        p = self.packet
        if p is None:
            return None
        return flow_text((p.proto, p.version, p.src, p.sport, p.dst, p.dport))

    def to_json(self, index: int | None = None) -> dict[str, Any]:
        return {"index": index, "ts": self.ts, "flow": self.flow,
                **_tail_fields(*self._tail())}

    def json_line(self, index: int) -> str:
        """`json.dumps(self.to_json(index))`, made faster: what follows the flow repeats packet after
        packet (a flow's NIC, rule and state), so its JSON is kept."""
        ts = self.ts
        flow = self.flow
        if flow is None or type(ts) is not float:
            return json.dumps(self.to_json(index))
        return f'{{"index": {index}, "ts": {ts!r}, "flow": "{flow}", {_json_tail(*self._tail())}'

    def tsv_line(self, index: int) -> str:
        """The line's fields tab-separated, in `VERDICT_COLUMNS`' order (for Parquet, which reads them far
        faster than JSON): `tsv_row(self.to_json(index))`, made faster as `json_line` is."""
        ts = self.ts
        flow = self.flow
        if flow is None or type(ts) is not float:
            return tsv_row(self.to_json(index))
        return f"{index}\t{ts!r}\t{flow}\t{_tsv_tail(*self._tail())}"

    def _tail(self) -> tuple:
        return (self.direction, self.nic, self.decision, self.nsg, self.rule, self.reason, self.state, self.translated,
                self.detail)


def _tail_fields(direction, nic, decision, nsg, rule, reason, state, translated, detail) -> dict[str, Any]:
    """A verdict line's fields after its flow, in the contract's order."""
    data = {"direction": direction, "nic": nic, "decision": decision, "nsg": nsg, "rule": rule, "reason": reason,
            "state": state}
    if translated is not None:
        data["translated"] = flow_text(translated)
    if detail:
        data["detail"] = detail
    return data


def _json_tail(*fields) -> str:
    """The JSON of a verdict line after its flow (with the closing brace), kept by the fields it is made of."""
    tail = _JSON_TAILS.get(fields)
    if tail is None:
        if len(_JSON_TAILS) >= 4096:
            _JSON_TAILS.clear()
        tail = _JSON_TAILS[fields] = json.dumps(_tail_fields(*fields))[1:]
    return tail


_JSON_TAILS: dict[tuple, str] = {}

VERDICT_COLUMNS = ("index", "ts", "flow", "direction", "nic", "decision", "nsg", "rule", "reason", "state",
                   "translated", "detail", "packets", "bytes")
"""The fields of a verdict line in order, as `tsv_row` writes them: a packet's have no packets and bytes,
a flow-log flow's have them."""


def tsv_field(value: Any) -> str:
    """A value as a tab-separated field: None empty (null), text quoted as CSV quotes it when it holds a tab,
    a line break or a quote, or is empty (an empty string, not null)."""
    if value is None:
        return ""
    text = value if type(value) is str else repr(value) if type(value) is float else str(value)
    if not text or "\t" in text or "\n" in text or "\r" in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def tsv_row(fields: dict[str, Any]) -> str:
    """A verdict line's fields (`Verdict.to_json`, or a flow-log flow's), tab-separated in `VERDICT_COLUMNS`'
    order: what is missing is null, as in the JSON line."""
    return "\t".join(tsv_field(fields.get(name)) for name in VERDICT_COLUMNS)


def _tsv_tail(*fields) -> str:
    """`tsv_row` after a verdict line's flow, kept by the fields it is made of."""
    tail = _TSV_TAILS.get(fields)
    if tail is None:
        if len(_TSV_TAILS) >= 4096:
            _TSV_TAILS.clear()
        tail = _TSV_TAILS[fields] = tsv_row(_tail_fields(*fields)).split("\t", 3)[3]
    return tail


def _tsv_tail_bytes(*fields) -> bytes:
    """`_tsv_tail` as the C walk writes it (the C path keeps what it made)."""
    return _tsv_tail(*fields).encode()


_TSV_TAILS: dict[tuple, str] = {}


@dataclass
class Statistics:
    packets: int = 0
    allowed: int = 0
    denied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    flows_created: int = 0
    flows_closed: int = 0
    flows_expired: int = 0
    flows_flushed: int = 0
    flows_refused: int = 0
    flows_open_at_end: int = 0


class FlowListener(Protocol):
    """Told when flow records begin and end, as flow logs need."""

    def flow_started(self, nic: str, record: FlowRecord, ts: float) -> None: ...

    def flow_ended(self, nic: str, record: FlowRecord, why: str, ts: float) -> None:
        """why is 'expired', 'closed', 'flushed' or 'end-of-capture'."""


try:
    from ._fastpath import STOP_AFTER_DENY, STOP_BEFORE, FastPath, RecentTable
except ImportError:  # installed without a C compiler
    FastPath = RecentTable = None


class Dataplane:
    """Packets and timestamps in, verdicts out, with flow records per NIC.

    `accelerated=False` keeps every packet on the Python path even where the C extension is
    built: the tests compare the two.
    """

    def __init__(self, scenario: Scenario, *, listener: FlowListener | None = None, accelerated: bool = True):
        fast = accelerated and FastPath is not None
        self.scenario = scenario
        self.policy = policy = Policy(scenario)
        self._stats = Statistics()
        self._fragments = FragmentTable(Timeouts(scenario.timeouts).values["fragment"])
        self._nics_by_ip = policy.nics_by_ip
        translated_ips = frozenset(policy.translations.public) | frozenset(policy.translations.frontends)
        self.conntrack = Conntrack(scenario, self._nics_by_ip, policy.route.arriving, translated_ips,
                                   FlowRecord if fast else PureFlowRecord, self._stats, SnatPorts(),
                                   RecentTable(RECENT_FLOWS) if fast else {}, listener)
        self._next_sweep = float("-inf")
        self._fast = FastPath(self.conntrack.recent, TCP_MOVES_BY_FLAGS, CLOSED, Packet, Verdict,
                              self.conntrack.nics_v4(), self._new_at_nic, Direction.INBOUND,
                              frozenset(ip for ip in translated_ips if ip < 2**32),
                              self.conntrack.publics_v4(policy.translations.public_private),
                              self._new_translated) if fast else None
        if fast:
            self.conntrack.expire_due = self._fast.expire_due
            self._fast.verdict_lines(_json_tail)
            self._fast.decide_new_flows(self._chain_for_c, self._decided_in_c, self._decided_between_in_c,
                                        tuple(TCP_FIRST_STATES), Other.ACTIVE, PLATFORM_ADDRESSES,
                                        listener.flow_started if listener is not None else None)
        self._fast_process = self._fast.process if fast else None
        self.pass_frames: Callable[..., tuple[int, float | None, Any]] | None = \
            self._fast.pass_frames if fast else None
        """Where C is built, for a replay that needs no Verdict per packet: see `FastPath.pass_frames`."""
        self.pass_records: Callable[[Any, int, tuple, float, float, int], tuple[int, int, float, int, list]] | None = \
            self._fast.pass_records if fast else None
        """`pass_frames` over a capture's buffer (`replay.Capture` calls it): see `FastPath.pass_records`."""
        self.read_frames: Callable[..., tuple[int, int, float, int, list]] | None = \
            self._fast.read_frames if fast else None
        """A capture's frames made in C, for a replay that decides each packet in Python (`replay.read_in_c`,
        `workers.ShardFrames.read`): see `FastPath.read_frames`."""
        self._route = policy.route.legs

    def walk_with(self, other: "Dataplane") -> Callable[..., tuple] | None:
        """whatif's C walk of a capture through this dataplane and `other` (`FastPath.pass_pair`, other's
        C path bound): for `Capture.walk(walk, until, limit, shard, tally, noted, known)`; None without C."""
        if self._fast is None or other._fast is None:
            return None
        pair, theirs = self._fast.pass_pair, other._fast

        def walk(buffer: Any, pos: int, format: tuple, last: float, until: float, limit: int, shard: Any,
                 tally: Any, noted: Callable, known: tuple) -> tuple:
            return pair(buffer, pos, format, last, until, limit, theirs, shard, tally, noted, known)
        return walk

    def tab_separated_lines(self) -> None:
        """The verdict lines C walks write are tab-separated (`Verdict.tsv_line`), for Parquet."""
        if self._fast is not None:
            self._fast.verdict_lines(_tsv_tail_bytes, True)

    def walks_stop_at_new_flows(self, decided: bool) -> None:
        """Walks of a capture (`pass_records`) stop at new flows, for a caller that hears of their verdicts
        in order: before each first packet, which the caller then processes itself (the denied packets,
        written frame by frame), or, `decided`, after deciding in C a flow it denies, its verdict the last
        of the walk's (flow logs: a deny tuple before the next flow's begin)."""
        if self._fast is not None:
            self._fast.new_flows = STOP_AFTER_DENY if decided else STOP_BEFORE

    @property
    def walk_taken(self) -> int:
        """While a walk decides a new flow in C, the records it took before that flow's packet, else -1."""
        return self._fast.walk_taken if self._fast is not None else -1

    @property
    def stats(self) -> Statistics:
        """The counters, with the packets the C fast path decided folded in."""
        fast = self._fast
        if fast is not None and fast.packets:
            stats = self._stats
            stats.packets += fast.packets
            stats.allowed += fast.allowed
            stats.denied += fast.denied
            stats.flows_created += fast.created
            fast.packets = fast.allowed = fast.denied = fast.created = 0
        return self._stats

    def _chain_for_c(self, nic: NetworkInterface, outbound: bool) -> tuple:
        return self.policy.chain_for_c(nic, Direction.OUTBOUND if outbound else Direction.INBOUND)

    def _decided_in_c(self, nic: NetworkInterface, slot: int | tuple[int, ...]) -> tuple:
        """How the C path decides the new flows from outside to a NIC whose rules matched at `slot`, as
        `_new_at_nic` would: (denied, the policy's result, the verdict's direction and NIC, the outcome
        in the flow's record when allowed)."""
        result = self.policy.result_of_slot(nic, Direction.INBOUND, slot)
        where = Direction.INBOUND.value
        return result.access == DENY, result, where, nic.name, self.conntrack.outcome(result.nsg, result.rule,
                                                                                       result.reason, where)

    def _decided_between_in_c(self, source: NetworkInterface, destination: NetworkInterface,
                              slots: tuple) -> tuple:
        """The same for new flows between two NICs, untranslated, whose rules matched at these slots (the
        source's outbound, the destination's inbound), as `_new` would: the outcome in each NIC's record."""
        policy = self.policy
        results = (policy.result_of_slot(source, Direction.OUTBOUND, slots[0]),)
        if results[0].access != DENY:
            results += (policy.result_of_slot(destination, Direction.INBOUND, slots[1]),)
        decision, nsg, rule, reason, evaluations = combined(results)
        direction, nic = (evaluations[-1].direction, evaluations[-1].nic) if evaluations else \
            (Direction.INBOUND.value, destination.name)  # as Decision.where on this route of two legs
        outcomes = tuple(self.conntrack.leg_outcome(result, reason, where.value)
                         for result, where in zip(results, (Direction.OUTBOUND, Direction.INBOUND)))
        return (decision == DENY, LegResult(decision, nsg, rule, reason, evaluations, None), direction, nic,
                *outcomes)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "Dataplane":
        return cls(load_scenario(path), **kwargs)

    @classmethod
    def for_nsg(cls, nsg: NetworkSecurityGroup, *, nic_ip: str = "10.0.0.4", address_space: str = "10.0.0.0/16",
                public_ip: str | None = None, **kwargs) -> "Dataplane":
        """One NSG on one NIC (`vm-nic`, in VNet `vnet`), for tests and quick experiments."""
        return cls(single_nic_scenario(nsg, nic_ip, address_space, public_ip), **kwargs)

    # -- the API around packets ------------------------------------------------------------------

    def check(self, flow: str | Flow) -> Decision:
        """A stateless decision for a new flow, as `dataplane check --scenario` gives."""
        return self.policy.decide(parse_flow(flow) if isinstance(flow, str) else flow)

    def nsg(self, name: str) -> NetworkSecurityGroup:
        try:
            return self.scenario.network_security_groups[name]
        except KeyError:
            raise DataplaneError(f"no network security group named {name!r} in the scenario") from None

    def add_rule(self, nsg: str, rule: SecurityRule | dict, now: float | None = None) -> SecurityRule:
        group = self.nsg(nsg)
        added = group.add_rule(rule)
        self._changed(group, now)
        return added

    def replace_rule(self, nsg: str, rule: SecurityRule | dict, now: float | None = None) -> SecurityRule:
        group = self.nsg(nsg)
        replaced = group.replace_rule(rule)
        self._changed(group, now)
        return replaced

    def remove_rule(self, nsg: str, name: str, now: float | None = None) -> SecurityRule:
        group = self.nsg(nsg)
        removed = group.remove_rule(name)
        self._changed(group, now)
        return removed

    def replace_nsg(self, nsg: NetworkSecurityGroup, now: float | None = None) -> None:
        """Deploy a new version of an NSG (same name), as `replay --update` does."""
        self.nsg(nsg.name)
        self.scenario.network_security_groups[nsg.name] = nsg
        self._changed(nsg, now)

    def _changed(self, nsg: NetworkSecurityGroup, now: float | None) -> None:
        """Existing flows keep their verdict (reference §8) unless the NSG flushes connections."""
        if nsg.flush_connection:
            nics = [nic.name for nic in self.scenario.network_interfaces.values()
                    if nsg.name in (nic.nsg, nic.subnet.nsg)]
            self.conntrack.flush(nics, lambda key: self.policy.decide_key(key).allowed,
                                 now if now is not None else self._next_sweep)

    def flows(self) -> Iterator[tuple[str, FlowRecord]]:
        return ((name, record) for name, table in self.conntrack.tables.items() for record in table)

    def flow_counts(self) -> dict[str, int]:
        return {name: len(table) for name, table in self.conntrack.tables.items()}

    def advance(self, now: float) -> None:
        """Let the capture clock run to `now`: idle flows end (`Conntrack.advance`), as do old fragments."""
        self.conntrack.advance(now)
        self._next_sweep = now + 1.0
        if self._fast is not None:
            self._fast.next_sweep = self._next_sweep
        self._fragments.advance(now)

    def pass_time(self, now: float) -> None:
        """The clock of a packet this Dataplane does not see (another shard's): the sweep its
        `process` would have made."""
        if now >= self._next_sweep:
            self.advance(now)

    def close(self, now: float) -> None:
        """End of the capture: every live flow ends, so flow logs can close them out."""
        self.advance(now)
        self.conntrack.end_all("end-of-capture", now)

    # -- one packet --------------------------------------------------------------------------------

    def process(self, packet: bytes | Packet | Any, ts: float, linktype: int = 1) -> Verdict:
        """Decide one packet (raw frame bytes, a decoded Packet, or a scapy packet) at time `ts`."""
        if linktype == 1 and self._fast_process is not None and type(packet) is bytes:
            p = self._fast_process(packet, ts)
            if type(p) is Verdict:
                return p
            if p is None:
                p = decode_frame(packet, linktype)
            elif ts < self._next_sweep:  # the common frame (never a fragment), of no live recent flow
                self._stats.packets += 1
                return self._packet(p, ts)
            # else a sweep is due, and the C path did not look at the recent flows: below, as without it
        elif isinstance(packet, (bytes, bytearray, memoryview)):
            p = decode_frame(bytes(packet), linktype)
        elif isinstance(packet, Packet):
            p = packet
        else:
            p = decode_scapy(packet)
        self._stats.packets += 1
        if ts >= self._next_sweep:
            self.advance(ts)
        if isinstance(p, Skip):
            return self._skip(ts, p.reason, p.detail, None)
        if p.fragmented:
            if p.frag_offset > 0:
                return self._later_fragment(p, ts)
        elif p[1] == TCP or p[1] == UDP:
            recent = self.conntrack.recent_flow((p[1], p[0], p[2], p[4], p[3], p[5]), ts)
            if recent is not None:
                return self._known(p, ts, recent[0], recent[1])
        verdict = self._packet(p, ts)
        if p.fragmented:
            self._fragments.remember(p, ts, verdict)
        return verdict

    def _skip(self, ts: float, reason: str, detail: str, p: Packet | None) -> Verdict:
        skipped = self._stats.skipped
        skipped[reason] = skipped.get(reason, 0) + 1
        return Verdict(ts, "Skip", reason, None, None, None, None, None, p, None, detail)

    def _later_fragment(self, p: Packet, ts: float) -> Verdict:
        """A non-first fragment follows its first fragment; without one it is decided alone (README)."""
        v = self._fragments.first(p, ts)
        if v is None:
            return self._packet(p, ts, fragment_alone=True)
        if v.decision == ALLOW and v.state is not None:
            # through the first fragment's flow records, so the flow's packets and bytes count it
            through = self._packet(v.packet._replace(length=p.length, tcp_flags=0), ts)
            return through._replace(reason="fragment", packet=p)
        if v.decision == ALLOW:
            self._stats.allowed += 1
        elif v.decision == DENY:
            self._stats.denied += 1
        else:
            return self._skip(ts, v.reason, v.detail, p)
        return Verdict(ts, v.decision, "fragment", v.direction, v.nic, v.nsg, v.rule, v.state, p, v.translated)

    def _packet(self, p: Packet, ts: float, fragment_alone: bool = False) -> Verdict:
        version, proto, src, dst, sport, dport = p[0], p[1], p[2], p[3], p[4], p[5]
        if p[7] >= 0:  # ICMP
            if p.inner is not None:
                return self._icmp_error(p, ts)
            if p.icmp_type in ECHO_TYPES.get(proto, ()):
                sport = dport = p.icmp_id
        key = (proto, version, src, sport, dst, dport)
        route = self._route(key)
        legs, translated, found = self.conntrack.legs(key, route.legs, ts, p[6] & SYN_ACK == SYN)
        if not legs:
            if route.blocked is None:
                return self._skip(ts, "not-in-scenario", "neither address belongs to a NIC of the scenario", p)
        elif legs[0][2] is not None and legs[-1][2] is not None:
            if proto == TCP or proto == UDP:
                self.conntrack.remember(key, legs, translated)
            return self._known(p, ts, legs, translated)
        elif not found and len(legs) == 1 and route.legs[0].nat is None and route.blocked is None:
            return self._new_at_nic(p, ts, key, legs[0][0], route.legs[0].direction, fragment_alone)
        return self._new(p, ts, key, fragment_alone, route, fresh=not found)

    def _known(self, p: Packet, ts: float, legs: Sequence[tuple], translated: Key | None) -> Verdict:
        """Every NIC on the path has a flow record: the packet passes without rule evaluation."""
        state = self.conntrack.pass_known(legs, p[10], TCP_MOVES_BY_FLAGS[p[6]] if p[1] == TCP else None, ts)
        self._stats.allowed += 1
        nic, _, record = legs[-1][:3]
        outcome = record.outcome
        return _new_tuple(Verdict, (ts, ALLOW, "flow", outcome.direction, nic.name, outcome.nsg, outcome.rule,
                                    state._value_, p, translated, "", ()))

    def _new_at_nic(self, p: Packet, ts: float, key: Key, nic: NetworkInterface, direction: Direction,
                    fragment_alone: bool) -> Verdict:
        """The fast path of `_new` for the common flow: one NIC, nothing translated. It asks the
        policy for that NIC's leg alone; `tests/test_pipeline_fast_path.py` proves it decides as
        `Policy.decide_key` does."""
        access, nsg, rule, reason, evaluations, _ = self.policy.leg(nic, direction, key)
        where = DIRECTION_NAMES[direction]
        stats = self._stats
        if access == DENY:
            stats.denied += 1
            return _new_tuple(Verdict, (ts, DENY, reason, where, nic.name, nsg, rule, None, p, None, "", evaluations))
        if fragment_alone:
            stats.allowed += 1
            return _new_tuple(Verdict, (ts, ALLOW, reason, where, nic.name, nsg, rule, None, p, None, "", evaluations))
        state: TcpState | Other = TCP_FIRST_STATES[p[6]] if key[0] == TCP else Other.ACTIVE
        conntrack = self.conntrack
        if conntrack.open(nic, key, state, ts, conntrack.outcome(nsg, rule, reason, where), p[10]) is None:
            return self._refuse(p, ts, "flow-limit", nic.name)
        stats.allowed += 1
        return _new_tuple(Verdict, (ts, ALLOW, reason, where, nic.name, nsg, rule, state._value_, p, None, "",
                                    evaluations))

    def _new_translated(self, p: Packet, ts: float, key: Key) -> Verdict:
        """The first packet of a flow from outside to a NIC's public IP, its NIC holding no record of it:
        where `_packet` would arrive after its look-ups (the C fast path hands such packets here)."""
        return self._new(p, ts, key, False, self._route(key), fresh=True)

    def _new(self, p: Packet, ts: float, key: Key, fragment_alone: bool, route: Route | None = None,
             fresh: bool = False) -> Verdict:
        """A flow no NIC on its route knows yet (`fresh`: the caller looked), or knows at some NICs only."""
        if route is None:
            route = self._route(key)
        decision, results = self.policy.evaluate(key, route)
        legs = () if route.blocked is not None else route.legs
        direction, nic_name = decision.where(route)
        translated = decision.translated if decision.translated != key else None
        if decision.decision != ALLOW or fragment_alone:
            if decision.decision == ALLOW:
                self._stats.allowed += 1
            else:
                self._stats.denied += 1
            return _new_tuple(Verdict, (ts, decision.decision, decision.reason, direction, nic_name, decision.nsg,
                                        decision.rule, None, p, translated, "", decision.evaluations))
        state: TcpState | Other = TCP_FIRST_STATES[p[6]] if key[0] == TCP else Other.ACTIVE
        refused, refused_at, port = self.conntrack.open_legs(key, legs, results, decision.reason, state, ts, p[10],
                                                             fresh)
        if refused is not None:
            return self._refuse(p, ts, refused, refused_at)
        if port is not None:
            translated = decision.translated[:3] + (port,) + decision.translated[4:]
        self._stats.allowed += 1
        return _new_tuple(Verdict, (ts, ALLOW, decision.reason, direction, nic_name, decision.nsg, decision.rule,
                                    state._value_, p, translated, "", decision.evaluations))

    def _refuse(self, p: Packet, ts: float, reason: str, nic: str | None = None) -> Verdict:
        self._stats.denied += 1
        return Verdict(ts, DENY, reason, None, nic, None, None, None, p)

    def _icmp_error(self, p: Packet, ts: float) -> Verdict:
        """An ICMP error about a known flow passes as related to it; otherwise it is a packet of its own."""
        inner = p.inner
        related = self.conntrack.pass_related((p.src, p.dst), (inner.proto, inner.version, inner.src, inner.sport,
                                                               inner.dst, inner.dport), p.length, ts)
        if related is not None:
            self._stats.allowed += 1
            nic, record = related
            outcome = record.outcome
            return Verdict(ts, ALLOW, "flow", outcome.direction, nic.name, outcome.nsg, outcome.rule, "related", p)
        nics = self._nics_by_ip
        if ip_key(p.version, p.src) not in nics and ip_key(p.version, p.dst) not in nics and \
                ip_key(p.version, p.dst) not in self.policy.translations.frontends:
            return self._skip(ts, "not-in-scenario", "neither address belongs to a NIC of the scenario", p)
        return self._new(p, ts, (p.proto, p.version, p.src, 0, p.dst, 0), fragment_alone=True)


SYN, SYN_ACK = 0x02, 0x12
CLOSED = TcpState.CLOSED
_new_tuple = tuple.__new__
TCP_MOVES_BY_FLAGS = [{state: (tcp_next(state, flags, False), tcp_next(state, flags, True)) for state in TcpState}
                      for flags in range(256)]
"""`tcp_next` tabulated: [flags][state][from initiator] → next state, for the per-packet path."""
TCP_FIRST_STATES = [tcp_first_state(flags) for flags in range(256)]
DIRECTION_NAMES = {direction: direction.value for direction in Direction}
