"""Azure's NSG flow logs (version 2) and VNet flow logs (version 4), on the capture's clock (reference §6).

Tuples are gathered per one-minute interval: B when a flow record begins, C at each minute
boundary for a flow that carried packets since its last tuple, E when it ends; counters are
deltas since the flow's previous tuple, so C and E add up to the flow's packets and bytes.
Denied packets are one tuple per 5-tuple per minute (NSG v2: decision D; VNet v4: state D).
The NSG that logs a flow is the one Azure names: the NSG that denied it, or the last NSG that
allowed it at that NIC. Flows the platform decided (no NSG rule) are not logged, as Azure does not.

Choices where Azure documents nothing (README): NSG logs (v2) carry TCP and UDP flows only, the
protocols Azure documents letters for (T, U) and the ones its consumers map; VNet logs (v4) carry
every protocol by its IANA number. MAC addresses are made up from the NIC name with Azure's 00-0D-3A
prefix; an NSG's GUID (systemId, aclID) is a name-based UUID of its name.

Closed minutes go to `emit(kind, record)` at once ("nsg" or "vnet"), so nothing grows with the
length of a capture; where the records go (one file, Azure's storage layout) is the caller's business.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from functools import lru_cache
from typing import Any, Callable, NamedTuple

from .conntrack import FlowRecord
from .pipeline import Verdict
from .flows import address_text
from .rules import DEFAULT_RULE_NAMES

try:
    from ._flowlogs import group_texts
except ImportError:  # installed without a C compiler
    group_texts = None

PROTOCOL_LETTERS = {6: "T", 17: "U"}
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "DATAPLANE"


@lru_cache(maxsize=4096)
def mac_of(nic: str) -> str:
    return "000D3A" + f"{zlib.crc32(nic.encode()) & 0xFFFFFF:06X}"


def nsg_resource_id(nsg: str) -> str:
    return (f"/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/{RESOURCE_GROUP}/PROVIDERS/"
            f"MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/{nsg.upper()}")


def rule_label(rule: str, default: bool) -> str:
    return ("DefaultRule_" if default else "UserRule_") + rule


def guid_of(name: str) -> str:
    """A name's stable GUID (an NSG's, a NIC's flow log's); uuid is imported by the runs that write flow
    logs only, so a replay starts sooner."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def iso(ts: float) -> str:
    """Azure's record time: seven fraction digits (100 ns ticks), which Microsoft's connector requires."""
    whole = math.floor(ts)
    ticks = round((ts - whole) * 10_000_000)
    if ticks == 10_000_000:
        whole, ticks = whole + 1, 0
    return dt.datetime.fromtimestamp(whole, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ticks:07d}Z"


class _Tuple(NamedTuple):
    ts: float
    nsg: str
    rule: str
    nic: str
    proto: int
    version: int
    src: int
    sport: int
    dst: int
    dport: int
    direction: str  # I / O
    state: str  # B / C / E / D
    counters: tuple[int, int, int, int] | None


Emit = Callable[[str, dict[str, Any]], None]
"""Receives each record of a closed minute: ("nsg", NSG flow log v2 record) or ("vnet", VNet v4 record)."""


class FlowLogs:
    """A flow listener and verdict sink that builds the flow log formats asked for, minute by minute."""

    def __init__(self, emit: Emit, kinds: tuple[str, ...] = ("nsg", "vnet")) -> None:
        self._emit_record = emit
        self._kinds = kinds
        """The formats `emit` wants: a record of the other is never made."""
        self._reported: dict[int, tuple[int, int, int, int]] = {}
        self._live: dict[int, tuple[str, FlowRecord]] = {}
        self._denied: dict[tuple, float] = {}
        self._tuples: list[tuple] = []
        self._held: list[tuple[float, Any]] = []
        """E tuples of flows that ended in a minute after the open one, until the open one closes."""
        self._minute: float | None = None

    # -- inputs --------------------------------------------------------------------------------

    def flow_started(self, nic: str, record: FlowRecord, ts: float) -> None:
        if record.outcome.nsg is None:
            return
        self.tick(ts)
        self._live[id(record)] = (nic, record)
        self._reported[id(record)] = (0, 0, 0, 0)
        self._emit(ts, nic, record, "B", None)

    def flow_ended(self, nic: str, record: FlowRecord, why: str, ts: float) -> None:
        if self._live.pop(id(record), None) is None:
            return
        if self._minute is not None and ts >= self._minute + 60:
            # Held rather than closing the minute here: the minute closes at the next packet's time,
            # whichever flows ended meanwhile (so that every shard of `replay --workers` closes it alike).
            self._held.append((ts, self._entry(self._tuple(ts, nic, record, "E", self._delta(record)), nic, record)))
        else:
            self._emit(ts, nic, record, "E", self._delta(record))
        del self._reported[id(record)]

    def verdict(self, verdict: Verdict) -> None:
        """Denied packets with a deciding NSG rule become one D tuple per 5-tuple per minute."""
        self.tick(verdict.ts)
        if verdict.decision != "Deny" or verdict.nsg is None or verdict.packet is None:
            return
        p = verdict.packet
        inbound = verdict.direction == "Inbound"
        # inbound NSGs saw the packet after DNAT, outbound ones before SNAT
        proto, version, src, sport, dst, dport = verdict.translated if inbound and verdict.translated else \
            (p.proto, p.version, p.src, p.sport, p.dst, p.dport)
        key = (verdict.nsg, verdict.rule, verdict.nic, proto, version, src, sport, dst, dport, verdict.direction)
        if key in self._denied:
            return
        self._denied[key] = verdict.ts
        self._tuples.append(self._entry(
            (verdict.ts, verdict.nsg, rule_label(verdict.rule, verdict.rule in DEFAULT_RULE_NAMES), verdict.nic,
             proto, version, src, sport, dst, dport, "I" if inbound else "O", "D", None), verdict.nic, None))

    def tick(self, ts: float) -> None:
        """Close every minute that ended before ts: C tuples for active flows, then the records."""
        if self._minute is None:
            self._minute = ts - ts % 60
        while ts >= self._minute + 60:
            boundary = self._minute + 60
            for nic, record in list(self._live.values()):
                delta = self._delta(record)
                if any(delta):
                    self._emit(boundary, nic, record, "C", delta)
            self._flush(self._minute)
            self._minute = boundary
            self._release()
            if self._tuples == [] and not self._live:
                self._minute = ts - ts % 60
                if self._held:
                    first = min(when for when, _ in self._held)
                    self._minute = min(self._minute, first - first % 60)
                self._release()

    def next_minute(self) -> float:
        """When the open minute closes (-inf before the first tick opens one): until then a packet of a known
        flow changes nothing here but its record's counters, so the C path may pass it."""
        return -math.inf if self._minute is None else self._minute + 60

    def close(self) -> None:
        if self._held:
            self.tick(max(when for when, _ in self._held))
        if self._minute is not None:
            self._flush(self._minute)

    def _release(self) -> None:
        """The held tuples of the minute now open join it."""
        end = self._minute + 60
        self._tuples += [entry for when, entry in self._held if when < end]
        self._held = [(when, entry) for when, entry in self._held if when >= end]

    # -- tuples --------------------------------------------------------------------------------

    def _delta(self, record: FlowRecord) -> tuple[int, int, int, int]:
        now = packets_out, bytes_out, packets_in, bytes_in = (record.packets_out, record.bytes_out, record.packets_in,
                                                             record.bytes_in)
        was_out, was_bytes_out, was_in, was_bytes_in = self._reported[id(record)]
        self._reported[id(record)] = now
        return packets_out - was_out, bytes_out - was_bytes_out, packets_in - was_in, bytes_in - was_bytes_in

    def _emit(self, ts: float, nic: str, record: FlowRecord, state: str, counters) -> None:
        self._tuples.append(self._entry(self._tuple(ts, nic, record, state, counters), nic, record))

    @staticmethod
    def _tuple(ts: float, nic: str, record: FlowRecord, state: str, counters) -> tuple:
        """A `_Tuple`'s fields as a plain tuple, which the garbage collector stops tracking, where it walked
        every namedtuple of the open minute at each full collection (a sixth of the time flow logs took);
        making the namedtuple first took a fifth of the rest."""
        o = record.outcome
        return (ts, o.nsg, rule_label(o.rule, o.default_rule), nic, *record.initiator,
                "I" if o.direction == "Inbound" else "O", state, counters)

    def _entry(self, t: tuple, nic: str | None, record: FlowRecord | None) -> Any:
        """What a minute keeps of a tuple (`_tuple`'s): a subclass may keep more with it (`workers` keeps
        its order)."""
        return t

    def _flush(self, minute: float) -> None:
        if not self._tuples:
            return
        tuples, self._tuples = self._tuples, []
        self._denied.clear()
        self._closed(minute, tuples)

    def _closed(self, minute: float, tuples: list) -> None:
        self.write_minute(minute, tuples)

    def write_minute(self, minute: float, tuples: list[tuple]) -> None:
        """The records of one closed minute (its tuples' fields, plain) to `emit`, NSG flow log records first."""
        if "nsg" in self._kinds:
            for record in _nsg_records(minute, tuples):
                self._emit_record("nsg", record)
        if "vnet" in self._kinds:
            for record in _vnet_records(minute, tuples):
                self._emit_record("vnet", record)


def _endpoints(t: _Tuple) -> tuple[str, str]:
    return address_text(t.version, t.src), address_text(t.version, t.dst)


def nsg_tuple(t: _Tuple) -> str:
    """`ts,src,dst,sport,dport,proto,I|O,A|D,B|C|E,pkts,bytes,pkts,bytes` (version 2)."""
    src, dst = _endpoints(t)
    proto = PROTOCOL_LETTERS[t.proto]
    decision, state = ("D", "B") if t.state == "D" else ("A", t.state)
    counters = ",".join(map(str, t.counters)) if t.counters is not None else ",,,"
    ports = (t.sport, t.dport) if t.proto in (6, 17) else (0, 0)
    return f"{int(t.ts)},{src},{dst},{ports[0]},{ports[1]},{proto},{t.direction},{decision},{state},{counters}"


def vnet_tuple(t: _Tuple) -> str:
    """`ms,src,dst,sport,dport,proto#,I|O,B|C|E|D,NX,pkts,bytes,pkts,bytes` (version 4)."""
    src, dst = _endpoints(t)
    counters = ",".join(map(str, t.counters if t.counters is not None else (0, 0, 0, 0)))
    ports = (t.sport, t.dport) if t.proto in (6, 17) else (0, 0)
    return f"{int(t.ts * 1000)},{src},{dst},{ports[0]},{ports[1]},{t.proto},{t.direction},{t.state},NX,{counters}"


_NSG, _RULE, _NIC, _PROTO, _STATE = map(_Tuple._fields.index, ("nsg", "rule", "nic", "proto", "state"))
"""Where a minute's plain tuples (`FlowLogs._tuple`) hold what its records are grouped by and a tuple's state."""


def grouped_texts(tuples: list[tuple], vnet: bool, fields: tuple) -> dict[tuple, list[str]]:
    """Each tuple's text in a list per key (the tuple's values at `fields`, each an index or (index,
    function) for the function's value of it), keys and texts in the order met; the NSG format's leaves
    out what it does not log. In C where it was built (most of the time flow logs took went to grouping
    and writing tuples in Python; the tests check the two agree)."""
    write = vnet_tuple if vnet else nsg_tuple
    logged = None if vnet else PROTOCOL_LETTERS
    if group_texts is not None:
        return group_texts(tuples, vnet, fields, logged, lambda t: write(_Tuple._make(t)))
    parts = [field if isinstance(field, tuple) else (field, None) for field in fields]
    groups: dict[tuple, list[str]] = {}
    for t in tuples:
        if logged is None or t[_PROTO] in logged:
            key = tuple(t[at] if through is None else through(t[at]) for at, through in parts)
            groups.setdefault(key, []).append(write(_Tuple._make(t)))
    return groups


def _nsg_records(minute: float, tuples: list[tuple]) -> list[dict[str, Any]]:
    """One record per NSG and MAC, as Azure stores them (one blob per MAC)."""
    by_nsg: dict[tuple[str, str], dict[str, list[str]]] = {}
    for (nsg, mac, rule), texts in grouped_texts(tuples, False, (_NSG, (_NIC, mac_of), _RULE)).items():
        by_nsg.setdefault((nsg, mac), {})[rule] = texts
    return [{
        "time": iso(minute), "systemId": guid_of(nsg), "macAddress": mac,
        "category": "NetworkSecurityGroupFlowEvent", "resourceId": nsg_resource_id(nsg),
        "operationName": "NetworkSecurityGroupFlowEvents",
        "properties": {"Version": 2, "flows": [
            {"rule": rule, "flows": [{"mac": mac, "flowTuples": tuples_}]} for rule, tuples_ in rules.items()]},
    } for (nsg, mac), rules in by_nsg.items()]


def _vnet_records(minute: float, tuples: list[tuple]) -> list[dict[str, Any]]:
    by_nic: dict[str, dict[str, dict[str, list[str]]]] = {}
    for (nic, nsg, rule), texts in grouped_texts(tuples, True, (_NIC, _NSG, _RULE)).items():
        by_nic.setdefault(nic, {}).setdefault(nsg, {})[rule] = texts
    return [{
        "time": iso(minute), "flowLogVersion": 4, "flowLogGUID": guid_of("flowlog/" + nic),
        "macAddress": mac_of(nic), "category": "FlowLogFlowEvent",
        "flowLogResourceID": f"/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/"
                             f"MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER/FLOWLOGS/DATAPLANE",
        "targetResourceID": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
                            f"Microsoft.Network/networkInterfaces/{nic}",
        "operationName": "FlowLogFlowEvent",
        "flowRecords": {"flows": [
            {"aclID": guid_of(nsg), "flowGroups": [{"rule": rule, "flowTuples": t} for rule, t in rules.items()]}
            for nsg, rules in nsgs.items()]},
    } for nic, nsgs in by_nic.items()]
