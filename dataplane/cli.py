"""The `dataplane` command: the only module that prints. Bad input never shows a traceback.

Exit status: 0 when the work was done; 1 when lint found problems or `--expect` saw another
decision; 2 when the input could not be used (a file, a flow line, an argument).

Each command imports what it uses (the packet path, rich) when it runs, so that `--help` and the
commands that only read files start quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TextIO, TypeVar

from .errors import CaptureError, DataplaneError, FlowSyntaxError, ValidationErrors

if TYPE_CHECKING:
    from .addresses import ServiceTags
    from .flows import Flow
    from .nsg import NetworkSecurityGroup
    from .policy import Decision, NsgExplanation
    from .replay import Outputs, Summary, Update
    from .topology import Scenario

T = TypeVar("T")


class UsageError(DataplaneError):
    """A command line that cannot be acted on."""


def run() -> None:
    """The `dataplane` command: `main`, then the process ends with its status."""
    global _ENDS_WITH_COMMAND
    _ENDS_WITH_COMMAND = True
    status = main()
    done_with_objects()
    sys.exit(status)


_ENDS_WITH_COMMAND = False
"""Whether this process ends when its command does (`run`), not a program or test calling `main`."""


def done_with_objects() -> None:
    """A command whose process ends with it freezes what it made for the collector once the work is
    done: a full collection would otherwise walk and free a replay's flow records just before the exit
    (60-85 ms on a capture of 200,000 connections, in the serial part of a sharded run)."""
    if _ENDS_WITH_COMMAND:
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()
        return status
    except ValidationErrors as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except DataplaneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`dataplane lint ... | head`): end as a process killed by SIGPIPE does,
        # so a pipeline with pipefail never sees 0 for work whose result was not all read.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as e:
        return _interrupted_status(e)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interruption so that replay closes its outputs as on Ctrl-C."""


def _interrupted_status(e: KeyboardInterrupt) -> int:
    return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataplane", description="Simulate Azure Network Security Groups offline.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    lint = sub.add_parser("lint", help="validate NSG or scenario files as Azure would")
    lint.add_argument("files", nargs="+", metavar="FILE")
    lint.add_argument("--service-tags", metavar="FILE", help="Azure's ServiceTags JSON, to check tag names")
    lint.add_argument("--parameters", metavar="FILE", help="an ARM parameters file for the templates given")
    lint.add_argument("--json", action="store_true", help="one JSON object per file: its NSGs and every problem")
    lint.set_defaults(run=cmd_lint)

    for name, run, text in (("check", cmd_check, "decide flows as new connections"),
                            ("explain", cmd_explain, "show every rule on the path and which fields matched")):
        p = sub.add_parser(name, help=text)
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("--nsg", metavar="FILE", help="one NSG file (az CLI, REST or ARM JSON/YAML)")
        target.add_argument("--scenario", metavar="FILE", help="a scenario file (topology, NAT, platform rules)")
        p.add_argument("--name", help="which NSG of the file, when it holds several; names a bare list of rules")
        p.add_argument("--parameters", metavar="FILE", help="with --nsg: an ARM parameters file for a template")
        p.add_argument("--direction", choices=["inbound", "outbound"], help="with --nsg: the rules to use")
        p.add_argument("--address-space", action="append", default=[], metavar="PREFIX", type=_prefix,
                       help="with --nsg: what VirtualNetwork means (repeatable)")
        p.add_argument("--service-tags", metavar="FILE", help="with --nsg: Azure's ServiceTags JSON")
        p.add_argument("--flows", metavar="FILE", help="flows one per line ('-' = stdin)")
        p.add_argument("--json", action="store_true", help="one JSON object per flow (JSON Lines)")
        if name == "check":
            p.add_argument("--expect", choices=["allow", "deny"], help="exit 1 when any decision differs")
            p.add_argument("--expectations", metavar="FILE",
                           help="a YAML/JSON list of {flow, expect, rule}: exit 1 with a report on any mismatch")
        p.add_argument("flow", nargs="*", metavar="FLOW", help="e.g. 'tcp 203.0.113.7:51000 > 10.0.1.4:80'")
        p.set_defaults(run=run)

    rules = sub.add_parser("rules", help="effective security rules of a NIC")
    rules.add_argument("--scenario", required=True, metavar="FILE")
    rules.add_argument("--nic", required=True, metavar="NAME")
    rules.add_argument("--json", action="store_true")
    rules.set_defaults(run=cmd_rules)

    replay_ = sub.add_parser("replay", help="replay captures through the stateful dataplane")
    replay_.add_argument("scenario", metavar="SCENARIO")
    replay_.add_argument("captures", nargs="+", metavar="CAPTURE",
                         help="pcap, pcapng, optionally .gz; or Azure flow logs (files or folders)")
    for option, text in (("verdicts", "one JSON line per packet"), ("flow-log", "Azure NSG flow log v2 JSON"),
                         ("vnet-flow-log", "Azure VNet flow log v4 JSON"), ("allowed", "capture of allowed packets"),
                         ("denied", "capture of denied packets"),
                         ("translated", "capture of allowed packets as they leave the NAT"),
                         ("summary", "the summary as JSON"),
                         ("report", "an HTML report with charts (needs dataplane[report])")):
        replay_.add_argument(f"--{option}", metavar="FILE", help=text)
    for option, text in (("flow-log-dir", "NSG flow logs v2 as Azure lays them out in storage (PT1H.json per hour)"),
                         ("vnet-flow-log-dir", "VNet flow logs v4 as Azure lays them out in storage")):
        replay_.add_argument(f"--{option}", metavar="DIR", help=text)
    replay_.add_argument("--update", action="append", default=[], metavar="TIME=NSG_FILE",
                         help="deploy a new NSG version TIME seconds after the first packet (repeatable)")
    _add_sharding_options(replay_, "the results are the same")
    replay_.set_defaults(run=cmd_replay)

    p = sub.add_parser("whatif", help="what a proposed NSG change does to real traffic (captures or flow logs)")
    p.add_argument("scenario", metavar="SCENARIO", help="the scenario (with --terraform-plan: the first TRAFFIC)")
    p.add_argument("--change", action="append", default=[], metavar="FILE",
                   help="an NSG file (replaces the NSG of its name) or a scenario file (repeatable)")
    p.add_argument("--terraform-plan", metavar="PLAN",
                   help="`terraform show -json` of a plan: before is its prior state, after its planned values")
    # Optional: with --terraform-plan, SCENARIO's place holds the first TRAFFIC. nargs="*" would instead take
    # nothing after SCENARIO and leave the TRAFFIC that follows `--change FILE` unrecognised.
    p.add_argument("traffic", nargs="+", metavar="TRAFFIC",
                   help="captures, or Azure flow logs (files or folders)").required = False
    p.add_argument("--json", metavar="FILE", help="one JSON line per changed flow")
    p.add_argument("--fail-on", choices=FAIL_ON, default=FAIL_ON[0],
                   help="exit 1 when a change of this kind is found (default: newly-denied)")
    p.add_argument("--report", metavar="FILE", help="an HTML report with charts (needs dataplane[report])")
    p.set_defaults(run=_command("whatif", "cmd_whatif"))
    _add_sharding_options(p, "the report is the same")

    p = sub.add_parser("import", help="build a scenario from az CLI, REST, Resource Graph, exported ARM or Terraform JSON")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-o", "--output", metavar="SCENARIO", help="write here (YAML, or JSON for .json); default stdout")
    p.add_argument("--allow-missing", action="store_true",
                   help="drop what refers to resources not among the inputs, with a warning")
    p.set_defaults(run=_command("importer", "cmd_import"))

    p = sub.add_parser("analyze", help="dead and risky rules: shadowed, redundant, partly overridden")
    p.add_argument("files", nargs="*", metavar="FILE", help="NSG files (default with --scenario: all its NSGs)")
    p.add_argument("--scenario", metavar="FILE", help="what addresses mean, and NICs' paths for chaining findings")
    _add_nsg_context_options(p)
    p.add_argument("--traffic", nargs="+", default=[], metavar="CAPTURE",
                   help="with --scenario: captures to replay; rules that decide no flow are `never-hit`")
    p.add_argument("--strict", action="store_true", help="exit 1 when there are findings")
    p.add_argument("--json", action="store_true", help="one JSON object per finding")
    p.set_defaults(run=_command("analysis", "cmd_analyze"))

    p = sub.add_parser("diff", help="where two versions of an NSG (or two scenarios) decide differently")
    for name in ("old", "new"):
        # Optional for --terraform-plan; nargs="?" would let OLD take NEW's place when an option comes between.
        p.add_argument(name, metavar=name.upper()).required = False
    p.add_argument("--terraform-plan", metavar="PLAN",
                   help="`terraform show -json` of a plan: every NSG it changes, before against after")
    p.add_argument("--scenario", metavar="FILE", help="with NSG files: what addresses mean")
    _add_nsg_context_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object per region")
    p.set_defaults(run=_command("analysis", "cmd_diff"))

    p = sub.add_parser("exposure", help="per NIC, what new connections from the Internet (or a source) reach")
    p.add_argument("--scenario", required=True, metavar="FILE")
    p.add_argument("--from", dest="source", default="Internet", metavar="Internet|PREFIX|TAG",
                   help="the source space (default: Internet)")
    p.add_argument("--json", action="store_true", help="one JSON object per region")
    p.set_defaults(run=_command("analysis", "cmd_exposure"))
    return parser


FAIL_ON = ["newly-denied", "newly-allowed", "any", "none"]
"""`whatif --fail-on`: the keys of `whatif.FAIL_ON`, the first the default (a test keeps them alike)."""


def _command(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command whose module is imported when it runs, not when the command line is read."""
    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f".{module}", __package__), function)(args)
    return run


def _add_nsg_context_options(p: argparse.ArgumentParser) -> None:
    """What an NSG file's addresses mean without a scenario (`analyze`, `diff`)."""
    p.add_argument("--name", help="which NSG of each file, when a file holds several")
    p.add_argument("--direction", choices=["inbound", "outbound"], help="default: both")
    p.add_argument("--address-space", action="append", default=[], metavar="PREFIX",
                   help="without --scenario: what VirtualNetwork means (repeatable)")
    p.add_argument("--service-tags", metavar="FILE", help="without --scenario: Azure's ServiceTags JSON")


def _add_sharding_options(p: argparse.ArgumentParser, same: str) -> None:
    """`--workers` and `--dask`, alike for every command that shards its work (`workers.py`)."""
    p.add_argument("--workers", default="1", metavar="N",
                   help=f"shard the flows over N processes ('auto': one per core); {same}")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="shard over a Dask cluster: 'local', or a scheduler such as tcp://host:8786 "
                        "(needs dataplane[cluster])")


def _prefix(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP prefix (e.g. 10.0.0.0/16 or fd00::/48)") from None
    return text


def cmd_lint(args: argparse.Namespace) -> int:
    from .addresses import ServiceTags
    from .nsg import read_parameters

    tags = ServiceTags.from_file(args.service_tags) if args.service_tags else None
    parameters = read_parameters(args.parameters) if args.parameters else None
    problems = 0
    for file in args.files:
        nsgs, found, warnings = _lint_file(file, tags, parameters)
        problems += len(found)
        if args.json:
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
            print(json.dumps({"file": file, "ok": not found,
                              "nsgs": [{"name": n.name, "rules": len(n.rules)} for n in nsgs],
                              "problems": [{"nsg": p.nsg, "rule": p.rule, "code": p.code, "field": p.field,
                                            "message": p.message} for p in found]}))
            continue
        for warning in warnings:
            print(f"warning: {warning}")
        for problem in found:
            print(problem)
    if problems:
        print(f"{problems} problem{'s' if problems != 1 else ''} found", file=sys.stderr)
    return 1 if problems else 0


def _lint_file(file: str, tags: ServiceTags | None, parameters: dict | None
               ) -> tuple[list[NetworkSecurityGroup], list[DataplaneError], list[str]]:
    """The NSGs of one file that load, every problem found in it, and its warnings. `parameters` are given
    to ARM templates only, so one lint run can take templates beside other files."""
    from .documents import is_template, read_document
    from .nsg import nsgs_and_problems
    from .topology import SCENARIO_KEYS, scenario_from_document

    try:
        doc = read_document(file)
        if isinstance(doc, dict) and SCENARIO_KEYS & doc.keys() and "securityRules" not in doc:
            scenario = scenario_from_document(doc, file=file)
            return list(scenario.network_security_groups.values()), [], scenario.warnings
        nsgs, problems = nsgs_and_problems(doc, file=file, parameters=parameters if is_template(doc) else None)
    except ValidationErrors as e:
        return [], e.problems, []
    except DataplaneError as e:
        return [], [e.located(file=file)], []
    for nsg in nsgs:
        try:
            _check_tags(nsg, tags, file)
        except ValidationErrors as e:
            problems.extend(e.located(file=file, nsg=nsg.name).problems)
        except DataplaneError as e:
            problems.append(e.located(file=file, nsg=nsg.name))
    return nsgs, problems, []


def _check_tags(nsg: NetworkSecurityGroup, tags: ServiceTags | None, file: str) -> None:
    """Without a ServiceTags file, regional tags cannot be checked, so only a given file is enforced."""
    if tags is None:
        return
    from .policy import Policy
    from .rules import Direction

    policy = Policy.for_nsg(nsg, service_tags=tags)
    for direction in Direction:
        policy.classifier(nsg, direction, "vnet")


def _flows(args: argparse.Namespace) -> Iterator[tuple[str, Flow | FlowSyntaxError]]:
    from .flows import parse_flow, read_flows

    if args.flows and args.flow:
        raise UsageError("give flows as arguments or with --flows, not both")
    if not args.flows and not args.flow:
        raise UsageError("no flow given: pass FLOW arguments or --flows FILE")
    if args.flow:
        for i, text in enumerate(args.flow, 1):
            try:
                yield f"argument {i}", parse_flow(text)
            except FlowSyntaxError as e:
                yield f"argument {i}", e
        return
    stream: TextIO
    if args.flows == "-":
        stream, name = sys.stdin, "<stdin>"
    else:
        try:
            stream, name = open(args.flows, encoding="utf-8"), args.flows
        except OSError as e:
            raise UsageError(f"cannot read: {e.strerror}", file=args.flows) from None
    with stream:
        for number, _, flow in read_flows(stream):
            yield f"{name}:{number}", flow


def _answers(args: argparse.Namespace, answer: Callable[[Flow], T], bad: list[str]) -> Iterator[T]:
    """The answer for each flow given; a flow that cannot be answered is reported, counted in `bad`,
    and the others are still answered."""
    for where, flow in _flows(args):
        try:
            if isinstance(flow, FlowSyntaxError):
                raise flow
            result = answer(flow)
        except DataplaneError as e:
            print(f"error: {where}: {e}", file=sys.stderr)
            bad.append(where)
            continue
        yield result


class _Target:
    """What `check` and `explain` decide against: one NSG in one direction, or a scenario."""

    def __init__(self, args: argparse.Namespace):
        from .addresses import ServiceTags, bundled_service_tags
        from .nsg import load_nsgs
        from .policy import Policy
        from .rules import Direction
        from .topology import load_scenario

        if args.scenario:
            for option in ("direction", "name", "service_tags", "parameters"):
                if getattr(args, option):
                    raise UsageError(f"--{option.replace('_', '-')} goes with --nsg, not --scenario")
            if args.address_space:
                raise UsageError("--address-space goes with --nsg; a scenario defines its VNets")
            self.policy = Policy(load_scenario(args.scenario))
            self.nsg = None
            return
        if not args.direction:
            raise UsageError("--nsg needs --direction inbound|outbound")
        nsgs = load_nsgs(args.nsg, parameters=args.parameters, name=args.name)
        if len(nsgs) > 1:
            raise UsageError(f"holds {len(nsgs)} NSGs ({', '.join(n.name for n in nsgs)}): choose one with --name",
                             file=args.nsg)
        self.nsg = nsgs[0]
        self.direction = Direction(args.direction.capitalize())
        tags = ServiceTags.from_file(args.service_tags) if args.service_tags else bundled_service_tags()
        self.policy = Policy.for_nsg(self.nsg, address_space=tuple(args.address_space), service_tags=tags)
        self.policy.classifier(self.nsg, self.direction, "vnet")

    def decide(self, flow: Flow) -> Decision:
        if self.nsg is not None:
            return self.policy.decide_in_nsg(self.nsg, self.direction, flow)
        return self.policy.decide(flow)

    def explain(self, flow: Flow) -> tuple[Decision, list[NsgExplanation]]:
        if self.nsg is not None:
            return self.policy.explain_in_nsg(self.nsg, self.direction, flow)
        return self.policy.explain(flow)


def cmd_check(args: argparse.Namespace) -> int:
    if args.expectations:
        return _check_expectations(args)
    target = _Target(args)
    out = sys.stdout
    bad: list[str] = []
    mismatched = 0
    for decision in _answers(args, target.decide, bad):
        if args.expect and decision.decision.lower() != args.expect:
            mismatched += 1
        if args.json:
            out.write(json.dumps(decision.to_json()) + "\n")
        else:
            out.write(_decision_line(decision) + "\n")
    if mismatched:
        print(f"{mismatched} flow{'s' if mismatched != 1 else ''} not decided {args.expect}", file=sys.stderr)
    return 2 if bad else 1 if mismatched else 0


def _check_expectations(args: argparse.Namespace) -> int:
    if args.flow or args.flows or args.expect:
        raise UsageError("--expectations brings its own flows and decisions: no FLOW, --flows or --expect with it")
    from .expectations import explanation_text, load_expectations

    expectations = load_expectations(args.expectations)
    target = _Target(args)
    missed = 0
    for expectation in expectations:
        try:
            decision = target.decide(expectation.flow)
        except DataplaneError as e:
            raise DataplaneError(f"{expectation.where}: {e.message}", file=args.expectations) from None
        mismatch = expectation.mismatch(decision)
        missed += mismatch is not None
        if args.json:
            sys.stdout.write(json.dumps({"expectation": expectation.where, "name": expectation.name,
                                         "expected": {"decision": expectation.expect, "rule": expectation.rule},
                                         "ok": mismatch is None, "mismatch": mismatch, **decision.to_json()}) + "\n")
            continue
        label = f"{expectation.where}" + (f" ({expectation.name})" if expectation.name else "")
        if mismatch is None:
            print(f"ok    {label}: {_decision_line(decision)}")
        else:
            print(f"FAIL  {label}: {expectation.flow}: {mismatch}")
            print(textwrap.indent(explanation_text(*target.explain(expectation.flow)), "      "))
    met = len(expectations) - missed
    print(f"{len(expectations)} expectation{'s' if len(expectations) != 1 else ''}: {met} met, {missed} not met",
          file=sys.stderr)
    return 1 if missed else 0


def _decision_line(decision: Decision) -> str:
    data = decision.to_json()
    by = f"{data['nsg']}/{data['rule']}" if data["rule"] else "-"
    line = f"{data['decision']:<5}  {data['flow']}  {by}  ({data['reason']})"
    if data["translated"] != data["flow"]:
        line += f"  translated: {data['translated']}"
    return line


def cmd_explain(args: argparse.Namespace) -> int:
    target = _Target(args)
    bad: list[str] = []
    for decision, nsgs in _answers(args, target.explain, bad):
        if args.json:
            sys.stdout.write(json.dumps(_explanation_json(decision, nsgs)) + "\n")
        else:
            _print_explanation(decision, nsgs)
    return 2 if bad else 0


def _explanation_json(decision: Decision, nsgs: list[NsgExplanation]) -> dict:
    data = decision.to_json()
    data["nsgs"] = [{
        "nsg": n.nsg, "attachment": n.attachment, "nic": n.nic, "direction": n.direction, "evaluated": n.evaluated,
        "rules": [{"name": r.rule.name, "priority": r.rule.priority, "access": r.rule.access.value,
                   "default": r.rule.default, "matched": r.matched, "fields": r.fields,
                   "decided": n.evaluated and n.deciding is r.rule} for r in n.rules]} for n in nsgs]
    return data


def _print_explanation(decision: Decision, nsgs: list[NsgExplanation]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    data = decision.to_json()
    console.print(f"[bold]{data['flow']}[/bold]")
    if data["translated"] != data["flow"]:
        console.print(f"  seen by the NSGs as {data['translated']}")
    for n in nsgs:
        title = f"{n.nsg} ({n.attachment or 'no attachment'}, {n.direction}{', NIC ' + n.nic if n.nic else ''})"
        if not n.evaluated:
            title += " — not evaluated: an earlier NSG decided"
        table = Table(title=title, title_justify="left")
        for column in ("prio", "rule", "access", "protocol", "source", "src port", "destination", "dst port", ""):
            table.add_column(column)
        deciding = n.deciding if n.evaluated else None
        for r in n.rules:
            marks = ["✓" if r.fields[f] else "✗" for f in ("protocol", "source", "source port", "destination",
                                                          "destination port")]
            style = "bold" if r.rule is deciding else "dim" if deciding is not None and r.rule.priority > deciding.priority else None
            table.add_row(str(r.rule.priority), r.rule.name, r.rule.access.value, *marks,
                          "← decides" if r.rule is deciding else "", style=style)
        console.print(table)
    by = f" by {data['nsg']}/{data['rule']}" if data["rule"] else ""
    console.print(f"[bold]{data['decision']}[/bold]{by} (reason: {data['reason']})\n")


def cmd_rules(args: argparse.Namespace) -> int:
    from .policy import Policy, effective_rules
    from .topology import load_scenario

    policy = Policy(load_scenario(args.scenario))
    groups = effective_rules(policy, args.nic)
    if args.json:
        print(json.dumps(groups, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    if not groups:
        console.print(f"{args.nic}: no NSG on the NIC or its subnet: all traffic is allowed")
    for group in groups:
        association = next(iter(group["association"].items()))
        table = Table(title=f"{group['networkSecurityGroup']['id']} ({association[0]} {association[1]['id']})",
                      title_justify="left")
        for column in ("direction", "prio", "name", "access", "protocol", "source", "src ports", "destination",
                       "dst ports"):
            table.add_column(column, overflow="fold")
        for r in group["effectiveSecurityRules"]:
            table.add_row(r["direction"], str(r["priority"]), r["name"], r["access"], r["protocol"],
                          _side_text(r, "source"), r["sourcePortRange"] or ", ".join(r["sourcePortRanges"]),
                          _side_text(r, "destination"),
                          r["destinationPortRange"] or ", ".join(r["destinationPortRanges"]))
        console.print(table)
    return 0


def _side_text(rule: dict, side: str) -> str:
    written = rule[f"{side}AddressPrefix"] or ", ".join(rule[f"{side}AddressPrefixes"] or
                                                         rule.get(f"{side}ApplicationSecurityGroups", []))
    expanded = rule[f"expanded{side.capitalize()}AddressPrefix"]
    if expanded is None:
        return written
    shown = ", ".join(expanded[:6]) + (f", … ({len(expanded)} prefixes)" if len(expanded) > 6 else "")
    return f"{written} = {shown or 'nothing'}"



def cmd_replay(args: argparse.Namespace) -> int:
    """The packet path (decoder, flow tables, flow logs) is imported only by the command that uses it."""
    from .replay import Outputs, Update, worker_count
    from .topology import load_scenario

    workers = worker_count(args.workers)
    scenario = load_scenario(args.scenario)
    updates = [Update.parse(text) for text in args.update]
    for update in updates:
        if update.nsg.name not in scenario.network_security_groups:
            raise UsageError(f"--update: the scenario has no NSG named {update.nsg.name!r}", file=update.nsg.file)
    outputs = Outputs(**{name: getattr(args, name) for name in Outputs.__dataclass_fields__})
    total = sum(Path(c).stat().st_size for c in args.captures if Path(c).is_file())
    signal.signal(signal.SIGTERM, _terminate)
    status = 0
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        err = Console(stderr=True)
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("replaying", total=total)
            summary, status = _run_replay(scenario, args, outputs, updates,
                                          lambda done: bar.update(task, completed=done), time.perf_counter, workers)
    else:
        summary, status = _run_replay(scenario, args, outputs, updates, None, time.perf_counter, workers)
    done_with_objects()
    _print_summary(summary)
    return status


def _run_replay(scenario: Scenario, args: argparse.Namespace, outputs: "Outputs", updates: list["Update"],
                progress: Callable[[int], None] | None, clock: Callable[[], float],
                workers: int) -> tuple["Summary", int]:
    from .replay import replay

    try:
        return replay(scenario, args.captures, outputs, updates=updates, progress=progress, clock=clock,
                      workers=workers, dask=args.dask), 0
    except CaptureError as e:
        print(f"error: {e}", file=sys.stderr)
        print("error: the outputs hold what was replayed before the error", file=sys.stderr)
        return e.summary, 2
    except KeyboardInterrupt as e:
        print("interrupted: the outputs hold what was replayed until then", file=sys.stderr)
        return e.summary, _interrupted_status(e)  # type: ignore[attr-defined]


def _summary_warnings(summary: "Summary") -> list[str]:
    notes = [f"{count:,} packets of link type {linktype} were skipped: the decoder does not read that link type"
             for linktype, count in sorted(summary.unsupported_link_types.items())]
    if summary.timestamps_backwards:
        notes.append(f"{summary.timestamps_backwards:,} packets have a timestamp earlier than the packet before them "
                     "in their capture; they were replayed in file order")
    return notes + summary.warnings


def _print_summary(summary: "Summary") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    table = Table(title="replay summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("packets", f"{summary.packets:,}")
    table.add_row("allowed", f"{summary.allowed:,}")
    table.add_row("denied", f"{summary.denied:,}")
    for reason, count in sorted(summary.skipped.items()):
        table.add_row(f"skipped: {reason}", f"{count:,}")
    for what, count in summary.flows.items():
        table.add_row(f"flows {what.replace('_', ' ')}", f"{count:,}")
    table.add_row("packets per second", f"{summary.packets_per_second:,.0f}")
    if summary.timestamps_backwards:
        table.add_row("timestamps going backwards", f"{summary.timestamps_backwards:,}")
    if summary.interrupted:
        table.add_row("interrupted", "yes")
    console.print(table)
    for warning in _summary_warnings(summary):
        print(f"warning: {warning}", file=sys.stderr)
    hits = Table(title="hits per NSG rule (new flows)", title_justify="left")
    for column in ("NSG", "rule", "hits"):
        hits.add_column(column, justify="right" if column == "hits" else "left")
    for nsg, rules in summary.rule_hits.items():
        for rule, count in sorted(rules.items(), key=lambda item: -item[1]):
            hits.add_row(nsg, rule, f"{count:,}")
    for nsg, rules in summary.rules_never_hit.items():
        if rules:
            hits.add_row(nsg, rules[0] if len(rules) == 1 else f"{len(rules)} rules (listed in --summary, --report)",
                         "never hit", style="dim")
    console.print(hits)


if __name__ == "__main__":
    run()
