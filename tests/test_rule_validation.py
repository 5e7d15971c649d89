"""Security rules are rejected exactly where Azure rejects them, with Azure's error code, and their valid
neighbours are accepted."""

from __future__ import annotations

import pytest

from dataplane import DEFAULT_RULES, NetworkSecurityGroup, ValidationErrors, rule_from_azure
from dataplane.errors import RuleError

ASG = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/applicationSecurityGroups/"


def rule(**changes) -> dict:
    data = {"name": "AllowWeb", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
            "destinationPortRange": "80"}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def codes(data: dict, classic: bool = False) -> list[tuple[str, str]]:
    """(code, field) of every problem, or [] when the rule is accepted."""
    try:
        rule_from_azure(data, classic=classic)
    except ValidationErrors as e:
        return [(p.code, p.field) for p in e.problems]
    return []


ACCEPTED = {
    "priority 100": rule(priority=100),
    "priority 4096": rule(priority=4096),
    "protocol lower case": rule(protocol="udp"),
    "protocol *": rule(protocol="*"),
    "protocol Esp": rule(protocol="Esp", destinationPortRange="*"),
    "protocol Ah": rule(protocol="Ah"),
    "protocol Icmp": rule(protocol="Icmp"),
    "port range": rule(destinationPortRange="1000-2000"),
    "port 0 and 65535": rule(sourcePortRange="0", destinationPortRange="65535"),
    "full port range": rule(destinationPortRange="0-65535"),
    "port list": rule(destinationPortRange=None, destinationPortRanges=["80", "443", "8000-8100"]),
    "IPv4 address": rule(sourceAddressPrefix="203.0.113.7"),
    "IPv6 CIDR": rule(sourceAddressPrefix="2001:db8::/32"),
    "service tag": rule(sourceAddressPrefix="AzureCloud"),
    "prefix list": rule(sourceAddressPrefix=None, sourceAddressPrefixes=["198.51.100.0/24", "203.0.113.7"]),
    "IPv6 prefix list": rule(sourceAddressPrefix=None, sourceAddressPrefixes=["2001:db8::/48", "2001:db8:1::1"]),
    "ASGs": rule(destinationAddressPrefix=None, destinationApplicationSecurityGroups=[{"id": ASG + "A"}]),
    "10 ASGs": rule(destinationAddressPrefix=None,
                    destinationApplicationSecurityGroups=[{"id": ASG + f"A{i}"} for i in range(10)]),
    "empty plural beside singular (az output)": rule(sourceAddressPrefixes=[], destinationPortRanges=[]),
    "80-character name": rule(name="a" * 79 + "_"),
    "name with dots and dashes": rule(name="Allow.Web-01_"),
    "140-character description": rule(description="d" * 140),
}


@pytest.mark.parametrize("data", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_valid_rules_are_accepted(data: dict) -> None:
    assert codes(data) == []


REJECTED = {
    "priority 99": (rule(priority=99), "SecurityRuleInvalidPriority", "priority"),
    "priority 4097": (rule(priority=4097), "SecurityRuleInvalidPriority", "priority"),
    "bad protocol": (rule(protocol="Gre"), "InvalidRequestFormat", "protocol"),
    "bad access": (rule(access="Permit"), "InvalidRequestFormat", "access"),
    "bad direction": (rule(direction="Both"), "InvalidRequestFormat", "direction"),
    "port 65536": (rule(destinationPortRange="65536"), "SecurityRuleInvalidPortRange", "destinationPortRange"),
    "port range reversed": (rule(destinationPortRange="2000-1000"), "SecurityRuleInvalidPortRange",
                            "destinationPortRange"),
    "port any": (rule(destinationPortRange="any"), "SecurityRuleInvalidPortRange", "destinationPortRange"),
    "port list in singular": (rule(destinationPortRange="80,443"), "SecurityRuleInvalidPortRange",
                              "destinationPortRange"),
    "port * in plural": (rule(destinationPortRange=None, destinationPortRanges=["*"]),
                         "SecurityRuleParameterContainsUnsupportedValue", "destinationPortRanges"),
    "tag in plural": (rule(sourceAddressPrefix=None, sourceAddressPrefixes=["Internet"]),
                      "SecurityRuleParameterContainsUnsupportedValue", "sourceAddressPrefixes"),
    "* in plural": (rule(sourceAddressPrefix=None, sourceAddressPrefixes=["*"]),
                    "SecurityRuleParameterContainsUnsupportedValue", "sourceAddressPrefixes"),
    "classic VIRTUAL_NETWORK": (rule(sourceAddressPrefix="VIRTUAL_NETWORK"), "SecurityRuleInvalidAddressPrefix",
                                "sourceAddressPrefix"),
    "address any": (rule(sourceAddressPrefix="any"), "SecurityRuleInvalidAddressPrefix", "sourceAddressPrefix"),
    "address list in singular": (rule(sourceAddressPrefix="10.0.0.0/8,192.168.0.0/16"),
                                 "SecurityRuleInvalidAddressPrefix", "sourceAddressPrefix"),
    "families mixed": (rule(sourceAddressPrefix=None, sourceAddressPrefixes=["10.0.0.0/8", "2001:db8::/32"]),
                       "ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies", "sourceAddressPrefixes"),
    "no source": (rule(sourceAddressPrefix=None), "SecurityRuleInvalidAddressPrefix", "sourceAddressPrefix"),
    "11 ASGs": (rule(destinationAddressPrefix=None,
                     destinationApplicationSecurityGroups=[{"id": ASG + f"A{i}"} for i in range(11)]),
                "SecurityRuleApplicationSecurityGroupsLimitReached", "destinationApplicationSecurityGroups"),
    "81-character name": (rule(name="a" * 81), "InvalidResourceName", "name"),
    "name ending in a dot": (rule(name="AllowWeb."), "InvalidResourceName", "name"),
    "name with a space": (rule(name="Allow Web"), "InvalidResourceName", "name"),
    "141-character description": (rule(description="d" * 141), "SecurityRuleInvalidDescription", "description"),
}


@pytest.mark.parametrize("data, code, field", REJECTED.values(), ids=REJECTED.keys())
def test_invalid_rules_are_rejected_with_azures_code(data: dict, code: str, field: str) -> None:
    assert (code, field) in codes(data)


def test_prefix_and_asgs_on_one_side_are_rejected() -> None:
    found = codes(rule(destinationApplicationSecurityGroups=[{"id": ASG + "A"}]))
    assert found and all(field.startswith("destination") for _, field in found)


def test_singular_and_plural_both_set_is_rejected_naming_both_fields() -> None:
    with pytest.raises(ValidationErrors) as info:
        rule_from_azure(rule(destinationPortRanges=["443"]))
    assert "destinationPortRange" in str(info.value) and "destinationPortRanges" in str(info.value)


def test_the_message_names_the_rule_the_field_and_the_bad_value() -> None:
    with pytest.raises(ValidationErrors) as info:
        rule_from_azure(rule(name="AllowSsh", destinationPortRange="70000"))
    assert str(info.value).startswith("AllowSsh: SecurityRuleInvalidPortRange: destinationPortRange: ")
    assert "70000" in str(info.value)


# -- per NSG ------------------------------------------------------------------------------------

def nsg(rules: list[dict], classic: bool = False) -> NetworkSecurityGroup:
    return NetworkSecurityGroup("nsg", [rule_from_azure(r, classic=classic) for r in rules], classic=classic)


def nsg_codes(rules: list[dict], classic: bool = False) -> list[str]:
    try:
        nsg(rules, classic)
    except ValidationErrors as e:
        return [p.code for p in e.problems]
    return []


def test_two_rules_with_one_priority_in_one_direction_conflict() -> None:
    assert nsg_codes([rule(name="A"), rule(name="B")]) == ["SecurityRuleConflict"]


def test_inbound_and_outbound_rules_may_share_a_priority() -> None:
    assert nsg_codes([rule(name="A"), rule(name="B", direction="Outbound")]) == []


def test_rule_names_are_unique_in_an_nsg() -> None:
    assert nsg_codes([rule(), rule(priority=200)]) == ["DuplicateResourceName"]


def many(count: int, **changes) -> list[dict]:
    return [rule(name=f"r{i}", priority=100 + i % 3997, direction="Inbound" if i < 3997 else "Outbound", **changes)
            for i in range(count)]


def test_an_nsg_holds_1000_custom_rules() -> None:
    assert nsg_codes(many(1000)) == []


def test_an_nsg_of_1001_custom_rules_is_rejected() -> None:
    assert nsg_codes(many(1001)) == ["SecurityRuleCountLimitReached"]


def test_an_nsg_holds_4000_source_addresses_but_not_4001() -> None:
    prefixes = [f"10.{i // 256}.{i % 256}.0/24" for i in range(4001)]
    ten = [rule(name=f"r{i}", priority=100 + i, sourceAddressPrefix=None,
                sourceAddressPrefixes=prefixes[i * 400:(i + 1) * 400]) for i in range(10)]
    assert nsg_codes(ten) == []
    eleventh = rule(name="r10", priority=110, sourceAddressPrefix=prefixes[4000])
    assert nsg_codes([*ten, eleventh]) == ["SecurityRuleAddressesOrPortsPerSecurityGroupLimitReached"]


def test_an_nsg_references_at_most_100_distinct_asgs() -> None:
    rules = [rule(name=f"r{i}", priority=100 + i, destinationAddressPrefix=None,
                  destinationApplicationSecurityGroups=[{"id": ASG + f"A{i * 10 + j}"} for j in range(10)])
             for i in range(10)]
    assert nsg_codes(rules) == []
    rules.append(rule(name="r10", priority=110, destinationAddressPrefix=None,
                      destinationApplicationSecurityGroups=[{"id": ASG + "A100"}]))
    assert nsg_codes(rules) == ["ApplicationSecurityGroupsPerSecurityGroupLimitReached"]


def test_a_classic_nsg_rejects_augmented_rules() -> None:
    augmented = rule(destinationPortRange=None, destinationPortRanges=["80", "443"])
    assert ("SecurityRuleAugmentedNotSupportedInClassic", "destinationPortRanges") in codes(augmented, classic=True)
    assert codes(augmented) == []


def test_a_classic_nsg_holds_200_rules_but_not_201() -> None:
    assert nsg_codes(many(200), classic=True) == []
    assert nsg_codes(many(201), classic=True) == ["SecurityRuleCountLimitReached"]


# -- default rules -----------------------------------------------------------------------------

def test_the_six_default_rules_have_azures_names_and_priorities() -> None:
    assert [(r.name, r.priority, r.direction.value, r.access.value) for r in DEFAULT_RULES] == [
        ("AllowVnetInBound", 65000, "Inbound", "Allow"), ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow"),
        ("DenyAllInBound", 65500, "Inbound", "Deny"), ("AllowVnetOutBound", 65000, "Outbound", "Allow"),
        ("AllowInternetOutBound", 65001, "Outbound", "Allow"), ("DenyAllOutBound", 65500, "Outbound", "Deny")]


def test_every_nsg_has_the_default_rules_after_its_own() -> None:
    from dataplane import Direction

    names = [r.name for r in nsg([rule()]).rules_in_order(Direction.INBOUND)]
    assert names == ["AllowWeb", "AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound"]


def test_a_default_rule_cannot_be_removed() -> None:
    group = nsg([])
    with pytest.raises(RuleError) as info:
        group.remove_rule("DenyAllInBound")
    assert info.value.code == "CannotDeleteDefaultSecurityRule"


def test_a_custom_rule_overrides_a_default_rule() -> None:
    from dataplane import Direction, Policy, parse_flow

    group = nsg([rule(name="DenyVnet", access="Deny", protocol="*", sourceAddressPrefix="VirtualNetwork",
                      destinationPortRange="*", priority=4096)])
    policy = Policy.for_nsg(group, address_space=("10.0.0.0/16",))
    assert policy.evaluate_nsg(group, Direction.INBOUND, parse_flow("tcp 10.0.0.5:1 > 10.0.0.4:2").key).name == \
        "DenyVnet"
