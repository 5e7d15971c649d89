"""The Dataplane: one packet at a time, with its timestamp, through the stages; a verdict out.

    frame ─ decode ─ fragments ─ legs (NIC, translation) ─ flow records ─┬─ known flow: pass
                                                                         └─ new flow: policy → records

It never reads a clock or a file: the caller gives each packet's time (the capture's clock), and
files and terminals belong to `replay` and `cli`. Rule changes made through the Dataplane keep
live flows until they idle out, unless the NSG has `flush_connection`.
"""

from __future__ import annotations

import ipaddress
import operator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, MutableMapping, NamedTuple, Protocol, Sequence

from .addresses import V6, ip_key
from .conntrack import (FlowRecord, FlowTable, FragmentTable, Other, PureFlowRecord, TcpState, Timeouts,
                        tcp_first_state, tcp_next)
from .decode import Packet, Skip, decode_frame, decode_scapy
from .errors import DataplaneError
from .flows import ICMP, ICMPV6, TCP, UDP, Flow, key_to_flow, parse_flow
from .nat import SnatPorts
from .nsg import NetworkSecurityGroup
from .policy import ALLOW, DENY, Decision, Evaluation, Key, Policy
from .route import Route
from .rules import DEFAULT_RULE_NAMES, Direction, SecurityRule
from .topology import (NetworkInterface, Scenario, load_scenario, scenario_from_document)

RECENT_FLOWS = 32768
"""Packet keys of flows past their first packet, remembered with their records, so that their next
packets skip the NIC lookups. Bounded: the memory per tracked flow stays the flow table's."""
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
        return str(key_to_flow((p.proto, p.version, p.src, p.sport, p.dst, p.dport)))

    def to_json(self, index: int | None = None) -> dict[str, Any]:
        data = {"index": index, "ts": self.ts, "flow": self.flow, "direction": self.direction, "nic": self.nic,
                "decision": self.decision, "nsg": self.nsg, "rule": self.rule, "reason": self.reason,
                "state": self.state}
        if self.translated is not None:
            data["translated"] = str(key_to_flow(self.translated))
        if self.detail:
            data["detail"] = self.detail
        return data


class Outcome(NamedTuple):
    """How a flow was decided at one NIC; shared by every flow decided alike."""

    nsg: str | None
    rule: str | None
    default_rule: bool
    reason: str
    direction: str


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
    from ._fastpath import FastPath, RecentTable
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
        self.policy = Policy(scenario)
        self._stats = Statistics()
        self.listener = listener
        self._snat = SnatPorts()
        self._fragments = FragmentTable(Timeouts(scenario.timeouts).values["fragment"])
        self._tables: dict[str, FlowTable] = {}
        for nic in scenario.network_interfaces.values():
            timeouts = Timeouts(scenario.timeouts, scenario.virtual_networks[nic.vnet].flow_timeout_minutes)
            self._tables[nic.name] = FlowTable(timeouts, scenario.max_flows_per_nic, self._ended(nic.name),
                                               FlowRecord if fast else PureFlowRecord)
        self._nics_by_ip = self.policy.nics_by_ip
        self._translations = self.policy.translations
        self._next_sweep = float("-inf")
        self._outcomes: dict[tuple, Outcome] = {}
        self._recent: MutableMapping[Key, tuple[tuple, Key | None, tuple]] = RecentTable(RECENT_FLOWS) if fast else {}
        self._translated_ips = frozenset(self._translations.public) | frozenset(self._translations.frontends)
        nics_v4 = self._nics_v4()
        publics = {ip: (nics_v4[private], private) for ip, private in self._translations.public_private.items()
                   if ip < 2**32 and private in nics_v4}
        self._fast = FastPath(self._recent, TCP_MOVES_BY_FLAGS, CLOSED, Packet, Verdict, nics_v4,
                              self._new_at_nic, Direction.INBOUND,
                              frozenset(ip for ip in self._translated_ips if ip < 2**32), publics,
                              self._new_translated) if fast else None
        self._fast_process = self._fast.process if fast else None
        self.pass_frames: Callable[[Iterator, float, int], tuple[int, float | None, Any]] | None = \
            self._fast.pass_frames if fast else None
        """Where the C extension is built, for callers that need no Verdict for the packets of busy
        flows (a replay without per-packet outputs): `pass_frames(frames, until, limit)` takes
        (ts, linktype, data, ...) frames from the iterator and passes those of recent flows (counted
        in `stats`), stopping before a frame at or after `until` or one it cannot pass, or after
        `limit` passed. It returns how many passed, the last one's time, and the frame it stopped at
        (None at the end of the frames or the limit), which the caller hands to `process`; or, when
        the frames raised, the exception, which the caller raises once it has counted what passed."""
        self.pass_records: Callable[[Any, int, tuple, float, float, int], tuple[int, int, float, int, list]] | None = \
            self._fast.pass_records if fast else None
        """`pass_frames` over a capture's buffer (`replay.Capture.pass_records` calls it): the records of
        recent flows pass without Python objects, and new flows from outside to a NIC are decided as
        `process` decides them; it returns how many it took, where it stopped, the last time it took,
        how many times went backwards, and the verdicts of the new flows."""
        self._router = self.policy.route
        self._route = self._router.legs

    def _nics_v4(self) -> dict[int, tuple]:
        """What the C fast path needs of each NIC by IPv4 address: the NIC, its table's records, the
        table, its TCP timeouts by state and its UDP timeout, and its name."""
        nics = {}
        for ip, nic in self._nics_by_ip.items():
            if ip < 2**32:
                table = self._tables[nic.name]
                nics[ip] = (nic, table.by_key, table, table.timeouts.of_protocol(TCP), table.timeouts.of_protocol(UDP),
                            nic.name)
        return nics

    @property
    def stats(self) -> Statistics:
        """The counters, with the packets the C fast path decided folded in."""
        fast = self._fast
        if fast is not None and fast.packets:
            self._stats.packets += fast.packets
            self._stats.allowed += fast.allowed
            fast.packets = fast.allowed = 0
        return self._stats

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "Dataplane":
        return cls(load_scenario(path), **kwargs)

    @classmethod
    def for_nsg(cls, nsg: NetworkSecurityGroup, *, nic_ip: str = "10.0.0.4", address_space: str = "10.0.0.0/16",
                public_ip: str | None = None, **kwargs) -> "Dataplane":
        """One NSG on one NIC (`vm-nic`, in VNet `vnet`), for tests and quick experiments."""
        net = ipaddress.ip_network(address_space)
        nic: dict[str, Any] = {"name": "vm-nic", "subnet": "vnet/default", "private_ips": [nic_ip]}
        if public_ip:
            nic["public_ip"] = public_ip
        doc = {"virtual_networks": [{"name": "vnet", "address_space": [str(net)],
                                     "subnets": [{"name": "default", "prefix": str(net)}]}],
               "network_interfaces": [nic]}
        scenario = scenario_from_document(doc)
        scenario.network_security_groups[nsg.name] = nsg
        scenario.network_interfaces["vm-nic"] = replace(scenario.network_interfaces["vm-nic"], nsg=nsg.name)
        return cls(scenario, **kwargs)

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
        if not nsg.flush_connection:
            return
        when = now if now is not None else self._next_sweep
        for nic in self.scenario.network_interfaces.values():
            if nsg.name not in (nic.nsg, nic.subnet.nsg):
                continue
            table = self._tables[nic.name]
            for record in table:
                if not self.policy.decide_key(record.initiator).allowed:
                    table.remove(record, "flushed", when)

    def flows(self) -> Iterator[tuple[str, FlowRecord]]:
        for name, table in self._tables.items():
            for record in table:
                yield name, record

    def flow_counts(self) -> dict[str, int]:
        return {name: len(table) for name, table in self._tables.items()}

    def advance(self, now: float) -> None:
        """Let the capture clock run to `now`: flows idle past their timeout end, in deadline order
        across the NICs, so that what a listener hears does not depend on which NICs share the run."""
        ending = [(order, table, records) for order, table in enumerate(self._tables.values())
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
        for table in self._tables.values():
            table.end_all("end-of-capture", now)

    def _ended(self, nic: str) -> Callable[[FlowRecord, str, float], None]:
        def ended(record: FlowRecord, why: str, when: float) -> None:
            if why == "closed":
                self._stats.flows_closed += 1
            elif why == "expired":
                self._stats.flows_expired += 1
            elif why == "flushed":
                self._stats.flows_flushed += 1
            elif why == "end-of-capture":
                self._stats.flows_open_at_end += 1
            nat = record.nat
            if nat is not None and nat.frontend is not None:
                self._snat.release(nat.frontend, record.initiator, nat.port)
            if self.listener is not None and why != "refused":
                self.listener.flow_ended(nic, record, why, when)
        return ended

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
            recent = self._recent.get((p[1], p[0], p[2], p[4], p[3], p[5]))
            if recent is not None:
                for leg in recent[0]:
                    record = leg[2]
                    if not record.bucket or record.expires <= ts or record.state is CLOSED:
                        break
                else:
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
        legs = []  # (nic, key at the NIC, record or None, forward)
        translated = None
        found = walked = False
        tables = self._tables
        for leg in route.legs:
            record, forward = tables[leg.nic.name].find(leg.key, ts)
            if record is not None:
                if record.nat is not None:
                    walked = True
                    break
                found = True
            legs.append((leg.nic, leg.key, record, forward))
        else:
            owners = self._snat.owners
            walked = bool(owners) and (proto, version, dst, dport, src, sport) in owners
        if walked:
            legs, translated = self._through_translations(key, ts)
            found = True
        if p[6] & SYN_ACK == SYN and found:
            self._end_closed(legs, ts)
        if not legs:
            if route.blocked is None:
                return self._skip(ts, "not-in-scenario", "neither address belongs to a NIC of the scenario", p)
        elif legs[0][2] is not None and legs[-1][2] is not None:
            if proto == TCP or proto == UDP:
                self._remember(key, legs, translated)
            return self._known(p, ts, legs, translated)
        elif not found and len(legs) == 1 and route.legs[0].nat is None and route.blocked is None:
            return self._new_at_nic(p, ts, key, legs[0][0], route.legs[0].direction, fragment_alone)
        return self._new(p, ts, key, fragment_alone, route, fresh=not found)

    def _through_translations(self, key: Key, ts: float) -> tuple[list, Key | None]:
        """The legs of a packet of a translated flow, each NIC's record translating the key the next
        one sees, and the key as it finally travels (None when unchanged)."""
        proto, version, src, sport, dst, dport = key
        legs = []
        t = key
        tables = self._tables
        src_nic = self._nics_by_ip.get(ip_key(version, src))
        if src_nic is not None:
            record, forward = tables[src_nic.name].find(t, ts)
            legs.append((src_nic, t, record, forward))
            if record is not None and record.nat is not None and forward == (record.outcome.direction == "Outbound"):
                t = (proto, version, record.nat.ip, record.nat.port, dst, dport)
        dst_nic = self._nics_by_ip.get(ip_key(version, dst))
        if dst_nic is None:
            back = self._snat.owners.get((proto, version, dst, dport, t[2], t[3]))
            if back is None and (src_nic is None or ip_key(version, dst) in self._translations.frontends
                                 or not self.policy.virtual_network(src_nic.vnet).contains(version, dst)):
                inbound = self._router.inbound(proto, version, t[2], t[3], dst, dport)
                if inbound is not None and inbound.nic is not None:
                    back = (inbound.nic, inbound.dst, inbound.dport)
            if back is not None:
                dst_nic, private, private_port = back
                t = (proto, version, t[2], t[3], private, private_port)
        if dst_nic is not None:
            record, forward = tables[dst_nic.name].find(t, ts)
            legs.append((dst_nic, t, record, forward))
            if record is not None and record.nat is not None and forward == (record.outcome.direction == "Outbound"):
                t = (proto, version, record.nat.ip, record.nat.port, t[4], t[5])
        return legs, (t if t != key else None)

    def _remember(self, key: Key, legs: list, translated: Key | None) -> None:
        """A flow with a second packet is likely to have many: its next packets, both ways when
        nothing is translated, skip the path search (and take the C fast path when built, which
        remembers a flow at one NIC itself)."""
        recent = self._recent
        if len(recent) >= RECENT_FLOWS:
            recent.clear()
        recent[key] = self._recent_entry(legs, translated)
        proto, version, a, a_port, b, b_port = key
        # A reply to a public IP or frontend goes on to the NIC or backend behind it: not these legs backwards.
        if translated is None and ip_key(version, a) not in self._translated_ips and \
                all(record.nat is None for _, _, record, _ in legs):
            back = [(nic, (proto, version, b, b_port, a, a_port), record, not forward)
                    for nic, _, record, forward in reversed(legs)]
            recent[(proto, version, b, b_port, a, a_port)] = self._recent_entry(back, None)

    def _recent_entry(self, legs: list, translated: Key | None) -> tuple:
        """(legs, translated, head): each leg with what the C fast path needs of it besides (its
        timeouts by TCP state or the flow's timeout, its table); head is what a Verdict says of the flow."""
        tables = self._tables
        nic, _, record, _ = legs[-1]
        outcome = record.outcome
        return (tuple((nic, key, record, forward, tables[nic.name].timeouts.of_protocol(key[0]), tables[nic.name])
                      for nic, key, record, forward in legs), translated,
                (outcome.direction, nic.name, outcome.nsg, outcome.rule))

    def _end_closed(self, legs: list, ts: float) -> None:
        """A SYN on the 5-tuple of a closed connection opens a new one, decided by the rules again."""
        for i, (nic, leg_key, record, forward) in enumerate(legs):
            if record is not None and record.state is TcpState.CLOSED:
                self._tables[nic.name].remove(record, "closed", ts)
                legs[i] = (nic, leg_key, None, forward)

    def _known(self, p: Packet, ts: float, legs: Sequence[tuple], translated: Key | None) -> Verdict:
        """Every NIC on the path has a flow record: the packet passes without rule evaluation. A leg
        starts (nic, key, record, forward), in a recent-flow entry followed by what C needs."""
        length, tcp = p[10], p[1] == TCP
        moves = TCP_MOVES_BY_FLAGS[p[6]] if tcp else None
        tables = self._tables
        state = None
        for nic, _, record, forward, *_ in legs:
            if forward:
                record.packets_out += 1
                record.bytes_out += length
            else:
                record.packets_in += 1
                record.bytes_in += length
            state = record.state
            if moves is not None:
                state = moves[state][forward]
            tables[nic.name].touch(record, state, ts)
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
        outcome = self._outcomes.get((nsg, rule, reason, where)) or self._outcome_of(nsg, rule, reason, where)
        record = self._tables[nic.name].open(key, state, ts, outcome)
        if record is None:
            stats.flows_refused += 1
            return self._refuse(p, ts, [], "flow-limit", nic.name)
        record.packets_out = 1
        record.bytes_out = p[10]
        stats.flows_created += 1
        if self.listener is not None:
            self.listener.flow_started(nic.name, record, ts)
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
        last = decision.evaluations[-1] if decision.evaluations else None
        if last is not None:
            direction, nic_name = last.direction, last.nic
        elif legs:
            direction, nic_name = legs[-1].direction.value, legs[-1].nic.name
        else:
            direction, nic_name = "Outbound", None
        translated = decision.translated if decision.translated != key else None
        if decision.decision != ALLOW:
            self._stats.denied += 1
            return _new_tuple(Verdict, (ts, DENY, decision.reason, direction, nic_name, decision.nsg, decision.rule,
                                        None, p, translated, "", decision.evaluations))
        if fragment_alone:
            self._stats.allowed += 1
            return Verdict(ts, ALLOW, decision.reason, direction, nic_name, decision.nsg, decision.rule, None, p,
                           translated, "", decision.evaluations)
        state: TcpState | Other = TCP_FIRST_STATES[p[6]] if key[0] == TCP else Other.ACTIVE
        created = []
        for leg, result in zip(legs, results):
            nic, nat = leg.nic, leg.nat
            table = self._tables[nic.name]
            if not fresh and table.find(leg.key, ts)[0] is not None:
                continue
            if nat is not None and nat.frontend is not None:
                port = self._snat.allocate(nat.frontend, key, nic)
                if port is None:
                    return self._refuse(p, ts, created, "snat-exhausted")
                nat = nat._replace(port=port)
                translated = (key[0], key[1], nat.frontend, port, key[4], key[5])
            where = leg.direction.value
            if decision.reason != "rules":
                outcome = self._outcome_of(None, None, decision.reason, where)
            elif result.nsg is None:
                outcome = self._outcome_of(None, None, "no-nsg", where)
            else:
                outcome = self._outcome_of(result.nsg, result.rule, "rules", where)
            record = table.open(leg.key, state, ts, outcome, nat)
            if record is None:
                self._stats.flows_refused += 1
                return self._refuse(p, ts, created, "flow-limit", nic.name)
            record.packets_out = 1
            record.bytes_out = p[10]
            created.append((nic.name, table, record))
        self._stats.flows_created += len(created)
        if self.listener is not None:
            for nic_name_, _, record in created:
                self.listener.flow_started(nic_name_, record, ts)
        self._stats.allowed += 1
        return _new_tuple(Verdict, (ts, ALLOW, decision.reason, direction, nic_name, decision.nsg, decision.rule,
                                    state._value_, p, translated, "", decision.evaluations))

    def _refuse(self, p: Packet, ts: float, created: list, reason: str, nic: str | None = None) -> Verdict:
        for _, table, record in created:
            table.remove(record, "refused", ts)
        self._stats.denied += 1
        return Verdict(ts, DENY, reason, None, nic, None, None, None, p)

    def _outcome_of(self, nsg: str | None, rule: str | None, reason: str, direction: str) -> Outcome:
        slot = (nsg, rule, reason, direction)
        outcome = self._outcomes.get(slot)
        if outcome is None:
            outcome = self._outcomes[slot] = Outcome(nsg, rule, rule in DEFAULT_RULE_NAMES, reason, direction)
        return outcome

    def _icmp_error(self, p: Packet, ts: float) -> Verdict:
        """An ICMP error about a known flow passes as related to it; otherwise it is a packet of its own."""
        inner = p.inner
        inner_key = (inner.proto, inner.version, inner.src, inner.sport, inner.dst, inner.dport)
        for ip in (p.src, p.dst):
            nic = self._nics_by_ip.get(ip if p.version == 4 else ip | V6)
            key = inner_key
            if nic is None:
                nic, key = self._router.behind(inner_key, self._snat.owners)
                if nic is None:
                    continue
            record, original = self._tables[nic.name].find(key, ts)
            if record is not None:
                self._stats.allowed += 1
                # the error goes back to whoever sent the quoted packet
                if original:
                    record.packets_in += 1
                    record.bytes_in += p.length
                else:
                    record.packets_out += 1
                    record.bytes_out += p.length
                outcome = record.outcome
                return Verdict(ts, ALLOW, "flow", outcome.direction, nic.name, outcome.nsg, outcome.rule,
                               "related", p)
        nics = self._nics_by_ip
        offset = 0 if p.version == 4 else V6
        if p.src + offset not in nics and p.dst + offset not in nics and \
                ip_key(p.version, p.dst) not in self._translations.frontends:
            return self._skip(ts, "not-in-scenario", "neither address belongs to a NIC of the scenario", p)
        key = (p.proto, p.version, p.src, 0, p.dst, 0)
        return self._new(p, ts, key, fragment_alone=True)


SYN, SYN_ACK = 0x02, 0x12
CLOSED = TcpState.CLOSED
_new_tuple = tuple.__new__
TCP_MOVES_BY_FLAGS = [{state: (tcp_next(state, flags, False), tcp_next(state, flags, True)) for state in TcpState}
                      for flags in range(256)]
"""`tcp_next` tabulated: [flags][state][from initiator] → next state, for the per-packet path."""
TCP_FIRST_STATES = [tcp_first_state(flags) for flags in range(256)]
_deadline_order = operator.itemgetter(0, 1, 2)
DIRECTION_NAMES = {direction: direction.value for direction in Direction}
