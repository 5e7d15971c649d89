"""NSGs load from every shape Azure writes them in, to the same rules, and save to REST JSON that loads back
equal; a file that cannot be used is an error naming the file, and for templates the field and expression."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataplane import DataplaneError, Direction, NetworkSecurityGroup, ValidationErrors, load_nsgs, save_nsg
from dataplane.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
SHAPES = FIXTURES / "shapes"
NSG = FIXTURES / "nsg"
ALL_SHAPES = [SHAPES / "az-show.json", SHAPES / "az-list.json", SHAPES / "rest.json", SHAPES / "arm-template.json",
              SHAPES / "nsg.yaml", NSG / "arm-nested-children.json"]


def nsg_app(path: Path) -> NetworkSecurityGroup:
    return next(n for n in load_nsgs(path) if n.name == "nsg-app")


def write(tmp_path: Path, name: str, doc: object) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# -- every shape, the same NSG ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_SHAPES[1:], ids=lambda p: p.name)
def test_every_shape_loads_to_the_same_nsg_as_az_show(path: Path) -> None:
    assert nsg_app(path) == nsg_app(SHAPES / "az-show.json")


def test_the_loaded_rules_are_the_ones_written() -> None:
    nsg = nsg_app(SHAPES / "az-show.json")
    assert [r.name for r in nsg.rules_in_order(Direction.INBOUND)] == [
        "AllowHttps", "AllowAppFromOffices", "AllowDnsV6", "AllowVnetInBound", "AllowAzureLoadBalancerInBound",
        "DenyAllInBound"]
    https = next(r for r in nsg.rules if r.name == "AllowHttps")
    assert https.destination_ports == ((443, 443), (8443, 8445))
    app = next(r for r in nsg.rules if r.name == "AllowAppFromOffices")
    assert app.destination_application_security_groups == ("AsgApp",)
    assert app.source_address_prefixes == ("198.51.100.0/24", "203.0.113.0/24")
    storage = next(r for r in nsg.rules if r.name == "DenyStorageOut")
    assert (storage.direction, storage.destinations) == (Direction.OUTBOUND, ("Storage",))


def test_az_list_loads_every_nsg_of_the_array() -> None:
    assert [n.name for n in load_nsgs(SHAPES / "az-list.json")] == ["nsg-app", "nsg-other"]


def test_the_default_rules_of_az_show_output_are_not_loaded_as_custom_rules() -> None:
    assert len(nsg_app(SHAPES / "az-show.json").rules) == 4


def test_az_shows_empty_plural_arrays_beside_singular_values_are_read_as_absent() -> None:
    """Real `az` output carries `sourcePortRanges: []` and so on next to every singular field (§5)."""
    https = next(r for r in nsg_app(SHAPES / "az-show.json").rules if r.name == "AllowHttps")
    assert (https.source_port_range, https.source_port_ranges, https.source_address_prefixes) == ("*", (), ())


@pytest.mark.parametrize("path", ALL_SHAPES, ids=lambda p: p.name)
def test_save_writes_rest_json_that_loads_back_equal(path: Path, tmp_path: Path) -> None:
    nsg = nsg_app(path)
    save_nsg(nsg, tmp_path / "saved.json")
    saved = json.loads((tmp_path / "saved.json").read_text())
    assert saved["name"] == "nsg-app" and "securityRules" in saved["properties"]
    assert load_nsgs(tmp_path / "saved.json") == [nsg]


def test_saved_rules_are_nested_in_properties_with_every_plural_array_as_azure_returns_them(tmp_path: Path) -> None:
    save_nsg(nsg_app(SHAPES / "az-show.json"), tmp_path / "saved.json")
    saved = json.loads((tmp_path / "saved.json").read_text())
    https = next(r for r in saved["properties"]["securityRules"] if r["name"] == "AllowHttps")
    assert https["properties"]["destinationPortRanges"] == ["443", "8443-8445"]
    assert https["properties"]["sourcePortRanges"] == [] and https["properties"]["sourceAddressPrefixes"] == []
    assert [r["name"] for r in saved["properties"]["defaultSecurityRules"]] == [
        "AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound", "AllowVnetOutBound",
        "AllowInternetOutBound", "DenyAllOutBound"]


def test_flush_connection_is_loaded_and_saved(tmp_path: Path) -> None:
    doc = json.loads((SHAPES / "rest.json").read_text())
    doc["properties"]["flushConnection"] = True
    nsg = load_nsgs(write(tmp_path, "flush.json", doc))[0]
    save_nsg(nsg, tmp_path / "saved.json")
    assert nsg.flush_connection and load_nsgs(tmp_path / "saved.json")[0].flush_connection


# -- classic NSGs --------------------------------------------------------------------------------------

def test_the_classic_type_marks_a_classic_nsg() -> None:
    assert load_nsgs(NSG / "classic.json")[0].classic


def test_a_network_type_or_no_type_marks_a_resource_manager_nsg() -> None:
    assert not nsg_app(SHAPES / "rest.json").classic
    assert not nsg_app(SHAPES / "az-show.json").classic


def test_a_classic_nsg_saves_and_loads_back_classic(tmp_path: Path) -> None:
    nsg = load_nsgs(NSG / "classic.json")[0]
    save_nsg(nsg, tmp_path / "saved.json")
    assert load_nsgs(tmp_path / "saved.json") == [nsg]


def test_a_classic_template_resource_is_classic(tmp_path: Path) -> None:
    doc = json.loads((SHAPES / "arm-template.json").read_text())
    doc["resources"] = [{**doc["resources"][0], "type": "Microsoft.ClassicNetwork/networkSecurityGroups",
                         "properties": {"securityRules": []}}]
    assert load_nsgs(write(tmp_path, "classic-template.json", doc))[0].classic


def test_an_augmented_rule_in_a_classic_file_is_an_error_naming_file_nsg_rule_and_field(tmp_path: Path) -> None:
    doc = json.loads((NSG / "classic.json").read_text())
    doc["properties"]["securityRules"][0]["properties"]["destinationPortRanges"] = ["3389", "5986"]
    del doc["properties"]["securityRules"][0]["properties"]["destinationPortRange"]
    path = write(tmp_path, "classic.json", doc)
    with pytest.raises(ValidationErrors) as info:
        load_nsgs(path)
    assert str(info.value).startswith(f"{path}: nsg-classic/AllowRdpFromOffice: "
                                      "SecurityRuleAugmentedNotSupportedInClassic: destinationPortRanges: ")


# -- ARM templates ------------------------------------------------------------------------------------

def template_with(tmp_path: Path, source: Path = SHAPES / "arm-template.json", **changes) -> Path:
    """The template with values set at dotted paths (`resources.0.location`)."""
    doc = json.loads(source.read_text())
    for path, value in changes.items():
        target = doc
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return write(tmp_path, "template.json", doc)


@pytest.mark.parametrize("path, where", [
    ("resources.1.properties.priority", "resources[1].properties.priority"),
    ("resources.0.properties.securityRules.0.properties.sourceAddressPrefix",
     "resources[0].properties.securityRules[0].properties.sourceAddressPrefix"),
    ("resources.0.name", "resources[0].name"),
    ("resources.2.name", "resources[2].name"),
    ("resources.0.properties.flushConnection", "resources[0].properties.flushConnection"),
    ("variables.offices", "resources[0].properties.securityRules[1].properties.sourceAddressPrefixes"),
])
def test_a_deployment_time_expression_in_a_used_field_is_an_error_naming_it_and_where_it_is(
        tmp_path: Path, path: str, where: str) -> None:
    expression = "[reference('pip').ipAddress]"
    template = template_with(tmp_path, **{path: expression})
    with pytest.raises(DataplaneError) as info:
        load_nsgs(template)
    message = str(info.value)
    assert message.startswith(f"{template}: ") and f" {where}: " in message
    assert f"{expression!r}" in message and "known only at deployment time" in message


@pytest.mark.parametrize("path, value", [
    ("resources.0.location", "[resourceGroup().location]"),
    ("resources.0.tags", {"x": "[utcNow()]"}),
    ("resources.0.tags", "[resourceGroup().tags]"),
    ("resources.0.dependsOn", ["[resourceId('Microsoft.Network/applicationSecurityGroups', 'AsgApp')]"]),
    ("resources.1.dependsOn", "[variables('nowhere')]"),
    ("resources.0.apiVersion", "[string('2024-05-01')]"),
    ("resources.0.comments", "[format('{0}', 1)]"),
])
def test_expressions_in_fields_the_simulator_does_not_use_are_ignored(tmp_path: Path, path: str,
                                                                       value: object) -> None:
    assert load_nsgs(template_with(tmp_path, **{path: value}))[0] == nsg_app(SHAPES / "az-show.json")


def test_a_template_parameter_without_a_default_is_an_error_naming_it(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"parameters.httpsPorts": {"type": "array"}})
    with pytest.raises(DataplaneError, match="parameter 'httpsPorts' has no defaultValue"):
        load_nsgs(path)


def test_an_undefined_template_variable_is_an_error_naming_it_and_the_field(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"resources.0.properties.securityRules.1.properties.sourceAddressPrefixes":
                                      "[variables('partners')]"})
    with pytest.raises(DataplaneError) as info:
        load_nsgs(path)
    assert str(info.value) == (f"{path}: nsg-app/AllowAppFromOffices: "
                               "resources[0].properties.securityRules[1].properties.sourceAddressPrefixes: "
                               "variable 'partners' is not defined in the template")


def test_a_variable_that_refers_to_itself_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"variables.offices": "[variables('offices')]"})
    with pytest.raises(DataplaneError, match="refers back to itself"):
        load_nsgs(path)


def test_a_doubled_bracket_is_a_literal_string_not_an_expression(tmp_path: Path) -> None:
    """ARM's escape: `[[x]` is the string `[x]` (a description may start and end with a bracket)."""
    path = template_with(tmp_path, **{"resources.1.properties.description": "[[partner DNS]"})
    dns = next(r for r in load_nsgs(path)[0].rules if r.name == "AllowDnsV6")
    assert dns.description == "[partner DNS]"


def test_a_child_rule_of_an_nsg_the_template_does_not_define_is_an_error(tmp_path: Path) -> None:
    path = template_with(tmp_path, **{"resources.1.name": "nsg-elsewhere/AllowDnsV6"})
    with pytest.raises(DataplaneError, match="belongs to NSG 'nsg-elsewhere'"):
        load_nsgs(path)


def test_a_template_without_an_nsg_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "vnet-template.json", {"resources": [{"type": "Microsoft.Network/virtualNetworks",
                                                                  "name": "vnet"}]})
    with pytest.raises(DataplaneError, match="vnet-template.json: holds no network security group"):
        load_nsgs(path)


# -- files that cannot be used -----------------------------------------------------------------------

def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataplaneError, match="nowhere.json: cannot read"):
        load_nsgs(tmp_path / "nowhere.json")


def test_malformed_json_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", '{"name": "x",\n "properties": }')
    with pytest.raises(DataplaneError, match=r"broken.json: is not valid JSON: .* at line 2"):
        load_nsgs(path)


def test_malformed_yaml_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "name: x\n  properties: [\n")
    with pytest.raises(DataplaneError, match=r"broken.yaml: is not valid JSON or YAML at line 2"):
        load_nsgs(path)


def test_a_binary_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "capture.json"
    path.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00\xff")
    with pytest.raises(DataplaneError, match="capture.json: is not a text file"):
        load_nsgs(path)


@pytest.mark.parametrize("text", ["", "just words\n", "[1, 2]", "42"])
def test_a_document_that_holds_no_nsg_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "nothing.yaml", text)
    with pytest.raises(DataplaneError) as info:
        load_nsgs(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_document_that_is_not_an_nsg_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "vnet.json", {"name": "vnet", "type": "Microsoft.Network/virtualNetworks"})
    with pytest.raises(DataplaneError, match="is a Microsoft.Network/virtualNetworks, not a network security group"):
        load_nsgs(path)


def test_every_problem_of_every_nsg_in_a_file_is_reported_with_file_nsg_and_rule(tmp_path: Path) -> None:
    doc = json.loads((SHAPES / "az-list.json").read_text())
    doc[0]["securityRules"][0]["priority"] = 99
    doc[1]["securityRules"] = [{**doc[0]["securityRules"][2], "name": "AllowGre", "protocol": "Gre"}]
    path = write(tmp_path, "list.json", doc)
    with pytest.raises(ValidationErrors) as info:
        load_nsgs(path)
    assert [(p.file, p.nsg, p.rule, p.code) for p in info.value.problems] == [
        (str(path), "nsg-app", "AllowHttps", "SecurityRuleInvalidPriority"),
        (str(path), "nsg-other", "AllowGre", "InvalidRequestFormat")]


# -- dataplane lint -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [*ALL_SHAPES, NSG / "classic.json"], ids=lambda p: p.name)
def test_lint_accepts_a_valid_file_silently(path: Path, capsys) -> None:
    assert main(["lint", str(path)]) == 0
    assert capsys.readouterr() == ("", "")


def test_lint_prints_one_line_per_problem_naming_file_nsg_rule_code_field_and_value(capsys) -> None:
    path = NSG / "invalid.json"
    assert main(["lint", str(path)]) == 1
    out, err = capsys.readouterr()
    assert [line.split(": ")[:4] for line in out.splitlines()] == [
        [str(path), "nsg-bad/AllowSsh", "SecurityRuleInvalidPortRange", "destinationPortRange"],
        [str(path), "nsg-bad/AllowWeb", "SecurityRuleInvalidPriority", "priority"],
        [str(path), "nsg-bad/AllowFromVnet", "SecurityRuleInvalidAddressPrefix", "sourceAddressPrefix"],
        [str(path), "nsg-bad/AllowPartners", "SecurityRuleParameterContainsUnsupportedValue",
         "sourceAddressPrefixes"],
        [str(path), "nsg-bad/DenyNew", "SecurityRuleConflict", "priority"]]
    values = ["'22,80'", "4097", "'VIRTUAL_NETWORK'", "'Internet'", "DenyOld"]
    assert all(value in line for value, line in zip(values, out.splitlines()))
    assert err == "5 problems found\n"


def test_lint_reports_every_file_and_exits_1_when_any_has_problems(capsys) -> None:
    assert main(["lint", str(SHAPES / "rest.json"), str(NSG / "invalid.json"), str(NSG / "classic.json")]) == 1
    assert {line.split(": ")[0] for line in capsys.readouterr().out.splitlines()} == {str(NSG / "invalid.json")}


@pytest.mark.parametrize("name, text, message", [
    ("notes.txt", "just words\n", "is not a network security group"),
    ("broken.json", "{", "is not valid JSON"),
])
def test_lint_reports_a_file_that_is_not_an_nsg_in_one_line(tmp_path: Path, capsys, name: str, text: str,
                                                            message: str) -> None:
    path = write(tmp_path, name, text)
    assert main(["lint", str(path)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{path}: ") and message in line


def test_lint_reports_a_missing_file_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["lint", str(tmp_path / "nowhere.json")]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'nowhere.json'}: cannot read: No such file or directory\n"


def test_the_installed_command_lints_without_a_traceback(tmp_path: Path) -> None:
    """The console script, as a user runs it: problems on stdout, the count on stderr, exit 1."""
    command = Path(sys.executable).with_name("dataplane")
    done = subprocess.run([str(command), "lint", str(NSG / "invalid.json"), str(tmp_path / "nowhere.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 6 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr == "6 problems found\n"
