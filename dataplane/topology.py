"""The scenario file: VNets, subnets, NICs, load balancers and NSGs (design/interfaces.md).

Loading checks what Azure would refuse to build (a NIC address outside its subnet, overlapping
subnets, dangling references, ASGs spanning VNets) and names the file and the path of the bad
value, e.g. `web.yaml: network_interfaces[1].private_ips[0]: 10.9.0.4 is outside subnet ...`.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .addresses import AddressResolver, ServiceTags, bundled_service_tags
from .errors import DataplaneError, ScenarioError, ValidationErrors
from .flows import IPAddress
from .documents import is_terraform, read_document
from .nsg import NetworkSecurityGroup, nsgs_from_document, read_parameters
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
_VNET_KEYS = {"name", "address_space", "peerings", "flow_timeout_minutes", "subnets", "udr_prefixes", "azure_id"}
_SUBNET_KEYS = {"name", "prefix", "nsg", "azure_id"}
_NIC_KEYS = {"name", "subnet", "private_ips", "public_ip", "ip_configurations", "nsg",
             "application_security_groups", "azure_id"}
_IP_CONFIGURATION_KEYS = {"name", "private_ip", "public_ip"}
_LB_KEYS = {"name", "frontend_ip", "rules", "inbound_nat_rules", "outbound_pool", "azure_id"}
_LB_RULE_KEYS = {"name", "protocol", "frontend_ip", "frontend_port", "backend_port", "backend_pool"}
_NAT_RULE_KEYS = {"name", "protocol", "frontend_ip", "frontend_port", "backend_port", "network_interface",
                  "private_ip"}
_POOL_MEMBER_KEYS = {"network_interface", "private_ip"}
_NSG_KEYS = {"name", "file", "parameters", "flush_connection", "classic", "security_rules", "azure_id"}
UNUSABLE_SPACES = tuple((ipaddress.ip_network(prefix), what) for prefix, what in (
    ("224.0.0.0/4", "multicast"), ("255.255.255.255/32", "broadcast"), ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"), ("168.63.129.16/32", "Azure's host address")))
"""Ranges a VNet's address space may not overlap (Azure's virtual network FAQ)."""
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
    udr_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IpConfiguration:
    """One of a NIC's IP configurations: a private address and the public IP translated to it."""

    name: str
    private_ip: IPAddress
    public_ip: IPAddress | None


@dataclass(frozen=True, slots=True)
class NetworkInterface:
    """`ip_configurations` is empty when the scenario gives `private_ips` and `public_ip` instead:
    then the public IP belongs to the first IPv4 address and every IPv4 address leaves by it."""

    name: str
    subnet: Subnet
    private_ips: tuple[IPAddress, ...]
    public_ip: IPAddress | None
    nsg: str | None
    application_security_groups: tuple[str, ...]
    ip_configurations: tuple[IpConfiguration, ...] = ()

    @property
    def vnet(self) -> str:
        return self.subnet.vnet


@dataclass(frozen=True, slots=True)
class LoadBalancerRule:
    """Protocol `All` with port 0 is Azure's HA-ports rule: every protocol and port, the port kept.
    `backend_ips` holds, per pool member, the address of its IP configuration in the pool (None:
    the NIC's first IPv4 address); `frontend_ip` None means the load balancer's."""

    protocol: str
    frontend_port: int
    backend_port: int
    backend_pool: tuple[str, ...]
    backend_ips: tuple[IPAddress | None, ...] = ()
    frontend_ip: IPAddress | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class InboundNatRule:
    """A frontend port forwarded to one NIC's address and port; `frontend_ip` None: the load balancer's."""

    name: str | None
    protocol: str
    frontend_port: int
    backend_port: int
    network_interface: str
    private_ip: IPAddress | None
    frontend_ip: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    """Inbound rules DNAT a frontend (public or private) to a backend pool; `outbound_pool` NICs SNAT behind
    `frontend_ip`."""

    name: str
    frontend_ip: IPAddress
    rules: tuple[LoadBalancerRule, ...]
    outbound_pool: tuple[str, ...]
    inbound_nat_rules: tuple[InboundNatRule, ...] = ()


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
        """What VirtualNetwork means inside `vnet`: its space, its UDR prefixes and its peers' spaces (reference §4)."""
        own = self.virtual_networks[vnet]
        spaces = list(own.address_space) + list(own.udr_prefixes)
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


def single_nic_scenario(nsg: NetworkSecurityGroup, nic_ip: str, address_space: str,
                        public_ip: str | None = None) -> Scenario:
    """One NSG on one NIC (`vm-nic`, in VNet `vnet`, subnet `default` covering it)."""
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
    return scenario


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
        if "azure_id" in keys and "azure_id" in value and not isinstance(value["azure_id"], str):
            self.error(f"{path}.azure_id", f"{_show(value['azure_id'])} is not a resource id")
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
    """Build and validate a scenario; raises ValidationErrors holding every problem found. Terraform JSON
is a scenario too: a state, or a plan's after-state."""
    if is_terraform(doc):
        from .terraform import scenario as terraform_scenario  # it builds on this module's loaders

        found = terraform_scenario(doc, file=file)
        try:
            scenario = scenario_from_document(found.document, file=file)
        except ValidationErrors as e:
            raise ValidationErrors(found.locate(e.problems)) from None
        scenario.warnings.extend(found.warnings)
        return scenario
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            ld.error(f"timeouts.{key}", f"{_show(value)} is not a positive, finite number of seconds")
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
    if "parameters" in spec and "file" not in spec:
        ld.error(f"{path}.parameters", "parameters go with `file` (an ARM template)")
        return None
    if "file" in spec:
        if "security_rules" in spec:
            ld.error(f"{path}.security_rules", "give the rules either inline or in `file`, not both")
            return None
        nsg_file = ld.base / str(spec["file"])
        values = read_parameters(ld.base / str(spec["parameters"])) if "parameters" in spec else None
        found = [n for n in nsgs_from_document(read_document(nsg_file), file=str(nsg_file), parameters=values)
                 if n.name == name]
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
        for j, space in enumerate(spaces):
            for unusable, what in UNUSABLE_SPACES:
                if space.version == unusable.version and space.overlaps(unusable):
                    ld.error(f"{path}.address_space[{j}]", f"{space} overlaps {unusable} ({what}), which Azure "
                             "does not allow in a virtual network")
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
            if prefix.version == 4 and prefix.prefixlen > 29:
                ld.error(f"{sub_path}.prefix", f"{prefix} is smaller than /29, the smallest subnet Azure creates "
                         "(it reserves five addresses of each)")
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
        udr = tuple(str(n) for j, p in enumerate(ld.items(spec.get("udr_prefixes"), f"{path}.udr_prefixes"))
                    if (n := ld.network(p, f"{path}.udr_prefixes[{j}]")) is not None)
        vnets[name] = VirtualNetwork(name, tuple(map(str, spaces)), peerings, timeout, tuple(own), udr)
    for i, vnet in enumerate(vnets.values()):
        for j, peer in enumerate(vnet.peerings):
            if peer not in vnets:
                ld.error(f"virtual_networks[{i}].peerings[{j}]", f"virtual network {peer!r} is not defined")
    for name in list(vnets):
        vnets[name] = VirtualNetwork(vnets[name].name, vnets[name].address_space,
                                     tuple(p for p in vnets[name].peerings if p in vnets),
                                     vnets[name].flow_timeout_minutes, vnets[name].subnets,
                                     vnets[name].udr_prefixes)
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
        given, publics = _nic_addresses(ld, spec, path)
        ips = []
        for ip_path, raw_ip in given:
            ip = ld.ip(raw_ip, ip_path)
            if ip is None:
                continue
            vnet_space = [ipaddress.ip_network(p) for p in vnets[subnet.vnet].address_space]
            if ip.version == subnet.prefix.version and ip not in subnet.prefix:
                ld.error(ip_path, f"{ip} is outside subnet {subnet.key} ({subnet.prefix})")
            elif ip.version == 4 == subnet.prefix.version and (
                    int(ip) - int(subnet.prefix.network_address) < 4 or ip == subnet.prefix.broadcast_address):
                ld.error(ip_path, f"{ip} is reserved by Azure in subnet {subnet.key} ({subnet.prefix}): the first "
                         "four addresses and the last one are not given to NICs")
            elif ip.version != subnet.prefix.version and not any(ip in n for n in vnet_space):
                ld.error(ip_path, f"{ip} is outside the address space of {subnet.vnet}")
            elif ip in owners:
                ld.error(ip_path, f"{ip} is already the address of {owners[ip]}")
            else:
                owners[ip] = name
                ips.append(ip)
        if not given:
            ld.error(f"{path}.private_ips", "a network interface needs at least one private IP address")
        public_ips = {}
        for j, (public_path, raw_public) in publics.items():
            public = ld.ip(raw_public, public_path)
            if public is not None:
                if public in owners:
                    ld.error(public_path, f"{public} is already the address of {owners[public]}")
                owners[public] = name
                public_ips[j] = public
        configs = ()
        if "ip_configurations" in spec and len(ips) == len(given):
            configs = tuple(IpConfiguration(str(raw.get("name", f"ipconfig{j + 1}")), ips[j], public_ips.get(j))
                            for j, raw in enumerate(spec["ip_configurations"]))
        public = next((ip for j, ip in sorted(public_ips.items())), None)
        nsg = spec.get("nsg")
        if nsg is not None and nsg not in nsgs:
            ld.error(f"{path}.nsg", f"network security group {nsg!r} is not defined")
            nsg = None
        asgs = tuple(str(a) for a in ld.items(spec.get("application_security_groups"),
                                              f"{path}.application_security_groups"))
        nics[name] = NetworkInterface(name, subnet, tuple(ips), public, nsg, asgs, configs)
    return nics


def _nic_addresses(ld: _Loader, spec: dict, path: str) -> tuple[list[tuple[str, Any]], dict[int, tuple[str, Any]]]:
    """The private addresses (path, value) of a NIC and its public ones by the index of their private
    address, from `ip_configurations` or from `private_ips` and `public_ip`."""
    if "ip_configurations" not in spec:
        given = [(f"{path}.private_ips[{j}]", ip)
                 for j, ip in enumerate(ld.items(spec.get("private_ips"), f"{path}.private_ips"))]
        publics = {}
        if spec.get("public_ip") is not None:
            first_v4 = next((j for j, (_, ip) in enumerate(given) if ":" not in str(ip)), 0)
            publics[first_v4] = (f"{path}.public_ip", spec["public_ip"])
        return given, publics
    for key in ("private_ips", "public_ip"):
        if key in spec:
            ld.error(f"{path}.{key}", f"give the addresses either in ip_configurations or in {key}, not both")
    given, publics = [], {}
    for j, raw in enumerate(ld.items(spec["ip_configurations"], f"{path}.ip_configurations")):
        config_path = f"{path}.ip_configurations[{j}]"
        config = ld.mapping(raw, config_path, _IP_CONFIGURATION_KEYS)
        given.append((f"{config_path}.private_ip", config.get("private_ip")))
        if config.get("public_ip") is not None:
            publics[j] = (f"{config_path}.public_ip", config["public_ip"])
    return given, publics


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
        owner = next((nic.name for nic in nics.values()
                      if frontend == nic.public_ip or any(frontend == c.public_ip for c in nic.ip_configurations)), None)
        if owner is not None:
            ld.error(f"{path}.frontend_ip", f"{frontend} is already the public IP of network interface {owner}")
        rules = []
        for j, raw_rule in enumerate(ld.items(spec.get("rules"), f"{path}.rules")):
            rpath = f"{path}.rules[{j}]"
            r = ld.mapping(raw_rule, rpath, _LB_RULE_KEYS)
            members = [_pool_member(ld, m, f"{rpath}.backend_pool[{k}]", nics)
                       for k, m in enumerate(ld.items(r.get("backend_pool"), f"{rpath}.backend_pool"))]
            members = [m for m in members if m is not None]
            frontend_port = ld.port(r.get("frontend_port"), f"{rpath}.frontend_port")
            rules.append(LoadBalancerRule(
                _lb_protocol(ld, r, rpath), frontend_port,
                ld.port(r.get("backend_port", frontend_port), f"{rpath}.backend_port"),
                tuple(n for n, _ in members), tuple(ip for _, ip in members),
                _rule_frontend(ld, r, rpath), _optional_name(r)))
        nat_rules = []
        for j, raw_rule in enumerate(ld.items(spec.get("inbound_nat_rules"), f"{path}.inbound_nat_rules")):
            rpath = f"{path}.inbound_nat_rules[{j}]"
            r = ld.mapping(raw_rule, rpath, _NAT_RULE_KEYS)
            target = _pool_member(ld, {k: r[k] for k in _POOL_MEMBER_KEYS if k in r}, rpath, nics)
            frontend_port = ld.port(r.get("frontend_port"), f"{rpath}.frontend_port")
            backend_port = ld.port(r.get("backend_port", frontend_port), f"{rpath}.backend_port")
            if target is not None:
                nat_rules.append(InboundNatRule(_optional_name(r), _lb_protocol(ld, r, rpath), frontend_port,
                                                backend_port, target[0], target[1], _rule_frontend(ld, r, rpath)))
        _check_frontend_ports(ld, path, frontend, rules, nat_rules)
        outbound = _pool(ld, spec.get("outbound_pool", sorted({n for r in rules for n in r.backend_pool})),
                         f"{path}.outbound_pool", nics)
        lbs[name] = LoadBalancer(name, frontend, tuple(rules), outbound, tuple(nat_rules))
    return lbs


def _lb_protocol(ld: _Loader, rule: dict, path: str) -> str:
    proto = str(rule.get("protocol", "")).capitalize()
    if proto not in ("Tcp", "Udp", "All"):
        ld.error(f"{path}.protocol", f"{_show(rule.get('protocol'))} is not Tcp, Udp or All")
    return proto


def _rule_frontend(ld: _Loader, rule: dict, path: str) -> IPAddress | None:
    return ld.ip(rule["frontend_ip"], f"{path}.frontend_ip") if rule.get("frontend_ip") is not None else None


def _optional_name(rule: dict) -> str | None:
    return str(rule["name"]) if rule.get("name") is not None else None


def _pool_member(ld: _Loader, value: Any, path: str, nics: dict) -> tuple[str, IPAddress | None] | None:
    """A NIC name (its first IPv4 address) or `{network_interface, private_ip}` (one IP configuration)."""
    if not isinstance(value, dict):
        value = {"network_interface": value}
        where = path
    else:
        ld.mapping(value, path, _POOL_MEMBER_KEYS)
        where = f"{path}.network_interface"
    nic = nics.get(str(value.get("network_interface")))
    if nic is None:
        ld.error(where, f"network interface {value.get('network_interface')!r} is not defined")
        return None
    if value.get("private_ip") is None:
        return nic.name, None
    ip = ld.ip(value["private_ip"], f"{path}.private_ip")
    if ip is not None and ip not in nic.private_ips:
        ld.error(f"{path}.private_ip", f"{ip} is not an address of network interface {nic.name}")
        return None
    return nic.name, ip


def _check_frontend_ports(ld: _Loader, path: str, frontend: IPAddress, rules: list, nat_rules: list) -> None:
    """Azure refuses two rules on one frontend, protocol and port."""
    used: dict[tuple, str] = {}
    for kind, items in (("rules", rules), ("inbound_nat_rules", nat_rules)):
        for j, rule in enumerate(items):
            protocols = ("Tcp", "Udp") if rule.protocol == "All" else (rule.protocol,)
            for proto in protocols:
                slot = (rule.frontend_ip or frontend, proto, rule.frontend_port)
                if slot in used:
                    ld.error(f"{path}.{kind}[{j}].frontend_port", f"{proto} {slot[0]}:{slot[2]} is already used by "
                             f"{used[slot]}")
                used.setdefault(slot, f"{path}.{kind}[{j}]")


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

