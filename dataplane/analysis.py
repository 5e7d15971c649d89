"""Static analysis of rule sets over the whole header space (design/interfaces.md, "Static analysis").

- `analyze_nsg`: per custom rule, which rules decide what it matches (`headerspace.Partition` of the
  rule's own match set by the other rules): `shadowed` (every part decided higher up), `redundant`
  (the parts it decides go the same way without it), `partly-overridden` (a higher rule of the other
  access decides part of it).
- `chaining_findings`: an Allow whose every packet the other NSG on a NIC's path denies.
- `diff_nsgs` / `diff_chains`: the regions where two versions decide differently.
- `exposure`: per NIC, what a new connection from a source space reaches after NAT and both NSGs.

Every finding and region carries a packet of it as a `Flow`, so `check` reproduces it. The core
prints nothing and reads no file; the `cmd_*` functions run the command lines `cli` defines.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import zlib
from typing import Any, Iterable, NamedTuple, Sequence

from .addresses import HOST_IP, V6, AddressResolver, ServiceTags, bundled_service_tags
from .errors import DataplaneError
from .flows import Flow
from .headerspace import (ALL_PORTS, ALL_PROTOCOLS, DESTINATION, DESTINATION_PORT, PORTED, PROTOCOL, SOURCE,
                          SOURCE_PORT, Intervals, MatchSet, Partition, Point, Region, RuleList, everything,
                          intersect, merge, merge_regions, rule_match_sets, subtract)
from .nat import ANY_PORT, PROTOCOL_NUMBERS, Translations
from .documents import is_plan, read_document
from .nsg import NetworkSecurityGroup, load_nsgs, nsgs_from_document
from .rules import Access, Direction, SecurityRule, parse_prefix
from .terraform import nsgs as terraform_nsgs, prior_state
from .topology import NetworkInterface, Scenario, load_scenario

SHADOWED, REDUNDANT, PARTLY_OVERRIDDEN = "shadowed", "redundant", "partly-overridden"
NO_EFFECT_BY_CHAINING, NEVER_HIT = "no-effect-by-chaining", "never-hit"
MANAGEMENT_PORTS: Intervals = ((22, 22), (3389, 3389), (5985, 5986))
DATABASE_PORTS: Intervals = merge([(1433, 1434), (1521, 1521), (3306, 3306), (5432, 5432), (6379, 6379),
                                   (9042, 9042), (27017, 27017)])
"""SQL Server, Oracle, MySQL/MariaDB, PostgreSQL, Redis, Cassandra, MongoDB."""
FAMILIES = (4, 6)


def point_flow(point: Point) -> Flow:
    make = ipaddress.IPv4Address if point.family == 4 else ipaddress.IPv6Address
    ported = point.protocol in (6, 17)
    return Flow(point.protocol, make(point.source), point.source_port if ported else 0,
                make(point.destination), point.destination_port if ported else 0)


class Finding(NamedTuple):
    """One rule's problem, the rules that cause it, and a packet that shows it."""

    nsg: str
    direction: str
    rule: str
    finding: str
    by: tuple[str, ...]
    example: Flow | None
    nic: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"nsg": self.nsg, "direction": self.direction, "rule": self.rule, "finding": self.finding,
               "by": list(self.by), "example": str(self.example) if self.example else None}
        if self.nic is not None:
            out["nic"] = self.nic
        return out


def _rule_lists(rules: Sequence[SecurityRule], resolver: AddressResolver, nsg: NetworkSecurityGroup) -> dict[int, RuleList]:
    try:
        return rule_match_sets(rules, resolver)
    except DataplaneError as e:
        raise e.located(file=nsg.file, nsg=nsg.name) from None


Addresses = dict[int, Intervals]
"""Per family, addresses to take examples from where a part has some (a scenario's NICs)."""


def decided_parts(lists: dict[int, RuleList], index: int, direction: Direction,
                  nics: Addresses | None = None) -> dict[int, Point]:
    """What decides the packets rule `index` matches once it is left out: first rule → a packet of it
    (-1: none would match). Rules above it decide what it never decides; below it, what it does."""
    found: dict[int, Point] = {}
    side = DESTINATION if direction is Direction.INBOUND else SOURCE
    for family in FAMILIES:
        rl = lists[family]
        own = rl.sets[index]
        if own.empty:
            continue
        prefer = {side: nics[family]} if nics else None
        for leaf, point in Partition([rl], own, [rl.all & ~(1 << index)]).leaves(prefer).items():
            found.setdefault(leaf[0], point)
    return found


def analyze_nsg(nsg: NetworkSecurityGroup, direction: Direction, resolver: AddressResolver,
                nics: Addresses | None = None) -> list[Finding]:
    """Shadowed, redundant and partly-overridden custom rules of one NSG direction; examples go to
    (inbound) or come from (outbound) the `nics` addresses where the rule's part has some."""
    rules = nsg.rules_in_order(direction)
    lists = _rule_lists(rules, resolver, nsg)
    findings = []
    for index, rule in enumerate(rules):
        if rule.default:
            continue
        parts = decided_parts(lists, index, direction, nics)
        if not parts:
            continue
        above = sorted(j for j in parts if 0 <= j < index)
        below = sorted((j for j in parts if j > index or j < 0), key=lambda j: (j < 0, j))
        kinds = []
        if not below:
            kinds.append((SHADOWED, above))
        else:
            opposite = [j for j in above if rules[j].access is not rule.access]
            if opposite:
                kinds.append((PARTLY_OVERRIDDEN, opposite))
            if all(j >= 0 and rules[j].access is rule.access for j in below):
                kinds.append((REDUNDANT, below))
        findings.extend(Finding(nsg.name, direction.value, rule.name, kind, tuple(rules[j].name for j in by),
                                point_flow(parts[by[0]])) for kind, by in kinds)
    return findings


def never_hit_findings(nsg: NetworkSecurityGroup, direction: Direction, resolver: AddressResolver,
                       never_hit: Iterable[str], nics: Addresses | None = None) -> list[Finding]:
    """Rules of the traffic's never-hit list, each with a packet it would decide (none when shadowed)."""
    rules = nsg.rules_in_order(direction)
    names = set(never_hit)
    lists = _rule_lists(rules, resolver, nsg)
    out = []
    for index, rule in enumerate(rules):
        if rule.default or rule.name not in names:
            continue
        own = decided_parts(lists, index, direction, nics)
        deciding = [j for j in own if j > index or j < 0]
        example = point_flow(own[deciding[0]]) if deciding else None
        out.append(Finding(nsg.name, direction.value, rule.name, NEVER_HIT, (), example))
    return out


# -- paths of a scenario --------------------------------------------------------------------------


def chain(scenario: Scenario, nic: NetworkInterface, direction: Direction) -> list[NetworkSecurityGroup]:
    """The NSGs a new connection meets at a NIC, in Azure's order (inbound subnet then NIC)."""
    names = [nic.subnet.nsg, nic.nsg]
    if direction is Direction.OUTBOUND:
        names.reverse()
    return [scenario.network_security_groups[n] for n in names if n]


def nic_space(nic: NetworkInterface, family: int) -> Intervals:
    return merge((int(ip), int(ip)) for ip in nic.private_ips if ip.version == family)


def _on_nic(universe: MatchSet, nic: NetworkInterface, direction: Direction) -> MatchSet:
    """Only packets to the NIC (inbound) or from it (outbound) meet its NSGs."""
    space = nic_space(nic, universe.family)
    if direction is Direction.INBOUND:
        return universe._replace(destinations=intersect(universe.destinations, space))
    return universe._replace(sources=intersect(universe.sources, space))


def chaining_findings(scenario: Scenario, direction: Direction) -> list[Finding]:
    """Allows on one NSG of a NIC's path whose every packet (to or from the NIC) the other NSG denies."""
    out = []
    for nic in scenario.network_interfaces.values():
        groups = chain(scenario, nic, direction)
        if len(groups) != 2:
            continue
        resolver = scenario.resolver(nic.vnet)
        orders = [g.rules_in_order(direction) for g in groups]
        lists = [_rule_lists(o, resolver, g) for o, g in zip(orders, groups)]
        for own in (0, 1):
            other = 1 - own
            for index, rule in enumerate(orders[own]):
                if rule.default or rule.access is not Access.ALLOW:
                    continue
                decided: dict[int, Point] = {}
                for family in FAMILIES:
                    universe = _on_nic(lists[own][family].sets[index], nic, direction)
                    if universe.empty:
                        continue
                    pair = [lists[own][family], lists[other][family]]
                    for leaf, point in Partition(pair, universe).leaves().items():
                        if leaf[0] == index:
                            decided.setdefault(leaf[1], point)
                if decided and all(j >= 0 and orders[other][j].access is Access.DENY for j in decided):
                    by = sorted(decided)
                    out.append(Finding(groups[own].name, direction.value, rule.name, NO_EFFECT_BY_CHAINING,
                                       tuple(f"{groups[other].name}/{orders[other][j].name}" for j in by),
                                       point_flow(decided[by[0]]), nic.name))
    return out


def attached_addresses(scenario: Scenario, nsg_name: str) -> Addresses:
    """The private addresses of the NICs an NSG filters (on the NIC or on its subnet)."""
    nics = [n for n in scenario.network_interfaces.values() if nsg_name in (n.nsg, n.subnet.nsg)]
    return {family: merge(iv for n in nics for iv in nic_space(n, family)) for family in FAMILIES}


def scenario_resolver(scenario: Scenario, nsg_name: str) -> AddressResolver:
    """What addresses mean for an NSG of the scenario: the VNet it is attached in (the first one)."""
    for nic in scenario.network_interfaces.values():
        if nsg_name in (nic.nsg, nic.subnet.nsg):
            return scenario.resolver(nic.vnet)
    for vnet in scenario.virtual_networks.values():
        if any(s.nsg == nsg_name for s in vnet.subnets):
            return scenario.resolver(vnet.name)
    first = next(iter(scenario.virtual_networks), None)
    return scenario.resolver(first) if first else AddressResolver((), service_tags=scenario.service_tags)


# -- diff ------------------------------------------------------------------------------------------


class Side(NamedTuple):
    """What decides a region in one version."""

    access: str
    rule: str | None

    def to_json(self) -> dict[str, Any]:
        return {"access": self.access, "rule": self.rule}


class Difference(NamedTuple):
    """A region of the header space decided one way before and another after."""

    region: Region
    before: Side
    after: Side
    example: Flow
    nic: str | None = None
    direction: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = region_json(self.region)
        out.update(before=self.before.to_json(), after=self.after.to_json(), example=str(self.example))
        if self.nic is not None:
            out["nic"] = self.nic
        if self.direction is not None:
            out["direction"] = self.direction
        return out


class Version(NamedTuple):
    """One version of a NIC's chain (or of one NSG): its NSGs and their rules in evaluation order."""

    groups: tuple[NetworkSecurityGroup, ...]
    orders: tuple[list[SecurityRule], ...]
    lists: tuple[dict[int, RuleList], ...]
    qualified: bool
    """Name rules NSG/RULE (a chain) rather than RULE (one NSG)."""

    @classmethod
    def of(cls, groups: Sequence[NetworkSecurityGroup], direction: Direction, resolver: AddressResolver,
           qualified: bool) -> "Version":
        orders = tuple(g.rules_in_order(direction) for g in groups)
        return cls(tuple(groups), orders, tuple(_rule_lists(o, resolver, g) for o, g in zip(orders, groups)),
                   qualified)

    def side(self, firsts: Sequence[int]) -> Side:
        """A chain allows when every NSG allows; the first Deny decides (a missing NSG allows)."""
        decided = Side(Access.ALLOW.value, None)
        for group, order, index in zip(self.groups, self.orders, firsts):
            rule = order[index]
            name = f"{group.name}/{rule.name}" if self.qualified else rule.name
            decided = Side(rule.access.value, name)
            if rule.access is Access.DENY:
                break
        return decided


def differences(before: Version, after: Version, universes: dict[int, MatchSet]) -> list[Difference]:
    """The merged regions of the universes where the two versions decide differently; parts with the
    same deciding rules before and after are merged whatever rules of later NSGs they went by."""
    out = []
    split = len(before.groups)
    for family, universe in universes.items():
        if universe.empty:
            continue
        lists = [ls[family] for ls in before.lists + after.lists]
        partition = Partition(lists, universe)
        sides: dict[tuple[int, ...], tuple[Side, Side]] = {}

        def differs(leaf: tuple[int, ...]) -> bool:
            found = sides.get(leaf)
            if found is None:
                found = sides[leaf] = (before.side(leaf[:split]), after.side(leaf[split:]))
            return found[0].access != found[1].access

        same: dict[tuple[Side, Side], tuple[int, ...]] = {}
        regions = [r._replace(leaf=same.setdefault(sides[r.leaf], r.leaf)) for r in partition.regions(differs)]
        for region in merge_regions(regions):
            old, new = sides[region.leaf]
            out.append(Difference(region, old, new, point_flow(region.point())))
    return out


def diff_nsgs(old: NetworkSecurityGroup, new: NetworkSecurityGroup, direction: Direction,
              resolver: AddressResolver, *, qualified: bool = False) -> list[Difference]:
    """Two versions of one NSG, over the whole header space of both families; `qualified` names rules NSG/RULE."""
    universes = {family: everything(family) for family in FAMILIES}
    return [d._replace(direction=direction.value) for d in differences(
        Version.of([old], direction, resolver, qualified), Version.of([new], direction, resolver, qualified),
        universes)]


def plan_nsg_versions(plan: dict, file: str) -> list[tuple[NetworkSecurityGroup, NetworkSecurityGroup]]:
    """Each NSG a Terraform plan changes, before and after; one it creates or deletes is, on its missing side,
    an NSG with the default rules only."""
    versions = [{n.name: n for n in nsgs_from_document(doc, file=file)} if terraform_nsgs(doc).document else {}
                for doc in (prior_state(plan), plan)]
    names = sorted(versions[0].keys() | versions[1].keys())
    pairs = [(versions[0].get(n, NetworkSecurityGroup(n)), versions[1].get(n, NetworkSecurityGroup(n))) for n in names]
    return [(old, new) for old, new in pairs if old != new]


def diff_chains(old: Scenario, new: Scenario, direction: Direction) -> list[Difference]:
    """Two scenarios, per NIC present in both: the packets to (inbound) or from (outbound) the NIC's
    addresses that its chain of NSGs decides differently."""
    out = []
    for name, nic in new.network_interfaces.items():
        before_nic = old.network_interfaces.get(name)
        if before_nic is None:
            continue
        before = Version.of(chain(old, before_nic, direction), direction, old.resolver(before_nic.vnet), True)
        after = Version.of(chain(new, nic, direction), direction, new.resolver(nic.vnet), True)
        universes = {}
        for family in FAMILIES:
            space = merge(nic_space(nic, family) + nic_space(before_nic, family))
            whole = everything(family)
            universes[family] = whole._replace(destinations=space) if direction is Direction.INBOUND \
                else whole._replace(sources=space)
        out.extend(d._replace(nic=name, direction=direction.value) for d in differences(before, after, universes))
    return out


# -- exposure --------------------------------------------------------------------------------------


class Exposure(NamedTuple):
    """A region of new connections from the source space that reach a NIC, and how."""

    nic: str
    region: Region
    via: str
    frontend: str | None
    rules: tuple[str, ...]
    example: Flow
    source_label: str | None
    """The source space's name when the region holds all of it (e.g. `Internet`)."""

    @property
    def calls_out(self) -> list[str]:
        """`management` and `database` when the region reaches such ports (TCP or UDP)."""
        if not self.region.ported:
            return []
        ports = self.region.fields[DESTINATION_PORT]
        return [name for name, wanted in (("management", MANAGEMENT_PORTS), ("database", DATABASE_PORTS))
                if intersect(ports, wanted)]

    def to_json(self) -> dict[str, Any]:
        data = region_json(self.region)
        return {"nic": self.nic, "protocols": data["protocols"],
                "ports": data["destination_ports"] if self.region.ported else [],
                "source": data["source"], "source_ports": data["source_ports"], "via": self.via,
                "frontend": self.frontend, "rules": list(self.rules), "example": str(self.example),
                "calls_out": self.calls_out}


class Entry(NamedTuple):
    """One way into a NIC: where packets arrive (before DNAT) and what its NSGs see."""

    via: str
    frontend: int | None
    """The public IP or frontend address the client sends to (None: the private address itself)."""
    frontend_port: int | None
    """None: every port, kept through the translation."""
    protocols: Intervals
    family: int | None
    """The family of the addresses; None for the private way (both)."""
    backend: int | None
    """The address the NSGs see (None: the NIC's own addresses)."""
    backend_port: int | None
    pool: tuple[tuple[str, int], ...] = ()
    """For a load-balancer rule, every (NIC, address) the hash chooses from (nat.Translations)."""
    taken: tuple[tuple[int, int], ...] = ()
    """For an HA-ports rule, the (protocol, port) pairs that other rules of its frontend take."""


def entries(scenario: Scenario, translations: Translations, nic: NetworkInterface) -> list[Entry]:
    """The ways a new connection from outside reaches the NIC, as `nat.Translations` translates:
    its public IPs, load-balancer rules (HA ports too) and inbound NAT rules that lead to it, and
    its private addresses."""
    out = [Entry("private", None, None, ALL_PROTOCOLS, None, None, None)]
    for key, owner in translations.public.items():
        private = translations.public_private.get(key)
        family = 6 if key & V6 else 4
        if owner is nic and any(int(ip) == private and ip.version == family for ip in nic.private_ips):
            out.append(Entry("public-ip", key & ~V6, None, ALL_PROTOCOLS, family, private, None))
    nat_slots = {(lb.name, (nat.frontend_ip or lb.frontend_ip), number, nat.frontend_port)
                 for lb in scenario.load_balancers.values() for nat in lb.inbound_nat_rules
                 for number in PROTOCOL_NUMBERS.get(nat.protocol, ())}
    for key, table in translations.frontends.items():
        family = 6 if key & V6 else 4
        address = ipaddress.ip_address(key & ~V6) if family == 4 else ipaddress.IPv6Address(key & ~V6)
        name = translations.frontend_names[key]
        for slot, (backend_port, targets) in table.items():
            pool = tuple((n.name, ip) for n, ip in targets)
            for member, ip in pool:
                if member != nic.name:
                    continue
                if slot == ANY_PORT:
                    taken = tuple(s for s in table if s != ANY_PORT)
                    out.append(Entry("load-balancer", key & ~V6, None, ALL_PROTOCOLS, family, ip, None, pool, taken))
                    continue
                proto, port = slot
                via = "inbound-nat" if (name, address, proto, port) in nat_slots else "load-balancer"
                out.append(Entry(via, key & ~V6, port, ((proto, proto),), family, ip, backend_port or port, pool))
    return out


def _ranges(resolver: AddressResolver, item: str) -> tuple[Intervals, Intervals]:
    v4, v6 = resolver.resolve(item, field="--from")
    return merge(v4), merge(v6)


def exposure(scenario: Scenario, source: str = "Internet") -> list[Exposure]:
    """Per NIC, the new connections from `source` (a tag or prefix) that its inbound chain allows.

    Internet sources come in through public IPs and load-balancer frontends only; other sources
    (the VNet, peered VNets, on-premises ranges) reach the private addresses too. The platform's
    168.63.129.16 and the scenario's own NICs (whose packets are first decided outbound at their NIC)
    are left out of the source space.
    """
    translations = Translations(scenario)
    out = []
    own = {family: merge((int(ip), int(ip)) for n in scenario.network_interfaces.values()
                         for ip in n.private_ips if ip.version == family) for family in FAMILIES}
    host = int(ipaddress.IPv4Address(HOST_IP))
    for nic in scenario.network_interfaces.values():
        resolver = scenario.resolver(nic.vnet)
        sources = dict(zip(FAMILIES, _ranges(resolver, source)))
        internet = dict(zip(FAMILIES, _ranges(resolver, "Internet")))
        sources = {f: subtract(sources[f], own[f] + (((host, host),) if f == 4 else ())) for f in FAMILIES}
        version = Version.of(chain(scenario, nic, Direction.INBOUND), Direction.INBOUND, resolver, True)
        for entry in entries(scenario, translations, nic):
            if entry.via == "private":
                ways = [(f, subtract(sources[f], internet[f]), nic_space(nic, f)) for f in FAMILIES]
            else:
                ways = [(entry.family, sources[entry.family], ((entry.backend, entry.backend),))]
            for family, src, dst in ways:
                for universe in _universes(entry, family, src, dst):
                    if not universe.empty:
                        out.extend(_exposed(nic, entry, version, universe, source, sources[family]))
    return out


def _universes(entry: Entry, family: int, sources: Intervals, destinations: Intervals) -> list[MatchSet]:
    """The packets an entry lets in, as the NSGs see them. An HA-ports rule takes every protocol and
    port but those its frontend's other rules take, which splits it by protocol."""
    if entry.backend_port is not None:
        ports = ((entry.backend_port, entry.backend_port),)
        return [MatchSet(family, entry.protocols, sources, ALL_PORTS, destinations, ports, False)]
    if not entry.taken:
        return [MatchSet(family, entry.protocols, sources, ALL_PORTS, destinations, ALL_PORTS, True)]
    out = [MatchSet(family, subtract(ALL_PROTOCOLS, PORTED), sources, ALL_PORTS, destinations, ALL_PORTS, True)]
    for number in (6, 17):
        free = subtract(ALL_PORTS, merge((port, port) for proto, port in entry.taken if proto == number))
        out.append(MatchSet(family, ((number, number),), sources, ALL_PORTS, destinations, free, False))
    return out


def _exposed(nic: NetworkInterface, entry: Entry, version: Version, universe: MatchSet, label: str,
             whole_source: Intervals) -> list[Exposure]:
    lists = [ls[universe.family] for ls in version.lists]
    sides: dict[tuple[int, ...], Side] = {}

    def allowed(leaf: tuple[int, ...]) -> bool:
        found = sides.get(leaf)
        if found is None:
            found = sides[leaf] = version.side(leaf)
        return found.access == Access.ALLOW.value

    out = []
    frontend = None
    if entry.frontend_port is not None:
        address = ipaddress.ip_address(entry.frontend) if entry.family == 4 else ipaddress.IPv6Address(entry.frontend)
        frontend = f"[{address}]:{entry.frontend_port}" if entry.family == 6 else f"{address}:{entry.frontend_port}"
    for region in Partition(lists, universe).regions(allowed):
        rules = tuple(f"{g.name}/{o[j].name}" for g, o, j in zip(version.groups, version.orders, region.leaf))
        point = region.point()
        if entry.frontend is not None:
            point = point._replace(destination=entry.frontend)
            if entry.frontend_port is not None:
                point = point._replace(destination_port=entry.frontend_port)
        if entry.pool:
            point = _landing(point, nic, entry, region)
        out.append(Exposure(nic.name, region, entry.via, frontend, rules, point_flow(point),
                            label if region.fields[SOURCE] == whole_source else None))
    return out


def _landing(point: Point, nic: NetworkInterface, entry: Entry, region: Region) -> Point:
    """A client port for which the load balancer's hash (as in nat.Translations) picks this NIC."""
    if not region.ported:
        return point
    for lo, hi in region.fields[SOURCE_PORT]:
        start = 50000 if lo <= 50000 <= hi else lo
        for port in range(start, min(hi, start + 5000) + 1):
            text = f"{point.family}/{point.source}/{port}/{point.protocol}".encode()
            if entry.pool[zlib.crc32(text) % len(entry.pool)][0] == nic.name:
                return point._replace(source_port=port)
    return point


# -- output shapes ---------------------------------------------------------------------------------


def cidrs(family: int, intervals: Intervals) -> list[str]:
    from netaddr import IPAddress, IPRange

    out = []
    for lo, hi in intervals:
        out.extend(str(c) for c in IPRange(IPAddress(lo, family), IPAddress(hi, family)).cidrs())
    return out


def port_texts(intervals: Intervals) -> list[str]:
    return [f"{lo}-{hi}" for lo, hi in intervals]


_NAMED = {6: "tcp", 17: "udp", 1: "icmp", 50: "esp", 51: "ah"}


def protocol_list(intervals: Intervals) -> list | str:
    """`*`, or names (tcp, udp, icmp, esp, ah), numbers, and `LO-HI` for runs of other numbers."""
    if intervals == ALL_PROTOCOLS:
        return "*"
    out: list = []
    for lo, hi in intervals:
        start = lo
        for number in range(lo, hi + 2):
            if number > hi or number in _NAMED:
                if start < number:
                    out.append(start if number - 1 == start else f"{start}-{number - 1}")
                if number <= hi:
                    out.append(_NAMED[number])
                start = number + 1
    return out


def region_json(region: Region) -> dict[str, Any]:
    ported = region.ported
    return {"protocols": protocol_list(region.fields[PROTOCOL]),
            "source": cidrs(region.family, region.fields[SOURCE]),
            "source_ports": port_texts(region.fields[SOURCE_PORT] if ported else ALL_PORTS),
            "destination": cidrs(region.family, region.fields[DESTINATION]),
            "destination_ports": port_texts(region.fields[DESTINATION_PORT] if ported else ALL_PORTS)}


# -- command lines ---------------------------------------------------------------------------------


class UsageError(DataplaneError):
    """A command line of `analyze`, `diff` or `exposure` that cannot be acted on."""


def _directions(args: argparse.Namespace) -> list[Direction]:
    return [Direction(args.direction.capitalize())] if args.direction else list(Direction)


class _Context:
    """Where NSG files are read and what their addresses mean: a scenario's VNet, or `check --nsg`'s."""

    def __init__(self, args: argparse.Namespace):
        self.scenario = load_scenario(args.scenario) if args.scenario else None
        if self.scenario is not None and (args.address_space or args.service_tags):
            raise UsageError("--address-space and --service-tags go without --scenario; a scenario defines them")
        self.tags = ServiceTags.from_file(args.service_tags) if args.service_tags else bundled_service_tags()
        for prefix in args.address_space:
            if parse_prefix(prefix) is None:
                raise UsageError(f"--address-space: {prefix!r} is not an IP prefix")
        self.address_space = tuple(args.address_space)
        self.name = args.name

    def nsgs(self, file: str) -> list[NetworkSecurityGroup]:
        found = load_nsgs(file)
        if self.name is not None:
            found = [n for n in found if n.name == self.name]
            if not found:
                raise UsageError(f"holds no NSG named {self.name!r}", file=file)
        return found

    def space(self) -> Addresses:
        """The --address-space prefixes, where examples' local addresses are taken from."""
        resolver = AddressResolver(())
        parts = [resolver.resolve(p, field="--address-space") for p in self.address_space]
        return {family: merge(iv for part in parts for iv in part[index])
                for index, family in enumerate(FAMILIES)}

    def resolver(self, nsg: NetworkSecurityGroup) -> AddressResolver:
        if self.scenario is not None:
            return scenario_resolver(self.scenario, nsg.name)
        return AddressResolver(self.address_space, service_tags=self.tags)


def analyze(args: argparse.Namespace) -> list[Finding]:
    context = _Context(args)
    scenario = context.scenario
    if args.traffic and scenario is None:
        raise UsageError("--traffic needs --scenario: captures are replayed through its NICs")
    if args.files:
        targets = [(n, context.resolver(n)) for f in args.files for n in context.nsgs(f)]
    elif scenario is not None:
        targets = [(n, context.resolver(n)) for n in scenario.network_security_groups.values()]
    else:
        raise UsageError("give NSG files, or --scenario to analyze all its NSGs")
    nics = {nsg.name: attached_addresses(scenario, nsg.name) if scenario else context.space() for nsg, _ in targets}
    findings = [f for nsg, resolver in targets for d in _directions(args)
                for f in analyze_nsg(nsg, d, resolver, nics[nsg.name])]
    if scenario is not None:
        names = {nsg.name for nsg, _ in targets}
        findings += [f for d in _directions(args) for f in chaining_findings(scenario, d) if f.nsg in names]
    if args.traffic:
        from .replay import replay

        never = replay(scenario, args.traffic).rules_never_hit
        findings += [f for nsg, resolver in targets for d in _directions(args)
                     for f in never_hit_findings(nsg, d, resolver, never.get(nsg.name, ()), nics[nsg.name])]
    return findings


def cmd_analyze(args: argparse.Namespace) -> int:
    findings = analyze(args)
    if args.json:
        for f in findings:
            sys.stdout.write(json.dumps(f.to_json()) + "\n")
    else:
        table = _table("findings", ("NSG", "direction", "rule", "finding", "by", "example"))
        for f in findings:
            nsg = f"{f.nsg} (NIC {f.nic})" if f.nic else f.nsg
            table.add_row(nsg, f.direction, f.rule, f.finding, ", ".join(f.by) or "-",
                          str(f.example) if f.example else "-")
        _print(table, f"{len(findings)} finding{'s' if len(findings) != 1 else ''}")
    return 1 if args.strict and findings else 0


def _is_scenario(file: str) -> bool:
    from .nsg import read_document
    from .topology import SCENARIO_KEYS

    doc = read_document(file)
    return isinstance(doc, dict) and bool(SCENARIO_KEYS & doc.keys()) and "securityRules" not in doc


def diff(args: argparse.Namespace) -> list[Difference]:
    if args.terraform_plan:
        return _plan_diff(args)
    if args.old is None or args.new is None:
        raise UsageError("give OLD and NEW, or --terraform-plan PLAN")
    kinds = (_is_scenario(args.old), _is_scenario(args.new))
    if kinds[0] != kinds[1]:
        raise UsageError(f"compare two NSG files or two scenarios: {args.old} and {args.new} are one of each")
    if kinds[0]:
        if args.scenario or args.name or args.address_space or args.service_tags:
            raise UsageError("two scenarios bring their own NSGs and VNets: no --scenario, --name, "
                             "--address-space or --service-tags")
        old, new = load_scenario(args.old), load_scenario(args.new)
        return [d for direction in _directions(args) for d in diff_chains(old, new, direction)]
    context = _Context(args)
    olds, news = context.nsgs(args.old), context.nsgs(args.new)
    if len(olds) == 1 and len(news) == 1:
        pairs = [(olds[0], news[0])]
    else:
        by_name = {n.name: n for n in olds}
        pairs = [(by_name[n.name], n) for n in news if n.name in by_name]
        if not pairs:
            raise UsageError("no NSG name is in both files: choose with --name", file=args.new)
    return [d for old, new in pairs for direction in _directions(args)
            for d in diff_nsgs(old, new, direction, context.resolver(new))]


def _plan_diff(args: argparse.Namespace) -> list[Difference]:
    """Addresses mean what the plan's after-state says, unless --scenario or --address-space say otherwise."""
    if args.old is not None or args.name:
        raise UsageError("--terraform-plan brings both versions of every NSG it changes: no OLD, NEW or --name")
    plan = read_document(args.terraform_plan)
    if not is_plan(plan):
        raise UsageError("is not a Terraform plan (`terraform show -json plan.out`)", file=args.terraform_plan)
    if args.scenario or args.address_space or args.service_tags:
        resolver = _Context(args).resolver
    else:
        after = load_scenario(args.terraform_plan)
        resolver = lambda nsg: scenario_resolver(after, nsg.name)  # noqa: E731
    return [d for old, new in plan_nsg_versions(plan, args.terraform_plan) for direction in _directions(args)
            for d in diff_nsgs(old, new, direction, resolver(new), qualified=True)]


def cmd_diff(args: argparse.Namespace) -> int:
    differences_ = diff(args)
    if args.json:
        for d in differences_:
            sys.stdout.write(json.dumps(d.to_json()) + "\n")
    else:
        columns = ("direction", "protocols", "source", "src ports", "destination", "dst ports", "before", "after",
                   "example")
        table = _table("regions decided differently", (("NIC",) if any(d.nic for d in differences_) else ()) + columns)
        for d in differences_:
            data = region_json(d.region)
            row = [d.direction or "-", _protocols_text(data["protocols"]), _short(data["source"]),
                   _ports_text(data["source_ports"]), _short(data["destination"]),
                   _ports_text(data["destination_ports"]), f"{d.before.access} {d.before.rule or '(no NSG)'}",
                   f"{d.after.access} {d.after.rule or '(no NSG)'}", str(d.example)]
            table.add_row(*(([d.nic or "-"] if any(x.nic for x in differences_) else []) + row))
        _print(table, f"{len(differences_)} region{'s' if len(differences_) != 1 else ''} decided differently")
    return 1 if differences_ else 0


def cmd_exposure(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    if args.source != "*" and parse_prefix(args.source) is None and not args.source.isidentifier():
        raise UsageError(f"--from: {args.source!r} is not Internet, a prefix or a service tag")
    found = exposure(scenario, args.source)
    if args.json:
        for e in found:
            sys.stdout.write(json.dumps(e.to_json()) + "\n")
        return 0
    table = _table(f"new connections from {args.source} that are allowed",
                   ("NIC", "via", "frontend", "protocols", "ports", "source", "rules", "example", ""))
    for e in found:
        data = e.to_json()
        table.add_row(e.nic, e.via, e.frontend or "-", _protocols_text(data["protocols"]),
                      _ports_text(data["ports"]) if e.region.ported else "-",
                      e.source_label or _short(data["source"]), ", ".join(e.rules) or "(no NSG)", str(e.example),
                      " ".join(f"⚠ {c}" for c in e.calls_out))
    _print(table, f"{len(found)} region{'s' if len(found) != 1 else ''} open")
    return 0


def _protocols_text(protocols: list | str) -> str:
    return protocols if isinstance(protocols, str) else ", ".join(str(p) for p in protocols)


def _ports_text(ports: list[str]) -> str:
    shown = [p.split("-")[0] if p.split("-")[0] == p.split("-")[1] else p for p in ports]
    return "*" if shown == ["0-65535"] else ", ".join(shown)


def _short(prefixes: list[str], limit: int = 4) -> str:
    if prefixes in (["0.0.0.0/0"], ["::/0"]):
        return "*"
    return ", ".join(prefixes[:limit]) + (f", … ({len(prefixes)} prefixes)" if len(prefixes) > limit else "")


def _table(title: str, columns: Sequence[str]):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _print(table, footer: str) -> None:
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(table)
    console.print(footer)
