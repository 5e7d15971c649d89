"""Writes tests/fixtures/terraform/: one Azure environment as `terraform show -json` prints its state, the
`az network ... list` output of the same environment, and plans against it.

The Terraform side is shaped as Terraform 1.9 with azurerm 3.116 prints it: `format_version` "1.2",
every attribute of the schema present (unset ones as null, "" or []), `sensitive_values` beside
`values`, child modules with their own `address`; a plan carries `prior_state`, `planned_values` (values
unknown until apply left out), `resource_changes` with `after_unknown` and the sensitive markers, and
`configuration` with each expression's references. The az side is written with the helpers of
make_import_fixtures (az flattens `properties`), independently of the Terraform description.

Run `python tests/make_terraform_fixtures.py` after changing the description; a test checks the files on
disk are what this script writes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from make_import_fixtures import SUB, N, az, ip_configuration, nic, nsg, public_ip, ref, resource, rid, sub_object

HERE = Path(__file__).resolve().parent / "fixtures" / "terraform"
GROUP = "app-rg"
LOCATION = "westeurope"
PROVIDER = "registry.terraform.io/hashicorp/azurerm"
TERRAFORM = "1.9.8"
OFFICE, SCANNER = "198.51.100.0/24", "203.0.113.66/32"
TAGS = {"environment": "prod", "managed_by": "terraform"}

VNET_ID = rid(GROUP, f"{N}/virtualNetworks", "app-vnet")
SHARED_ID = rid(GROUP, f"{N}/virtualNetworks", "shared-vnet")
WEB_SUBNET, DB_SUBNET = f"{VNET_ID}/subnets/web", f"{VNET_ID}/subnets/db"
TOOLS_SUBNET = f"{SHARED_ID}/subnets/tools"
NSG_IDS = {n: rid(GROUP, f"{N}/networkSecurityGroups", n) for n in ("nsg-web-subnet", "nsg-db", "nsg-web-nic")}
ASG_IDS = {n: rid(GROUP, f"{N}/applicationSecurityGroups", n) for n in ("asg-web", "asg-admin")}
NIC_IDS = {n: rid(GROUP, f"{N}/networkInterfaces", n) for n in ("web1-nic", "web2-nic", "db1-nic")}
PIP_IDS = {n: rid(GROUP, f"{N}/publicIPAddresses", n) for n in ("web1-pip", "web-lb-pip")}
LB_ID = rid(GROUP, f"{N}/loadBalancers", "web-lb")
POOL_ID, FRONTEND_ID = f"{LB_ID}/backendAddressPools/web-pool", f"{LB_ID}/frontendIPConfigurations/public"
NAT_ID = f"{LB_ID}/inboundNatRules/ssh-web1"


# -- Terraform's shapes -------------------------------------------------------------------------------

def tf_rule(name: str, priority: int, access: str, *, source: str | list = "*", ports: str | list = "*",
            source_asgs: list | None = None, destination_asgs: list | None = None, direction: str = "Inbound",
            destination: str = "*", protocol: str = "Tcp") -> dict:
    """A rule as azurerm prints it: every attribute present, the unused one of each pair "" or []."""
    return {
        "access": access, "description": "",
        "destination_address_prefix": "" if destination_asgs else destination, "destination_address_prefixes": [],
        "destination_application_security_group_ids": destination_asgs or [],
        "destination_port_range": ports if isinstance(ports, str) else "",
        "destination_port_ranges": ports if isinstance(ports, list) else [], "direction": direction,
        "name": name, "priority": priority, "protocol": protocol,
        "source_address_prefix": "" if source_asgs or isinstance(source, list) else source,
        "source_address_prefixes": source if isinstance(source, list) else [],
        "source_application_security_group_ids": source_asgs or [],
        "source_port_range": "*", "source_port_ranges": [],
    }


def sensitive_of(values):
    """`sensitive_values`: the shape of lists, sets and maps, with nothing marked sensitive."""
    if isinstance(values, dict):
        return {k: sensitive_of(v) for k, v in values.items() if isinstance(v, (dict, list))}
    if isinstance(values, list):
        return [sensitive_of(v) if isinstance(v, (dict, list)) else False for v in values] \
            if any(isinstance(v, (dict, list)) for v in values) else [False] * len(values)
    return False


def tf_resource(address: str, values: dict, *, mode: str = "managed", schema_version: int = 0) -> dict:
    kind, name = address.split(".")[-2:]
    index = None
    if "[" in name:
        name, _, key = name.partition("[")
        index = json.loads(key.rstrip("]"))
    out = {"address": address, "mode": mode, "type": kind, "name": name}
    if index is not None:
        out["index"] = index
    out.update({"provider_name": PROVIDER, "schema_version": schema_version, "values": values,
                "sensitive_values": sensitive_of(values)})
    return out


def common(name: str) -> dict:
    return {"location": LOCATION, "name": name, "resource_group_name": GROUP, "tags": TAGS, "timeouts": None}


def nsg_values(name: str, rules: list[dict]) -> dict:
    return {"id": NSG_IDS[name], **common(name), "security_rule": rules}


def rule_values(nsg_name: str, rule: dict, rule_id: str | None) -> dict:
    values = dict(rule)
    values.update({"network_security_group_name": nsg_name, "resource_group_name": GROUP, "timeouts": None})
    if rule_id is not None:
        values["id"] = rule_id
    return dict(sorted(values.items()))


def subnet_values(name: str, prefix: str) -> dict:
    return {"address_prefix": None, "address_prefixes": [prefix], "default_outbound_access_enabled": True,
            "delegation": [], "enforce_private_link_endpoint_network_policies": False,
            "enforce_private_link_service_network_policies": False, "id": f"{VNET_ID}/subnets/{name}", "name": name,
            "private_endpoint_network_policies": "Disabled", "private_endpoint_network_policies_enabled": False,
            "private_link_service_network_policies_enabled": True, "resource_group_name": GROUP,
            "service_endpoint_policy_ids": None, "service_endpoints": None, "timeouts": None,
            "virtual_network_name": "app-vnet"}


def nic_values(name: str, address: str, subnet: str, public: str | None = None) -> dict:
    return {"accelerated_networking_enabled": True, "applied_dns_servers": [], "auxiliary_mode": "",
            "auxiliary_sku": "", "dns_servers": [], "edge_zone": "", "enable_accelerated_networking": True,
            "enable_ip_forwarding": False, "id": NIC_IDS[name], "internal_dns_name_label": "",
            "internal_domain_name_suffix": "k3v2fvq4lmxebh5nkiz2f4mdwf.ax.internal.cloudapp.net",
            "ip_configuration": [{
                "gateway_load_balancer_frontend_ip_configuration_id": "", "name": "ipconfig1", "primary": True,
                "private_ip_address": address, "private_ip_address_allocation": "Static",
                "private_ip_address_version": "IPv4", "public_ip_address_id": public or "", "subnet_id": subnet}],
            "ip_forwarding_enabled": False, "mac_address": "00-0D-3A-2B-4C-5D", **common(name),
            "private_ip_address": address, "private_ip_addresses": [address], "virtual_machine_id": ""}


def pip_values(name: str, address: str) -> dict:
    return {"allocation_method": "Static", "ddos_protection_mode": "VirtualNetworkInherited",
            "ddos_protection_plan_id": None, "domain_name_label": None, "edge_zone": "", "fqdn": None,
            "id": PIP_IDS[name], "idle_timeout_in_minutes": 4, "ip_address": address, "ip_tags": {},
            "ip_version": "IPv4", **common(name), "public_ip_prefix_id": None, "reverse_fqdn": None,
            "sku": "Standard", "sku_tier": "Regional", "zones": []}


def asg_values(name: str, known: bool = True) -> dict:
    return {**({"id": ASG_IDS[name]} if known else {}), **common(name)}


def association(id_: str | None, **refs) -> dict:
    return {**({"id": id_} if id_ else {}), **refs, "timeouts": None}


WEB_SUBNET_RULES = [tf_rule("AllowHttpFromInternet", 200, "Allow", source="Internet", ports="8080"),
                    tf_rule("AllowSshFromOffice", 110, "Allow", source=OFFICE, ports="22"),
                    tf_rule("AllowHttpsToWeb", 120, "Allow", destination_asgs=[ASG_IDS["asg-web"]], ports="443")]
WEB_NIC_RULES = [tf_rule("AllowWebPorts", 100, "Allow", ports=["22", "8080", "443"])]
SQL_FROM_WEB = tf_rule("AllowSqlFromWeb", 100, "Allow", source_asgs=[ASG_IDS["asg-web"]], ports="1433")
DENY_VNET = tf_rule("DenyVnetInBound", 4000, "Deny", source="VirtualNetwork")
SSH_FROM_ADMIN = tf_rule("AllowSshFromAdmin", 110, "Allow", source_asgs=[ASG_IDS["asg-admin"]], ports="22")
DENY_SCANNER = tf_rule("DenyHttpFromScanner", 105, "Deny", source=SCANNER, ports="8080")


def network_module(web_subnet_rules: list[dict]) -> dict:
    """module.network: the VNet, its subnets, and the web subnet's NSG and association."""
    m = "module.network."
    return {"address": "module.network", "resources": [
        tf_resource(m + "azurerm_network_security_group.web_subnet", nsg_values("nsg-web-subnet", web_subnet_rules)),
        tf_resource(m + "azurerm_subnet.this[\"db\"]", subnet_values("db", "10.0.2.0/24")),
        tf_resource(m + "azurerm_subnet.this[\"web\"]", subnet_values("web", "10.0.1.0/24")),
        tf_resource(m + "azurerm_subnet_network_security_group_association.web",
                    association(WEB_SUBNET, network_security_group_id=NSG_IDS["nsg-web-subnet"], subnet_id=WEB_SUBNET)),
        tf_resource(m + "azurerm_virtual_network.this", {
            "address_space": ["10.0.0.0/16"], "bgp_community": "", "ddos_protection_plan": [],
            "dns_servers": [], "edge_zone": "", "encryption": [], "flow_timeout_in_minutes": 10,
            "guid": "0a8c4f1e-2b3d-4e5f-8a9b-1c2d3e4f5a6b", "id": VNET_ID, **common("app-vnet"),
            "subnet": [{"address_prefix": "10.0.1.0/24", "id": WEB_SUBNET, "name": "web",
                        "security_group": NSG_IDS["nsg-web-subnet"]},
                       {"address_prefix": "10.0.2.0/24", "id": DB_SUBNET, "name": "db",
                        "security_group": NSG_IDS["nsg-db"]}]}),
    ]}


def root_resources(db_rules: list[tuple[str, dict]], asgs: list[str], web2_asg: str) -> list[dict]:
    nic_assoc = "azurerm_network_interface_application_security_group_association"
    resources = [tf_resource(f"azurerm_application_security_group.{n.split('-')[1]}", asg_values(n)) for n in asgs]
    resources += [
        tf_resource("azurerm_lb.web", {
            "edge_zone": "", "frontend_ip_configuration": [{
                "gateway_load_balancer_frontend_ip_configuration_id": "", "id": FRONTEND_ID,
                "inbound_nat_rules": [NAT_ID], "load_balancer_rules": [f"{LB_ID}/loadBalancingRules/http"],
                "name": "public", "outbound_rules": [], "private_ip_address": "", "private_ip_address_allocation":
                "Dynamic", "private_ip_address_version": "", "public_ip_address_id": PIP_IDS["web-lb-pip"],
                "public_ip_prefix_id": "", "subnet_id": "", "zones": []}],
            "id": LB_ID, **common("web-lb"), "private_ip_address": "", "private_ip_addresses": [], "sku": "Standard",
            "sku_tier": "Regional"}),
        tf_resource("azurerm_lb_backend_address_pool.web", {
            "backend_ip_configurations": [f"{NIC_IDS['web1-nic']}/ipConfigurations/ipconfig1",
                                          f"{NIC_IDS['web2-nic']}/ipConfigurations/ipconfig1"],
            "id": POOL_ID, "inbound_nat_rules": [], "load_balancing_rules": [f"{LB_ID}/loadBalancingRules/http"],
            "loadbalancer_id": LB_ID, "name": "web-pool", "outbound_rules": [], "synchronous_mode": "",
            "timeouts": None, "tunnel_interface": [], "virtual_network_id": ""}),
        tf_resource("azurerm_lb_nat_rule.ssh_web1", {
            "backend_address_pool_id": "",
            "backend_ip_configuration_id": f"{NIC_IDS['web1-nic']}/ipConfigurations/ipconfig1",
            "backend_port": 22, "enable_floating_ip": False, "enable_tcp_reset": False,
            "floating_ip_enabled": False, "frontend_ip_configuration_id": FRONTEND_ID,
            "frontend_ip_configuration_name": "public", "frontend_port": 50001, "frontend_port_end": None,
            "frontend_port_start": None, "id": NAT_ID, "idle_timeout_in_minutes": 4, "loadbalancer_id": LB_ID,
            "name": "ssh-web1", "protocol": "Tcp", "resource_group_name": GROUP, "tcp_reset_enabled": False,
            "timeouts": None}),
        tf_resource("azurerm_lb_rule.http", {
            "backend_address_pool_ids": [POOL_ID], "backend_port": 8080, "disable_outbound_snat": False,
            "enable_floating_ip": False, "enable_tcp_reset": False, "floating_ip_enabled": False,
            "frontend_ip_configuration_id": FRONTEND_ID, "frontend_ip_configuration_name": "public",
            "frontend_port": 80, "id": f"{LB_ID}/loadBalancingRules/http", "idle_timeout_in_minutes": 4,
            "load_distribution": "Default", "loadbalancer_id": LB_ID, "name": "http", "probe_id": "",
            "protocol": "Tcp", "tcp_reset_enabled": False, "timeouts": None}),
        tf_resource("azurerm_network_interface.db1", nic_values("db1-nic", "10.0.2.4", DB_SUBNET)),
        tf_resource("azurerm_network_interface.web[0]", nic_values("web1-nic", "10.0.1.4", WEB_SUBNET,
                                                                   PIP_IDS["web1-pip"])),
        tf_resource("azurerm_network_interface.web[1]", nic_values("web2-nic", "10.0.1.5", WEB_SUBNET)),
        tf_resource(f"{nic_assoc}.web1", association(
            f"{NIC_IDS['web1-nic']}|{ASG_IDS['asg-web']}", application_security_group_id=ASG_IDS["asg-web"],
            network_interface_id=NIC_IDS["web1-nic"])),
        tf_resource(f"{nic_assoc}.web2_{web2_asg.split('-')[1]}", association(
            f"{NIC_IDS['web2-nic']}|{ASG_IDS[web2_asg]}", application_security_group_id=ASG_IDS[web2_asg],
            network_interface_id=NIC_IDS["web2-nic"])),
        tf_resource("azurerm_network_interface_backend_address_pool_association.web[0]", association(
            f"{NIC_IDS['web1-nic']}/ipConfigurations/ipconfig1|{POOL_ID}", backend_address_pool_id=POOL_ID,
            ip_configuration_name="ipconfig1", network_interface_id=NIC_IDS["web1-nic"])),
        tf_resource("azurerm_network_interface_backend_address_pool_association.web[1]", association(
            f"{NIC_IDS['web2-nic']}/ipConfigurations/ipconfig1|{POOL_ID}", backend_address_pool_id=POOL_ID,
            ip_configuration_name="ipconfig1", network_interface_id=NIC_IDS["web2-nic"])),
        tf_resource("azurerm_network_interface_nat_rule_association.ssh_web1", association(
            f"{NIC_IDS['web1-nic']}/ipConfigurations/ipconfig1|{NAT_ID}", ip_configuration_name="ipconfig1",
            nat_rule_id=NAT_ID, network_interface_id=NIC_IDS["web1-nic"])),
        tf_resource("azurerm_network_interface_security_group_association.web1", association(
            f"{NIC_IDS['web1-nic']}|{NSG_IDS['nsg-web-nic']}", network_interface_id=NIC_IDS["web1-nic"],
            network_security_group_id=NSG_IDS["nsg-web-nic"])),
        tf_resource("azurerm_network_security_group.db", nsg_values("nsg-db", [])),
        tf_resource("azurerm_subnet_network_security_group_association.db", association(
            DB_SUBNET, network_security_group_id=NSG_IDS["nsg-db"], subnet_id=DB_SUBNET)),
        tf_resource("azurerm_network_security_group.web_nic", nsg_values("nsg-web-nic", WEB_NIC_RULES)),
    ]
    resources += [tf_resource(f"azurerm_network_security_rule.{name}", rule_values("nsg-db", rule, rule_id))
                  for name, rule, rule_id in db_rules]
    resources += [
        tf_resource("azurerm_public_ip.lb", pip_values("web-lb-pip", "20.50.1.100")),
        tf_resource("azurerm_public_ip.web1", pip_values("web1-pip", "20.50.1.4")),
        tf_resource("azurerm_resource_group.app", {"id": f"/subscriptions/{SUB}/resourceGroups/{GROUP}",
                                                   "location": LOCATION,
                                                   "managed_by": "", "name": GROUP, "tags": TAGS, "timeouts": None}),
        tf_resource("azurerm_virtual_network.shared", {
            "address_space": ["10.1.0.0/16"], "bgp_community": "", "ddos_protection_plan": [], "dns_servers": [],
            "edge_zone": "", "encryption": [], "flow_timeout_in_minutes": None,
            "guid": "5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f", "id": SHARED_ID, **common("shared-vnet"),
            "subnet": [{"address_prefix": "10.1.1.0/24", "id": TOOLS_SUBNET, "name": "tools", "security_group": ""}]}),
        tf_resource("azurerm_virtual_network_peering.app_to_shared", peering_values("app-to-shared", "app-vnet",
                                                                                     SHARED_ID)),
        tf_resource("azurerm_virtual_network_peering.shared_to_app", peering_values("shared-to-app", "shared-vnet",
                                                                                    VNET_ID)),
    ]
    return resources


def peering_values(name: str, vnet: str, remote: str) -> dict:
    return {"allow_forwarded_traffic": False, "allow_gateway_transit": False, "allow_virtual_network_access": True,
            "id": rid(GROUP, f"{N}/virtualNetworks/virtualNetworkPeerings", vnet, name), "local_subnet_names": None,
            "name": name, "only_ipv6_peering_enabled": None, "peer_complete_virtual_networks_enabled": True,
            "remote_subnet_names": None, "remote_virtual_network_id": remote, "resource_group_name": GROUP,
            "timeouts": None, "triggers": None, "use_remote_gateways": False, "virtual_network_name": vnet}


PRIOR_DB_RULES = [("sql_from_web", SQL_FROM_WEB, f"{NSG_IDS['nsg-db']}/securityRules/AllowSqlFromWeb"),
                  ("deny_vnet", DENY_VNET, f"{NSG_IDS['nsg-db']}/securityRules/DenyVnetInBound")]


def state() -> dict:
    return {"format_version": "1.0", "terraform_version": TERRAFORM, "values": {"root_module": {
        "resources": root_resources(PRIOR_DB_RULES, ["asg-web"], "asg-web"),
        "child_modules": [network_module(WEB_SUBNET_RULES)]}}}


# -- the plan: an allow removed, a deny added, a NIC moved to a new ASG ----------------------------------

def plan() -> dict:
    """Against `state()`: `AllowSshFromOffice` leaves the web subnet's NSG; `DenyHttpFromScanner` joins it as a
    separate rule resource; a new ASG `asg-admin` is created, a new rule of nsg-db allows SSH from it, and
    web2-nic leaves asg-web for it. The new ASG's id is unknown until apply: the new rule and association
    refer to it by address."""
    prior = state()
    after_rules = [r for r in WEB_SUBNET_RULES if r["name"] != "AllowSshFromOffice"]
    planned_root = root_resources(PRIOR_DB_RULES + [("ssh_from_admin", SSH_FROM_ADMIN, None)],
                                  ["asg-web", "asg-admin"], "asg-admin")
    unknown_paths = {
        "azurerm_application_security_group.admin": {"id": True},
        "azurerm_network_security_rule.ssh_from_admin": {"id": True, "source_application_security_group_ids": True},
        "azurerm_network_interface_application_security_group_association.web2_admin":
            {"id": True, "application_security_group_id": True},
        "module.network.azurerm_network_security_rule.deny_scanner": {"id": True},
    }
    network = network_module(after_rules)
    network["resources"].insert(1, tf_resource("module.network.azurerm_network_security_rule.deny_scanner",
                                               rule_values("nsg-web-subnet", DENY_SCANNER, None)))
    planned_by_address = {}
    for res in planned_root + network["resources"]:
        values = forget(res["values"], unknown_paths.get(res["address"], {}))
        res["values"] = values
        res["sensitive_values"] = sensitive_of(values)
        planned_by_address[res["address"]] = res
    prior_by_address = {r["address"]: r for r in prior["values"]["root_module"]["resources"] +
                        prior["values"]["root_module"]["child_modules"][0]["resources"]}
    changes = []
    for address in sorted(set(planned_by_address) | set(prior_by_address)):
        before = prior_by_address.get(address)
        after = planned_by_address.get(address)
        if before is None:
            actions = ["create"]
        elif after is None:
            actions = ["delete"]
        elif before["values"] == after["values"]:
            actions = ["no-op"]
        else:
            actions = ["update"]
        some = after or before
        change = {"actions": actions, "before": before["values"] if before else None,
                  "after": after["values"] if after else None,
                  "after_unknown": {**unknown_shape(after["values"]), **unknown_paths.get(address, {})} if after
                  else {},
                  "before_sensitive": before["sensitive_values"] if before else False,
                  "after_sensitive": after["sensitive_values"] if after else False}
        entry = {k: some[k] for k in ("address", "mode", "type", "name", "index") if k in some}
        if address.startswith("module.network."):
            entry["module_address"] = "module.network"
        entry.update({"provider_name": PROVIDER, "change": change})
        changes.append(entry)
    return {
        "format_version": "1.2", "terraform_version": TERRAFORM,
        "planned_values": {"root_module": {"resources": planned_root, "child_modules": [network]}},
        "resource_changes": changes,
        "prior_state": {"format_version": "1.0", "terraform_version": TERRAFORM, "values": prior["values"]},
        "configuration": configuration(),
        "timestamp": "2026-11-28T18:00:00Z", "applyable": True, "complete": True, "errored": False,
    }


def forget(values: dict, unknown: dict) -> dict:
    """The planned values: what is unknown until apply left out, as Terraform leaves it out."""
    return {key: value for key, value in values.items() if unknown.get(key) is not True}


def unknown_shape(values):
    """`after_unknown` for known values: the shape of lists and maps, nothing unknown."""
    if isinstance(values, dict):
        return {k: unknown_shape(v) for k, v in values.items() if isinstance(v, (dict, list))}
    if isinstance(values, list):
        return [unknown_shape(v) if isinstance(v, (dict, list)) else False for v in values]
    return False


def refs(*addresses: str) -> dict:
    return {"references": [x for a in addresses for x in (f"{a}.id", a)]}


def configuration() -> dict:
    """Only what the plan's unknown values need: the expressions naming the new ASG, and the module's rule."""
    return {
        "provider_config": {"azurerm": {"name": "azurerm", "full_name": PROVIDER, "version_constraint": "~> 3.116",
                                        "expressions": {"features": [{}]}}},
        "root_module": {
            "resources": [
                {"address": "azurerm_application_security_group.admin", "mode": "managed",
                 "type": "azurerm_application_security_group", "name": "admin", "provider_config_key": "azurerm",
                 "expressions": {"name": {"constant_value": "asg-admin"},
                                 "resource_group_name": {"references": ["azurerm_resource_group.app.name",
                                                                        "azurerm_resource_group.app"]}},
                 "schema_version": 0},
                {"address": "azurerm_network_interface_application_security_group_association.web2_admin",
                 "mode": "managed", "type": "azurerm_network_interface_application_security_group_association",
                 "name": "web2_admin", "provider_config_key": "azurerm",
                 "expressions": {"application_security_group_id": refs("azurerm_application_security_group.admin"),
                                 "network_interface_id": {"references": ["azurerm_network_interface.web[1].id",
                                                                         "azurerm_network_interface.web[1]",
                                                                         "azurerm_network_interface.web"]}},
                 "schema_version": 0},
                {"address": "azurerm_network_security_rule.ssh_from_admin", "mode": "managed",
                 "type": "azurerm_network_security_rule", "name": "ssh_from_admin", "provider_config_key": "azurerm",
                 "expressions": {
                     "access": {"constant_value": "Allow"}, "destination_port_range": {"constant_value": "22"},
                     "network_security_group_name": {"references": ["azurerm_network_security_group.db.name",
                                                                    "azurerm_network_security_group.db"]},
                     "source_application_security_group_ids": refs("azurerm_application_security_group.admin")},
                 "schema_version": 0},
            ],
            "module_calls": {"network": {"source": "./modules/network", "module": {"resources": [
                {"address": "azurerm_network_security_rule.deny_scanner", "mode": "managed",
                 "type": "azurerm_network_security_rule", "name": "deny_scanner", "provider_config_key": "azurerm",
                 "expressions": {"network_security_group_name": {
                     "references": ["azurerm_network_security_group.web_subnet.name",
                                    "azurerm_network_security_group.web_subnet"]}},
                 "schema_version": 0}]}}},
        },
    }


# -- the az export of the state's environment --------------------------------------------------------

def az_environment() -> dict[str, list[dict]]:
    """`az network ... list` of the environment `state()` describes, per command."""
    asg = {n: ref(GROUP, f"{N}/applicationSecurityGroups", n) for n in ASG_IDS}
    ip_config = {n: f"{NIC_IDS[n]}/ipConfigurations/ipconfig1" for n in NIC_IDS}

    def rule(name, priority, access, *, source="*", ports="*", destination="*"):
        return (name, priority, "Inbound", access, "Tcp", {"source": source, "destination": destination,
                                                           "ports": ports})

    nsgs = [
        nsg(GROUP, "nsg-db", [rule("AllowSqlFromWeb", 100, "Allow", source=asg["asg-web"], ports="1433"),
                              rule("DenyVnetInBound", 4000, "Deny", source="VirtualNetwork")],
            attached={"subnets": [{"id": DB_SUBNET}]}),
        nsg(GROUP, "nsg-web-nic", [rule("AllowWebPorts", 100, "Allow", ports=["22", "8080", "443"])],
            attached={"networkInterfaces": [{"id": NIC_IDS["web1-nic"]}]}),
        nsg(GROUP, "nsg-web-subnet", [rule("AllowHttpFromInternet", 200, "Allow", source="Internet", ports="8080"),
                                      rule("AllowSshFromOffice", 110, "Allow", source=OFFICE, ports="22"),
                                      rule("AllowHttpsToWeb", 120, "Allow", destination=asg["asg-web"], ports="443")],
            attached={"subnets": [{"id": WEB_SUBNET}]}),
    ]

    def subnet(vnet_id, name, prefix, nsg_name=None):
        props = {"addressPrefix": prefix, "delegations": []}
        if nsg_name:
            props["networkSecurityGroup"] = {"id": NSG_IDS[nsg_name]}
        return sub_object(vnet_id, "subnets", name, f"{N}/virtualNetworks/subnets", props)

    def peering(vnet_id, name, remote):
        return sub_object(vnet_id, "virtualNetworkPeerings", name, f"{N}/virtualNetworks/virtualNetworkPeerings",
                          {"peeringState": "Connected", "remoteVirtualNetwork": {"id": remote},
                           "allowVirtualNetworkAccess": True})

    vnets = [
        resource(GROUP, f"{N}/virtualNetworks", "app-vnet", {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "flowTimeoutInMinutes": 10,
            "subnets": [subnet(VNET_ID, "db", "10.0.2.0/24", "nsg-db"), subnet(VNET_ID, "web", "10.0.1.0/24",
                                                                               "nsg-web-subnet")],
            "virtualNetworkPeerings": [peering(VNET_ID, "app-to-shared", SHARED_ID)]}),
        resource(GROUP, f"{N}/virtualNetworks", "shared-vnet", {
            "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
            "subnets": [subnet(SHARED_ID, "tools", "10.1.1.0/24")],
            "virtualNetworkPeerings": [peering(SHARED_ID, "shared-to-app", VNET_ID)]}),
    ]
    web_subnet, db_subnet = {"id": WEB_SUBNET}, {"id": DB_SUBNET}
    nics = [
        nic(GROUP, "db1-nic", [ip_configuration(NIC_IDS["db1-nic"], "ipconfig1", "10.0.2.4", db_subnet,
                                                primary=True)], vm="db1"),
        nic(GROUP, "web1-nic", [ip_configuration(NIC_IDS["web1-nic"], "ipconfig1", "10.0.1.4", web_subnet,
                                                 primary=True, public={"id": PIP_IDS["web1-pip"]},
                                                 asgs=[asg["asg-web"]], pools=[{"id": POOL_ID}],
                                                 nat_rules=[{"id": NAT_ID}])],
            nsg_ref={"id": NSG_IDS["nsg-web-nic"]}, vm="web1"),
        nic(GROUP, "web2-nic", [ip_configuration(NIC_IDS["web2-nic"], "ipconfig1", "10.0.1.5", web_subnet,
                                                 primary=True, asgs=[asg["asg-web"]], pools=[{"id": POOL_ID}])],
            vm="web2"),
    ]
    lb = resource(GROUP, f"{N}/loadBalancers", "web-lb", {
        "frontendIPConfigurations": [sub_object(LB_ID, "frontendIPConfigurations", "public",
                                                f"{N}/loadBalancers/frontendIPConfigurations",
                                                {"publicIPAddress": {"id": PIP_IDS["web-lb-pip"]}})],
        "backendAddressPools": [sub_object(LB_ID, "backendAddressPools", "web-pool",
                                           f"{N}/loadBalancers/backendAddressPools",
                                           {"backendIPConfigurations": [{"id": ip_config["web1-nic"]},
                                                                        {"id": ip_config["web2-nic"]}]})],
        "loadBalancingRules": [sub_object(LB_ID, "loadBalancingRules", "http", f"{N}/loadBalancers/loadBalancingRules",
                                          {"protocol": "Tcp", "frontendPort": 80, "backendPort": 8080,
                                           "frontendIPConfiguration": {"id": FRONTEND_ID},
                                           "backendAddressPool": {"id": POOL_ID},
                                           "backendAddressPools": [{"id": POOL_ID}], "disableOutboundSnat": False})],
        "inboundNatRules": [sub_object(LB_ID, "inboundNatRules", "ssh-web1", f"{N}/loadBalancers/inboundNatRules",
                                       {"protocol": "Tcp", "frontendPort": 50001, "backendPort": 22,
                                        "frontendIPConfiguration": {"id": FRONTEND_ID},
                                        "backendIPConfiguration": {"id": ip_config["web1-nic"]}})],
    }, sku={"name": "Standard", "tier": "Regional"})
    pips = [public_ip(GROUP, "web-lb-pip", "20.50.1.100", FRONTEND_ID),
            public_ip(GROUP, "web1-pip", "20.50.1.4", ip_config["web1-nic"])]
    asgs = [resource(GROUP, f"{N}/applicationSecurityGroups", "asg-web", {})]
    return {"az-network-vnet-list.json": vnets, "az-network-nic-list.json": nics, "az-network-nsg-list.json": nsgs,
            "az-network-lb-list.json": [lb], "az-network-public-ip-list.json": pips,
            "az-network-asg-list.json": asgs}


def write_all(root: Path = HERE) -> dict[Path, str]:
    """Every fixture file and its text; writes them when run as a script."""
    files = {root / "state.json": state(), root / "plan.json": plan()}
    for name, resources in az_environment().items():
        files[root / "az" / name] = az(copy.deepcopy(resources))
    return {path: json.dumps(doc, indent=2) + "\n" for path, doc in files.items()}


if __name__ == "__main__":
    for path, text in write_all().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
