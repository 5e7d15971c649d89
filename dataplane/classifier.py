"""The compiled rule lookup: first match on the 5-tuple in time that does not grow with the rules.

Each field is cut into elementary intervals, and each interval maps to a bit set (a Python int)
of the rules that match there; bit i is the i-th rule in evaluation order. A lookup is one
binary search per address, one table index per port and protocol, four ANDs, and the lowest set
bit is the winner. An augmented rule stays one bit however many prefixes and ports it holds.

Protocol semantics (README): `*` matches every IP protocol; `Icmp` matches ICMP and ICMPv6.
Port conditions constrain TCP and UDP only: a packet of any other protocol matches a rule only
when both of its port conditions cover every port (`*` or 0-65535).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, NamedTuple, Sequence

from .addresses import AddressResolver, Ranges, merge_ranges
from .errors import RuleError, ValidationErrors
from .flows import AH, ESP, ICMP, ICMPV6, TCP, UDP
from .rules import Access, SecurityRule

try:
    from ._fastpath import Rules
except ImportError:  # installed without a C compiler
    Rules = None

PROTOCOL_NUMBERS = {"Tcp": (TCP,), "Udp": (UDP,), "Icmp": (ICMP, ICMPV6), "Esp": (ESP,), "Ah": (AH,)}
FULL_PORTS = ((0, 65535),)
FIELDS = ("protocol", "source", "source port", "destination", "destination port")


class _IntervalMap(NamedTuple):
    """Sorted interval starts and the rule bit set of each interval."""

    starts: list[int]
    sets: list[int]

    def at(self, value: int) -> int:
        return self.sets[bisect_right(self.starts, value) - 1]


def _sweep(spans: Iterable[tuple[int, tuple[tuple[int, int], ...]]], top: int) -> _IntervalMap:
    """Elementary intervals of [0, top] from each rule's merged (disjoint, non-adjacent) ranges."""
    adds: dict[int, int] = {}
    removes: dict[int, int] = {}
    for bit, ranges in spans:
        mask = 1 << bit
        for lo, hi in ranges:
            adds[lo] = adds.get(lo, 0) | mask
            if hi < top:
                removes[hi + 1] = removes.get(hi + 1, 0) | mask
    points = sorted(adds.keys() | removes.keys() | {0})
    interned: dict[int, int] = {}
    starts, sets = [], []
    current = 0
    for point in points:
        current = (current & ~removes.get(point, 0)) | adds.get(point, 0)
        current = interned.setdefault(current, current)
        if sets and sets[-1] == current:
            continue
        starts.append(point)
        sets.append(current)
    return _IntervalMap(starts, sets)


def _port_table(m: _IntervalMap) -> list[int]:
    """65,536 entries, one per port: a direct index beats a binary search on the hot path."""
    table: list[int] = []
    for i, start in enumerate(m.starts):
        end = m.starts[i + 1] if i + 1 < len(m.starts) else 65536
        table.extend([m.sets[i]] * (end - start))
    return table


class Classifier:
    """First-match lookup for one NSG direction, compiled against one resolver (one VNet's view)."""

    def __init__(self, rules: Sequence[SecurityRule], resolver: AddressResolver, version: int = 0):
        self.rules = list(rules)
        self.version = version  # of the NSG the rules came from
        self.denies = [rule.access is Access.DENY for rule in self.rules]
        problems: list[RuleError] = []
        src: list[Ranges] = []
        dst: list[Ranges] = []
        for rule in self.rules:
            try:
                src.append(_side_ranges(resolver, rule, "source"))
                dst.append(_side_ranges(resolver, rule, "destination"))
            except RuleError as e:
                problems.append(e)
        if problems:
            raise ValidationErrors(problems)
        bits = range(len(self.rules))
        self._src = (_sweep(zip(bits, (r[0] for r in src)), 2**32 - 1), _sweep(zip(bits, (r[1] for r in src)), 2**128 - 1))
        self._dst = (_sweep(zip(bits, (r[0] for r in dst)), 2**32 - 1), _sweep(zip(bits, (r[1] for r in dst)), 2**128 - 1))
        self._v4 = (*self._src[0], *self._dst[0])  # flat, for the per-packet lookup
        self._v6 = (*self._src[1], *self._dst[1])
        sports = [merge_ranges(r.source_ports) for r in self.rules]
        dports = [merge_ranges(r.destination_ports) for r in self.rules]
        self._ports = (_sweep(zip(bits, sports), 65535), _sweep(zip(bits, dports), 65535))
        self._sport = _port_table(self._ports[0])
        self._dport = _port_table(self._ports[1])
        self._portless = sum(1 << i for i in bits if sports[i] == FULL_PORTS and dports[i] == FULL_PORTS)
        any_proto = sum(1 << i for i, r in enumerate(self.rules) if r.protocol == "*")
        self._proto: dict[int, int] = {}
        for i, rule in enumerate(self.rules):
            for number in PROTOCOL_NUMBERS.get(rule.protocol, ()):
                self._proto[number] = self._proto.get(number, 0) | 1 << i
        self._proto = {n: m | any_proto for n, m in self._proto.items()}
        self._any_proto = any_proto
        self._c_rules: Rules | None = None

    def lookup(self, proto: int, version: int, src: int, sport: int, dst: int, dport: int) -> int:
        """Index in `rules` of the first matching rule, or -1."""
        src_starts, src_sets, dst_starts, dst_sets = self._v4 if version == 4 else self._v6
        m = (self._proto.get(proto, self._any_proto)
             & src_sets[bisect_right(src_starts, src) - 1]
             & dst_sets[bisect_right(dst_starts, dst) - 1])
        if proto == TCP or proto == UDP:
            m &= self._sport[sport] & self._dport[dport]
        else:
            m &= self._portless
        return (m & -m).bit_length() - 1

    def c_rules(self) -> Rules:
        """The IPv4 lookup as plain arrays, for the C path's decision of new flows: each distinct rule
        set once, as `len(rules) // 64 + 1` little-endian words."""
        if self._c_rules is None:
            ids: dict[int, int] = {}
            size = (len(self.rules) // 64 + 1) * 8

            def field(m: _IntervalMap) -> tuple[list[int], list[int]]:
                return m.starts, [ids.setdefault(bits, len(ids)) for bits in m.sets]

            src, dst = field(self._src[0]), field(self._dst[0])
            sport, dport = field(self._ports[0]), field(self._ports[1])
            protos = [ids.setdefault(self._proto.get(p, self._any_proto), len(ids)) for p in range(256)]
            portless = ids.setdefault(self._portless, len(ids))
            self._c_rules = Rules([bits.to_bytes(size, "little") for bits in ids], src, dst, sport, dport, protos,
                                  portless, bytes(self.denies))
        return self._c_rules

    def match(self, proto: int, version: int, src: int, sport: int, dst: int, dport: int) -> SecurityRule | None:
        i = self.lookup(proto, version, src, sport, dst, dport)
        return self.rules[i] if i >= 0 else None

    def field_matches(self, proto: int, version: int, src: int, sport: int, dst: int,
                      dport: int) -> list[tuple[SecurityRule, dict[str, bool]]]:
        """Every rule in order with which fields matched: what `explain` shows."""
        v = 0 if version == 4 else 1
        ported = proto in (TCP, UDP)
        masks = (self._proto.get(proto, self._any_proto), self._src[v].at(src),
                 self._sport[sport] if ported else self._portless,
                 self._dst[v].at(dst), self._dport[dport] if ported else self._portless)
        return [(rule, {f: bool(m >> i & 1) for f, m in zip(FIELDS, masks)}) for i, rule in enumerate(self.rules)]


def _side_ranges(resolver: AddressResolver, rule: SecurityRule, side: str) -> Ranges:
    asgs = getattr(rule, f"{side}_application_security_groups")
    if asgs:
        parts = [resolver.resolve_asg(a) for a in asgs]
    else:
        field = f"{side}AddressPrefix" if getattr(rule, f"{side}_address_prefix") is not None else f"{side}AddressPrefixes"
        items = rule.sources if side == "source" else rule.destinations
        parts = [resolver.resolve(item, rule=rule.name, field=field) for item in items]
    if len(parts) == 1:
        return parts[0]
    return merge_ranges(r for p in parts for r in p[0]), merge_ranges(r for p in parts for r in p[1])
