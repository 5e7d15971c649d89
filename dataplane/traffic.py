"""Azure flow logs as traffic: NSG flow log v2 and VNet flow log v4, read back into flows (reference §6).

Files come as Azure writes them to storage (one JSON document per `PT1H.json`, `.gz` too, in a tree
whose `y=/m=/d=/h=/m=` folders give the hour), as Event Hub or Elastic forward them (one record per
line), or as `replay --flow-log/--vnet-flow-log` write them. The kind is read from each record.

A flow runs from its first tuple (B, or the first seen of a flow already running: C or E) through
its E; its counters add up the deltas of its tuples. D tuples are denied flows: those of one 5-tuple
at one NIC join while they come back within `DENIED_IDLE` seconds. Tuples are as the NSG saw them
(after DNAT inbound, before SNAT outbound), so a flow is decided at its NIC without translating it
again: the NIC whose MAC is the record's (`flowlog.mac_of`), else the one whose address the tuple
carries on the NIC's side.

Reading streams: one file at a time is loaded (hour by hour), and only flows still open are kept.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import math
import re
import zlib
from itertools import chain, repeat
from operator import itemgetter, truediv
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from .addresses import ip_key, merge_ranges
from .documents import GZIP_MAGIC
from .errors import CaptureError, DataplaneError
from .flowlog import mac_of
from .flows import PORTED, PROTOCOL_NAMES
from .platform import PLATFORM_ADDRESSES
from .policy import Evaluation, Key, Policy
from .replay import Outputs, Summary, _write_json as write_json, verdict_writer
from .rules import Direction
from .topology import NetworkInterface, Scenario

DENIED_IDLE = 240.0
"""Seconds after which a D tuple of the same 5-tuple starts a new denied flow (Azure's 4-minute idle)."""
HOUR_IN_PATH = re.compile(r"y=(\d{4})/m=(\d{1,2})/d=(\d{1,2})/h=(\d{1,2})(?:/m=(\d{1,2}))?")
DIRECTIONS = {"I": "Inbound", "O": "Outbound"}
VERSION = itemgetter(0)
INBOUND, OUTBOUND = Direction.INBOUND, Direction.OUTBOUND
_new_tuple = tuple.__new__

try:
    from . import _flowlogs
except ImportError:  # installed without a C compiler
    _flowlogs = None


class LoggedFlow(NamedTuple):
    """One flow of a flow log at one NIC: the 5-tuple as the NSG saw it, and what Azure logged."""

    mac: str
    direction: str  # Inbound | Outbound
    key: Key
    first: float
    last: float
    packets_out: int
    bytes_out: int
    packets_in: int
    bytes_in: int
    began: str  # the first tuple's state: B, C, E, or D for a denied flow
    logged: str  # Allow | Deny, as Azure decided
    nsg: str | None
    rule: str | None

    @property
    def flow(self) -> str:
        return flow_text(self.key)

    @property
    def packets(self) -> int:
        return self.packets_out + self.packets_in

    @property
    def bytes(self) -> int:
        return self.bytes_out + self.bytes_in


ADDRESS_TEXTS_KEPT = 65536
_address_texts: dict[tuple[int, int], str] = {}


def flow_text(key: Key) -> str:
    """`str(key_to_flow(key))`, each address formatted once: whatif and verdicts print every flow, and
    formatting addresses cost more than deciding them."""
    proto, version, src, sport, dst, dport = key
    texts = _address_texts
    if len(texts) >= ADDRESS_TEXTS_KEPT:
        texts.clear()
    s, d = texts.get((version, src)), texts.get((version, dst))
    if s is None:
        s = texts[(version, src)] = _address_text(version, src)
    if d is None:
        d = texts[(version, dst)] = _address_text(version, dst)
    name = PROTOCOL_NAMES.get(proto, str(proto))
    if proto not in PORTED:
        return f"{name} {s} > {d}"
    if version == 6:
        return f"{name} [{s}]:{sport} > [{d}]:{dport}"
    return f"{name} {s}:{sport} > {d}:{dport}"


def _address_text(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


# -- which inputs are flow logs ------------------------------------------------------------------

def flow_log_files(paths: Iterable[str]) -> list[list[str]]:
    """The files to read, grouped by the hour their storage path names, in time order; files whose
    path names no hour come first, as one group."""
    files: list[str] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and _is_json_name(f.name))
        else:
            files.append(str(p))
    groups: dict[tuple, list[str]] = {}
    for f in files:
        groups.setdefault(_hour_of(f), []).append(f)
    return [groups[hour] for hour in sorted(groups)]


def _is_json_name(name: str) -> bool:
    return name.endswith((".json", ".json.gz", ".log", ".log.gz"))


def _hour_of(path: str) -> tuple:
    m = HOUR_IN_PATH.search(Path(path).as_posix())
    return tuple(int(g or 0) for g in m.groups()) if m else ()


# -- reading records ------------------------------------------------------------------------------

def _text(path: str) -> str:
    try:
        with open(path, "rb") as raw:
            data = raw.read()
    except OSError as e:
        raise CaptureError(f"cannot read: {e.strerror}", file=path) from None
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:
            raise CaptureError(f"corrupt or truncated gzip data ({e})", file=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CaptureError(f"not UTF-8 text: byte {e.start}", file=path) from None


def records_of(path: str) -> list[tuple[int, dict]]:
    """(record number, record) of one file: a `{"records": [...]}` document, one record, or one
    record per line."""
    text = _text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise CaptureError(f"not valid JSON: line {e.lineno} column {e.colno}: {e.msg}", file=path) from None
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise CaptureError(f"line {n}: not valid JSON: column {e.colno}: {e.msg}", file=path) from None
        return records
    if isinstance(doc, dict) and "records" in doc:
        if not isinstance(doc["records"], list):
            raise CaptureError("records: expected a list of flow log records", file=path)
        return list(enumerate(doc["records"]))
    if isinstance(doc, dict):
        return [(0, doc)]
    raise CaptureError('expected a flow log: {"records": [...]}, a record, or one record per line', file=path)


class _Tuples(NamedTuple):
    """The tuples of one record's rule group at one NIC."""

    version: int  # 2 (NSG flow log) or 4 (VNet flow log)
    mac: str
    nsg: str | None
    rule: str | None
    tuples: list


def _groups(path: str, number: int, record: Any) -> Iterator[_Tuples]:
    where = f"record {number}"
    if not isinstance(record, dict):
        raise CaptureError(f"{where}: expected an object", file=path)
    try:
        if "flowRecords" in record:
            mac = _mac(record["macAddress"])
            for acl in record["flowRecords"]["flows"]:
                nsg = _last_segment(acl.get("aclID"))
                for group in acl["flowGroups"]:
                    yield _Tuples(4, mac, nsg, _rule_name(group.get("rule")), group["flowTuples"])
        elif "properties" in record:
            props = record["properties"]
            version = props.get("Version")
            if version != 2:
                raise CaptureError(f"{where}: properties.Version {version!r}: only NSG flow log version 2 "
                                   "has flow states and counters", file=path)
            nsg = _last_segment(record.get("resourceId"))
            for rule_group in props["flows"]:
                for per_mac in rule_group["flows"]:
                    yield _Tuples(2, _mac(per_mac["mac"]), nsg, _rule_name(rule_group.get("rule")),
                                  per_mac["flowTuples"])
        else:
            raise CaptureError(f"{where}: neither an NSG flow log record (properties) nor a VNet flow log record "
                               "(flowRecords)", file=path)
    except (KeyError, TypeError) as e:
        missing = f"no {e.args[0]!r}" if isinstance(e, KeyError) else "a value of the wrong type"
        raise CaptureError(f"{where}: {missing} where a flow log record has one", file=path) from None


def _mac(text: Any) -> str:
    return str(text).replace("-", "").replace(":", "").upper()


def _last_segment(resource_id: Any) -> str | None:
    if not isinstance(resource_id, str) or not resource_id:
        return None
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def _rule_name(label: Any) -> str | None:
    if not isinstance(label, str):
        return None
    for prefix in ("DefaultRule_", "UserRule_"):
        if label.startswith(prefix):
            return label[len(prefix):]
    return label


# -- tuples into rows -----------------------------------------------------------------------------

class Row(NamedTuple):
    """One tuple read: addresses as (version, integer), v2's decision D folded into state D."""

    ts: float
    src: tuple[int, int]
    dst: tuple[int, int]
    sport: int
    dport: int
    proto: int
    direction: str  # Inbound | Outbound
    state: str  # B | C | E | D
    packets_out: int
    bytes_out: int
    packets_in: int
    bytes_in: int


class Addresses(dict):
    """Address text → (version, integer), each text parsed once."""

    def __missing__(self, text: str) -> tuple[int, int]:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address") from None
        self[text] = found = (ip.version, int(ip))
        return found


class _NsgProtocols(dict):
    """NSG flow log protocol letters (I: ICMP, made ICMPv6 for IPv6 tuples later) or numbers."""

    def __missing__(self, text: str) -> int:
        number = _number(text)
        if number is not None and number <= 255:
            return number
        raise ValueError(f"protocol {text!r} is not T, U, I or a number")


NSG_PROTOCOLS = _NsgProtocols(T=6, U=17, I=1)


def rows_plain(tuples: list, v4: bool, addresses: Addresses) -> list[Row]:
    """Each tuple checked field by field; a bad one raises ValueError(tuple, problem)."""
    rows = []
    for text in tuples:
        try:
            rows.append(_row(text, v4, addresses))
        except ValueError as e:
            raise ValueError(text, str(e)) from None
    return rows


def _row(text: Any, v4: bool, addresses: Addresses) -> Row:
    if not isinstance(text, str):
        raise ValueError("expected a string")
    f = text.split(",")
    if len(f) != 13:
        raise ValueError(f"{len(f)} fields, version {4 if v4 else 2} has 13")
    if _number(f[0]) is None:
        raise ValueError(f"time {f[0]!r} is not an integer")
    src, dst = addresses[f[1]], addresses[f[2]]
    if src[0] != dst[0]:
        raise ValueError(f"{f[1]} and {f[2]} are of different IP versions")
    if v4:
        proto = _number(f[5])
        if proto is None or proto > 255:
            raise ValueError(f"protocol {f[5]!r} is not an IP protocol number")
    else:
        proto = NSG_PROTOCOLS[f[5]]
    if f[6] not in DIRECTIONS:
        raise ValueError(f"direction {f[6]!r} is not I or O")
    state = f[7] if v4 else f[8]
    if state not in ("B", "C", "E", "D") or state == "D" and not v4:
        raise ValueError(f"flow state {state!r} is not B, C, E" + (" or D" if v4 else ""))
    if not v4:
        if f[7] not in ("A", "D"):
            raise ValueError(f"decision {f[7]!r} is not A or D")
        state = "D" if f[7] == "D" else state
    counters = f[9:13]
    if counters == ["", "", "", ""] and not v4:
        counters = ["0", "0", "0", "0"]
    if None in map(_number, counters):
        raise ValueError(f"counters {','.join(f[9:13])!r} are not four integers")
    ts = int(f[0]) / 1000 if v4 else float(int(f[0]))
    return Row(ts, src, dst, _port(f[3]), _port(f[4]), proto, DIRECTIONS[f[6]], state, *map(int, counters))


def _port(text: str) -> int:
    port = _number(text)
    if port is None or port > 65535:
        raise ValueError(f"port {text!r} is not an integer 0-65535")
    return port


def _number(text: str) -> int | None:
    """A whole number as `int` reads it (the column reader maps `int`), unless negative."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


NUMBERS_V4 = (0, 3, 4, 5, 9, 10, 11, 12)
NUMBERS_V2 = (0, 3, 4, 9, 10, 11, 12)


def rows_fast(tuples: list, v4: bool, addresses: Addresses) -> Iterable[tuple] | None:
    """The same rows as `rows_plain`, a column at a time, or None when anything is off, for
    `rows_plain` to name the bad tuple: one split into fields, then `map` over each column."""
    n = len(tuples)
    if not n:
        return []
    try:
        if list(map(str.count, tuples, repeat(",", n))).count(12) != n:
            return None
        if v4:
            fields = ",".join(tuples).split(",")
        else:  # B tuples carry empty counters
            text = "\n".join(tuples)
            if text.count("\n") != n - 1:
                return None
            fields = (text + "\n").replace(",,,,\n", ",0,0,0,0\n")[:-1].replace("\n", ",").split(",")
    except TypeError:
        return None
    try:
        numbers = [list(map(int, fields[i::13])) for i in (NUMBERS_V4 if v4 else NUMBERS_V2)]
        src = list(map(addresses.__getitem__, fields[1::13]))
        dst = list(map(addresses.__getitem__, fields[2::13]))
        protos = numbers[3] if v4 else list(map(NSG_PROTOCOLS.__getitem__, fields[5::13]))
        directions = list(map(DIRECTIONS.__getitem__, fields[6::13]))
    except (ValueError, KeyError):
        return None
    if min(map(min, numbers)) < 0:
        return None
    times, sports, dports, counters = numbers[0], numbers[1], numbers[2], numbers[-4:]
    states = fields[7::13] if v4 else fields[8::13]
    if max(sports) > 65535 or max(dports) > 65535 or max(protos) > 255:
        return None
    if v4:
        if not set(states) <= {"B", "C", "E", "D"}:
            return None
        stamps = map(truediv, times, repeat(1000, n))
    else:
        decisions = fields[7::13]
        if not set(states) <= {"B", "C", "E"} or not set(decisions) <= {"A", "D"}:
            return None
        if "D" in decisions:
            states = [s if d == "A" else "D" for d, s in zip(decisions, states)]
        stamps = map(float, times)
    if list(map(VERSION, src)) != list(map(VERSION, dst)):
        return None
    return zip(stamps, src, dst, sports, dports, protos, directions, states, *counters)


# -- rows into flows ------------------------------------------------------------------------------

class _Reader:
    """Rows in, flows out: open flows by (MAC, direction, 5-tuple) until their E."""

    def __init__(self, accelerated: bool = True) -> None:
        self.fast = _flowlogs if accelerated and _flowlogs is not None else None
        self.open: dict[tuple, list] = {}
        self.denied: dict[tuple, list] = {}
        self.addresses = Addresses()
        self.swept = float("-inf")

    def file(self, path: str) -> Iterator[list[LoggedFlow]]:
        """The flows a file ends, a list per batch. Its tuples are read in batches of one version across
        records, as groups are small (a rule's tuples of one minute at one NIC) and reading has a cost
        per call."""
        batch: list[tuple[int, _Tuples]] = []
        for number, record in records_of(path):
            for g in _groups(path, number, record):
                if not isinstance(g.tuples, list):
                    raise CaptureError(f"record {number}: flowTuples: expected a list", file=path)
                if batch and batch[0][1].version != g.version:
                    yield self.batch(path, batch)
                    batch = []
                batch.append((number, g))
        if batch:
            yield self.batch(path, batch)

    def batch(self, path: str, batch: list[tuple[int, _Tuples]]) -> list[LoggedFlow]:
        v4 = batch[0][1].version == 4
        read = None
        if self.fast is not None:
            read = self.fast.batch([g for _, g in batch], v4, self.addresses, self.open, self.denied, LoggedFlow,
                                   DENIED_IDLE)
        ended, ts = read if read is not None else self.batch_plain(path, batch, v4)
        denied = self.denied
        if denied and ts is not None and ts >= self.swept + DENIED_IDLE:
            self.swept = ts
            if self.fast is not None:
                ended += self.fast.expired(denied, ts, DENIED_IDLE, LoggedFlow)
            else:
                for slot in [s for s, flow in denied.items() if ts - flow[1] > DENIED_IDLE]:
                    ended.append(_flow(slot, denied.pop(slot)))
        return ended

    def batch_plain(self, path: str, batch: list[tuple[int, _Tuples]], v4: bool) -> tuple[list[LoggedFlow], Any]:
        """The flows the batch ends and its last time, read in Python."""
        tuples = list(chain.from_iterable(g.tuples for _, g in batch))
        rows = rows_fast(tuples, v4, self.addresses)
        if rows is None:
            for number, g in batch:
                try:
                    rows_plain(g.tuples, v4, self.addresses)
                except ValueError as e:
                    raise CaptureError(f"record {number}: tuple {e.args[0]!r}: {e.args[1]}", file=path) from None
            rows = rows_plain(tuples, v4, self.addresses)
        heads = chain.from_iterable(repeat((g.mac, g.nsg, g.rule), len(g.tuples)) for _, g in batch)
        opened, denied = self.open, self.denied
        ended: list[LoggedFlow] = []
        ts = None
        for (mac, nsg, rule), (ts, (version, src), (_, dst), sport, dport, proto, direction, state, p_out, b_out,
                               p_in, b_in) in zip(heads, rows):
            if proto == 1 and version == 6:
                proto = 58
            slot = (mac, direction, proto, version, src, sport, dst, dport)
            if state == "B":
                flow = opened.pop(slot, None)
                if flow is not None:
                    ended.append(_flow(slot, flow))
                opened[slot] = [ts, ts, p_out, b_out, p_in, b_in, "B", "Allow", nsg, rule]
            elif state == "E":
                f = opened.pop(slot, None)
                ended.append(_new_tuple(LoggedFlow, (
                    mac, direction, slot[2:], ts, ts, p_out, b_out, p_in, b_in, "E", "Allow", nsg, rule)
                    if f is None else (mac, direction, slot[2:], f[0], ts, f[2] + p_out, f[3] + b_out,
                                       f[4] + p_in, f[5] + b_in, f[6], f[7], f[8], f[9])))
            else:
                table = opened if state == "C" else denied
                flow = table.get(slot)
                if flow is not None and state == "D" and ts - flow[1] > DENIED_IDLE:
                    ended.append(_flow(slot, denied.pop(slot)))
                    flow = None
                if flow is None:
                    table[slot] = [ts, ts, p_out, b_out, p_in, b_in, state, "Deny" if state == "D" else "Allow",
                                   nsg, rule]
                else:
                    flow[1] = ts
                    flow[2] += p_out
                    flow[3] += b_out
                    flow[4] += p_in
                    flow[5] += b_in
        return ended, ts

    def rest(self) -> Iterator[LoggedFlow]:
        """At the end of the logs, flows still open and denied flows end where they were last seen."""
        for table in (self.open, self.denied):
            for slot, flow in sorted(table.items(), key=lambda item: item[1][0]):
                yield _flow(slot, flow)
            table.clear()


def _flow(slot: tuple, flow: list) -> LoggedFlow:
    """A flow out of its (MAC, direction, 5-tuple) slot and its open state."""
    return _new_tuple(LoggedFlow, (slot[0], slot[1], slot[2:], *flow))


def read_flow_logs(paths: Iterable[str], *, accelerated: bool = True) -> Iterator[LoggedFlow]:
    """Every flow of the logs, as each ends; hour by hour, one file at a time. `accelerated=False`
    reads in Python even where the C extension is built: the tests compare the two."""
    reader = _Reader(accelerated)
    for group in flow_log_files(paths):
        for path in group:
            for ended in reader.file(path):
                yield from ended
    yield from reader.rest()


# -- deciding flows at their NIC ------------------------------------------------------------------

class FlowDecision(NamedTuple):
    nic: str
    decision: str
    nsg: str | None
    rule: str | None
    reason: str
    evaluations: tuple[Evaluation, ...]


DECISIONS_KEPT = 65536
"""Decisions remembered by `FlowDecider` for flows that differ only in their source port."""


class FlowDecider:
    """Decides logged flows at their NIC, as new connections, without translating them again.

    Most flows differ from an earlier one only in the client's ephemeral source port. Where no rule
    of the NIC's NSGs in that direction names source ports, and the remote is no platform address
    (whose exemptions look at the remote's port), the decision of such a flow is the earlier one's:
    it is kept, bounded, by MAC, direction and the rest of the 5-tuple. The policy shares a result
    among the flows one combination of rules decides, and so are their decisions shared (made once
    per NIC and result: tens of thousands of equal decisions cost the garbage collector a tenth of
    the time). `decide_plain` asks the policy every time; a test proves the two agree.
    """

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.policy = Policy(scenario)
        self.by_mac = {mac_of(nic.name): nic for nic in scenario.network_interfaces.values()}
        self.by_ip = self.policy.nics_by_ip
        self._leg = self.policy.leg
        self._kept: dict[tuple, FlowDecision] = {}
        self._made: dict[tuple[int, int], tuple] = {}  # ids of NIC and leg result → (both, their decision)
        self._routes: dict[tuple, tuple[NetworkInterface, Direction, bool] | bool] = {}

    def nic_of(self, flow: LoggedFlow) -> NetworkInterface | None:
        nic = self.by_mac.get(flow.mac)
        if nic is None:
            _, version, src, _, dst, _ = flow.key
            nic = self.by_ip.get(ip_key(version, dst if flow.direction == "Inbound" else src))
        return nic

    def decide_plain(self, flow: LoggedFlow) -> FlowDecision | None:
        """None when no NIC of the scenario matches the flow."""
        nic = self.nic_of(flow)
        if nic is None:
            return None
        r = self._leg(nic, INBOUND if flow.direction == "Inbound" else OUTBOUND, flow.key)
        return FlowDecision(nic.name, r.access, r.nsg, r.rule, r.reason, r.evaluations)

    def decide(self, flow: LoggedFlow) -> FlowDecision | None:
        """As `decide_plain`, from the kept decisions where the source port cannot matter."""
        key = flow[2]
        slot = (flow[0], flow[1], key[0], key[1], key[2], key[4], key[5])
        decided = self._kept.get(slot)
        if decided is not None:
            return decided
        _, version, src, _, dst, _ = key
        inbound = flow[1] == "Inbound"
        way = (flow[0], inbound, version, dst if inbound else src)
        route = self._routes.get(way)
        if route is None:
            route = self._routes[way] = self._route(flow)
        if route is False:
            return None
        nic, direction, any_sport = route
        r = self._leg(nic, direction, key)
        made = self._made.get((id(nic), id(r)))
        if made is None:
            if len(self._made) >= DECISIONS_KEPT:
                self._made.clear()
            made = self._made[(id(nic), id(r))] = (nic, r, _new_tuple(FlowDecision, (nic.name, *r[:5])))
        decided = made[2]
        if any_sport and not (inbound and src in PLATFORM_ADDRESSES):
            if len(self._kept) >= DECISIONS_KEPT:
                self._kept.clear()
            self._kept[slot] = decided
        return decided

    def _route(self, flow: LoggedFlow) -> tuple[NetworkInterface, Direction, bool] | bool:
        """The NIC of a MAC and the NIC-side address, the direction, and whether source ports can be
        ignored there; False when no NIC matches."""
        nic = self.nic_of(flow)
        if nic is None:
            return False
        direction = INBOUND if flow.direction == "Inbound" else OUTBOUND
        return nic, direction, self._ignores_source_ports(nic, direction)

    def _ignores_source_ports(self, nic: NetworkInterface, direction: Direction) -> bool:
        groups = self.scenario.network_security_groups
        return all(merge_ranges(rule.source_ports) == ((0, 65535),)
                   for name in (nic.nsg, nic.subnet.nsg) if name
                   for rule in groups[name].rules_in_order(direction))


# -- replay of flow logs --------------------------------------------------------------------------

CAPTURE_ONLY_OUTPUTS = ("flow_log", "vnet_flow_log", "allowed", "denied", "translated", "report")


def replay_flow_logs(scenario: Scenario, paths: list[str], outputs: Outputs, *, updates: Iterable[Any] = (),
                     clock: Callable[[], float] | None = None, workers: int = 1, dask: str | None = None) -> Summary:
    """`replay` with flow logs as traffic: one verdict line per flow, with its packets and bytes.

    The summary counts packets as logged (denied tuples carry none), and flows by decision, by
    those matching no NIC, and by those the scenario decides otherwise than Azure logged them.
    `workers` > 1 or `dask` shard the flows as `replay` does (`workers.py`): the outputs are the same.
    Raises CaptureError on a malformed log after closing the outputs, the summary attached.
    """
    for name in CAPTURE_ONLY_OUTPUTS:
        if getattr(outputs, name, None):
            raise DataplaneError(f"--{name.replace('_', '-')} needs captures as traffic; flow logs give "
                                 "--verdicts and --summary")
    if list(updates):
        raise DataplaneError("--update needs captures as traffic: flow logs are decided flow by flow")
    started = clock() if clock else 0.0
    if workers > 1 or dask is not None:
        from .workers import replay_flow_logs_sharded, runner_of
        runner, count = runner_of(workers, dask)
        return replay_flow_logs_sharded(scenario, paths, outputs, count, runner, clock, started)
    tally = FlowTally()
    verdicts = verdict_writer(outputs.verdicts) if outputs.verdicts else None
    error = None
    try:
        decide_flows(scenario, paths, tally, verdicts.write if verdicts is not None else None)
    except CaptureError as e:
        error = e
        raise
    finally:
        if verdicts is not None:
            verdicts.close()
        summary = flow_log_summary(scenario, tally, error, outputs, clock, started)
    return summary


class FlowTally:
    """What `decide_flows` counts: the tally by (decision, as logged, id of evaluations) → [flows, packets,
    evaluations], and the first and last time of the flows."""

    def __init__(self) -> None:
        self.tally: dict[tuple, list] = {}
        self.first = math.inf
        self.last = -math.inf


def decide_flows(scenario: Scenario, paths: list[str], into: FlowTally, write: Callable[[dict], None] | None,
                 shard: Any = None) -> None:
    """Every flow of the logs (with `shard`, a `workers.ShardFlows`, the shard's) decided and counted into
    `into`, its verdict line written by its place among all the flows; raises CaptureError on a malformed
    log with what came before counted."""
    decide = FlowDecider(scenario).decide
    tally = into.tally
    flows: Iterable[LoggedFlow] = read_flow_logs(paths)
    if shard is not None:
        flows = shard.of(flows)
    for index, flow in enumerate(flows):
        decided = decide(flow)
        if flow[3] < into.first:
            into.first = flow[3]
        if flow[4] > into.last:
            into.last = flow[4]
        slot = (decided[1], flow[10], id(decided[5])) if decided is not None else (None, None, 0)
        counts = tally.get(slot)
        if counts is None:
            counts = tally[slot] = [0, 0, decided[5] if decided is not None else ()]
        counts[0] += 1
        counts[1] += flow[5] + flow[7]
        if write is not None:
            write(verdict_json(index if shard is None else shard.count - 1, flow, decided))


def flow_log_summary(scenario: Scenario, tally: FlowTally, error: CaptureError | None, outputs: Outputs,
                     clock: Callable[[], float] | None, started: float) -> Summary:
    """The summary of a flow-log replay, written to --summary; a malformed log's error names it and
    carries it."""
    summary = Summary()
    _fill_summary(summary, tally.tally, scenario)
    summary.seconds = (clock() - started) if clock else 0.0
    summary.capture_seconds = tally.last - tally.first if tally.first <= tally.last else 0.0
    if error is not None:
        summary.error = str(error)
        error.summary = summary  # type: ignore[attr-defined]
    if outputs.summary:
        write_json(outputs.summary, summary.to_json())
    return summary


def _fill_summary(summary: Summary, tally: dict[tuple, list], scenario: Scenario) -> None:
    """The tally is keyed by the identity of evaluations, which it keeps: hashing their values per
    flow cost more than the rest of the tally."""
    flows = dict.fromkeys(("allowed", "denied", "not_in_scenario", "decided_otherwise"), 0)
    hits: dict[tuple[str, str], int] = {}
    for (decision, logged, _), (count, packets, evaluations) in tally.items():
        summary.packets += packets
        if decision is None:
            flows["not_in_scenario"] += count
            summary.skipped["not-in-scenario"] = summary.skipped.get("not-in-scenario", 0) + packets
            continue
        allowed = decision == "Allow"
        flows["allowed" if allowed else "denied"] += count
        if allowed:
            summary.allowed += packets
        else:
            summary.denied += packets
        if decision != logged:
            flows["decided_otherwise"] += count
        for e in evaluations:
            hits[(e.nsg, e.rule)] = hits.get((e.nsg, e.rule), 0) + count
    for (nsg, rule), count in sorted(hits.items()):
        summary.rule_hits.setdefault(nsg, {})[rule] = count
    for name, group in sorted(scenario.network_security_groups.items()):
        used = summary.rule_hits.get(name, {})
        summary.rules_never_hit[name] = [r.name for r in group.rules if r.name not in used]
    summary.flows = flows


def verdict_json(index: int, flow: LoggedFlow, decided: FlowDecision | None) -> dict[str, Any]:
    """A verdict line for a flow: the packet's fields, then its traffic and what Azure logged."""
    head = {"index": index, "ts": flow.first, "flow": flow.flow, "direction": flow.direction}
    if decided is None:
        head.update(nic=None, decision="Skip", nsg=None, rule=None, reason="not-in-scenario")
    else:
        head.update(nic=decided.nic, decision=decided.decision, nsg=decided.nsg, rule=decided.rule,
                    reason=decided.reason)
    head.update(state=flow.began, packets=flow.packets, bytes=flow.bytes, last_seen=flow.last,
                logged={"decision": flow.logged, "nsg": flow.nsg, "rule": flow.rule})
    return head
