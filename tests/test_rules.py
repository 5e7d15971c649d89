"""The rule model as Azure defines it (reference §2, §3, §5): rules are rejected exactly where Azure
rejects them, with Azure's error code, and the valid spellings Azure reads are accepted; the error
message's parts, the per-NSG limits on both sides, classic NSGs, the default rules, and an NSG changed at
run time with the same validation."""

from __future__ import annotations

import pytest

from dataplane import (DEFAULT_RULES, Access, Direction, NetworkSecurityGroup, Policy, RuleError, ValidationErrors,
                       parse_flow, rule_from_azure)

ASG = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/applicationSecurityGroups/"


def rule(**changes) -> dict:
    """A valid inbound rule in Azure's flattened shape; a change to None removes the field."""
    data = {"name": "AllowWeb", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
            "destinationPortRange": "80"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def problems(data: dict, classic: bool = False) -> list[RuleError]:
    try:
        rule_from_azure(data, classic=classic)
    except ValidationErrors as e:
        return e.problems
    return []


def codes(data: dict, classic: bool = False) -> list[tuple[str, str]]:
    """(code, field) of every problem, or [] when Azure would accept the rule."""
    return [(p.code, p.field) for p in problems(data, classic)]


def asgs(prefix: str, count: int) -> list[dict]:
    return [{"id": ASG + f"{prefix}{i}"} for i in range(count)]


# -- priority, protocol, access, direction --------------------------------------------------------

@pytest.mark.parametrize("priority, valid", [(99, False), (100, True), (101, True), (4095, True), (4096, True),
                                             (4097, False), (0, False), (-100, False), (65000, False)])
def test_priority_is_valid_from_100_to_4096(priority: int, valid: bool) -> None:
    assert codes(rule(priority=priority)) == ([] if valid else [("SecurityRuleInvalidPriority", "priority")])


def test_a_rule_without_a_priority_is_rejected() -> None:
    """`priority` is required in Azure's schema (§5)."""
    assert codes(rule(priority=None)) == [("SecurityRuleInvalidPriority", "priority")]


@pytest.mark.parametrize("written, read", [("Tcp", "Tcp"), ("TCP", "Tcp"), ("tcp", "Tcp"), ("uDp", "Udp"),
                                           ("ICMP", "Icmp"), ("esp", "Esp"), ("AH", "Ah"), ("*", "*")])
def test_protocol_is_read_case_insensitively_as_azures_spelling(written: str, read: str) -> None:
    """Azure reads enum values back case-insensitively (§5, terraform-provider-azurerm#16092)."""
    assert rule_from_azure(rule(protocol=written)).protocol == read


@pytest.mark.parametrize("protocol", ["Gre", "Any", "All", "6", "tcp/udp", "", None])
def test_a_protocol_outside_tcp_udp_icmp_esp_ah_star_is_rejected(protocol: str | None) -> None:
    assert codes(rule(protocol=protocol)) == [("InvalidRequestFormat", "protocol")]


@pytest.mark.parametrize("access, direction", [("Allow", "Inbound"), ("Deny", "Outbound"), ("deny", "outbound"),
                                               ("ALLOW", "INBOUND")])
def test_access_and_direction_take_azures_values_in_any_case(access: str, direction: str) -> None:
    built = rule_from_azure(rule(access=access, direction=direction))
    assert (built.access, built.direction) == (Access(access.capitalize()), Direction(direction.capitalize()))


@pytest.mark.parametrize("field, value", [("access", "Permit"), ("access", None), ("direction", "In"),
                                          ("direction", None)])
def test_a_missing_or_unknown_access_or_direction_is_rejected(field: str, value: str | None) -> None:
    assert codes(rule(**{field: value})) == [("InvalidRequestFormat", field)]


def test_a_key_that_is_not_a_rule_property_is_rejected() -> None:
    assert codes(rule(destinationPort="80")) == [("InvalidRequestFormat", "destinationPort")]


# -- name and description ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["A", "7", "AllowWeb", "Allow_", "_Allow", "Allow.Web-01_x", "a" * 80,
                                  "a" * 79 + "_"])
def test_names_azure_accepts(name: str) -> None:
    """Azure's message: up to 80 characters, begin with a word character, end with a word character or
    '_', containing word characters, '.', '-', '_' (§2). A word character includes '_'."""
    assert codes(rule(name=name)) == []


@pytest.mark.parametrize("name", ["a" * 81, "-Allow", ".Allow", "Allow-", "Allow.", "Allow Web", "Allow/Web",
                                  "Allow\\Web", "Allow?", "Allow%Web", "Allow:Web"])
def test_names_azure_rejects_as_invalid_resource_name(name: str) -> None:
    assert codes(rule(name=name)) == [("InvalidResourceName", "name")]


@pytest.mark.parametrize("name", ["", None, 7])
def test_a_rule_without_a_name_is_rejected(name: object) -> None:
    assert codes(rule(name=name)) == [("InvalidResourceName", "name")]


@pytest.mark.parametrize("length, valid", [(0, True), (140, True), (141, False), (500, False)])
def test_a_description_holds_at_most_140_characters(length: int, valid: bool) -> None:
    expected = [] if valid else [("SecurityRuleInvalidDescription", "description")]
    assert codes(rule(description="d" * length)) == expected


# -- ports ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("value, ranges", [("*", ((0, 65535),)), ("0", ((0, 0),)), ("65535", ((65535, 65535),)),
                                           ("1024-2048", ((1024, 2048),)), ("80-80", ((80, 80),)),
                                           ("0-65535", ((0, 65535),)), (443, ((443, 443),))])
def test_a_port_field_takes_star_an_integer_or_a_range(side: str, value: object, ranges: tuple) -> None:
    built = rule_from_azure(rule(**{f"{side}PortRange": value}))
    assert getattr(built, f"{side}_ports") == ranges


@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("value", ["65536", "0-65536", "2000-1000", "any", "Any", "-1", "80-", "-80", "80:90",
                                   "http", "80,443", "80, 443"])
def test_a_bad_single_port_range_is_rejected_as_invalid_port_range(side: str, value: str) -> None:
    assert codes(rule(**{f"{side}PortRange": value})) == [("SecurityRuleInvalidPortRange", f"{side}PortRange")]


def test_a_port_list_in_the_singular_field_points_to_the_plural_one() -> None:
    [problem] = problems(rule(destinationPortRange="636,389"))
    assert problem.message == "'636,389' is a list; use destinationPortRanges"


def test_a_json_array_in_the_singular_port_field_is_rejected() -> None:
    assert codes(rule(sourcePortRange=["80"])) == [("SecurityRuleInvalidPortRange", "sourcePortRange")]


@pytest.mark.parametrize("side", ["source", "destination"])
def test_a_rule_without_ports_on_a_side_is_rejected(side: str) -> None:
    assert codes(rule(**{f"{side}PortRange": None})) == [("SecurityRuleInvalidPortRange", f"{side}PortRange")]


def test_the_plural_port_field_takes_integers_ranges_and_json_numbers() -> None:
    built = rule_from_azure(rule(destinationPortRange=None, destinationPortRanges=[22, "80", "8000-8100"]))
    assert built.destination_ports == ((22, 22), (80, 80), (8000, 8100))


@pytest.mark.parametrize("value", ["70000", "90-80", "any", "80,443"])
def test_a_bad_member_of_the_plural_port_field_is_rejected_as_invalid_port_range(value: str) -> None:
    data = rule(destinationPortRange=None, destinationPortRanges=["443", value])
    assert codes(data) == [("SecurityRuleInvalidPortRange", "destinationPortRanges")]


@pytest.mark.parametrize("side", ["source", "destination"])
def test_star_in_the_plural_port_field_is_an_unsupported_value(side: str) -> None:
    """The README's choice for `*` inside `*PortRanges` (§5)."""
    data = rule(**{f"{side}PortRange": None, f"{side}PortRanges": ["*"]})
    assert codes(data) == [("SecurityRuleParameterContainsUnsupportedValue", f"{side}PortRanges")]


@pytest.mark.parametrize("side", ["source", "destination"])
def test_a_singular_and_a_plural_port_field_on_one_side_are_rejected_naming_both(side: str) -> None:
    [problem] = problems(rule(**{f"{side}PortRange": "80", f"{side}PortRanges": ["443"]}))
    assert (problem.code, problem.field) == ("SecurityRuleInvalidPortRange", f"{side}PortRanges")
    assert problem.message == f"only one of {side}PortRange, {side}PortRanges can be used per security rule"


def test_an_empty_plural_port_field_beside_the_singular_one_is_fine() -> None:
    """Real `az` output carries `[]` next to every singular value (§5)."""
    assert codes(rule(sourcePortRanges=[], destinationPortRanges=[])) == []


# -- addresses --------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("value", ["*", "10.1.2.3", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::1", "2001:db8::/32",
                                   "::/0", "VirtualNetwork", "Internet", "AzureLoadBalancer", "Storage.WestUS",
                                   "AzureCloud"])
def test_a_single_address_is_star_an_ip_a_cidr_or_one_service_tag(side: str, value: str) -> None:
    assert getattr(rule_from_azure(rule(**{f"{side}AddressPrefix": value})), f"{side}s") == (value,)


def test_a_cidr_with_host_bits_is_accepted() -> None:
    """The README's choice: 10.0.0.7/24 is read as 10.0.0.0/24."""
    assert codes(rule(sourceAddressPrefix="10.0.0.7/24")) == []


@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("value", ["VIRTUAL_NETWORK", "AZURE_LOADBALANCER", "any", "Any",
                                   "10.0.0.0/8,192.168.0.0/16", "10.0.0.1, 10.0.0.2", "10.0.0.0/33",
                                   "2001:db8::/129", "fe80::1%eth0", "300.1.1.1", "10.0.0.0/x", "not-a-tag"])
def test_a_bad_single_address_is_rejected_as_invalid_address_prefix(side: str, value: str) -> None:
    data = rule(**{f"{side}AddressPrefix": value})
    assert codes(data) == [("SecurityRuleInvalidAddressPrefix", f"{side}AddressPrefix")]


def test_an_address_list_in_the_singular_field_points_to_the_plural_one() -> None:
    [problem] = problems(rule(sourceAddressPrefix="10.0.0.0/8,192.168.0.0/16"))
    assert problem.message.endswith("; use sourceAddressPrefixes")


@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("members", [["10.0.0.0/8"], ["10.0.0.1", "192.168.0.0/16"], ["2001:db8::/48", "fd00::1"]])
def test_the_plural_address_field_takes_ips_and_cidrs_of_one_family(side: str, members: list[str]) -> None:
    data = rule(**{f"{side}AddressPrefix": None, f"{side}AddressPrefixes": members})
    assert getattr(rule_from_azure(data), f"{side}s") == tuple(members)


@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("value", ["*", "VirtualNetwork", "Internet", "AzureLoadBalancer", "Storage.WestUS"])
def test_a_tag_or_star_in_the_plural_address_field_is_an_unsupported_value(side: str, value: str) -> None:
    data = rule(**{f"{side}AddressPrefix": None, f"{side}AddressPrefixes": ["10.0.0.0/8", value]})
    assert codes(data) == [("SecurityRuleParameterContainsUnsupportedValue", f"{side}AddressPrefixes")]


def test_a_bad_member_of_the_plural_address_field_is_an_invalid_address_prefix() -> None:
    data = rule(sourceAddressPrefix=None, sourceAddressPrefixes=["10.0.0.0/8", "10.0.0.0/40"])
    assert codes(data) == [("SecurityRuleInvalidAddressPrefix", "sourceAddressPrefixes")]


@pytest.mark.parametrize("side", ["source", "destination"])
def test_ipv4_and_ipv6_on_one_side_are_rejected(side: str) -> None:
    data = rule(**{f"{side}AddressPrefix": None, f"{side}AddressPrefixes": ["2001:db8::/32", "10.0.0.1"]})
    assert codes(data) == [("ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies",
                            f"{side}AddressPrefixes")]


def test_ipv4_on_one_side_and_ipv6_on_the_other_is_not_a_family_mix() -> None:
    """The family check is per side (terraform-provider-azurerm#12534)."""
    assert codes(rule(sourceAddressPrefix="10.0.0.0/8", destinationAddressPrefix="2001:db8::/32")) == []


# -- one kind of address per side, ASGs --------------------------------------------------------------

@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("given", [("AddressPrefix", "AddressPrefixes"), ("AddressPrefix", "ApplicationSecurityGroups"),
                                   ("AddressPrefixes", "ApplicationSecurityGroups")])
def test_two_kinds_of_address_on_one_side_are_rejected(side: str, given: tuple[str, str]) -> None:
    values = {"AddressPrefix": "10.0.0.0/8", "AddressPrefixes": ["10.0.0.0/8"],
              "ApplicationSecurityGroups": asgs("Asg", 1)}
    data = rule(**{f"{side}AddressPrefix": None, **{side + kind: values[kind] for kind in given}})
    assert codes(data) == [("SecurityRuleInvalidAddressPrefix", side + given[1])]


def test_an_empty_plural_address_field_beside_the_singular_one_is_fine() -> None:
    """Real `az` output carries `[]` next to every singular value (§5)."""
    assert codes(rule(sourceAddressPrefixes=[], destinationAddressPrefixes=[])) == []


@pytest.mark.parametrize("side", ["source", "destination"])
def test_a_side_without_any_address_is_rejected(side: str) -> None:
    assert codes(rule(**{f"{side}AddressPrefix": None})) == [("SecurityRuleInvalidAddressPrefix",
                                                              f"{side}AddressPrefix")]


@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("count, valid", [(1, True), (10, True), (11, False)])
def test_a_side_holds_at_most_10_asgs(side: str, count: int, valid: bool) -> None:
    data = rule(**{f"{side}AddressPrefix": None, f"{side}ApplicationSecurityGroups": asgs("Asg", count)})
    expected = [] if valid else [("SecurityRuleApplicationSecurityGroupsLimitReached",
                                  f"{side}ApplicationSecurityGroups")]
    assert codes(data) == expected


def test_an_asg_is_known_by_the_last_part_of_its_id() -> None:
    data = rule(sourceAddressPrefix=None, sourceApplicationSecurityGroups=[{"id": ASG + "AsgWeb"}, "AsgApi"])
    assert rule_from_azure(data).source_application_security_groups == ("AsgWeb", "AsgApi")


def test_every_problem_of_a_rule_is_reported_at_once() -> None:
    """So `lint` shows them all, not the first only."""
    data = rule(priority=5000, protocol="Gre", destinationPortRange="any", sourceAddressPrefix="VIRTUAL_NETWORK")
    found = {field for _, field in codes(data)}
    assert found == {"priority", "protocol", "destinationPortRange", "sourceAddressPrefix"}


# -- the message ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, code, field, value", [
    ({"priority": 4097}, "SecurityRuleInvalidPriority", "priority", "4097"),
    ({"destinationPortRange": "22,80"}, "SecurityRuleInvalidPortRange", "destinationPortRange", "'22,80'"),
    ({"sourceAddressPrefix": "VIRTUAL_NETWORK"}, "SecurityRuleInvalidAddressPrefix", "sourceAddressPrefix",
     "'VIRTUAL_NETWORK'"),
    ({"sourceAddressPrefix": None, "sourceAddressPrefixes": ["Internet"]},
     "SecurityRuleParameterContainsUnsupportedValue", "sourceAddressPrefixes", "'Internet'"),
    ({"protocol": "Gre"}, "InvalidRequestFormat", "protocol", "'Gre'"),
    ({"access": "Permit"}, "InvalidRequestFormat", "access", "'Permit'"),
])
def test_the_message_names_file_nsg_rule_code_field_and_value(changes: dict, code: str, field: str,
                                                              value: str) -> None:
    group = NetworkSecurityGroup("web", file="nsg1.json")
    with pytest.raises(ValidationErrors) as info:
        group.add_rule(rule(name="AllowSsh", **changes))
    [problem] = info.value.problems
    assert str(problem).startswith(f"nsg1.json: web/AllowSsh: {code}: {field}: ")
    assert value in problem.message


def test_the_message_of_a_rule_read_outside_an_nsg_starts_with_the_rule_name() -> None:
    with pytest.raises(ValidationErrors) as info:
        rule_from_azure(rule(name="AllowSsh", destinationPortRange="70000"))
    assert str(info.value).startswith("AllowSsh: SecurityRuleInvalidPortRange: destinationPortRange: '70000' ")


def test_the_message_of_a_port_list_reads_as_the_style_guide_shows() -> None:
    group = NetworkSecurityGroup("web", file="nsg1.json")
    with pytest.raises(ValidationErrors) as info:
        group.add_rule(rule(name="AllowSsh", destinationPortRange="22,80"))
    assert str(info.value) == ("nsg1.json: web/AllowSsh: SecurityRuleInvalidPortRange: destinationPortRange: "
                               "'22,80' is a list; use destinationPortRanges")


def test_a_priority_conflict_names_both_rules_and_the_priority() -> None:
    with pytest.raises(ValidationErrors) as info:
        NetworkSecurityGroup("web", [rule_from_azure(rule(name="A")), rule_from_azure(rule(name="B"))])
    assert str(info.value) == ("web/B: SecurityRuleConflict: priority: conflicts with rule A: rules cannot have "
                               "the same priority (100) and direction (Inbound)")


# -- per NSG ------------------------------------------------------------------------------------------

def nsg_codes(rules: list[dict], classic: bool = False) -> list[tuple[str, str]]:
    try:
        NetworkSecurityGroup("nsg", [rule_from_azure(r, classic=classic) for r in rules], classic=classic)
    except ValidationErrors as e:
        return [(p.code, p.field) for p in e.problems]
    return []


@pytest.mark.parametrize("second, valid", [({"direction": "Inbound"}, False), ({"direction": "Outbound"}, True),
                                           ({"direction": "inbound"}, False), ({"priority": 101}, True)])
def test_a_priority_is_taken_once_per_direction(second: dict, valid: bool) -> None:
    rules = [rule(name="A"), rule(name="B", **second)]
    assert nsg_codes(rules) == ([] if valid else [("SecurityRuleConflict", "priority")])


def test_a_third_rule_on_a_taken_priority_conflicts_too() -> None:
    assert nsg_codes([rule(name=n) for n in "ABC"]) == [("SecurityRuleConflict", "priority")] * 2


def test_a_name_is_used_once_per_nsg_even_across_directions() -> None:
    rules = [rule(), rule(priority=200, direction="Outbound")]
    assert nsg_codes(rules) == [("DuplicateResourceName", "name")]


def prefix_rules(side: str, total: int, per_rule: int = 400) -> list[dict]:
    """Rules holding `total` distinct IPv4 prefixes on one side, spread over plural and singular fields."""
    prefixes = [f"10.{i // 256}.{i % 256}.0/24" for i in range(total)]
    chunks = [prefixes[i:i + per_rule] for i in range(0, total, per_rule)]
    return [rule(name=f"r{i}", priority=100 + i,
                 **({f"{side}AddressPrefix": chunk[0]} if len(chunk) == 1 else
                    {f"{side}AddressPrefix": None, f"{side}AddressPrefixes": chunk}))
            for i, chunk in enumerate(chunks)]


@pytest.mark.parametrize("side", ["source", "destination"])
@pytest.mark.parametrize("total, valid", [(4000, True), (4001, False)])
def test_an_nsg_holds_4000_addresses_on_each_side(side: str, total: int, valid: bool) -> None:
    expected = [] if valid else [("SecurityRuleAddressesOrPortsPerSecurityGroupLimitReached",
                                  f"{side}AddressPrefixes")]
    assert nsg_codes(prefix_rules(side, total)) == expected


def test_source_and_destination_addresses_are_counted_separately() -> None:
    """4,000 on each side is within the limit (§3, azure-docs PR #116691)."""
    rules = prefix_rules("source", 4000)
    for r, dst in zip(rules, prefix_rules("destination", 4000)):
        r.update(destinationAddressPrefixes=dst.get("destinationAddressPrefixes", []))
        r.pop("destinationAddressPrefix")
    assert nsg_codes(rules) == []


def test_tags_and_star_do_not_count_towards_the_address_limit() -> None:
    rules = prefix_rules("source", 4000)
    rules += [rule(name="tag", priority=200, sourceAddressPrefix="Internet"),
              rule(name="star", priority=201, sourceAddressPrefix="*")]
    assert nsg_codes(rules) == []


def test_asgs_used_by_several_rules_count_once_towards_100_per_nsg() -> None:
    rules = [rule(name=f"r{i}", priority=100 + i, sourceAddressPrefix=None,
                  sourceApplicationSecurityGroups=asgs("Asg", 10),
                  destinationAddressPrefix=None, destinationApplicationSecurityGroups=asgs(f"Db{i}-", 9))
             for i in range(10)]
    assert nsg_codes(rules) == []
    rules.append(rule(name="one-more", priority=300, sourceAddressPrefix=None,
                      sourceApplicationSecurityGroups=[{"id": ASG + "AsgNew"}]))
    assert nsg_codes(rules) == [("ApplicationSecurityGroupsPerSecurityGroupLimitReached",
                                 "applicationSecurityGroups")]


def many(count: int) -> list[dict]:
    """`count` valid rules: priorities 100..4096 inbound, then outbound."""
    return [rule(name=f"r{i}", priority=100 + i % 3997, direction="Inbound" if i < 3997 else "Outbound")
            for i in range(count)]


@pytest.mark.parametrize("count, valid", [(999, True), (1000, True), (1001, False)])
def test_an_nsg_holds_1000_custom_rules(count: int, valid: bool) -> None:
    assert nsg_codes(many(count)) == ([] if valid else [("SecurityRuleCountLimitReached", "securityRules")])


def test_the_default_rules_do_not_count_towards_the_rule_limit() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(r) for r in many(1000)])
    assert len(group.rules) == 1000
    assert len(group.rules_in_order(Direction.INBOUND)) == 1003


# -- classic NSGs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {},
    {"sourceAddressPrefix": "Internet"},
    {"sourceAddressPrefix": None, "sourceAddressPrefixes": ["10.0.0.0/8"]},
    {"destinationPortRange": None, "destinationPortRanges": ["443"]},
])
def test_a_classic_nsg_takes_one_address_and_one_port_range_per_side(changes: dict) -> None:
    assert codes(rule(**changes), classic=True) == []


@pytest.mark.parametrize("replaced, field, value", [
    ("sourceAddressPrefix", "sourceAddressPrefixes", ["10.0.0.0/8", "192.168.0.0/16"]),
    ("destinationAddressPrefix", "destinationAddressPrefixes", ["10.0.0.1", "10.0.0.2"]),
    ("sourcePortRange", "sourcePortRanges", ["1024", "2048"]),
    ("destinationPortRange", "destinationPortRanges", ["80", "443"]),
    ("destinationAddressPrefix", "destinationApplicationSecurityGroups", asgs("Asg", 1)),
])
def test_a_classic_nsg_rejects_augmented_rules_and_asgs(replaced: str, field: str, value: list) -> None:
    data = rule(**{replaced: None, field: value})
    assert codes(data, classic=True) == [("SecurityRuleAugmentedNotSupportedInClassic", field)]
    assert codes(data) == []


@pytest.mark.parametrize("count, valid", [(200, True), (201, False)])
def test_a_classic_nsg_holds_200_rules(count: int, valid: bool) -> None:
    expected = [] if valid else [("SecurityRuleCountLimitReached", "securityRules")]
    assert nsg_codes(many(count), classic=True) == expected


def test_an_augmented_rule_added_at_run_time_to_a_classic_nsg_is_rejected() -> None:
    group = NetworkSecurityGroup("old", classic=True)
    with pytest.raises(ValidationErrors) as info:
        group.add_rule(rule(destinationPortRange=None, destinationPortRanges=["80", "443"]))
    assert [p.code for p in info.value.problems] == ["SecurityRuleAugmentedNotSupportedInClassic"]
    assert group.rules == ()


# -- default rules -----------------------------------------------------------------------------------

DEFAULTS = [("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork", "VirtualNetwork"),
            ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer", "*"),
            ("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*"),
            ("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork", "VirtualNetwork"),
            ("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", "Internet"),
            ("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*")]


@pytest.mark.parametrize("expected", DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_each_default_rule_is_the_one_azure_defines(expected: tuple) -> None:
    """Reference §2's table: every protocol and port, with the API name."""
    r = next(r for r in DEFAULT_RULES if r.name == expected[0])
    assert (r.name, r.priority, r.direction.value, r.access.value, r.source_address_prefix,
            r.destination_address_prefix) == expected
    assert (r.protocol, r.source_ports, r.destination_ports) == ("*", ((0, 65535),), ((0, 65535),))
    assert r.api_name == "defaultSecurityRules/" + r.name


def test_an_nsg_without_custom_rules_evaluates_the_defaults_in_each_direction() -> None:
    group = NetworkSecurityGroup("empty")
    assert [r.name for r in group.rules_in_order(Direction.OUTBOUND)] == [
        "AllowVnetOutBound", "AllowInternetOutBound", "DenyAllOutBound"]
    assert [r.name for r in group.rules_in_order(Direction.INBOUND)] == [
        "AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound"]


@pytest.mark.parametrize("name", [d[0] for d in DEFAULTS])
def test_no_default_rule_can_be_removed(name: str) -> None:
    group = NetworkSecurityGroup("nsg", file="nsg.json")
    with pytest.raises(RuleError) as info:
        group.remove_rule(name)
    assert (info.value.code, info.value.nsg, info.value.rule) == ("CannotDeleteDefaultSecurityRule", "nsg", name)
    assert name in {r.name for direction in Direction for r in group.rules_in_order(direction)}


def test_a_custom_outbound_rule_overrides_allow_internet_out_bound() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule(
        name="DenyInternetOut", priority=4096, direction="Outbound", access="Deny", protocol="*",
        destinationAddressPrefix="Internet", destinationPortRange="*"))])
    policy = Policy.for_nsg(group, address_space=("10.0.0.0/16",))
    flow = parse_flow("tcp 10.0.0.4:50000 > 203.0.113.9:443").key
    assert policy.evaluate_nsg(group, Direction.OUTBOUND, flow).name == "DenyInternetOut"


def test_a_custom_inbound_rule_overrides_allow_vnet_in_bound() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule(
        name="DenyVnet", priority=4096, access="Deny", protocol="*", sourceAddressPrefix="VirtualNetwork",
        destinationPortRange="*"))])
    policy = Policy.for_nsg(group, address_space=("10.0.0.0/16",))
    flow = parse_flow("tcp 10.0.0.5:1 > 10.0.0.4:2").key
    assert policy.evaluate_nsg(group, Direction.INBOUND, flow).name == "DenyVnet"


def test_a_custom_inbound_rule_overrides_deny_all_in_bound() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule(name="AllowHttpFromAnywhere", priority=4096))])
    policy = Policy.for_nsg(group, address_space=("10.0.0.0/16",))
    flow = parse_flow("tcp 203.0.113.9:50000 > 10.0.0.4:80").key
    assert policy.evaluate_nsg(group, Direction.INBOUND, flow).name == "AllowHttpFromAnywhere"


# -- changes at run time -------------------------------------------------------------------------------

def test_rules_are_viewed_per_direction_by_priority_then_the_defaults() -> None:
    group = NetworkSecurityGroup("nsg")
    for name, priority, direction in [("C", 300, "Inbound"), ("A", 100, "Inbound"), ("O", 100, "Outbound"),
                                      ("B", 200, "Inbound")]:
        group.add_rule(rule(name=name, priority=priority, direction=direction))
    assert [r.name for r in group.rules_in_order(Direction.INBOUND)] == [
        "A", "B", "C", "AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound"]
    assert [r.name for r in group.rules_in_order(Direction.OUTBOUND)][0] == "O"


def test_adding_a_rule_whose_priority_is_taken_leaves_the_nsg_unchanged() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule(name="A"))])
    with pytest.raises(ValidationErrors) as info:
        group.add_rule(rule(name="B"))
    assert [p.code for p in info.value.problems] == ["SecurityRuleConflict"]
    assert ([r.name for r in group.rules], group.version) == (["A"], 0)


def test_adding_an_invalid_rule_is_rejected_with_azures_code_and_leaves_the_nsg_unchanged() -> None:
    group = NetworkSecurityGroup("nsg")
    with pytest.raises(ValidationErrors) as info:
        group.add_rule(rule(priority=4097))
    assert [(p.code, p.nsg) for p in info.value.problems] == [("SecurityRuleInvalidPriority", "nsg")]
    assert (group.rules, group.version) == ((), 0)


def test_adding_a_rule_under_a_taken_name_asks_for_replace() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule())])
    with pytest.raises(RuleError) as info:
        group.add_rule(rule(priority=200))
    assert info.value.code == "DuplicateResourceName"


def test_the_1001st_rule_added_at_run_time_is_rejected() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(r) for r in many(1000)])
    with pytest.raises(ValidationErrors) as info:
        group.add_rule(rule(name="extra", priority=4000, direction="Outbound"))
    assert [p.code for p in info.value.problems] == ["SecurityRuleCountLimitReached"]
    assert len(group.rules) == 1000


def test_replacing_a_rule_by_name_may_move_it_to_a_free_priority() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule(name="A")), rule_from_azure(rule(name="B",
                                                                                                priority=200))])
    group.replace_rule(rule(name="A", priority=300, access="Deny"))
    assert [(r.name, r.priority, r.access) for r in group.rules_in_order(Direction.INBOUND)[:2]] == [
        ("B", 200, Access.ALLOW), ("A", 300, Access.DENY)]
    assert len(group.rules) == 2


def test_replacing_a_rule_onto_another_rules_priority_is_a_conflict() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule(name="A")), rule_from_azure(rule(name="B",
                                                                                                priority=200))])
    with pytest.raises(ValidationErrors) as info:
        group.replace_rule(rule(name="A", priority=200))
    assert [p.code for p in info.value.problems] == ["SecurityRuleConflict"]
    assert group.rules_in_order(Direction.INBOUND)[0].priority == 100


def test_replacing_an_unknown_name_creates_the_rule_as_a_put_does() -> None:
    group = NetworkSecurityGroup("nsg")
    group.replace_rule(rule(name="New"))
    assert [r.name for r in group.rules] == ["New"]


def test_removing_a_rule_frees_its_priority() -> None:
    group = NetworkSecurityGroup("nsg", [rule_from_azure(rule(name="A"))])
    group.remove_rule("A")
    group.add_rule(rule(name="B"))
    assert [r.name for r in group.rules] == ["B"]


def test_removing_an_unknown_rule_is_an_error_naming_it() -> None:
    with pytest.raises(RuleError) as info:
        NetworkSecurityGroup("nsg").remove_rule("Nothing")
    assert (info.value.code, info.value.rule) == ("NotFound", "Nothing")


def test_every_change_advances_the_version_so_compiled_lookups_rebuild() -> None:
    group = NetworkSecurityGroup("nsg")
    group.add_rule(rule(name="A"))
    group.replace_rule(rule(name="A", priority=200))
    group.remove_rule("A")
    assert group.version == 3


def test_spaces_around_a_port_range_are_ignored_as_azure_ignores_them() -> None:
    rule = rule_from_azure({"name": "AllowGatewayManager", "properties": {
        "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": "65503-65534 "}})
    assert rule.destination_ports == ((65503, 65534),)
