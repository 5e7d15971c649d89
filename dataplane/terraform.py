"""`terraform show -json` output (a state or a plan) as the Azure REST resources `importer` reads
(interfaces.md, "Terraform").

A state's resources are in `values.root_module` and its `child_modules`; a plan's after-state is
`planned_values` (what `after_unknown` marks is absent there), its before-state `prior_state`. Each
azurerm resource becomes the REST resource Azure would hold, with the id Azure would give it (its own
`id` when known); association resources change the resources they join. Rule attributes keep Azure's
meaning under Terraform's snake-case names, so rules go through `rules`' validation and errors are
moved back to the Terraform address and attribute.

A value unknown until apply is a marker that `importer` refuses wherever the scenario needs it (an
address, a port, a prefix, a priority); a reference to a resource (an id) unknown until apply is
followed through the plan's `configuration` to the resource it names, whose id is known or made up
from its name as Azure would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

from . import arm, importer
from .documents import is_plan
from .errors import DataplaneError, ScenarioError

PROVIDER = "registry.terraform.io/hashicorp/azurerm"
N = "Microsoft.Network"
TOP_LEVEL = {
    # Terraform type: Azure type of a resource that has its own resource group.
    "azurerm_network_security_group": f"{N}/networkSecurityGroups",
    "azurerm_virtual_network": f"{N}/virtualNetworks",
    "azurerm_network_interface": f"{N}/networkInterfaces",
    "azurerm_application_security_group": f"{N}/applicationSecurityGroups",
    "azurerm_public_ip": f"{N}/publicIPAddresses",
    "azurerm_lb": f"{N}/loadBalancers",
}
CHILDREN = {
    # Terraform type: (Azure type, the child collection, the attribute naming or referring to the parent).
    "azurerm_network_security_rule": (f"{N}/networkSecurityGroups/securityRules", "securityRules",
                                      "network_security_group_name"),
    "azurerm_subnet": (f"{N}/virtualNetworks/subnets", "subnets", "virtual_network_name"),
    "azurerm_virtual_network_peering": (f"{N}/virtualNetworks/virtualNetworkPeerings", "virtualNetworkPeerings",
                                        "virtual_network_name"),
    "azurerm_lb_rule": (f"{N}/loadBalancers/loadBalancingRules", "loadBalancingRules", "loadbalancer_id"),
    "azurerm_lb_backend_address_pool": (f"{N}/loadBalancers/backendAddressPools", "backendAddressPools",
                                        "loadbalancer_id"),
    "azurerm_lb_nat_rule": (f"{N}/loadBalancers/inboundNatRules", "inboundNatRules", "loadbalancer_id"),
}
ASSOCIATIONS = frozenset({
    "azurerm_subnet_network_security_group_association", "azurerm_network_interface_security_group_association",
    "azurerm_network_interface_application_security_group_association",
    "azurerm_network_interface_backend_address_pool_association", "azurerm_network_interface_nat_rule_association",
})
PARENT_TYPES = {"network_security_group_name": "azurerm_network_security_group",
                "virtual_network_name": "azurerm_virtual_network"}
RULE_ATTRIBUTES = {
    # Terraform attribute of a security rule: Azure property.
    "description": "description", "protocol": "protocol", "access": "access", "priority": "priority",
    "direction": "direction", "source_port_range": "sourcePortRange", "source_port_ranges": "sourcePortRanges",
    "destination_port_range": "destinationPortRange", "destination_port_ranges": "destinationPortRanges",
    "source_address_prefix": "sourceAddressPrefix", "source_address_prefixes": "sourceAddressPrefixes",
    "destination_address_prefix": "destinationAddressPrefix",
    "destination_address_prefixes": "destinationAddressPrefixes",
    "source_application_security_group_ids": "sourceApplicationSecurityGroups",
    "destination_application_security_group_ids": "destinationApplicationSecurityGroups",
}
AZURE_TO_TERRAFORM = {**{azure: tf for tf, azure in RULE_ATTRIBUTES.items()}, "securityRules": "security_rule",
                      "applicationSecurityGroups": "application_security_group_ids"}
_AZURE_NAMES = re.compile(r"\b(" + "|".join(sorted(AZURE_TO_TERRAFORM, key=len, reverse=True)) + r")\b")
_INDEX = re.compile(r"\[[^\]]*\]")
_OWN_INDEX = re.compile(r"\[[^\]]*\]$")


def prior_state(plan: dict) -> dict:
    """A plan's before-state, as the state document `terraform show -json` would print for it."""
    prior = plan.get("prior_state") if isinstance(plan.get("prior_state"), dict) else {}
    return {"format_version": plan.get("format_version"), "terraform_version": plan.get("terraform_version"),
            "values": prior.get("values") or {}}


class AfterApply(importer._Unknown):
    """A value Terraform knows only after apply: refused by `importer` where the scenario needs it."""

    __slots__ = ("address", "path")

    def __init__(self, address: str, path: tuple, file: str | None):
        super().__init__(None, file)  # type: ignore[arg-type]
        self.address = address
        self.path = path

    @property
    def attribute(self) -> str:
        return _attribute(self.path)

    def error(self) -> DataplaneError:
        return DataplaneError("is known only after apply, and decisions depend on it: set it in the configuration "
                              "(a static address, a literal port, prefix or priority)", file=self.file,
                              field=f"{self.address}.{self.attribute}")


@dataclass(frozen=True, slots=True)
class TfResource:
    """One azurerm resource (or data source) of the JSON; its values hold markers where unknown until apply."""

    address: str
    mode: str
    type: str
    values: dict

    @property
    def key(self) -> str:
        """The address without count / for_each keys, as `configuration` names it."""
        return _INDEX.sub("", self.address)

    @property
    def module(self) -> str:
        """The module instance holding it: `module.a["x"].` or empty."""
        local = ("data." if self.mode == "data" else "") + self.type
        at = self.address.rfind(local + ".")
        return self.address[:at]


class Translation(NamedTuple):
    """Azure resources made from Terraform's, and where each came from, to name addresses in errors."""

    resources: list[dict]
    addresses: dict[str, str]
    rule_origins: dict[tuple[str, str], tuple[str, str]]
    file: str | None


class Imported(NamedTuple):
    """A document built from Terraform JSON (a scenario, or a list of NSGs), and the scenario it comes from;
    `locate` moves problems found in it to Terraform addresses."""

    document: Any
    warnings: list[str]
    translation: Translation
    scenario: dict

    def locate(self, problems: list[DataplaneError]) -> list[DataplaneError]:
        return [_located(p, self.scenario, self.translation) for p in problems]


def translate(doc: dict, *, file: str | None = None, types: frozenset[str] | None = None) -> Translation:
    """The Azure resources of a state, or of a plan's after-state; only those of `types`, when given."""
    if is_plan(doc):
        root = _part(_part(doc, "planned_values", file), "root_module", file)
        changes = doc.get("resource_changes") or []
        unknowns = {c["address"]: _part(c, "change", file).get("after_unknown")
                    for c in _listed(changes) if isinstance(c.get("address"), str)}
    else:
        root = _part(_part(doc, "values", file), "root_module", file)
        unknowns = {}
    resources = []
    for raw in _module_resources(root, file):
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in TOP_LEVEL and kind not in CHILDREN and kind not in ASSOCIATIONS:
            continue
        if types is not None and kind not in types:
            continue
        address = str(raw.get("address"))
        if not isinstance(raw.get("values"), dict):
            raise DataplaneError("has no values (an object of its attributes)", file=file, field=address)
        marks = unknowns.get(address)
        values = _with_unknowns(raw["values"], marks, address, (), file) if isinstance(marks, dict) else raw["values"]
        resources.append(TfResource(address, str(raw.get("mode", "managed")), kind, values))
    return _Builder(resources, _Configuration(doc.get("configuration")), file).build()


def scenario(doc: dict, *, file: str | None = None) -> Imported:
    """The scenario document of a state, or of a plan's after-state."""
    translation = translate(doc, file=file)
    result = importer.import_environment([(file, translation.resources)])
    return Imported(result.scenario, result.warnings, translation, result.scenario)


NSG_TYPES = frozenset({"azurerm_network_security_group", "azurerm_network_security_rule",
                       "azurerm_application_security_group"})


def nsgs(doc: dict, *, file: str | None = None) -> Imported:
    """The NSGs only, as a REST list for `nsg`: other resources, and their unknowns, do not matter."""
    translation = translate(doc, file=file, types=NSG_TYPES)
    result = importer.import_environment([(file, translation.resources)])
    document = [{"name": n["name"], "type": TOP_LEVEL["azurerm_network_security_group"],
                 "properties": {"securityRules": n["security_rules"]}}
                for n in result.scenario["network_security_groups"]]
    return Imported(document, result.warnings, translation, result.scenario)


# -- reading the JSON ----------------------------------------------------------------------------------

def _part(doc: dict, key: str, file: str | None) -> dict:
    """An object of the JSON, empty when absent (an empty state has no `values`)."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataplaneError(f"{key} is not an object", file=file, field=key)
    return value


def _module_resources(module: Any, file: str | None) -> Iterator[dict]:
    if not isinstance(module, dict):
        raise DataplaneError("a module of the Terraform JSON is not an object", file=file)
    for raw in _listed(module.get("resources")):
        if str(raw.get("provider_name", PROVIDER)).endswith("hashicorp/azurerm"):
            yield raw
    for child in _listed(module.get("child_modules")):
        yield from _module_resources(child, file)


def _with_unknowns(values: Any, unknown: Any, address: str, path: tuple, file: str | None) -> Any:
    """`values` with a marker wherever `after_unknown` says true (absent values included)."""
    if unknown is True:
        return AfterApply(address, path, file)
    if isinstance(unknown, dict):
        base = values if isinstance(values, dict) else {}
        out = dict(base)
        for key, inner in unknown.items():
            if inner is True or isinstance(inner, (dict, list)) and key in base:
                out[key] = _with_unknowns(base.get(key), inner, address, path + (key,), file)
        return out
    if isinstance(unknown, list) and isinstance(values, list):
        return [_with_unknowns(v, unknown[i] if i < len(unknown) else False, address, path + (i,), file)
                for i, v in enumerate(values)] + \
            [AfterApply(address, path + (i,), file) for i in range(len(values), len(unknown)) if unknown[i] is True]
    return values


def _attribute(path: tuple) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


class _Configuration:
    """The plan's `configuration`: which resource an expression refers to, through module outputs and
    variables. A state has none: its ids are all known."""

    def __init__(self, configuration: Any):
        self.expressions: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.calls: dict[str, dict] = {}
        if isinstance(configuration, dict):
            self._walk(configuration.get("root_module") or {}, "")

    def _walk(self, module: Any, prefix: str) -> None:
        """Malformed parts are skipped: they only ever help to find a reference."""
        if not isinstance(module, dict):
            return
        for res in _listed(module.get("resources")):
            self.expressions[prefix + str(res.get("address"))] = res.get("expressions") or {}
        for name, output in _named(module.get("outputs")):
            self.outputs[prefix + name] = output.get("expression") or {}
        for name, call in _named(module.get("module_calls")):
            inner = f"{prefix}module.{name}"
            self.calls[inner] = call.get("expressions") or {}
            self._walk(call.get("module"), inner + ".")

    def references(self, res: TfResource, path: tuple) -> list[str]:
        """The resource addresses (without instance keys, with the key when the reference has one) that the
        expression of `path` names, in order."""
        node: Any = self.expressions.get(res.key, {})
        for step in path:
            if isinstance(node, dict) and ("references" in node or "constant_value" in node):
                break
            if isinstance(node, list):
                node = node[step] if isinstance(step, int) and step < len(node) else node[0] if len(node) == 1 else None
            elif isinstance(node, dict) and isinstance(step, str):
                node = node.get(step)
            if node is None:
                return []
        return self._targets(_references(node), _INDEX.sub("", res.module), 0)

    def _targets(self, refs: list[str], scope: str, depth: int) -> list[str]:
        found: list[str] = []
        for ref in refs if depth < 20 else []:
            if not isinstance(ref, str):
                continue
            parts = ref.split(".")
            if parts[0] == "var" and len(parts) > 1:
                call = scope.rstrip(".")
                parent = call.rsplit("module.", 1)[0]
                expressions = self.calls.get(call)
                expr = expressions.get(_INDEX.sub("", parts[1])) if isinstance(expressions, dict) else None
                more = self._targets(_references(expr), parent, depth + 1)
            elif parts[0] == "module" and len(parts) > 2:
                module = f"{scope}module.{_INDEX.sub('', parts[1])}"
                expr = self.outputs.get(f"{module}.{_INDEX.sub('', parts[2])}")
                more = self._targets(_references(expr), module + ".", depth + 1)
            elif parts[0] == "data" and len(parts) > 2:
                more = [f"{scope}data.{parts[1]}.{parts[2]}"]
            elif parts[0].startswith("azurerm_") and len(parts) > 1:
                more = [f"{scope}{parts[0]}.{parts[1]}"]
            else:
                more = []
            found.extend(m for m in more if m not in found)
        return found


# -- building Azure's resources ----------------------------------------------------------------------

@dataclass
class _Builder:
    resources: list[TfResource]
    configuration: _Configuration
    file: str | None
    out: list[dict] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    objects: dict[str, dict] = field(default_factory=dict)
    rule_origins: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    subscription: str = arm.SUBSCRIPTION_ID
    by_key: dict[str, list[TfResource]] = field(default_factory=dict)

    def build(self) -> Translation:
        managed = {str(r.values.get("id")).lower() for r in self.resources if r.mode == "managed"}
        self.resources = [r for r in self.resources  # a data source reading a resource of the plan reads it as it was
                          if r.mode == "managed" or str(r.values.get("id")).lower() not in managed]
        for res in self.resources:
            self.by_key.setdefault(res.key, []).append(res)
            rid = res.values.get("id")
            if isinstance(rid, str) and rid.lower().startswith("/subscriptions/"):
                self.subscription = rid.split("/")[2]
        for res in self.resources:
            if res.type in TOP_LEVEL:
                self._top_level(res)
        for res in self.resources:
            if res.type in CHILDREN:
                self._child(res)
        for res in self.resources:
            if res.type in ASSOCIATIONS:
                self._associate(res)
        self._peering_states()
        return Translation(self.out, self.addresses, self.rule_origins, self.file)

    # -- ids ---------------------------------------------------------------------------------------

    def id_of(self, res: TfResource) -> str:
        """Its id: known, or what Azure will give it (its name under its resource group or parent)."""
        if res.address in self.ids:
            return self.ids[res.address]
        rid = res.values.get("id")
        if not isinstance(rid, str) or not rid:
            name = self._known(res, "name")
            if res.type in TOP_LEVEL:
                rid = self._top_level_id(res.type, self._known(res, "resource_group_name"), name)
            else:
                rid = f"{self._parent_id(res)}/{CHILDREN[res.type][1]}/{name}"
        self.ids[res.address] = rid
        self.addresses.setdefault(rid.lower(), res.address)
        return rid

    def _parent_id(self, res: TfResource) -> str:
        attribute = CHILDREN[res.type][2]
        if attribute == "loadbalancer_id":
            return self.reference(res, (attribute,), "azurerm_lb")
        parent_type = PARENT_TYPES[attribute]
        if isinstance(res.values.get(attribute), AfterApply):
            return self.id_of(self._referred(res, (attribute,), parent_type))
        return self._top_level_id(parent_type, self._known(res, "resource_group_name"), self._known(res, attribute))

    def _top_level_id(self, kind: str, group: str, name: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{group}/providers/{TOP_LEVEL[kind]}/{name}"

    def _known(self, res: TfResource, attribute: str) -> str:
        value = res.values.get(attribute)
        if isinstance(value, AfterApply):
            raise value.error()
        if not isinstance(value, str) or not value:
            raise DataplaneError(f"{_show(value)} is not a name", file=self.file, field=f"{res.address}.{attribute}")
        return value

    def reference(self, res: TfResource, path: tuple, *kinds: str) -> str:
        """The id an attribute holds: its value, or the id of the resource its expression refers to."""
        value = _at(res.values, path)
        if isinstance(value, str) and value:
            return value
        if not isinstance(value, AfterApply):
            raise DataplaneError(f"{_show(value)} is not a resource id", file=self.file,
                                 field=f"{res.address}.{_attribute(path)}")
        return self.id_of(self._referred(res, path, *kinds))

    def references(self, res: TfResource, path: tuple, *kinds: str) -> list[str]:
        """The ids a list attribute holds; unknown ones are the resources of `kinds` its expression names."""
        value = _at(res.values, path)
        if value is None or value == []:
            return []
        if not isinstance(value, (list, AfterApply)) or \
                isinstance(value, list) and not all(isinstance(v, (str, AfterApply)) for v in value):
            raise DataplaneError(f"{_show(value)} is not a list of resource ids", file=self.file,
                                 field=f"{res.address}.{_attribute(path)}")
        known = [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
        if isinstance(value, list) and len(known) == len(value):
            return known
        found = [self.id_of(r) for r in self._resolved(res, path, kinds)]
        return known + [rid for rid in found if rid.lower() not in {k.lower() for k in known}]

    def _referred(self, res: TfResource, path: tuple, *kinds: str) -> TfResource:
        found = self._resolved(res, path, kinds)
        if len(found) > 1:
            raise DataplaneError(f"is known only after apply and its expression names several resources: "
                                 f"{', '.join(r.address for r in found)}", file=self.file,
                                 field=f"{res.address}.{_attribute(path)}")
        return found[0]

    def _resolved(self, res: TfResource, path: tuple, kinds: tuple[str, ...]) -> list[TfResource]:
        """The resources an unknown attribute's expression names: at least one, each one instance."""
        candidates = self._candidates(res, path, kinds)
        problem = None
        if not candidates:
            problem = f"is known only after apply and its expression refers to no {' or '.join(kinds)} of the plan"
        elif any(len(group) > 1 for group in candidates):
            named = ", ".join(r.address for group in candidates if len(group) > 1 for r in group)
            problem = f"is known only after apply and its expression could refer to any of {named}"
        if problem is not None:
            raise DataplaneError(problem, file=self.file, field=f"{res.address}.{_attribute(path)}")
        return [group[0] for group in candidates]

    def _candidates(self, res: TfResource, path: tuple, kinds: tuple[str, ...]) -> list[list[TfResource]]:
        """Per resource the expression names (of `kinds`), the resources of the plan it can be; one instance
        when the reference or the referring resource's own instance key picks it."""
        groups = []
        for target in self.configuration.references(res, path):
            found = [r for r in self.by_key.get(_INDEX.sub("", target), []) if not kinds or r.type in kinds]
            if "[" in target:
                local = target[target.rfind(".", 0, target.index("[")) + 1:]
                found = [r for r in found if r.address.endswith("." + local)]
            if len(found) > 1:
                found = [r for r in found if r.module == res.module] or found
                own = _OWN_INDEX.search(res.address)
                found = [r for r in found if own and r.address.endswith(own.group())] or found
            if found:
                groups.append(found)
        return groups

    # -- resources ---------------------------------------------------------------------------------

    def _emit(self, res: TfResource, azure_type: str, name: str, props: dict) -> None:
        rid = self.id_of(res)
        self.out.append({"id": rid, "type": azure_type, "name": name, "properties": props})
        self.objects[rid.lower()] = props
        self.addresses[rid.lower()] = res.address

    def _top_level(self, res: TfResource) -> None:
        v = res.values
        rid = self.id_of(res)
        name = self._known(res, "name")
        if res.type == "azurerm_network_security_group":
            rules = []
            for i, rule in enumerate(_listed(v.get("security_rule"))):
                rules.append(self._rule(res, rule, ("security_rule", i)))
                self.rule_origins[(rid.lower(), str(rule.get("name")))] = (res.address, "security_rule")
            props: dict[str, Any] = {"securityRules": rules}
        elif res.type == "azurerm_virtual_network":
            props = {"addressSpace": {"addressPrefixes": v.get("address_space")}, "subnets": []}
            if v.get("flow_timeout_in_minutes") is not None:
                props["flowTimeoutInMinutes"] = v["flow_timeout_in_minutes"]
            for i, subnet in enumerate(_listed(v.get("subnet"))):
                sub_id = subnet["id"] if isinstance(subnet.get("id"), str) else f"{rid}/subnets/{subnet.get('name')}"
                sp = _prefixes(subnet.get("address_prefixes") or subnet.get("address_prefix"))
                if subnet.get("security_group"):
                    sp["networkSecurityGroup"] = {"id": self.reference(res, ("subnet", i, "security_group"),
                                                                       "azurerm_network_security_group")}
                props["subnets"].append({"name": subnet.get("name"), "id": sub_id, "properties": sp})
                self.objects[sub_id.lower()] = sp
                self.addresses.setdefault(sub_id.lower(), res.address)
        elif res.type == "azurerm_network_interface":
            configs = []
            for i, config in enumerate(_listed(v.get("ip_configuration"))):
                path = ("ip_configuration", i)
                primary = config.get("primary")
                cp: dict[str, Any] = {"privateIPAddress": config.get("private_ip_address"),
                                      "primary": primary if isinstance(primary, bool) else i == 0,
                                      "subnet": {"id": self.reference(res, path + ("subnet_id",), "azurerm_subnet")}}
                if config.get("public_ip_address_id"):
                    cp["publicIPAddress"] = {"id": self.reference(res, path + ("public_ip_address_id",),
                                                                  "azurerm_public_ip")}
                config_id = f"{rid}/ipConfigurations/{config.get('name')}"
                configs.append({"name": config.get("name"), "id": config_id, "properties": cp})
                self.objects[config_id.lower()] = cp
            props = {"ipConfigurations": configs}
        elif res.type == "azurerm_public_ip":
            address = v.get("ip_address") or None
            if address is not None and not isinstance(address, (str, AfterApply)):
                raise DataplaneError(f"{_show(address)} is not an IP address", file=self.file,
                                     field=f"{res.address}.ip_address")
            props = {"ipAddress": address}
        elif res.type == "azurerm_lb":
            frontends = []
            for i, frontend in enumerate(_listed(v.get("frontend_ip_configuration"))):
                fp: dict[str, Any] = {}
                if frontend.get("public_ip_address_id"):
                    fp["publicIPAddress"] = {"id": self.reference(res, ("frontend_ip_configuration", i,
                                                                        "public_ip_address_id"), "azurerm_public_ip")}
                elif frontend.get("private_ip_address"):
                    fp["privateIPAddress"] = frontend["private_ip_address"]
                frontends.append({"name": frontend.get("name"),
                                  "id": f"{rid}/frontendIPConfigurations/{frontend.get('name')}", "properties": fp})
            props = {"frontendIPConfigurations": frontends}
        else:
            props = {}
        self._emit(res, TOP_LEVEL[res.type], name, props)

    def _rule(self, res: TfResource, rule: dict, path: tuple) -> dict:
        props: dict[str, Any] = {}
        for attribute, azure in RULE_ATTRIBUTES.items():
            value = rule.get(attribute)
            if value in (None, "", []):
                continue
            if attribute.endswith("_group_ids"):
                value = [{"id": rid} for rid in self.references(res, path + (attribute,),
                                                                 "azurerm_application_security_group")]
            props[azure] = value
        return {"name": rule.get("name"), "properties": props}

    def _child(self, res: TfResource) -> None:
        v = res.values
        azure_type, _, _ = CHILDREN[res.type]
        name = self._known(res, "name")
        if res.type == "azurerm_network_security_rule":
            rule = self._rule(res, v, ())
            props = rule["properties"]
            parent = self._parent_id(res)
            self.rule_origins[(parent.lower(), name)] = (res.address, "")
        elif res.type == "azurerm_subnet":
            props = _prefixes(v.get("address_prefixes") or v.get("address_prefix"))
            if v.get("network_security_group_id"):  # a data source's
                props["networkSecurityGroup"] = {"id": v["network_security_group_id"]}
        elif res.type == "azurerm_virtual_network_peering":
            props = {"remoteVirtualNetwork": {"id": self.reference(res, ("remote_virtual_network_id",),
                                                                   "azurerm_virtual_network")}}
        elif res.type == "azurerm_lb_backend_address_pool":
            props = {}
        else:
            lb = self._parent_id(res)
            props = {"protocol": v.get("protocol"), "frontendPort": v.get("frontend_port"),
                     "backendPort": v.get("backend_port"),
                     "frontendIPConfiguration": {"id": f"{lb}/frontendIPConfigurations/"
                                                       f"{self._known(res, 'frontend_ip_configuration_name')}"}}
            if res.type == "azurerm_lb_rule":
                pools = self.references(res, ("backend_address_pool_ids",), "azurerm_lb_backend_address_pool")
                if v.get("backend_address_pool_id"):  # azurerm 2's single pool
                    pools.append(self.reference(res, ("backend_address_pool_id",), "azurerm_lb_backend_address_pool"))
                props["backendAddressPools"] = [{"id": p} for p in pools]
                props["disableOutboundSnat"] = v.get("disable_outbound_snat") is True
            elif v.get("backend_address_pool_id"):
                props["backendAddressPool"] = {"id": self.reference(res, ("backend_address_pool_id",),
                                                                    "azurerm_lb_backend_address_pool")}
        self._emit(res, azure_type, name, props)

    def _associate(self, res: TfResource) -> None:
        v = res.values
        if res.type == "azurerm_subnet_network_security_group_association":
            subnet = self._object(res, "subnet_id", "azurerm_subnet")
            subnet["networkSecurityGroup"] = {"id": self.reference(res, ("network_security_group_id",),
                                                                   "azurerm_network_security_group")}
            return
        nic_id = self.reference(res, ("network_interface_id",), "azurerm_network_interface")
        nic = self.objects.get(nic_id.lower())
        if nic is None:
            raise ScenarioError(f"{nic_id} is not a network interface of this state or plan", file=self.file,
                                field=f"{res.address}.network_interface_id")
        if res.type == "azurerm_network_interface_security_group_association":
            nic["networkSecurityGroup"] = {"id": self.reference(res, ("network_security_group_id",),
                                                                "azurerm_network_security_group")}
        elif res.type == "azurerm_network_interface_application_security_group_association":
            asg = self.reference(res, ("application_security_group_id",), "azurerm_application_security_group")
            for config in nic["ipConfigurations"]:  # Terraform puts the NIC's every IP configuration in the ASG
                config["properties"].setdefault("applicationSecurityGroups", []).append({"id": asg})
        else:
            config_id = f"{nic_id}/ipConfigurations/{self._known(res, 'ip_configuration_name')}"
            config = self.objects.get(config_id.lower())
            if config is None:
                raise ScenarioError(f"{nic_id} has no IP configuration named {v.get('ip_configuration_name')!r}",
                                    file=self.file, field=f"{res.address}.ip_configuration_name")
            if res.type == "azurerm_network_interface_backend_address_pool_association":
                pool = self.reference(res, ("backend_address_pool_id",), "azurerm_lb_backend_address_pool")
                config.setdefault("loadBalancerBackendAddressPools", []).append({"id": pool})
            else:
                nat = self.reference(res, ("nat_rule_id",), "azurerm_lb_nat_rule")
                config.setdefault("loadBalancerInboundNatRules", []).append({"id": nat})

    def _object(self, res: TfResource, attribute: str, *kinds: str) -> dict:
        rid = self.reference(res, (attribute,), *kinds)
        found = self.objects.get(rid.lower())
        if found is None:
            raise ScenarioError(f"{rid} is not among the resources of this state or plan", file=self.file,
                                field=f"{res.address}.{attribute}")
        return found

    def _peering_states(self) -> None:
        """A peering is Connected when the remote VNet peers back, as Azure shows it; else Initiated."""
        peerings = [r for r in self.out if r["type"] == CHILDREN["azurerm_virtual_network_peering"][0]]
        ends = [(r["id"].lower().rsplit("/virtualnetworkpeerings/", 1)[0],
                 r["properties"]["remoteVirtualNetwork"]["id"].lower()) for r in peerings]
        for r, (local, remote) in zip(peerings, ends):
            r["properties"]["peeringState"] = "Connected" if (remote, local) in ends else "Initiated"


def _references(expression: Any) -> list:
    """An expression's `references`: what it names, each with and without the attribute it reads."""
    found = expression.get("references") if isinstance(expression, dict) else None
    return found if isinstance(found, list) else []


def _listed(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _named(value: Any) -> list[tuple[str, dict]]:
    return [(k, v) for k, v in value.items() if isinstance(v, dict)] if isinstance(value, dict) else []


def _prefixes(value: Any) -> dict:
    if isinstance(value, list) and len(value) == 1:
        return {"addressPrefix": value[0]}
    if isinstance(value, list):
        return {"addressPrefixes": value}
    return {"addressPrefix": value}


def _at(values: Any, path: tuple) -> Any:
    for step in path:
        if isinstance(values, dict) and isinstance(step, str):
            values = values.get(step)
        elif isinstance(values, list) and isinstance(step, int) and step < len(values):
            values = values[step]
        else:
            return None
    return values


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, AfterApply) else "(known after apply)"


# -- errors at Terraform addresses ---------------------------------------------------------------------

def _located(problem: DataplaneError, document: dict, translation: Translation) -> DataplaneError:
    """The problem named by the Terraform resource and attribute it comes from, in Terraform's words."""
    nsg_ids = {n.get("name"): str(n.get("azure_id", "")).lower() for n in document.get("network_security_groups") or []}
    field_ = problem.field
    message = problem.message
    nsg_id = nsg_ids.get(problem.nsg)
    origin = translation.rule_origins.get((nsg_id, problem.rule)) if nsg_id and problem.rule else None
    if origin is not None:
        address, block = origin
        attribute = AZURE_TO_TERRAFORM.get(field_ or "", field_ or "")
        field_ = ".".join(p for p in (address, block, attribute) if p)
        message = _AZURE_NAMES.sub(lambda m: AZURE_TO_TERRAFORM[m.group(1)], message)
    elif nsg_id and nsg_id in translation.addresses:
        field_ = ".".join(p for p in (translation.addresses[nsg_id], AZURE_TO_TERRAFORM.get(field_ or "", field_))
                          if p)
    elif field_:
        address = _scenario_path_address(field_, document, translation)
        if address is not None:
            field_ = f"{address} ({field_})"
    return type(problem)(message, file=problem.file or translation.file, nsg=problem.nsg, rule=problem.rule,
                         code=problem.code, field=field_)


def _scenario_path_address(path: str, document: dict, translation: Translation) -> str | None:
    """The resource a scenario path (`network_interfaces[1].private_ips[0]`) was made from."""
    match = re.match(r"(\w+)\[(\d+)\](?:\.subnets\[(\d+)\])?", path)
    if not match or not isinstance(document.get(match.group(1)), list):
        return None
    entries = document[match.group(1)]
    index = int(match.group(2))
    entry = entries[index] if index < len(entries) else None
    if match.group(3) is not None and isinstance(entry, dict):
        subnets = entry.get("subnets") or []
        entry = subnets[int(match.group(3))] if int(match.group(3)) < len(subnets) else entry
    rid = str(entry.get("azure_id", "")).lower() if isinstance(entry, dict) else ""
    return translation.addresses.get(rid)
