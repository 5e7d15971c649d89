"""NSGs load from every shape Azure writes them in, to the same rules, and save to REST JSON that loads back equal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplane import DataplaneError, Direction, NetworkSecurityGroup, load_nsgs, save_nsg
from dataplane.cli import main

SHAPES = Path(__file__).parent / "fixtures" / "shapes"
ALL_SHAPES = ["az-show.json", "az-list.json", "rest.json", "arm-template.json", "nsg.yaml"]


def nsg_app(name: str) -> NetworkSecurityGroup:
    return next(n for n in load_nsgs(SHAPES / name) if n.name == "nsg-app")


@pytest.mark.parametrize("name", ALL_SHAPES[1:])
def test_every_shape_loads_to_the_same_nsg_as_az_show(name: str) -> None:
    assert nsg_app(name) == nsg_app("az-show.json")


def test_the_loaded_rules_are_the_ones_written() -> None:
    nsg = nsg_app("az-show.json")
    assert [r.name for r in nsg.rules_in_order(Direction.INBOUND)] == [
        "AllowHttps", "AllowAppFromOffices", "AllowDnsV6", "AllowVnetInBound", "AllowAzureLoadBalancerInBound",
        "DenyAllInBound"]
    https = next(r for r in nsg.rules if r.name == "AllowHttps")
    assert https.destination_ports == ((443, 443), (8443, 8445))
    app = next(r for r in nsg.rules if r.name == "AllowAppFromOffices")
    assert app.destination_application_security_groups == ("AsgApp",)
    assert app.source_address_prefixes == ("198.51.100.0/24", "203.0.113.0/24")


def test_az_list_loads_every_nsg_of_the_array() -> None:
    assert [n.name for n in load_nsgs(SHAPES / "az-list.json")] == ["nsg-app", "nsg-other"]


def test_the_default_rules_of_az_show_output_are_not_loaded_as_custom_rules() -> None:
    assert len(nsg_app("az-show.json").rules) == 4


@pytest.mark.parametrize("name", ALL_SHAPES)
def test_save_writes_rest_json_that_loads_back_equal(name: str, tmp_path: Path) -> None:
    nsg = nsg_app(name)
    save_nsg(nsg, tmp_path / "saved.json")
    saved = json.loads((tmp_path / "saved.json").read_text())
    assert saved["name"] == "nsg-app" and "securityRules" in saved["properties"]
    assert load_nsgs(tmp_path / "saved.json") == [nsg]


def template_with(tmp_path: Path, **changes) -> Path:
    doc = json.loads((SHAPES / "arm-template.json").read_text())
    for path, value in changes.items():
        target = doc
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    out = tmp_path / "template.json"
    out.write_text(json.dumps(doc))
    return out


def test_an_unsupported_template_expression_in_a_used_field_is_an_error_naming_it(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"resources.1.properties.priority": "[add(100, 20)]"})
    with pytest.raises(DataplaneError) as info:
        load_nsgs(path)
    message = str(info.value)
    assert str(path) in message and "resources[1].properties.priority" in message and "[add(100, 20)]" in message


def test_template_expressions_in_fields_the_simulator_does_not_use_are_ignored(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"resources.0.location": "[resourceGroup().location]",
                                      "resources.0.tags": {"x": "[utcNow()]"}})
    assert load_nsgs(path)[0] == nsg_app("az-show.json")


def test_a_template_parameter_without_a_default_is_an_error_naming_it(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"parameters.httpsPorts": {"type": "array"}})
    with pytest.raises(DataplaneError, match="parameter 'httpsPorts' has no defaultValue"):
        load_nsgs(path)


def test_a_child_rule_of_an_nsg_the_template_does_not_define_is_an_error(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"resources.1.name": "nsg-elsewhere/AllowDnsV6"})
    with pytest.raises(DataplaneError, match="belongs to NSG 'nsg-elsewhere'"):
        load_nsgs(path)


def test_the_classic_type_marks_a_classic_nsg(tmp_path: Path) -> None:
    path = tmp_path / "classic.json"
    path.write_text(json.dumps({"name": "old", "type": "Microsoft.ClassicNetwork/networkSecurityGroups",
                                "properties": {"securityRules": []}}))
    assert load_nsgs(path)[0].classic


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataplaneError, match="nowhere.json: cannot read"):
        load_nsgs(tmp_path / "nowhere.json")


def test_malformed_json_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "properties": }')
    with pytest.raises(DataplaneError, match=r"broken.json: is not valid JSON: .* at line 2"):
        load_nsgs(path)


def test_a_document_that_is_not_an_nsg_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "vnet.json"
    path.write_text(json.dumps({"name": "vnet", "type": "Microsoft.Network/virtualNetworks"}))
    with pytest.raises(DataplaneError, match="is a Microsoft.Network/virtualNetworks, not a network security group"):
        load_nsgs(path)


def test_lint_accepts_a_valid_file(capsys) -> None:
    assert main(["lint", str(SHAPES / "az-show.json")]) == 0
    assert capsys.readouterr().out == ""


def test_lint_reports_each_problem_with_file_rule_code_and_field_and_exits_1(tmp_path: Path, capsys) -> None:
    doc = json.loads((SHAPES / "rest.json").read_text())
    doc["properties"]["securityRules"][0]["properties"]["priority"] = 4097
    doc["properties"]["securityRules"][2]["properties"]["destinationPortRange"] = "any"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert main(["lint", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: nsg-app/AllowHttps: SecurityRuleInvalidPriority: priority: 4097")
    assert out[1].startswith(f"{path}: nsg-app/AllowDnsV6: SecurityRuleInvalidPortRange: destinationPortRange: 'any'")
