"""`dataplane import` of a large environment: 5,000 NICs and 500 NSGs in az CLI's shape, every NIC in
one load balancer's pool, must import in under 10 s; loading the imported scenario is measured beside it."""

from __future__ import annotations

import pytest

from dataplane.importer import import_environment
from dataplane.topology import scenario_from_document

from figures import FIGURES

NICS, NSGS, RULES_PER_NSG, SUBNETS = 5_000, 500, 20, 50
GOAL_SECONDS = 10.0
SUB = "/subscriptions/6f1c9a52-3b7e-4d2a-9c1f-2e8b5d4a7c30/resourceGroups/big-rg/providers/Microsoft.Network"


def nsg(i: int) -> dict:
    rules = [{"name": f"rule{j}", "id": f"{SUB}/networkSecurityGroups/nsg{i}/securityRules/rule{j}",
              "etag": 'W/"1"', "type": "Microsoft.Network/networkSecurityGroups/securityRules",
              "resourceGroup": "big-rg", "provisioningState": "Succeeded", "priority": 100 + j,
              "direction": "Inbound" if j % 2 else "Outbound", "access": "Allow" if j % 3 else "Deny",
              "protocol": "Tcp", "sourceAddressPrefix": f"10.{j}.0.0/16", "sourceAddressPrefixes": [],
              "sourcePortRange": "*", "sourcePortRanges": [], "destinationAddressPrefix": "*",
              "destinationAddressPrefixes": [], "destinationPortRange": str(1000 + j), "destinationPortRanges": []}
             for j in range(RULES_PER_NSG)]
    return {"name": f"nsg{i}", "id": f"{SUB}/networkSecurityGroups/nsg{i}", "etag": 'W/"1"',
            "type": "Microsoft.Network/networkSecurityGroups", "location": "westeurope", "resourceGroup": "big-rg",
            "provisioningState": "Succeeded", "flushConnection": False, "securityRules": rules,
            "defaultSecurityRules": []}


def nic(i: int) -> dict:
    subnet = i % SUBNETS
    address = f"10.{subnet}.{i // SUBNETS // 250}.{4 + i // SUBNETS % 250}"
    nid = f"{SUB}/networkInterfaces/nic{i}"
    return {"name": f"nic{i}", "id": nid, "etag": 'W/"1"', "type": "Microsoft.Network/networkInterfaces",
            "location": "westeurope", "resourceGroup": "big-rg", "provisioningState": "Succeeded",
            "networkSecurityGroup": {"id": f"{SUB}/networkSecurityGroups/nsg{i % NSGS}", "resourceGroup": "big-rg"},
            "ipConfigurations": [{
                "name": "ipconfig1", "id": f"{nid}/ipConfigurations/ipconfig1", "etag": 'W/"1"',
                "type": "Microsoft.Network/networkInterfaces/ipConfigurations", "resourceGroup": "big-rg",
                "primary": True, "privateIPAddress": address, "privateIPAllocationMethod": "Dynamic",
                "privateIPAddressVersion": "IPv4", "provisioningState": "Succeeded", "publicIPAddress": None,
                "loadBalancerBackendAddressPools": [{"id": f"{SUB}/loadBalancers/big-ilb/backendAddressPools/all",
                                                     "resourceGroup": "big-rg"}],
                "subnet": {"id": f"{SUB}/virtualNetworks/big-vnet/subnets/s{subnet}", "resourceGroup": "big-rg"}}]}


def environment() -> list[tuple[str, object]]:
    vnet = {"name": "big-vnet", "id": f"{SUB}/virtualNetworks/big-vnet", "type": "Microsoft.Network/virtualNetworks",
            "resourceGroup": "big-rg", "addressSpace": {"addressPrefixes": ["10.0.0.0/8"]},
            "virtualNetworkPeerings": [], "subnets": [
                {"name": f"s{s}", "id": f"{SUB}/virtualNetworks/big-vnet/subnets/s{s}", "addressPrefix": f"10.{s}.0.0/16",
                 "networkSecurityGroup": {"id": f"{SUB}/networkSecurityGroups/nsg{s}"}} for s in range(SUBNETS)]}
    lb = f"{SUB}/loadBalancers/big-ilb"
    ilb = {"name": "big-ilb", "id": lb, "type": "Microsoft.Network/loadBalancers", "resourceGroup": "big-rg",
           "frontendIPConfigurations": [{"name": "fe", "id": f"{lb}/frontendIPConfigurations/fe",
                                         "privateIPAddress": "10.255.0.100", "subnet": None}],
           "backendAddressPools": [{"name": "all", "id": f"{lb}/backendAddressPools/all"}],
           "loadBalancingRules": [{"name": "https", "id": f"{lb}/loadBalancingRules/https", "protocol": "Tcp",
                                   "frontendPort": 443, "backendPort": 8443,
                                   "frontendIPConfiguration": {"id": f"{lb}/frontendIPConfigurations/fe"},
                                   "backendAddressPool": {"id": f"{lb}/backendAddressPools/all"}}],
           "inboundNatRules": [], "outboundRules": []}
    return [("vnets.json", [vnet]), ("nsgs.json", [nsg(i) for i in range(NSGS)]),
            ("nics.json", [nic(i) for i in range(NICS)]), ("lbs.json", [ilb])]


@pytest.fixture(scope="module")
def documents() -> list[tuple[str, object]]:
    return environment()


def test_import_of_5000_nics_and_500_nsgs(benchmark, documents):
    result = benchmark.pedantic(import_environment, args=(documents,), rounds=3, iterations=1)
    assert len(result.scenario["network_interfaces"]) == NICS
    assert len(result.scenario["load_balancers"][0]["rules"][0]["backend_pool"]) == NICS
    seconds = benchmark.stats.stats.mean
    FIGURES[f"import {NICS:,} NICs + {NSGS} NSGs (az list shape)"] = f"{seconds:.2f} s (goal < {GOAL_SECONDS:.0f} s)"
    assert seconds < GOAL_SECONDS


def test_loading_the_imported_scenario(benchmark, documents):
    doc = import_environment(documents).scenario
    scenario = benchmark.pedantic(scenario_from_document, args=(doc,), rounds=3, iterations=1)
    assert len(scenario.network_interfaces) == NICS
    FIGURES[f"load the imported scenario ({NICS:,} NICs, {NSGS * RULES_PER_NSG:,} rules)"] = \
        f"{benchmark.stats.stats.mean:.2f} s"
