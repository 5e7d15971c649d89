"""The dataplane's fast paths decide as its plain paths do.

`Dataplane.process` takes shortcuts: a new flow that touches one NIC untranslated asks the policy
for that NIC alone (`_new_at_nic`), and busy flows skip the NIC lookups (`_recent`). Here a
dataplane with the shortcuts and one without them see the same random packets and must agree on
every verdict; and every new flow's verdict agrees with `Policy.decide_key`, the stateless answer.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import Dataplane, scenario_from_document
from dataplane.decode import Packet
from dataplane.policy import Policy

ASG = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/applicationSecurityGroups/"


def rule(name, priority, direction, access, protocol, dport, source="*", destination="*", **extra):
    data = {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": destination,
            "destinationPortRange": dport}
    for side in ("source", "destination"):
        if f"{side}Asg" in extra:
            del data[f"{side}AddressPrefix"]
            data[f"{side}ApplicationSecurityGroups"] = [{"id": ASG + extra[f"{side}Asg"]}]
    return data


SCENARIO = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.2.0.0/16"], "subnets": [
        {"name": "front", "prefix": "10.2.1.0/24", "nsg": "nsg-front"},
        {"name": "back", "prefix": "10.2.2.0/24", "nsg": "nsg-back"},
        {"name": "open", "prefix": "10.2.3.0/24"}]}],
    "network_interfaces": [
        {"name": "web1", "subnet": "vnet/front", "private_ips": ["10.2.1.4"], "application_security_groups": ["Web"],
         "nsg": "nsg-web"},
        {"name": "web2", "subnet": "vnet/front", "private_ips": ["10.2.1.5"], "application_security_groups": ["Web"]},
        {"name": "db", "subnet": "vnet/back", "private_ips": ["10.2.2.4"], "application_security_groups": ["Db"]},
        {"name": "jump", "subnet": "vnet/open", "private_ips": ["10.2.3.4"], "public_ip": "20.2.3.4"}],
    "load_balancers": [{"name": "lb", "frontend_ip": "20.2.1.100", "rules": [
        {"protocol": "Tcp", "frontend_port": 80, "backend_port": 8080, "backend_pool": ["web1", "web2"]}]}],
    "network_security_groups": [
        {"name": "nsg-front", "security_rules": [
            rule("AllowHttp", 100, "Inbound", "Allow", "Tcp", "8080", source="Internet"),
            rule("DenyUdp", 200, "Inbound", "Deny", "Udp", "*")]},
        {"name": "nsg-web", "security_rules": [
            rule("AllowHttpNic", 100, "Inbound", "Allow", "Tcp", "8080"),
            rule("DenyOutUdp", 100, "Outbound", "Deny", "Udp", "*", destination="Internet")]},
        {"name": "nsg-back", "security_rules": [
            rule("AllowSql", 100, "Inbound", "Allow", "Tcp", "1433", sourceAsg="Web", destinationAsg="Db"),
            rule("DenySql", 110, "Inbound", "Deny", "*", "1433"),
            rule("DenyInternetOut", 100, "Outbound", "Deny", "*", "*", destination="Internet")]}],
}

HOSTS = [int.from_bytes(bytes(map(int, ip.split("."))), "big") for ip in (
    "10.2.1.4", "10.2.1.5", "10.2.2.4", "10.2.3.4", "20.2.3.4", "20.2.1.100", "203.0.113.9", "10.2.9.9")]
PORTS = [80, 8080, 1433, 22, 40000, 40001]
packets = st.builds(
    lambda proto, src, dst, sport, dport, flags: Packet(
        4, proto, src, dst, sport if proto != 1 else 0, dport if proto != 1 else 0, flags if proto == 6 else 0,
        8 if proto == 1 else -1, 0 if proto == 1 else -1, 0, 60, 0, 0, False, False, (), None),
    st.sampled_from([6, 17, 1]), st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.sampled_from(PORTS),
    st.sampled_from(PORTS), st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x04]))


def plain(dp: Dataplane) -> Dataplane:
    """The same dataplane without its shortcuts: every new flow through `_new`, no recent-flow cache."""
    dp._new_at_nic = lambda p, ts, key, nic, direction, fragment_alone: dp._new(p, ts, key, fragment_alone)
    process = dp.process

    def process_without_recent(packet, ts, linktype=1):
        dp._recent.clear()
        return process(packet, ts, linktype)

    dp.process = process_without_recent
    return dp


def fields(verdict) -> tuple:
    return (verdict.decision, verdict.reason, verdict.direction, verdict.nic, verdict.nsg, verdict.rule,
            verdict.state, verdict.translated)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(packets, st.floats(0, 150)), min_size=1, max_size=60))
def test_the_fast_paths_give_the_verdicts_of_the_plain_paths(sequence) -> None:
    fast = Dataplane(scenario_from_document(SCENARIO))
    slow = plain(Dataplane(scenario_from_document(SCENARIO)))
    now = 0.0
    for packet, dt in sequence:
        now += dt
        assert fields(fast.process(packet, now)) == fields(slow.process(packet, now)), packet


def test_every_new_flow_is_decided_as_policy_decide_key_decides_it() -> None:
    policy = Policy(scenario_from_document(SCENARIO))
    for proto, src, dst, dport in itertools.product((6, 17), HOSTS, HOSTS, PORTS):
        if src == dst:
            continue
        dp = Dataplane(scenario_from_document(SCENARIO))
        verdict = dp.process(Packet(4, proto, src, dst, 40000, dport, 0x02 if proto == 6 else 0, -1, -1, 0, 60, 0,
                                    0, False, False, (), None), 0.0)
        if verdict.decision == "Skip":
            continue
        decision = policy.decide_key((proto, 4, src, 40000, dst, dport))
        assert (verdict.decision, verdict.nsg, verdict.rule, verdict.reason) == \
            (decision.decision, decision.nsg, decision.rule, decision.reason), (proto, src, dst, dport)
