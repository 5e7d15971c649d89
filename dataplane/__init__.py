"""dataplane: a packet-level, stateful simulator of Azure Network Security Groups.

    from dataplane import Dataplane
    dp = Dataplane.from_file("pcaps/demo/scenario.yaml")
    verdict = dp.process(frame_bytes, ts=0.0)

The names below are imported on first use, so that `import dataplane` (and every command that
needs only part of the package) does not pay for the packet path.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import CaptureError, DataplaneError, FlowSyntaxError, RuleError, ScenarioError, ValidationErrors
    from .flows import Flow, parse_flow
    from .nsg import NetworkSecurityGroup, load_nsgs, save_nsg
    from .pipeline import Dataplane, Verdict
    from .policy import Decision, Evaluation, Policy
    from .rules import DEFAULT_RULES, Access, Direction, SecurityRule, rule_from_azure
    from .topology import Scenario, load_scenario, scenario_from_document

_MODULES = {
    "errors": ("CaptureError", "DataplaneError", "FlowSyntaxError", "RuleError", "ScenarioError", "ValidationErrors"),
    "flows": ("Flow", "parse_flow"),
    "nsg": ("NetworkSecurityGroup", "load_nsgs", "save_nsg"),
    "pipeline": ("Dataplane", "Verdict"),
    "policy": ("Decision", "Evaluation", "Policy"),
    "rules": ("DEFAULT_RULES", "Access", "Direction", "SecurityRule", "rule_from_azure"),
    "topology": ("Scenario", "load_scenario", "scenario_from_document"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Access", "CaptureError", "DEFAULT_RULES", "Dataplane", "DataplaneError", "Decision", "Direction", "Evaluation",
    "Flow", "FlowSyntaxError", "NetworkSecurityGroup", "Policy", "RuleError", "Scenario", "ScenarioError",
    "SecurityRule", "ValidationErrors", "Verdict", "load_nsgs", "load_scenario", "parse_flow", "rule_from_azure",
    "save_nsg", "scenario_from_document",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
