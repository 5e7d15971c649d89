"""Replay packets/s on a large capture against a baseline that only reads the frames and
decodes the 5-tuple with struct, both through the replay's own reader, in the same run."""

from __future__ import annotations

import struct

import pytest
from scapy.utils import RawPcapReader

from dataplane.replay import Capture, Outputs, replay
from dataplane.topology import scenario_from_document

import big_capture
from figures import rate, ratio

FIVE_TUPLE = struct.Struct("!12xH9xB2xIIHH")
BASELINE_OURS = "baseline: read + struct 5-tuple (replay's reader)"
BASELINE_SCAPY = "baseline: read + struct 5-tuple (scapy RawPcapReader)"
REPLAY = "replay (VM to VM, every packet through 2 NICs)"
REPLAY_VERDICTS = "replay --verdicts (the same capture)"
REPLAY_OUTPUTS = {"parquet": "replay --verdicts F.parquet (the same capture)",
                  "flow logs": "replay --flow-log --vnet-flow-log (the same capture)",
                  "allowed packets": "replay --allowed F.pcap (the same capture)",
                  "report": "replay --report F.html (the same capture)"}


def frames_of_our_reader(path: str):
    return (frame.data for frame in Capture(path).frames())


def frames_of_scapy_raw_reader(path: str):
    return (data for data, _ in RawPcapReader(path))


@pytest.mark.parametrize("frames, name", [(frames_of_our_reader, BASELINE_OURS),
                                          (frames_of_scapy_raw_reader, BASELINE_SCAPY)], ids=["ours", "scapy"])
def test_baseline_read_and_decode_five_tuple(benchmark, capture, frames, name):
    path, count = capture

    def run():
        n = 0
        unpack = FIVE_TUPLE.unpack_from
        for data in frames(path):
            unpack(data)
            n += 1
        return n

    assert benchmark.pedantic(run, rounds=3, iterations=1) == count
    rate(benchmark, name, count)


def test_replay_packets_per_second(benchmark, capture):
    path, count = capture
    scenario_doc = big_capture.scenario()

    def run():
        return replay(scenario_from_document(scenario_doc), [path])

    summary = benchmark.pedantic(run, rounds=3, iterations=1)
    assert summary.packets == summary.allowed == count
    rate(benchmark, REPLAY, count)
    for name in (BASELINE_OURS, BASELINE_SCAPY):
        ratio(f"replay / {name}", REPLAY, name, ">= 0.6")


def test_replay_writing_verdicts_packets_per_second(benchmark, capture, tmp_path):
    """Verdict lines alone: the C walk writes those of the packets it passes, Python those of new flows."""
    path, count = capture
    scenario_doc = big_capture.scenario()
    lines = tmp_path / "verdicts.jsonl"

    def run():
        return replay(scenario_from_document(scenario_doc), [path], Outputs(verdicts=str(lines)))

    summary = benchmark.pedantic(run, rounds=2, iterations=1)
    assert summary.packets == count
    rate(benchmark, REPLAY_VERDICTS, count)
    ratio(f"{REPLAY_VERDICTS} / {BASELINE_OURS}", REPLAY_VERDICTS, BASELINE_OURS, "none set")


@pytest.mark.parametrize("kind", list(REPLAY_OUTPUTS))
def test_replay_writing_parquet_flow_logs_allowed_packets_or_a_report_packets_per_second(benchmark, capture, tmp_path, kind):
    """Parquet rows are made from the verdict lines the C walk writes; flow logs hear of flows, so the C
    path passes known flows' packets within each minute; the allowed packets' records it writes itself; the
    report's collector hears of each flow's first packets, and the C walk counts the others by minute."""
    if kind == "parquet":
        pytest.importorskip("pyarrow", reason="pyarrow (the 'parquet' extra) is not installed")
        outputs = Outputs(verdicts=str(tmp_path / "verdicts.parquet"))
    elif kind == "report":
        pytest.importorskip("altair", reason="altair (the 'report' extra) is not installed")
        outputs = Outputs(report=str(tmp_path / "report.html"))
    elif kind == "flow logs":
        outputs = Outputs(flow_log=str(tmp_path / "nsg.json"), vnet_flow_log=str(tmp_path / "vnet.json"))
    else:
        outputs = Outputs(allowed=str(tmp_path / "allowed.pcap"))
    path, count = capture
    scenario_doc = big_capture.scenario()
    summary = benchmark.pedantic(lambda: replay(scenario_from_document(scenario_doc), [path], outputs), rounds=2,
                                 iterations=1)
    assert summary.packets == count
    rate(benchmark, REPLAY_OUTPUTS[kind], count)
    ratio(f"{REPLAY_OUTPUTS[kind]} / {REPLAY}", REPLAY_OUTPUTS[kind], REPLAY, "none set")
