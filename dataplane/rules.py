"""Security rules as Azure defines them (reference §2, §5), their validation and the default rules.

A `SecurityRule` keeps the values exactly as written (so saving gives back what was loaded) and
offers the parsed views the classifier needs (`source_ports`, `sources`, ...). Validation reports
Azure's error codes; where Azure's code is not public, the README lists the code chosen.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, NamedTuple

from .errors import RuleError, ValidationErrors

PRIORITY_MIN, PRIORITY_MAX = 100, 4096
NAME_MAX, DESCRIPTION_MAX = 80, 140
MAX_ASGS_PER_SIDE = 10


class Direction(str, enum.Enum):
    INBOUND = "Inbound"
    OUTBOUND = "Outbound"

    __hash__ = str.__hash__  # Enum's own __hash__ is Python code, and every new flow keys caches by direction

    def __str__(self) -> str:
        return self.value


class Access(str, enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"

    def __str__(self) -> str:
        return self.value


PROTOCOLS = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp", "esp": "Esp", "ah": "Ah", "*": "*"}

_NAME = re.compile(r"^\w(?:[\w.\-]*\w)?$")
_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)*$")
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_OCTET = r"(0|[1-9][0-9]{0,2})"
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(0|[1-9][0-9]?))?")
# Tags match case-insensitively (`INTERNET` is Internet, as Azure upper-cases tags in its own errors); the
# classic underscore spellings are refused by the Resource Manager API (reference §4).
CLASSIC_TAG_SPELLINGS = frozenset({"VIRTUAL_NETWORK", "AZURE_LOADBALANCER"})

# Azure property names of a rule, in the order REST shows them.
RULE_PROPERTIES = (
    "description", "protocol", "sourcePortRange", "sourcePortRanges", "destinationPortRange",
    "destinationPortRanges", "sourceAddressPrefix", "sourceAddressPrefixes",
    "sourceApplicationSecurityGroups", "destinationAddressPrefix", "destinationAddressPrefixes",
    "destinationApplicationSecurityGroups", "access", "priority", "direction",
)
_RULE_PROPERTY_SET = frozenset(RULE_PROPERTIES)
# Read-only or resource-envelope keys that real `az`/REST output carries beside the properties.
RULE_METADATA = frozenset({"id", "etag", "type", "provisioningState", "resourceGroup", "name", "properties"})


@lru_cache(maxsize=65536)
def parse_port_range(text: str) -> tuple[int, int] | None:
    """`*` → (0, 65535); `80` → (80, 80); `lo-hi` → (lo, hi); anything else → None. Spaces around the
    range are ignored: Azure deployed a quickstart template whose range was `'65503-65534 '`."""
    text = text.strip()
    if text == "*":
        return (0, 65535)
    m = _PORT.match(text)
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if lo > 65535 or hi > 65535 or lo > hi:
        return None
    return (lo, hi)


class Prefix(NamedTuple):
    """An IP or CIDR as numbers: a cache of half a million of them holds no objects for the GC to walk."""

    version: int
    first: int
    last: int


@lru_cache(maxsize=65536)
def parse_prefix(text: str) -> Prefix | None:
    """An IP or CIDR as Azure accepts it; host bits are masked off (10.0.0.7/24 → 10.0.0.0/24).
    An IPv6 zone (`fe80::1%eth0`), which `ipaddress` reads, is not an address Azure takes."""
    quad = dotted_quad(text)
    if quad is not None:
        return quad
    if "%" in text:
        return None
    if "/" in text:
        addr, _, length = text.partition("/")
        if not length.isdigit():
            return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return Prefix(net.version, int(net.network_address), int(net.broadcast_address))


def dotted_quad(text: str) -> Prefix | None:
    """An IPv4 address or CIDR in the one spelling every parser reads alike (decimal octets without
    leading zeros, a prefix length rather than a mask), host bits masked off; None for anything else.
    Most prefixes of a rule set are such, and reading them takes a tenth of `ipaddress`' time."""
    m = _DOTTED_QUAD.fullmatch(text)
    if m is None:
        return None
    a, b, c, d, length = m.groups()
    a, b, c, d = int(a), int(b), int(c), int(d)
    bits = 32 if length is None else int(length)
    if a > 255 or b > 255 or c > 255 or d > 255 or bits > 32:
        return None
    host = (1 << (32 - bits)) - 1
    first = ((a << 24) | (b << 16) | (c << 8) | d) & ~host
    return Prefix(4, first, first | host)


def is_tag_syntax(text: str) -> bool:
    return bool(_TAG.match(text)) and text not in CLASSIC_TAG_SPELLINGS and text.lower() != "any"


def asg_name(ref: Any) -> str:
    """ASG references are `{"id": ".../applicationSecurityGroups/Name"}` or a bare name."""
    if isinstance(ref, dict):
        ref = ref.get("id", "")
    return str(ref).rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class SecurityRule:
    """One security rule, with Azure's property names in snake case."""

    name: str
    priority: int
    direction: Direction
    access: Access
    protocol: str
    source_address_prefix: str | None = None
    source_address_prefixes: tuple[str, ...] = ()
    source_application_security_groups: tuple[str, ...] = ()
    source_port_range: str | None = None
    source_port_ranges: tuple[str, ...] = ()
    destination_address_prefix: str | None = None
    destination_address_prefixes: tuple[str, ...] = ()
    destination_application_security_groups: tuple[str, ...] = ()
    destination_port_range: str | None = None
    destination_port_ranges: tuple[str, ...] = ()
    description: str = ""
    default: bool = field(default=False, compare=False)

    @property
    def sources(self) -> tuple[str, ...]:
        """Address items of the source side: prefixes, `*` or one tag (empty when ASGs are used)."""
        return _side(self.source_address_prefix, self.source_address_prefixes)

    @property
    def destinations(self) -> tuple[str, ...]:
        return _side(self.destination_address_prefix, self.destination_address_prefixes)

    @property
    def source_ports(self) -> tuple[tuple[int, int], ...]:
        return _ports(self.source_port_range, self.source_port_ranges)

    @property
    def destination_ports(self) -> tuple[tuple[int, int], ...]:
        return _ports(self.destination_port_range, self.destination_port_ranges)

    @property
    def api_name(self) -> str:
        """The name as effective rules and IP flow verify print it (§2)."""
        return ("defaultSecurityRules/" if self.default else "securityRules/") + self.name

    def to_azure(self) -> dict[str, Any]:
        """REST shape: `{"name", "properties": {...}}` with every plural array present, as Azure returns."""
        props: dict[str, Any] = {
            "description": self.description or None,
            "protocol": self.protocol,
            "sourcePortRange": self.source_port_range,
            "destinationPortRange": self.destination_port_range,
            "sourceAddressPrefix": self.source_address_prefix,
            "destinationAddressPrefix": self.destination_address_prefix,
            "access": self.access.value,
            "priority": self.priority,
            "direction": self.direction.value,
            "sourcePortRanges": list(self.source_port_ranges),
            "destinationPortRanges": list(self.destination_port_ranges),
            "sourceAddressPrefixes": list(self.source_address_prefixes),
            "destinationAddressPrefixes": list(self.destination_address_prefixes),
        }
        if self.source_application_security_groups:
            props["sourceApplicationSecurityGroups"] = [
                {"id": n} for n in self.source_application_security_groups]
        if self.destination_application_security_groups:
            props["destinationApplicationSecurityGroups"] = [
                {"id": n} for n in self.destination_application_security_groups]
        return {"name": self.name, "properties": {k: v for k, v in props.items() if v is not None}}


def _side(prefix: str | None, prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return (prefix,) if prefix is not None else prefixes


def _ports(single: str | None, many: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    texts = (single,) if single is not None else many
    return tuple(parse_port_range(t) for t in texts)  # type: ignore[misc]


def _default(name: str, priority: int, direction: Direction, access: Access, src: str, dst: str) -> SecurityRule:
    return SecurityRule(name=name, priority=priority, direction=direction, access=access, protocol="*",
                        source_address_prefix=src, source_port_range="*",
                        destination_address_prefix=dst, destination_port_range="*", default=True)


_IN, _OUT, _ALLOW, _DENY = Direction.INBOUND, Direction.OUTBOUND, Access.ALLOW, Access.DENY
DEFAULT_RULES: tuple[SecurityRule, ...] = (
    _default("AllowVnetInBound", 65000, _IN, _ALLOW, "VirtualNetwork", "VirtualNetwork"),
    _default("AllowAzureLoadBalancerInBound", 65001, _IN, _ALLOW, "AzureLoadBalancer", "*"),
    _default("DenyAllInBound", 65500, _IN, _DENY, "*", "*"),
    _default("AllowVnetOutBound", 65000, _OUT, _ALLOW, "VirtualNetwork", "VirtualNetwork"),
    _default("AllowInternetOutBound", 65001, _OUT, _ALLOW, "*", "Internet"),
    _default("DenyAllOutBound", 65500, _OUT, _DENY, "*", "*"),
)
DEFAULT_RULE_NAMES = frozenset(r.name for r in DEFAULT_RULES)


class _Problems:
    """Collects every problem of one rule, so `lint` can show them all at once."""

    def __init__(self, rule: str | None):
        self.rule = rule
        self.items: list[RuleError] = []

    def add(self, code: str, field_: str, message: str) -> None:
        self.items.append(RuleError(message, rule=self.rule, code=code, field=field_))


# Each side's property names, made once rather than for every rule.
_SIDE_KEYS = tuple((side, (f"{side}AddressPrefix", f"{side}AddressPrefixes", f"{side}ApplicationSecurityGroups",
                             f"{side}PortRange", f"{side}PortRanges")) for side in ("source", "destination"))


def rule_from_azure(data: Any, *, classic: bool = False) -> SecurityRule:
    """Build a rule from Azure's JSON (flattened `az` output or REST's nested `properties`).

    Raises ValidationErrors listing every problem Azure would report.
    """
    if not isinstance(data, dict):
        raise ValidationErrors([RuleError(f"a security rule must be an object, got {_show(data)}",
                                          code="InvalidRequestFormat", field="securityRules")])
    name = data.get("name")
    props = data.get("properties") if isinstance(data.get("properties"), dict) else {}
    merged = {**{k: v for k, v in data.items() if k not in RULE_METADATA}, **props}
    p = _Problems(name if isinstance(name, str) else None)
    for key in merged:
        if key not in _RULE_PROPERTY_SET and key not in RULE_METADATA:
            p.add("InvalidRequestFormat", key, "is not a property of a security rule")

    if not isinstance(name, str) or not name:
        p.add("InvalidResourceName", "name", f"a rule needs a name, got {_show(name)}")
        name = ""
    priority = _priority(merged.get("priority"), p)
    direction = _enum(merged.get("direction"), Direction, "direction", p)
    access = _enum(merged.get("access"), Access, "access", p)
    protocol = merged.get("protocol")
    if isinstance(protocol, str) and protocol.lower() in PROTOCOLS:
        protocol = PROTOCOLS[protocol.lower()]
    else:
        p.add("InvalidRequestFormat", "protocol",
              f"{_show(protocol)} is not one of Tcp, Udp, Icmp, Esp, Ah, *")
        protocol = "*"
    description = merged.get("description") or ""
    if not isinstance(description, str):
        p.add("InvalidRequestFormat", "description", f"{_show(description)} is not a string")
        description = ""

    sides = {}
    for side, (prefix, prefixes, asgs, port_range, port_ranges) in _SIDE_KEYS:
        sides[side] = (
            _optional_str(merged, prefix, p),
            _str_list(merged, prefixes, p),
            tuple(asg_name(r) for r in _list(merged, asgs, p)),
            _port_str(merged, port_range, p),
            tuple(str(v) if isinstance(v, int) else v for v in _str_list(merged, port_ranges, p, ints=True)),
        )
    rule = SecurityRule(
        name=name, priority=priority, direction=direction, access=access, protocol=protocol,
        source_address_prefix=sides["source"][0], source_address_prefixes=sides["source"][1],
        source_application_security_groups=sides["source"][2],
        source_port_range=sides["source"][3], source_port_ranges=sides["source"][4],
        destination_address_prefix=sides["destination"][0],
        destination_address_prefixes=sides["destination"][1],
        destination_application_security_groups=sides["destination"][2],
        destination_port_range=sides["destination"][3], destination_port_ranges=sides["destination"][4],
        description=description,
    )
    reported = {_topic(e.field) for e in p.items}
    problems = p.items + [e for e in validate_rule(rule, classic=classic) if _topic(e.field) not in reported]
    if problems:
        raise ValidationErrors(problems)
    return rule


def _topic(field_: str | None) -> str | None:
    """What a field is about (one side's addresses or ports, or the field itself), so a value that could
    not be read is not reported a second time by validation, and every other problem still is."""
    for side in ("source", "destination"):
        if field_ and field_.startswith(side):
            return side + ("Port" if "Port" in field_ else "Address")
    return field_


def validate_rule(rule: SecurityRule, *, classic: bool = False) -> list[RuleError]:
    """Azure's per-rule checks (§2, §3, §5); NSG-wide checks live in `validate_rules`."""
    p = _Problems(rule.name)
    if not isinstance(rule.name, str) or len(rule.name) > NAME_MAX or not _NAME.match(rule.name):
        p.add("InvalidResourceName", "name",
              f"{_show(rule.name)} is invalid: up to {NAME_MAX} characters, beginning with a word "
              "character, ending with a word character or '_', containing word characters, '.', '-' or '_'")
    if not PRIORITY_MIN <= rule.priority <= PRIORITY_MAX:
        p.add("SecurityRuleInvalidPriority", "priority",
              f"{rule.priority} is out of range: allowed values are {PRIORITY_MIN} to {PRIORITY_MAX}")
    if len(rule.description) > DESCRIPTION_MAX:
        p.add("SecurityRuleInvalidDescription", "description",
              f"is {len(rule.description)} characters long; at most {DESCRIPTION_MAX} are allowed")
    _check_addresses("source", rule.source_address_prefix, rule.source_address_prefixes,
                     rule.source_application_security_groups, p, classic)
    _check_ports("source", rule.source_port_range, rule.source_port_ranges, p, classic)
    _check_addresses("destination", rule.destination_address_prefix, rule.destination_address_prefixes,
                     rule.destination_application_security_groups, p, classic)
    _check_ports("destination", rule.destination_port_range, rule.destination_port_ranges, p, classic)
    return p.items


def _check_addresses(side: str, single: str | None, many: tuple[str, ...], asgs: tuple[str, ...], p: _Problems,
                     classic: bool) -> None:
    given = (single is not None) + bool(many) + bool(asgs)  # a count: naming the fields is for errors only
    if not given:
        p.add("SecurityRuleInvalidAddressPrefix", f"{side}AddressPrefix",
              f"no {side} given: set one of {side}AddressPrefix, {side}AddressPrefixes, "
              f"{side}ApplicationSecurityGroups")
        return
    if given > 1:
        named = [f for f, v in ((f"{side}AddressPrefix", single is not None), (f"{side}AddressPrefixes", bool(many)),
                                (f"{side}ApplicationSecurityGroups", bool(asgs))) if v]
        p.add("SecurityRuleInvalidAddressPrefix", named[1],
              f"only one of {', '.join(named)} can be used per security rule")
        return
    if single is not None:
        if single != "*" and parse_prefix(single) is None and not is_tag_syntax(single):
            hint = "; use " + f"{side}AddressPrefixes" if "," in single else ""
            p.add("SecurityRuleInvalidAddressPrefix", f"{side}AddressPrefix",
                  f"{_show(single)} is not *, an IP address, a CIDR prefix or a service tag{hint}")
    elif many:
        if classic and len(many) > 1:
            p.add("SecurityRuleAugmentedNotSupportedInClassic", f"{side}AddressPrefixes",
                  f"{len(many)} prefixes: a classic NSG takes one address per side")
        versions = set()
        for value in many:
            net = parse_prefix(value)
            if net is not None:
                versions.add(net.version)
            elif value == "*" or is_tag_syntax(value):
                p.add("SecurityRuleParameterContainsUnsupportedValue", f"{side}AddressPrefixes",
                      f"{_show(value)}: * and service tags are allowed only in {side}AddressPrefix")
            else:
                p.add("SecurityRuleInvalidAddressPrefix", f"{side}AddressPrefixes",
                      f"{_show(value)} is not an IP address or CIDR prefix")
        if len(versions) > 1:
            p.add("ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies", f"{side}AddressPrefixes",
                  "mixes IPv4 and IPv6 prefixes")
    else:
        if classic:
            p.add("SecurityRuleAugmentedNotSupportedInClassic", f"{side}ApplicationSecurityGroups",
                  "application security groups need the Resource Manager deployment model")
        if len(asgs) > MAX_ASGS_PER_SIDE:
            p.add("SecurityRuleApplicationSecurityGroupsLimitReached", f"{side}ApplicationSecurityGroups",
                  f"{len(asgs)} application security groups; at most {MAX_ASGS_PER_SIDE} per side")


def _check_ports(side: str, single: str | None, many: tuple[str, ...], p: _Problems, classic: bool) -> None:
    if single is not None and many:
        p.add("SecurityRuleInvalidPortRange", f"{side}PortRanges",
              f"only one of {side}PortRange, {side}PortRanges can be used per security rule")
        return
    if single is None and not many:
        p.add("SecurityRuleInvalidPortRange", f"{side}PortRange",
              f"no {side} port given: set {side}PortRange or {side}PortRanges")
        return
    if single is not None:
        if parse_port_range(single) is None:
            hint = f" is a list; use {side}PortRanges" if "," in single else \
                " must be *, an integer or a '-'-delimited range between 0 and 65535"
            p.add("SecurityRuleInvalidPortRange", f"{side}PortRange", f"{_show(single)}{hint}")
        return
    if classic and len(many) > 1:
        p.add("SecurityRuleAugmentedNotSupportedInClassic", f"{side}PortRanges",
              f"{len(many)} port ranges: a classic NSG takes one port range per side")
    for value in many:
        if value == "*":
            p.add("SecurityRuleParameterContainsUnsupportedValue", f"{side}PortRanges",
                  f"'*' is allowed only in {side}PortRange")
        elif parse_port_range(value) is None:
            p.add("SecurityRuleInvalidPortRange", f"{side}PortRanges",
                  f"{_show(value)} must be an integer or a '-'-delimited range between 0 and 65535")


def validate_rules(rules: Iterable[SecurityRule], *, classic: bool = False) -> list[RuleError]:
    """NSG-wide checks: unique names, priority per direction, and Azure's per-NSG limits (§3)."""
    rules = list(rules)
    problems: list[RuleError] = []
    limit = 200 if classic else 1000
    if len(rules) > limit:
        problems.append(RuleError(
            f"{len(rules)} rules: a {'classic ' if classic else ''}security group cannot have more than "
            f"{limit} security rules", code="SecurityRuleCountLimitReached", field="securityRules"))
    names: dict[str, SecurityRule] = {}
    slots: dict[tuple[Direction, int], SecurityRule] = {}
    for rule in rules:
        if rule.name in names:
            problems.append(RuleError(f"name {_show(rule.name)} is used by more than one rule",
                                      rule=rule.name, code="DuplicateResourceName", field="name"))
        names.setdefault(rule.name, rule)
        other = slots.get((rule.direction, rule.priority))
        if other is not None:
            problems.append(RuleError(
                f"conflicts with rule {other.name}: rules cannot have the same priority ({rule.priority}) "
                f"and direction ({rule.direction})", rule=rule.name, code="SecurityRuleConflict", field="priority"))
        else:
            slots[(rule.direction, rule.priority)] = rule
    for side in ("source", "destination"):
        count = sum(sum(1 for a in r.sources if parse_prefix(a)) if side == "source" else
                    sum(1 for a in r.destinations if parse_prefix(a)) for r in rules)
        if count > 4000:
            field_ = "sourceAddressPrefixes" if side == "source" else "destinationAddressPrefixes"
            problems.append(RuleError(
                f"the security group has {count} {side} addresses and ranges; a security group cannot have "
                f"more than 4000", code="SecurityRuleAddressesOrPortsPerSecurityGroupLimitReached", field=field_))
    asgs = {a for r in rules for a in r.source_application_security_groups + r.destination_application_security_groups}
    if len(asgs) > 100:
        problems.append(RuleError(
            f"its rules reference {len(asgs)} application security groups; at most 100 are allowed",
            code="ApplicationSecurityGroupsPerSecurityGroupLimitReached", field="applicationSecurityGroups"))
    return problems


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value) if value is not None else "nothing"


def _priority(value: Any, p: _Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.isdigit()):
        p.add("SecurityRuleInvalidPriority", "priority",
              f"{_show(value)} is not an integer between {PRIORITY_MIN} and {PRIORITY_MAX}")
        return PRIORITY_MIN
    return int(value)


def _enum(value: Any, kind: type[enum.Enum], name: str, p: _Problems) -> Any:
    if isinstance(value, str):
        member = _members_by_lower(kind).get(value.lower())
        if member is not None:
            return member
    p.add("InvalidRequestFormat", name, f"{_show(value)} is not one of {', '.join(m.value for m in kind)}")
    return next(iter(kind))


@lru_cache(maxsize=None)
def _members_by_lower(kind: type[enum.Enum]) -> dict[str, enum.Enum]:
    """Members by lower-cased value: walking an Enum class is slow, and two fields of every rule are enums."""
    return {member.value.lower(): member for member in reversed(kind)}


def _optional_str(data: dict, key: str, p: _Problems) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, list):
        p.add("SecurityRuleInvalidAddressPrefix" if "Address" in key else "SecurityRuleInvalidPortRange", key,
              f"{value!r} is a list; use {key}es" if "Prefix" in key else f"{value!r} is a list; use {key}s")
        return None
    if not isinstance(value, str):
        p.add("SecurityRuleInvalidAddressPrefix", key, f"{_show(value)} is not a string")
        return None
    return value


def _port_str(data: dict, key: str, p: _Problems) -> str | None:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        p.add("SecurityRuleInvalidPortRange", key, f"{value!r} is a list; use {key}s")
        return None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        p.add("SecurityRuleInvalidPortRange", key, f"{_show(value)} is not a string")
        return None
    return value


def _list(data: dict, key: str, p: _Problems) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        p.add("InvalidRequestFormat", key, f"{_show(value)} is not a list")
        return []
    return value


def _str_list(data: dict, key: str, p: _Problems, ints: bool = False) -> tuple:
    items = _list(data, key, p)
    out = []
    for item in items:
        if isinstance(item, str) or (ints and isinstance(item, int) and not isinstance(item, bool)):
            out.append(item)
        else:
            p.add("InvalidRequestFormat", key, f"{_show(item)} is not a string")
    return tuple(out)
