"""The HTML reports of `replay --report` and `whatif --report`, opened in a real headless browser:
drawn, silent on the console, self-contained, and agreeing with the summary JSON."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dataplane.cli import _print_summary, main
from dataplane.decode import Packet
from dataplane.pipeline import Dataplane, Verdict
from dataplane.policy import Evaluation
from dataplane.replay import Capture, Outputs, merged, replay
from dataplane.report import (EXTRA, TOP_RULES, FlowTotals, Traffic, render_whatif_report, replay_report_html,
                              whatif_report_html)
from dataplane.shards import FrameShards, Shards
from scapy.layers.inet import IP, TCP

from frames import ether
from dataplane.topology import load_scenario, scenario_from_document

DEMO = Path(__file__).parent.parent / "pcaps" / "demo"
CAPTURES = sorted(str(p) for p in DEMO.glob("*.pcap"))
CHROMIUM = Path("/usr/bin/chromium")
needs_browser = pytest.mark.skipif(not CHROMIUM.exists(),
                                   reason="Debian's chromium is absent (apt-get install chromium)")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr",
                 "--v=0", "--virtual-time-budget=20000", "--window-size=1280,2000"]


def _side(decision: str, nsg: str | None, rule: str | None, reason: str = "rules") -> dict:
    return {"decision": decision, "nsg": nsg, "rule": rule, "reason": reason}


CHANGES = [
    {"flow": "tcp 203.0.113.50:53000 > 20.50.1.10:22", "first_seen": 1700000000.0, "last_seen": 1700000010.0,
     "packets": 8, "bytes": 467, "change": "newly-denied",
     "before": _side("Allow", "nsg-jump", "AllowSshFromOffice"), "after": _side("Deny", "nsg-jump", "DenyAllInBound")},
    {"flow": "tcp 203.0.113.50:52000 > 20.50.1.10:22", "first_seen": 1700000001.5, "last_seen": 1700000001.57,
     "packets": 8, "bytes": 472, "change": "newly-denied",
     "before": _side("Allow", "nsg-jump", "AllowSshFromOffice"), "after": _side("Deny", "nsg-jump", "DenyAllInBound")},
    {"flow": "tcp 192.0.2.66:61000 > 20.50.1.10:443", "first_seen": 1700000065.0, "last_seen": 1700000065.0,
     "packets": 1, "bytes": 54, "change": "newly-allowed",
     "before": _side("Deny", "nsg-jump", "DenyAllInBound"), "after": _side("Allow", "nsg-jump", "AllowHttps")},
    {"flow": "tcp 203.0.113.7:50000 > 20.50.1.100:80", "first_seen": 1700000130.0, "last_seen": 1700000131.0,
     "packets": 8, "bytes": 469, "change": "rule-changed",
     "before": _side("Allow", "nsg-web-nic", "AllowHttpFromInternet"),
     "after": _side("Allow", "nsg-web-nic", "AllowWebFromFrontDoor")},
]


class Page(HTMLParser):
    """What a reviewer sees in the rendered DOM: tiles, rule rows, charts and the marks drawn in them."""

    def __init__(self, dom: str):
        super().__init__()
        self.figures: dict[str, int] = {}
        self.rules: dict[tuple[str, str], dict[str, int]] = {}
        self.never_hit: dict[str, int] = {}
        self.marks: dict[str, int] = {}
        self.specs: dict[str, dict] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.body: dict[str, str | None] = {}
        self._chart: str | None = None
        self._chart_depth = 0
        self._text: list[str] | None = None
        self._into: tuple | None = None
        self._row: tuple[str, str] | None = None
        self._table: str | None = None
        self._cells: list[str] | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        if self._chart is not None and tag == "div":
            self._chart_depth += 1
        if tag == "div" and "chart" in classes:
            self._chart, self._chart_depth = a["id"] or "", 1
            self.marks[self._chart] = 0
        if tag == "path" and self._chart is not None:
            self.marks[self._chart] += 1
        if tag == "script" and "vega-spec" in classes:
            self._text, self._into = [], ("spec", a["data-target"])
        if tag == "div" and "data-figure" in a:
            self._text, self._into = [], ("figure", a["data-figure"])
        if tag == "tr" and "data-never-hit" in a:
            self.never_hit[a["data-nsg"] or ""] = int(a["data-never-hit"] or 0)
        elif tag == "tr" and "data-rule" in a:
            self._row = (a["data-nsg"] or "", a["data-rule"] or "")
            self.rules[self._row] = {}
        if tag == "td" and self._row is not None and ("data-flows" in a or "data-packets" in a):
            self._text, self._into = [], ("rule", "flows" if "data-flows" in a else "packets")
        if tag == "table" and classes:
            self._table = classes[0]
            self.tables[self._table] = []
        if tag == "tr" and self._table is not None:
            self._cells = []
        if tag == "td" and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._chart is not None:
            self._chart_depth -= 1
            if not self._chart_depth:
                self._chart = None
        if self._text is not None and tag in ("script", "div", "td"):
            text = "".join(self._text)
            kind, name = self._into or ("", "")
            if kind == "spec":
                self.specs[name] = json.loads(text)
            elif kind == "figure":
                self.figures[name] = int(text.replace(",", ""))
            elif kind == "rule" and self._row is not None:
                self.rules[self._row][name] = int(text.replace(",", ""))
            self._text = None
        if tag == "tr":
            self._row = None
            if self._table is not None and self._cells:
                self.tables[self._table].append(self._cells)
            self._cells = None
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)
        if self._cells:
            self._cells[-1] += data


def _browse(page: Path, profile: Path) -> tuple[Page, list[str]]:
    """The DOM after the page's scripts ran, and every console message the page logged."""
    run = subprocess.run([str(CHROMIUM), *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    return Page(run.stdout), [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    assert main(["replay", str(DEMO / "scenario.yaml"), *CAPTURES, "--summary", str(out / "summary.json"),
                 "--report", str(out / "report.html")]) == 0
    return out / "report.html", json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def demo_in_browser(demo, tmp_path_factory) -> tuple[Page, list[str], dict]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is absent (apt-get install chromium)")
    page, console = _browse(demo[0], tmp_path_factory.mktemp("profile"))
    return page, console, demo[1]


@pytest.fixture(scope="module")
def whatif_in_browser(tmp_path_factory) -> tuple[Page, list[str]]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is absent (apt-get install chromium)")
    path = tmp_path_factory.mktemp("whatif") / "whatif.html"
    render_whatif_report(CHANGES, str(path), sources=["change nsg-jump-locked.json"])
    return _browse(path, tmp_path_factory.mktemp("profile"))


@needs_browser
def test_replay_report_draws_every_chart_in_the_browser(demo_in_browser):
    page, _, _ = demo_in_browser
    assert page.body.get("data-charts") == "drawn"
    assert set(page.marks) == {"chart-traffic", "chart-per-nsg", "chart-rules"}
    assert all(count > 0 for count in page.marks.values()), page.marks


@needs_browser
def test_replay_report_logs_nothing_to_the_browser_console(demo_in_browser):
    _, console, _ = demo_in_browser
    assert console == []


@needs_browser
def test_replay_report_tiles_show_the_summary_figures(demo_in_browser):
    page, _, summary = demo_in_browser
    assert page.figures == {"packets": summary["packets"], "allowed": summary["allowed"],
                            "denied": summary["denied"], "skipped": sum(summary["skipped"].values()),
                            "flows-created": summary["flows"]["created"],
                            "rules-never-hit": sum(map(len, summary["rules_never_hit"].values()))}


@needs_browser
def test_replay_report_rule_table_shows_the_summary_hits_per_rule(demo_in_browser):
    page, _, summary = demo_in_browser
    shown = {(nsg, rule): row["flows"] for (nsg, rule), row in page.rules.items()}
    assert shown == {(nsg, rule): hits for nsg, rules in summary["rule_hits"].items() for rule, hits in rules.items()}
    assert all(row["packets"] >= row["flows"] for row in page.rules.values())


@needs_browser
def test_replay_report_collapses_never_hit_rules_into_one_line_per_nsg(demo_in_browser):
    page, _, summary = demo_in_browser
    assert page.never_hit == {nsg: len(rules) for nsg, rules in summary["rules_never_hit"].items() if rules}


@needs_browser
def test_replay_report_per_minute_packets_add_up_to_the_summary(demo_in_browser):
    page, _, summary = demo_in_browser
    rows = page.specs["chart-traffic"]["data"]["values"]
    totals = {outcome: sum(r["count"] for r in rows if r["unit"] == "packets" and r["outcome"] == outcome)
              for outcome in ("allowed", "denied", "skipped")}
    assert totals == {"allowed": summary["allowed"], "denied": summary["denied"],
                      "skipped": sum(summary["skipped"].values())}


@needs_browser
def test_replay_report_lists_the_top_denied_flow_with_its_rule(demo_in_browser):
    page, _, _ = demo_in_browser
    flow, denied, _, _, _, nsg, rule = page.tables["denied-flows"][0]
    assert (flow, denied, nsg, rule) == ("icmp 10.10.3.4 > 10.10.1.4", "3", "nsg-web-nic", "DenyVnetInbound")


def test_report_page_loads_nothing_from_outside(demo):
    text = demo[0].read_text()
    assert "<script src" not in text and "<link" not in text and "@import" not in text
    assert "url(http" not in text


def test_report_page_size_stays_near_the_inlined_vega_bundle(demo):
    assert demo[0].stat().st_size < 1_500_000


def test_asking_for_a_report_leaves_the_summary_unchanged(tmp_path):
    scenario = load_scenario(str(DEMO / "scenario.yaml"))
    plain = replay(scenario, CAPTURES).to_json()
    reported = replay(scenario, CAPTURES, Outputs(report=str(tmp_path / "r.html"))).to_json()
    assert {k: v for k, v in reported.items() if k != "packets_per_second"} == \
        {k: v for k, v in plain.items() if k != "packets_per_second"}


def _demo_traffic() -> Traffic:
    traffic = Traffic()
    dataplane = Dataplane(load_scenario(str(DEMO / "scenario.yaml")))
    for frame in merged([Capture(c) for c in CAPTURES]):
        traffic.verdict(dataplane.process(frame.data, frame.ts, frame.linktype), frame.wirelen)
    return traffic


def test_replies_before_and_after_nat_count_for_one_flow():
    http = [f for f in _demo_traffic().flows if f.flow == "tcp 203.0.113.7:50000 > 20.50.1.100:80"]
    assert [(f.packets, f.allowed, f.nsg, f.rule) for f in http] == [(8, 8, "nsg-web-nic", "AllowHttpFromInternet")]


def test_flow_packets_count_for_every_rule_that_admitted_the_flow():
    traffic = _demo_traffic()
    assert traffic.rule_packets[("nsg-web-subnet", "AllowHttpFromInternet")] == 24
    assert traffic.rule_packets[("nsg-web-nic", "AllowHttpFromInternet")] == 24 + 8


HTTPS_SCENARIO = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.1.0.0/16"], "subnets": [{"name": "web",
                                                                                         "prefix": "10.1.0.0/24"}]}],
    "network_interfaces": [{"name": "web", "subnet": "vnet/web", "private_ips": ["10.1.0.4"], "nsg": "nsg-web"}],
    "network_security_groups": [{"name": "nsg-web", "security_rules": [
        {"name": "AllowHttps", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
         "sourceAddressPrefix": "Internet", "sourcePortRange": "*", "destinationAddressPrefix": "*",
         "destinationPortRange": "443"}]}],
}


def test_a_flow_counts_once_in_each_minute_scope_and_outcome_it_has_packets_in():
    """Two connections in minute 0; the first one's later packets in minutes 1 and 3, and, as the capture's
    time goes back, in minute 0 again and in minute 2 for the first time."""
    dataplane, traffic = Dataplane(scenario_from_document(HTTPS_SCENARIO)), Traffic()
    client, server = "203.0.113.7", "10.1.0.4"
    ack = IP(src=client, dst=server) / TCP(sport=50000, dport=443, flags="A")
    packets = [(0.0, IP(src=client, dst=server) / TCP(sport=50000, dport=443, flags="S")),
               (1.0, IP(src=server, dst=client) / TCP(sport=443, dport=50000, flags="SA")),
               (2.0, ack), (5.0, IP(src=client, dst=server) / TCP(sport=50001, dport=443, flags="S")),
               (61.0, ack), (30.0, ack), (190.0, ack), (130.0, ack), (135.0, ack)]
    for ts, packet in packets:
        frame = bytes(ether() / packet)
        traffic.verdict(dataplane.process(frame, ts), len(frame))
    counts = traffic.counts
    for scope in ("all NSGs", "nsg-web"):
        assert [(counts[(minute, scope, "packets", "allowed")], counts[(minute, scope, "flows", "allowed")])
                for minute in range(4)] == [(5, 2), (1, 1), (2, 1), (1, 1)]


def _totals(traffic: Traffic) -> tuple:
    """What a collector counted: not what it kept to place further packets (`watched`, `minute`, `counted`)."""
    kept = ("watched", "minute", "counted")
    flows = [tuple(getattr(flow, name) for name in FlowTotals.__slots__ if name not in kept) for flow in traffic.flows]
    return (traffic.first_ts, traffic.last_ts, dict(traffic.counts), dict(traffic.rule_packets), traffic.rule_access,
            flows)


def _merged_and_whole(captures: list[str]) -> tuple[list[Traffic], Traffic]:
    """Each packet counted by one collector and by its flow's shard's, given its place in the capture."""
    scenario = load_scenario(str(DEMO / "scenario.yaml"))
    dataplane, shard_of = Dataplane(scenario), FrameShards(Shards.of(scenario, 3))
    whole, shards = Traffic(), [Traffic() for _ in range(3)]
    for at, frame in enumerate(merged([Capture(c) for c in captures])):
        verdict = dataplane.process(frame.data, frame.ts, frame.linktype)
        whole.verdict(verdict, frame.wirelen)
        shards[shard_of(frame.data, frame.linktype)].verdict(verdict, frame.wirelen, at)
    return [pickle.loads(pickle.dumps(shard)) for shard in shards], whole


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: Path(c).stem)
def test_shards_collectors_merged_are_one_collector_fed_every_packet(capture):
    shards, whole = _merged_and_whole([capture])
    assert _totals(Traffic.merged(shards)) == _totals(whole)


def test_collectors_of_shards_of_every_demo_capture_merged_are_one_collector_fed_them_in_order():
    shards, whole = _merged_and_whole(CAPTURES)
    assert sum(bool(shard.flows) for shard in shards) == 3
    assert _totals(Traffic.merged(shards)) == _totals(whole)


def test_a_merged_rule_access_is_the_one_the_rules_last_packet_saw():
    """An update may turn a rule of the same name from Allow to Deny: the later packet's access wins,
    whichever shard it was in."""
    def verdict(ts: float, src: int, access: str) -> Verdict:
        packet = Packet(4, 6, src, 0x0A000004, 50000, 80, 0x02, 0, 0, 0, 60, 0, 0, False, False, (), None)
        return Verdict(ts, access, "rules", "Inbound", "web", "nsg", "Web", "new", packet,
                       evaluations=(Evaluation("nsg", "nic", "web", "Inbound", "Web", access),))
    before, after = Traffic(), Traffic()
    before.verdict(verdict(1.0, 0x01010101, "Allow"), 60, at=0)
    after.verdict(verdict(2.0, 0x02020202, "Deny"), 60, at=1)
    assert Traffic.merged([after, before]).rule_access == {("nsg", "Web"): "Deny"}
    assert Traffic.merged([before, after]).rule_access == {("nsg", "Web"): "Deny"}


def test_report_without_the_plotting_extra_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "altair", None)
    status = main(["replay", str(DEMO / "scenario.yaml"), *CAPTURES, "--report", str(tmp_path / "r.html")])
    assert status == 2
    assert EXTRA in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@needs_browser
def test_whatif_report_draws_its_charts_in_the_browser(whatif_in_browser):
    page, _ = whatif_in_browser
    assert page.body.get("data-charts") == "drawn"
    assert set(page.marks) == {"chart-changes", "chart-pairs"}
    assert all(count > 0 for count in page.marks.values()), page.marks


@needs_browser
def test_whatif_report_logs_nothing_to_the_browser_console(whatif_in_browser):
    _, console = whatif_in_browser
    assert console == []


@needs_browser
def test_whatif_report_tiles_count_changes_by_kind(whatif_in_browser):
    page, _ = whatif_in_browser
    assert page.figures == {"changed-flows": 4, "newly-denied": 2, "newly-allowed": 1, "rule-changed": 1,
                            "packets": 25, "bytes": 1462}


@needs_browser
def test_whatif_report_sums_flows_per_rule_pair(whatif_in_browser):
    page, _ = whatif_in_browser
    assert [row[:4] for row in page.tables["pairs"]] == [
        ["newly-denied", "Allow nsg-jump/AllowSshFromOffice", "Deny nsg-jump/DenyAllInBound", "2"],
        ["newly-allowed", "Deny nsg-jump/DenyAllInBound", "Allow nsg-jump/AllowHttps", "1"],
        ["rule-changed", "Allow nsg-web-nic/AllowHttpFromInternet", "Allow nsg-web-nic/AllowWebFromFrontDoor", "1"]]


@needs_browser
def test_whatif_report_counts_changed_flows_per_minute_of_their_first_packet(whatif_in_browser):
    page, _ = whatif_in_browser
    rows = page.specs["chart-changes"]["data"]["values"]
    assert [(r["minute"], r["outcome"], r["count"]) for r in rows] == [
        ("2023-11-14T22:13:00Z", "newly-denied", 2), ("2023-11-14T22:14:00Z", "newly-allowed", 1),
        ("2023-11-14T22:15:00Z", "rule-changed", 1)]


def test_whatif_report_without_changes_says_so():
    page = whatif_report_html([])
    assert "No flow changes" in page
    assert 'class="vega-spec"' not in page


def test_rule_chart_shows_the_busiest_rules_of_each_nsg():
    summary = {"packets": 0, "allowed": 0, "denied": 0, "skipped": {}, "flows": {}, "capture_seconds": 0.0,
               "rule_hits": {"nsg-big": {f"Rule{i:02}": i + 1 for i in range(40)}}, "rules_never_hit": {},
               "error": None}
    page = Page(replay_report_html(summary, Traffic()))
    shown = [r["rule"] for r in page.specs["chart-rules"]["data"]["values"]]
    assert shown == [f"Rule{i:02}" for i in range(39, 39 - TOP_RULES, -1)]
    assert len(page.rules) == 40


def test_terminal_summary_collapses_never_hit_rules_into_one_line_per_nsg(capsys):
    summary = replay(load_scenario(str(DEMO / "scenario.yaml")), [str(DEMO / "scan.pcap")])
    _print_summary(summary)
    lines = [line for line in capsys.readouterr().out.splitlines() if "never hit" in line]
    assert sorted(line.split()[1] for line in lines) == sorted(n for n, r in summary.rules_never_hit.items() if r)
    assert all("rules (listed in --summary, --report)" in line for line in lines
               if len(summary.rules_never_hit[line.split()[1]]) > 1)


def test_time_axis_ticks_fall_on_whole_minutes(demo):
    spec = Page(demo[0].read_text()).specs["chart-traffic"]
    ticks = spec["spec"]["encoding"]["x"]["axis"]["values"]
    assert [(t["hours"], t["minutes"]) for t in ticks] == [(22, m) for m in range(13, 19)]
