"""The scenario file: VNets, subnets, NICs, load balancers and NSGs (design/interfaces.md).

Loading checks what Azure would refuse to build (a NIC address outside its subnet, overlapping
subnets, dangling references, ASGs spanning VNets) and names the file and the path of the bad
value, e.g. `web.yaml: network_interfaces[1].private_ips[0]: 10.9.0.4 is outside subnet ...`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .addresses import AddressResolver, ServiceTags, bundled_service_tags
from .errors import DataplaneError, ScenarioError, ValidationErrors
from .flows import IPAddress
from .nsg import NetworkSecurityGroup, nsgs_from_document, read_document
from .rules import rule_from_azure

SUBSCRIPTION_TYPES = {
    # Outbound TCP 25 to the internet is blocked for every type but Enterprise Agreement (reference §9).
    "enterprise-agreement": False, "ea-dev-test": True, "pay-as-you-go": True, "msdn": True,
    "visual-studio": True, "azure-pass": True, "azure-in-open": True, "education": True, "students": True,
    "free-trial": True, "csp": True, "sponsorship": True, "bizspark": True, "mpn": True,
}
DEFAULT_SUBSCRIPTION = "pay-as-you-go"
DEFAULT_MAX_FLOWS = 500_000

SCENARIO_KEYS = {"virtual_networks", "network_interfaces", "load_balancers", "network_security_groups",
             "service_tags_file", "subscription_type", "forced_tunneling", "timeouts", "max_flows_per_nic"}
_VNET_KEYS = {"name", "address_space", "peerings", "flow_timeout_minutes", "subnets"}
_SUBNET_KEYS = {"name", "prefix", "nsg"}
_NIC_KEYS = {"name", "subnet", "private_ips", "public_ip", "nsg", "application_security_groups"}
_LB_KEYS = {"name", "frontend_ip", "rules", "outbound_pool"}
_LB_RULE_KEYS = {"protocol", "frontend_port", "backend_port", "backend_pool"}
_NSG_KEYS = {"name", "file", "flush_connection", "classic", "security_rules"}
TIMEOUT_KEYS = {"tcp_syn", "tcp_established", "tcp_fin", "tcp_closed", "udp", "icmp", "other", "fragment"}


@dataclass(frozen=True, slots=True)
class Subnet:
    vnet: str
    name: str
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    nsg: str | None

    @property
    def key(self) -> str:
        return f"{self.vnet}/{self.name}"


@dataclass(frozen=True, slots=True)
class VirtualNetwork:
    name: str
    address_space: tuple[str, ...]
    peerings: tuple[str, ...]
    flow_timeout_minutes: int | None
    subnets: tuple[Subnet, ...]


@dataclass(frozen=True, slots=True)
class NetworkInterface:
    name: str
    subnet: Subnet
    private_ips: tuple[IPAddress, ...]
    public_ip: IPAddress | None
    nsg: str | None
    application_security_groups: tuple[str, ...]

    @property
    def vnet(self) -> str:
        return self.subnet.vnet


@dataclass(frozen=True, slots=True)
class LoadBalancerRule:
    protocol: str
    frontend_port: int
    backend_port: int
    backend_pool: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    """A public load balancer: inbound rules DNAT to a backend pool; `outbound_pool` NICs SNAT behind it."""

    name: str
    frontend_ip: IPAddress
    rules: tuple[LoadBalancerRule, ...]
    outbound_pool: tuple[str, ...]


@dataclass
class Scenario:
    virtual_networks: dict[str, VirtualNetwork]
    network_interfaces: dict[str, NetworkInterface]
    load_balancers: dict[str, LoadBalancer]
    network_security_groups: dict[str, NetworkSecurityGroup]
    service_tags: ServiceTags
    subscription_type: str = DEFAULT_SUBSCRIPTION
    forced_tunneling: bool = False
    timeouts: dict[str, float] = field(default_factory=dict)
    max_flows_per_nic: int = DEFAULT_MAX_FLOWS
    file: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def smtp_blocked(self) -> bool:
        return SUBSCRIPTION_TYPES[self.subscription_type]

    def virtual_network_space(self, vnet: str) -> tuple[str, ...]:
        """What VirtualNetwork means inside `vnet`: its space and its peers' (reference §4)."""
        own = self.virtual_networks[vnet]
        spaces = list(own.address_space)
        for peer in own.peerings:
            spaces.extend(self.virtual_networks[peer].address_space)
        return tuple(spaces)

    def asg_members(self) -> dict[str, list[str]]:
        members: dict[str, list[str]] = {}
        for nic in self.network_interfaces.values():
            for asg in nic.application_security_groups:
                members.setdefault(asg, []).extend(str(ip) for ip in nic.private_ips)
        return members

    def resolver(self, vnet: str) -> AddressResolver:
        return AddressResolver(self.virtual_network_space(vnet), service_tags=self.service_tags,
                               asgs=self.asg_members())

    def nsg(self, name: str | None) -> NetworkSecurityGroup | None:
        return self.network_security_groups.get(name) if name else None


def single_nsg_scenario(nsg: NetworkSecurityGroup, *, address_space: tuple[str, ...] = (),
                        service_tags: ServiceTags | None = None) -> Scenario:
    """No topology: one NSG and what VirtualNetwork means around it (for `check --nsg`)."""
    vnet = VirtualNetwork("vnet", tuple(address_space), (), None, ())
    return Scenario({"vnet": vnet}, {}, {}, {nsg.name: nsg}, service_tags or bundled_service_tags())


class _Loader:
    """Reads a scenario document, collecting every problem with the path of its value."""

    def __init__(self, doc: Any, file: str | None):
        self.doc = doc
        self.file = file
        self.base = Path(file).parent if file else Path(".")
        self.problems: list[DataplaneError] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(ScenarioError(message, file=self.file, field=path))

    def mapping(self, value: Any, path: str, keys: set[str]) -> dict:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_show(value)}")
            return {}
        for key in value:
            if key not in keys:
                self.error(f"{path}.{key}" if path else str(key),
                           f"unknown key {key!r}; expected one of {', '.join(sorted(keys))}")
        return value

    def items(self, value: Any, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_show(value)}")
            return []
        return value

    def name(self, value: dict, path: str, seen: set[str], kind: str) -> str | None:
        name = value.get("name")
        if not isinstance(name, str) or not name:
            self.error(f"{path}.name", f"a {kind} needs a name")
            return None
        if name in seen:
            self.error(f"{path}.name", f"{kind} {name!r} is defined twice")
            return None
        seen.add(name)
        return name

    def ip(self, value: Any, path: str) -> IPAddress | None:
        try:
            return ipaddress.ip_address(str(value))
        except ValueError:
            self.error(path, f"{_show(value)} is not an IP address")
            return None

    def network(self, value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        try:
            return ipaddress.ip_network(str(value), strict=True)
        except ValueError as e:
            self.error(path, f"{_show(value)} is not a valid prefix ({e})")
            return None

    def port(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            self.error(path, f"{_show(value)} is not a port number 0-65535")
            return 0
        return value


def load_scenario(path: str | Path) -> Scenario:
    path = str(path)
    return scenario_from_document(read_document(path), file=path)


def scenario_from_document(doc: Any, *, file: str | None = None) -> Scenario:
    """Build and validate a scenario; raises ValidationErrors holding every problem found."""
    ld = _Loader(doc, file)
    top = ld.mapping(doc, "", SCENARIO_KEYS)

    nsgs = _load_nsgs(ld, top.get("network_security_groups"))
    vnets, subnets = _load_vnets(ld, top.get("virtual_networks"), nsgs)
    nics = _load_nics(ld, top.get("network_interfaces"), vnets, subnets, nsgs)
    lbs = _load_load_balancers(ld, top.get("load_balancers"), nics)

    service_tags = bundled_service_tags()
    if top.get("service_tags_file") is not None:
        try:
            service_tags = ServiceTags.from_file(ld.base / str(top["service_tags_file"]))
        except DataplaneError as e:
            ld.error("service_tags_file", str(e))
    subscription = str(top.get("subscription_type", DEFAULT_SUBSCRIPTION)).lower()
    if subscription not in SUBSCRIPTION_TYPES:
        ld.error("subscription_type", f"{subscription!r} is not one of {', '.join(SUBSCRIPTION_TYPES)}")
        subscription = DEFAULT_SUBSCRIPTION
    forced = top.get("forced_tunneling", False)
    if not isinstance(forced, bool):
        ld.error("forced_tunneling", f"{_show(forced)} is not true or false")
        forced = False
    timeouts = {}
    for key, value in ld.mapping(top.get("timeouts") or {}, "timeouts", TIMEOUT_KEYS).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            ld.error(f"timeouts.{key}", f"{_show(value)} is not a positive number of seconds")
        elif key in TIMEOUT_KEYS:
            timeouts[key] = float(value)
    max_flows = top.get("max_flows_per_nic", DEFAULT_MAX_FLOWS)
    if isinstance(max_flows, bool) or not isinstance(max_flows, int) or max_flows < 1:
        ld.error("max_flows_per_nic", f"{_show(max_flows)} is not a positive integer")
        max_flows = DEFAULT_MAX_FLOWS

    scenario = Scenario(vnets, nics, lbs, nsgs, service_tags, subscription, forced, timeouts, max_flows, file)
    if not ld.problems:
        _check_asgs(ld, scenario)
        _check_rules_resolve(ld, scenario)
    if ld.problems:
        raise ValidationErrors(ld.problems)
    return scenario


def _load_nsgs(ld: _Loader, value: Any) -> dict[str, NetworkSecurityGroup]:
    nsgs: dict[str, NetworkSecurityGroup] = {}
    seen: set[str] = set()
    for i, raw in enumerate(ld.items(value, "network_security_groups")):
        path = f"network_security_groups[{i}]"
        spec = ld.mapping(raw, path, _NSG_KEYS)
        name = ld.name(spec, path, seen, "network security group")
        if name is None:
            continue
        try:
            nsg = _nsg_from_spec(ld, spec, name, path)
        except DataplaneError as e:
            ld.problems.extend(e.problems if isinstance(e, ValidationErrors) else [e])
            continue
        if nsg is not None:
            nsgs[name] = nsg
    return nsgs


def _nsg_from_spec(ld: _Loader, spec: dict, name: str, path: str) -> NetworkSecurityGroup | None:
    flush = spec.get("flush_connection", False)
    classic = spec.get("classic", False)
    for key, value in (("flush_connection", flush), ("classic", classic)):
        if not isinstance(value, bool):
            ld.error(f"{path}.{key}", f"{_show(value)} is not true or false")
            return None
    if "file" in spec:
        if "security_rules" in spec:
            ld.error(f"{path}.security_rules", "give the rules either inline or in `file`, not both")
            return None
        nsg_file = ld.base / str(spec["file"])
        found = [n for n in nsgs_from_document(read_document(nsg_file), file=str(nsg_file)) if n.name == name]
        if not found:
            ld.error(f"{path}.file", f"{nsg_file} holds no network security group named {name!r}")
            return None
        loaded = found[0]
        return NetworkSecurityGroup(name, loaded.rules, flush_connection=flush or loaded.flush_connection,
                                    classic=classic or loaded.classic, file=str(nsg_file))
    problems: list[DataplaneError] = []
    rules = []
    for raw_rule in ld.items(spec.get("security_rules"), f"{path}.security_rules"):
        try:
            rules.append(rule_from_azure(raw_rule, classic=classic))
        except ValidationErrors as e:
            problems.extend(e.located(file=ld.file, nsg=name).problems)
    if problems:
        raise ValidationErrors(problems)
    return NetworkSecurityGroup(name, rules, flush_connection=flush, classic=classic, file=ld.file)


def _load_vnets(ld: _Loader, value: Any, nsgs: dict) -> tuple[dict[str, VirtualNetwork], dict[str, Subnet]]:
    vnets: dict[str, VirtualNetwork] = {}
    subnets: dict[str, Subnet] = {}
    seen: set[str] = set()
    raw_vnets = ld.items(value, "virtual_networks")
    for i, raw in enumerate(raw_vnets):
        path = f"virtual_networks[{i}]"
        spec = ld.mapping(raw, path, _VNET_KEYS)
        name = ld.name(spec, path, seen, "virtual network")
        if name is None:
            continue
        spaces = [n for j, p in enumerate(ld.items(spec.get("address_space"), f"{path}.address_space"))
                  if (n := ld.network(p, f"{path}.address_space[{j}]")) is not None]
        timeout = spec.get("flow_timeout_minutes")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or not 4 <= timeout <= 30):
            ld.error(f"{path}.flow_timeout_minutes", f"{_show(timeout)} is not an integer from 4 to 30")
            timeout = None
        own: list[Subnet] = []
        sub_seen: set[str] = set()
        for j, raw_sub in enumerate(ld.items(spec.get("subnets"), f"{path}.subnets")):
            sub_path = f"{path}.subnets[{j}]"
            sub = ld.mapping(raw_sub, sub_path, _SUBNET_KEYS)
            sub_name = ld.name(sub, sub_path, sub_seen, "subnet")
            prefix = ld.network(sub.get("prefix"), f"{sub_path}.prefix")
            if sub_name is None or prefix is None:
                continue
            if not any(prefix.version == s.version and prefix.subnet_of(s) for s in spaces):
                ld.error(f"{sub_path}.prefix", f"{prefix} is outside the address space of {name} "
                         f"({', '.join(map(str, spaces)) or 'empty'})")
            for other in own:
                if other.prefix.version == prefix.version and other.prefix.overlaps(prefix):
                    ld.error(f"{sub_path}.prefix", f"{prefix} overlaps subnet {other.key} ({other.prefix})")
            nsg = sub.get("nsg")
            if nsg is not None and nsg not in nsgs:
                ld.error(f"{sub_path}.nsg", f"network security group {nsg!r} is not defined")
                nsg = None
            subnet = Subnet(name, sub_name, prefix, nsg)
            own.append(subnet)
            subnets[subnet.key] = subnet
        peerings = tuple(str(p) for p in ld.items(spec.get("peerings"), f"{path}.peerings"))
        vnets[name] = VirtualNetwork(name, tuple(map(str, spaces)), peerings, timeout, tuple(own))
    for i, vnet in enumerate(vnets.values()):
        for j, peer in enumerate(vnet.peerings):
            if peer not in vnets:
                ld.error(f"virtual_networks[{i}].peerings[{j}]", f"virtual network {peer!r} is not defined")
    for name in list(vnets):
        vnets[name] = VirtualNetwork(vnets[name].name, vnets[name].address_space,
                                     tuple(p for p in vnets[name].peerings if p in vnets),
                                     vnets[name].flow_timeout_minutes, vnets[name].subnets)
    return vnets, subnets


def _load_nics(ld: _Loader, value: Any, vnets: dict[str, VirtualNetwork], subnets: dict[str, Subnet],
               nsgs: dict) -> dict[str, NetworkInterface]:
    nics: dict[str, NetworkInterface] = {}
    seen: set[str] = set()
    owners: dict[IPAddress, str] = {}
    for i, raw in enumerate(ld.items(value, "network_interfaces")):
        path = f"network_interfaces[{i}]"
        spec = ld.mapping(raw, path, _NIC_KEYS)
        name = ld.name(spec, path, seen, "network interface")
        if name is None:
            continue
        subnet = subnets.get(str(spec.get("subnet")))
        if subnet is None:
            ld.error(f"{path}.subnet", f"subnet {spec.get('subnet')!r} is not defined (write it as VNET/SUBNET)")
            continue
        ips = []
        given = ld.items(spec.get("private_ips"), f"{path}.private_ips")
        for j, raw_ip in enumerate(given):
            ip = ld.ip(raw_ip, f"{path}.private_ips[{j}]")
            if ip is None:
                continue
            vnet_space = [ipaddress.ip_network(p) for p in vnets[subnet.vnet].address_space]
            if ip.version == subnet.prefix.version and ip not in subnet.prefix:
                ld.error(f"{path}.private_ips[{j}]", f"{ip} is outside subnet {subnet.key} ({subnet.prefix})")
            elif ip.version != subnet.prefix.version and not any(ip in n for n in vnet_space):
                ld.error(f"{path}.private_ips[{j}]", f"{ip} is outside the address space of {subnet.vnet}")
            elif ip in owners:
                ld.error(f"{path}.private_ips[{j}]", f"{ip} is already the address of {owners[ip]}")
            else:
                owners[ip] = name
                ips.append(ip)
        if not given:
            ld.error(f"{path}.private_ips", "a network interface needs at least one private IP address")
        public = ld.ip(spec["public_ip"], f"{path}.public_ip") if spec.get("public_ip") is not None else None
        if public is not None:
            if public in owners:
                ld.error(f"{path}.public_ip", f"{public} is already the address of {owners[public]}")
            owners[public] = name
        nsg = spec.get("nsg")
        if nsg is not None and nsg not in nsgs:
            ld.error(f"{path}.nsg", f"network security group {nsg!r} is not defined")
            nsg = None
        asgs = tuple(str(a) for a in ld.items(spec.get("application_security_groups"),
                                              f"{path}.application_security_groups"))
        nics[name] = NetworkInterface(name, subnet, tuple(ips), public, nsg, asgs)
    return nics


def _load_load_balancers(ld: _Loader, value: Any, nics: dict) -> dict[str, LoadBalancer]:
    lbs: dict[str, LoadBalancer] = {}
    seen: set[str] = set()
    for i, raw in enumerate(ld.items(value, "load_balancers")):
        path = f"load_balancers[{i}]"
        spec = ld.mapping(raw, path, _LB_KEYS)
        name = ld.name(spec, path, seen, "load balancer")
        frontend = ld.ip(spec.get("frontend_ip"), f"{path}.frontend_ip")
        if name is None or frontend is None:
            continue
        rules = []
        for j, raw_rule in enumerate(ld.items(spec.get("rules"), f"{path}.rules")):
            rpath = f"{path}.rules[{j}]"
            r = ld.mapping(raw_rule, rpath, _LB_RULE_KEYS)
            proto = str(r.get("protocol", "")).capitalize()
            if proto not in ("Tcp", "Udp"):
                ld.error(f"{rpath}.protocol", f"{_show(r.get('protocol'))} is not Tcp or Udp")
            pool = _pool(ld, r.get("backend_pool"), f"{rpath}.backend_pool", nics)
            rules.append(LoadBalancerRule(proto, ld.port(r.get("frontend_port"), f"{rpath}.frontend_port"),
                                          ld.port(r.get("backend_port", r.get("frontend_port")), f"{rpath}.backend_port"),
                                          pool))
        outbound = _pool(ld, spec.get("outbound_pool", sorted({n for r in rules for n in r.backend_pool})),
                         f"{path}.outbound_pool", nics)
        lbs[name] = LoadBalancer(name, frontend, tuple(rules), outbound)
    return lbs


def _pool(ld: _Loader, value: Any, path: str, nics: dict) -> tuple[str, ...]:
    pool = []
    for k, nic in enumerate(ld.items(value, path)):
        if nic not in nics:
            ld.error(f"{path}[{k}]", f"network interface {nic!r} is not defined")
        else:
            pool.append(nic)
    return tuple(pool)


def _check_asgs(ld: _Loader, scenario: Scenario) -> None:
    """ASG members must share a VNet, and so must both ASGs of a rule (reference §5)."""
    vnet_of: dict[str, str] = {}
    for i, nic in enumerate(scenario.network_interfaces.values()):
        for j, asg in enumerate(nic.application_security_groups):
            first = vnet_of.setdefault(asg, nic.vnet)
            if first != nic.vnet:
                ld.error(f"network_interfaces[{i}].application_security_groups[{j}]",
                         f"ASG {asg!r} has members in {first} already; all its NICs must be in one VNet "
                         f"(this one is in {nic.vnet})")
    for nsg in scenario.network_security_groups.values():
        for rule in nsg.rules:
            vnets = {vnet_of[a] for a in rule.source_application_security_groups + rule.destination_application_security_groups
                     if a in vnet_of}
            if len(vnets) > 1:
                ld.problems.append(ScenarioError(
                    f"its source and destination application security groups span VNets ({', '.join(sorted(vnets))})",
                    file=nsg.file or ld.file, nsg=nsg.name, rule=rule.name, field="applicationSecurityGroups"))
            for asg in rule.source_application_security_groups + rule.destination_application_security_groups:
                if asg not in vnet_of:
                    scenario.warnings.append(f"{nsg.file or ld.file}: {nsg.name}/{rule.name}: application security "
                                             f"group {asg!r} has no member NIC, so the rule matches nothing")


def _check_rules_resolve(ld: _Loader, scenario: Scenario) -> None:
    """Unknown service tags are found at load time, not at the first packet."""
    resolver = AddressResolver((), service_tags=scenario.service_tags)
    for nsg in scenario.network_security_groups.values():
        for rule in nsg.rules:
            for item, field_ in [(a, "sourceAddressPrefix") for a in rule.sources] + \
                                [(a, "destinationAddressPrefix") for a in rule.destinations]:
                try:
                    resolver.resolve(item, rule=rule.name, field=field_)
                except DataplaneError as e:
                    ld.problems.append(e.located(file=nsg.file or ld.file, nsg=nsg.name))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else "nothing" if value is None else str(value)

