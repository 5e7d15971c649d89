"""ARM templates are evaluated as Azure Resource Manager evaluates them: its JSON, every pre-deployment function,
copy loops, conditions and nested deployments; a value only known at deployment is an error naming the
expression and where it is, never a guess."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from dataplane import DataplaneError, ValidationErrors, load_nsgs, load_scenario
from dataplane.arm import (DeploymentTimeError, DeploymentTimeValue, MissingParameterError, TemplateError,
                           evaluate, parse, template_nsgs, without_json_extensions)
from dataplane.cli import main
from dataplane.documents import read_document
from dataplane.nsg import nsgs_from_document


def ev(expression: str, **template) -> object:
    return evaluate(expression, template)


def rule(name: str, priority: int = 100, **fields) -> dict:
    props = {"priority": priority, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
             "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
             "destinationPortRange": "22", **fields}
    return {"name": name, "properties": props}


def nsg(name: object = "nsg1", rules: object = (), **extra) -> dict:
    return {"type": "Microsoft.Network/networkSecurityGroups", "apiVersion": "2024-05-01", "name": name,
            "properties": {"securityRules": list(rules) if isinstance(rules, tuple) else rules}, **extra}


def template(*resources: dict, **sections) -> dict:
    return {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0", **sections, "resources": list(resources)}


def loaded(doc: dict, parameters: dict | None = None) -> dict[str, list[str]]:
    """NSG name → rule names, as the NSG loader builds them."""
    return {n.name: [r.name for r in n.rules] for n in nsgs_from_document(doc, file="t.json", parameters=parameters)}


# -- ARM's JSON ---------------------------------------------------------------------------------------

def test_comments_and_trailing_commas_are_read_as_arm_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{\n  // the NSG\n  "name": "nsg1", /* inline */\n  "properties": {"securityRules": [],},\n}\n')
    assert read_document(path) == {"name": "nsg1", "properties": {"securityRules": []}}


def test_comment_markers_inside_strings_are_text() -> None:
    text = '{"a": "http://x/*y*/", "b": "[concat(\'//\', \',]\')]",}'
    assert json.loads(without_json_extensions(text)) == {"a": "http://x/*y*/", "b": "[concat('//', ',]')]"}


def test_a_line_break_inside_a_string_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"name": "[concat(\'a\',\n  \'b\')]"}')
    assert evaluate(read_document(path)["name"]) == "ab"


def test_a_json_error_after_a_comment_names_its_true_line(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{\n/* one\n two */\n "a": x\n}')
    with pytest.raises(DataplaneError, match="is not valid JSON: .* at line 4 column"):
        read_document(path)


# -- expression syntax ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("[[not an expression]", "[not an expression]"),
    ("[TEMP] rule", "[TEMP] rule"),
    ("[[TEMP] rule", "[[TEMP] rule"),
    ("plain", "plain"),
    ("[", "["),
    ("", ""),
])
def test_strings_that_are_not_expressions_are_literals_with_the_double_bracket_escape_undone(
        value: str, expected: str) -> None:
    assert evaluate(value) == expected


def test_a_quote_inside_a_string_literal_is_doubled() -> None:
    assert ev("[concat('it''s', ' ok')]") == "it's ok"


def test_nested_calls_member_and_index_access_compose() -> None:
    variables = {"subnets": [{"name": "web", "ports": ["80", "443"]}, {"name": "db", "ports": ["1433"]}]}
    assert ev("[variables('subnets')[1].name]", variables=variables) == "db"
    assert ev("[variables('subnets')[0]['ports'][sub(length(variables('subnets')[0].ports), 1)]]",
              variables=variables) == "443"


def test_whitespace_inside_an_expression_is_ignored() -> None:
    assert ev("[ concat( 'a' , 'b' ) ]") == "ab"


@pytest.mark.parametrize("expression", ["[concat('a'", "[concat('a')", "[concat('a) ]", "['a' 'b']", "[1 +]",
                                        "[variables('x').]"])
def test_a_syntax_error_is_a_template_error_naming_the_expression(expression: str) -> None:
    with pytest.raises(TemplateError, match="syntax error"):
        parse(expression)


def test_function_names_are_case_insensitive() -> None:
    assert ev("[CONCAT(toLower('A'), ToUpper('b'))]") == "aB"


def test_an_unknown_function_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match=r"frobnicate\(\) is not a template function"):
        ev("[frobnicate('x')]")


# -- functions known before deployment -------------------------------------------------------------------

@pytest.mark.parametrize("expression, expected", [
    ("[concat('nsg-', 'web', 1)]", "nsg-web1"),
    ("[concat(createArray(1, 2), createArray(3))]", [1, 2, 3]),
    ("[format('{0}-{1:D3}', 'vm', 7)]", "vm-007"),
    ("[format('{{literal}} {0}', 'x')]", "{literal} x"),
    ("[replace('a-b-c', '-', '_')]", "a_b_c"),
    ("[toLower('WebNSG')]", "webnsg"),
    ("[toUpper('WebNSG')]", "WEBNSG"),
    ("[substring('10.0.1.0/24', 0, 8)]", "10.0.1.0"),
    ("[substring('abc', 1)]", "bc"),
    ("[split('10.0.0.0/16,10.1.0.0/16', ',')]", ["10.0.0.0/16", "10.1.0.0/16"]),
    ("[split('a;b,c', createArray(';', ','))]", ["a", "b", "c"]),
    ("[join(createArray('80', '443'), ',')]", "80,443"),
    ("[string(22)]", "22"),
    ("[string(true())]", "True"),
    ("[string(createObject('a', 1))]", '{"a":1}'),
    ("[int('4096')]", 4096),
    ("[bool('true')]", True),
    ("[bool(0)]", False),
    ("[json('{\"a\": [1, null]}')]", {"a": [1, None]}),
    ("[json('null')]", None),
    ("[length('abc')]", 3),
    ("[length(createArray(1, 2))]", 2),
    ("[length(createObject('a', 1))]", 1),
    ("[add(100, 5)]", 105),
    ("[sub(10, 3)]", 7),
    ("[mul(3, 4)]", 12),
    ("[div(7, 2)]", 3),
    ("[div(-7, 2)]", -3),
    ("[mod(7, 3)]", 1),
    ("[mod(-7, 3)]", -1),
    ("[equals('a', 'a')]", True),
    ("[equals('a', 'A')]", False),
    ("[equals(1, '1')]", False),
    ("[equals(createArray(1), createArray(1))]", True),
    ("[not(equals(1, 2))]", True),
    ("[and(true(), equals(1, 1), not(false()))]", True),
    ("[or(false(), equals(1, 2))]", False),
    ("[if(equals(1, 1), 'yes', 'no')]", "yes"),
    ("[if(false(), 'yes', 'no')]", "no"),
    ("[contains('Internet', 'net')]", True),
    ("[contains(createArray('80', '443'), '443')]", True),
    ("[contains(createObject('Key', 1), 'key')]", True),
    ("[empty('')]", True),
    ("[empty(createArray())]", True),
    ("[empty(createObject('a', 1))]", False),
    ("[first(createArray('a', 'b'))]", "a"),
    ("[last('xyz')]", "z"),
    ("[union(createArray(1, 2), createArray(2, 3))]", [1, 2, 3]),
    ("[union(createObject('a', 1, 'b', 2), createObject('b', 3))]", {"a": 1, "b": 3}),
    ("[intersection(createArray(1, 2, 3), createArray(2, 3, 4))]", [2, 3]),
    ("[createArray('a', 1)]", ["a", 1]),
    ("[createObject('a', createArray(1))]", {"a": [1]}),
    ("[range(100, 3)]", [100, 101, 102]),
    ("[take(createArray(1, 2, 3), 2)]", [1, 2]),
    ("[skip('abcdef', 4)]", "ef"),
    ("[coalesce(null(), null(), 'x')]", "x"),
    ("[greater(10, 9)]", True),
    ("[lessOrEquals('a', 'b')]", True),
    ("[indexOf('AbC', 'c')]", 2),
    ("[lastIndexOf(createArray(1, 2, 1), 1)]", 2),
    ("[startsWith('Internet', 'INTER')]", True),
    ("[endsWith('nsg-web', 'WEB')]", True),
    ("[padLeft(7, 3, '0')]", "007"),
    ("[trim('  x ')]", "x"),
    ("[min(createArray(3, 1, 2))]", 1),
    ("[max(3, 9)]", 9),
    ("[array('x')]", ["x"]),
    ("[base64('hi')]", "aGk="),
    ("[base64ToString('aGk=')]", "hi"),
    ("[uriComponent('a b/c')]", "a%20b%2Fc"),
    ("[uri('https://example.org/a/b.json', 'c.json')]", "https://example.org/a/c.json"),
    ("[items(createObject('b', 2, 'a', 1))]", [{"key": "a", "value": 1}, {"key": "b", "value": 2}]),
    ("[map(range(0, 2), lambda('i', concat('r', string(lambdaVariables('i')))))]", ["r0", "r1"]),
    ("[filter(createArray(1, 2, 3), lambda('x', greater(lambdaVariables('x'), 1)))]", [2, 3]),
    ("[reduce(createArray(1, 2, 3), 0, lambda('sum', 'x', add(lambdaVariables('sum'), lambdaVariables('x'))))]", 6),
    ("[tryGet(createObject('a', createObject('b', 1)), 'a', 'b')]", 1),
    ("[tryGet(createObject('a', 1), 'missing')]", None),
])
def test_each_pre_deployment_function_computes_what_azure_documents(expression: str, expected: object) -> None:
    assert ev(expression) == expected


def test_unique_string_is_13_lower_case_base32_characters_and_stable() -> None:
    value = ev("[uniqueString(resourceGroup().id, 'vm')]")
    assert len(value) == 13 and value == value.lower() and set(value) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert ev("[uniqueString(resourceGroup().id, 'vm')]") == value != ev("[uniqueString(resourceGroup().id, 'db')]")


def test_guid_is_a_stable_name_based_uuid() -> None:
    value = ev("[guid('a', 'b')]")
    assert uuid.UUID(value).version == 5 and ev("[guid('a', 'b')]") == value != ev("[guid('a', 'c')]")


def test_resource_id_builds_the_id_from_type_and_names() -> None:
    assert ev("[resourceId('Microsoft.Network/applicationSecurityGroups', 'asg-web')]") == (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/resourceGroup/providers/"
        "Microsoft.Network/applicationSecurityGroups/asg-web")
    assert ev("[resourceId('other-rg', 'Microsoft.Network/networkSecurityGroups/securityRules', 'nsg', 'r1')]") == (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/other-rg/providers/"
        "Microsoft.Network/networkSecurityGroups/nsg/securityRules/r1")
    assert ev("[resourceId('sub1', 'rg1', 'Microsoft.Network/virtualNetworks', 'v')]").startswith(
        "/subscriptions/sub1/resourceGroups/rg1/")


def test_resource_group_and_subscription_are_placeholders() -> None:
    assert ev("[resourceGroup().name]") == "resourceGroup"
    assert ev("[resourceGroup().location]") == "westus"
    assert ev("[subscription().subscriptionId]") == "00000000-0000-0000-0000-000000000000"


def test_a_function_given_the_wrong_kind_of_argument_is_an_error_naming_the_call() -> None:
    with pytest.raises(TemplateError, match=r"add\(\"a\", 1\) cannot be evaluated"):
        ev("[add('a', 1)]")


def test_a_missing_property_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match="has no property 'nope'"):
        ev("[createObject('a', 1).nope]")


def test_an_index_outside_an_array_is_an_error() -> None:
    with pytest.raises(TemplateError, match="index 2 is outside the array of 2 elements"):
        ev("[createArray(1, 2)[2]]")


# -- parameters, variables, scope -----------------------------------------------------------------------

def test_parameter_and_variable_names_are_case_insensitive() -> None:
    doc = {"parameters": {"vmName": {"type": "string", "defaultValue": "vm1"}},
           "variables": {"nsgName": "[concat(parameters('VMNAME'), '-nsg')]"}}
    assert evaluate("[variables('NSGname')]", doc) == "vm1-nsg"


def test_a_given_parameter_value_wins_over_the_default() -> None:
    doc = {"parameters": {"vmName": {"type": "string", "defaultValue": "vm1"}}}
    assert evaluate("[parameters('vmName')]", doc, parameters={"vmName": "web"}) == "web"


def test_strings_given_for_bool_and_int_parameters_are_converted_as_arm_does() -> None:
    doc = {"parameters": {"flush": {"type": "bool"}, "count": {"type": "int"}}}
    assert evaluate("[parameters('flush')]", doc, parameters={"flush": "True"}) is True
    assert evaluate("[parameters('count')]", doc, parameters={"count": "3"}) == 3


def test_a_value_outside_allowed_values_is_an_error_naming_the_parameter() -> None:
    doc = {"parameters": {"tier": {"type": "string", "allowedValues": ["web", "db"]}}}
    with pytest.raises(TemplateError, match="parameter 'tier' is \"app\", not one of its allowedValues"):
        evaluate("[parameters('tier')]", doc, parameters={"tier": "app"})


def test_a_parameter_without_default_or_value_is_an_error_naming_it_where_it_is_used() -> None:
    doc = template(nsg("[parameters('nsgName')]"), parameters={"nsgName": {"type": "string"}})
    found = template_nsgs(doc, file="t.json")
    [problem] = found.problems
    assert isinstance(problem, MissingParameterError)
    assert str(problem) == ("t.json: resources[0].name: parameter 'nsgName' has no defaultValue in the template and "
                            "no value was given (use a parameters file)")


def test_a_missing_parameter_in_a_variable_harms_only_the_fields_that_use_it() -> None:
    doc = template(nsg("[variables('settings').nsg]"), parameters={"password": {"type": "securestring"}},
                   variables={"settings": {"nsg": "nsg1", "password": "[parameters('password')]"}})
    assert loaded(doc) == {"nsg1": []}


def test_variables_may_refer_to_other_variables() -> None:
    doc = {"variables": {"prefix": "app", "nsgName": "[concat(variables('prefix'), '-nsg')]"}}
    assert evaluate("[variables('nsgName')]", doc) == "app-nsg"


def test_a_variable_cycle_is_an_error_not_a_crash() -> None:
    doc = {"variables": {"a": "[variables('b')]", "b": "[variables('a')]"}}
    with pytest.raises(TemplateError, match="refers back to itself"):
        evaluate("[variables('a')]", doc)


def test_a_user_defined_function_named_like_a_list_function_is_the_users() -> None:
    doc = {"functions": [{"namespace": "listing", "members": {"all": {
        "parameters": [], "output": {"type": "array", "value": "[createArray(1)]"}}}}]}
    assert evaluate("[listing.all()]", doc) == [1]


def test_a_user_defined_function_sees_its_own_parameters() -> None:
    doc = {"functions": [{"namespace": "net", "members": {"nsgName": {
        "parameters": [{"name": "base", "type": "string"}],
        "output": {"type": "string", "value": "[concat(toLower(parameters('base')), '-nsg')]"}}}}]}
    assert evaluate("[net.nsgName('Web')]", doc) == "web-nsg"


# -- deployment-time values ------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, what", [
    ("[reference('pip').ipAddress]", "reference()"),
    ("[listKeys('st', '2020-01-01').keys[0].value]", "listKeys()"),
    ("[newGuid()]", "newGuid()"),
    ("[utcNow()]", "utcNow()"),
    ("[deployment().properties.templateLink.uri]", "deployment().properties"),
])
def test_a_deployment_time_value_in_a_used_field_is_an_error_naming_the_expression_and_path(
        expression: str, what: str) -> None:
    doc = template(nsg(rules=[rule("r1", sourceAddressPrefix=expression)]))
    [problem] = template_nsgs(doc, file="t.json").problems
    assert isinstance(problem, DeploymentTimeError)
    assert (problem.nsg, problem.rule) == ("nsg1", "r1")
    assert problem.field == "resources[0].properties.securityRules[0].properties.sourceAddressPrefix"
    assert repr(expression) in problem.message and what in problem.message


def test_a_deployment_time_value_through_a_parameter_default_names_where_it_was_written() -> None:
    doc = template(nsg(rules=[rule("r1", sourceAddressPrefix="[parameters('admin')]")]),
                   parameters={"admin": {"type": "string", "defaultValue": "[reference('pip').ipAddress]"}})
    [problem] = template_nsgs(doc).problems
    assert "(written at parameters.admin.defaultValue)" in problem.message


def test_a_deployment_time_value_propagates_through_functions_without_being_guessed() -> None:
    value = ev("[concat(toLower(reference('x').name), '-nsg')]")
    assert isinstance(value, DeploymentTimeValue) and value.expression.startswith("[concat(")


def test_deployment_time_values_in_fields_the_simulator_does_not_use_are_never_read() -> None:
    doc = template(nsg(rules=[rule("r1", description="[reference('x').note]")], location="[utcNow()]",
                       tags={"at": "[utcNow()]"}, dependsOn=["[reference('y').id]"]))
    nsgs = nsgs_from_document(doc)
    assert nsgs[0].rules[0].description == "[reference('x').note]"


def test_a_key_vault_reference_in_a_parameters_file_is_a_deployment_time_value(tmp_path: Path) -> None:
    doc = template(nsg("[parameters('name')]"), parameters={"name": {"type": "string"}})
    (tmp_path / "t.json").write_text(json.dumps(doc))
    (tmp_path / "p.json").write_text(json.dumps({"parameters": {"name": {"reference": {"keyVault": {"id": "kv"}}}}}))
    with pytest.raises(ValidationErrors, match="Key Vault secret reference"):
        load_nsgs(tmp_path / "t.json", parameters=tmp_path / "p.json")


def test_if_evaluates_only_the_branch_it_takes() -> None:
    assert ev("[if(true(), 'x', reference('y').z)]") == "x"


# -- copy loops and conditions ----------------------------------------------------------------------------

def test_a_resource_copy_loop_creates_one_nsg_per_iteration() -> None:
    doc = template(nsg("[concat('nsg-', copyIndex(1))]", [rule("[concat('r', copyIndex())]")],
                       copy={"name": "nsgLoop", "count": 3}))
    assert loaded(doc) == {"nsg-1": ["r0"], "nsg-2": ["r1"], "nsg-3": ["r2"]}


def test_a_copy_loop_of_zero_creates_nothing() -> None:
    doc = template(nsg("[concat('nsg-', copyIndex())]", copy={"name": "l", "count": 0}), nsg("other"))
    assert loaded(doc) == {"other": []}


def test_a_property_copy_loop_builds_one_rule_per_element() -> None:
    ports = ["22", "80", "443"]
    resource = nsg(rules=None)
    resource["properties"] = {"copy": [{"name": "securityRules", "count": "[length(parameters('ports'))]", "input": {
        "name": "[concat('allow-', parameters('ports')[copyIndex('securityRules')])]",
        "properties": {**rule("x")["properties"], "priority": "[add(100, copyIndex('securityRules'))]",
                       "destinationPortRange": "[parameters('ports')[copyIndex('securityRules')]]"}}}]}
    doc = template(resource, parameters={"ports": {"type": "array", "defaultValue": ports}})
    [built] = nsgs_from_document(doc)
    assert [(r.name, r.priority, r.destination_port_range) for r in built.rules] == [
        ("allow-22", 100, "22"), ("allow-80", 101, "80"), ("allow-443", 102, "443")]


def test_a_variable_copy_loop_builds_an_array_of_rules() -> None:
    doc = template(nsg(rules="[variables('rules')]"), variables={"copy": [{"name": "rules", "count": 2, "input": {
        "name": "[concat('r', copyIndex('rules'))]",
        "properties": {**rule("x")["properties"], "priority": "[add(200, copyIndex('rules'))]"}}}]})
    assert loaded(doc) == {"nsg1": ["r0", "r1"]}


def test_copy_index_outside_a_loop_is_an_error() -> None:
    with pytest.raises(TemplateError, match="outside a resource copy loop"):
        ev("[copyIndex()]")


def test_a_false_condition_means_the_resource_does_not_exist() -> None:
    doc = template(nsg("new", condition="[equals(parameters('mode'), 'new')]"), nsg("kept"),
                   parameters={"mode": {"type": "string", "defaultValue": "existing"}})
    assert loaded(doc) == {"kept": []}
    assert loaded(doc, {"mode": "new"}) == {"new": [], "kept": []}


def test_a_condition_known_only_at_deployment_is_an_error() -> None:
    doc = template(nsg(condition="[equals(reference('x').state, 'on')]"))
    with pytest.raises(ValidationErrors, match=r"resources\[0\].condition: .*known only at deployment time"):
        nsgs_from_document(doc)


def test_an_existing_resource_in_a_symbolic_template_declares_nothing() -> None:
    doc = {"languageVersion": "2.0", "contentVersion": "1.0.0.0", "resources": {
        "old": {**nsg("old"), "existing": True}, "web": nsg("web", [rule("r1")])}}
    assert loaded(doc) == {"web": ["r1"]}


# -- child rules and nested deployments ----------------------------------------------------------------------

def test_child_rules_join_their_nsg_at_top_level_or_nested() -> None:
    top = {"type": "Microsoft.Network/networkSecurityGroups/securityRules", "name": "[concat('nsg1', '/top')]",
           "properties": rule("x", 200)["properties"]}
    nested = {"type": "securityRules", "name": "nested", "properties": rule("x", 300)["properties"]}
    doc = template(nsg(resources=[nested]), top)
    assert loaded(doc) == {"nsg1": ["nested", "top"]}


def test_a_child_rule_replaces_the_inline_rule_of_the_same_name_as_its_put_does() -> None:
    child = {"type": "Microsoft.Network/networkSecurityGroups/securityRules", "name": "nsg1/r1",
             "properties": rule("x", 300)["properties"]}
    [built] = nsgs_from_document(template(nsg(rules=[rule("r1", 100)]), child))
    assert [(r.name, r.priority) for r in built.rules] == [("r1", 300)]


def test_an_inner_scoped_nested_deployment_gets_the_parameters_passed_down() -> None:
    inner = template(nsg("[parameters('name')]", [rule("[variables('ruleName')]")]),
                     parameters={"name": {"type": "string"}}, variables={"ruleName": "inner-rule"})
    deployment = {"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "d",
                  "properties": {"mode": "Incremental", "expressionEvaluationOptions": {"scope": "inner"},
                                 "parameters": {"name": {"value": "[concat(variables('ruleName'), '-nsg')]"}},
                                 "template": inner}}
    doc = template(deployment, variables={"ruleName": "outer"})
    assert loaded(doc) == {"outer-nsg": ["inner-rule"]}


def test_an_outer_scoped_nested_deployment_sees_the_parent_variables() -> None:
    inner = template(nsg("[variables('name')]"), variables={"name": "ignored"})
    deployment = {"type": "Microsoft.Resources/deployments", "name": "d", "properties": {"template": inner}}
    assert loaded(template(deployment, variables={"name": "from-parent"})) == {"from-parent": []}


def test_a_linked_template_is_not_followed() -> None:
    deployment = {"type": "Microsoft.Resources/deployments", "name": "d",
                  "properties": {"templateLink": {"uri": "https://example.org/nsg.json"}}}
    with pytest.raises(DataplaneError, match=r"holds no network security group \(linked templates, not fetched, "
                                             r"are deployed at resources\[0\]\)"):
        nsgs_from_document(template(deployment))


def test_bicep_symbolic_resources_are_read_as_an_object() -> None:
    doc = {"languageVersion": "2.0", "contentVersion": "1.0.0.0",
           "parameters": {"n": {"type": "int", "defaultValue": 2}},
           "resources": {"nsgs": {**nsg("[format('nsg{0}', copyIndex())]"), "copy": {"name": "nsgs",
                                                                                    "count": "[parameters('n')]"}}}}
    assert loaded(doc) == {"nsg0": [], "nsg1": []}


def test_properties_given_as_an_expression_are_evaluated() -> None:
    resource = nsg()
    resource["properties"] = "[variables('p')]"
    doc = template(resource, variables={"p": {"securityRules": [rule("r1")], "flushConnection": True}})
    [built] = nsgs_from_document(doc)
    assert built.flush_connection and [r.name for r in built.rules] == ["r1"]


def test_properties_that_are_not_an_object_are_an_error_not_a_crash() -> None:
    resource = nsg()
    resource["properties"] = "[variables('p')]"
    with pytest.raises(ValidationErrors, match="properties is a string, not an object"):
        nsgs_from_document(template(resource, variables={"p": "oops"}))


# -- shapes users paste, booleans, tags ------------------------------------------------------------------------

def test_a_rest_list_body_loads_every_nsg() -> None:
    doc = {"value": [{"name": "a", "properties": {"securityRules": [rule("r1")]}}, {"name": "b", "properties": {}}]}
    assert [n.name for n in nsgs_from_document(doc)] == ["a", "b"]


def test_a_bare_list_of_rules_needs_the_nsg_name() -> None:
    rules = [{**rule("r1")["properties"], "name": "r1",
              "type": "Microsoft.Network/networkSecurityGroups/securityRules"}]
    with pytest.raises(DataplaneError, match="give the NSG's name"):
        nsgs_from_document(rules)
    [built] = nsgs_from_document(rules, name="web")
    assert (built.name, [r.name for r in built.rules]) == ("web", ["r1"])


def test_name_picks_one_nsg_of_several_and_ignores_the_others_problems() -> None:
    doc = template(nsg("good", [rule("r1")]), nsg("bad", [rule("r1", sourceAddressPrefix="[reference('x').y]")]))
    assert [n.name for n in nsgs_from_document(doc, name="GOOD")] == ["good"]
    with pytest.raises(DataplaneError, match="holds no NSG named 'other'"):
        nsgs_from_document(template(nsg("good")), name="other")


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("false", False), ("TRUE", True),
                                             (None, False)])
def test_flush_connection_takes_json_booleans_their_strings_and_null_for_unset(value: object, expected: bool) -> None:
    doc = {"name": "n", "properties": {"flushConnection": value, "securityRules": []}}
    assert nsgs_from_document(doc)[0].flush_connection is expected


@pytest.mark.parametrize("value", ["yes", 1, "", [True]])
def test_flush_connection_of_another_value_is_an_error_naming_the_field(value: object) -> None:
    doc = {"name": "n", "properties": {"flushConnection": value}}
    with pytest.raises(ValidationErrors, match="n: InvalidRequestFormat: flushConnection: .* is not a boolean"):
        nsgs_from_document(doc)


def test_service_tags_match_case_insensitively_but_underscore_spellings_are_refused() -> None:
    internet = rule("r1", sourceAddressPrefix="INTERNET")
    [built] = nsgs_from_document({"name": "n", "properties": {"securityRules": [internet]}})
    assert built.rules[0].source_address_prefix == "INTERNET"
    with pytest.raises(ValidationErrors, match="VIRTUAL_NETWORK"):
        nsgs_from_document({"name": "n", "properties": {"securityRules": [
            rule("r1", sourceAddressPrefix="VIRTUAL_NETWORK")]}})


# -- lint and the commands ------------------------------------------------------------------------------

def write(tmp_path: Path, name: str, doc: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_lint_takes_a_parameters_file(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "t.json", template(nsg("[parameters('n')]"), parameters={"n": {"type": "string"}}))
    params = write(tmp_path, "p.json", {"parameters": {"n": {"value": "web"}}})
    assert main(["lint", str(path)]) == 1
    assert main(["lint", "--json", "--parameters", str(params), str(path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"file": str(path), "ok": True, "nsgs": [{"name": "web", "rules": 0}], "problems": []}


def test_lint_json_lists_every_problem_of_a_file_with_its_parts(tmp_path: Path, capsys) -> None:
    doc = template(nsg("a", [rule("r1", sourceAddressPrefix="[reference('x').ip]"), rule("r2", priority=5)]),
                   nsg("b", [rule("ok")]))
    path = write(tmp_path, "t.json", doc)
    assert main(["lint", "--json", str(path)]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["nsgs"] == [{"name": "a", "rules": 0}, {"name": "b", "rules": 1}]
    assert [(p["nsg"], p["rule"], p["code"]) for p in result["problems"]] == [
        ("a", "r1", None), ("a", "r2", "SecurityRuleInvalidPriority")]
    assert result["problems"][0]["field"] == "resources[0].properties.securityRules[0].properties.sourceAddressPrefix"


def test_check_takes_a_parameters_file_and_a_name(tmp_path: Path, capsys) -> None:
    doc = template(nsg("[parameters('n')]", [rule("ssh", destinationPortRange="[parameters('port')]")]),
                   nsg("other"), parameters={"n": {"type": "string"}, "port": {"type": "int", "defaultValue": 22}})
    path = write(tmp_path, "t.json", doc)
    params = write(tmp_path, "p.json", {"parameters": {"n": {"value": "web"}, "port": {"value": "2222"}}})
    assert main(["check", "--nsg", str(path), "--parameters", str(params), "--name", "web", "--direction", "inbound",
                 "tcp 203.0.113.7:50000 > 10.0.0.4:2222"]) == 0
    assert "web/ssh" in capsys.readouterr().out


def test_parameters_with_a_scenario_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["check", "--scenario", "x.yaml", "--parameters", "p.json", "tcp 1.2.3.4:1 > 5.6.7.8:2"]) == 2
    assert "--parameters goes with --nsg" in capsys.readouterr().err


def test_a_scenario_nsg_entry_takes_parameters_beside_its_file(tmp_path: Path, capsys) -> None:
    write(tmp_path, "t.json", template(nsg("web", [rule("[parameters('r')]")]), parameters={"r": {"type": "string"}}))
    write(tmp_path, "p.json", {"parameters": {"r": {"value": "from-params"}}})
    scenario = tmp_path / "s.yaml"
    scenario.write_text("virtual_networks:\n- name: v\n  address_space: [10.0.0.0/16]\n  subnets:\n"
                        "  - {name: s, prefix: 10.0.0.0/24, nsg: web}\n"
                        "network_security_groups:\n- {name: web, file: t.json, parameters: p.json}\n")
    assert main(["lint", str(scenario)]) == 0
    assert [r.name for r in load_scenario(scenario).network_security_groups["web"].rules] == ["from-params"]


@pytest.mark.parametrize("expression, expected", [
    ("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'r')]",
     "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Authorization/roleDefinitions/r"),
    ("[tenantResourceId('Microsoft.Management/managementGroups', 'mg')]",
     "/providers/Microsoft.Management/managementGroups/mg"),
    ("[extensionResourceId('/x/y', 'Microsoft.Authorization/locks', 'l')]",
     "/x/y/providers/Microsoft.Authorization/locks/l"),
    ("[environment().suffixes.storage]", "core.windows.net"),
    ("[format('{0:N0} rules', 1000)]", "1,000 rules"),
    ("[format('{0,5}|', 'ab')]", "   ab|"),
    ("[dataUriToString(dataUri('hi'))]", "hi"),
    ("[float('1.5')]", 1.5),
    ("[lastIndexOf('a-b-c', '-')]", 3),
    ("[flatten(createArray(createArray(1), createArray(2, 3)))]", [1, 2, 3]),
    ("[objectKeys(createObject('a', 1, 'b', 2))]", ["a", "b"]),
    ("[shallowMerge(createArray(createObject('a', 1), createObject('b', 2)))]", {"a": 1, "b": 2}),
    ("[sort(createArray(3, 1, 2), lambda('x', 'y', less(lambdaVariables('x'), lambdaVariables('y'))))]", [1, 2, 3]),
    ("[toObject(createArray('a', 'b'), lambda('x', lambdaVariables('x')), lambda('x', toUpper(lambdaVariables('x'))))]",
     {"a": "A", "b": "B"}),
    ("[base64ToJson(base64('{\"a\": 1}'))]", {"a": 1}),
    ("[uriComponentToString('a%20b')]", "a b"),
    ("[split('a', ',')]", ["a"]),
    ("[indexFromEnd(createArray(1, 2, 3), 1)]", 3),
    ("[tryIndexFromEnd(createArray(1), 2)]", None),
    ("[parseCidr('10.144.0.0/20')]", {"network": "10.144.0.0", "netmask": "255.255.240.0",
                                      "broadcast": "10.144.15.255", "firstUsable": "10.144.0.1",
                                      "lastUsable": "10.144.15.254", "cidr": 20}),
    ("[cidrSubnet('10.144.0.0/20', 24, 3)]", "10.144.3.0/24"),
    ("[cidrSubnet('fdad:3236:5555::/48', 52, 1)]", "fdad:3236:5555:1000::/52"),
    ("[cidrHost('10.144.3.0/24', 0)]", "10.144.3.1"),
    ("[mapValues(createObject('a', 'x'), lambda('v', toUpper(lambdaVariables('v'))))]", {"a": "X"}),
    ("[groupBy(createArray('ab', 'ac', 'b'), lambda('s', first(lambdaVariables('s'))))]",
     {"a": ["ab", "ac"], "b": ["b"]}),
    ("[dateTimeFromEpoch(1683040573)]", "2023-05-02T15:16:13Z"),
    ("[dateTimeToEpoch('2023-05-02T15:16:13Z')]", 1683040573),
])
def test_resource_ids_cidrs_lambdas_and_the_other_functions_compute_as_documented(expression: str, expected: object) -> None:
    assert ev(expression) == expected


@pytest.mark.parametrize("expression, message", [
    ("[json('{')]", r"json\(\"\{\"\) cannot be evaluated"),
    ("[div(1, 0)]", r"div\(1, 0\) cannot be evaluated"),
    ("[substring('abc', 2, 5)]", "lie outside the string"),
    ("[range(0, 10001)]", "between 0 and 10000"),
    ("[format('{1}', 'a')]", r"format\(\"\{1\}\", \"a\"\) cannot be evaluated"),
    ("[resourceId('a', 'b')]", "no argument is a resource type"),
    ("[not('maybe')]", "needs a boolean"),
    ("[lambdaVariables('x')]", "outside a lambda"),
    ("[cidrHost('fd00::/64', 0)]", "IPv6 network is not evaluated here"),
    ("[lambda()]", r"lambda\(\) cannot be evaluated"),
    ("[tryGet()]", r"tryGet\(\) cannot be evaluated"),
    ("[dateTimeAdd('2020-01-01', 'P1D')]", r"dateTimeAdd\(\) is not evaluated by this simulator"),
])
def test_a_function_that_cannot_compute_is_an_error_naming_the_call(expression: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        ev(expression)


def test_a_copy_count_above_arms_limit_is_an_error() -> None:
    doc = template(nsg("[concat('n', copyIndex())]", copy={"name": "l", "count": 801}))
    [problem] = template_nsgs(doc).problems
    assert problem.field == "resources[0].copy.count" and "from 0 to 800" in problem.message


def test_an_nsg_declared_twice_in_one_template_is_an_error_as_in_azure() -> None:
    [problem] = template_nsgs(template(nsg("web"), nsg("web"))).problems
    assert problem.field == "resources[1].name" and "declared again (first at resources[0])" in problem.message


def test_an_empty_nsg_name_is_an_error_naming_the_field() -> None:
    [problem] = template_nsgs(template(nsg("[parameters('n')]"), parameters={"n": {"type": "string",
                                                                                "defaultValue": ""}})).problems
    assert problem.field == "resources[0].name" and "an NSG needs a name" in problem.message


def test_a_deeply_nested_expression_is_an_error_not_a_crash() -> None:
    expression = "[" + "concat(" * 3000 + "'x'" + ")" * 3000 + "]"
    with pytest.raises(TemplateError):
        ev(expression)


def test_another_resources_deployment_time_condition_or_loop_does_not_matter() -> None:
    vm = {"type": "Microsoft.Compute/virtualMachines", "name": "vm", "condition": "[reference('x').on]",
          "copy": {"name": "vms", "count": "[length(reference('y').list)]"}}
    assert loaded(template(vm, nsg("web"))) == {"web": []}


def test_a_nullable_parameter_without_value_is_null() -> None:
    doc = {"parameters": {"rules": {"type": "array", "nullable": True}}}
    assert evaluate("[coalesce(parameters('rules'), createArray())]", doc) == []


def test_explain_takes_a_parameters_file(tmp_path: Path, capsys) -> None:
    doc = template(nsg("[parameters('n')]", [rule("ssh")]), parameters={"n": {"type": "string"}})
    path = write(tmp_path, "t.json", doc)
    params = write(tmp_path, "p.json", {"parameters": {"n": {"value": "web"}}})
    assert main(["explain", "--json", "--nsg", str(path), "--parameters", str(params), "--direction", "inbound",
                 "tcp 203.0.113.7:50000 > 10.0.0.4:22"]) == 0
    assert json.loads(capsys.readouterr().out)["nsgs"][0]["nsg"] == "web"


def test_lint_gives_parameters_to_templates_only(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "t.json", template(nsg("[parameters('n')]"), parameters={"n": {"type": "string"}}))
    plain = write(tmp_path, "plain.json", {"name": "other", "properties": {"securityRules": [rule("r1")]}})
    params = write(tmp_path, "p.json", {"parameters": {"n": {"value": "web"}}})
    assert main(["lint", "--json", "--parameters", str(params), str(path), str(plain)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["file"], r["nsgs"]) for r in lines] == [(str(path), [{"name": "web", "rules": 0}]),
                                                      (str(plain), [{"name": "other", "rules": 1}])]


def test_lint_json_reports_an_unreadable_file_as_one_problem(tmp_path: Path, capsys) -> None:
    assert main(["lint", "--json", str(tmp_path / "nowhere.json")]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["nsgs"] == [] and result["problems"][0]["message"].startswith("cannot read")


def test_scenario_parameters_without_a_file_is_an_error_naming_the_entry(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("network_security_groups:\n- {name: web, parameters: p.json, security_rules: []}\n")
    with pytest.raises(DataplaneError, match=r"network_security_groups\[0\]\.parameters: parameters go with `file`"):
        load_scenario(scenario)
