"""The public Azure quickstart templates that declare NSGs (../shared/realworld/arm-quickstart, each deployed
by that collection's CI) load as Azure deploys them: with their parameters file where one exists; a template
is refused only for a value that exists at deployment, named in the message; nothing crashes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dataplane.arm import DeploymentTimeError, MissingParameterError
from dataplane.documents import CLASSIC_NSG_TYPE, NSG_TYPE, read_document
from dataplane.errors import DataplaneError
from dataplane.nsg import NetworkSecurityGroup, load_nsgs, nsgs_and_problems, read_parameters

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "realworld" / "arm-quickstart"

# The quickstart CI replaces each `GEN-UNIQUE[-N]` value of a parameters file with a generated unique name.
GEN_UNIQUE = re.compile(r"GEN-UNIQUE(-\d+)?")

# Refusals that are not for a deployment-time value, each with its reason.
KNOWN_REFUSALS = {
    **{f"{prefix}__nested__trendp2p-{part}.json":
       "a nested template whose NSG name parameters default to '': its parent (not in the corpus) passes the names"
       for prefix, parts in (("datameer-trend-chef-riskanalysis", ("chefserver", "orchestrator", "splunkenterprise",
                                                                     "trenddsm")),
                             ("trend-chef-splunk-security", ("orchestrator", "splunkenterprise", "trenddsm")))
       for part in parts},
}


def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not found: the shared data folder sits beside the repository in CI")
    return CORPUS


def parameters_beside(template: Path) -> dict[str, Any] | None:
    """The values of `DIR__azuredeploy.parameters.json` beside `DIR__azuredeploy.json`, as the CI gives them."""
    path = template.with_name(template.name.replace("azuredeploy.json", "azuredeploy.parameters.json"))
    if path == template or not path.exists():
        return None
    return {name: f"u{name.lower()}" if isinstance(value, str) and GEN_UNIQUE.fullmatch(value) else value
            for name, value in read_parameters(path).items()}


def declares_nsgs_inline(resources: Any) -> bool:
    """An NSG resource in the template itself: top level, nested, or in an inline nested deployment."""
    items = resources.values() if isinstance(resources, dict) else resources if isinstance(resources, list) else []
    for res in items:
        if not isinstance(res, dict):
            continue
        if str(res.get("type", "")).lower() in (NSG_TYPE, CLASSIC_NSG_TYPE) \
                or declares_nsgs_inline(res.get("resources")):
            return True
        props = res.get("properties")
        if isinstance(props, dict) and isinstance(props.get("template"), dict) \
                and declares_nsgs_inline(props["template"].get("resources")):
            return True
    return False


class Outcome(NamedTuple):
    nsgs: list[NetworkSecurityGroup]
    problems: list[DataplaneError]
    crash: str | None


def load(template: Path) -> Outcome:
    try:
        nsgs, problems = nsgs_and_problems(read_document(template), file=template.name,
                                           parameters=parameters_beside(template))
    except DataplaneError as e:
        return Outcome([], [e], None)
    except Exception as e:  # noqa: BLE001 - a crash is what this corpus test exists to find
        return Outcome([], [], f"{type(e).__name__}: {e}")
    return Outcome(nsgs, problems, None)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    templates = [p for p in sorted(corpus().glob("*.json")) if not p.name.endswith(".parameters.json")]
    found = {}
    for path in templates:
        doc = read_document(path)
        if isinstance(doc, dict) and declares_nsgs_inline(doc.get("resources")):
            found[path.name] = load(path)
    return found


NO_VALUE = "refused: parameter without a value (a linked template's parent passes it)"


def kind(outcome: Outcome) -> str:
    if outcome.crash:
        return "crashed"
    if not outcome.problems:
        return "loaded"
    if all(isinstance(p, DeploymentTimeError) for p in outcome.problems):
        return "refused: deployment-time value"
    if all(isinstance(p, (DeploymentTimeError, MissingParameterError)) for p in outcome.problems):
        return NO_VALUE
    return "refused: other"


def test_no_template_crashes_the_loader(outcomes: dict[str, Outcome]) -> None:
    assert {name: o.crash for name, o in outcomes.items() if o.crash} == {}


def test_every_refusal_is_for_a_value_only_a_deployment_gives_named_in_the_message(
        outcomes: dict[str, Outcome]) -> None:
    other = {name: [str(p) for p in o.problems] for name, o in outcomes.items()
             if kind(o) == "refused: other" and name not in KNOWN_REFUSALS}
    assert other == {}
    for o in outcomes.values():
        for problem in o.problems:
            if isinstance(problem, DeploymentTimeError):
                assert re.match(r"""["']\[\w+\(.*known only at deployment time: \w+""", problem.message)
            elif isinstance(problem, MissingParameterError):
                assert re.match(r"parameter '[^']+' has no defaultValue", problem.message)


def test_at_least_95_percent_of_templates_with_inline_nsgs_load(outcomes: dict[str, Outcome], capsys) -> None:
    """Templates whose parameters have no value anywhere (nested templates deployed by a parent that passes
    them) cannot be deployed on their own, by Azure either: they are counted apart."""
    tally: dict[str, int] = {}
    for o in outcomes.values():
        tally[kind(o)] = tally.get(kind(o), 0) + 1
    loaded = tally.get("loaded", 0)
    deployable = len(outcomes) - tally.get(NO_VALUE, 0)
    with capsys.disabled():
        print(f"\nARM quickstart corpus: {len(outcomes)} templates declare NSGs inline; {loaded} load "
              f"({loaded / len(outcomes):.0%}); of the {deployable} whose parameters all have values, "
              f"{loaded / deployable:.1%} load")
        for what, count in sorted(tally.items()):
            print(f"  {what}: {count}")
    assert len(outcomes) >= 350
    assert loaded / deployable >= 0.95
    assert loaded / len(outcomes) >= 0.79


# -- a sample, checked against what each template evidently means ------------------------------------------

# NSG name (None: computed by uniqueString, so not Azure's) → rules as (name, priority, direction, access,
# destination ports); the NSGs in template order.
SAMPLES: dict[str, list[tuple[str | None, list[tuple[str, int, str, str, str]]]]] = {
    "201-vm-copy-index-loops": [("default-NSG", [("default-allow-22", 1000, "Inbound", "Allow", "22")])],
    "201-vm-msi-linux-terraform": [(None, [("default-allow-ssh", 1000, "Inbound", "Allow", "22"),
                                           ("rdp-rule", 1001, "Inbound", "Allow", "3389")])],
    "301-multi-tier-loadbalancing": [
        (name, [("Allow-RDP", 1000, "Inbound", "Allow", "3389")])
        for name in ("region-multitierlb-vnet0-default-nsg", "region-multitierlb-vnet1-default-nsg",
                     "region-multitierlb-vnet0-front-end-subnet-nsg", "region-multitierlb-vnet1-front-end-subnet-nsg")],
    "tableau-server-single-node": [("TABNSG", [("ssh-rule", 100, "Inbound", "Allow", "22"),
                                               ("mngagent-rule", 110, "Inbound", "Allow", "8850"),
                                               ("web-rule", 120, "Inbound", "Allow", "80")])],
    "201-traffic-manager-vm": [("MyNSG", [("Port_80", 100, "Inbound", "Allow", "80")])],
    "301-parameterized-linked-templates": [
        ("ubackendnetworksecuritygroupname", []), ("umidtiernetworksecuritygroupname", []),
        ("ufrontendnetworksecuritygroupname", [
            ("allow_http_from_ip_or_range_forwebhttp", 500, "Inbound", "Allow", "80"),
            ("allow_ssh_from_ip_or_range_for_jumpboxssh", 510, "Inbound", "Allow", "22"),
            ("allow_https_from_ip_or_range_for_bastion", 520, "Inbound", "Allow", "443"),
            ("allow_ssh_to_vnet_for_bastion", 530, "Outbound", "Allow", "22"),
            ("allow_rdp_to_vnet_for_bastion", 540, "Outbound", "Allow", "3389"),
            ("allow_https_to_azurecloud_for_bastion", 550, "Outbound", "Allow", "443"),
            ("allow_management_from_gateway_manager_for_appgateway", 560, "Inbound", "Allow", "65200-65535"),
            ("allow_https_from_gateway_manager_for_appgateway", 570, "Inbound", "Allow", "443")])],
    "101-rds-deployment-full-ha": [("uprojectnamensg", [("Allow_RDP", 1000, "Inbound", "Allow", "3389"),
                                                        ("Allow_HTTP", 1001, "Inbound", "Allow", "80"),
                                                        ("Allow_HTTPS", 1002, "Inbound", "Allow", "443"),
                                                        ("Allow_UDP_3391", 1003, "Inbound", "Allow", "3391")])],
    "201-vm-msi-storage": [("SecGroupNet", [("SSH", 1000, "Inbound", "Allow", "22")])],
    "201-vm-new-or-existing-conditions": [("default-NSG", [("default-allow-22", 1000, "Inbound", "Allow", "22")])],
    "101-azure-bastion-nsg": [("ubastion-host-name-nsg", [
        ("AllowHttpsInBound", 100, "Inbound", "Allow", "443"),
        ("AllowGatewayManagerInBound", 110, "Inbound", "Allow", "443"),
        ("AllowLoadBalancerInBound", 120, "Inbound", "Allow", "443"),
        ("AllowBastionHostCommunicationInBound", 130, "Inbound", "Allow", "8080,5701"),
        ("DenyAllInBound", 1000, "Inbound", "Deny", "*"),
        ("AllowSshRdpOutBound", 100, "Outbound", "Allow", "22,3389"),
        ("AllowAzureCloudCommunicationOutBound", 110, "Outbound", "Allow", "443"),
        ("AllowBastionHostCommunicationOutBound", 120, "Outbound", "Allow", "8080,5701"),
        ("AllowGetSessionInformationOutBound", 130, "Outbound", "Allow", "80,443"),
        ("DenyAllOutBound", 1000, "Outbound", "Deny", "*")])],
    "101-load-balancer-standard-create": [("uprojectname-nsg", [("AllowHTTPInbound", 100, "Inbound", "Allow", "80")])],
    "101-1vm-2nics-2subnets-1vnet": [("subnet-2-nsg", []),
                                     ("NSG", [("default-allow-rdp", 1000, "Inbound", "Allow", "3389")])],
    "101-AAD-DomainServices": [("domain-services-subnet-nsg", [
        ("AllowPSRemotingSliceP", 301, "Inbound", "Allow", "5986"),
        ("AllowRDP", 201, "Inbound", "Allow", "3389"),
        ("AllowSyncWithAzureAD", 101, "Inbound", "Allow", "443"),
        ("AllowPSRemotingSliceT", 302, "Inbound", "Allow", "5986")])],
    "101-hub-and-spoke-sandbox": [("winJmpHostNsg", [("NSG_RULE_INBOUND_RDP", 1000, "Inbound", "Allow", "3389")])],
    "101-perforce-helix-core-server": [("HXNSG", [("ssh-rule", 100, "Inbound", "Allow", "22"),
                                                  ("web-rule", 102, "Inbound", "Allow", "80"),
                                                  ("p4d-rule", 103, "Inbound", "Allow", "1666")])],
    "101-security-group-create": [("networkSecurityGroup1", [("first_rule", 123, "Inbound", "Allow", "46-56")])],
    "101-sql-managed-instance-azure-environment": [("nsgManagedInstance", [
        ("allow_tds_inbound", 1000, "Inbound", "Allow", "1433"),
        ("allow_redirect_inbound", 1100, "Inbound", "Allow", "11000-11999"),
        ("allow_geodr_inbound", 1200, "Inbound", "Allow", "5022"),
        ("deny_all_inbound", 4096, "Inbound", "Deny", "*"),
        ("allow_linkedserver_outbound", 1000, "Outbound", "Allow", "1433"),
        ("allow_redirect_outbound", 1100, "Outbound", "Allow", "11000-11999"),
        ("allow_geodr_outbound", 1200, "Outbound", "Allow", "5022"),
        ("deny_all_outbound", 4096, "Outbound", "Deny", "*")])],
    "101-vm-simple-linux": [("SecGroupNet", [("SSH", 1000, "Inbound", "Allow", "22")])],
    "201-application-security-group": [("webNsg", [("AllowHttpAll", 100, "Inbound", "Allow", "80"),
                                                   ("AllowSshAll", 200, "Inbound", "Allow", "22")])],
    "201-nsg-dmz-in-vnet": [
        ("fensg", [("rdp_rule", 100, "Inbound", "Allow", "3389"), ("web_rule", 101, "Inbound", "Allow", "80")]),
        ("appnsg", [("Allow_FE", 100, "Inbound", "Allow", "443"),
                    ("Block_RDP_Internet", 101, "Inbound", "Deny", "3389"),
                    ("Block_Internet_Outbound", 200, "Outbound", "Deny", "*")]),
        ("dbnsg", [("Allow_App", 100, "Inbound", "Allow", "1433"), ("Block_FE", 101, "Inbound", "Deny", "*"),
                   ("Block_App", 102, "Inbound", "Deny", "*"), ("Block_Internet", 200, "Outbound", "Deny", "*")])],
    "201-zerto-zca": [("zca-nsg", [("AllowRDP", 100, "Inbound", "Allow", "3389")])],
    "301-dmz-nsg": [("myVNetNSG", [("enable_dns_rule", 100, "Inbound", "Allow", "53"),
                                   ("enable_rdp_rule", 110, "Inbound", "Allow", "3389"),
                                   ("enable_web_rule", 120, "Inbound", "Allow", "80"),
                                   ("enable_app_rule", 130, "Inbound", "Allow", "*"),
                                   ("deny_internet_rule", 140, "Inbound", "Deny", "*"),
                                   ("deny_frontend_rule", 150, "Inbound", "Deny", "*")])],
    "ipv6-in-vnet": [("dsNsg", [("allow-HTTP-in", 1001, "Inbound", "Allow", "80"),
                                ("allow-all-out", 1002, "Outbound", "Allow", "*"),
                                ("allow-RDP-in", 1003, "Inbound", "Allow", "3389"),
                                ("allow-MyIpv6App-out", 1004, "Outbound", "Allow", "5000-6000")])],
    "service-fabric-secure-nsg-cluster-65-node-3-nodetype": [
        (f"nsgSubnet-{i}", [("allowSvcFabSMB", 3950, "Inbound", "Allow", "445"),
                            ("allowSvcFabCluser", 3920, "Inbound", "Allow", "1025-1027"),
                            ("allowSvcFabEphemeral", 3930, "Inbound", "Allow", "49152-65534"),
                            ("allowSvcFabPortal", 3900, "Inbound", "Allow", "19080"),
                            ("allowSvcFabClient", 3910, "Inbound", "Allow", "19000"),
                            ("allowSvcFabApplication", 3940, "Inbound", "Allow", "20000-30000"),
                            ("blockAll", 4095, "Inbound", "Deny", "*"),
                            ("allowVNetRDP", 3960, "Inbound", "Allow", "3389-4500"),
                            ("allowAppPort1", 2001, "Inbound", "Allow", "80"),
                            ("allowAppPort2", 2002, "Inbound", "Allow", "8081")]) for i in range(3)],
}


def rules_of(nsg: NetworkSecurityGroup) -> list[tuple[str, int, str, str, str]]:
    return [(r.name, r.priority, r.direction.value, r.access.value,
             r.destination_port_range or ",".join(r.destination_port_ranges)) for r in nsg.rules]


@pytest.mark.parametrize("stem", sorted(SAMPLES))
def test_a_sample_template_loads_the_rules_it_declares(stem: str) -> None:
    outcome = load(corpus() / f"{stem}__azuredeploy.json")
    assert (outcome.problems, outcome.crash) == ([], None)
    expected = SAMPLES[stem]
    assert [n.name for n in outcome.nsgs if expected[0][0] is not None] == [
        name for name, _ in expected if name is not None]
    assert [rules_of(n) for n in outcome.nsgs] == [rules for _, rules in expected]


def test_a_comment_in_a_template_is_read_as_arm_reads_it() -> None:
    assert "//" in (corpus() / "201-vm-copy-index-loops__azuredeploy.json").read_text()
    assert load(corpus() / "201-vm-copy-index-loops__azuredeploy.json").problems == []


def test_a_child_rule_replaces_the_inline_rule_it_names() -> None:
    [nsg] = load(corpus() / "201-traffic-manager-vm__azuredeploy.json").nsgs
    assert nsg.rules[0].protocol == "*" and nsg.rules[0].source_address_prefix == "*"


def test_fields_that_come_from_parameters_and_service_tags_are_as_written() -> None:
    [front, app, db] = load(corpus() / "201-nsg-dmz-in-vnet__azuredeploy.json").nsgs
    assert front.rules[0].source_address_prefix == "Internet"
    assert app.rules[0].source_address_prefix == "10.0.0.0/24" and db.rules[0].source_address_prefix == "10.0.1.0/24"


def test_an_asg_reference_built_by_resource_id_resolves_by_its_last_segment() -> None:
    [nsg] = load(corpus() / "201-application-security-group__azuredeploy.json").nsgs
    assert nsg.rules[0].destination_application_security_groups == ("webServersAsg",)


def test_ipv6_prefixes_and_source_port_ranges_are_carried() -> None:
    [nsg] = load(corpus() / "ipv6-in-vnet__azuredeploy.json").nsgs
    app = nsg.rules[3]
    assert app.source_address_prefix == "ace:cab:deca:deed::/64" and app.source_port_range == "33819-33829"
    assert app.destination_address_prefixes == ("cab:cab:aaaa:bbbb::/64", "cab:cab:1111:2222::/64")


def test_a_rule_from_reference_is_refused_naming_the_expression() -> None:
    outcome = load(corpus() / "201-redis-vnet-nsg__azuredeploy.json")
    assert outcome.problems and all(isinstance(p, DeploymentTimeError) for p in outcome.problems)
    assert "[reference(variables('subnetId')" in outcome.problems[0].message
    assert outcome.problems[0].field == "resources[0].properties.securityRules[0].properties.destinationAddressPrefix"


def test_a_nested_template_without_its_parent_is_refused_naming_the_parameter() -> None:
    [problem] = load(corpus() / "101-DDoS-Attack-Prevention__nested__microsoft.network__nsg.json").problems
    assert isinstance(problem, MissingParameterError) and "'nsgName'" in problem.message


def test_the_bicep_avm_module_builds_rules_given_as_a_parameter(tmp_path: Path) -> None:
    """Azure Verified Modules' NSG (languageVersion 2.0, lambdas, nullable parameters): the rules come from a
    parameter, mapped by a property copy loop."""
    template = CORPUS.parent / "nsg" / "avm-network-security-group-main.json"
    if not template.exists():
        pytest.skip(f"{template} not found: the shared data folder sits beside the repository in CI")
    ssh = {"name": "ssh", "properties": {"priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                                         "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
                                         "destinationAddressPrefix": "*", "destinationPortRanges": ["22", "2222"]}}
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"parameters": {"name": {"value": "avm-nsg"}, "securityRules": {"value": [ssh]},
                                                 "flushConnection": {"value": True}}}))
    [nsg] = load_nsgs(template, parameters=params)
    assert (nsg.name, nsg.flush_connection) == ("avm-nsg", True)
    assert rules_of(nsg) == [("ssh", 100, "Inbound", "Allow", "22,2222")]
    assert nsg.rules[0].source_address_prefix == "Internet" and nsg.rules[0].destination_address_prefixes == ()
