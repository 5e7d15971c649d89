"""Terraform (issue 20): `terraform show -json` states and plans read as the Azure environment they
describe, with Azure's validation at Terraform's addresses, and a plan's effect on real traffic."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from dataplane import terraform
from dataplane.cli import main
from dataplane.documents import read_document
from dataplane.errors import DataplaneError, ValidationErrors
from dataplane.flows import parse_flow
from dataplane.importer import import_environment
from dataplane.nsg import nsgs_from_document
from dataplane.policy import Policy
from dataplane.topology import scenario_from_document

from frames import ether
from make_terraform_fixtures import HERE, write_all

STATE, PLAN = HERE / "state.json", HERE / "plan.json"
OFFICE_CLIENT, SCANNER, INTERNET_CLIENT = "198.51.100.9", "203.0.113.66", "203.0.113.7"
WEB1, WEB2, DB1, WEB1_PUBLIC, LB_FRONTEND = "10.0.1.4", "10.0.1.5", "10.0.2.4", "20.50.1.4", "20.50.1.100"


def state() -> dict:
    return read_document(STATE)


def plan() -> dict:
    return read_document(PLAN)


def without_azure_ids(value):
    if isinstance(value, dict):
        return {k: without_azure_ids(v) for k, v in value.items() if k != "azure_id"}
    if isinstance(value, list):
        return [without_azure_ids(v) for v in value]
    return value


def resources(doc: dict, *, planned: bool = False) -> list[dict]:
    """Every resource of a state (or a plan's planned values), child modules included."""
    root = (doc["planned_values"] if planned else doc["values"])["root_module"]
    found, modules = [], [root]
    while modules:
        module = modules.pop()
        found += module.get("resources", [])
        modules += module.get("child_modules", [])
    return found


def resource(doc: dict, address: str, *, planned: bool = False) -> dict:
    return next(r for r in resources(doc, planned=planned) if r["address"] == address)


def change(doc: dict, address: str) -> dict:
    return next(c for c in doc["resource_changes"] if c["address"] == address)["change"]


def decisions(doc: dict, *flows: str) -> list[tuple[str, str | None]]:
    policy = Policy(scenario_from_document(doc, file="tf.json"))
    return [(d.decision, d.rule) for d in (policy.decide(parse_flow(f)) for f in flows)]


# -- the fixtures --------------------------------------------------------------------------------------

def test_the_fixtures_on_disk_are_what_the_generator_writes() -> None:
    for path, text in write_all().items():
        assert path.read_text(encoding="utf-8") == text, f"{path}: run python tests/make_terraform_fixtures.py"


def test_the_fixtures_are_shaped_as_terraform_show_json() -> None:
    doc = plan()
    assert (doc["format_version"], doc["terraform_version"]) == ("1.2", "1.9.8")
    res = resource(doc, 'module.network.azurerm_subnet.this["web"]', planned=True)
    assert res["provider_name"] == terraform.PROVIDER and res["index"] == "web" and res["mode"] == "managed"
    assert "sensitive_values" in res and "schema_version" in res
    created = change(doc, "azurerm_application_security_group.admin")
    assert created["actions"] == ["create"] and created["after_unknown"]["id"] is True
    assert "id" not in created["after"]


# -- a state -------------------------------------------------------------------------------------------

def test_a_state_imports_to_the_same_scenario_as_the_az_export_of_its_environment() -> None:
    az = import_environment([(str(f), read_document(f)) for f in sorted((HERE / "az").glob("*.json"))])
    tf = terraform.scenario(state(), file=str(STATE))
    assert without_azure_ids(tf.document) == without_azure_ids(az.scenario)
    assert tf.warnings == az.warnings == []


def test_resources_in_child_modules_are_read() -> None:
    vnets = {v["name"]: v for v in terraform.scenario(state()).document["virtual_networks"]}
    assert [(s["name"], s.get("nsg")) for s in vnets["app-vnet"]["subnets"]] == \
        [("db", "nsg-db"), ("web", "nsg-web-subnet")]


def test_separate_rule_resources_join_the_nsg_they_name() -> None:
    nsgs = {n["name"]: n for n in terraform.scenario(state()).document["network_security_groups"]}
    assert [r["name"] for r in nsgs["nsg-db"]["security_rules"]] == ["AllowSqlFromWeb", "DenyVnetInBound"]


def test_a_separate_rule_replaces_the_inline_rule_of_its_name_as_its_put_does() -> None:
    doc = state()
    rule = resource(doc, "azurerm_network_security_rule.deny_vnet")
    rule["values"]["network_security_group_name"] = "nsg-web-nic"
    rule["values"]["name"] = "AllowWebPorts"
    rule["values"]["id"] = rule["values"]["id"].replace("nsg-db/securityRules/DenyVnetInBound",
                                                        "nsg-web-nic/securityRules/AllowWebPorts")
    nsgs = {n["name"]: n for n in terraform.scenario(doc).document["network_security_groups"]}
    assert [(r["name"], r["access"]) for r in nsgs["nsg-web-nic"]["security_rules"]] == [("AllowWebPorts", "Deny")]


def test_inline_subnet_blocks_of_a_vnet_are_its_subnets() -> None:
    vnets = {v["name"]: v for v in terraform.scenario(state()).document["virtual_networks"]}
    assert [(s["name"], s["prefix"]) for s in vnets["shared-vnet"]["subnets"]] == [("tools", "10.1.1.0/24")]


def test_a_peering_counts_only_when_the_remote_vnet_peers_back() -> None:
    doc = state()
    doc["values"]["root_module"]["resources"].remove(resource(doc, "azurerm_virtual_network_peering.shared_to_app"))
    found = terraform.scenario(doc)
    assert all("peerings" not in v for v in found.document["virtual_networks"])
    assert any("peering app-to-shared is Initiated" in w for w in found.warnings)


def test_terraform_attribute_names_map_to_azures_rule_properties() -> None:
    nsgs = {n["name"]: n for n in terraform.scenario(state()).document["network_security_groups"]}
    web_ports = nsgs["nsg-web-nic"]["security_rules"][0]
    assert web_ports["destinationPortRanges"] == ["22", "8080", "443"] and "destinationPortRange" not in web_ports
    https = next(r for r in nsgs["nsg-web-subnet"]["security_rules"] if r["name"] == "AllowHttpsToWeb")
    assert [a["id"].rsplit("/", 1)[1] for a in https["destinationApplicationSecurityGroups"]] == ["asg-web"]


def test_a_nic_asg_association_puts_every_ip_configuration_in_the_asg() -> None:
    nics = {n["name"]: n for n in terraform.scenario(state()).document["network_interfaces"]}
    assert nics["web2-nic"]["application_security_groups"] == ["asg-web"]
    assert "application_security_groups" not in nics["db1-nic"]


def test_load_balancer_rule_pool_and_nat_resources_make_its_rules() -> None:
    lb = terraform.scenario(state()).document["load_balancers"][0]
    assert lb["rules"][0]["backend_pool"] == ["web1-nic", "web2-nic"]
    assert lb["inbound_nat_rules"][0]["network_interface"] == "web1-nic"


def test_a_data_source_is_read_like_the_resource_it_reads() -> None:
    doc = state()
    vnet = resource(doc, "azurerm_virtual_network.shared")
    vnet.update(address="data.azurerm_virtual_network.shared", mode="data")
    names = [v["name"] for v in terraform.scenario(doc).document["virtual_networks"]]
    assert names == ["app-vnet", "shared-vnet"]


def test_sensitive_values_are_read_as_values() -> None:
    doc = state()
    nsg = resource(doc, "module.network.azurerm_network_security_group.web_subnet")
    nsg["sensitive_values"]["security_rule"][1]["source_address_prefix"] = True
    assert decisions(doc, f"tcp {OFFICE_CLIENT}:50000 > {WEB1_PUBLIC}:22") == [("Allow", "AllowWebPorts")]


def test_resources_of_other_providers_are_ignored() -> None:
    doc = state()
    other = copy.deepcopy(resource(doc, "azurerm_public_ip.web1"))
    other.update(address="azurerm_public_ip.elsewhere", provider_name="registry.terraform.io/example/azurerm-fork")
    other["values"]["name"] = "elsewhere"
    doc["values"]["root_module"]["resources"].append(other)
    assert terraform.scenario(doc).document == terraform.scenario(state()).document


def test_a_load_balancer_rule_of_azurerm_2_names_its_single_pool() -> None:
    doc = state()
    rule = resource(doc, "azurerm_lb_rule.http")["values"]
    rule["backend_address_pool_id"] = rule.pop("backend_address_pool_ids")[0]
    assert terraform.scenario(doc).document == terraform.scenario(state()).document


# -- Azure's validation at Terraform's addresses ---------------------------------------------------------

def test_a_separate_rule_error_carries_azures_code_and_names_the_resource_and_attribute() -> None:
    doc = state()
    resource(doc, "azurerm_network_security_rule.sql_from_web")["values"]["destination_port_range"] = "1433,1434"
    with pytest.raises(ValidationErrors) as caught:
        scenario_from_document(doc, file="state.json")
    [problem] = [p for p in caught.value.problems if p.rule]
    assert problem.code == "SecurityRuleInvalidPortRange"
    assert problem.field == "azurerm_network_security_rule.sql_from_web.destination_port_range"
    assert str(problem) == ("state.json: nsg-db/AllowSqlFromWeb: SecurityRuleInvalidPortRange: "
                            "azurerm_network_security_rule.sql_from_web.destination_port_range: '1433,1434' is a "
                            "list; use destination_port_ranges")


def test_an_inline_rule_error_names_the_nsg_resource_and_its_security_rule_block() -> None:
    doc = state()
    nsg = resource(doc, "module.network.azurerm_network_security_group.web_subnet")
    nsg["values"]["security_rule"][0]["priority"] = 5000
    with pytest.raises(ValidationErrors) as caught:
        scenario_from_document(doc, file="state.json")
    [problem] = [p for p in caught.value.problems if p.rule]
    assert (problem.code, problem.rule, problem.field) == (
        "SecurityRuleInvalidPriority", "AllowHttpFromInternet",
        "module.network.azurerm_network_security_group.web_subnet.security_rule.priority")


def test_an_nsg_file_command_reports_the_same_located_problem() -> None:
    doc = state()
    resource(doc, "azurerm_network_security_rule.sql_from_web")["values"]["source_port_ranges"] = ["*"]
    with pytest.raises(ValidationErrors) as caught:
        nsgs_from_document(doc, file="state.json")
    assert [(p.code, p.field) for p in caught.value.problems] == [
        ("SecurityRuleInvalidPortRange", "azurerm_network_security_rule.sql_from_web.source_port_ranges")]


def test_a_scenario_problem_names_the_resource_it_comes_from() -> None:
    doc = state()
    nic = resource(doc, "azurerm_network_interface.web[1]")
    nic["values"]["ip_configuration"][0]["private_ip_address"] = "10.0.9.5"
    with pytest.raises(ValidationErrors) as caught:
        scenario_from_document(doc, file="state.json")
    assert any(p.field.startswith("azurerm_network_interface.web[1] (network_interfaces[2]")
               for p in caught.value.problems)


# -- a plan ---------------------------------------------------------------------------------------------

def test_a_plan_is_its_planned_values_without_a_flag() -> None:
    flows = [f"tcp {OFFICE_CLIENT}:50000 > {WEB1_PUBLIC}:22", f"tcp {WEB2}:40000 > {DB1}:22"]
    assert decisions(state(), *flows) == [("Allow", "AllowWebPorts"), ("Deny", "DenyVnetInBound")]
    assert decisions(plan(), *flows) == [("Deny", "DenyAllInBound"), ("Allow", "AllowSshFromAdmin")]


def test_the_prior_state_of_a_plan_is_the_state_it_was_planned_against() -> None:
    assert terraform.scenario(terraform.prior_state(plan())).document == terraform.scenario(state()).document


def test_ids_unknown_until_apply_are_matched_by_resource_address() -> None:
    found = terraform.scenario(plan()).document
    nics = {n["name"]: n for n in found["network_interfaces"]}
    assert nics["web2-nic"]["application_security_groups"] == ["asg-admin"]
    rule = next(r for n in found["network_security_groups"] for r in n["security_rules"]
                if r["name"] == "AllowSshFromAdmin")
    assert rule["sourceApplicationSecurityGroups"][0]["id"].endswith("/applicationSecurityGroups/asg-admin")


def unknown(doc: dict, address: str, *path) -> None:
    """Make a planned value unknown until apply, as Terraform writes it: left out, and marked."""
    values = resource(doc, address, planned=True)["values"]
    marks = change(doc, address)["after_unknown"]
    for step in path[:-1]:
        values, marks = values[step], marks[step]
    values.pop(path[-1], None)
    if isinstance(values, list):
        values.insert(path[-1], None)
    marks[path[-1]] = True


def test_an_address_unknown_until_apply_is_an_error_naming_the_resource_and_attribute() -> None:
    doc = plan()
    unknown(doc, "azurerm_network_interface.web[1]", "ip_configuration", 0, "private_ip_address")
    with pytest.raises(DataplaneError) as caught:
        scenario_from_document(doc, file="plan.json")
    assert str(caught.value) == ("plan.json: azurerm_network_interface.web[1].ip_configuration[0].private_ip_address: "
                                 "is known only after apply, and decisions depend on it: set it in the "
                                 "configuration (a static address, a literal port, prefix or priority)")


def test_a_port_unknown_until_apply_is_an_error_naming_the_rule_resource() -> None:
    doc = plan()
    unknown(doc, "module.network.azurerm_network_security_rule.deny_scanner", "destination_port_range")
    with pytest.raises(DataplaneError, match=r"deny_scanner\.destination_port_range: is known only after apply"):
        nsgs_from_document(doc, file="plan.json")


def test_a_public_address_unknown_until_apply_is_an_error() -> None:
    doc = plan()
    unknown(doc, "azurerm_public_ip.web1", "ip_address")
    with pytest.raises(DataplaneError, match=r"azurerm_public_ip\.web1\.ip_address: is known only after apply"):
        scenario_from_document(doc, file="plan.json")


def test_a_value_unknown_until_apply_that_decides_nothing_is_no_error() -> None:
    doc = plan()
    unknown(doc, "azurerm_network_interface.web[1]", "mac_address")
    unknown(doc, "azurerm_lb.web", "id")
    assert decisions(doc, f"tcp {SCANNER}:40000 > {LB_FRONTEND}:80") == [("Deny", "DenyHttpFromScanner")]


def test_an_unknown_id_whose_expression_names_no_resource_of_the_plan_is_an_error() -> None:
    doc = plan()
    doc["configuration"]["root_module"]["resources"][1]["expressions"]["application_security_group_id"] = \
        {"references": ["var.admin_asg_id"]}
    with pytest.raises(DataplaneError) as caught:
        terraform.scenario(doc, file="plan.json")
    assert caught.value.field == \
        "azurerm_network_interface_application_security_group_association.web2_admin.application_security_group_id"
    assert "refers to no azurerm_application_security_group of the plan" in caught.value.message


def nic_subnet_from_module_output(doc: dict, output_references: list[str]) -> None:
    """web2-nic's subnet id unknown until apply, its expression the network module's output."""
    unknown(doc, "azurerm_network_interface.web[1]", "ip_configuration", 0, "subnet_id")
    config = doc["configuration"]["root_module"]
    config["resources"].append({
        "address": "azurerm_network_interface.web", "mode": "managed", "type": "azurerm_network_interface",
        "name": "web", "expressions": {"ip_configuration": [{"subnet_id": {"references": [
            "module.network.subnet_ids[\"web\"]", "module.network.subnet_ids", "module.network"]}}]}})
    config["module_calls"]["network"]["module"]["outputs"] = {
        "subnet_ids": {"expression": {"references": output_references}}}


def test_an_unknown_id_is_followed_through_a_module_output() -> None:
    doc = plan()
    nic_subnet_from_module_output(doc, ["azurerm_subnet.this[\"web\"].id", "azurerm_subnet.this[\"web\"]"])
    nics = {n["name"]: n for n in terraform.scenario(doc).document["network_interfaces"]}
    assert nics["web2-nic"]["subnet"] == "app-vnet/web"


def test_an_unknown_id_naming_several_instances_is_an_error_listing_them() -> None:
    doc = plan()
    nic_subnet_from_module_output(doc, ["azurerm_subnet.this"])
    with pytest.raises(DataplaneError, match=r"could refer to any of module\.network\.azurerm_subnet\.this\["):
        terraform.scenario(doc)


def test_an_unknown_parent_name_is_followed_through_a_module_variable() -> None:
    doc = plan()
    address = "module.network.azurerm_network_security_rule.deny_scanner"
    unknown(doc, address, "network_security_group_name")
    call = doc["configuration"]["root_module"]["module_calls"]["network"]
    call["module"]["resources"][0]["expressions"]["network_security_group_name"] = {"references": ["var.nsg_name"]}
    call["expressions"] = {"nsg_name": {"references": ["azurerm_network_security_group.web_nic.name",
                                                       "azurerm_network_security_group.web_nic"]}}
    nsgs = {n["name"]: n for n in terraform.scenario(doc).document["network_security_groups"]}
    assert [r["name"] for r in nsgs["nsg-web-nic"]["security_rules"]] == ["AllowWebPorts", "DenyHttpFromScanner"]


# -- commands ------------------------------------------------------------------------------------------

def test_import_writes_the_scenario_of_a_state(tmp_path) -> None:
    out = tmp_path / "scenario.json"
    assert main(["import", str(STATE), "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == terraform.scenario(state(), file=str(STATE)).document
    assert main(["lint", str(out)]) == 0


def test_commands_that_take_an_nsg_file_or_a_scenario_take_terraform_json(capsys) -> None:
    assert main(["check", "--scenario", str(PLAN), "--expect", "deny",
                 f"tcp {SCANNER}:40000 > {LB_FRONTEND}:80"]) == 0
    assert main(["check", "--nsg", str(STATE), "--name", "nsg-web-nic", "--direction", "inbound", "--expect",
                 "allow", f"tcp {SCANNER}:40000 > {WEB1}:8080"]) == 0
    assert main(["lint", str(PLAN)]) == 0


def test_an_unknown_address_exits_2_naming_it(tmp_path, capsys) -> None:
    doc = plan()
    unknown(doc, "azurerm_public_ip.lb", "ip_address")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    assert main(["check", "--scenario", str(path), f"tcp {SCANNER}:40000 > {LB_FRONTEND}:80"]) == 2
    assert "azurerm_public_ip.lb.ip_address: is known only after apply" in capsys.readouterr().err


# -- what the plan breaks --------------------------------------------------------------------------------

NEWLY_DENIED = {f"tcp {OFFICE_CLIENT}:50000 > {WEB1_PUBLIC}:22",  # its allow rule removed
                f"tcp {SCANNER}:40000 > {LB_FRONTEND}:80",  # the new deny
                f"tcp {WEB2}:40002 > {DB1}:1433"}  # web2-nic left asg-web
NEWLY_ALLOWED = {f"tcp {WEB2}:40004 > {DB1}:22"}  # web2-nic joined asg-admin


def session(t: float, client: str, sport: int, server: str, dport: int, *, replied: bool = True) -> list:
    """A short TCP connection as the network carried it; one the rules denied got no reply."""
    def out(dt, flags, payload=b""):
        p = ether() / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags=flags) / payload
        p.time = t + dt
        return p

    def back(dt, flags, payload=b""):
        p = ether() / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags=flags) / payload
        p.time = t + dt
        return p

    if not replied:
        return [out(0, "S"), out(1, "S")]
    return [out(0, "S"), back(0.01, "SA"), out(0.02, "A"), out(1, "PA", b"q" * 40), back(1.01, "PA", b"r" * 400),
            out(2, "FA"), back(2.01, "FA"), out(2.02, "A")]


@pytest.fixture
def capture(tmp_path) -> Path:
    """Traffic under the prior state (scapy, explicit MACs)."""
    packets = (session(0, OFFICE_CLIENT, 50000, WEB1_PUBLIC, 22) + session(3, SCANNER, 40000, LB_FRONTEND, 80)
               + session(6, INTERNET_CLIENT, 40001, LB_FRONTEND, 80) + session(9, WEB2, 40002, DB1, 1433)
               + session(12, WEB1, 40003, DB1, 1433) + session(15, WEB2, 40004, DB1, 22, replied=False))
    path = tmp_path / "traffic.pcap"
    wrpcap(str(path), packets)
    return path


def changed(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        change_ = json.loads(line)
        found.setdefault(change_["change"], set()).add(change_["flow"])
    return found


def test_whatif_on_a_plan_finds_the_flows_it_newly_denies(tmp_path, capture, capsys) -> None:
    out = tmp_path / "changes.jsonl"
    assert main(["whatif", "--terraform-plan", str(PLAN), str(capture), "--json", str(out)]) == 1
    assert changed(out) == {"newly-denied": NEWLY_DENIED, "newly-allowed": NEWLY_ALLOWED}
    assert "3 newly-denied, 1 newly-allowed" in capsys.readouterr().out


def test_whatif_on_a_plan_reports_as_whatif_with_the_planned_scenario_as_change(tmp_path, capture) -> None:
    before, after = tmp_path / "before.yaml", tmp_path / "after.yaml"
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps(terraform.prior_state(plan())))
    assert main(["import", str(prior), "-o", str(before)]) == 0
    assert main(["import", str(PLAN), "-o", str(after)]) == 0
    by_plan, by_change = tmp_path / "plan.jsonl", tmp_path / "change.jsonl"
    assert main(["whatif", "--terraform-plan", str(PLAN), str(capture), "--json", str(by_plan)]) == 1
    assert main(["whatif", str(before), "--change", str(after), str(capture), "--json", str(by_change)]) == 1
    assert by_plan.read_text() == by_change.read_text()


def test_whatif_on_a_plan_exits_0_when_nothing_of_the_fail_on_kind_changes(capture) -> None:
    assert main(["whatif", "--terraform-plan", str(PLAN), str(capture), "--fail-on", "none"]) == 0


def test_whatif_refuses_a_state_as_a_plan(capture, capsys) -> None:
    assert main(["whatif", "--terraform-plan", str(STATE), str(capture)]) == 2
    assert "is not a Terraform plan" in capsys.readouterr().err


def diff_regions(capsys, *args: str) -> list[dict]:
    assert main(["diff", "--terraform-plan", *args, "--json"]) == 1
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_diff_of_a_plan_shows_where_each_nsg_it_changes_decides_differently(capsys) -> None:
    regions = diff_regions(capsys, str(PLAN))
    assert {(r["source"][0], r["destination_ports"][0], r["before"]["rule"], r["after"]["rule"]) for r in regions} == {
        ("198.51.100.0/24", "22-22", "nsg-web-subnet/AllowSshFromOffice", "nsg-web-subnet/DenyAllInBound"),
        ("203.0.113.66/32", "8080-8080", "nsg-web-subnet/AllowHttpFromInternet", "nsg-web-subnet/DenyHttpFromScanner"),
        (f"{WEB2}/32", "22-22", "nsg-db/DenyVnetInBound", "nsg-db/AllowSshFromAdmin")}


def test_diff_of_a_plan_compares_an_nsg_it_creates_with_the_default_rules(tmp_path, capsys) -> None:
    doc = plan()
    created = copy.deepcopy(resource(doc, "azurerm_network_security_group.web_nic", planned=True))
    created["address"], created["name"] = "azurerm_network_security_group.jump", "jump"
    created["values"].update(name="nsg-jump", id=None)
    created["values"]["security_rule"][0].update(name="AllowRdp", destination_port_ranges=["3389"])
    doc["planned_values"]["root_module"]["resources"].append(created)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    regions = [r for r in diff_regions(capsys, str(path)) if r["after"]["rule"] == "nsg-jump/AllowRdp"]
    assert {(tuple(r["destination_ports"]), r["before"]["rule"]) for r in regions} == \
        {(("3389-3389",), "nsg-jump/DenyAllInBound")}


def test_diff_of_a_plan_takes_no_old_or_new(capsys) -> None:
    assert main(["diff", "--terraform-plan", str(PLAN), str(STATE)]) == 2
    assert "no OLD, NEW or --name" in capsys.readouterr().err


def broken_values(doc: dict) -> None:
    doc["values"] = []


def broken_resource(doc: dict) -> None:
    resource(doc, "azurerm_lb.web")["values"] = ["web-lb"]


def broken_address(doc: dict) -> None:
    resource(doc, "azurerm_public_ip.lb")["values"]["ip_address"] = ["20.50.1.100"]


@pytest.mark.parametrize("breaks", [broken_values, broken_resource, broken_address])
def test_a_malformed_terraform_document_exits_2_naming_the_file(tmp_path, capsys, breaks) -> None:
    doc = state()
    breaks(doc)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(doc))
    assert main(["check", "--scenario", str(path), f"tcp {SCANNER}:40000 > {LB_FRONTEND}:80"]) == 2
    assert f"error: {path}: " in capsys.readouterr().err


def test_terraform_json_without_nsgs_is_no_nsg_file(tmp_path, capsys) -> None:
    doc = state()
    doc["values"]["root_module"] = {"resources": [resource(doc, "azurerm_public_ip.lb")]}
    path = tmp_path / "state.json"
    path.write_text(json.dumps(doc))
    assert main(["lint", str(path)]) == 1
    assert "holds no network security group" in capsys.readouterr().out


def test_a_data_source_reading_a_resource_of_the_plan_gives_way_to_the_planned_resource() -> None:
    doc = plan()
    reader = copy.deepcopy(resource(doc, "azurerm_network_security_group.web_nic", planned=True))
    reader.update(address="data.azurerm_network_security_group.web_nic", mode="data")
    reader["values"]["security_rule"] = []
    doc["planned_values"]["root_module"]["resources"].append(reader)
    assert terraform.scenario(doc).document == terraform.scenario(plan()).document
