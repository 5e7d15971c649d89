"""One flow across the topology, statelessly, as a new connection: the decision and why.

`route` gives the legs (reference §1, §2, §9); each leg is evaluated at its NIC, NIC NSG then subnet
NSG outbound, subnet NSG then NIC NSG inbound. A missing NSG allows at its level; a Deny ends
evaluation. Platform exemptions and blocks wrap the NSG chain of each leg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .addresses import RangeSet, Ranges, merge_ranges
from .classifier import Classifier
from .errors import DataplaneError
from .flows import Flow, key_to_flow
from .addresses import ip_key
from .nat import Translations
from .route import Key, Route, Router
from .nsg import NetworkSecurityGroup
from .platform import ALWAYS, PLATFORM_ADDRESSES, exemption, smtp_blocked
from .rules import Direction, SecurityRule, parse_prefix
from .topology import NetworkInterface, Scenario, single_nsg_scenario

ALLOW, DENY = "Allow", "Deny"


class Evaluation(NamedTuple):
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


class Decision(NamedTuple):
    """What happens to a new flow: the contract's `check --json` object.

    A named tuple rather than a dataclass: the dataplane builds one for every new flow.
    """

    flow: Key
    decision: str
    nsg: str | None
    rule: str | None
    reason: str
    evaluations: tuple[Evaluation, ...]
    translated: Key

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW

    def where(self, route: Route) -> tuple[str, str | None]:
        """The direction and NIC a verdict names: the last NSG evaluated, else the route's last NIC."""
        if self.evaluations:
            return self.evaluations[-1].direction, self.evaluations[-1].nic
        if route.legs and route.blocked is None:
            return route.legs[-1].direction.value, route.legs[-1].nic.name
        return "Outbound", None

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


class LegResult(NamedTuple):
    access: str
    nsg: str | None
    rule: str | None
    reason: str
    evaluations: tuple[Evaluation, ...]
    rule_object: SecurityRule | None


PLATFORM_ALLOW = LegResult(ALLOW, None, None, "platform", (), None)


def combined(results: tuple[LegResult, ...]) -> tuple[str, str | None, str | None, str, tuple[Evaluation, ...]]:
    """A new flow's decision, NSG, rule, reason and evaluations from the results of its legs in order
    (evaluation stops at a Deny): a platform rule's allow names no rule, else the last NSG that allowed."""
    evaluations: tuple[Evaluation, ...] = ()
    nsg = rule = None
    reason = "no-nsg"
    for result in results:
        evaluations = evaluations + result.evaluations if evaluations else result.evaluations
        if result.access == DENY:
            return DENY, result.nsg, result.rule, result.reason, evaluations
        if result.reason == "platform":
            reason, nsg, rule = "platform", None, None
        elif result.nsg is not None and reason != "platform":
            reason, nsg, rule = "rules", result.nsg, result.rule
    return ALLOW, nsg, rule, reason, evaluations


class _CompiledChain(NamedTuple):
    """A NIC's chain compiled; `results` holds the leg result of each combination of matched rules
    (an index for a one-NSG chain), shared by every flow that combination decides."""

    chain: tuple[tuple[NetworkSecurityGroup, str], ...]
    classifiers: list[Classifier]
    results: dict[int | tuple[int, ...], LegResult]
    versions: tuple[tuple[str, NetworkSecurityGroup, int], ...]
    """(name, NSG, its version when compiled) of each NSG of the chain, compared on every use."""


OUTBOUND = Direction.OUTBOUND


class Policy:
    """Decides flows for a scenario; classifiers are compiled per NSG, direction and VNet, and
    recompiled when an NSG's version changes."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.translations = Translations(scenario)
        self.nics_by_ip: dict[int, NetworkInterface] = {
            ip_key(ip.version, int(ip)): nic for nic in scenario.network_interfaces.values() for ip in nic.private_ips}
        self._classifiers: dict[tuple[str, Direction, str], tuple[NetworkSecurityGroup, int, Classifier]] = {}
        self._vnet_sets: dict[str, RangeSet] = {}
        self._internet_sets: dict[str, RangeSet] = {}
        self._compiled_chains: tuple[dict[str, _CompiledChain], ...] = ({}, {})
        """A NIC's compiled chains by name, inbound then outbound: no key tuple to build and hash per new flow."""
        self._resolvers: dict[str, Any] = {}
        self.route = Router(self.nics_by_ip, self.translations, self.virtual_network)

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
            compiled = Classifier(nsg.rules_in_order(direction), self.resolver(vnet), nsg.version)
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

    def virtual_network(self, vnet: str) -> RangeSet:
        """What VirtualNetwork means in a VNet, for membership tests on the packet path."""
        found = self._vnet_sets.get(vnet)
        if found is None:
            found = self._vnet_sets[vnet] = RangeSet(self.resolver(vnet).resolve("VirtualNetwork"))
        return found

    def internet(self, vnet: str) -> RangeSet:
        found = self._internet_sets.get(vnet)
        if found is None:
            found = self._internet_sets[vnet] = RangeSet(self.resolver(vnet).resolve("Internet"))
        return found

    def decide(self, flow: Flow) -> Decision:
        return self.decide_key(flow.key)

    def decide_key(self, key: Key) -> Decision:
        return self.evaluate(key, self.route.legs(key))[0]

    def evaluate(self, key: Key, route: Route) -> tuple[Decision, tuple[LegResult, ...]]:
        """The decision on a new flow along its route, and the result of each leg evaluated (a Deny
        ends evaluation)."""
        if route.blocked is not None:
            return Decision(key, DENY, None, None, route.blocked, (), key), ()
        if not route.legs:
            flow = key_to_flow(key)
            raise DataplaneError(f"{flow}: neither {flow.src} nor {flow.dst} is an address of a NIC, public IP "
                                 "or load-balancer frontend of the scenario")
        results: tuple[LegResult, ...] = ()
        for leg in route.legs:
            result = self.leg(leg.nic, leg.direction, leg.key)
            results += (result,)
            if result.access == DENY:
                break
        return Decision(key, *combined(results), route.translated), results

    def _chain(self, nic: NetworkInterface, direction: Direction) -> tuple[tuple[NetworkSecurityGroup, str], ...]:
        """The NSGs a packet meets at a NIC, in Azure's order, with the attachment of each."""
        return self._compiled_chain(nic, direction).chain

    def leg(self, nic: NetworkInterface, direction: Direction, key: Key) -> LegResult:
        """One NIC's NSG chain with the platform around it, for the key as the NIC sees it.

        The result depends only on which rule matched in each NSG, so it is built once per
        combination and shared by every flow that combination decides.
        """
        chain, classifiers, results, _ = self._compiled_chain(nic, direction)
        proto, version, src, sport, dst, dport = key
        outbound = direction is OUTBOUND
        remote, remote_port = (dst, dport) if outbound else (src, sport)
        exempt = exemption(outbound, proto, version, remote, remote_port, self.scenario.forced_tunneling) \
            if remote in PLATFORM_ADDRESSES else None
        if exempt == ALWAYS:
            return PLATFORM_ALLOW
        if len(classifiers) == 1:
            slot: int | tuple[int, ...] = classifiers[0].lookup(proto, version, src, sport, dst, dport)
        else:
            slot = ()
            for classifier in classifiers:
                index = classifier.lookup(proto, version, src, sport, dst, dport)
                slot += (index,)
                if classifier.denies[index]:
                    break
        result = results.get(slot)
        if result is None:
            result = self._leg_result(nic, direction, chain, classifiers, results, slot)
        if exempt is not None:
            denies_tag = result.access == DENY and result.rule_object is not None and \
                (result.rule_object.destination_address_prefix or "").lower() == exempt.lower()
            if not denies_tag:
                return PLATFORM_ALLOW._replace(evaluations=result.evaluations)
        if dport == 25 and result.access == ALLOW and smtp_blocked(
                outbound, proto, dport, self.internet(nic.vnet).contains(version, dst), self.scenario.smtp_blocked):
            return LegResult(DENY, None, None, "platform", result.evaluations, None)
        return result

    def result_of_slot(self, nic: NetworkInterface, direction: Direction, slot: int | tuple[int, ...]) -> LegResult:
        """What `leg` gives for the rules a key matched at the NIC (its slot: the index in each NSG,
        as far as evaluation went), where no platform rule applies: the C path's lookups ask here."""
        chain, classifiers, results, _ = self._compiled_chain(nic, direction)
        result = results.get(slot)
        return result if result is not None else self._leg_result(nic, direction, chain, classifiers, results, slot)

    def chain_for_c(self, nic: NetworkInterface, direction: Direction) -> tuple:
        """A NIC's chain as the C path decides new flows by it: (what it was built from, the scenario
        whose NSGs to check that against, each NSG's `Classifier.c_rules`, a memo of the slots met)."""
        compiled = self._compiled_chain(nic, direction)
        return compiled.versions, self.scenario, tuple(c.c_rules() for c in compiled.classifiers), {}

    def _compiled_chain(self, nic: NetworkInterface, direction: Direction) -> _CompiledChain:
        """A NIC's chain with its classifiers and the leg results met so far; built again when one of
        its NSGs was replaced (`replay --update`) or changed (its `version`)."""
        cached = self._compiled_chains[direction is OUTBOUND].get(nic.name)
        groups = self.scenario.network_security_groups
        if cached is not None:
            for name, group, version in cached.versions:
                if groups[name] is not group or group.version != version:
                    break
            else:
                return cached
        levels = [(nic.subnet.nsg, f"subnet {nic.subnet.key}"), (nic.nsg, f"nic {nic.name}")]
        if direction == Direction.OUTBOUND:
            levels.reverse()
        chain = tuple((groups[n], a) for n, a in levels if n)
        classifiers = [self.classifier(group, direction, nic.vnet) for group, _ in chain]
        compiled = self._compiled_chains[direction is OUTBOUND][nic.name] = _CompiledChain(
            chain, classifiers, {}, tuple((group.name, group, c.version) for (group, _), c in zip(chain, classifiers)))
        return compiled

    def _leg_result(self, nic: NetworkInterface, direction: Direction,
                    chain: tuple[tuple[NetworkSecurityGroup, str], ...], classifiers: list[Classifier],
                    results: dict, slot: int | tuple[int, ...]) -> LegResult:
        """The result of a slot not met before, kept in the chain's results."""
        indexes = (slot,) if isinstance(slot, int) else slot
        evaluations = []
        access, nsg, rule = ALLOW, None, None
        for (group, attachment), classifier, index in zip(chain, classifiers, indexes):
            rule = classifier.rules[index]
            access, nsg = rule.access.value, group.name
            evaluations.append(Evaluation(group.name, attachment, nic.name, direction.value, rule.name, access))
        result = results[slot] = LegResult(access, nsg, rule.name if rule is not None else None,
                                           "rules" if nsg else "no-nsg", tuple(evaluations), rule)
        return result

    def explain(self, flow: Flow) -> tuple[Decision, list[NsgExplanation]]:
        """The decision and, for each NSG on the path, every rule with the fields that matched."""
        route = self.route.legs(flow.key)
        decision = self.evaluate(flow.key, route)[0]
        evaluated = {(e.nsg, e.attachment, e.direction) for e in decision.evaluations}
        out = []
        for leg in route.legs:
            for group, attachment in self._chain(leg.nic, leg.direction):
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
    from netaddr import IPAddress, IPRange

    out = []
    for version, spans in ((4, ranges[0]), (6, ranges[1])):
        for lo, hi in spans:
            out.extend(str(c) for c in IPRange(IPAddress(lo, version), IPAddress(hi, version)).cidrs())
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
