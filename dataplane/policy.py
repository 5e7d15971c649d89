"""One flow across the topology, statelessly, as a new connection: the decision and why.

The path (reference §1, §2, §9): a packet from a NIC's private address is evaluated outbound at that
NIC (NIC NSG, then subnet NSG), on its private source, then translated (SNAT) if it leaves the VNet;
a packet to a NIC's private address, public IP or load-balancer frontend is translated first (DNAT)
and evaluated inbound there (subnet NSG, then NIC NSG). A missing NSG allows at its level; a Deny
ends evaluation. Platform exemptions and blocks wrap the NSG chain of each leg.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, NamedTuple

from netaddr import IPRange

from .addresses import Ranges, merge_ranges
from .classifier import Classifier
from .errors import DataplaneError
from .flows import Flow
from .nat import Translations, ip_key
from .nsg import NetworkSecurityGroup
from .platform import ALWAYS, exemption, smtp_blocked
from .rules import Access, Direction, SecurityRule, parse_prefix
from .topology import NetworkInterface, Scenario, single_nsg_scenario

ALLOW, DENY = "Allow", "Deny"
Key = tuple[int, int, int, int, int, int]
"""(protocol, version, src, sport, dst, dport) with integer addresses: what the hot path carries."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One NSG's verdict on the path, in Azure's evaluation order."""

    nsg: str
    attachment: str | None
    nic: str | None
    direction: str
    rule: str
    access: str

    def to_json(self) -> dict[str, Any]:
        return {"nsg": self.nsg, "attachment": self.attachment, "nic": self.nic, "direction": self.direction,
                "rule": self.rule, "access": self.access}


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to a new flow: the contract's `check --json` object, plus where it was recorded."""

    flow: Key
    decision: str
    nsg: str | None
    rule: str | None
    reason: str
    evaluations: tuple[Evaluation, ...]
    translated: Key
    source_nic: str | None = None
    destination_nic: str | None = None
    inbound_key: Key | None = None
    snat_frontend: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW

    def to_json(self) -> dict[str, Any]:
        return {"flow": str(key_to_flow(self.flow)), "decision": self.decision, "nsg": self.nsg, "rule": self.rule,
                "translated": str(key_to_flow(self.translated)),
                "evaluations": [e.to_json() for e in self.evaluations], "reason": self.reason}


class RuleExplanation(NamedTuple):
    rule: SecurityRule
    fields: dict[str, bool]

    @property
    def matched(self) -> bool:
        return all(self.fields.values())


@dataclass(frozen=True, slots=True)
class NsgExplanation:
    """Every rule of one NSG on the path with which fields matched, like Azure's NSG diagnostics."""

    nsg: str
    attachment: str | None
    nic: str | None
    direction: str
    key: Key
    rules: tuple[RuleExplanation, ...]
    evaluated: bool

    @property
    def deciding(self) -> SecurityRule | None:
        return next((r.rule for r in self.rules if r.matched), None)


def key_to_flow(key: Key) -> Flow:
    proto, version, src, sport, dst, dport = key
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return Flow(proto, make(src), sport, make(dst), dport)


class _Leg(NamedTuple):
    nic: NetworkInterface
    direction: Direction
    key: Key
    chain: tuple[tuple[NetworkSecurityGroup, str], ...]


class Policy:
    """Decides flows for a scenario; classifiers are compiled per NSG, direction and VNet, and
    recompiled when an NSG's version changes."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.translations = Translations(scenario)
        self.nics_by_ip: dict[int, NetworkInterface] = {
            ip_key(ip.version, int(ip)): nic for nic in scenario.network_interfaces.values() for ip in nic.private_ips}
        self._classifiers: dict[tuple[str, Direction, str], tuple[NetworkSecurityGroup, int, Classifier]] = {}
        self._vnet_space: dict[str, Ranges] = {}
        self._internet: dict[str, Ranges] = {}
        self._resolvers: dict[str, Any] = {}

    @classmethod
    def for_nsg(cls, nsg: NetworkSecurityGroup, *, address_space: tuple[str, ...] = (),
                service_tags=None) -> "Policy":
        return cls(single_nsg_scenario(nsg, address_space=address_space, service_tags=service_tags))

    def resolver(self, vnet: str):
        resolver = self._resolvers.get(vnet)
        if resolver is None:
            resolver = self._resolvers[vnet] = self.scenario.resolver(vnet)
        return resolver

    def classifier(self, nsg: NetworkSecurityGroup, direction: Direction, vnet: str) -> Classifier:
        slot = (nsg.name, direction, vnet)
        cached = self._classifiers.get(slot)
        if cached is not None and cached[0] is nsg and cached[1] == nsg.version:
            return cached[2]
        try:
            compiled = Classifier(nsg.rules_in_order(direction), self.resolver(vnet))
        except DataplaneError as e:
            raise e.located(file=nsg.file, nsg=nsg.name) from None
        self._classifiers[slot] = (nsg, nsg.version, compiled)
        return compiled

    def evaluate_nsg(self, nsg: NetworkSecurityGroup, direction: Direction, key: Key, vnet: str = "vnet") -> SecurityRule:
        """The first matching rule of one NSG: a default rule always matches."""
        classifier = self.classifier(nsg, direction, vnet)
        return classifier.rules[classifier.lookup(*key)]

    def decide_in_nsg(self, nsg: NetworkSecurityGroup, direction: Direction, flow: Flow) -> Decision:
        """One NSG, no topology (`check --nsg`): one evaluation, no attachment, no translation."""
        rule = self.evaluate_nsg(nsg, direction, flow.key)
        evaluation = Evaluation(nsg.name, None, None, direction.value, rule.name, rule.access.value)
        return Decision(flow.key, rule.access.value, nsg.name, rule.name, "rules", (evaluation,), flow.key)

    def explain_in_nsg(self, nsg: NetworkSecurityGroup, direction: Direction, flow: Flow) -> tuple[Decision, list["NsgExplanation"]]:
        rules = tuple(RuleExplanation(r, f) for r, f in self.classifier(nsg, direction, "vnet").field_matches(*flow.key))
        return self.decide_in_nsg(nsg, direction, flow), [
            NsgExplanation(nsg.name, None, None, direction.value, flow.key, rules, True)]

    def in_range(self, ranges: Ranges, version: int, ip: int) -> bool:
        return any(lo <= ip <= hi for lo, hi in ranges[0 if version == 4 else 1])

    def internet(self, vnet: str) -> Ranges:
        cached = self._internet.get(vnet)
        if cached is None:
            cached = self._internet[vnet] = self.resolver(vnet).resolve("Internet")
        return cached

    def virtual_network(self, vnet: str) -> Ranges:
        cached = self._vnet_space.get(vnet)
        if cached is None:
            cached = self._vnet_space[vnet] = self.resolver(vnet).resolve("VirtualNetwork")
        return cached

    def decide(self, flow: Flow) -> Decision:
        return self.decide_key(flow.key)

    def decide_key(self, key: Key) -> Decision:
        legs, translated, snat, inbound_via = self._path(key)
        if inbound_via is not None and inbound_via.nic is None:
            return Decision(key, DENY, None, None, "no-lb-rule", (), key)
        evaluations: list[Evaluation] = []
        decided: tuple[str | None, str | None] = (None, None)
        reason = "no-nsg"
        for leg in legs:
            access, nsg, rule, leg_reason = self._leg(leg, evaluations)
            if access == DENY:
                return self._decision(key, DENY, nsg, rule, leg_reason, evaluations, translated, legs, snat)
            if leg_reason == "platform":
                reason, decided = "platform", (None, None)
            elif nsg is not None and reason != "platform":
                reason, decided = "rules", (nsg, rule)
        return self._decision(key, ALLOW, decided[0], decided[1], reason, evaluations, translated, legs, snat)

    def _decision(self, key: Key, access: str, nsg: str | None, rule: str | None, reason: str,
                  evaluations: list[Evaluation], translated: Key, legs: list[_Leg], snat: str | None) -> Decision:
        out = next((leg for leg in legs if leg.direction == Direction.OUTBOUND), None)
        inn = next((leg for leg in legs if leg.direction == Direction.INBOUND), None)
        return Decision(key, access, nsg, rule, reason, tuple(evaluations), translated,
                        out.nic.name if out else None, inn.nic.name if inn else None,
                        inn.key if inn else None, snat)

    def _path(self, key: Key):
        """The legs of a flow, the key as it finally travels, and the translations on the way."""
        proto, version, src, sport, dst, dport = key
        legs: list[_Leg] = []
        snat = None
        translated = key
        source_nic = self.nics_by_ip.get(ip_key(version, src))
        if source_nic is not None:
            legs.append(_Leg(source_nic, Direction.OUTBOUND, key, self._chain(source_nic, Direction.OUTBOUND)))
            if not self.in_range(self.virtual_network(source_nic.vnet), version, dst) \
                    and ip_key(version, dst) not in self.nics_by_ip:
                out = self.translations.outbound(source_nic, version, src)
                if out is not None:
                    src = out.src
                    snat = out.frontend
                    translated = (proto, version, src, sport, dst, dport)
        inbound = self.translations.inbound(proto, version, src, sport, dst, dport)
        if inbound is not None:
            if inbound.nic is None:
                return legs, translated, snat, inbound
            dst, dport = inbound.dst, inbound.dport
            translated = (proto, version, src, sport, dst, dport)
        dest_nic = self.nics_by_ip.get(ip_key(version, dst))
        if dest_nic is not None:
            legs.append(_Leg(dest_nic, Direction.INBOUND, translated, self._chain(dest_nic, Direction.INBOUND)))
        if not legs:
            flow = key_to_flow(key)
            raise DataplaneError(f"{flow}: neither {flow.src} nor {flow.dst} is an address of a NIC, public IP "
                                 "or load-balancer frontend of the scenario")
        return legs, translated, snat, inbound

    def _chain(self, nic: NetworkInterface, direction: Direction) -> tuple[tuple[NetworkSecurityGroup, str], ...]:
        subnet_nsg = self.scenario.nsg(nic.subnet.nsg)
        nic_nsg = self.scenario.nsg(nic.nsg)
        levels = [(subnet_nsg, f"subnet {nic.subnet.key}"), (nic_nsg, f"nic {nic.name}")]
        if direction == Direction.OUTBOUND:
            levels.reverse()
        return tuple((nsg, attachment) for nsg, attachment in levels if nsg is not None)

    def _leg(self, leg: _Leg, evaluations: list[Evaluation]) -> tuple[str, str | None, str | None, str]:
        """(access, deciding NSG, rule, reason) of one NIC's NSG chain with the platform around it."""
        proto, version, src, sport, dst, dport = leg.key
        outbound = leg.direction == Direction.OUTBOUND
        remote, remote_port = (dst, dport) if outbound else (src, sport)
        exempt = exemption(outbound, proto, version, remote, remote_port, self.scenario.forced_tunneling)
        if exempt == ALWAYS:
            return ALLOW, None, None, "platform"
        access, nsg, rule = ALLOW, None, None
        for group, attachment in leg.chain:
            matched = self.evaluate_nsg(group, leg.direction, leg.key, leg.nic.vnet)
            evaluations.append(Evaluation(group.name, attachment, leg.nic.name, leg.direction.value,
                                          matched.name, matched.access.value))
            access, nsg, rule = matched.access.value, group.name, matched
            if matched.access == Access.DENY:
                break
        if exempt is not None:
            denies_tag = access == DENY and rule is not None and \
                (rule.destination_address_prefix or "").lower() == exempt.lower()
            if not denies_tag:
                return ALLOW, None, None, "platform"
        if access == ALLOW and smtp_blocked(outbound, proto, dport, self.in_range(self.internet(leg.nic.vnet), version, dst),
                                            self.scenario.smtp_blocked):
            return DENY, None, None, "platform"
        return access, nsg, rule.name if rule is not None else None, "rules" if nsg else "no-nsg"

    def explain(self, flow: Flow) -> tuple[Decision, list[NsgExplanation]]:
        """The decision and, for each NSG on the path, every rule with the fields that matched."""
        decision = self.decide(flow)
        legs, _, _, inbound_via = self._path(flow.key)
        evaluated = {(e.nsg, e.attachment, e.direction) for e in decision.evaluations}
        out = []
        for leg in legs:
            for group, attachment in leg.chain:
                classifier = self.classifier(group, leg.direction, leg.nic.vnet)
                rules = tuple(RuleExplanation(r, f) for r, f in classifier.field_matches(*leg.key))
                out.append(NsgExplanation(group.name, attachment, leg.nic.name, leg.direction.value, leg.key, rules,
                                          (group.name, attachment, leg.direction.value) in evaluated))
        return decision, out


def _azure_ports(single: str | None, many: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Effective rules show `*` as 0-65535 (reference §7)."""
    if single is not None:
        return ("0-65535" if single == "*" else single), []
    return None, list(many)


def _cidrs(ranges: Ranges) -> list[str]:
    out = []
    for version, spans in ((4, ranges[0]), (6, ranges[1])):
        for lo, hi in spans:
            out.extend(str(c) for c in IPRange(lo, hi, version=version).cidrs())
    return out


def effective_rules(policy: Policy, nic_name: str) -> list[dict[str, Any]]:
    """`az network nic list-effective-nsg` for a NIC: both NSGs, tags and ASGs expanded (reference §7)."""
    scenario = policy.scenario
    nic = scenario.network_interfaces.get(nic_name)
    if nic is None:
        raise DataplaneError(f"no network interface named {nic_name!r} in the scenario "
                             f"(there are: {', '.join(scenario.network_interfaces) or 'none'})", file=scenario.file)
    resolver = policy.resolver(nic.vnet)
    out = []
    for group, association in ((scenario.nsg(nic.subnet.nsg), {"subnet": {"id": nic.subnet.key}}),
                               (scenario.nsg(nic.nsg), {"networkInterface": {"id": nic.name}})):
        if group is None:
            continue
        rules = []
        for direction in (Direction.INBOUND, Direction.OUTBOUND):
            for rule in group.rules_in_order(direction):
                entry: dict[str, Any] = {"name": rule.api_name,
                                         "protocol": "All" if rule.protocol == "*" else rule.protocol}
                for side in ("source", "destination"):
                    port, ports = _azure_ports(getattr(rule, f"{side}_port_range"), getattr(rule, f"{side}_port_ranges"))
                    entry[f"{side}PortRange"] = port
                    entry[f"{side}PortRanges"] = ports
                    single = getattr(rule, f"{side}_address_prefix")
                    asgs = getattr(rule, f"{side}_application_security_groups")
                    entry[f"{side}AddressPrefix"] = "0.0.0.0/0" if single == "*" else single
                    entry[f"{side}AddressPrefixes"] = list(getattr(rule, f"{side}_address_prefixes"))
                    if asgs:
                        entry[f"{side}ApplicationSecurityGroups"] = list(asgs)
                        expanded = _cidrs(_merge([resolver.resolve_asg(a) for a in asgs]))
                    elif single is not None and single != "*" and parse_prefix(single) is None:
                        expanded = _cidrs(resolver.resolve(single))
                    else:
                        expanded = None
                    entry[f"expanded{side.capitalize()}AddressPrefix"] = expanded
                entry.update(access=rule.access.value, priority=rule.priority, direction=rule.direction.value)
                rules.append(entry)
        out.append({"networkSecurityGroup": {"id": group.name}, "association": association,
                    "effectiveSecurityRules": rules})
    return out


def _merge(parts: list[Ranges]) -> Ranges:
    return merge_ranges(r for p in parts for r in p[0]), merge_ranges(r for p in parts for r in p[1])
