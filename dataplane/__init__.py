"""dataplane: a packet-level, stateful simulator of Azure Network Security Groups.

    from dataplane import Dataplane
    dp = Dataplane.from_file("pcaps/demo/scenario.yaml")
    verdict = dp.process(frame_bytes, ts=0.0)
"""

from .errors import CaptureError, DataplaneError, FlowSyntaxError, RuleError, ScenarioError, ValidationErrors
from .flows import Flow, parse_flow
from .nsg import NetworkSecurityGroup, load_nsgs, save_nsg
from .pipeline import Dataplane, Verdict
from .policy import Decision, Evaluation, Policy
from .rules import DEFAULT_RULES, Access, Direction, SecurityRule, rule_from_azure
from .topology import Scenario, load_scenario, scenario_from_document

__all__ = [
    "Access", "CaptureError", "DEFAULT_RULES", "Dataplane", "DataplaneError", "Decision", "Direction", "Evaluation",
    "Flow", "FlowSyntaxError", "NetworkSecurityGroup", "Policy", "RuleError", "Scenario", "ScenarioError",
    "SecurityRule", "ValidationErrors", "Verdict", "load_nsgs", "load_scenario", "parse_flow", "rule_from_azure",
    "save_nsg", "scenario_from_document",
]
