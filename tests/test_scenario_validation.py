"""A scenario that does not describe a valid topology is rejected with the file, the path and the bad value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dataplane import ValidationErrors, load_scenario, scenario_from_document
from dataplane.cli import main

ASG = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/applicationSecurityGroups/"
VALID = {
    "virtual_networks": [
        {"name": "vnet1", "address_space": ["10.0.0.0/16"], "subnets": [
            {"name": "a", "prefix": "10.0.1.0/24", "nsg": "nsg1"}, {"name": "b", "prefix": "10.0.2.0/24"}]},
        {"name": "vnet2", "address_space": ["10.9.0.0/16"], "subnets": [{"name": "c", "prefix": "10.9.1.0/24"}]}],
    "network_interfaces": [
        {"name": "nic1", "subnet": "vnet1/a", "private_ips": ["10.0.1.4"], "application_security_groups": ["AsgA"]},
        {"name": "nic2", "subnet": "vnet2/c", "private_ips": ["10.9.1.4"], "application_security_groups": ["AsgC"]}],
    "network_security_groups": [{"name": "nsg1", "security_rules": []}],
}


def problems(doc) -> list[str]:
    with pytest.raises(ValidationErrors) as info:
        scenario_from_document(doc, file="net.yaml")
    return [str(p) for p in info.value.problems]


def changed(edit) -> dict:
    doc = copy.deepcopy(VALID)
    edit(doc)
    return doc


def test_the_valid_scenario_loads() -> None:
    assert sorted(scenario_from_document(VALID, file="net.yaml").network_interfaces) == ["nic1", "nic2"]


def test_an_unknown_key_is_named_with_its_path() -> None:
    doc = changed(lambda d: d["network_interfaces"][0].update(public_ips=["20.0.0.1"]))
    assert problems(doc) == ["net.yaml: network_interfaces[0].public_ips: unknown key 'public_ips'; expected one of "
                             "application_security_groups, azure_id, ip_configurations, name, nsg, private_ips, "
                             "public_ip, subnet"]


def test_a_nic_address_outside_its_subnet_is_named() -> None:
    doc = changed(lambda d: d["network_interfaces"][0].update(private_ips=["10.0.2.9"]))
    [problem] = problems(doc)
    assert problem.startswith("net.yaml: network_interfaces[0].private_ips[0]: 10.0.2.9 is outside subnet vnet1/a")


def test_overlapping_subnets_are_named() -> None:
    doc = changed(lambda d: d["virtual_networks"][0]["subnets"].append({"name": "x", "prefix": "10.0.1.128/25"}))
    [problem] = problems(doc)
    assert problem.startswith("net.yaml: virtual_networks[0].subnets[2].prefix: 10.0.1.128/25 overlaps subnet vnet1/a")


@pytest.mark.parametrize("edit, path, value", [
    (lambda d: d["virtual_networks"][0]["subnets"][0].update(nsg="nsg-missing"), "virtual_networks[0].subnets[0].nsg",
     "'nsg-missing'"),
    (lambda d: d["network_interfaces"][0].update(subnet="vnet1/zz"), "network_interfaces[0].subnet", "'vnet1/zz'"),
    (lambda d: d["network_interfaces"][0].update(nsg="nope"), "network_interfaces[0].nsg", "'nope'"),
    (lambda d: d["virtual_networks"][0].update(peerings=["vnet7"]), "virtual_networks[0].peerings[0]", "'vnet7'"),
    (lambda d: d.update(load_balancers=[{"name": "lb", "frontend_ip": "20.0.0.9", "rules": [
        {"protocol": "Tcp", "frontend_port": 80, "backend_pool": ["nic9"]}]}]),
     "load_balancers[0].rules[0].backend_pool[0]", "'nic9'"),
], ids=["subnet-nsg", "nic-subnet", "nic-nsg", "peering", "lb-backend"])
def test_a_reference_to_something_undefined_is_named(edit, path, value) -> None:
    [problem] = problems(changed(edit))
    assert problem.startswith(f"net.yaml: {path}: ") and value in problem


def test_an_asg_whose_nics_span_vnets_is_named() -> None:
    doc = changed(lambda d: d["network_interfaces"][1].update(application_security_groups=["AsgA"]))
    [problem] = problems(doc)
    assert problem.startswith("net.yaml: network_interfaces[1].application_security_groups[0]: ASG 'AsgA'")
    assert "vnet1" in problem and "vnet2" in problem


def test_a_rule_whose_source_and_destination_asgs_span_vnets_is_named() -> None:
    def edit(d):
        d["network_security_groups"][0]["security_rules"] = [{
            "name": "AcrossVnets", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceApplicationSecurityGroups": [{"id": ASG + "AsgC"}], "sourcePortRange": "*",
            "destinationApplicationSecurityGroups": [{"id": ASG + "AsgA"}], "destinationPortRange": "22"}]

    [problem] = problems(changed(edit))
    assert problem.startswith("net.yaml: nsg1/AcrossVnets: applicationSecurityGroups: ")
    assert "span VNets (vnet1, vnet2)" in problem


def test_a_bad_value_names_its_path_and_the_value() -> None:
    doc = changed(lambda d: d["virtual_networks"][0].update(flow_timeout_minutes=45))
    assert problems(doc) == ["net.yaml: virtual_networks[0].flow_timeout_minutes: 45 is not an integer from 4 to 30"]


def test_an_unknown_subscription_type_is_named() -> None:
    [problem] = problems(changed(lambda d: d.update(subscription_type="free-for-all")))
    assert problem.startswith("net.yaml: subscription_type: 'free-for-all' is not one of")


def test_every_problem_is_reported_at_once() -> None:
    def edit(d):
        d["network_interfaces"][0]["nsg"] = "nope"
        d["network_interfaces"][1]["private_ips"] = ["10.0.1.4"]

    assert len(problems(changed(edit))) >= 2


def test_an_nsg_file_is_read_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "nsgs").mkdir()
    (tmp_path / "nsgs" / "nsg1.json").write_text('{"name": "nsg1", "properties": {"securityRules": []}}')
    doc = changed(lambda d: d.update(network_security_groups=[{"name": "nsg1", "file": "nsgs/nsg1.json"}]))
    import yaml

    (tmp_path / "net.yaml").write_text(yaml.safe_dump(doc))
    assert "nsg1" in load_scenario(tmp_path / "net.yaml").network_security_groups


def test_lint_accepts_a_scenario_and_warns_about_an_empty_asg(tmp_path: Path, capsys) -> None:
    import yaml

    def edit(d):
        d["network_security_groups"][0]["security_rules"] = [{
            "name": "ToNobody", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceAddressPrefix": "*", "sourcePortRange": "*",
            "destinationApplicationSecurityGroups": [{"id": ASG + "AsgNobody"}], "destinationPortRange": "22"}]

    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(changed(edit)))
    assert main(["lint", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {path}: nsg1/ToNobody: application security group 'AsgNobody' has no member NIC" in out


def test_lint_reports_a_scenario_problem_and_exits_1(tmp_path: Path, capsys) -> None:
    import yaml

    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(changed(lambda d: d["network_interfaces"][0].update(nsg="nope"))))
    assert main(["lint", str(path)]) == 1
    assert f"{path}: network_interfaces[0].nsg: network security group 'nope' is not defined" in \
        capsys.readouterr().out


@pytest.mark.parametrize("space", ["127.0.0.0/16", "224.1.0.0/16", "169.254.0.0/16", "168.63.128.0/20"])
def test_an_address_space_azure_does_not_allow_is_named(space: str) -> None:
    doc = changed(lambda d: d["virtual_networks"][1].update(address_space=[space], subnets=[]))
    doc["network_interfaces"].pop()
    [problem] = problems(doc)
    assert problem.startswith(f"net.yaml: virtual_networks[1].address_space[0]: {space} overlaps")


def test_a_subnet_smaller_than_a_slash_29_is_named() -> None:
    doc = changed(lambda d: d["virtual_networks"][0]["subnets"].append({"name": "tiny", "prefix": "10.0.3.0/30"}))
    [problem] = problems(doc)
    assert problem.startswith("net.yaml: virtual_networks[0].subnets[2].prefix: 10.0.3.0/30 is smaller than /29")


def test_a_slash_29_subnet_is_allowed() -> None:
    doc = changed(lambda d: d["virtual_networks"][0]["subnets"].append({"name": "small", "prefix": "10.0.3.0/29"}))
    assert "vnet1/small" in {s.key for v in scenario_from_document(doc).virtual_networks.values() for s in v.subnets}


@pytest.mark.parametrize("address", ["10.0.1.0", "10.0.1.3", "10.0.1.255"])
def test_a_nic_address_azure_reserves_in_its_subnet_is_named(address: str) -> None:
    doc = changed(lambda d: d["network_interfaces"][0].update(private_ips=[address]))
    [problem] = problems(doc)
    assert problem.startswith(f"net.yaml: network_interfaces[0].private_ips[0]: {address} is reserved by Azure")


def test_a_load_balancer_frontend_that_is_a_nic_public_ip_is_named() -> None:
    doc = changed(lambda d: d["network_interfaces"][0].update(public_ip="20.0.0.1"))
    doc["load_balancers"] = [{"name": "lb", "frontend_ip": "20.0.0.1", "rules": []}]
    [problem] = problems(doc)
    assert problem == "net.yaml: load_balancers[0].frontend_ip: 20.0.0.1 is already the public IP of network " \
                      "interface nic1"
