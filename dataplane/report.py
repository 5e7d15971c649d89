"""One self-contained HTML page a reviewer would rather look at: `replay --report` and `whatif --report`.

Charts are Vega-Lite specs built with Altair and drawn in the browser by the Vega bundle that
vl-convert ships, inlined once per page (about 0.9 MB): the page fetches nothing, works offline and
as a CI artifact, and keeps tooltips. Both libraries are the optional extra `dataplane[report]`;
`Traffic`, the collector replay feeds, needs neither.
"""

from __future__ import annotations

import heapq
import html
import json
import os
import pickle
from collections import Counter
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .errors import DataplaneError
from .flows import flow_text
from .pipeline import Verdict

EXTRA = "pip install 'dataplane[report]'"
ALL = "all NSGs"
"""The scope of final decisions, beside one scope per NSG (what each NSG itself decided)."""
TOP = 20
TOP_RULES = 15
OUTCOME_COLORS = {"allowed": "#3a9d5d", "denied": "#d64541", "skipped": "#a0a4a8"}
CHANGE_COLORS = {"newly-denied": "#d64541", "newly-allowed": "#e8a33d", "rule-changed": "#4a78b5"}
ACCESS_COLORS = {"Allow": OUTCOME_COLORS["allowed"], "Deny": OUTCOME_COLORS["denied"]}
COUNT_AXIS = {"tickMinStep": 1, "format": ",d"}
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 43200)
"""Minutes between time ticks."""


class FlowTotals:
    """One connection, both directions, as the report sums it up."""

    __slots__ = ("id", "key", "first_seen", "last_seen", "packets", "bytes", "allowed", "denied",
                 "decision", "nsg", "rule", "denied_by", "evaluations", "keys", "watched", "minute", "counted")

    def __init__(self, id: int, verdict: Verdict, key: tuple, keys: tuple[tuple, ...] = ()):
        self.id = id
        self.key = key
        """Its first packet's (protocol, version, source, port, destination, port)."""
        self.keys = keys
        """The keys that find it (its first packet's, and that one translated)."""
        self.first_seen = self.last_seen = verdict.ts
        self.packets = self.bytes = self.allowed = self.denied = 0
        self.decision, self.nsg, self.rule = verdict.decision, verdict.nsg, verdict.rule
        self.denied_by: tuple[str | None, str | None] = (None, None)
        self.evaluations: tuple[tuple[str, str, str], ...] = ()
        self.watched: tuple[tuple[str, str, str], ...] | None = None
        """The evaluations its packets counted in C count to (`Traffic.counted_in_c`)."""
        self.minute: int | None = None
        self.counted: tuple[tuple[str, str], ...] = ()
        """The (scope, outcome) it has been counted a flow of in its latest `minute` (`Traffic._count`)."""

    @property
    def flow(self) -> str:
        """Written when a table shows it: the report shows a few dozen of a capture's flows."""
        return flow_text(self.key)


_ROW_OF = attrgetter("id", "key", "first_seen", "last_seen", "packets", "bytes", "allowed", "denied", "decision", "nsg",
                     "rule", "denied_by", "evaluations", "keys")
"""A flow's totals as a plain row, in `Traffic.__setstate__`'s order."""


class Traffic:
    """Per-minute counts, per-rule packets and per-flow totals, fed one verdict at a time.

    A packet of an existing flow carries no evaluations of its own; it is counted for the rules that
    admitted its flow, so a rule's packets are all the packets it let through or stopped.
    """

    def __init__(self) -> None:
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.counts: Counter[tuple[int, str, str, str]] = Counter()  # (minute, scope, unit, outcome)
        self.rule_packets: Counter[tuple[str, str]] = Counter()
        self.rule_access: dict[tuple[str, str], str] = {}
        self.rule_access_at: dict[tuple[str, str], int] = {}
        """The packet that last set each rule's access, when packets come with their places (`merged`)."""
        self.flows: list[FlowTotals] = []
        self._seen: set[tuple[int, str, str, int]] = set()
        """(minute, scope, outcome, flow) a flow was counted for in a minute before its latest one."""
        self._by_key: dict[tuple, FlowTotals] = {}
        self._tally: Any = None
        self._deferred: list[tuple] = []
        self._last: tuple[tuple, tuple] = ((), ())

    def __getstate__(self) -> dict[str, Any]:
        """A shard's collector travels as its totals: the lookups that place further packets stay behind.
        Its flows go as one pickle of plain rows made with the pickler's memo, which writes each NSG and
        rule name and each shared evaluation once: a worker's result is pickled without it, and its
        hundred thousand flows took a second to read back as objects, a third of that as rows."""
        state = {name: value for name, value in self.__dict__.items()
                 if name not in ("_by_key", "_seen", "_tally", "_deferred", "_last", "flows")}
        state["flows"] = pickle.dumps(list(map(_ROW_OF, self.flows)), protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        flows, new = [], FlowTotals.__new__
        for row in pickle.loads(state.pop("flows")):
            flow = new(FlowTotals)
            (flow.id, flow.key, flow.first_seen, flow.last_seen, flow.packets, flow.bytes, flow.allowed, flow.denied,
             flow.decision, flow.nsg, flow.rule, flow.denied_by, flow.evaluations, flow.keys) = row
            flow.watched, flow.minute, flow.counted = None, None, ()
            flows.append(flow)
        self.__dict__.update(state, flows=flows)

    def counted_in_c(self, tally: Any) -> None:
        """From now on a C walk counts the packets of known flows (`FastPath.pass_records` with `tally`, a
        `_fastpath.Tally(by_minute=True)`): of each flow whose admitting rules are known, this watches its
        keys, and `take_counts` adds what the walk counted as `verdict` would have, packet by packet. The
        walk decides new flows too and hands each back (`decided_in_c`); every other packet still comes to
        `verdict`. For a replay without `--update` only: a rule's access is then the one it had when its
        flows' first packets came here."""
        self._tally = tally

    def decided_in_c(self, verdict: Verdict, wirelen: int, at: int | None, placeholder: list | None) -> None:
        """A new flow the walk decided, in order; an allowed one's next packets have counted to `placeholder`
        since, which now names what they count to."""
        flow = self._add(verdict, wirelen, at)
        if placeholder is not None and flow is not None:
            placeholder[0] = self._watch(flow)
            packet = verdict.packet
            key = (packet[1], packet[0], packet[2], packet[4], packet[3], packet[5])
            if key not in self._by_key:  # found by its translation, as each of its packets will be: by Python
                self._tally.watch(key, None)

    def take_counts(self, everything: bool = False) -> None:
        """What the C walk counted in the minutes it closed (`everything`: and all it holds), added in; counts
        of a flow whose first packet's verdict has not come yet wait for it."""
        entries, self._deferred = self._deferred + self._tally.taken(everything), []
        for entry in entries:
            watched, minute, packets, nbytes, first, last = entry
            if watched.__class__ is list:
                if watched[0] is None:
                    self._deferred.append(entry)
                    continue
                watched = watched[0]
            flow, evaluations = watched
            if self.first_ts is None or first < self.first_ts:
                self.first_ts = first
            if self.last_ts is None or last > self.last_ts:
                self.last_ts = last
            if last > flow.last_seen:
                flow.last_seen = last
            flow.packets += packets
            flow.bytes += nbytes
            flow.allowed += packets
            self._count(minute, ALL, "allowed", flow, packets)
            for nsg, rule, access in evaluations:
                self.rule_packets[(nsg, rule)] += packets
                self._count(minute, nsg, "allowed" if access == "Allow" else "denied", flow, packets)

    def _watch(self, flow: FlowTotals) -> tuple:
        """The walk counts the packets of each of the flow's keys to it and its evaluations from now on."""
        watched = (flow, flow.evaluations)
        flow.watched = flow.evaluations
        for key in flow.keys:
            self._tally.watch(key, watched)
        return watched

    @classmethod
    def merged(cls, shards: Iterable[Traffic]) -> Traffic:
        """The collectors of shards that keep each flow's packets together, each packet given with its place
        in the capture (`at`), as one collector fed every packet in order: counts add up, flows are
        numbered by their first packet, and a rule's access is the one its last packet saw."""
        whole = cls()
        shards = list(shards)
        firsts = [shard.first_ts for shard in shards if shard.first_ts is not None]
        lasts = [shard.last_ts for shard in shards if shard.last_ts is not None]
        whole.first_ts, whole.last_ts = min(firsts, default=None), max(lasts, default=None)
        for shard in shards:
            whole.counts.update(shard.counts)
            whole.rule_packets.update(shard.rule_packets)
            for rule, access in shard.rule_access.items():
                at = shard.rule_access_at[rule]
                if whole.rule_access_at.get(rule, -1) < at:
                    whole.rule_access[rule], whole.rule_access_at[rule] = access, at
        whole.flows = sorted((flow for shard in shards for flow in shard.flows), key=lambda flow: flow.id)
        for number, flow in enumerate(whole.flows):
            flow.id = number
        return whole

    def verdict(self, verdict: Verdict, wirelen: int, at: int | None = None) -> None:
        """`at`, the packet's place in the capture, numbers a new flow by it and dates rule accesses:
        a shard's collector gets it, to be `merged`."""
        flow = self._add(verdict, wirelen, at)
        if self._tally is not None and flow is not None and flow.evaluations and flow.watched is not flow.evaluations:
            self._watch(flow)  # its next packets the walk takes count as a flow's do here

    def _add(self, verdict: Verdict, wirelen: int, at: int | None) -> FlowTotals | None:
        """The packet counted; its connection, unless it was skipped."""
        ts, decision = verdict.ts, verdict.decision
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        minute = int(ts // 60)
        packet = verdict.packet
        if decision == "Skip" or packet is None:
            self.counts[(minute, ALL, "packets", "skipped")] += 1
            return None
        flow = self._flow(verdict, (packet[1], packet[0], packet[2], packet[4], packet[3], packet[5]), at)
        if ts > flow.last_seen:
            flow.last_seen = ts
        flow.packets += 1
        flow.bytes += wirelen
        if verdict.evaluations:
            evaluations = self._evaluations(verdict.evaluations)
            if decision == "Allow":
                flow.evaluations = evaluations
        elif verdict.reason == "flow":
            evaluations = flow.evaluations or (((verdict.nsg, verdict.rule, "Allow"),) if verdict.nsg else ())
        else:
            evaluations = ()
        if decision == "Allow":
            flow.allowed += 1
            self._count(minute, ALL, "allowed", flow)
        else:
            flow.denied += 1
            flow.denied_by = (verdict.nsg, verdict.rule)
            self._count(minute, ALL, "denied", flow)
        for nsg, rule, access in evaluations:
            self.rule_packets[(nsg, rule)] += 1
            self.rule_access[(nsg, rule)] = access
            if at is not None:
                self.rule_access_at[(nsg, rule)] = at
            self._count(minute, nsg, "allowed" if access == "Allow" else "denied", flow)
        return flow

    def _evaluations(self, evaluations: tuple) -> tuple[tuple[str, str, str], ...]:
        """(NSG, rule, access) of each evaluation; new flows decided alike share their evaluations, and so
        the tuple made of the last ones."""
        if evaluations is not self._last[0]:
            self._last = (evaluations, tuple((e.nsg, e.rule, e.access) for e in evaluations))
        return self._last[1]

    def _count(self, minute: int, scope: str, outcome: str, flow: FlowTotals, packets: int = 1) -> None:
        """A flow counts once per minute, scope and outcome. The flow holds what it counted for in its latest
        minute (a few pairs); what it counted for in earlier minutes goes to `_seen` when it moves on, and is
        looked up there only when the capture's time goes back. A set of every count of every flow grew by
        hundreds of thousands on churn-heavy traffic and missed the cache at each packet."""
        counts = self.counts
        counts[(minute, scope, "packets", outcome)] += packets
        if minute != flow.minute:
            if flow.minute is None or minute > flow.minute:
                self._seen.update((flow.minute, *mark, flow.id) for mark in flow.counted)
                flow.minute, flow.counted = minute, ()
            else:
                seen = (minute, scope, outcome, flow.id)
                if seen not in self._seen:
                    self._seen.add(seen)
                    counts[(minute, scope, "flows", outcome)] += 1
                return
        mark = (scope, outcome)
        if mark not in flow.counted:
            flow.counted += (mark,)
            counts[(minute, scope, "flows", outcome)] += 1

    def _flow(self, verdict: Verdict, key: tuple, at: int | None) -> FlowTotals:
        """The connection of a packet: its own key, or a reply's key before or after NAT. A connection is
        found by each of its keys both ways round, and no key both ways round names two connections."""
        by_key = self._by_key
        flow = by_key.get(key)
        if flow is not None:
            return flow
        translated = verdict.translated
        if translated is not None:
            flow = by_key.get(translated := tuple(translated))
            if flow is not None:
                return flow
        keys = (key, translated) if translated is not None else (key,)
        flow = FlowTotals(len(self.flows) if at is None else at, verdict, key, keys)
        self.flows.append(flow)
        for k in keys:
            by_key[k] = by_key[(k[0], k[1], k[4], k[5], k[2], k[3])] = flow
        return flow


def require_extra() -> None:
    """Fail before a long replay rather than after it when the plotting extra is missing."""
    _libraries()


def render_replay_report(summary: dict[str, Any], traffic: Traffic, path: str, *,
                         sources: Sequence[str] = ()) -> None:
    """Write the replay report; `summary` is `Summary.to_json()`, so the page agrees with `--summary`."""
    _write(path, replay_report_html(summary, traffic, sources=sources))


def render_whatif_report(changes: Iterable[dict[str, Any]], path: str, *, title: str = "what-if report",
                         sources: Sequence[str] = ()) -> None:
    """Write the what-if report from changed-flow records, each shaped as a `whatif --json` line."""
    _write(path, whatif_report_html(list(changes), title=title, sources=sources))


def replay_report_html(summary: dict[str, Any], traffic: Traffic, *, sources: Sequence[str] = ()) -> str:
    """The replay page: tiles and tables from the summary, per-minute and per-rule charts from `traffic`."""
    alt, _ = _libraries()
    packets = summary["packets"]
    skipped = sum(summary["skipped"].values())
    never_hit = sum(len(rules) for rules in summary["rules_never_hit"].values())
    tiles = [("packets", "packets", packets, ""),
             ("allowed", "allowed", summary["allowed"], _share(summary["allowed"], packets)),
             ("denied", "denied", summary["denied"], _share(summary["denied"], packets)),
             ("skipped", "skipped", skipped, _share(skipped, packets)),
             ("flows-created", "flows created", summary["flows"].get("created", 0), ""),
             ("rules-never-hit", "rules never hit", never_hit, "")]
    rows = [{"minute": _iso(minute * 60), "scope": scope, "unit": unit, "outcome": outcome, "count": count}
            for (minute, scope, unit, outcome), count in sorted(traffic.counts.items())]
    overall = [r for r in rows if r["scope"] == ALL]
    per_nsg = [r for r in rows if r["scope"] != ALL]
    charts = [("traffic", "Traffic over capture time, per minute",
               "Packets, and flows with at least one packet in the minute, by the final decision.",
               _time_chart(alt, overall, OUTCOME_COLORS, facet_row=False))]
    if per_nsg:
        charts.append(("per-nsg", "Per NSG", "What each NSG itself allowed or denied, per minute. An NSG "
                       "on both ends of a path sees a packet twice.",
                       _time_chart(alt, per_nsg, OUTCOME_COLORS, facet_row=True)))
    rule_rows = _rule_rows(summary, traffic)
    busiest = _busiest(rule_rows)
    if busiest:
        charts.append(("rules", "Rule hits", f"Packets per rule (the {TOP_RULES} busiest of each NSG): evaluated, "
                       "or carried by the flow the rule admitted.", _rule_chart(alt, busiest)))
    body = [_tiles(tiles), _span(traffic, summary)]
    body += [_chart_section(name, title, note, chart) for name, title, note, chart in charts[:2]]
    body.append(_flow_tables(traffic))
    body += [_chart_section(name, title, note, chart) for name, title, note, chart in charts[2:]]
    body.append(_rule_table(summary, rule_rows))
    body.append(_counts_table(summary))
    stopped = summary.get("error") or ("interrupted" if summary.get("interrupted") else None)
    return _page("dataplane replay report", sources, stopped, "\n".join(body))


def whatif_report_html(changes: list[dict[str, Any]], *, title: str = "what-if report",
                       sources: Sequence[str] = ()) -> str:
    """The what-if page: changes by kind, per minute of their first packet and per rule pair."""
    alt, _ = _libraries()
    kinds = Counter(c["change"] for c in changes)
    tiles = [("changed-flows", "changed flows", len(changes), ""),
             *((kind, kind.replace("-", " "), kinds.get(kind, 0), "") for kind in CHANGE_COLORS),
             ("packets", "packets", sum(c["packets"] for c in changes), ""),
             ("bytes", "bytes", sum(c["bytes"] for c in changes), "")]
    body = [_tiles(tiles)]
    if changes:
        per_minute = Counter((int(c["first_seen"] // 60), c["change"]) for c in changes)
        rows = [{"minute": _iso(minute * 60), "scope": ALL, "unit": "flows", "outcome": change, "count": count}
                for (minute, change), count in sorted(per_minute.items())]
        pairs = _pairs(changes)
        body.append(_chart_section("changes", "Changed flows over time",
                                   "Changed flows per minute of their first packet, by kind of change.",
                                   _time_chart(alt, rows, CHANGE_COLORS, facet_row=False, units=False)))
        body.append(_chart_section("pairs", "Changed flows by rule pair",
                                   "Flows per deciding rule before and after the change.", _pair_chart(alt, pairs)))
        body.append(_pair_table(pairs))
        body.append(_change_table(changes))
    else:
        body.append('<section><h2>No flow changes</h2><p>Every flow is decided as before, by the same rule.</p>'
                    '</section>')
    return _page(f"dataplane {title}", sources, None, "\n".join(body))


def _libraries() -> tuple[Any, Any]:
    try:
        import altair
        import vl_convert
    except ImportError as e:
        raise DataplaneError(f"--report needs the plotting extra ({e.name} is not installed): {EXTRA}") from None
    return altair, vl_convert


def _vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script. vl-convert takes some ten seconds to bundle them,
    so the bundle is kept in the user's cache, named by both versions; a cache that cannot be read
    or written only costs the time."""
    from importlib import metadata

    altair, vl_convert = _libraries()
    vl_version = "_".join(altair.SCHEMA_VERSION.split(".")[:2])
    cache = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dataplane" /
             f"vega-embed-{vl_version}-vl-convert-{metadata.version('vl-convert-python')}.js")
    try:
        return cache.read_text(encoding="utf-8")
    except OSError:
        pass
    bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}")
        partial.write_text(bundle, encoding="utf-8")
        partial.replace(cache)
    except OSError:
        pass
    return bundle


def _time_chart(alt: Any, rows: list[dict], colors: dict[str, str], *, facet_row: bool, units: bool = True) -> Any:
    """Stacked bars per minute, coloured by outcome; faceted by unit (packets, flows) and by NSG."""
    scale = alt.Scale(domain=list(colors), range=list(colors.values()))
    chart = alt.Chart(alt.Data(values=rows)).mark_bar().encode(
        x=alt.X("utcyearmonthdatehoursminutes(minute):T", title="capture time (UTC)",
                axis=alt.Axis(labelAngle=0, **_time_ticks(rows))),
        y=alt.Y("sum(count):Q", title=None, axis=COUNT_AXIS),
        color=alt.Color("outcome:N", scale=scale, title=None, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("utcyearmonthdatehoursminutes(minute):T", title="minute", format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("outcome:N", title="what"), alt.Tooltip("sum(count):Q", title="count")],
    ).properties(width=(470 if facet_row else 520) if units else 1060, height=120 if facet_row else 180)
    if not units:
        return chart.encode(y=alt.Y("sum(count):Q", title="flows", axis=COUNT_AXIS))
    facet = {"column": alt.Column("unit:N", title=None, sort="descending",
                                  header=alt.Header(labelFontSize=13, labelFontWeight="bold"))}
    if facet_row:
        facet["row"] = alt.Row("scope:N", title=None, header=alt.Header(labelFontSize=13, labelFontWeight="bold",
                                                                         labelAngle=0, labelAlign="left"))
    return chart.facet(**facet).resolve_scale(y="independent")


def _time_ticks(rows: list[dict]) -> dict[str, Any]:
    """Ticks on whole minutes, hours or days, a dozen at most; Vega's own fall on seconds when the
    capture spans a minute or two."""
    minutes = {int(datetime.fromisoformat(r["minute"]).timestamp() // 60) for r in rows}
    if not minutes:
        return {}
    first, end = min(minutes), max(minutes) + 1
    step = next((s for s in TICK_STEPS if end - first <= 12 * s), TICK_STEPS[-1])
    ticks = [datetime.fromtimestamp(m * 60, timezone.utc) for m in range(-(-first // step) * step, end + 1, step)]
    return {"values": [{"year": t.year, "month": t.month, "date": t.day, "hours": t.hour, "minutes": t.minute,
                        "utc": True} for t in ticks], "format": "%H:%M" if step < 1440 else "%b %d"}


def _rule_chart(alt: Any, rows: list[dict]) -> Any:
    scale = alt.Scale(domain=list(ACCESS_COLORS), range=list(ACCESS_COLORS.values()))
    return alt.Chart(alt.Data(values=rows)).mark_bar().encode(
        y=alt.Y("rule:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
        x=alt.X("packets:Q", title="packets", axis=COUNT_AXIS),
        color=alt.Color("access:N", scale=scale, title=None, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("nsg:N", title="NSG"), alt.Tooltip("rule:N"), alt.Tooltip("access:N"),
                 alt.Tooltip("flows:Q", title="new flows"), alt.Tooltip("packets:Q")],
    ).properties(width=760).facet(
        row=alt.Row("nsg:N", title=None, header=alt.Header(labelFontSize=13, labelFontWeight="bold", labelAngle=0,
                                                          labelAlign="left"))
    ).resolve_scale(y="independent")


def _pair_chart(alt: Any, pairs: list[dict]) -> Any:
    scale = alt.Scale(domain=list(CHANGE_COLORS), range=list(CHANGE_COLORS.values()))
    return alt.Chart(alt.Data(values=pairs)).mark_bar().encode(
        y=alt.Y("pair:N", sort="-x", title=None, axis=alt.Axis(labelLimit=520)),
        x=alt.X("flows:Q", title="flows", axis=COUNT_AXIS),
        color=alt.Color("change:N", scale=scale, title=None, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("change:N"), alt.Tooltip("pair:N", title="before → after"), alt.Tooltip("flows:Q"),
                 alt.Tooltip("packets:Q"), alt.Tooltip("bytes:Q")],
    ).properties(width=560)


def _rule_rows(summary: dict[str, Any], traffic: Traffic) -> list[dict]:
    rows = []
    nsgs = sorted(set(summary["rule_hits"]) | {nsg for nsg, _ in traffic.rule_packets})
    for nsg in nsgs:
        hits = summary["rule_hits"].get(nsg, {})
        rules = set(hits) | {rule for n, rule in traffic.rule_packets if n == nsg}
        for rule in rules:
            rows.append({"nsg": nsg, "rule": rule, "access": traffic.rule_access.get((nsg, rule), "?"),
                         "flows": hits.get(rule, 0), "packets": traffic.rule_packets.get((nsg, rule), 0)})
    return sorted(rows, key=lambda r: (r["nsg"], -r["packets"], -r["flows"], r["rule"]))


def _busiest(rule_rows: list[dict]) -> list[dict]:
    """The rules hit, at most TOP_RULES per NSG, from rows sorted busiest first within each NSG."""
    shown: Counter[str] = Counter()
    busiest = []
    for r in rule_rows:
        if (r["packets"] or r["flows"]) and shown[r["nsg"]] < TOP_RULES:
            shown[r["nsg"]] += 1
            busiest.append(r)
    return busiest


def _pairs(changes: list[dict[str, Any]]) -> list[dict]:
    totals: dict[tuple, list[int]] = {}
    for c in changes:
        key = (c["change"], _decided(c["before"]), _decided(c["after"]))
        total = totals.setdefault(key, [0, 0, 0])
        total[0] += 1
        total[1] += c["packets"]
        total[2] += c["bytes"]
    return [{"change": change, "before": before, "after": after, "pair": f"{before} → {after}",
             "flows": flows, "packets": packets, "bytes": size}
            for (change, before, after), (flows, packets, size) in
            sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))]


def _decided(side: dict[str, Any]) -> str:
    """As `whatif` prints a side: the deciding rule, or the reason when no rule decided."""
    if side["rule"]:
        return f"{side['decision']} {side['nsg']}/{side['rule']}"
    return f"{side['decision']} ({side['reason']})"


def _tiles(tiles: list[tuple[str, str, int, str]]) -> str:
    cells = "".join(f'<div class="tile {name}"><div class="value" data-figure="{name}">{value:,}</div>'
                    f'<div class="label">{html.escape(label)}{f" <span>{share}</span>" if share else ""}</div></div>'
                    for name, label, value, share in tiles)
    return f'<section class="tiles">{cells}</section>'


def _span(traffic: Traffic, summary: dict[str, Any]) -> str:
    if traffic.first_ts is None or traffic.last_ts is None:
        return '<p class="span">The captures held no packets.</p>'
    return (f'<p class="span">Capture time {_clock(traffic.first_ts)} to {_clock(traffic.last_ts)} UTC '
            f'({_duration(summary["capture_seconds"])}).</p>')


def _chart_section(name: str, title: str, note: str, chart: Any) -> str:
    spec = json.dumps(chart.to_dict(), separators=(",", ":")).replace("</", "<\\/")
    return (f'<section><h2>{html.escape(title)}</h2><p class="note">{html.escape(note)}</p>'
            f'<div class="chart" id="chart-{name}"></div>'
            f'<script type="application/json" class="vega-spec" data-target="chart-{name}">{spec}</script></section>')


def _flow_tables(traffic: Traffic) -> str:
    denied = heapq.nsmallest(TOP, (f for f in traffic.flows if f.denied), key=lambda f: (-f.denied, -f.bytes, f.id))
    talkers = heapq.nsmallest(TOP, traffic.flows, key=lambda f: (-f.bytes, -f.packets, f.id))  # not a whole sort
    clock = _clock_for([f.first_seen for f in traffic.flows] + [f.last_seen for f in traffic.flows])
    denied_rows = [[f.flow, f"{f.denied:,}", f"{f.bytes:,}", clock(f.first_seen), clock(f.last_seen),
                    f.denied_by[0] or "-", f.denied_by[1] or "-"] for f in denied]
    talker_rows = [[f.flow, f"{f.packets:,}", f"{f.bytes:,}", clock(f.first_seen), _decision_cell(f), f.nsg or "-",
                    f.rule or "-"] for f in talkers]
    denied_table = _table(["flow", "denied packets", "bytes", "first seen", "last seen", "NSG", "rule"],
                          denied_rows, "denied-flows", numeric=(1, 2))
    talker_table = _table(["flow", "packets", "bytes", "first seen", "decision", "NSG", "rule"], talker_rows,
                          "top-talkers", numeric=(1, 2))
    return (f'<section><h2>Top denied flows</h2><p class="note">By denied packets; the NSG and rule that denied '
            f'the last of them. Times in UTC.</p>{denied_table}</section>'
            f'<section><h2>Top talkers</h2><p class="note">Flows by bytes, both directions; the decision of their '
            f'first packet and the NSG and rule that made it.</p>{talker_table}</section>')


def _decision_cell(flow: FlowTotals) -> str:
    """A flow re-decided later (idle, flushed, its rule changed) may see the other decision too."""
    if flow.allowed and flow.denied:
        return f"{flow.decision}, later {'Deny' if flow.decision == 'Allow' else 'Allow'} too"
    return flow.decision


def _rule_table(summary: dict[str, Any], rows: list[dict]) -> str:
    parts = ['<section><h2>Rules per NSG</h2><p class="note">New flows: evaluations of new connections (as in '
             'the summary). Packets: evaluated, or carried by the flow the rule admitted.</p><table class="rules">'
             '<thead><tr><th>NSG</th><th>rule</th><th>access</th><th class="num">new flows</th>'
             '<th class="num">packets</th></tr></thead><tbody>']
    nsgs = sorted({r["nsg"] for r in rows} | set(summary["rules_never_hit"]))
    for nsg in nsgs:
        for r in (r for r in rows if r["nsg"] == nsg):
            parts.append(f'<tr data-nsg="{html.escape(nsg)}" data-rule="{html.escape(r["rule"])}">'
                         f'<td>{html.escape(nsg)}</td><td>{html.escape(r["rule"])}</td>'
                         f'<td class="{r["access"].lower()}">{html.escape(r["access"])}</td>'
                         f'<td class="num" data-flows>{r["flows"]:,}</td>'
                         f'<td class="num" data-packets>{r["packets"]:,}</td></tr>')
        never = summary["rules_never_hit"].get(nsg, [])
        if never:
            names = ", ".join(html.escape(n) for n in never)
            parts.append(f'<tr class="never" data-nsg="{html.escape(nsg)}" data-never-hit="{len(never)}">'
                         f'<td>{html.escape(nsg)}</td><td colspan="4"><details><summary>{len(never)} rule'
                         f'{"s" if len(never) != 1 else ""} never hit</summary>{names}</details></td></tr>')
    parts.append("</tbody></table></section>")
    return "".join(parts)


def _counts_table(summary: dict[str, Any]) -> str:
    rows = [[f"flows {what.replace('_', ' ')}", f"{count:,}"] for what, count in summary["flows"].items()]
    rows += [[f"skipped: {reason}", f"{count:,}"] for reason, count in sorted(summary["skipped"].items())]
    table = _table(["what", "count"], rows, "counts", numeric=(1,))
    return f'<section><h2>Flow records and skipped packets</h2>{table}</section>'


def _pair_table(pairs: list[dict]) -> str:
    rows = [[p["change"], p["before"], p["after"], f"{p['flows']:,}", f"{p['packets']:,}", f"{p['bytes']:,}"]
            for p in pairs]
    return (f'<section><h2>Rule pairs</h2>'
            f'{_table(["change", "before", "after", "flows", "packets", "bytes"], rows, "pairs", numeric=(3, 4, 5))}'
            f'</section>')


def _change_table(changes: list[dict[str, Any]]) -> str:
    top = heapq.nsmallest(100, changes, key=lambda c: (-c["packets"], -c["bytes"], c["flow"]))
    clock = _clock_for([c["first_seen"] for c in changes])
    rows = [[c["flow"], c["change"], clock(c["first_seen"]), f"{c['packets']:,}", f"{c['bytes']:,}",
             _decided(c["before"]), _decided(c["after"])] for c in top]
    shown = f" (the {len(top)} with most packets of {len(changes):,})" if len(top) < len(changes) else ""
    table = _table(["flow", "change", "first seen", "packets", "bytes", "before", "after"], rows, "changes",
                   numeric=(3, 4))
    return f'<section><h2>Changed flows{shown}</h2>{table}</section>'


def _table(head: list[str], rows: list[list[str]], name: str, *, numeric: tuple[int, ...] = ()) -> str:
    if not rows:
        return '<p class="note">None.</p>'
    th = "".join(f'<th{" class=num" if i in numeric else ""}>{html.escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{html.escape(str(cell))}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{name}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _page(title: str, sources: Sequence[str], error: str | None, body: str) -> str:
    bundle = _vega_bundle().replace("</script", "<\\/script")
    inputs = "".join(f"<li>{html.escape(s)}</li>" for s in sources)
    banner = f'<p class="error">The replay stopped early: {html.escape(error)}</p>' if error else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script>{bundle}</script>
</head>
<body>
<header><h1>{html.escape(title)}</h1><ul class="sources">{inputs}</ul></header>
{banner}
{body}
<script>{DRAW}</script>
</body>
</html>
"""


DRAW = """
(function () {
  const specs = Array.from(document.querySelectorAll('script.vega-spec'));
  Promise.all(specs.map(function (s) {
    const target = document.getElementById(s.dataset.target);
    return vegaEmbed(target, JSON.parse(s.textContent), {actions: false, renderer: 'svg'}).catch(function (e) {
      target.textContent = 'This chart could not be drawn: ' + e;
      throw e;
    });
  })).then(function () { document.body.dataset.charts = 'drawn'; }, console.error);
})();
"""

STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; background: var(--bg); color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header h1 { margin: 0 0 4px; font-size: 22px; }
ul.sources { margin: 0 0 16px; padding: 0; list-style: none; color: var(--muted); font-size: 13px; }
ul.sources li { display: inline; margin-right: 14px; }
section { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px;
          padding: 16px 20px; margin: 0 0 18px; }
h2 { margin: 0 0 4px; font-size: 16px; }
p.note, p.span { margin: 0 0 10px; color: var(--muted); font-size: 13px; }
p.error { background: #fdecea; border: 1px solid #f5c2bd; color: #8a1c12; padding: 10px 14px; border-radius: 6px; }
section.tiles { display: flex; flex-wrap: wrap; gap: 12px; background: none; border: 0; padding: 0;
                margin-bottom: 8px; }
.tile { flex: 1 1 140px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px;
        border-top: 4px solid #7b8794; }
.tile .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile .label { color: var(--muted); }
.tile .label span { margin-left: 4px; }
.tile.allowed { border-top-color: #3a9d5d; } .tile.denied, .tile.newly-denied { border-top-color: #d64541; }
.tile.skipped { border-top-color: #a0a4a8; } .tile.newly-allowed { border-top-color: #e8a33d; }
.tile.rule-changed { border-top-color: #4a78b5; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { white-space: nowrap; text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td:first-child { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
table.rules td:first-child, table.counts td:first-child, table.pairs td:first-child {
  font-family: inherit; font-size: 13px; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.allow { color: #2b7a48; } td.deny { color: #b3261e; }
tr.never td { color: var(--muted); white-space: normal; }
details summary { cursor: pointer; }
.chart { overflow-x: auto; }
"""


def _write(path: str, page: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise DataplaneError(f"cannot write: {e.strerror}", file=path) from None


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else ""


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-4]


def _clock_for(instants: list[float]) -> Callable[[float], str]:
    """Times of day alone when every instant falls on one UTC day (the page names the day once)."""
    if instants and int(min(instants) // 86400) == int(max(instants) // 86400):
        return lambda seconds: _clock(seconds)[11:]
    return _clock


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.1f} s" if minutes else f"{rest:.2f} s"
