"""`dataplane replay`: captures in, verdicts, captures and summaries out; rule updates mid-capture;
bad captures reported with the byte offset while every output written so far is kept."""

from __future__ import annotations

import gc
import gzip
import json
import shutil
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, rdpcap, wrpcap

from dataplane import load_scenario
from dataplane.cli import main
from dataplane.pipeline import Dataplane
from dataplane.replay import Outputs, replay as replay_captures

from datafiles import SHARED_PCAPS, scenario_capture, shared_captures
from frames import ether

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pcaps" / "demo"
SCENARIO = str(DEMO / "scenario.yaml")
SHARED_SCENARIO = str(ROOT / "tests" / "fixtures" / "shared-captures" / "scenario.yaml")
T0 = 1_700_000_000.0
OFFICE, JUMP_PUBLIC, JUMP = "203.0.113.50", "20.50.1.10", "10.10.3.4"


def ssh(t, sport, flags, reply=False):
    p = ether() / (IP(src=JUMP, dst=OFFICE) / TCP(sport=22, dport=sport, flags=flags) if reply else
                   IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(sport=sport, dport=22, flags=flags))
    p.time = T0 + t
    return p


def session(start, sport, end):
    """A handshake at `start`, then a request and its reply every 30 s until `end`."""
    packets = [ssh(start, sport, "S"), ssh(start + 0.01, sport, "SA", True), ssh(start + 0.02, sport, "A")]
    t = start + 30
    while t <= end:
        packets += [ssh(t, sport, "PA"), ssh(t + 0.01, sport, "A", True)]
        t += 30
    return packets


def verdicts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def replay(capsys, *argv) -> tuple[int, str, str]:
    status = main(["replay", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def removal_story(tmp_path: Path) -> Path:
    """A live SSH session from 0 to 200 s, and a new one at 150 s; the allowing rule goes at 100 s."""
    capture = tmp_path / "story.pcap"
    wrpcap(str(capture), sorted(session(0, 53000, 200) + session(150, 53001, 150), key=lambda p: p.time))
    return capture


def locked_nsg(tmp_path: Path, flush: bool) -> Path:
    doc = {"name": "nsg-jump", "properties": {"flushConnection": flush, "securityRules": []}}
    path = tmp_path / f"nsg-jump-{'flush' if flush else 'keep'}.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_live_connection_survives_the_removal_of_its_rule_and_a_new_one_is_denied(
        removal_story, tmp_path, capsys) -> None:
    out = tmp_path / "v.jsonl"
    status, _, _ = replay(capsys, SCENARIO, removal_story, "--update", f"100={locked_nsg(tmp_path, False)}",
                          "--verdicts", out)
    assert status == 0
    lines = verdicts(out)
    live_after = [v for v in lines if v["ts"] > T0 + 100 and ":53000" in v["flow"]]
    assert live_after and all((v["decision"], v["reason"]) == ("Allow", "flow") for v in live_after)
    new = next(v for v in lines if ":53001" in v["flow"])
    assert (new["decision"], new["rule"]) == ("Deny", "DenyAllInBound")


def test_with_flush_connection_the_update_cuts_the_live_connection_at_once(removal_story, tmp_path, capsys) -> None:
    out = tmp_path / "v.jsonl"
    replay(capsys, SCENARIO, removal_story, "--update", f"100={locked_nsg(tmp_path, True)}", "--verdicts", out)
    lines = verdicts(out)
    before = [v for v in lines if v["ts"] < T0 + 100 and ":53000" in v["flow"]]
    first_after = next(v for v in lines if v["ts"] > T0 + 100 and v["flow"].startswith(f"tcp {OFFICE}:53000"))
    assert all(v["decision"] == "Allow" for v in before)
    assert (first_after["decision"], first_after["rule"], first_after["reason"]) == ("Deny", "DenyAllInBound", "rules")


def test_an_update_for_an_nsg_the_scenario_lacks_is_a_usage_error(removal_story, tmp_path, capsys) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"name": "nsg-nowhere", "properties": {"securityRules": []}}))
    status, _, err = replay(capsys, SCENARIO, removal_story, "--update", f"10={other}")
    assert status == 2 and "no NSG named 'nsg-nowhere'" in err


def test_verdict_lines_carry_the_contracts_fields(tmp_path, capsys) -> None:
    out = tmp_path / "v.jsonl"
    replay(capsys, SCENARIO, DEMO / "web.pcap", "--verdicts", out)
    first = verdicts(out)[0]
    assert {"index", "ts", "flow", "direction", "nic", "decision", "nsg", "rule", "reason", "state"} <= set(first)
    assert first["index"] == 0


def test_allowed_denied_and_translated_captures_hold_the_right_packets(tmp_path, capsys) -> None:
    outs = {name: tmp_path / f"{name}.pcap" for name in ("allowed", "denied", "translated")}
    summary = tmp_path / "s.json"
    replay(capsys, SCENARIO, DEMO / "web.pcap", "--summary", summary,
           *[arg for name, path in outs.items() for arg in (f"--{name}", path)])
    counts = json.loads(summary.read_text())
    assert len(rdpcap(str(outs["allowed"]))) == counts["allowed"]
    assert len(rdpcap(str(outs["denied"]))) == counts["denied"]
    translated = rdpcap(str(outs["translated"]))
    assert len(translated) == counts["allowed"]
    assert any(p[IP].dst.startswith("10.10.1.") and p[TCP].dport == 8080 for p in translated if TCP in p)


def test_several_captures_are_merged_in_timestamp_order(tmp_path, capsys) -> None:
    early, late = tmp_path / "a.pcap", tmp_path / "b.pcap"
    packets = session(0, 53000, 100)
    wrpcap(str(late), packets[1::2])
    wrpcap(str(early), packets[0::2])
    out = tmp_path / "v.jsonl"
    replay(capsys, SCENARIO, late, early, "--verdicts", out)
    times = [v["ts"] for v in verdicts(out)]
    assert times == sorted(times) and len(times) == len(packets)
    assert verdicts(out)[1]["reason"] == "flow"


def test_pcapng_and_gzip_captures_replay_like_pcap(tmp_path, capsys) -> None:
    packets = rdpcap(str(DEMO / "web.pcap"))
    ng = tmp_path / "web.pcapng"
    with PcapNgWriter(str(ng)) as writer:
        for p in packets:
            writer.write(p)
    gz = tmp_path / "web.pcap.gz"
    with open(DEMO / "web.pcap", "rb") as f, gzip.open(gz, "wb") as g:
        shutil.copyfileobj(f, g)
    results = []
    for capture in (DEMO / "web.pcap", ng, gz):
        summary = tmp_path / "s.json"
        replay(capsys, SCENARIO, capture, "--summary", summary)
        data = json.loads(summary.read_text())
        results.append((data["packets"], data["allowed"], data["denied"], data["flows"]))
    assert results[0] == results[1] == results[2]


def test_a_truncated_capture_is_reported_with_the_byte_offset_and_the_outputs_are_kept(tmp_path, capsys) -> None:
    whole = (DEMO / "web.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:len(whole) // 2])
    out, summary, allowed = tmp_path / "v.jsonl", tmp_path / "s.json", tmp_path / "allowed.pcap"
    status, _, err = replay(capsys, SCENARIO, cut, "--verdicts", out, "--summary", summary, "--allowed", allowed)
    assert status == 2
    assert f"error: {cut}: truncated at byte {len(whole) // 2}" in err and "Traceback" not in err
    kept = verdicts(out)
    assert kept and json.loads(summary.read_text())["packets"] == len(kept)
    assert len(rdpcap(str(allowed))) == sum(v["decision"] == "Allow" for v in kept)


def test_a_file_that_is_not_a_capture_is_an_error_naming_it(tmp_path, capsys) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("these are notes, not packets")
    status, _, err = replay(capsys, SCENARIO, bogus)
    assert status == 2 and str(bogus) in err and "byte 0" in err and "Traceback" not in err


def test_a_malformed_frame_is_counted_and_the_replay_goes_on(tmp_path, capsys) -> None:
    packets = session(0, 53000, 60)
    broken = Ether(bytes(ether() / IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP())[:20])
    broken.time = T0 + 0.5
    capture = tmp_path / "broken.pcap"
    wrpcap(str(capture), sorted(packets + [broken], key=lambda p: p.time))
    summary = tmp_path / "s.json"
    assert replay(capsys, SCENARIO, capture, "--summary", summary)[0] == 0
    data = json.loads(summary.read_text())
    assert data["skipped"] == {"truncated": 1} and data["allowed"] == len(packets)


def test_the_summary_table_is_printed_and_no_progress_bar_when_stderr_is_not_a_terminal(capsys) -> None:
    status, out, err = replay(capsys, SCENARIO, DEMO / "scan.pcap")
    assert status == 0
    assert "replay summary" in out and "packets" in out and "DenyAllInBound" in out
    assert err == ""


@pytest.mark.parametrize("name", shared_captures(), ids=str)
def test_every_shared_capture_replays_with_every_packet_accounted_for(name, tmp_path, capsys) -> None:
    summary = tmp_path / "s.json"
    status, _, _ = replay(capsys, SHARED_SCENARIO, scenario_capture(SHARED_PCAPS / name, tmp_path), "--summary", summary)
    data = json.loads(summary.read_text())
    assert status == 0
    assert data["packets"] > 0
    assert data["allowed"] + data["denied"] + sum(data["skipped"].values()) == data["packets"]
    assert data["allowed"] > 0


@pytest.mark.parametrize("linktype", [101, 113], ids=["raw-ip", "linux-cooked"])
def test_raw_ip_and_linux_cooked_captures_replay_and_translate(linktype, tmp_path, capsys) -> None:
    from scapy.layers.l2 import CookedLinux

    packets = [IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(sport=53000, dport=22, flags="S"),
               IP(src=JUMP, dst=OFFICE) / TCP(sport=22, dport=53000, flags="SA")]
    if linktype == 113:
        packets = [CookedLinux(proto=0x0800) / p for p in packets]
    for i, p in enumerate(packets):
        p.time = T0 + i
    capture, translated, summary = tmp_path / "in.pcap", tmp_path / "out.pcap", tmp_path / "s.json"
    wrpcap(str(capture), packets, linktype=linktype)
    assert replay(capsys, SCENARIO, capture, "--translated", translated, "--summary", summary)[0] == 0
    assert json.loads(summary.read_text())["allowed"] == 2
    assert [(p[IP].src, p[IP].dst) for p in rdpcap(str(translated))] == [(OFFICE, JUMP), (JUMP_PUBLIC, OFFICE)]


def test_an_output_that_cannot_be_written_is_an_error_naming_it(tmp_path, capsys) -> None:
    target = tmp_path / "missing-dir" / "v.jsonl"
    status, _, err = replay(capsys, SCENARIO, DEMO / "web.pcap", "--verdicts", target)
    assert status == 2 and f"error: {target}: cannot write" in err and "Traceback" not in err


@pytest.mark.parametrize("outputs", [{}, {"verdicts": "v.jsonl", "flow_log": "f.json", "report": None}],
                         ids=["no outputs", "per-packet outputs"])
def test_a_replay_runs_with_the_collector_paused_and_resumes_it(outputs, tmp_path, monkeypatch) -> None:
    """What a replay makes forms no cycle: young collections would walk it in vain. What it made is then in
    the collector's oldest generation, for the next young collection not to walk it either."""
    enabled, made = [], []
    process = Dataplane.process

    def watched(self, *args):
        enabled.append(gc.isenabled())
        made.append(process(self, *args))
        return made[-1]

    monkeypatch.setattr(Dataplane, "process", watched)
    summary = replay_captures(load_scenario(DEMO / "scenario.yaml"), [str(DEMO / "web.pcap")],
                              Outputs(**{name: str(tmp_path / path) for name, path in outputs.items() if path}))
    assert summary.packets and enabled and not any(enabled)
    assert gc.isenabled()
    assert {id(verdict) for verdict in made} <= {id(o) for o in gc.get_objects(generation=2)}


def test_a_replay_leaves_nothing_frozen_for_the_garbage_collector() -> None:
    """The replay freezes what exists while it runs (full collections skip the scenario) and thaws it after."""
    assert gc.get_freeze_count() == 0
    replay_captures(load_scenario(DEMO / "scenario.yaml"), [str(DEMO / "web.pcap")])
    assert gc.get_freeze_count() == 0
