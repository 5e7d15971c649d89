"""Azure's platform rules (reference §9) and NAT order (§1, interfaces), one behaviour each."""

from __future__ import annotations

import copy

import pytest

from dataplane import Policy, parse_flow, scenario_from_document


def rule(name, priority, direction, access, protocol="*", source="*", destination="*", dport="*"):
    return {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": destination,
            "destinationPortRange": dport}


LOCKED_DOWN = [rule("DenyAllIn", 4000, "Inbound", "Deny"), rule("DenyAllOut", 4000, "Outbound", "Deny")]
BASE = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.5.0.0/16"], "subnets": [
        {"name": "app", "prefix": "10.5.1.0/24"}, {"name": "web", "prefix": "10.5.2.0/24"}]}],
    "network_interfaces": [
        {"name": "vm-nic", "subnet": "vnet/app", "private_ips": ["10.5.1.4"], "public_ip": "20.5.1.4", "nsg": "nsg"},
        {"name": "web1-nic", "subnet": "vnet/web", "private_ips": ["10.5.2.4"], "nsg": "nsg-web"},
        {"name": "web2-nic", "subnet": "vnet/web", "private_ips": ["10.5.2.5"], "nsg": "nsg-web"}],
    "load_balancers": [{"name": "lb", "frontend_ip": "20.5.2.100", "rules": [
        {"protocol": "Tcp", "frontend_port": 443, "backend_port": 8443, "backend_pool": ["web1-nic", "web2-nic"]}]}],
    "network_security_groups": [{"name": "nsg", "security_rules": LOCKED_DOWN},
                                {"name": "nsg-web", "security_rules": [
                                    rule("AllowHttps", 100, "Inbound", "Allow", "Tcp", "Internet", "*", "8443")]}],
}


def policy(rules=None, **top) -> Policy:
    doc = copy.deepcopy(BASE)
    if rules is not None:
        doc["network_security_groups"][0]["security_rules"] = rules
    doc.update(top)
    return Policy(scenario_from_document(doc))


def decide(p: Policy, flow: str):
    return p.decide(parse_flow(flow))


# -- platform --------------------------------------------------------------------------------

@pytest.mark.parametrize("port", [80, 32526])
def test_the_vm_agent_ports_of_the_host_ip_are_never_filtered(port) -> None:
    d = decide(policy([*LOCKED_DOWN, rule("DenyHost", 100, "Outbound", "Deny", destination="168.63.129.16")]),
               f"tcp 10.5.1.4:40000 > 168.63.129.16:{port}")
    assert (d.decision, d.reason, d.nsg, d.rule) == ("Allow", "platform", None, None)


def test_dns_to_the_host_ip_passes_a_deny_all_outbound() -> None:
    d = decide(policy(), "udp 10.5.1.4:40000 > 168.63.129.16:53")
    assert (d.decision, d.reason) == ("Allow", "platform")


def test_dns_to_the_host_ip_is_denied_by_a_rule_denying_azure_platform_dns() -> None:
    d = decide(policy([*LOCKED_DOWN, rule("NoDns", 100, "Outbound", "Deny", destination="AzurePlatformDNS")]),
               "udp 10.5.1.4:40000 > 168.63.129.16:53")
    assert (d.decision, d.rule) == ("Deny", "NoDns")


def test_imds_passes_a_deny_all_outbound() -> None:
    assert decide(policy(), "tcp 10.5.1.4:40000 > 169.254.169.254:80").reason == "platform"


def test_imds_is_denied_by_a_rule_denying_azure_platform_imds() -> None:
    d = decide(policy([*LOCKED_DOWN, rule("NoImds", 100, "Outbound", "Deny", destination="AzurePlatformIMDS")]),
               "tcp 10.5.1.4:40000 > 169.254.169.254:80")
    assert (d.decision, d.rule) == ("Deny", "NoImds")


@pytest.mark.parametrize("kms", ["23.102.135.246", "20.118.99.224", "40.83.235.53"])
def test_kms_activation_passes_a_deny_all_outbound(kms) -> None:
    assert decide(policy(), f"tcp 10.5.1.4:40000 > {kms}:1688").reason == "platform"


def test_kms_is_denied_by_a_rule_denying_azure_platform_lkm() -> None:
    d = decide(policy([*LOCKED_DOWN, rule("NoKms", 100, "Outbound", "Deny", destination="AzurePlatformLKM")]),
               "tcp 10.5.1.4:40000 > 23.102.135.246:1688")
    assert (d.decision, d.rule) == ("Deny", "NoKms")


def test_kms_is_filtered_by_the_rules_under_forced_tunneling() -> None:
    d = decide(policy(forced_tunneling=True), "tcp 10.5.1.4:40000 > 23.102.135.246:1688")
    assert (d.decision, d.rule) == ("Deny", "DenyAllOut")


def test_kms_on_another_port_is_filtered_by_the_rules() -> None:
    assert decide(policy(), "tcp 10.5.1.4:40000 > 23.102.135.246:1687").rule == "DenyAllOut"


@pytest.mark.parametrize("subscription, decision", [
    ("pay-as-you-go", "Deny"), ("msdn", "Deny"), ("csp", "Deny"), ("ea-dev-test", "Deny"),
    ("enterprise-agreement", "Allow")])
def test_outbound_smtp_to_the_internet_depends_on_the_subscription_type(subscription, decision) -> None:
    d = decide(policy([], subscription_type=subscription), "tcp 10.5.1.4:40000 > 198.51.100.25:25")
    assert d.decision == decision
    if decision == "Deny":
        assert (d.reason, d.nsg, d.rule) == ("platform", None, None)


def test_smtp_inside_the_virtual_network_is_not_blocked() -> None:
    assert decide(policy([]), "tcp 10.5.1.4:40000 > 10.5.2.4:25").decision == "Allow"


def test_a_load_balancer_health_probe_is_allowed_by_the_default_rules() -> None:
    """168.63.129.16 is in both VirtualNetwork and AzureLoadBalancer, so AllowVnetInBound (65000) sees it first."""
    d = decide(policy([]), "tcp 168.63.129.16:50000 > 10.5.1.4:8080")
    assert (d.decision, d.rule, d.reason) == ("Allow", "AllowVnetInBound", "rules")


def test_a_deny_of_virtual_network_inbound_also_denies_health_probes_unless_load_balancer_is_allowed_above() -> None:
    deny_vnet = rule("DenyVnetIn", 4000, "Inbound", "Deny", source="VirtualNetwork")
    probe = "tcp 168.63.129.16:50000 > 10.5.1.4:8080"
    assert decide(policy([deny_vnet]), probe).rule == "DenyVnetIn"
    allow_lb = rule("AllowProbes", 3900, "Inbound", "Allow", source="AzureLoadBalancer")
    assert decide(policy([deny_vnet, allow_lb]), probe).rule == "AllowProbes"


def test_a_load_balancer_health_probe_can_be_denied_by_a_rule() -> None:
    d = decide(policy([rule("NoProbes", 100, "Inbound", "Deny", source="AzureLoadBalancer")]),
               "tcp 168.63.129.16:50000 > 10.5.1.4:8080")
    assert (d.decision, d.rule) == ("Deny", "NoProbes")


# -- NAT ---------------------------------------------------------------------------------------

def test_a_rule_written_for_the_public_ip_never_matches_inbound() -> None:
    d = decide(policy([rule("AllowToPublic", 100, "Inbound", "Allow", "Tcp", destination="20.5.1.4", dport="22")]),
               "tcp 203.0.113.7:50000 > 20.5.1.4:22")
    assert (d.decision, d.rule) == ("Deny", "DenyAllInBound")


def test_a_rule_written_for_the_private_address_matches_traffic_sent_to_the_public_ip() -> None:
    d = decide(policy([rule("AllowToPrivate", 100, "Inbound", "Allow", "Tcp", destination="10.5.1.4", dport="22")]),
               "tcp 203.0.113.7:50000 > 20.5.1.4:22")
    assert (d.decision, d.rule) == ("Allow", "AllowToPrivate")
    assert str(d.to_json()["translated"]) == "tcp 203.0.113.7:50000 > 10.5.1.4:22"


def test_an_outbound_rule_on_the_private_source_matches_and_the_flow_leaves_from_the_public_ip() -> None:
    d = decide(policy([rule("AllowFromPrivate", 100, "Outbound", "Allow", "Tcp", source="10.5.1.4", dport="443")]),
               "tcp 10.5.1.4:40000 > 198.51.100.1:443")
    assert (d.decision, d.rule) == ("Allow", "AllowFromPrivate")
    assert d.to_json()["translated"] == "tcp 20.5.1.4:40000 > 198.51.100.1:443"


def test_an_outbound_rule_on_the_public_source_never_matches() -> None:
    d = decide(policy([rule("DenyFromPublic", 100, "Outbound", "Deny", source="20.5.1.4")]),
               "tcp 10.5.1.4:40000 > 198.51.100.1:443")
    assert (d.decision, d.rule) == ("Allow", "AllowInternetOutBound")


def test_a_load_balanced_flow_reaches_a_backend_with_the_clients_source_kept() -> None:
    d = decide(policy(), "tcp 203.0.113.7:50000 > 20.5.2.100:443")
    assert (d.decision, d.rule) == ("Allow", "AllowHttps")
    assert d.to_json()["translated"] in ("tcp 203.0.113.7:50000 > 10.5.2.4:8443",
                                         "tcp 203.0.113.7:50000 > 10.5.2.5:8443")


def arrival(policy: Policy, flow: str):
    """The leg where a flow arrives, inbound at its NIC."""
    return policy.route.legs(parse_flow(flow).key).legs[-1]


def test_the_backend_is_chosen_from_the_flow_deterministically() -> None:
    flows = [f"tcp 203.0.113.7:{50000 + i} > 20.5.2.100:443" for i in range(30)]
    first = [arrival(policy(), f).nic.name for f in flows]
    assert first == [arrival(policy(), f).nic.name for f in flows]
    assert set(first) == {"web1-nic", "web2-nic"}


def test_a_backend_pool_member_leaves_through_the_load_balancer_frontend() -> None:
    d = decide(policy(), "tcp 10.5.2.4:40000 > 198.51.100.1:443")
    assert d.to_json()["translated"].startswith("tcp 20.5.2.100:")
    leaving = policy().route.legs(parse_flow("tcp 10.5.2.4:40000 > 198.51.100.1:443").key).legs[0]
    assert leaving.nat is not None and leaving.nat.frontend is not None


def test_a_frontend_port_without_a_load_balancing_rule_is_denied() -> None:
    d = decide(policy(), "tcp 203.0.113.7:50000 > 20.5.2.100:22")
    assert (d.decision, d.reason) == ("Deny", "no-lb-rule")


def test_a_nic_without_public_ip_or_frontend_leaves_with_its_private_source() -> None:
    doc = copy.deepcopy(BASE)
    del doc["network_interfaces"][0]["public_ip"]
    d = Policy(scenario_from_document(doc)).decide(parse_flow("tcp 10.5.1.4:40000 > 198.51.100.1:443"))
    assert d.to_json()["translated"] == "tcp 10.5.1.4:40000 > 198.51.100.1:443"
