"""`dataplane whatif`: what a proposed change does to real traffic.

One pass over the traffic through two dataplanes, before (the scenario) and after (the scenario with
the changes applied). A flow is decided as a new connection at its first packet in each; its later
packets follow its flow record there, as in `replay`. Every flow whose decision, deciding rule or
reason differs is reported. The changes are in force from the first packet, so no flow is live when
they apply: `flushConnection` has nothing to cut.

Over captures, each packet goes through both dataplanes in turn. A flow is compared as soon as both
have decided it (at its first packet, as a rule) and a changed flow's packets are counted from there
on. One uncompressed capture is walked in C (`FastPath.pass_pair`): each record read once, the
packets of known flows passed in both dataplanes, new flows decided in C where replay decides them,
and the changed flows' packets counted by a `Tally`; Python hears of each new flow and decides what
the C path leaves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from .conntrack import canonical
from .decode import ETH_IPV4_PORTS, Packet, Skip, decode_frame
from .documents import is_plan, read_document
from .errors import DataplaneError
from .nsg import load_nsgs
from .flows import key_to_flow
from .terraform import prior_state
from .topology import SCENARIO_KEYS, Scenario, load_scenario, scenario_from_document

try:
    from ._fastpath import Tally
except ImportError:  # installed without a C compiler
    Tally = None

if TYPE_CHECKING:
    from .pipeline import Verdict
    from .shards import Shards
    from .replay import Frame

NEWLY_DENIED, NEWLY_ALLOWED, RULE_CHANGED = "newly-denied", "newly-allowed", "rule-changed"
CHANGES = (NEWLY_DENIED, NEWLY_ALLOWED, RULE_CHANGED)
FAIL_ON = {NEWLY_DENIED: {NEWLY_DENIED}, NEWLY_ALLOWED: {NEWLY_ALLOWED}, "any": set(CHANGES), "none": set()}
WALK = 1 << 30
"""Records a C walk may take at once: it stops where Python must decide anyway."""
ICMP_ECHO = {1: (0, 8), 58: (128, 129)}


class Fate(NamedTuple):
    """How one dataplane decided a flow: the contract's `before` / `after` object."""

    decision: str
    nsg: str | None
    rule: str | None
    reason: str

    @property
    def label(self) -> str:
        return f"{self.decision} {self.nsg}/{self.rule}" if self.rule else f"{self.decision} ({self.reason})"

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "nsg": self.nsg, "rule": self.rule, "reason": self.reason}


class ChangedFlow(NamedTuple):
    """A flow whose fate differs; `flow` as the traffic shows it, `translated` as the NSG saw it."""

    flow: str
    translated: str | None
    first_seen: float
    last_seen: float
    packets: int
    bytes: int
    change: str
    before: Fate
    after: Fate

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"flow": self.flow, "first_seen": self.first_seen, "last_seen": self.last_seen,
                                "packets": self.packets, "bytes": self.bytes, "change": self.change,
                                "before": self.before.to_json(), "after": self.after.to_json()}
        if self.translated is not None:
            data["translated"] = self.translated
        return data


class Group(NamedTuple):
    """Changed flows that share a kind of change and the rules before and after."""

    change: str
    before: str
    after: str
    flows: int
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Report:
    flows: int
    unmatched: int
    changes: tuple[ChangedFlow, ...]

    def of(self, change: str) -> list[ChangedFlow]:
        return [c for c in self.changes if c.change == change]

    def groups(self) -> list[Group]:
        """Changed flows grouped by kind and rule pair, most traffic first."""
        totals: dict[tuple[str, str, str], list[int]] = {}
        for c in self.changes:
            t = totals.setdefault((c.change, c.before.label, c.after.label), [0, 0, 0])
            t[0] += 1
            t[1] += c.packets
            t[2] += c.bytes
        groups = [Group(*slot, *t) for slot, t in totals.items()]
        return sorted(groups, key=lambda g: (-g.packets, -g.bytes, -g.flows, g.change, g.before, g.after))

    def fails(self, fail_on: str) -> bool:
        kinds = FAIL_ON[fail_on]
        return any(c.change in kinds for c in self.changes)


def change_of(before: Fate, after: Fate) -> str | None:
    if before.decision == "Allow" and after.decision != "Allow":
        return NEWLY_DENIED
    if before.decision != "Allow" and after.decision == "Allow":
        return NEWLY_ALLOWED
    if before != after:
        return RULE_CHANGED
    return None


# -- the change ------------------------------------------------------------------------------------

def scenarios(scenario_path: str, change_paths: Iterable[str]) -> tuple[Scenario, Scenario]:
    """The scenario before and after: an NSG file replaces the NSG of its name, a scenario file the
    whole topology."""
    before = load_scenario(scenario_path)
    after = load_scenario(scenario_path)
    for path in change_paths:
        doc = read_document(path)
        if isinstance(doc, dict) and SCENARIO_KEYS & doc.keys() and "securityRules" not in doc:
            after = load_scenario(path)
            continue
        for nsg in load_nsgs(path):
            if nsg.name not in after.network_security_groups:
                raise DataplaneError(f"--change: the scenario has no NSG named {nsg.name!r} to replace",
                                     file=path, nsg=nsg.name)
            after.network_security_groups[nsg.name] = nsg
    return before, after


def plan_scenarios(plan_path: str) -> tuple[Scenario, Scenario]:
    """A Terraform plan's scenarios: before from its `prior_state`, after from its `planned_values`."""
    doc = read_document(plan_path)
    if not is_plan(doc):
        raise DataplaneError("is not a Terraform plan (`terraform show -json plan.out`)", file=plan_path)
    return scenario_from_document(prior_state(doc), file=plan_path), scenario_from_document(doc, file=plan_path)


# -- the pass over the traffic ---------------------------------------------------------------------

def whatif(before: Scenario, after: Scenario, paths: list[str], *, workers: int = 1,
           dask: str | None = None) -> Report:
    """Captures or flow logs (all of one kind) through both scenarios. The packet path and the flow-log
    reader are imported here, so that building the command line does not load them.

    `workers` > 1 shards the flows over that many processes, `dask` over a Dask cluster, as `replay`
    does: the report is the same (`workers.py`)."""
    from .documents import is_flow_log

    kinds = {is_flow_log(p) for p in paths}
    if len(kinds) > 1:
        raise DataplaneError("the traffic mixes captures and flow logs; give one kind")
    logs = kinds == {True}
    if workers > 1 or dask is not None:
        from .workers import runner_of, whatif_sharded
        runner, count = runner_of(workers, dask)
        return whatif_sharded(before, after, paths, logs, count, runner)
    if logs:
        return whatif_flow_logs(before, after, paths)
    return whatif_captures(before, after, paths)


def merged_reports(reports: list[Report]) -> Report:
    """The report of every shard's flows: a flow's changes are all in one shard, in the order one process
    makes them, so a stable sort of theirs gives one process's order."""
    changes = sorted((c for r in reports for c in r.changes), key=_change_order)
    return Report(sum(r.flows for r in reports), sum(r.unmatched for r in reports), tuple(changes))


def _change_order(c: ChangedFlow) -> tuple[float, str]:
    return c.first_seen, c.flow


def flow_key(p: Packet) -> tuple:
    """A packet's flow, the same both ways: ICMP echoes by identifier, other ICMP by type and code."""
    proto, version, src, dst, sport, dport = p[1], p[0], p[2], p[3], p[4], p[5]
    if p[7] >= 0:
        sport = dport = p[9] if p[7] in ICMP_ECHO.get(proto, ()) else p[7] * 256 + p[8]
    return canonical((proto, version, src, sport, dst, dport))


def nic_addresses(*scenarios: Scenario) -> frozenset[tuple[int, int]]:
    """(IP version, address) of every NIC's private addresses, as flow keys write them."""
    return frozenset((ip.version, int(ip)) for scenario in scenarios
                     for nic in scenario.network_interfaces.values() for ip in nic.private_ips)


def nsg_flow_key(v: Verdict, captured: tuple, private: frozenset) -> tuple:
    """The flow as the NSGs saw it, the same both ways: a request to a public IP or frontend and the
    reply from the NIC behind it are one flow, whichever of them a capture shows with the public address."""
    t = v.translated
    _, version, a, _, b, _ = captured
    if t is None or (version, a) in private or (version, b) in private:
        return captured
    return canonical(t)


def whatif_captures(before: Scenario, after: Scenario, paths: list[str], shard: tuple[Shards, int] | None = None
                    ) -> Report:
    """`shard` (the shards and which of them) limits the report to one shard's flows: the others' packets
    only move the dataplanes' clocks (`shards` keeps a flow's packets in one shard)."""
    from .pipeline import Dataplane
    from .replay import Capture, freeze_collector, merged
    from .shards import FrameShards, shard_filter_of

    dataplanes = first, second = Dataplane(before), Dataplane(after)
    flows = _Flows(nic_addresses(before, after))
    mine = FrameShards(shard[0]) if shard is not None else None
    captures: list[Capture] = []
    last_ts = None
    thaw = freeze_collector()
    try:
        captures = [Capture(p) for p in paths]
        walk = first.walk_with(second) if Tally is not None and len(captures) == 1 and captures[0].mapped else None
        c_shard = shard_filter_of(*shard) if shard is not None and walk is not None else None
        frames = merged(captures)
        while True:
            part = None
            if walk is not None:  # (before the headers are read, nothing is walked)
                taken, last, *rest = captures[0].walk(walk, math.inf, WALK, c_shard, flows.tally, flows.noted,
                                                      flows.known)
                if taken:
                    last_ts = last
                part = rest[0] if rest else None
            frame = next(frames, None)
            if frame is None:
                break
            ts, linktype, data, _ = frame
            last_ts = ts
            if part is not None:  # the first dataplane took it in C
                flows.noted(part[0], second.process(data, ts, linktype))
            elif mine is None or mine(data, linktype) == shard[1]:
                flows.noted(first.process(data, ts, linktype), second.process(data, ts, linktype))
            else:
                first.pass_time(ts)
                second.pass_time(ts)
                continue
            _count([frame], flows.changed, flows.aliases)
    finally:
        thaw()
        for dp in dataplanes:
            if last_ts is not None:
                dp.close(last_ts)
        for capture in captures:
            capture.close()
    return flows.report()


class _Flows:
    """What whatif learns of the flows, packet by packet: each flow's first verdict in each dataplane, by
    the flow as the NSGs saw it (`aliases` maps the captured keys that name it otherwise), until the other
    dataplane's comes; then the two are compared, and a changed flow is counted from there on: by the
    `Tally` for the packets the C walk takes, by `_count` for the others."""

    def __init__(self, private: frozenset) -> None:
        self.private = private
        self.aliases: dict[tuple, tuple] = {}
        self.changed: dict[tuple, list] = {}
        self.tally = Tally() if Tally is not None else None
        self._firsts: tuple[dict[tuple, Verdict], dict[tuple, Verdict]] = ({}, {})
        self._compared: set[tuple] = set()
        self._unmatched = 0
        self._names: dict[tuple, list[tuple]] = {}
        """The captured keys aliased to each flow: they count to it once it changes."""

    @property
    def known(self) -> tuple[set, dict, dict, dict]:
        """What the C walk needs to settle the common flow itself (`FastPath.pass_pair`): the flows compared,
        the first verdicts of each dataplane waiting for the other's, the aliases."""
        return self._compared, self._firsts[0], self._firsts[1], self.aliases

    def noted(self, before: Verdict | None, after: Verdict | None) -> None:
        """A packet's verdicts (None: that dataplane passed it in C as a known flow's)."""
        key0, key1 = self._first(0, before), self._first(1, after)
        if key0 is not None and key0 in self._firsts[1]:
            self._compare(key0)
        if key1 is not None and key1 != key0 and key1 in self._firsts[0]:
            self._compare(key1)

    def _first(self, which: int, v: Verdict | None) -> tuple | None:
        """The flow of a verdict that is the first of its flow in this dataplane."""
        if v is None:
            return None
        p = v.packet
        if p is None or p[12] > 0:  # not IP, or a later fragment: not the start of a flow
            return None
        captured = flow_key(p)
        key = self.aliases.get(captured)
        if key is None:
            key = captured if v.translated is None else nsg_flow_key(v, captured, self.private)
            if key != captured:
                self._alias(captured, key)
        firsts = self._firsts[which]
        if key in self._compared or key in firsts:
            return None
        firsts[key] = v
        if which == 0 and v.decision == "Skip":
            self._unmatched += 1
        return key

    def _alias(self, captured: tuple, key: tuple) -> None:
        """A captured key names the flow `key`: its packets count where `_count` counts them."""
        self.aliases[captured] = key
        self._names.setdefault(key, []).append(captured)
        flow = self.changed.get(key)
        if self.tally is not None and (flow is not None or captured in self.changed):
            self.tally.watch(captured, flow)

    def _compare(self, key: tuple) -> None:
        v0, v1 = self._firsts[0].pop(key), self._firsts[1].pop(key)
        self._compared.add(key)
        fate0, fate1 = _fate(v0), _fate(v1)
        kind = change_of(fate0, fate1)
        if kind is None:
            return
        translated = v0.translated or v1.translated
        flow = self.changed[key] = [v0.flow, str(key_to_flow(translated)) if translated else None, v0.ts, v0.ts,
                                    0, 0, kind, fate0, fate1]
        if self.tally is not None:
            if key not in self.aliases:
                self.tally.watch(key, flow)
            for captured in self._names.get(key, ()):
                self.tally.watch(captured, flow)

    def report(self) -> Report:
        firsts = self._firsts
        changes = tuple(sorted((ChangedFlow(*c) for c in self.changed.values()), key=_change_order))
        return Report(len(self._compared) + len(firsts[0].keys() | firsts[1].keys()), self._unmatched, changes)


def _fate(v: Verdict) -> Fate:
    return Fate(v.decision, v.nsg, v.rule, v.reason)


def _count(batch: list[Frame], changed: dict[tuple, list], aliases: dict[tuple, tuple]) -> None:
    """Last seen, packets and bytes (frame lengths, as flow logs count them) of changed flows. The
    common frame is read as `decode_frame`'s own fast path reads it, without building a Packet."""
    unpack, found, alias = ETH_IPV4_PORTS.unpack_from, changed.get, aliases.get

    def get(captured: tuple) -> list | None:
        return found(alias(captured, captured))

    for ts, linktype, data, _ in batch:
        n = len(data)
        if linktype == 1 and n >= 54:
            ethertype, vihl, total, _, frag, proto, src, dst, sport, dport = unpack(data)
            if ethertype == 0x0800 and vihl == 0x45 and not frag & 0x3FFF and total >= 40 and n >= 14 + total \
                    and (proto == 6 or proto == 17):
                c = get((proto, 4, src, sport, dst, dport) if (src, sport) <= (dst, dport) else  # canonical, inline
                        (proto, 4, dst, dport, src, sport))
                if c is not None:
                    c[3] = ts
                    c[4] += 1
                    c[5] += n
                continue
        p = decode_frame(data, linktype)
        if type(p) is Skip or p[12] > 0:
            continue
        c = get(flow_key(p))
        if c is not None:
            c[3] = ts
            c[4] += 1
            c[5] += p[10]


FATES_KEPT = 65536
"""Pairs of decisions whose fates `whatif_flow_logs` remembers."""


def whatif_flow_logs(before: Scenario, after: Scenario, paths: list[str], shard: Any = None) -> Report:
    """Most flows are decided from the deciders' kept decisions, so the fates and change of a pair of
    decisions are made once, kept by the identities of both (the pair kept with them). `shard` (a
    `workers.ShardFlows`) limits the report to one shard's flows."""
    from .traffic import FlowDecider, read_flow_logs

    decide_before, decide_after = FlowDecider(before).decide, FlowDecider(after).decide
    flows = unmatched = 0
    changes = []
    pairs: dict[tuple[int, int], tuple] = {}
    for flow in read_flow_logs(paths) if shard is None else shard.of(read_flow_logs(paths)):
        flows += 1
        before_, after_ = decide_before(flow), decide_after(flow)
        if before_ is None:
            unmatched += 1
            continue
        pair = pairs.get((id(before_), id(after_)))
        if pair is None:
            fate0 = Fate(*before_[1:5])
            fate1 = Fate(*after_[1:5]) if after_ is not None else Fate("Skip", None, None, "not-in-scenario")
            if len(pairs) >= FATES_KEPT:
                pairs.clear()
            pair = pairs[(id(before_), id(after_))] = (before_, after_, fate0, fate1, change_of(fate0, fate1))
        _, _, fate0, fate1, kind = pair
        if kind is not None:
            changes.append(ChangedFlow(flow.flow, None, flow.first, flow.last, flow.packets, flow.bytes, kind,
                                       fate0, fate1))
    changes.sort(key=_change_order)
    return Report(flows, unmatched, tuple(changes))


# -- the command -----------------------------------------------------------------------------------

def cmd_whatif(args: argparse.Namespace) -> int:
    from .cli import done_with_objects
    from .report import render_whatif_report, require_extra
    from .replay import worker_count

    workers = worker_count(args.workers)
    if args.report:
        require_extra()
    if args.terraform_plan:
        if args.change:
            raise DataplaneError("--terraform-plan brings both states: give no --change with it")
        before, after = plan_scenarios(args.terraform_plan)
        traffic, sources = [args.scenario, *(args.traffic or [])], [f"terraform plan {args.terraform_plan}"]
    else:
        if not args.change or not args.traffic:
            raise DataplaneError("give SCENARIO --change FILE TRAFFIC..., or --terraform-plan PLAN TRAFFIC...")
        before, after = scenarios(args.scenario, args.change)
        traffic, sources = args.traffic, [f"scenario {args.scenario}", *(f"change {c}" for c in args.change)]
    report = whatif(before, after, traffic, workers=workers, dask=args.dask)
    done_with_objects()
    if args.report:
        sources += [f"traffic {t}" for t in traffic]
        render_whatif_report((c.to_json() for c in report.changes), args.report, sources=sources)
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                for c in report.changes:
                    f.write(json.dumps(c.to_json()) + "\n")
        except OSError as e:
            raise DataplaneError(f"cannot write: {e.strerror}", file=args.json) from None
    print_report(report, sys.stdout)
    return 1 if report.fails(args.fail_on) else 0


SHOWN_PER_GROUP = 20


def print_report(report: Report, out: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False, width=None if out.isatty() else 160)
    counts = {kind: len(report.of(kind)) for kind in CHANGES}
    console.print(f"{report.flows:,} flows, {report.unmatched:,} matching no NIC (skipped): "
                  + ", ".join(f"{n:,} {kind}" for kind, n in counts.items()))
    if not report.changes:
        return
    table = Table(title="changed flows by rule, most traffic first", title_justify="left")
    for column in ("change", "before", "after", "flows", "packets", "bytes"):
        table.add_column(column, justify="right" if column in ("flows", "packets", "bytes") else "left")
    for g in report.groups():
        table.add_row(g.change, g.before, g.after, f"{g.flows:,}", f"{g.packets:,}", f"{g.bytes:,}")
    console.print(table)
    for g in report.groups():
        members = [c for c in report.changes
                   if (c.change, c.before.label, c.after.label) == (g.change, g.before, g.after)]
        console.print(f"{g.change}: {g.before} -> {g.after}")
        for c in members[:SHOWN_PER_GROUP]:
            seen_as = f"  translated: {c.translated}" if c.translated else ""
            console.print(f"  {c.flow}{seen_as}  {_clock(c.first_seen)} .. {_clock(c.last_seen)}  "
                          f"{c.packets:,} packets {c.bytes:,} bytes")
        if len(members) > SHOWN_PER_GROUP:
            console.print(f"  ... {len(members) - SHOWN_PER_GROUP:,} more (--json lists every flow)")


def _clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
