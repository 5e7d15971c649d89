"""`dataplane whatif`: a proposed change replayed on real traffic (captures or flow logs), every flow
whose fate changes reported, and an exit status for CI gates."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.utils import wrpcap, wrpcapng

from dataplane import whatif as whatif_module
from dataplane.cli import main
from dataplane.decode import Packet
from dataplane.pipeline import Dataplane
from dataplane.replay import Capture, PcapWriter
from dataplane.topology import scenario_from_document
from dataplane.whatif import NEWLY_ALLOWED, NEWLY_DENIED, RULE_CHANGED, scenarios, whatif

from datafiles import SHARED_DATA, SHARED_PCAPS, need, scenario_capture, shared_captures
from frames import ether
from test_pipeline_fast_path import frame

T0 = 1_700_000_000.0
DEMO = Path(__file__).resolve().parents[1] / "pcaps" / "demo"
WEB, DB = "10.0.1.4", "10.0.2.4"
OFFICE = "198.51.100.9"


def rule(name, priority, protocol, source, port, access="Allow", direction="Inbound"):
    return {"name": name, "priority": priority, "direction": direction, "access": access, "protocol": protocol,
            "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": "*",
            "destinationPortRange": port}


WEB_RULES_BEFORE = [rule("AllowHttp", 100, "Tcp", "Internet", "80"),
                    rule("AllowSsh", 110, "Tcp", "198.51.100.0/24", "22"),
                    rule("AllowHttps", 120, "Tcp", "*", "443")]
WEB_RULES_AFTER = [rule("AllowSsh", 110, "Tcp", "198.51.100.0/24", "22"),
                   rule("AllowHttpsOffice", 115, "Tcp", "198.51.100.0/24", "443"),
                   rule("AllowHttps", 120, "Tcp", "*", "443"),
                   rule("AllowDns", 130, "Udp", "Internet", "53")]

SCENARIO = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.0.0.0/16"],
                          "subnets": [{"name": "web", "prefix": "10.0.1.0/24"},
                                      {"name": "db", "prefix": "10.0.2.0/24"}]}],
    "network_interfaces": [{"name": "web-nic", "subnet": "vnet/web", "private_ips": [WEB], "nsg": "nsg-web"},
                           {"name": "db-nic", "subnet": "vnet/db", "private_ips": [DB], "nsg": "nsg-db"}],
    "network_security_groups": [
        {"name": "nsg-web", "security_rules": WEB_RULES_BEFORE},
        {"name": "nsg-db", "security_rules": [rule("AllowSqlFromWeb", 100, "Tcp", "10.0.1.0/24", "1433")]}],
}

NEWLY_DENIED_FLOWS = {"tcp 203.0.113.7:50001 > 10.0.1.4:80", "tcp 203.0.113.8:50002 > 10.0.1.4:80"}
NEWLY_ALLOWED_FLOWS = {"udp 203.0.113.9:5353 > 10.0.1.4:53"}
RULE_CHANGED_FLOWS = {"tcp 198.51.100.9:50003 > 10.0.1.4:443"}


def tcp_session(t, client, sport, server, dport, exchanges=3, replies=True):
    """A handshake, `exchanges` requests (with replies) 20 s apart, and a FIN exchange."""
    def out(dt, flags, payload=b""):
        return ether() / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags=flags) / payload, t + dt

    def back(dt, flags, payload=b""):
        return ether() / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags=flags) / payload, t + dt

    packets = [out(0, "S")]
    if not replies:
        return packets + [out(1, "S"), out(3, "S")]
    packets += [back(0.01, "SA"), out(0.02, "A")]
    for i in range(exchanges):
        packets += [out(20 * i + 1, "PA", b"q" * 40), back(20 * i + 1.01, "PA", b"r" * 400)]
    end = 20 * exchanges + 1
    return packets + [out(end, "FA"), back(end + 0.01, "FA"), out(end + 0.02, "A")]


def traffic() -> list:
    """What the network carried under the current rules: denied flows got no reply."""
    packets = []
    packets += tcp_session(0, "203.0.113.7", 50001, WEB, 80)
    packets += tcp_session(5, "203.0.113.8", 50002, WEB, 80, exchanges=5)
    packets += tcp_session(10, OFFICE, 50003, WEB, 443)
    packets += tcp_session(15, "203.0.113.7", 50004, WEB, 443)
    packets += tcp_session(20, OFFICE, 50005, WEB, 22)
    packets += tcp_session(25, WEB, 40000, DB, 1433, exchanges=6)
    packets += tcp_session(30, "203.0.113.66", 50006, WEB, 3389, replies=False)
    packets += [(ether() / IP(src="203.0.113.9", dst=WEB) / UDP(sport=5353, dport=53) / b"dns?", 40 + i)
                for i in range(2)]
    packets += [(ether() / IP(src="203.0.113.7", dst=WEB) / ICMP(type=8, id=7, seq=i), 50 + i) for i in range(3)]
    packets += [(ether() / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1, dport=2, flags="S"), 60)]
    stamped = []
    for packet, dt in packets:
        packet.time = T0 + dt
        stamped.append(packet)
    return sorted(stamped, key=lambda p: p.time)


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> dict[str, Path]:
    """A scenario, a change to its web NSG, and a capture of the traffic before the change."""
    tmp_path = tmp_path_factory.mktemp("story")
    paths = {"scenario": tmp_path / "scenario.yaml", "change": tmp_path / "nsg-web.json",
             "capture": tmp_path / "traffic.pcap"}
    paths["scenario"].write_text(yaml.safe_dump(SCENARIO))
    paths["change"].write_text(json.dumps({"name": "nsg-web", "properties": {"securityRules": [
        {"name": r["name"], "properties": {k: v for k, v in r.items() if k != "name"}} for r in WEB_RULES_AFTER]}}))
    wrpcap(str(paths["capture"]), traffic())
    return paths


def sets(report) -> tuple[set[str], set[str], set[str]]:
    return tuple({c.flow for c in report.of(kind)} for kind in (NEWLY_DENIED, NEWLY_ALLOWED, RULE_CHANGED))


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["whatif", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_capture_gives_exactly_the_newly_denied_newly_allowed_and_rule_changed_flows(story):
    report = whatif(*scenarios(story["scenario"], [story["change"]]), [str(story["capture"])])
    assert sets(report) == (NEWLY_DENIED_FLOWS, NEWLY_ALLOWED_FLOWS, RULE_CHANGED_FLOWS)


def test_a_changed_flow_carries_its_whole_traffic_both_ways(story):
    report = whatif(*scenarios(story["scenario"], [story["change"]]), [str(story["capture"])])
    flow = next(c for c in report.changes if c.flow == "tcp 203.0.113.8:50002 > 10.0.1.4:80")
    session = tcp_session(5, "203.0.113.8", 50002, WEB, 80, exchanges=5)
    assert (flow.packets, flow.bytes) == (len(session), sum(len(p) for p, _ in session))
    assert (flow.first_seen, flow.last_seen) == pytest.approx((T0 + 5, T0 + 5 + session[-1][1] - 5))


def test_a_changed_flow_names_the_deciding_rules_before_and_after(story):
    report = whatif(*scenarios(story["scenario"], [story["change"]]), [str(story["capture"])])
    flow = next(c for c in report.changes if c.flow in RULE_CHANGED_FLOWS)
    assert (flow.before.nsg, flow.before.rule, flow.after.nsg, flow.after.rule) == \
        ("nsg-web", "AllowHttps", "nsg-web", "AllowHttpsOffice")


def test_flows_matching_no_nic_are_counted_apart(story):
    report = whatif(*scenarios(story["scenario"], [story["change"]]), [str(story["capture"])])
    assert (report.flows, report.unmatched) == (10, 1)


def test_groups_by_rule_pair_put_the_most_traffic_first(story):
    report = whatif(*scenarios(story["scenario"], [story["change"]]), [str(story["capture"])])
    first = report.groups()[0]
    assert (first.change, first.before, first.after, first.flows) == \
        (NEWLY_DENIED, "Allow nsg-web/AllowHttp", "Deny nsg-web/DenyAllInBound", 2)


def test_a_scenario_file_as_change_replaces_the_whole_topology(story, tmp_path):
    after = dict(SCENARIO, network_security_groups=[
        {"name": "nsg-web", "security_rules": WEB_RULES_AFTER}, SCENARIO["network_security_groups"][1]])
    (tmp_path / "after.yaml").write_text(yaml.safe_dump(after))
    report = whatif(*scenarios(story["scenario"], [tmp_path / "after.yaml"]), [str(story["capture"])])
    assert sets(report) == (NEWLY_DENIED_FLOWS, NEWLY_ALLOWED_FLOWS, RULE_CHANGED_FLOWS)


def test_json_has_one_line_per_changed_flow_in_the_contracts_shape(story, tmp_path, capsys):
    out = tmp_path / "changes.jsonl"
    run(capsys, story["scenario"], "--change", story["change"], story["capture"], "--json", out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4
    denied = next(line for line in lines if line["flow"] == "tcp 203.0.113.7:50001 > 10.0.1.4:80")
    assert list(denied) == ["flow", "first_seen", "last_seen", "packets", "bytes", "change", "before", "after"]
    assert denied["change"] == "newly-denied"
    assert denied["before"] == {"decision": "Allow", "nsg": "nsg-web", "rule": "AllowHttp", "reason": "rules"}
    assert denied["after"] == {"decision": "Deny", "nsg": "nsg-web", "rule": "DenyAllInBound", "reason": "rules"}


@pytest.mark.skipif(whatif_module.Tally is None, reason="the C extension is not built")
@pytest.mark.parametrize("kind", ["pcap", "pcapng", "demo"])
def test_the_c_walks_of_one_capture_give_the_report_of_the_python_reader(story, tmp_path, monkeypatch, kind):
    """One mapped capture is walked in C through both dataplanes, counting as it goes; the Python reader of
    every frame is the reference (the demo: IPv6, ICMP and a scan, against a locked-down jump host)."""
    if kind == "demo":
        before, after = scenarios(str(DEMO / "scenario.yaml"), [str(DEMO / "nsg-jump-locked.json")])
        captures = [str(DEMO / name) for name in ("web.pcap", "icmp-ipv6.pcap", "scan.pcap", "rule-removal.pcap")]
    else:
        before, after = scenarios(str(story["scenario"]), [str(story["change"])])
        captures = [str(story["capture"])]
        if kind == "pcapng":
            captures = [str(tmp_path / "traffic.pcapng")]
            wrpcapng(captures[0], traffic())
    for capture in captures:
        walked = whatif(before, after, [capture])
        monkeypatch.setattr(whatif_module, "Tally", None)
        read = whatif(before, after, [capture])
        monkeypatch.undo()
        assert walked == read
        assert kind == "demo" or walked.changes


@pytest.mark.skipif(whatif_module.Tally is None, reason="the C extension is not built")
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["203.0.113.7", "203.0.113.8", OFFICE]), st.integers(50000, 50003),
                          st.sampled_from([80, 443, 22]), st.floats(0, 0.2)), min_size=1, max_size=12))
def test_the_c_walk_decides_and_compares_dense_new_flows_as_the_python_reader_does(story, tmp_path_factory, sessions):
    """Flows that begin within a second of each other: the C walk decides them in both dataplanes and settles
    the unchanged ones itself (`FastPath.pass_pair`); the changed ones (newly denied, rule changed) are
    Python's to note."""
    before, after = scenarios(str(story["scenario"]), [str(story["change"])])
    packets, t = [], 0.0
    for client, sport, port, gap in sessions:
        t += gap
        packets += tcp_session(t, client, sport, WEB, port, exchanges=1)
    for packet, dt in packets:
        packet.time = T0 + dt
    capture = tmp_path_factory.mktemp("dense") / "dense.pcap"
    wrpcap(str(capture), sorted((p for p, _ in packets), key=lambda p: p.time))
    walked = whatif(before, after, [str(capture)])
    with mock.patch.object(whatif_module, "Tally", None):
        assert whatif(before, after, [str(capture)]) == walked


SHARED_SCENARIO = Path(__file__).resolve().parent / "fixtures" / "shared-captures" / "scenario.yaml"
LAB_CHANGE = {"name": "nsg-lab", "properties": {"securityRules": [
    {"name": "AllowEchoIn", "properties": {"priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                                           "sourceAddressPrefix": "*", "sourcePortRange": "*",
                                           "destinationAddressPrefix": "*", "destinationPortRange": "7000"}},
    {"name": "DenyUdpOut", "properties": {"priority": 100, "direction": "Outbound", "access": "Deny", "protocol": "Udp",
                                          "sourceAddressPrefix": "*", "sourcePortRange": "*",
                                          "destinationAddressPrefix": "*", "destinationPortRange": "*"}}]}}


@pytest.mark.skipif(whatif_module.Tally is None, reason="the C extension is not built")
@pytest.mark.parametrize("name", shared_captures())
def test_the_c_walks_of_a_shared_capture_give_the_report_of_the_python_reader(name, tmp_path, monkeypatch):
    """Real captures: VLANs, IPv6, fragments, ICMP, a flow without its SYN, pcapng, gzip (read in Python)."""
    change = tmp_path / "nsg-lab.json"
    change.write_text(json.dumps(LAB_CHANGE))
    before, after = scenarios(str(SHARED_SCENARIO), [str(change)])
    capture = str(scenario_capture(SHARED_PCAPS / name, tmp_path))
    walked = whatif(before, after, [capture])
    monkeypatch.setattr(whatif_module, "Tally", None)
    assert whatif(before, after, [capture]) == walked


ENDS = [(0x0A000104, 80), (0x0A000104, 443), (0xCB007107, 50000), (0xCB007107, 50001), (0x0A000204, 53)]


def _key(proto: int, a: tuple[int, int], b: tuple[int, int]) -> tuple:
    return (proto, 4, *a, *b) if a <= b else (proto, 4, *b, *a)


OPEN = {"virtual_networks": [{"name": "vnet", "address_space": ["10.0.0.0/16"],
                               "subnets": [{"name": "all", "prefix": "10.0.0.0/16", "nsg": "open"}]}],
        "network_interfaces": [{"name": "web", "subnet": "vnet/all", "private_ips": [WEB]},
                               {"name": "db", "subnet": "vnet/all", "private_ips": [DB]}],
        "network_security_groups": [{"name": "open", "security_rules": [
            rule("AllowIn", 100, "*", "*", "*"), rule("AllowOut", 100, "*", "*", "*", direction="Outbound")]}]}


@pytest.mark.skipif(whatif_module.Tally is None, reason="the C extension is not built")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([6, 17]), st.sampled_from(ENDS), st.sampled_from(ENDS),
                          st.integers(0, 40), st.floats(0, 0.5)), min_size=1, max_size=40), st.data())
def test_the_tally_counts_each_flow_as_the_python_count_does(tmp_path_factory, packets, data):
    """Changed flows named by several captured keys (both sides of a translation) and keys that name a flow
    not counted, their packets taken in C (known flows and new ones the C path decides) or left to Python:
    the tally's counts and last times, flushed when each walk ends, with `_count`'s of the others, are
    `_count`'s of all."""
    keys = sorted({_key(proto, a, b) for proto, a, b, *_ in packets})
    changed = {key: ["flow", None, 0.0, 0.0, 0, 0] for key in data.draw(st.sets(st.sampled_from(keys)))}
    aliases = data.draw(st.dictionaries(st.sampled_from(keys), st.sampled_from(keys)))
    path = str(tmp_path_factory.mktemp("tally") / "t.pcap")
    writer = PcapWriter(path, 1)
    ts = T0
    for proto, (src, sport), (dst, dport), payload, gap in packets:
        ts += gap
        raw = frame(Packet(4, proto, src, dst, sport, dport, 0x10, -1, -1, 0, 0, 0, 0, False, False, (), None),
                    payload)
        writer.write(ts, raw, len(raw))
    writer.close()
    tally = whatif_module.Tally()
    expected = {key: list(flow) for key, flow in changed.items()}
    for key in keys:
        tally.watch(key, changed.get(aliases.get(key, key)))
    one, two = Dataplane(scenario_from_document(OPEN)), Dataplane(scenario_from_document(OPEN))
    walk = one.walk_with(two)
    capture = Capture(path)
    frames = capture.frames()
    taken = 0
    while taken < len(packets):  # as whatif_captures: Python decides and counts each record the C walk leaves
        n, _, *part = capture.walk(walk, float("inf"), len(packets) - taken, None, tally, lambda v0, v1: None,
                                   (set(), {}, {}, {}))
        taken += n
        if taken < len(packets):
            ts, linktype, raw, _ = next(frames)
            if not part or part[0] is None:  # else the first dataplane took it in C
                one.process(raw, ts, linktype)
            two.process(raw, ts, linktype)
            whatif_module._count([(ts, linktype, raw, len(raw))], changed, aliases)
            taken += 1
    capture.close()
    capture = Capture(path)
    whatif_module._count(list(capture.frames()), expected, aliases)
    capture.close()
    assert changed == expected


def test_the_command_line_offers_the_kinds_of_change_whatif_fails_on() -> None:
    from dataplane import cli

    assert cli.FAIL_ON == list(whatif_module.FAIL_ON) and cli.FAIL_ON[0] == NEWLY_DENIED


def test_newly_denied_flows_exit_1_by_default(story, capsys):
    status, out, _ = run(capsys, story["scenario"], "--change", story["change"], story["capture"])
    assert status == 1
    assert "2 newly-denied, 1 newly-allowed, 1 rule-changed" in out


@pytest.mark.parametrize("fail_on, status", [("none", 0), ("newly-allowed", 1), ("any", 1)])
def test_fail_on_chooses_which_changes_fail(story, capsys, fail_on, status):
    assert run(capsys, story["scenario"], "--change", story["change"], story["capture"],
               "--fail-on", fail_on)[0] == status


def test_a_change_that_changes_nothing_exits_0(story, capsys, tmp_path):
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"name": "nsg-web", "securityRules": WEB_RULES_BEFORE}))
    status, out, _ = run(capsys, story["scenario"], "--change", same, story["capture"], "--fail-on", "any")
    assert status == 0
    assert "0 newly-denied, 0 newly-allowed, 0 rule-changed" in out


def test_a_change_naming_an_nsg_the_scenario_lacks_exits_2(story, capsys, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"name": "nsg-other", "securityRules": []}))
    status, _, err = run(capsys, story["scenario"], "--change", other, story["capture"])
    assert status == 2
    assert "nsg-other" in err and str(other) in err


def test_a_broken_capture_exits_2_naming_it(story, capsys, tmp_path):
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(story["capture"].read_bytes()[:-10])
    status, _, err = run(capsys, story["scenario"], "--change", story["change"], broken)
    assert status == 2
    assert str(broken) in err and "truncated" in err


# -- flow logs as traffic -------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--flow-log", "--vnet-flow-log"])
def test_the_same_traffic_as_our_flow_logs_gives_the_same_three_sets(story, tmp_path, capsys, option):
    log = tmp_path / "flowlog.json"
    assert main(["replay", str(story["scenario"]), str(story["capture"]), option, str(log)]) == 0
    capsys.readouterr()
    report = whatif(*scenarios(story["scenario"], [story["change"]]), [str(log)])
    assert sets(report) == (NEWLY_DENIED_FLOWS, NEWLY_ALLOWED_FLOWS, RULE_CHANGED_FLOWS)


def test_allowed_flows_from_our_flow_logs_carry_the_captures_packets_and_bytes(story, tmp_path, capsys):
    log = tmp_path / "vnet.json"
    main(["replay", str(story["scenario"]), str(story["capture"]), "--vnet-flow-log", str(log)])
    capsys.readouterr()
    change = [str(story["change"])]
    from_capture = whatif(*scenarios(story["scenario"], change), [str(story["capture"])])
    from_log = whatif(*scenarios(story["scenario"], change), [str(log)])
    totals = [{(c.flow, c.packets, c.bytes) for c in report.of(NEWLY_DENIED)} for report in (from_capture, from_log)]
    assert totals[0] == totals[1]


def test_mixing_captures_and_flow_logs_exits_2(story, tmp_path, capsys):
    log = tmp_path / "vnet.json"
    main(["replay", str(story["scenario"]), str(story["capture"]), "--vnet-flow-log", str(log)])
    capsys.readouterr()
    status, _, err = run(capsys, story["scenario"], "--change", story["change"], story["capture"], log)
    assert status == 2
    assert "mixes captures and flow logs" in err


def test_a_malformed_flow_log_exits_2_naming_file_record_and_tuple(story, tmp_path, capsys):
    log = tmp_path / "PT1H.json"
    log.write_text(json.dumps({"records": [{"time": "2024-05-01T10:00:00Z", "macAddress": "000D3A000001",
                                            "flowRecords": {"flows": [{"aclID": "x", "flowGroups": [
                                                {"rule": "r", "flowTuples": ["1,2,3"]}]}]}}]}))
    status, _, err = run(capsys, story["scenario"], "--change", story["change"], log)
    assert status == 2
    assert err.strip() == f"error: {log}: record 0: tuple '1,2,3': 3 fields, version 4 has 13"


# -- Azure's documentation samples ----------------------------------------------------------------

FLOWLOGS = SHARED_DATA.parent / "realworld" / "flowlogs"


def azure_sample_story(tmp_path: Path, nic_ip: str, nsg: str, rules_before: list, rules_after: list):
    """A one-NIC scenario at the sample's address, decided as Azure logged it, and a change."""
    scenario = {"virtual_networks": [{"name": "vnet", "address_space": [nic_ip.rsplit(".", 2)[0] + ".0.0/16"],
                                      "subnets": [{"name": "default", "prefix": nic_ip.rsplit(".", 1)[0] + ".0/24"}]}],
                "network_interfaces": [{"name": "vm-nic", "subnet": "vnet/default", "private_ips": [nic_ip],
                                        "nsg": nsg}],
                "network_security_groups": [{"name": nsg, "security_rules": rules_before}]}
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    (tmp_path / "change.json").write_text(json.dumps({"name": nsg, "securityRules": rules_after}))
    return tmp_path / "scenario.yaml", tmp_path / "change.json"


def test_azure_nsg_v2_sample_with_a_change_gives_the_expected_flows(tmp_path, capsys):
    log = need(FLOWLOGS / "azure-docs-nsg-v2-sample.json")
    scenario, change = azure_sample_story(tmp_path, "10.5.16.4", "FABRIAKMVM1-NSG", [], [
        rule("AllowAltHttp", 100, "Tcp", "Internet", "8088"),
        rule("DenyTestNet", 100, "Tcp", "203.0.113.0/24", "443", access="Deny", direction="Outbound") | {
            "sourceAddressPrefix": "*", "destinationAddressPrefix": "203.0.113.0/24"}])
    report = whatif(*scenarios(scenario, [change]), [str(log)])
    assert sets(report) == ({"tcp 10.5.16.4:59831 > 203.0.113.118:443", "tcp 10.5.16.4:59932 > 203.0.113.117:443",
                             "tcp 10.5.16.4:44931 > 203.0.113.115:443"},
                            {"tcp 198.51.100.8:48495 > 10.5.16.4:8088", "tcp 80.211.72.221:37433 > 10.5.16.4:8088",
                             "tcp 46.101.199.124:60577 > 10.5.16.4:8088"}, set())
    assert (report.flows, report.unmatched) == (11, 0)


def test_azure_vnet_v4_sample_with_a_change_gives_the_expected_flows(tmp_path):
    log = need(FLOWLOGS / "azure-docs-vnet-v4-sample.json")
    block = rule("BlockHighRiskTCPPortsFromInternet", 110, "Tcp", "Internet", "22", access="Deny")
    block = {k: v for k, v in block.items() if k != "destinationPortRange"} | {"destinationPortRanges": ["22", "119"]}
    scenario, change = azure_sample_story(tmp_path, "10.0.0.6", "nsg-vm", [block], [
        rule("AllowSshFromPartner", 100, "Tcp", "101.33.218.0/24", "22"), block,
        rule("DenyStorage", 120, "*", "*", "*", access="Deny", direction="Outbound") | {
            "destinationAddressPrefix": "40.74.146.17"}])
    report = whatif(*scenarios(scenario, [change]), [str(log)])
    assert sets(report) == ({"tcp 10.0.0.6:22730 > 40.74.146.17:443", "tcp 10.0.0.6:22732 > 40.74.146.17:443",
                             "tcp 10.0.0.6:22734 > 40.74.146.17:443"},
                            {"tcp 101.33.218.153:55188 > 10.0.0.6:22"}, set())
    assert report.flows == 14


def test_a_flow_through_nat_is_shown_as_captured_with_the_flow_the_nsg_saw(story, tmp_path):
    public = dict(SCENARIO, network_interfaces=[dict(SCENARIO["network_interfaces"][0], public_ip="20.50.1.4"),
                                                SCENARIO["network_interfaces"][1]])
    (tmp_path / "public.yaml").write_text(yaml.safe_dump(public))
    capture = tmp_path / "public.pcap"
    packets = [p for p, _ in tcp_session(0, "203.0.113.7", 50001, "20.50.1.4", 80, exchanges=1)]
    for i, p in enumerate(packets):
        p.time = T0 + i
    wrpcap(str(capture), packets)
    [changed] = whatif(*scenarios(tmp_path / "public.yaml", [story["change"]]), [str(capture)]).changes
    assert (changed.flow, changed.translated, changed.change) == (
        "tcp 203.0.113.7:50001 > 20.50.1.4:80", "tcp 203.0.113.7:50001 > 10.0.1.4:80", NEWLY_DENIED)
    assert changed.to_json()["translated"] == changed.translated


def test_a_flow_already_running_when_the_capture_begins_is_decided_at_its_first_packet(story, tmp_path):
    capture = tmp_path / "late.pcap"
    packets = [p for p, _ in tcp_session(0, "203.0.113.7", 50001, WEB, 80, exchanges=2)][3:]  # no handshake
    for i, p in enumerate(packets):
        p.time = T0 + i
    wrpcap(str(capture), packets)
    [changed] = whatif(*scenarios(story["scenario"], [story["change"]]), [str(capture)]).changes
    assert (changed.flow, changed.change, changed.packets) == ("tcp 203.0.113.7:50001 > 10.0.1.4:80", NEWLY_DENIED,
                                                               len(packets))


def test_a_reply_from_the_nic_behind_a_public_ip_is_part_of_its_request_flow(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[1] / "pcaps" / "demo"
    report = whatif(*scenarios(str(demo / "scenario.yaml"), [str(demo / "nsg-jump-locked.json")]),
                    [str(demo / "rule-removal.pcap")])
    assert [c.change for c in report.changes] == [NEWLY_DENIED] * 3
    first = report.changes[0]
    assert (first.flow, first.translated) == ("tcp 203.0.113.50:53000 > 20.50.1.10:22",
                                              "tcp 203.0.113.50:53000 > 10.10.3.4:22")
    assert first.packets == 8  # five from the office, three replies from the jump box's private address



@pytest.mark.skipif(whatif_module.Tally is None, reason="the C extension is not built")
def test_whatif_walks_a_capture_with_the_collector_paused(story):
    """Each flow's first verdicts are kept until both dataplanes have decided it: objects in no cycle, which
    young collections walked again and again."""
    walk, enabled = Capture.walk, []

    def watched(self, *args):
        enabled.append(gc.isenabled())
        return walk(self, *args)

    with mock.patch.object(Capture, "walk", watched):
        whatif(*scenarios(story["scenario"], [story["change"]]), [str(story["capture"])])
    assert enabled and not any(enabled)
    assert gc.isenabled()
