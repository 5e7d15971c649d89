"""A brute-force reference evaluator: rules in order, every field checked with plain comparisons.

It shares nothing with `dataplane.classifier` but the rule model: addresses are read with the
standard library's `ipaddress`, tags from the small table the caller gives. It is slow and
obviously right, which is what the compiled classifier is checked against (README semantics:
`*` matches every protocol, `Icmp` matches ICMP and ICMPv6, ports constrain TCP and UDP only, a
packet of another protocol matches only rules whose port conditions cover every port).

It also converts ClassBench rule sets and traces (`../shared/data/classbench`, see its README),
for the tests and the benchmarks.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

from dataplane.rules import Access, Direction, SecurityRule

PROTOCOLS = {"*": None, "Tcp": {6}, "Udp": {17}, "Icmp": {1, 58}, "Esp": {50}, "Ah": {51}}
PORTED = {6, 17}
INTERNET_EXCLUDED_V4 = [ipaddress.ip_network(p) for p in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/3")]
HOST = ipaddress.ip_network("168.63.129.16/32")


class Environment(NamedTuple):
    """What addresses mean where the rules are evaluated."""

    virtual_network: tuple[str, ...] = ()
    tags: Mapping[str, tuple[str, ...]] = {}
    asgs: Mapping[str, tuple[str, ...]] = {}


def _networks(items: Iterable[str]) -> list:
    return [ipaddress.ip_network(i, strict=False) for i in items]


class ReferenceRule:
    """One rule with every address item turned into a predicate over an `ipaddress` address."""

    def __init__(self, rule: SecurityRule, env: Environment):
        self.rule = rule
        self.protocols = PROTOCOLS[rule.protocol]
        self.sources = self._side(rule.sources, rule.source_application_security_groups, env)
        self.destinations = self._side(rule.destinations, rule.destination_application_security_groups, env)
        self.source_ports = rule.source_ports
        self.destination_ports = rule.destination_ports
        self.portless = _covers_every_port(rule.source_ports) and _covers_every_port(rule.destination_ports)

    @staticmethod
    def _side(items: tuple[str, ...], asgs: tuple[str, ...], env: Environment) -> list:
        if asgs:
            return [("nets", _networks(a for name in asgs for a in env.asgs.get(name, ())))]
        out = []
        vnet = _networks(env.virtual_network) + [HOST]
        for item in items:
            if item == "*":
                out.append(("any", None))
            elif item.lower() == "virtualnetwork":
                out.append(("nets", vnet))
            elif item.lower() == "internet":
                out.append(("internet", vnet))
            elif item.lower() in ("azureloadbalancer", "azureplatformdns"):
                out.append(("nets", [HOST]))
            elif item.lower() in {t.lower() for t in env.tags}:
                name = next(t for t in env.tags if t.lower() == item.lower())
                out.append(("nets", _networks(env.tags[name])))
            else:
                out.append(("nets", _networks([item])))
        return out

    @staticmethod
    def _address_matches(side: list, address) -> bool:
        for kind, nets in side:
            if kind == "any":
                return True
            if kind == "nets" and any(address in n for n in nets if n.version == address.version):
                return True
            if kind == "internet" and _is_internet(address, nets):
                return True
        return False

    @staticmethod
    def _port_matches(ranges: tuple[tuple[int, int], ...], port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in ranges)

    def matches(self, proto: int, src, sport: int, dst, dport: int) -> bool:
        if self.protocols is not None and proto not in self.protocols:
            return False
        if not self._address_matches(self.sources, src) or not self._address_matches(self.destinations, dst):
            return False
        if proto in PORTED:
            return self._port_matches(self.source_ports, sport) and self._port_matches(self.destination_ports, dport)
        return self.portless


def _covers_every_port(ranges: tuple[tuple[int, int], ...]) -> bool:
    needed = 0
    for lo, hi in sorted(ranges):
        if lo > needed:
            return False
        needed = max(needed, hi + 1)
    return needed > 65535


def _is_internet(address, vnet: list) -> bool:
    if address.version == 4:
        outside = not any(address in n for n in INTERNET_EXCLUDED_V4)
    else:
        outside = address in ipaddress.ip_network("2000::/3")
    return outside and not any(address in n for n in vnet if n.version == address.version)


class ReferenceEvaluator:
    def __init__(self, rules: Iterable[SecurityRule], env: Environment = Environment()):
        self.rules = [ReferenceRule(r, env) for r in rules]

    def first_match(self, proto: int, version: int, src: int, sport: int, dst: int, dport: int) -> int:
        """Index of the first matching rule, or -1: the same answer as `Classifier.lookup`."""
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        src_ip, dst_ip = make(src), make(dst)
        for i, rule in enumerate(self.rules):
            if rule.matches(proto, src_ip, sport, dst_ip, dport):
                return i
        return -1


# -- ClassBench ---------------------------------------------------------------------------------

CLASSBENCH_PROTOCOLS = {0x06: "Tcp", 0x11: "Udp", 0x01: "Icmp", 0x32: "Esp", 0x33: "Ah"}


class TraceHeader(NamedTuple):
    proto: int
    src: int
    sport: int
    dst: int
    dport: int
    rule_id: int


def classbench_rules(path: Path) -> tuple[list[SecurityRule], dict[int, int]]:
    """Rules of a ClassBench file as NSG rules (priority in file order from 100, protocol mask 0 → `*`,
    flags ignored), and a map from ClassBench rule id to rule index. Rules for protocols Azure
    cannot express (GRE, 47) have no NSG equivalent and are left out of the map."""
    rules, index = [], {}
    for rule_id, line in enumerate(path.read_text().splitlines()):
        src, dst, sports, dports, proto = line.lstrip("@").split("\t")[:5]
        value, mask = (int(x, 16) for x in proto.split("/"))
        protocol = "*" if mask == 0 else CLASSBENCH_PROTOCOLS.get(value)
        if protocol is None:
            continue
        index[rule_id] = len(rules)
        rules.append(SecurityRule(
            name=f"cb{rule_id}", priority=100 + len(rules), direction=Direction.INBOUND, access=Access.ALLOW,
            protocol=protocol,
            source_address_prefix=src, source_port_range=_port_text(sports),
            destination_address_prefix=dst, destination_port_range=_port_text(dports)))
    return rules, index


def _port_text(text: str) -> str:
    lo, hi = (int(x) for x in text.split(":"))
    return "*" if (lo, hi) == (0, 65535) else str(lo) if lo == hi else f"{lo}-{hi}"


def classbench_trace(path: Path) -> list[TraceHeader]:
    headers = []
    for line in path.read_text().splitlines():
        src, dst, sport, dport, proto, _, rule_id = (int(x) for x in line.split("\t"))
        headers.append(TraceHeader(proto, src, sport, dst, dport, rule_id))
    return headers
