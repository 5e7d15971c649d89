"""`dataplane import`: a scenario built from Azure's own descriptions of an environment (interfaces.md,
"Importing an Azure environment").

Read: `az network ... list|show` output (flattened), REST and Resource Graph resources (nested
`properties`; Resource Graph writes types in lower case), the `{"value": [...]}` and `{"data": [...]}`
envelopes, and exported ARM templates. Resources are recognised by `type` and joined by id, both
compared case-insensitively as Azure compares them. A template does not know its subscription or
resource group, so its resources are also found by the part of an id after `/providers/`.

The core takes parsed documents and returns the scenario document; files and printing are the CLI's.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from . import arm
from .documents import is_template, is_terraform, read_document
from .errors import DataplaneError, ScenarioError
from .rules import RULE_PROPERTIES

NET = "microsoft.network/"
VNET, NIC, PUBLIC_IP, LB = NET + "virtualnetworks", NET + "networkinterfaces", NET + "publicipaddresses", \
    NET + "loadbalancers"
NSG, ASG, ROUTE_TABLE = NET + "networksecuritygroups", NET + "applicationsecuritygroups", NET + "routetables"
KINDS = {VNET: "virtual networks", NIC: "network interfaces", PUBLIC_IP: "public IP addresses",
         LB: "load balancers", NSG: "network security groups", ASG: "application security groups",
         ROUTE_TABLE: "route tables"}
CHILD_LISTS = {
    # Child resources listed on their own (`az network vnet subnet list`, a template's top-level children)
    # join their parent's list of that name.
    VNET + "/subnets": "subnets", VNET + "/virtualnetworkpeerings": "virtualNetworkPeerings",
    NSG + "/securityrules": "securityRules", ROUTE_TABLE + "/routes": "routes",
    LB + "/frontendipconfigurations": "frontendIPConfigurations", LB + "/backendaddresspools": "backendAddressPools",
    LB + "/loadbalancingrules": "loadBalancingRules", LB + "/inboundnatrules": "inboundNatRules",
    LB + "/outboundrules": "outboundRules",
}
ENVELOPE = frozenset({"id", "name", "type", "etag", "location", "tags", "resourceGroup", "subscriptionId",
                      "tenantId", "kind", "managedBy", "sku", "plan", "identity", "zones", "extendedLocation"})
DEFAULT_ROUTES = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass(slots=True)
class Resource:
    """One Azure resource, whatever shape it came in: `props` is its `properties`, flattened or not."""

    id: str
    type: str
    name: str
    resource_group: str
    props: dict
    file: str | None
    from_template: bool = False

    @property
    def key(self) -> str:
        return self.id.lower()


class Imported(NamedTuple):
    scenario: dict
    warnings: list[str]
    imported: dict[str, int]
    ignored: dict[str, int]


def import_environment(documents: Iterable[tuple[str | None, Any]], *, allow_missing: bool = False) -> Imported:
    """The scenario document for the resources in `documents` ((file, parsed JSON) pairs)."""
    resources: dict[str, Resource] = {}
    ignored: Counter[str] = Counter()
    warnings: list[str] = []
    children: list[Resource] = []
    for file, doc in documents:
        for res in _resources(doc, file):
            if res.type in CHILD_LISTS:
                children.append(res)
            elif res.type in KINDS:
                resources[res.key] = res
            else:
                ignored[res.type] += 1
    by_path = {_path(r.key): r for r in resources.values() if r.from_template}
    for child in children:
        _adopt(child, resources, by_path, ignored, warnings)
    return _Builder(resources, allow_missing, warnings).build(ignored)


# -- reading the shapes -----------------------------------------------------------------------------

def _resources(doc: Any, file: str | None) -> Iterator[Resource]:
    if is_template(doc):
        yield from _template_resources(doc, file)
    elif isinstance(doc, list):
        for item in doc:
            yield from _resources(item, file)
    elif isinstance(doc, dict) and "type" not in doc and isinstance(doc.get("value", doc.get("data")), list):
        yield from _resources(doc.get("value", doc.get("data")), file)
    elif isinstance(doc, dict) and isinstance(doc.get("type"), str) and isinstance(doc.get("id"), str):
        props = doc["properties"] if isinstance(doc.get("properties"), dict) else \
            {k: v for k, v in doc.items() if k not in ENVELOPE}
        yield Resource(doc["id"], doc["type"].lower(), str(doc.get("name") or _last(doc["id"])),
                       _resource_group(doc["id"]), props, file)
    else:
        what = "an object without type and id" if isinstance(doc, dict) else type(doc).__name__
        raise DataplaneError(f"{what} is not an Azure resource, a list of them, {{\"value\": [...]}}, "
                             "{\"data\": [...]} or an ARM template", file=file)


def _template_resources(doc: dict, file: str | None) -> Iterator[Resource]:
    """An exported template's resources, evaluated; ids as `resourceId()` gives them, with the placeholder
    subscription and group of `arm`. The template does not name its group: its file's name stands for it."""
    scope = arm.Scope(doc, {}, file, "")
    root = arm.Context(scope, {}, {}, "")
    prefix = f"/subscriptions/{arm.SUBSCRIPTION_ID}/resourceGroups/{arm.RESOURCE_GROUP}/providers/"
    group = Path(file).stem if file else arm.RESOURCE_GROUP

    def walk(entries: Any, where: str, parent: tuple[str, str] | None) -> Iterator[Resource]:
        items = entries.items() if isinstance(entries, dict) else enumerate(entries or [])
        for key, res in items:
            here = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
            if not isinstance(res, dict) or res.get("existing") is True:
                continue
            copy = res.get("copy")
            count = _known(root.at(f"{here}.copy.count").resolve(copy.get("count")), file, f"{here}.copy.count") \
                if isinstance(copy, dict) else None
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise DataplaneError(f"copy count {count!r} is not a whole number of at least 0", file=file,
                                     field=f"{here}.copy.count")
            loops = [{None: i, str(copy.get("name", "")).lower(): i} for i in range(count)] \
                if count is not None else [{}]
            for loop in loops:
                ctx = arm.Context(scope, loop, {}, here)
                if "condition" in res and not _known(ctx.at(f"{here}.condition").resolve(res["condition"]), file,
                                                     f"{here}.condition"):
                    continue
                kind = str(_known(ctx.at(f"{here}.type").resolve(res.get("type", "")), file, f"{here}.type"))
                name = str(_known(ctx.at(f"{here}.name").resolve(res.get("name", "")), file, f"{here}.name"))
                if parent is not None and "/" not in kind.split("/", 1)[-1]:
                    kind, name = f"{parent[0]}/{kind}", f"{parent[1]}/{name}"
                namespace, *types = kind.split("/")
                names = name.split("/")
                if len(types) != len(names):
                    raise DataplaneError(f"resource {name!r} of type {kind} needs {len(types)} name segments",
                                         file=file, field=f"{here}.name")
                rid = prefix + namespace + "".join(f"/{t}/{n}" for t, n in zip(types, names))
                props = _marked(ctx.at(f"{here}.properties").resolve(res.get("properties") or {}), file)
                yield Resource(rid, kind.lower(), names[-1], group, props, file, True)
                yield from walk(res.get("resources"), f"{here}.resources", (kind, name))

    yield from walk(doc.get("resources"), "resources", None)


def _known(value: Any, file: str | None, where: str) -> Any:
    if isinstance(value, arm.DeploymentTimeValue):
        raise value.error(where, file)
    return value


class _Unknown:
    """A template value known only at deployment, kept with its file until a field the scenario needs holds it."""

    __slots__ = ("value", "file")

    def __init__(self, value: arm.DeploymentTimeValue, file: str | None):
        self.value = value
        self.file = file

    def error(self) -> DataplaneError:
        return self.value.error(self.value.where, self.file)


def _marked(value: Any, file: str | None) -> Any:
    if isinstance(value, arm.DeploymentTimeValue):
        return _Unknown(value, file)
    if isinstance(value, dict):
        return {k: _marked(v, file) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v, file) for v in value]
    return value


def _first_unknown(value: Any) -> _Unknown | None:
    if isinstance(value, _Unknown):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((found for item in items if (found := _first_unknown(item)) is not None), None)


def _adopt(child: Resource, resources: dict[str, Resource], by_path: dict[str, Resource], ignored: Counter,
           warnings: list[str]) -> None:
    """A child resource listed on its own goes into its parent's list, replacing one of the same name."""
    parent_key = child.key.rsplit("/", 2)[0]
    parent = resources.get(parent_key) or by_path.get(_path(parent_key))
    if parent is None:
        ignored[child.type] += 1
        warnings.append(f"{child.file}: {child.id}: ignored: its parent is not among the inputs")
        return
    listed = CHILD_LISTS[child.type]
    entry = {"name": child.name, "id": child.id, "properties": child.props}
    kept = [e for e in _list(parent.props.get(listed)) if str(_name(e)).lower() != child.name.lower()]
    parent.props = {**parent.props, listed: kept + [entry]}


# -- building the scenario --------------------------------------------------------------------------

@dataclass(slots=True)
class _Config:
    """A NIC's IP configuration as the builder needs it."""

    nic: str
    name: str
    private_ip: str
    first_v4: bool = False


@dataclass
class _Builder:
    resources: dict[str, Resource]
    allow_missing: bool
    warnings: list[str]
    missing: dict[str, list[str]] = field(default_factory=dict)
    by_path: dict[str, str] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)
    subnets: dict[str, str] = field(default_factory=dict)
    configs: dict[str, _Config] = field(default_factory=dict)
    pool_members: dict[str, dict[str, _Config]] = field(default_factory=dict)
    nat_targets: dict[str, _Config] = field(default_factory=dict)
    route_tables: set[str] = field(default_factory=set)

    def build(self, ignored: Counter) -> Imported:
        for res in self.resources.values():
            self._index(res.key, res.from_template)
            for listed in ("subnets", "ipConfigurations", "frontendIPConfigurations", "backendAddressPools",
                           "inboundNatRules"):
                for entry in _list(res.props.get(listed)):
                    self._index(f"{res.key}/{listed.lower()}/{_text(_name(entry)).lower()}", res.from_template)
        for kind in (VNET, NIC, LB, NSG, ASG):
            self._name(kind)
        vnets = [self._vnet(r) for r in self._of(VNET)]
        nics = [n for n in (self._nic(r) for r in self._of(NIC)) if n is not None]
        lbs = [lb for lb in (self._load_balancer(r) for r in self._of(LB)) if lb is not None]
        nsgs = [self._nsg(r) for r in self._of(NSG)]
        if self.missing:
            lines = [f"  {ref}: referred to by {', '.join(who)}" for ref, who in self.missing.items()]
            if not self.allow_missing:
                raise ScenarioError(f"{len(self.missing)} referenced resource{'s are' if len(lines) > 1 else ' is'} "
                                    "not among the inputs (add them, or use --allow-missing to drop what needs "
                                    "them):\n" + "\n".join(lines))
            self.warnings.extend(f"dropped: {line.strip()}" for line in lines)
        scenario: dict[str, Any] = {"virtual_networks": vnets, "network_interfaces": nics}
        unknown = _first_unknown([vnets, nics, lbs, nsgs])
        if unknown is not None:
            raise unknown.error()
        if lbs:
            scenario["load_balancers"] = lbs
        scenario["network_security_groups"] = nsgs
        if self._forced_tunneling():
            scenario["forced_tunneling"] = True
        found = Counter(r.type for r in self.resources.values())
        imported = {name: found[kind] for kind, name in KINDS.items() if found[kind]}
        return Imported(scenario, self.warnings, imported, dict(sorted(ignored.items())))

    # -- ids and names ---------------------------------------------------------------------------

    def _index(self, key: str, from_template: bool) -> None:
        self.known.add(key)
        if from_template:
            self.by_path[_path(key)] = key

    def _resolve(self, ref: Any, who: str, kind: str | None = None) -> str | None:
        """The key of what `ref` ({"id": ...} or an id) points at, a resource of `kind` if given; None (and
        noted) when it is not among the inputs."""
        rid = ref.get("id") if isinstance(ref, dict) else ref
        if isinstance(rid, _Unknown):
            raise rid.error()
        if not isinstance(rid, str) or not rid:
            return None
        key = rid.lower()
        if key not in self.known:
            key = self.by_path.get(_path(key), key)
        if key in self.known and (kind is None or key in self.resources and self.resources[key].type == kind):
            return key
        self.missing.setdefault(rid, []).append(who)
        return None

    def _name(self, kind: str) -> None:
        """Resource names; two of one kind with one name become RESOURCEGROUP/NAME."""
        of_kind = self._of(kind)
        counts = Counter(r.name.lower() for r in of_kind)
        for res in of_kind:
            self.names[res.key] = f"{res.resource_group}/{res.name}" if counts[res.name.lower()] > 1 else res.name
        if kind == ASG:
            for name, count in counts.items():
                if count > 1:
                    self.warnings.append(f"application security groups named {name!r} in several resource groups "
                                         "are one ASG in the scenario: rules name ASGs by their last id segment")

    def _of(self, kind: str) -> list[Resource]:
        return sorted((r for r in self.resources.values() if r.type == kind), key=lambda r: (r.name.lower(), r.key))

    def _where(self, res: Resource) -> str:
        return f"{KINDS[res.type][:-1]} {self.names.get(res.key, res.name)}"

    # -- resources -------------------------------------------------------------------------------

    def _vnet(self, res: Resource) -> dict:
        p = res.props
        name = self.names[res.key]
        out: dict[str, Any] = {"name": name, "azure_id": res.id,
                               "address_space": list(_list(_props(p.get("addressSpace")).get("addressPrefixes")))}
        peerings = []
        for entry in _list(p.get("virtualNetworkPeerings")):
            ep = _props(entry)
            if str(ep.get("peeringState", "")).lower() != "connected":
                self.warnings.append(f"{self._where(res)}: peering {_name(entry)} is {ep.get('peeringState')}, "
                                     "not Connected: left out")
                continue
            remote = self._resolve(ep.get("remoteVirtualNetwork"), f"{self._where(res)} peering {_name(entry)}", VNET)
            if remote is not None:
                peerings.append(self.names[remote])
        if peerings:
            out["peerings"] = sorted(peerings)
        if p.get("flowTimeoutInMinutes") is not None:
            out["flow_timeout_minutes"] = p["flowTimeoutInMinutes"]
        subnets, routes = [], set()
        for entry in sorted(_list(p.get("subnets")), key=lambda e: str(_name(e)).lower()):
            sp = _props(entry)
            sub_name = _text(_name(entry))
            who = f"subnet {name}/{sub_name}"
            prefixes = [sp["addressPrefix"]] if sp.get("addressPrefix") else list(_list(sp.get("addressPrefixes")))
            prefixes.sort(key=lambda x: ":" in str(x))
            subnet: dict[str, Any] = {"name": sub_name, "azure_id": entry.get("id") or f"{res.id}/subnets/{sub_name}",
                                      "prefix": prefixes[0] if prefixes else None}
            nsg = self._resolve(sp.get("networkSecurityGroup"), who, NSG)
            if nsg is not None:
                subnet["nsg"] = self.names[nsg]
            table = self._resolve(sp.get("routeTable"), who, ROUTE_TABLE)
            if table is not None:
                self.route_tables.add(table)
                routes.update(_route_prefixes(self.resources[table]))
            subnets.append(subnet)
            self.subnets[f"{res.key}/subnets/{sub_name.lower()}"] = f"{name}/{sub_name}"
        if routes:
            out["udr_prefixes"] = [str(n) for n in sorted(routes, key=lambda n: (n.version, n))]
        out["subnets"] = subnets
        return out

    def _nic(self, res: Resource) -> dict | None:
        p = res.props
        name = self.names[res.key]
        entries = sorted(_list(p.get("ipConfigurations")), key=lambda e: not _props(e).get("primary", False))
        subnet = None
        configs, publics, asgs = [], {}, set()
        for entry in entries:
            cp = _props(entry)
            config_name = _text(_name(entry))
            who = f"network interface {name} ({config_name})"
            sub_key = self._resolve(cp.get("subnet"), who)
            public = self._public_ip(cp.get("publicIPAddress"), who)
            config_asgs = [self._resolve(ref, who, ASG) for ref in _list(cp.get("applicationSecurityGroups"))]
            pools = [self._resolve(ref, who) for ref in _list(cp.get("loadBalancerBackendAddressPools"))]
            nats = [self._resolve(ref, who) for ref in _list(cp.get("loadBalancerInboundNatRules"))]
            if sub_key is None:
                continue
            if cp.get("privateIPAddress") is None:
                self.warnings.append(f"{who}: no private IP address: left out")
                continue
            if subnet is None:
                subnet = self.subnets.get(sub_key)
            elif self.subnets.get(sub_key) != subnet:
                self.warnings.append(f"{who}: in subnet {self.subnets.get(sub_key)}, not {subnet}: the scenario "
                                     f"puts every address of a NIC in its primary configuration's subnet")
            config = _Config(name, config_name, _text(cp["privateIPAddress"]))
            config_key = f"{res.key}/ipconfigurations/{config_name.lower()}"
            self.configs[config_key] = config
            configs.append(config)
            if public is not None:
                publics[config_name] = public
            asgs.update(self.names[a] for a in config_asgs if a is not None)
            for pool in pools:
                if pool is not None:
                    self.pool_members.setdefault(pool, {})[config_key] = config
            for nat in nats:
                if nat is not None:
                    self.nat_targets[nat] = config
        if subnet is None:
            return None
        first_v4 = next((c for c in configs if ":" not in c.private_ip), None)
        if first_v4 is not None:
            first_v4.first_v4 = True
        out: dict[str, Any] = {"name": name, "azure_id": res.id, "subnet": subnet}
        if len(configs) == 1:
            out["private_ips"] = [configs[0].private_ip]
            if publics:
                out["public_ip"] = publics[configs[0].name]
        else:
            out["ip_configurations"] = [{"name": c.name, "private_ip": c.private_ip,
                                         **({"public_ip": publics[c.name]} if c.name in publics else {})}
                                        for c in configs]
        nsg = self._resolve(p.get("networkSecurityGroup"), f"network interface {name}", NSG)
        if nsg is not None:
            out["nsg"] = self.names[nsg]
        if asgs:
            out["application_security_groups"] = sorted(asgs)
        return out

    def _public_ip(self, ref: Any, who: str) -> str | None:
        key = self._resolve(ref, who, PUBLIC_IP)
        if key is None:
            return None
        address = self.resources[key].props.get("ipAddress")
        if address is None:
            self.warnings.append(f"{who}: public IP {self.resources[key].name} has no address (dynamic and not "
                                 "allocated): left out")
            return None
        if isinstance(address, _Unknown):
            raise address.error()
        if not isinstance(address, str):
            raise ScenarioError(f"public IP {self.resources[key].name}: ipAddress {address!r} is not an address",
                                field="ipAddress")
        return address

    def _load_balancer(self, res: Resource) -> dict | None:
        p = res.props
        name = self.names[res.key]
        where = f"load balancer {name}"
        frontends: dict[str, tuple[str, bool]] = {}
        for entry in _list(p.get("frontendIPConfigurations")):
            fp = _props(entry)
            key = f"{res.key}/frontendipconfigurations/{_text(_name(entry)).lower()}"
            if fp.get("publicIPAddress"):
                address = self._public_ip(fp["publicIPAddress"], f"{where} frontend {_name(entry)}")
                if address is not None:
                    frontends[key] = (address, True)
            elif fp.get("privateIPAddress"):
                frontends[key] = (_text(fp["privateIPAddress"]), False)
            else:
                self.warnings.append(f"{where}: frontend {_name(entry)} has no address (a public IP prefix?): "
                                     "left out")
        pools = {f"{res.key}/backendaddresspools/{str(_name(e)).lower()}": e
                 for e in _list(p.get("backendAddressPools"))}
        for pool_key, entry in pools.items():
            for ref in _list(_props(entry).get("backendIPConfigurations")):
                config_key = str(ref.get("id", "") if isinstance(ref, dict) else ref).lower()
                if config_key in self.configs:
                    self.pool_members.setdefault(pool_key, {})[config_key] = self.configs[config_key]

        def frontend_of(rule_props: dict) -> tuple[str, bool] | None:
            ref = rule_props.get("frontendIPConfiguration") or next(
                iter(_list(rule_props.get("frontendIPConfigurations"))), None)
            rid = ref.get("id") if isinstance(ref, dict) else ref
            return frontends.get(self._resolve(rid, where) or "") if rid else None

        def members(rule_props: dict) -> list[_Config]:
            refs = [rule_props["backendAddressPool"]] if rule_props.get("backendAddressPool") else []
            refs += _list(rule_props.get("backendAddressPools"))
            found: dict[str, _Config] = {}
            for ref in refs:
                found.update(self.pool_members.get(self._resolve(ref, where) or "", {}))
            return sorted(found.values(), key=lambda c: (c.nic.lower(), c.private_ip))

        rules, nat_rules, outbound, snat = [], [], [], set()
        for entry in sorted(_list(p.get("loadBalancingRules")), key=lambda e: str(_name(e)).lower()):
            rp = _props(entry)
            frontend = frontend_of(rp)
            if frontend is None:
                continue
            pool = members(rp)
            rules.append({"name": _name(entry), "protocol": rp.get("protocol"), "frontend": frontend[0],
                          "frontend_port": rp.get("frontendPort"), "backend_port": rp.get("backendPort"),
                          "backend_pool": [_member(c) for c in pool]})
            if frontend[1] and not rp.get("disableOutboundSnat", False):
                snat.update(c.nic for c in pool)
        for entry in sorted(_list(p.get("inboundNatRules")), key=lambda e: str(_name(e)).lower()):
            np_ = _props(entry)
            frontend = frontend_of(np_)
            key = f"{res.key}/inboundnatrules/{_text(_name(entry)).lower()}"
            target = self.nat_targets.get(key)
            backend = np_.get("backendIPConfiguration")
            if target is None and isinstance(backend, dict):
                target = self.configs.get(str(backend.get("id", "")).lower())
            if np_.get("backendAddressPool") is not None:
                self.warnings.append(f"{where}: inbound NAT rule {_name(entry)} maps a port range to a pool, "
                                     "which the scenario cannot express yet: left out")
                continue
            if frontend is None or target is None:
                continue
            nat_rules.append({"name": _name(entry), "protocol": np_.get("protocol"), "frontend": frontend[0],
                              "frontend_port": np_.get("frontendPort"), "backend_port": np_.get("backendPort"),
                              "network_interface": target.nic,
                              **({} if target.first_v4 else {"private_ip": target.private_ip})})
        for entry in _list(p.get("outboundRules")):
            op = _props(entry)
            frontend = frontend_of(op)
            if frontend is not None:
                outbound.append(frontend[0])
                snat.update(c.nic for c in members(op))
        public = {a for a, is_public in frontends.values() if is_public}
        used = [r["frontend"] for r in rules + nat_rules]
        candidates = outbound + [a for a in used if a in public] + used + [a for a, _ in frontends.values()]
        main = candidates[0] if candidates else None
        if main is None:
            self.warnings.append(f"{where}: no frontend with an address: left out")
            return None
        for rule in rules + nat_rules:
            frontend = rule.pop("frontend")
            if frontend != main:
                rule["frontend_ip"] = frontend
        return {"name": name, "azure_id": res.id, "frontend_ip": main, "rules": rules,
                **({"inbound_nat_rules": nat_rules} if nat_rules else {}), "outbound_pool": sorted(snat)}

    def _nsg(self, res: Resource) -> dict:
        p = res.props
        out: dict[str, Any] = {"name": self.names[res.key], "azure_id": res.id}
        if p.get("flushConnection"):
            out["flush_connection"] = True
        rules = []
        for entry in _list(p.get("securityRules")):
            rp = _props(entry)
            rule = {"name": _name(entry)}
            rule.update((k, rp[k]) for k in RULE_PROPERTIES if rp.get(k) not in (None, [], ""))
            for side in ("sourceApplicationSecurityGroups", "destinationApplicationSecurityGroups"):
                if side in rule:
                    rule[side] = [self._asg_reference(ref) for ref in _list(rule[side])]
            rules.append(rule)
        rules.sort(key=lambda r: (str(r.get("direction")), _number(r.get("priority")), str(r["name"])))
        out["security_rules"] = rules
        return out

    def _asg_reference(self, ref: Any) -> Any:
        """The ASG's own id, so every input shape writes the same reference (rules name ASGs by its last segment)."""
        rid = ref.get("id") if isinstance(ref, dict) else ref
        key = str(rid).lower()
        key = key if key in self.known else self.by_path.get(_path(key), key)
        return {"id": self.resources[key].id} if key in self.resources else ref

    def _forced_tunneling(self) -> bool:
        """A subnet's route table sending 0.0.0.0/0 to a virtual network gateway (reference §9, KMS)."""
        return any(str(_props(route).get("addressPrefix")) == "0.0.0.0/0" and
                   str(_props(route).get("nextHopType", "")).lower() == "virtualnetworkgateway"
                   for table in self.route_tables for route in _list(self.resources[table].props.get("routes")))


def _member(config: _Config) -> Any:
    return config.nic if config.first_v4 else {"network_interface": config.nic, "private_ip": config.private_ip}


def _route_prefixes(table: Resource) -> set:
    """UDR prefixes join VirtualNetwork (reference §4); default routes do not, as that would leave no Internet."""
    found = set()
    for route in _list(table.props.get("routes")):
        try:
            prefix = ipaddress.ip_network(str(_props(route).get("addressPrefix")), strict=False)
        except ValueError:
            continue  # a service tag as a route's destination
        if prefix not in DEFAULT_ROUTES:
            found.add(prefix)
    return found


def _props(value: Any) -> dict:
    """A sub-object's properties: nested (REST, Resource Graph, templates) or flattened (az)."""
    if not isinstance(value, dict):
        return {}
    return value["properties"] if isinstance(value.get("properties"), dict) else value


def _text(value: Any) -> str:
    if isinstance(value, _Unknown):
        raise value.error()
    return str(value)


def _name(entry: Any) -> Any:
    return entry.get("name") if isinstance(entry, dict) else None


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _number(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _last(rid: str) -> str:
    return rid.rstrip("/").rsplit("/", 1)[-1]


def _resource_group(rid: str) -> str:
    parts = rid.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered[:-1] else ""


def _path(key: str) -> str:
    """The part of an id from `/providers/` on: what a template knows of its own resources' ids."""
    at = key.find("/providers/")
    return key[at:] if at >= 0 else key


# -- the command ------------------------------------------------------------------------------------

def cmd_import(args: argparse.Namespace) -> int:
    import yaml

    from . import terraform  # it builds on this module

    documents = ((f, read_document(f)) for f in args.files)
    result = import_environment(((f, terraform.translate(d, file=f).resources if is_terraform(d) else d)
                                 for f, d in documents), allow_missing=args.allow_missing)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output and args.output.lower().endswith(".json"):
        text = json.dumps(result.scenario, indent=2) + "\n"
    else:
        text = yaml.safe_dump(result.scenario, sort_keys=False, width=120)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise DataplaneError(f"cannot write: {e.strerror}", file=args.output) from None
    else:
        sys.stdout.write(text)
    counts = ", ".join(f"{kind} {n}" for kind, n in result.imported.items()) or "nothing"
    ignored = ", ".join(f"{kind} {n}" for kind, n in result.ignored.items())
    print(f"imported: {counts}" + (f"; ignored: {ignored}" if ignored else ""), file=sys.stderr)
    return 0
