"""Policy expectations: `flow` → `expect: allow|deny` (and optionally the deciding `rule`), checked
against a scenario by `dataplane check --expectations` and by the pytest plugin, one per line.

A mismatch is reported the way `explain` shows a flow, in plain text, so that a failing CI log says
which NSG and rule decided and what every rule on the path matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataplaneError, FlowSyntaxError, ValidationErrors
from .flows import Flow, parse_flow
from .documents import read_document
from .policy import Decision, NsgExplanation

KEYS = {"flow", "expect", "rule", "name"}
FIELDS = ("protocol", "source", "source port", "destination", "destination port")


@dataclass(frozen=True, slots=True)
class Expectation:
    """One line of an expectations file. `rule` is `RULE` or `NSG/RULE`."""

    flow: Flow
    expect: str  # Allow | Deny
    rule: str | None = None
    name: str | None = None
    where: str = ""

    def __str__(self) -> str:
        return self.name or f"{self.flow} → {self.expect.lower()}" + (f" by {self.rule}" if self.rule else "")

    def mismatch(self, decision: Decision) -> str | None:
        """Why the decision differs from the expectation, or None when it meets it."""
        if decision.decision != self.expect:
            return f"expected {self.expect}, got {decision.decision}{_by(decision)}"
        if self.rule is not None and self.rule not in _rule_names(decision):
            return f"expected {self.expect} by {self.rule}, got {decision.decision}{_by(decision)}"
        return None


def load_expectations(path: str | Path) -> list[Expectation]:
    """Read an expectations file (YAML or JSON): a list, or a mapping with an `expectations` list."""
    return expectations_from_document(read_document(path), file=str(path))


def expectations_from_document(doc: Any, file: str | None = None) -> list[Expectation]:
    items = doc.get("expectations") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise DataplaneError("expected a list of expectations, or a mapping with an 'expectations' list",
                             file=file, field="expectations")
    out, problems = [], []
    for i, item in enumerate(items, 1):
        where = f"expectation {i}"
        try:
            out.append(_expectation(item, where, file))
        except DataplaneError as e:
            problems.append(e)
    if problems:
        raise ValidationErrors(problems)
    return out


def _expectation(item: Any, where: str, file: str | None) -> Expectation:
    def bad(field: str, message: str) -> DataplaneError:
        return DataplaneError(message, file=file, field=f"{where}.{field}" if field else where)

    if not isinstance(item, dict):
        raise bad("", f"expected a mapping with flow and expect, got {item!r}")
    unknown = sorted(set(item) - KEYS)
    if unknown:
        raise bad(unknown[0], f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    for key in ("flow", "expect"):
        if key not in item:
            raise bad(key, f"{key} is missing")
    try:
        flow = parse_flow(str(item["flow"]))
    except FlowSyntaxError as e:
        raise bad("flow", e.message) from None
    expect = str(item["expect"]).lower()
    if expect not in ("allow", "deny"):
        raise bad("expect", f"{item['expect']!r} is not allow or deny")
    rule = item.get("rule")
    if rule is not None and (not isinstance(rule, str) or not rule):
        raise bad("rule", f"{rule!r} is not a rule name (RULE or NSG/RULE)")
    name = item.get("name")
    return Expectation(flow, expect.capitalize(), rule, None if name is None else str(name), where)


def explanation_text(decision: Decision, nsgs: list[NsgExplanation]) -> str:
    """`explain` in plain text: the decision, the evaluations in Azure's order, every rule on the path."""
    data = decision.to_json()
    lines = [f"flow: {data['flow']}"]
    if data["translated"] != data["flow"]:
        lines.append(f"  seen by the NSGs as {data['translated']}")
    lines.append(f"decision: {data['decision']}{_by(decision)} (reason: {data['reason']})")
    for e in decision.evaluations:
        where = e.attachment or "no attachment"
        lines.append(f"  {e.direction.lower()} at {e.nic}: {e.nsg} ({where}) → {e.rule}: {e.access}")
    for n in nsgs:
        title = f"{n.nsg} ({n.attachment or 'no attachment'}, {n.direction}, NIC {n.nic})"
        if not n.evaluated:
            title += ": not evaluated, an earlier NSG decided"
        lines.append(title)
        deciding = n.deciding if n.evaluated else None
        width = max(len(r.rule.name) for r in n.rules)
        for r in n.rules:
            marks = " ".join(("✓" if r.fields[f] else "✗") + f.replace("source", "src").replace("destination", "dst")
                             .replace(" port", "port") for f in FIELDS)
            mark = "  ← decides" if r.rule is deciding else ""
            lines.append(f"  {r.rule.priority:>5} {r.rule.name:<{width}} {r.rule.access.value:<5} {marks}{mark}")
    return "\n".join(lines)


def _by(decision: Decision) -> str:
    if decision.rule:
        return f" by {decision.nsg}/{decision.rule}"
    return f" ({decision.reason})"


def _rule_names(decision: Decision) -> set[str]:
    if not decision.rule:
        return set()
    return {decision.rule, f"{decision.nsg}/{decision.rule}"}
