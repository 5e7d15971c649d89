"""NetworkSecurityGroup, and loading and saving the JSON shapes Azure's tools produce.

Shapes read (reference §5): `az network nsg show` (flattened), `az network nsg list` (an array),
REST/ARM resources (nested `properties`), and ARM templates, whose `[parameters('x')]` and
`[variables('x')]` are resolved from the template's defaults. Any other template expression in a
field the simulator uses is an error that names it; fields it does not use are never read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from .errors import DataplaneError, RuleError, ValidationErrors
from .rules import (DEFAULT_RULE_NAMES, DEFAULT_RULES, Direction, SecurityRule, rule_from_azure,
                    validate_rule, validate_rules)

NSG_TYPE = "microsoft.network/networksecuritygroups"
CLASSIC_NSG_TYPE = "microsoft.classicnetwork/networksecuritygroups"
RULE_TYPE = NSG_TYPE + "/securityrules"


class NetworkSecurityGroup:
    """An NSG whose custom rules can change at run time; the default rules are always there.

    `version` increases on every change, so compiled classifiers and flow tables know when to
    rebuild without being told; `generation`, shared by all NSGs, increases on every change to any
    of them and when a scenario deploys a new NSG (`Dataplane.replace_nsg`), so the per-packet path
    checks one number while nothing changes.
    """

    generation = 0

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
        NetworkSecurityGroup.generation += 1

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


def read_document(path: str | Path) -> Any:
    """JSON or YAML (YAML is a superset, but JSON errors read better from the JSON parser)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataplaneError(f"cannot read: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise DataplaneError("is not a text file (JSON or YAML expected)", file=str(path)) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataplaneError(f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                                 file=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise DataplaneError(f"is not valid JSON or YAML{where}", file=str(path)) from None


def load_nsgs(path: str | Path) -> list[NetworkSecurityGroup]:
    """Every NSG in a file of any shape the loader knows; errors name the file, NSG and rule."""
    path = str(path)
    return nsgs_from_document(read_document(path), file=path)


def nsgs_from_document(doc: Any, *, file: str | None = None) -> list[NetworkSecurityGroup]:
    if isinstance(doc, dict) and isinstance(doc.get("resources"), list):
        raw = list(_arm_template_nsgs(doc, file))
    elif isinstance(doc, list):
        raw = [_plain_nsg(item, file, f"[{i}]") for i, item in enumerate(doc)]
    elif isinstance(doc, dict):
        raw = [_plain_nsg(doc, file, "")]
    else:
        raise DataplaneError("is not a network security group (expected az CLI, REST or ARM JSON)", file=file)
    if not raw:
        raise DataplaneError("holds no network security group", file=file)
    problems: list[DataplaneError] = []
    nsgs = []
    for name, rules, flush, classic in raw:
        built = []
        for rule in rules:
            try:
                built.append(rule_from_azure(rule, classic=classic))
            except ValidationErrors as e:
                problems.extend(e.located(file=file, nsg=name).problems)
        try:
            nsgs.append(NetworkSecurityGroup(name, built, flush_connection=flush, classic=classic, file=file))
        except ValidationErrors as e:
            problems.extend(e.problems)
    if problems:
        raise ValidationErrors(problems)
    return nsgs


def _plain_nsg(doc: Any, file: str | None, where: str) -> tuple[str, list, bool, bool]:
    """az show/list (flattened) or REST (nested `properties`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise DataplaneError(f"{where or 'the document'} is not a network security group: it has no name",
                             file=file)
    kind = str(doc.get("type", NSG_TYPE)).lower()
    if kind not in (NSG_TYPE, CLASSIC_NSG_TYPE):
        raise DataplaneError(f"{doc['name']!r} is a {doc.get('type')}, not a network security group", file=file)
    props = doc.get("properties") if isinstance(doc.get("properties"), dict) else doc
    rules = props.get("securityRules") or []
    if not isinstance(rules, list):
        raise DataplaneError("securityRules is not a list", file=file, nsg=doc["name"])
    flush = bool(props.get("flushConnection", False))
    return doc["name"], rules, flush, kind == CLASSIC_NSG_TYPE


_EXPR = re.compile(r"^\[\s*(parameters|variables)\(\s*'([^']*)'\s*\)\s*\]$")


class _Template:
    """Resolves the two expression forms the simulator accepts in an ARM template."""

    def __init__(self, doc: dict, file: str | None):
        self.parameters = doc.get("parameters") or {}
        self.variables = doc.get("variables") or {}
        self.file = file

    def value(self, value: Any, where: str, depth: int = 0) -> Any:
        if isinstance(value, dict):
            return {k: self.value(v, f"{where}.{k}", depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]
        if not isinstance(value, str) or not value.startswith("["):
            return value
        if value.startswith("[["):
            return value[1:]
        m = _EXPR.match(value)
        if not m:
            raise DataplaneError(
                f"template expression {value!r} is not supported: only [parameters('x')] and [variables('x')]",
                file=self.file, field=where)
        if depth > 16:
            raise DataplaneError(f"template expression {value!r} refers back to itself through parameters or "
                                 "variables", file=self.file, field=where)
        kind, name = m.groups()
        if kind == "parameters":
            spec = self.parameters.get(name)
            if not isinstance(spec, dict) or "defaultValue" not in spec:
                raise DataplaneError(f"parameter {name!r} has no defaultValue in the template",
                                     file=self.file, field=where)
            return self.value(spec["defaultValue"], where, depth + 1)
        if name not in self.variables:
            raise DataplaneError(f"variable {name!r} is not defined in the template", file=self.file, field=where)
        return self.value(self.variables[name], where, depth + 1)


def _arm_template_nsgs(doc: dict, file: str | None) -> Iterator[tuple[str, list, bool, bool]]:
    t = _Template(doc, file)
    nsgs: dict[str, dict] = {}
    child_rules: list[tuple[str, Any]] = []

    def visit(resources: list, where: str, parent: str | None) -> None:
        for i, res in enumerate(resources):
            if not isinstance(res, dict):
                continue
            here = f"{where}[{i}]"
            kind = str(t.value(res.get("type", ""), f"{here}.type")).lower()
            if kind in (NSG_TYPE, CLASSIC_NSG_TYPE):
                name = t.value(res.get("name"), f"{here}.name")
                props = res.get("properties") or {}
                rules = t.value(props.get("securityRules") or [], f"{here}.properties.securityRules")
                flush = t.value(props.get("flushConnection", False), f"{here}.properties.flushConnection")
                nsgs[name] = {"rules": list(rules), "flush": bool(flush), "classic": kind == CLASSIC_NSG_TYPE}
                visit(res.get("resources") or [], f"{here}.resources", name)
            elif kind == RULE_TYPE or (parent and kind == "securityrules"):
                full = t.value(res.get("name"), f"{here}.name")
                owner, _, rule_name = full.rpartition("/")
                owner = owner or parent
                rule = {"name": rule_name, "properties": t.value(res.get("properties") or {}, f"{here}.properties")}
                child_rules.append((owner, rule, here))

    visit(doc["resources"], "resources", None)
    for owner, rule, here in child_rules:
        if owner not in nsgs:
            raise DataplaneError(f"security rule {rule['name']!r} belongs to NSG {owner!r}, "
                                 "which the template does not define", file=file, field=here)
        nsgs[owner]["rules"].append(rule)
    for name, nsg in nsgs.items():
        yield name, nsg["rules"], nsg["flush"], nsg["classic"]


def save_nsg(nsg: NetworkSecurityGroup, path: str | Path) -> None:
    Path(path).write_text(json.dumps(nsg.to_azure(), indent=2) + "\n", encoding="utf-8")
