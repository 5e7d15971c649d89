"""`dataplane import` (issue 15): one Azure environment in four shapes gives one scenario, and that
scenario decides flows as Azure would; and the scenario keys the import needed (IP configurations,
inbound NAT rules, private frontends, HA-ports rules, UDR prefixes)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dataplane import Dataplane
from dataplane.cli import main
from dataplane.documents import read_document
from dataplane.errors import DataplaneError, ScenarioError, ValidationErrors
from dataplane.importer import import_environment
from dataplane.flows import key_to_flow
from dataplane.topology import scenario_from_document

from make_import_fixtures import HERE, SUB, environment, write_all

def files(shape: str) -> list[Path]:
    return sorted((HERE / shape).glob("*.json"))


def imported(shape: str, **kwargs):
    return import_environment(((str(f), read_document(f)) for f in files(shape)), **kwargs)


def without_subscription(value):
    """Ids cut to their `/providers/...` part: an exported template does not know its subscription or group."""
    if isinstance(value, dict):
        return {k: without_subscription(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_subscription(v) for v in value]
    if isinstance(value, str) and value.startswith("/subscriptions/"):
        return value[value.index("/providers/"):]
    return value


@pytest.fixture(scope="module")
def az_scenario() -> dict:
    return imported("az").scenario


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory, az_scenario) -> Path:
    path = tmp_path_factory.mktemp("import") / "scenario.yaml"
    assert main(["import", *map(str, files("az")), "-o", str(path)]) == 0
    return path


def nic(scenario: dict, name: str) -> dict:
    return next(n for n in scenario["network_interfaces"] if n["name"] == name)


def load_balancer(scenario: dict, name: str) -> dict:
    return next(lb for lb in scenario["load_balancers"] if lb["name"] == name)


# -- the fixtures and the four shapes -----------------------------------------------------------------

def test_the_fixtures_on_disk_are_what_the_generator_writes() -> None:
    for path, text in write_all().items():
        assert path.read_text(encoding="utf-8") == text, f"{path}: run python tests/make_import_fixtures.py"


@pytest.mark.parametrize("shape", ["rest", "graph"])
def test_rest_and_resource_graph_import_to_the_same_scenario_as_az_lists(shape, az_scenario) -> None:
    assert imported(shape).scenario == az_scenario


def test_exported_templates_import_to_the_same_scenario_but_for_the_subscription_in_ids(az_scenario) -> None:
    assert without_subscription(imported("template").scenario) == without_subscription(az_scenario)


def test_resource_graph_writes_types_in_lower_case() -> None:
    rows = read_document(HERE / "graph" / "az-graph-query.json")["data"]
    assert {row["type"] for row in rows} >= {"microsoft.network/virtualnetworks", "microsoft.network/loadbalancers"}


def test_a_single_resource_as_az_show_prints_it_is_read() -> None:
    [vnet] = [r for r in read_document(HERE / "az" / "az-network-vnet-list.json") if r["name"] == "hub-vnet"]
    [nsg] = [r for r in read_document(HERE / "az" / "az-network-nsg-list.json") if r["name"] == "nsg-shared-subnet"]
    scenario = import_environment([("vnet.json", vnet), ("nsg.json", nsg)], allow_missing=True).scenario
    assert [v["name"] for v in scenario["virtual_networks"]] == ["hub-vnet"]


def test_ids_are_joined_whatever_their_case(az_scenario) -> None:
    nics = copy.deepcopy(read_document(HERE / "az" / "az-network-nic-list.json"))
    for n in nics:
        for config in n["ipConfigurations"]:
            config["subnet"]["id"] = config["subnet"]["id"].upper()
    docs = [(str(f), read_document(f)) for f in files("az") if f.name != "az-network-nic-list.json"]
    assert import_environment(docs + [("nics.json", nics)]).scenario == az_scenario


def test_other_resource_types_are_counted_and_ignored() -> None:
    assert imported("az").ignored == {"microsoft.compute/disks": 1, "microsoft.compute/virtualmachines": 1,
                                      "microsoft.storage/storageaccounts": 1}


def test_azure_ids_are_kept_beside_the_names(az_scenario) -> None:
    assert nic(az_scenario, "jump-nic")["azure_id"] == \
        f"/subscriptions/{SUB}/resourceGroups/hub-rg/providers/Microsoft.Network/networkInterfaces/jump-nic"


# -- what is mapped -----------------------------------------------------------------------------------

def test_only_connected_peerings_are_kept(az_scenario) -> None:
    hub = az_scenario["virtual_networks"][0]
    assert (hub["name"], hub["peerings"]) == ("hub-vnet", ["spoke-vnet"])
    assert "hub-to-legacy is Disconnected" in " ".join(imported("az").warnings)


def test_flow_timeout_is_kept(az_scenario) -> None:
    assert [v.get("flow_timeout_minutes") for v in az_scenario["virtual_networks"]] == [10, None]


def test_every_ip_configuration_is_kept_secondary_and_ipv6_included(az_scenario) -> None:
    assert nic(az_scenario, "web1-nic")["ip_configurations"] == [
        {"name": "ipconfig1", "private_ip": "10.1.1.4"}, {"name": "ipconfig-v6", "private_ip": "fd00:1:0:1::4"}]
    assert [c["private_ip"] for c in nic(az_scenario, "web2-nic")["ip_configurations"]] == ["10.1.1.5", "10.1.1.6"]


def test_a_public_ip_without_an_address_is_left_out_with_a_warning() -> None:
    pips = [{**p, "ipAddress": None} if p["name"] == "jump-pip" else p
            for p in read_document(HERE / "az" / "az-network-public-ip-list.json")]
    docs = [(str(f), read_document(f)) for f in files("az") if "public-ip" not in f.name]
    result = import_environment(docs + [("pips.json", pips)])
    assert "public_ip" not in nic(result.scenario, "jump-nic")
    assert any("jump-pip has no address" in w for w in result.warnings)


def test_a_public_ip_whose_address_is_not_a_string_is_named() -> None:
    pips = [{**p, "ipAddress": ["20.0.0.1"]} if p["name"] == "jump-pip" else p
            for p in read_document(HERE / "az" / "az-network-public-ip-list.json")]
    docs = [(str(f), read_document(f)) for f in files("az") if "public-ip" not in f.name]
    with pytest.raises(DataplaneError, match=r"public IP jump-pip: ipAddress \['20.0.0.1'\] is not an address"):
        import_environment(docs + [("pips.json", pips)])


def test_load_balancer_rules_nat_rules_and_outbound_rules_are_mapped(az_scenario) -> None:
    lb = load_balancer(az_scenario, "web-lb")
    assert lb["frontend_ip"] == "20.50.2.100"
    assert lb["rules"] == [{"name": "http", "protocol": "Tcp", "frontend_port": 80, "backend_port": 8080,
                            "backend_pool": ["web1-nic", "web2-nic"]}]
    assert lb["inbound_nat_rules"] == [{"name": "ssh-web1", "protocol": "Tcp", "frontend_port": 50001,
                                        "backend_port": 22, "network_interface": "web1-nic"}]
    assert lb["outbound_pool"] == ["web1-nic", "web2-nic"]


def test_an_internal_load_balancer_keeps_its_private_frontend_and_snats_nothing(az_scenario) -> None:
    ilb = load_balancer(az_scenario, "app-ilb")
    assert (ilb["frontend_ip"], ilb["rules"][0]["protocol"], ilb["outbound_pool"]) == ("10.1.2.100", "All", [])


def test_nsgs_keep_custom_rules_and_flush_connection_and_leave_default_rules_to_the_scenario(az_scenario) -> None:
    jump = next(n for n in az_scenario["network_security_groups"] if n["name"] == "nsg-jump")
    assert jump["flush_connection"] is True
    assert [r["name"] for r in jump["security_rules"]] == ["AllowSshFromOffice"]


def test_udr_prefixes_of_a_subnets_route_table_join_its_vnet(az_scenario) -> None:
    assert az_scenario["virtual_networks"][1]["udr_prefixes"] == ["192.168.0.0/16"]


def test_a_default_route_to_a_virtual_network_gateway_means_forced_tunnelling() -> None:
    tables = copy.deepcopy(read_document(HERE / "az" / "az-network-route-table-list.json"))
    tables[0]["routes"][0].update(addressPrefix="0.0.0.0/0", nextHopType="VirtualNetworkGateway")
    docs = [(str(f), read_document(f)) for f in files("az") if "route-table" not in f.name]
    result = import_environment(docs + [("routes.json", tables)]).scenario
    assert result["forced_tunneling"] is True
    assert "udr_prefixes" not in result["virtual_networks"][1]


def test_two_resources_of_one_kind_with_one_name_are_named_by_group() -> None:
    nsgs = read_document(HERE / "az" / "az-network-nsg-list.json")
    twin = copy.deepcopy(next(n for n in nsgs if n["name"] == "nsg-jump"))
    twin["id"] = twin["id"].replace("hub-rg", "dmz-rg")
    docs = [(str(f), read_document(f)) for f in files("az")] + [("dmz.json", [twin])]
    scenario = import_environment(docs).scenario
    assert nic(scenario, "jump-nic")["nsg"] == "hub-rg/nsg-jump"
    assert {"hub-rg/nsg-jump", "dmz-rg/nsg-jump"} <= {n["name"] for n in scenario["network_security_groups"]}
    scenario_from_document(scenario)


# -- references to resources that are not among the inputs -------------------------------------------

def test_missing_references_are_one_error_listing_each_id_and_who_refers_to_it() -> None:
    docs = [(str(f), read_document(f)) for f in files("az") if "vnet" not in f.name and "public-ip" not in f.name]
    with pytest.raises(ScenarioError) as caught:
        import_environment(docs)
    message = str(caught.value)
    assert message.startswith("5 referenced resources are not among the inputs")
    assert "/virtualNetworks/spoke-vnet/subnets/web: referred to by network interface web1-nic (ipconfig1), " \
           "network interface web1-nic (ipconfig-v6), network interface web2-nic (ipconfig1)" in message
    assert "/publicIPAddresses/web-lb-pip: referred to by load balancer web-lb frontend fe-public" in message


def test_allow_missing_drops_what_needs_a_missing_resource_with_a_warning() -> None:
    docs = [(str(f), read_document(f)) for f in files("az") if "public-ip" not in f.name]
    result = import_environment(docs, allow_missing=True)
    assert "public_ip" not in nic(result.scenario, "jump-nic")
    assert [lb["name"] for lb in result.scenario["load_balancers"]] == ["app-ilb"]
    assert any(w.startswith("dropped: ") and "jump-pip" in w for w in result.warnings)
    scenario_from_document(result.scenario)


def test_a_template_value_known_only_at_deployment_is_an_error_naming_it() -> None:
    template = copy.deepcopy(read_document(HERE / "template" / "hub-rg.json"))
    template["resources"][0]["name"] = "[reference('x').name]"
    with pytest.raises(DataplaneError, match=r"reference\('x'\)"):
        import_environment([("hub-rg.json", template)])


# -- the command --------------------------------------------------------------------------------------

def test_the_imported_scenario_lints_clean(scenario_file, capsys) -> None:
    assert main(["lint", str(scenario_file)]) == 0
    assert capsys.readouterr().out == ""


def test_import_prints_yaml_to_stdout_without_output_and_a_summary_to_stderr(capsys, az_scenario) -> None:
    assert main(["import", *map(str, files("az"))]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out) == az_scenario
    assert "imported: virtual networks 2, network interfaces 4" in err
    assert "ignored: microsoft.compute/disks 1" in err


def test_import_writes_json_for_a_json_output(tmp_path, az_scenario) -> None:
    out = tmp_path / "scenario.json"
    assert main(["import", *map(str, files("az")), "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == az_scenario


def test_a_file_that_is_not_azure_json_exits_2_naming_it(tmp_path, capsys) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": "world"}')
    assert main(["import", str(bad)]) == 2
    assert f"error: {bad}: an object without type and id is not an Azure resource" in capsys.readouterr().err


def test_missing_references_exit_2(capsys) -> None:
    assert main(["import", str(HERE / "az" / "az-network-nic-list.json")]) == 2
    assert "referenced resources are not among the inputs" in capsys.readouterr().err


# -- Azure's decisions across the imported environment -------------------------------------------------

FLOWS = [
    # through the load-balancing rule: DNAT to a backend, decided on the subnet NSG's ASG rule
    ("tcp 203.0.113.7:51000 > 20.50.2.100:80", "Allow", "nsg-web-subnet", "AllowHttpToWeb",
     "tcp 203.0.113.7:51000 > 10.1.1.4:8080"),
    ("tcp 203.0.113.7:51000 > 20.50.2.100:443", "Deny", None, None, "tcp 203.0.113.7:51000 > 20.50.2.100:443"),
    # through the inbound NAT rule to web1's port 22
    ("tcp 198.51.100.20:50000 > 20.50.2.100:50001", "Allow", "nsg-web-subnet", "AllowSshFromOffice",
     "tcp 198.51.100.20:50000 > 10.1.1.4:22"),
    ("tcp 203.0.113.7:50000 > 20.50.2.100:50001", "Deny", "nsg-web-subnet", "DenyAllInBound",
     "tcp 203.0.113.7:50000 > 10.1.1.4:22"),
    # across the peering: the hub's space is VirtualNetwork in the spoke
    ("tcp 10.0.1.4:40000 > 10.1.1.4:22", "Allow", "nsg-web-subnet", "AllowSshFromHub", "tcp 10.0.1.4:40000 > 10.1.1.4:22"),
    ("tcp 10.0.1.4:40001 > 10.1.1.5:8080", "Allow", "nsg-web-subnet", "AllowVnetInBound",
     "tcp 10.0.1.4:40001 > 10.1.1.5:8080"),
    # to a secondary IP configuration
    ("tcp 10.0.1.4:40000 > 10.1.1.6:22", "Allow", "nsg-web-subnet", "AllowSshFromHub", "tcp 10.0.1.4:40000 > 10.1.1.6:22"),
    # the ASG rule on the subnet NSG, then the NIC NSG: both NSGs of the path
    ("tcp 10.1.1.4:40000 > 10.1.2.4:8443", "Allow", "nsg-app-nic", "AllowAppFromVnet", "tcp 10.1.1.4:40000 > 10.1.2.4:8443"),
    ("tcp 10.1.1.4:40000 > 10.1.2.4:9000", "Deny", "nsg-app-nic", "DenyDebugPort", "tcp 10.1.1.4:40000 > 10.1.2.4:9000"),
    ("tcp 10.0.1.4:40000 > 10.1.2.4:8443", "Deny", "nsg-app-subnet", "DenyVnetToApp", "tcp 10.0.1.4:40000 > 10.1.2.4:8443"),
    # the internal load balancer's HA-ports rule on its private frontend
    ("tcp 10.1.1.4:40000 > 10.1.2.100:8443", "Allow", "nsg-app-nic", "AllowAppFromVnet",
     "tcp 10.1.1.4:40000 > 10.1.2.4:8443"),
    ("udp 10.1.1.4:5000 > 10.1.2.100:8443", "Deny", "nsg-app-subnet", "DenyVnetToApp", "udp 10.1.1.4:5000 > 10.1.2.4:8443"),
    # the jump box's public IP, through the subnet and NIC NSGs
    ("tcp 198.51.100.20:50000 > 20.50.1.10:22", "Allow", "nsg-jump", "AllowSshFromOffice",
     "tcp 198.51.100.20:50000 > 10.0.1.4:22"),
    ("tcp 203.0.113.7:50000 > 20.50.1.10:22", "Deny", "nsg-shared-subnet", "DenyAllInBound",
     "tcp 203.0.113.7:50000 > 10.0.1.4:22"),
    # out through the load balancer's outbound rule
    ("tcp 10.1.1.4:40000 > 93.184.216.34:443", "Allow", "nsg-web-subnet", "AllowInternetOutBound",
     "tcp 20.50.2.100:40000 > 93.184.216.34:443"),
    # a UDR prefix is VirtualNetwork
    ("tcp 192.168.5.5:50000 > 10.1.1.4:80", "Allow", "nsg-web-subnet", "AllowVnetInBound",
     "tcp 192.168.5.5:50000 > 10.1.1.4:80"),
]


@pytest.fixture(scope="module")
def decisions(scenario_file) -> dict[str, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", "--scenario", str(scenario_file), "--json", *(f[0] for f in FLOWS)]) == 0
    return {d["flow"]: d for d in map(json.loads, out.getvalue().splitlines())}


@pytest.mark.parametrize("flow, decision, nsg, rule, translated", FLOWS, ids=[f[0] for f in FLOWS])
def test_check_gives_azures_decision_across_the_imported_environment(decisions, flow, decision, nsg, rule,
                                                                      translated) -> None:
    got = decisions[flow]
    assert (got["decision"], got["nsg"], got["rule"], got["translated"]) == (decision, nsg, rule, translated)


def test_a_flow_across_both_nsgs_is_evaluated_by_each(decisions) -> None:
    evaluations = decisions["tcp 10.1.1.4:40000 > 10.1.2.4:8443"]["evaluations"]
    assert [(e["nsg"], e["rule"]) for e in evaluations if e["direction"] == "Inbound"] == [
        ("nsg-app-subnet", "AllowWebToApp"), ("nsg-app-nic", "AllowAppFromVnet")]


# -- the scenario keys the import needs ---------------------------------------------------------------

BASE = {"virtual_networks": [{"name": "vnet", "address_space": ["10.0.0.0/16"],
                              "subnets": [{"name": "a", "prefix": "10.0.1.0/24"}, {"name": "b", "prefix": "10.0.2.0/24"}]}],
        "network_interfaces": [{"name": "vm1", "subnet": "vnet/a", "ip_configurations": [
                                   {"name": "ipconfig1", "private_ip": "10.0.1.4", "public_ip": "20.0.0.4"},
                                   {"name": "ipconfig2", "private_ip": "10.0.1.5", "public_ip": "20.0.0.5"}]},
                               {"name": "vm2", "subnet": "vnet/b", "private_ips": ["10.0.2.4"]}]}


def scenario(**changes) -> Dataplane:
    doc = copy.deepcopy(BASE)
    doc.update(changes)
    return Dataplane(scenario_from_document(doc))


def problems(doc: dict) -> list[str]:
    with pytest.raises(ValidationErrors) as caught:
        scenario_from_document(doc, file="net.yaml")
    return [str(p) for p in caught.value.problems]


def test_each_ip_configurations_public_ip_reaches_its_own_private_address() -> None:
    dp = scenario()
    assert str(key_to_flow(dp.check("tcp 203.0.113.1:5000 > 20.0.0.5:22").translated)) == "tcp 203.0.113.1:5000 > 10.0.1.5:22"


def test_each_ip_configuration_leaves_by_its_own_public_ip() -> None:
    dp = scenario()
    assert str(key_to_flow(dp.check("tcp 10.0.1.5:5000 > 203.0.113.1:443").translated)) == "tcp 20.0.0.5:5000 > 203.0.113.1:443"


def test_an_inbound_nat_rule_forwards_a_frontend_port_to_one_nics_address_and_port() -> None:
    dp = scenario(load_balancers=[{"name": "lb", "frontend_ip": "20.0.0.100", "inbound_nat_rules": [
        {"name": "ssh", "protocol": "Tcp", "frontend_port": 50002, "backend_port": 22,
         "network_interface": "vm1", "private_ip": "10.0.1.5"}]}])
    assert str(key_to_flow(dp.check("tcp 203.0.113.1:5000 > 20.0.0.100:50002").translated)) == "tcp 203.0.113.1:5000 > 10.0.1.5:22"


def test_an_ha_ports_rule_forwards_every_protocol_and_port_keeping_the_port() -> None:
    dp = scenario(load_balancers=[{"name": "ilb", "frontend_ip": "10.0.2.100", "outbound_pool": [], "rules": [
        {"protocol": "All", "frontend_port": 0, "backend_port": 0, "backend_pool": ["vm2"]}]}])
    assert str(key_to_flow(dp.check("udp 10.0.1.4:5000 > 10.0.2.100:5353").translated)) == "udp 10.0.1.4:5000 > 10.0.2.4:5353"


def test_a_packet_to_a_private_frontend_is_translated_in_the_stateful_dataplane() -> None:
    dp = scenario(load_balancers=[{"name": "ilb", "frontend_ip": "10.0.2.100", "outbound_pool": [], "rules": [
        {"protocol": "Tcp", "frontend_port": 80, "backend_port": 8080, "backend_pool": ["vm2"]}]}])
    syn = Ether(src="00:0d:3a:00:00:01", dst="00:0d:3a:00:00:02") / IP(src="10.0.1.4", dst="10.0.2.100") / \
        TCP(sport=40000, dport=80, flags="S")
    verdict = dp.process(bytes(syn), ts=0.0)
    assert (verdict.decision, verdict.nic) == ("Allow", "vm2")


def test_udr_prefixes_join_virtual_network() -> None:
    doc = copy.deepcopy(BASE)
    doc["virtual_networks"][0]["udr_prefixes"] = ["192.168.0.0/16"]
    assert "192.168.0.0/16" in scenario_from_document(doc).virtual_network_space("vnet")


def test_a_nat_rule_to_an_undefined_nic_is_named_with_its_path() -> None:
    doc = {**copy.deepcopy(BASE), "load_balancers": [{"name": "lb", "frontend_ip": "20.0.0.100", "inbound_nat_rules": [
        {"protocol": "Tcp", "frontend_port": 50002, "backend_port": 22, "network_interface": "vm9"}]}]}
    assert problems(doc) == ["net.yaml: load_balancers[0].inbound_nat_rules[0].network_interface: "
                             "network interface 'vm9' is not defined"]


def test_a_pool_member_address_that_is_not_the_nics_is_named_with_its_path() -> None:
    doc = {**copy.deepcopy(BASE), "load_balancers": [{"name": "lb", "frontend_ip": "20.0.0.100", "rules": [
        {"protocol": "Tcp", "frontend_port": 80, "backend_pool": [{"network_interface": "vm2", "private_ip": "10.0.2.9"}]}]}]}
    assert problems(doc) == ["net.yaml: load_balancers[0].rules[0].backend_pool[0].private_ip: "
                             "10.0.2.9 is not an address of network interface vm2"]


def test_two_rules_on_one_frontend_port_are_refused() -> None:
    doc = {**copy.deepcopy(BASE), "load_balancers": [{"name": "lb", "frontend_ip": "20.0.0.100",
        "rules": [{"protocol": "Tcp", "frontend_port": 22, "backend_pool": ["vm2"]}],
        "inbound_nat_rules": [{"protocol": "Tcp", "frontend_port": 22, "network_interface": "vm1"}]}]}
    assert problems(doc) == ["net.yaml: load_balancers[0].inbound_nat_rules[0].frontend_port: Tcp 20.0.0.100:22 is "
                             "already used by load_balancers[0].rules[0]"]


def test_ip_configurations_and_private_ips_together_are_refused() -> None:
    doc = copy.deepcopy(BASE)
    doc["network_interfaces"][0]["private_ips"] = ["10.0.1.9"]
    assert problems(doc) == ["net.yaml: network_interfaces[0].private_ips: give the addresses either in "
                             "ip_configurations or in private_ips, not both"]


def test_an_azure_id_that_is_not_a_string_is_named() -> None:
    doc = copy.deepcopy(BASE)
    doc["virtual_networks"][0]["azure_id"] = 7
    assert problems(doc) == ["net.yaml: virtual_networks[0].azure_id: 7 is not a resource id"]


def test_the_environment_description_has_noise_resources() -> None:
    assert {r["type"] for r in environment()} >= {"Microsoft.Compute/virtualMachines", "Microsoft.Compute/disks",
                                                  "Microsoft.Storage/storageAccounts"}


def test_a_field_the_scenario_needs_known_only_at_deployment_is_an_error_naming_it() -> None:
    template = copy.deepcopy(read_document(HERE / "template" / "hub-rg.json"))
    nic_ = next(r for r in template["resources"] if r["type"] == "Microsoft.Network/networkInterfaces")
    nic_["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] = "[reference('vm').ip]"
    others = [(str(f), read_document(f)) for f in files("template") if f.name != "hub-rg.json"]
    with pytest.raises(DataplaneError, match=r"reference\('vm'\).*known only at deployment"):
        import_environment(others + [("hub-rg.json", template)])


def test_a_reference_to_a_resource_of_another_kind_is_a_missing_reference() -> None:
    nics = copy.deepcopy(read_document(HERE / "az" / "az-network-nic-list.json"))
    jump = next(n for n in nics if n["name"] == "jump-nic")
    jump["networkSecurityGroup"] = {"id": jump["ipConfigurations"][0]["subnet"]["id"]}
    docs = [(str(f), read_document(f)) for f in files("az") if "nic-list" not in f.name]
    with pytest.raises(ScenarioError, match="/subnets/shared: referred to by network interface jump-nic"):
        import_environment(docs + [("nics.json", nics)])


def test_a_reply_to_a_secondary_configurations_public_ip_finds_its_flow() -> None:
    dp = scenario()
    mac = {"src": "00:0d:3a:00:00:01", "dst": "00:0d:3a:00:00:02"}
    out = Ether(**mac) / IP(src="10.0.1.5", dst="203.0.113.1") / TCP(sport=40000, dport=443, flags="S")
    back = Ether(**mac) / IP(src="203.0.113.1", dst="20.0.0.5") / TCP(sport=443, dport=40000, flags="SA")
    assert str(key_to_flow(dp.process(bytes(out), ts=0.0).translated)) == "tcp 20.0.0.5:40000 > 203.0.113.1:443"
    reply = dp.process(bytes(back), ts=0.1)
    assert (reply.decision, reply.reason, reply.nic) == ("Allow", "flow", "vm1")
