"""NetworkSecurityGroup, and loading and saving the JSON shapes Azure's tools produce.

Shapes read (reference §5): `az network nsg show` (flattened), `az network nsg list` (an array),
REST/ARM resources (nested `properties`), a REST list body (`{"value": [...]}`), `az network nsg rule
list` output (a bare list of rules, named by the caller), and ARM templates, evaluated by `arm` with the
defaults or a parameters file's values. Fields the simulator does not use are never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from .documents import CLASSIC_NSG_TYPE, NSG_TYPE, RULE_TYPE, is_template, is_terraform, read_document
from .errors import DataplaneError, RuleError, ValidationErrors
from .rules import (DEFAULT_RULE_NAMES, DEFAULT_RULES, Direction, SecurityRule, rule_from_azure,
                    validate_rule, validate_rules)


class NetworkSecurityGroup:
    """An NSG whose custom rules can change at run time; the default rules are always there.

    `version` increases on every change, so compiled classifiers and the policy's caches know when
    to rebuild without being told.
    """

    def __init__(self, name: str, rules: Iterable[SecurityRule] = (), *, flush_connection: bool = False,
                 classic: bool = False, file: str | None = None):
        self.name = name
        self.flush_connection = flush_connection
        self.classic = classic
        self.file = file
        self.version = 0
        self._rules: dict[str, SecurityRule] = {}
        rules = list(rules)
        problems = [p for r in rules for p in validate_rule(r, classic=classic)]
        problems += [p for p in validate_rules(rules, classic=classic)]
        if problems:
            raise ValidationErrors(problems).located(file=file, nsg=name)
        self._rules = {r.name: r for r in rules}

    @property
    def rules(self) -> tuple[SecurityRule, ...]:
        """The custom rules, in the order they were added."""
        return tuple(self._rules.values())

    def rules_in_order(self, direction: Direction) -> list[SecurityRule]:
        """Evaluation order for one direction: custom rules by priority, then the defaults."""
        custom = sorted((r for r in self._rules.values() if r.direction == direction), key=lambda r: r.priority)
        return custom + [r for r in DEFAULT_RULES if r.direction == direction]

    def add_rule(self, rule: SecurityRule | dict) -> SecurityRule:
        rule = self._coerce(rule)
        if rule.name in self._rules:
            raise RuleError(f"a rule named {rule.name!r} exists already; use replace_rule",
                            file=self.file, nsg=self.name, rule=rule.name, code="DuplicateResourceName", field="name")
        self._commit({**self._rules, rule.name: rule})
        return rule

    def replace_rule(self, rule: SecurityRule | dict) -> SecurityRule:
        """Create or update a rule by name, as a PUT of the rule resource does."""
        rule = self._coerce(rule)
        self._commit({**self._rules, rule.name: rule})
        return rule

    def remove_rule(self, name: str) -> SecurityRule:
        if name in DEFAULT_RULE_NAMES and name not in self._rules:
            raise RuleError("default rules cannot be removed, only overridden by a rule of higher priority",
                            file=self.file, nsg=self.name, rule=name, code="CannotDeleteDefaultSecurityRule",
                            field="name")
        if name not in self._rules:
            raise RuleError("no such rule", file=self.file, nsg=self.name, rule=name, code="NotFound", field="name")
        rules = dict(self._rules)
        removed = rules.pop(name)
        self._commit(rules)
        return removed

    def _coerce(self, rule: SecurityRule | dict) -> SecurityRule:
        if isinstance(rule, SecurityRule):
            problems = validate_rule(rule, classic=self.classic)
            if problems:
                raise ValidationErrors(problems).located(file=self.file, nsg=self.name)
            return rule
        try:
            return rule_from_azure(rule, classic=self.classic)
        except ValidationErrors as e:
            raise e.located(file=self.file, nsg=self.name) from None

    def _commit(self, rules: dict[str, SecurityRule]) -> None:
        problems = validate_rules(rules.values(), classic=self.classic)
        if problems:
            raise ValidationErrors(problems).located(file=self.file, nsg=self.name)
        self._rules = rules
        self.version += 1

    def to_azure(self) -> dict[str, Any]:
        """REST JSON that `load_nsgs` reads back equal."""
        return {
            "name": self.name,
            "type": "Microsoft.ClassicNetwork/networkSecurityGroups" if self.classic
            else "Microsoft.Network/networkSecurityGroups",
            "properties": {
                "flushConnection": self.flush_connection,
                "securityRules": [r.to_azure() for r in self._rules.values()],
                "defaultSecurityRules": [r.to_azure() for r in DEFAULT_RULES],
            },
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkSecurityGroup):
            return NotImplemented
        return (self.name, self._rules, self.flush_connection, self.classic) == \
            (other.name, other._rules, other.flush_connection, other.classic)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NetworkSecurityGroup({self.name!r}, {len(self._rules)} rules)"


def load_nsgs(path: str | Path, *, parameters: str | Path | None = None,
              name: str | None = None) -> list[NetworkSecurityGroup]:
    """Every NSG in a file of any shape the loader knows (only the one called `name`, when given; it names the
    NSG of a bare rule list); `parameters` is an ARM parameters file for a template. Errors name the file, NSG
    and rule."""
    path = str(path)
    values = read_parameters(parameters) if parameters is not None else None
    return nsgs_from_document(read_document(path), file=path, parameters=values, name=name)


def read_parameters(path: str | Path) -> dict[str, Any]:
    """The values of an ARM parameters file (`{"parameters": {"x": {"value": ...}}}`)."""
    from .arm import parameter_values

    return parameter_values(read_document(path), file=str(path))


def nsgs_from_document(doc: Any, *, file: str | None = None, parameters: dict[str, Any] | None = None,
                       name: str | None = None) -> list[NetworkSecurityGroup]:
    nsgs, problems = nsgs_and_problems(doc, file=file, parameters=parameters, name=name)
    if problems:
        raise ValidationErrors(problems)
    return nsgs


def nsgs_and_problems(doc: Any, *, file: str | None = None, parameters: dict[str, Any] | None = None,
                      name: str | None = None) -> tuple[list[NetworkSecurityGroup], list[DataplaneError]]:
    """The NSGs that load and every problem of the others, so `lint` can show both. With `name`, only that
    NSG and its problems."""
    if is_terraform(doc):
        from .terraform import nsgs as terraform_nsgs  # templates and plans bring their own machinery

        found = terraform_nsgs(doc, file=file)
        nsgs, problems = nsgs_and_problems(found.document, file=file, name=name)
        return nsgs, found.locate(problems)
    raw, problems, named = _raw_nsgs(doc, file, parameters, name)
    if name is not None and not named:
        picked = [r for r in raw if r[0].lower() == name.lower()]
        if not picked and not problems:
            raise DataplaneError(f"holds no NSG named {name!r} (it has: {', '.join(r[0] for r in raw)})", file=file)
        if picked:
            raw = picked
            problems = [p for p in problems if p.nsg is not None and p.nsg.lower() == name.lower()]
    nsgs = []
    for nsg_name, rules, flush, classic, where in raw:
        built = []
        for rule in rules:
            try:
                built.append(rule_from_azure(rule, classic=classic))
            except ValidationErrors as e:
                problems.extend(e.located(file=file, nsg=nsg_name).problems)
        try:
            flush = _flag(flush, f"{where}.properties.flushConnection" if where else "flushConnection")
            nsgs.append(NetworkSecurityGroup(nsg_name, built, flush_connection=flush, classic=classic, file=file))
        except ValidationErrors as e:
            problems.extend(e.located(file=file, nsg=nsg_name).problems)
        except DataplaneError as e:
            problems.append(e.located(file=file, nsg=nsg_name))
    return nsgs, problems


def _raw_nsgs(doc: Any, file: str | None, parameters: dict[str, Any] | None,
              name: str | None) -> tuple[list[tuple[str, list, Any, bool, str]], list[DataplaneError], bool]:
    """(name, rules, flushConnection, classic, template path) per NSG, the problems found, and whether the
    NSG was named by the caller (a bare rule list)."""
    if is_template(doc):
        from .arm import template_nsgs

        found = template_nsgs(doc, parameters=parameters, file=file)
        if not found.nsgs and not found.problems:
            linked = f" (linked templates, not fetched, are deployed at {', '.join(found.linked)})" \
                if found.linked else ""
            raise DataplaneError(f"holds no network security group{linked}", file=file)
        return [(n.name, n.rules, n.flush_connection, n.classic, n.where) for n in found.nsgs], found.problems, False
    if parameters is not None:
        raise DataplaneError("parameters were given, but the file is not an ARM template", file=file)
    if isinstance(doc, dict) and isinstance(doc.get("value"), list) and "name" not in doc:
        doc = doc["value"]
    if isinstance(doc, dict) and str(doc.get("type", "")).lower() == RULE_TYPE:
        doc = [doc]
    if (doc == [] and name is not None) or _is_rule_list(doc):
        if name is None:
            raise DataplaneError("is a list of security rules (`az network nsg rule list`): give the NSG's name "
                                 "(--name)", file=file)
        return [(name, doc, False, False, "")], [], True
    if isinstance(doc, list):
        raw = [_plain_nsg(item, file, f"[{i}]") for i, item in enumerate(doc)]
    elif isinstance(doc, dict):
        raw = [_plain_nsg(doc, file, "")]
    else:
        raise DataplaneError("is not a network security group (expected az CLI, REST or ARM JSON)", file=file)
    if not raw:
        raise DataplaneError("holds no network security group", file=file)
    return raw, [], False


def _is_rule_list(doc: Any) -> bool:
    """`az network nsg rule list` prints rules, flattened or with `properties`, without their NSG."""
    def is_rule(item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        if str(item.get("type", "")).lower() == RULE_TYPE:
            return True
        props = item.get("properties") if isinstance(item.get("properties"), dict) else item
        return "securityRules" not in props and "direction" in props and "access" in props
    return isinstance(doc, list) and bool(doc) and all(is_rule(item) for item in doc)


def _flag(value: Any, field: str) -> bool:
    """A boolean as Azure's JSON reader takes it: true/false, or the strings "true"/"false" in any case
    (Newtonsoft.Json converts those, README "ARM templates"), and null for not set (as `az` prints an unset
    property); anything else is refused, never read as truthy."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DataplaneError(f"{json.dumps(value, default=repr)} is not a boolean (true or false)",
                         code="InvalidRequestFormat", field=field)


def _plain_nsg(doc: Any, file: str | None, where: str) -> tuple[str, list, Any, bool, str]:
    """az show/list (flattened) or REST (nested `properties`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise DataplaneError(f"{where or 'the document'} is not a network security group: it has no name",
                             file=file)
    kind = str(doc.get("type", NSG_TYPE)).lower()
    if kind not in (NSG_TYPE, CLASSIC_NSG_TYPE):
        raise DataplaneError(f"{doc['name']!r} is a {doc.get('type')}, not a network security group", file=file)
    if "properties" in doc and not isinstance(doc["properties"], dict):
        raise DataplaneError(f"{json.dumps(doc['properties'])[:60]} is not an object (template expressions are "
                             "evaluated only in an ARM template)", file=file, nsg=doc["name"],
                             field=f"{where}.properties" if where else "properties")
    props = doc.get("properties") if isinstance(doc.get("properties"), dict) else doc
    rules = props.get("securityRules") or []
    if not isinstance(rules, list):
        raise DataplaneError("securityRules is not a list", file=file, nsg=doc["name"])
    return doc["name"], rules, props.get("flushConnection", False), kind == CLASSIC_NSG_TYPE, ""


def save_nsg(nsg: NetworkSecurityGroup, path: str | Path) -> None:
    Path(path).write_text(json.dumps(nsg.to_azure(), indent=2) + "\n", encoding="utf-8")
