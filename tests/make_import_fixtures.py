"""Writes tests/fixtures/import/: one Azure environment in the four shapes `dataplane import` reads.

The environment is described once, as REST resources (the shape of Azure's REST API examples in
azure-rest-api-specs); the az CLI, Resource Graph and exported-template shapes are derived from it as
those tools derive theirs: az flattens `properties` (sub-objects too) and adds `resourceGroup`;
Resource Graph nests `properties`, writes types and resource groups in lower case and wraps the
rows in `{"data": [...]}`; `az group export` writes one template per resource group, names and
ids as `parameters()`/`resourceId()` expressions, references into other groups as `..._externalid`
parameters, child resources again at top level, and no read-only back-references.

Run `python tests/make_import_fixtures.py` after changing the description; a test checks the
files on disk are what this script writes.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

SUB = "6f1c9a52-3b7e-4d2a-9c1f-2e8b5d4a7c30"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
LOCATION = "westeurope"
HERE = Path(__file__).resolve().parent / "fixtures" / "import"
N = "Microsoft.Network"


def rid(group: str, kind: str, *names: str) -> str:
    namespace, *types = kind.split("/")
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/{namespace}" + \
        "".join(f"/{t}/{n}" for t, n in zip(types, names))


def etag(seed: str) -> str:
    n = sum(ord(c) * (i + 1) for i, c in enumerate(seed))
    return f'W/"{n % 0xFFFFFFFF:08x}-5e7c-4b1d-9a3f-{n % 0xFFFFFFFFFFFF:012x}"'


def ref(group: str, kind: str, *names: str) -> dict:
    return {"id": rid(group, kind, *names)}


def sub_object(parent_id: str, collection: str, name: str, kind: str, props: dict) -> dict:
    oid = f"{parent_id}/{collection}/{name}"
    return {"name": name, "id": oid, "etag": etag(oid), "type": kind,
            "properties": {"provisioningState": "Succeeded", **props}}


def resource(group: str, type_: str, name: str, props: dict, **extra) -> dict:
    own = rid(group, type_, name)
    return {"name": name, "id": own, "etag": etag(own), "type": type_, "location": LOCATION, **extra,
            "properties": {"provisioningState": "Succeeded", **props}}


def security_rule(nsg_id: str, name: str, priority: int, direction: str, access: str, protocol: str, *,
                  source: str | list | dict = "*", destination: str | list | dict = "*", ports: str | list = "*"):
    props = {"protocol": protocol, "sourcePortRange": "*", "access": access, "priority": priority,
             "direction": direction, "sourcePortRanges": [], "destinationPortRanges": [],
             "sourceAddressPrefixes": [], "destinationAddressPrefixes": []}
    for side, value in (("source", source), ("destination", destination)):
        if isinstance(value, dict):
            props[f"{side}ApplicationSecurityGroups"] = [value]
        elif isinstance(value, list):
            props[f"{side}AddressPrefixes"] = value
        else:
            props[f"{side}AddressPrefix"] = value
    if isinstance(ports, list):
        props["destinationPortRanges"] = ports
    else:
        props["destinationPortRange"] = ports
    return sub_object(nsg_id, "securityRules", name, f"{N}/networkSecurityGroups/securityRules", props)


DEFAULT_RULES = [
    ("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer", "*"),
    ("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*"),
    ("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", "Internet"),
    ("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*"),
]


def nsg(group: str, name: str, rules: list[tuple], *, flush: bool = False, attached: dict) -> dict:
    own = rid(group, f"{N}/networkSecurityGroups", name)
    defaults = [sub_object(own, "defaultSecurityRules", n, f"{N}/networkSecurityGroups/defaultSecurityRules",
                           {"description": "default rule", "protocol": "*", "sourcePortRange": "*",
                            "destinationPortRange": "*", "sourceAddressPrefix": s, "destinationAddressPrefix": d,
                            "access": a, "priority": p, "direction": di, "sourcePortRanges": [],
                            "destinationPortRanges": [], "sourceAddressPrefixes": [],
                            "destinationAddressPrefixes": []})
                for n, p, di, a, s, d in DEFAULT_RULES]
    return resource(group, f"{N}/networkSecurityGroups", name, {
        "resourceGuid": "3f0d6c1e-8a2b-4c5d-9e7f-1a2b3c4d5e6f", "flushConnection": flush,
        "securityRules": [security_rule(own, *r[:5], **r[5]) for r in rules],
        "defaultSecurityRules": defaults, **attached})


def ip_configuration(nic_id: str, name: str, ip: str, subnet: dict, *, primary: bool, public: dict | None = None,
                     asgs: list | None = None, pools: list | None = None, nat_rules: list | None = None) -> dict:
    props = {"privateIPAddress": ip, "privateIPAllocationMethod": "Static" if primary else "Dynamic",
             "privateIPAddressVersion": "IPv6" if ":" in ip else "IPv4", "subnet": subnet, "primary": primary}
    if public:
        props["publicIPAddress"] = public
    if asgs:
        props["applicationSecurityGroups"] = asgs
    if pools:
        props["loadBalancerBackendAddressPools"] = pools
    if nat_rules:
        props["loadBalancerInboundNatRules"] = nat_rules
    return sub_object(nic_id, "ipConfigurations", name, f"{N}/networkInterfaces/ipConfigurations", props)


def nic(group: str, name: str, configs: list[dict], *, nsg_ref: dict | None = None, vm: str) -> dict:
    props = {"resourceGuid": "9b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e", "ipConfigurations": configs,
             "dnsSettings": {"dnsServers": [], "appliedDnsServers": [],
                             "internalDomainNameSuffix": "k3v2fvq4lmxebh5nkiz2f4mdwf.ax.internal.cloudapp.net"},
             "macAddress": "00-0D-3A-2B-4C-5D", "vnetEncryptionSupported": False, "enableIPForwarding": False,
             "enableAcceleratedNetworking": True, "disableTcpStateTracking": False, "hostedWorkloads": [],
             "tapConfigurations": [], "nicType": "Standard", "auxiliaryMode": "None", "auxiliarySku": "None",
             "virtualMachine": ref(group, "Microsoft.Compute/virtualMachines", vm)}
    if nsg_ref:
        props["networkSecurityGroup"] = nsg_ref
    return resource(group, f"{N}/networkInterfaces", name, props, kind="Regular")


def public_ip(group: str, name: str, address: str | None, attached_to: str | None) -> dict:
    props = {"resourceGuid": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
             "publicIPAddressVersion": "IPv4", "idleTimeoutInMinutes": 4, "ipTags": [],
             "publicIPAllocationMethod": "Static" if address else "Dynamic", "ipAddress": address}
    if attached_to:
        props["ipConfiguration"] = {"id": attached_to}
    return resource(group, f"{N}/publicIPAddresses", name, props,
                    sku={"name": "Standard" if address else "Basic", "tier": "Regional"}, zones=None)


def environment() -> list[dict]:
    """Hub and spoke, peered; a jump box with a public IP in the hub; two web servers behind a public load
    balancer (a rule, an inbound NAT rule, an outbound rule) and an app server behind an internal one
    (HA ports) in the spoke; subnet and NIC NSGs, ASGs, a route table; a VM, a disk and a storage account."""
    hub, spoke = "hub-rg", "spoke-rg"
    vnet_kind = f"{N}/virtualNetworks"
    hub_id, spoke_id = rid(hub, vnet_kind, "hub-vnet"), rid(spoke, vnet_kind, "spoke-vnet")
    lb_id = rid(spoke, f"{N}/loadBalancers", "web-lb")
    ilb_id = rid(spoke, f"{N}/loadBalancers", "app-ilb")
    nic_kind = f"{N}/networkInterfaces"
    web1, web2, app1, jump = (rid(spoke, nic_kind, "web1-nic"), rid(spoke, nic_kind, "web2-nic"),
                              rid(spoke, nic_kind, "app1-nic"), rid(hub, nic_kind, "jump-nic"))
    asg_web, asg_app = ref(spoke, f"{N}/applicationSecurityGroups", "asg-web"), \
        ref(spoke, f"{N}/applicationSecurityGroups", "asg-app")
    web_pool = {"id": f"{lb_id}/backendAddressPools/web-pool"}
    app_pool = {"id": f"{ilb_id}/backendAddressPools/app-pool"}
    ssh_web1 = {"id": f"{lb_id}/inboundNatRules/ssh-web1"}

    def subnet(vnet_id: str, name: str, prefixes: list[str], *, nsg_ref=None, route_table=None, users=()):
        props = {"addressPrefix": prefixes[0]} if len(prefixes) == 1 else {"addressPrefixes": prefixes}
        if nsg_ref:
            props["networkSecurityGroup"] = nsg_ref
        if route_table:
            props["routeTable"] = route_table
        props.update({"ipConfigurations": [{"id": u} for u in users], "delegations": [],
                      "privateEndpointNetworkPolicies": "Disabled", "privateLinkServiceNetworkPolicies": "Enabled"})
        return sub_object(vnet_id, "subnets", name, f"{vnet_kind}/subnets", props)

    def peering(vnet_id: str, name: str, remote: str, state: str, remote_space: list[str]):
        return sub_object(vnet_id, "virtualNetworkPeerings", name, f"{vnet_kind}/virtualNetworkPeerings", {
            "peeringState": state, "peeringSyncLevel": "FullyInSync", "remoteVirtualNetwork": {"id": remote},
            "allowVirtualNetworkAccess": True, "allowForwardedTraffic": False, "allowGatewayTransit": False,
            "useRemoteGateways": False, "doNotVerifyRemoteGateways": False,
            "remoteAddressSpace": {"addressPrefixes": remote_space},
            "remoteVirtualNetworkAddressSpace": {"addressPrefixes": remote_space}})

    nsg_ref = {name: ref(group, f"{N}/networkSecurityGroups", name) for group, name in (
        (hub, "nsg-shared-subnet"), (hub, "nsg-jump"), (spoke, "nsg-web-subnet"), (spoke, "nsg-app-subnet"),
        (spoke, "nsg-app-nic"))}
    route_table = ref(spoke, f"{N}/routeTables", "spoke-rt")
    web_subnet = ref(spoke, f"{vnet_kind}/subnets", "spoke-vnet", "web")
    app_subnet = ref(spoke, f"{vnet_kind}/subnets", "spoke-vnet", "app")
    shared_subnet = ref(hub, f"{vnet_kind}/subnets", "hub-vnet", "shared")
    office = "198.51.100.0/24"

    resources = [
        resource(hub, vnet_kind, "hub-vnet", {
            "resourceGuid": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "flowTimeoutInMinutes": 10,
            "dhcpOptions": {"dnsServers": []},
            "subnets": [subnet(hub_id, "shared", ["10.0.1.0/24"], nsg_ref=nsg_ref["nsg-shared-subnet"],
                               users=[f"{jump}/ipConfigurations/ipconfig1"]),
                        subnet(hub_id, "GatewaySubnet", ["10.0.255.0/27"])],
            "virtualNetworkPeerings": [
                peering(hub_id, "hub-to-spoke", spoke_id, "Connected", ["10.1.0.0/16", "fd00:1::/48"]),
                peering(hub_id, "hub-to-legacy", rid("legacy-rg", vnet_kind, "legacy-vnet"), "Disconnected",
                        ["172.20.0.0/16"])],
            "enableDdosProtection": False}),
        resource(spoke, vnet_kind, "spoke-vnet", {
            "resourceGuid": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
            "addressSpace": {"addressPrefixes": ["10.1.0.0/16", "fd00:1::/48"]}, "flowTimeoutInMinutes": None,
            "dhcpOptions": {"dnsServers": []},
            "subnets": [subnet(spoke_id, "web", ["10.1.1.0/24", "fd00:1:0:1::/64"],
                               nsg_ref=nsg_ref["nsg-web-subnet"], route_table=route_table,
                               users=[f"{web1}/ipConfigurations/ipconfig1", f"{web2}/ipConfigurations/ipconfig1"]),
                        subnet(spoke_id, "app", ["10.1.2.0/24"], nsg_ref=nsg_ref["nsg-app-subnet"],
                               users=[f"{app1}/ipConfigurations/ipconfig1"])],
            "virtualNetworkPeerings": [
                peering(spoke_id, "spoke-to-hub", hub_id, "Connected", ["10.0.0.0/16"])],
            "enableDdosProtection": False}),
        resource(spoke, f"{N}/routeTables", "spoke-rt", {
            "disableBgpRoutePropagation": False,
            "routes": [sub_object(route_table["id"], "routes", "to-onprem", f"{N}/routeTables/routes", {
                "addressPrefix": "192.168.0.0/16", "nextHopType": "VirtualNetworkGateway",
                "hasBgpOverride": False})],
            "subnets": [web_subnet]}),
        nic(hub, "jump-nic", [ip_configuration(jump, "ipconfig1", "10.0.1.4", shared_subnet, primary=True,
                                               public=ref(hub, f"{N}/publicIPAddresses", "jump-pip"))],
            nsg_ref=nsg_ref["nsg-jump"], vm="jump-vm"),
        nic(spoke, "web1-nic", [
            ip_configuration(web1, "ipconfig1", "10.1.1.4", web_subnet, primary=True, asgs=[asg_web],
                             pools=[web_pool], nat_rules=[ssh_web1]),
            ip_configuration(web1, "ipconfig-v6", "fd00:1:0:1::4", web_subnet, primary=False, asgs=[asg_web])],
            vm="web1-vm"),
        nic(spoke, "web2-nic", [
            ip_configuration(web2, "ipconfig1", "10.1.1.5", web_subnet, primary=True, asgs=[asg_web],
                             pools=[web_pool]),
            ip_configuration(web2, "ipconfig2", "10.1.1.6", web_subnet, primary=False, asgs=[asg_web])],
            vm="web2-vm"),
        nic(spoke, "app1-nic", [ip_configuration(app1, "ipconfig1", "10.1.2.4", app_subnet, primary=True,
                                                 asgs=[asg_app], pools=[app_pool])],
            nsg_ref=nsg_ref["nsg-app-nic"], vm="app1-vm"),
        public_ip(hub, "jump-pip", "20.50.1.10", f"{jump}/ipConfigurations/ipconfig1"),
        public_ip(spoke, "web-lb-pip", "20.50.2.100", f"{lb_id}/frontendIPConfigurations/fe-public"),
        public_ip(spoke, "spare-pip", None, None),
        resource(spoke, f"{N}/applicationSecurityGroups", "asg-web", {
            "resourceGuid": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"}),
        resource(spoke, f"{N}/applicationSecurityGroups", "asg-app", {
            "resourceGuid": "6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0"}),
        nsg(hub, "nsg-shared-subnet", [
            ("AllowSshFromOffice", 100, "Inbound", "Allow", "Tcp", {"source": office, "ports": "22"})],
            attached={"subnets": [shared_subnet]}),
        nsg(hub, "nsg-jump", [
            ("AllowSshFromOffice", 100, "Inbound", "Allow", "Tcp", {"source": office, "ports": "22"})],
            flush=True, attached={"networkInterfaces": [{"id": jump}]}),
        nsg(spoke, "nsg-web-subnet", [
            ("AllowHttpToWeb", 100, "Inbound", "Allow", "Tcp", {"source": "Internet", "destination": asg_web,
                                                                "ports": "8080"}),
            ("AllowSshFromOffice", 110, "Inbound", "Allow", "Tcp", {"source": office, "ports": "22"}),
            ("AllowSshFromHub", 120, "Inbound", "Allow", "Tcp", {"source": "10.0.1.0/24", "ports": "22"})],
            attached={"subnets": [web_subnet]}),
        nsg(spoke, "nsg-app-subnet", [
            ("AllowWebToApp", 100, "Inbound", "Allow", "Tcp", {"source": asg_web, "destination": asg_app,
                                                               "ports": ["8443", "9000"]}),
            ("DenyVnetToApp", 4000, "Inbound", "Deny", "*", {"source": "VirtualNetwork"})],
            attached={"subnets": [app_subnet]}),
        nsg(spoke, "nsg-app-nic", [
            ("DenyDebugPort", 100, "Inbound", "Deny", "Tcp", {"ports": "9000"}),
            ("AllowAppFromVnet", 110, "Inbound", "Allow", "Tcp", {"source": "VirtualNetwork", "ports": "8443"})],
            attached={"networkInterfaces": [{"id": app1}]}),
        resource(spoke, f"{N}/loadBalancers", "web-lb", {
            "resourceGuid": "7a8b9c0d-1e2f-4a3b-c4d5-e6f7a8b9c0d1",
            "frontendIPConfigurations": [sub_object(lb_id, "frontendIPConfigurations", "fe-public",
                                                    f"{N}/loadBalancers/frontendIPConfigurations", {
                "privateIPAllocationMethod": "Dynamic",
                "publicIPAddress": ref(spoke, f"{N}/publicIPAddresses", "web-lb-pip"),
                "loadBalancingRules": [{"id": f"{lb_id}/loadBalancingRules/http"}],
                "inboundNatRules": [ssh_web1], "outboundRules": [{"id": f"{lb_id}/outboundRules/outbound"}]})],
            "backendAddressPools": [sub_object(lb_id, "backendAddressPools", "web-pool",
                                               f"{N}/loadBalancers/backendAddressPools", {
                "backendIPConfigurations": [{"id": f"{web1}/ipConfigurations/ipconfig1"},
                                            {"id": f"{web2}/ipConfigurations/ipconfig1"}],
                "loadBalancerBackendAddresses": [],
                "loadBalancingRules": [{"id": f"{lb_id}/loadBalancingRules/http"}],
                "outboundRules": [{"id": f"{lb_id}/outboundRules/outbound"}]})],
            "loadBalancingRules": [sub_object(lb_id, "loadBalancingRules", "http",
                                              f"{N}/loadBalancers/loadBalancingRules", {
                "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/fe-public"},
                "backendAddressPool": web_pool, "backendAddressPools": [web_pool],
                "frontendPort": 80, "backendPort": 8080, "enableFloatingIP": False, "idleTimeoutInMinutes": 4,
                "protocol": "Tcp", "enableDestinationServiceEndpoint": False, "enableTcpReset": True,
                "allowBackendPortConflict": False, "loadDistribution": "Default", "disableOutboundSnat": True,
                "probe": {"id": f"{lb_id}/probes/http-probe"}})],
            "probes": [sub_object(lb_id, "probes", "http-probe", f"{N}/loadBalancers/probes", {
                "protocol": "Http", "port": 8080, "requestPath": "/health", "intervalInSeconds": 5,
                "numberOfProbes": 1, "probeThreshold": 1,
                "loadBalancingRules": [{"id": f"{lb_id}/loadBalancingRules/http"}]})],
            "inboundNatRules": [sub_object(lb_id, "inboundNatRules", "ssh-web1", f"{N}/loadBalancers/inboundNatRules", {
                "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/fe-public"},
                "frontendPort": 50001, "backendPort": 22, "enableFloatingIP": False, "idleTimeoutInMinutes": 4,
                "protocol": "Tcp", "enableDestinationServiceEndpoint": False, "enableTcpReset": False,
                "allowBackendPortConflict": False,
                "backendIPConfiguration": {"id": f"{web1}/ipConfigurations/ipconfig1"}})],
            "outboundRules": [sub_object(lb_id, "outboundRules", "outbound", f"{N}/loadBalancers/outboundRules", {
                "allocatedOutboundPorts": 10000, "protocol": "All", "enableTcpReset": True,
                "idleTimeoutInMinutes": 4, "backendAddressPool": web_pool,
                "frontendIPConfigurations": [{"id": f"{lb_id}/frontendIPConfigurations/fe-public"}]})],
            "inboundNatPools": []}, sku={"name": "Standard", "tier": "Regional"}),
        resource(spoke, f"{N}/loadBalancers", "app-ilb", {
            "resourceGuid": "8b9c0d1e-2f3a-4b4c-d5e6-f7a8b9c0d1e2",
            "frontendIPConfigurations": [sub_object(ilb_id, "frontendIPConfigurations", "fe-private",
                                                    f"{N}/loadBalancers/frontendIPConfigurations", {
                "privateIPAddress": "10.1.2.100", "privateIPAllocationMethod": "Static",
                "privateIPAddressVersion": "IPv4", "subnet": app_subnet,
                "loadBalancingRules": [{"id": f"{ilb_id}/loadBalancingRules/ha-ports"}]})],
            "backendAddressPools": [sub_object(ilb_id, "backendAddressPools", "app-pool",
                                               f"{N}/loadBalancers/backendAddressPools", {
                "backendIPConfigurations": [{"id": f"{app1}/ipConfigurations/ipconfig1"}],
                "loadBalancerBackendAddresses": []})],
            "loadBalancingRules": [sub_object(ilb_id, "loadBalancingRules", "ha-ports",
                                              f"{N}/loadBalancers/loadBalancingRules", {
                "frontendIPConfiguration": {"id": f"{ilb_id}/frontendIPConfigurations/fe-private"},
                "backendAddressPool": app_pool, "backendAddressPools": [app_pool],
                "frontendPort": 0, "backendPort": 0, "enableFloatingIP": False, "idleTimeoutInMinutes": 4,
                "protocol": "All", "enableTcpReset": False, "loadDistribution": "Default",
                "disableOutboundSnat": False})],
            "probes": [], "inboundNatRules": [], "outboundRules": [], "inboundNatPools": []},
            sku={"name": "Standard", "tier": "Regional"}),
        resource(spoke, "Microsoft.Compute/virtualMachines", "web1-vm", {
            "vmId": "0f9e8d7c-6b5a-4f3e-2d1c-0b9a8f7e6d5c", "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
            "networkProfile": {"networkInterfaces": [{"id": web1, "properties": {"primary": True}}]},
            "storageProfile": {"osDisk": {"osType": "Linux", "name": "web1-osdisk", "createOption": "FromImage",
                                          "managedDisk": {"id": rid(spoke, "Microsoft.Compute/disks", "web1-osdisk")}},
                               "dataDisks": []}}, zones=["1"]),
        resource(spoke, "Microsoft.Compute/disks", "web1-osdisk", {
            "osType": "Linux", "diskSizeGB": 30, "diskState": "Attached", "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
            "creationData": {"createOption": "FromImage"}}, sku={"name": "Premium_LRS", "tier": "Premium"},
            managedBy=rid(spoke, "Microsoft.Compute/virtualMachines", "web1-vm")),
        resource(spoke, "Microsoft.Storage/storageAccounts", "spokediag7f3a", {
            "accessTier": "Hot", "allowBlobPublicAccess": False, "minimumTlsVersion": "TLS1_2",
            "networkAcls": {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [],
                            "virtualNetworkRules": []},
            "primaryEndpoints": {"blob": "https://spokediag7f3a.blob.core.windows.net/"}},
            sku={"name": "Standard_LRS", "tier": "Standard"}, kind="StorageV2"),
    ]
    for res in resources:  # `etag` is not a property of the resource types that have none
        if res["type"].startswith("Microsoft.Compute") or res["type"].startswith("Microsoft.Storage"):
            res.pop("etag")
    return resources


# -- the shapes -------------------------------------------------------------------------------------

def group_of(resource_id: str) -> str:
    return resource_id.split("/")[4]


def az(value, group: str | None = None):
    """az CLI output: `properties` merged into the object at every level, `resourceGroup` beside ids."""
    if isinstance(value, list):
        return [az(v, group) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key == "properties" and isinstance(item, dict):
            out.update(az(item, group))
        else:
            out[key] = az(item, group)
    if "id" in out and "type" in out and isinstance(out["id"], str):
        out["resourceGroup"] = group_of(out["id"])
    return dict(sorted(out.items()))


AZ_COMMANDS = {
    f"{N}/virtualNetworks": "az-network-vnet-list.json", f"{N}/networkInterfaces": "az-network-nic-list.json",
    f"{N}/networkSecurityGroups": "az-network-nsg-list.json", f"{N}/loadBalancers": "az-network-lb-list.json",
    f"{N}/publicIPAddresses": "az-network-public-ip-list.json",
    f"{N}/applicationSecurityGroups": "az-network-asg-list.json", f"{N}/routeTables": "az-network-route-table-list.json",
    "Microsoft.Compute/virtualMachines": "az-vm-list.json", "Microsoft.Compute/disks": "az-disk-list.json",
    "Microsoft.Storage/storageAccounts": "az-storage-account-list.json",
}
REST_FILES = {kind: name.replace("az-", "rest-") for kind, name in AZ_COMMANDS.items()}


def resource_graph(resources: list[dict]) -> dict:
    rows = []
    for res in resources:
        rows.append({"id": res["id"], "name": res["name"], "type": res["type"].lower(), "tenantId": TENANT,
                     "kind": res.get("kind", ""), "location": LOCATION,
                     "resourceGroup": group_of(res["id"]).lower(), "subscriptionId": SUB,
                     "managedBy": res.get("managedBy", ""), "sku": res.get("sku"), "plan": None, "properties":
                     res["properties"], "tags": None, "identity": None, "zones": res.get("zones"),
                     "extendedLocation": None})
    return {"count": len(rows), "data": rows, "skip_token": None, "total_records": len(rows)}


READ_ONLY = {"provisioningState", "resourceGuid", "etag", "macAddress", "virtualMachine", "hostedWorkloads",
             "tapConfigurations", "vnetEncryptionSupported", "defaultSecurityRules", "networkInterfaces",
             "ipConfiguration", "backendIPConfigurations", "backendIPConfiguration", "peeringSyncLevel",
             "remoteVirtualNetworkAddressSpace"}
BACK_REFERENCES = {  # read-only lists of what refers to a sub-object, by the list holding the sub-object
    "subnets": ("ipConfigurations",), "frontendIPConfigurations": ("loadBalancingRules", "inboundNatRules",
                                                                   "outboundRules"),
    "backendAddressPools": ("loadBalancingRules", "outboundRules"), "probes": ("loadBalancingRules",)}
CHILDREN = {  # child resources `az group export` also writes at top level
    f"{N}/virtualNetworks": ("subnets", "virtualNetworkPeerings"), f"{N}/networkSecurityGroups": ("securityRules",),
    f"{N}/loadBalancers": ("backendAddressPools", "inboundNatRules"), f"{N}/routeTables": ("routes",)}
NOT_RESOURCES = {"ipConfigurations", "frontendIPConfigurations"}
API_VERSIONS = {"Microsoft.Network": "2023-09-01", "Microsoft.Compute": "2023-09-01", "Microsoft.Storage": "2023-01-01"}


def template(resources: list[dict], group: str) -> dict:
    """`az group export` of one resource group."""
    parameters: dict[str, dict] = {}

    def parameter(kind: str, name: str, suffix: str, value: str) -> str:
        pname = re.sub(r"[^A-Za-z0-9_]", "_", f"{kind.split('/')[-1]}_{name}_{suffix}")
        parameters.setdefault(pname, {"defaultValue": value, "type": "String"})
        return pname

    def expression(resource_id: str) -> str:
        parts = resource_id.split("/")
        provider, types, names = parts[6], parts[7::2], parts[8::2]
        if group_of(resource_id) != group:
            pname = parameter(f"{provider}/{types[0]}", names[0], "externalid", "/".join(parts[:9]))
            rest = "/".join(parts[9:])
            return f"[concat(parameters('{pname}'), '/{rest}')]" if rest else f"[parameters('{pname}')]"
        pname = parameter(f"{provider}/{types[0]}", names[0], "name", names[0])
        depth = next((i for i, t in enumerate(types) if t in NOT_RESOURCES), len(types))
        args = ", ".join([f"parameters('{pname}')"] + [f"'{n}'" for n in names[1:depth]])
        base = f"resourceId('{'/'.join([provider] + types[:depth])}', {args})"
        tail = "".join(f"/{t}/{n}" for t, n in zip(types[depth:], names[depth:]))
        return f"[concat({base}, '{tail}')]" if tail else f"[{base}]"

    def exported_value(value, holder: str = ""):
        if isinstance(value, list):
            return [exported_value(v, holder) for v in value]
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            if key in READ_ONLY or (holder and key in BACK_REFERENCES.get(holder, ())):
                continue
            if key == "id" and isinstance(item, str) and item.startswith("/subscriptions/"):
                out[key] = expression(item)
            elif key == "properties":
                out[key] = exported_value(item, holder)
            else:
                out[key] = exported_value(item, key if key in BACK_REFERENCES else "")
        return out

    exported = []
    for res in resources:
        if group_of(res["id"]) != group:
            continue
        kind = res["type"]
        pname = parameter(kind, res["name"], "name", res["name"])
        top = {"type": kind, "apiVersion": API_VERSIONS[kind.split("/")[0]], "name": f"[parameters('{pname}')]",
               "location": LOCATION}
        top.update((key, res[key]) for key in ("sku", "kind", "zones") if res.get(key))
        props = exported_value(res["properties"])
        if kind in (f"{N}/networkSecurityGroups", f"{N}/routeTables"):
            props.pop("subnets", None)
        top["properties"] = props
        exported.append(top)
        for collection in CHILDREN.get(kind, ()):
            for child in props.get(collection, []):
                exported.append({"type": f"{kind}/{collection}", "apiVersion": top["apiVersion"],
                                 "name": f"[concat(parameters('{pname}'), '/{child['name']}')]",
                                 "dependsOn": [f"[resourceId('{kind}', parameters('{pname}'))]"],
                                 "properties": copy.deepcopy(child["properties"])})
    return {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0", "parameters": dict(sorted(parameters.items())), "variables": {},
            "resources": exported}


def write_all(root: Path = HERE) -> dict[Path, str]:
    """Every fixture file and its text."""
    resources = environment()
    files: dict[Path, str] = {}

    def put(path: Path, doc) -> None:
        files[path] = json.dumps(doc, indent=2) + "\n"

    for kind, name in AZ_COMMANDS.items():
        put(root / "az" / name, [az(r) for r in resources if r["type"] == kind])
        put(root / "rest" / REST_FILES[kind], {"value": [r for r in resources if r["type"] == kind], "nextLink": None})
    put(root / "graph" / "az-graph-query.json", resource_graph(resources))
    for group in ("hub-rg", "spoke-rg"):
        put(root / "template" / f"{group}.json", template(resources, group))
    return files


if __name__ == "__main__":
    for path, text in write_all().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(HERE.parents[2]))
