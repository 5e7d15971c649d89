"""`replay --workers N` and `--dask`: flows sharded over processes give what one process gives, file
for file; the shard function keeps every packet of a flow (replies, fragments, ICMP errors, both sides
of a NAT) in one shard."""

from __future__ import annotations

import gc
import gzip
from array import array

import json
import os
import random
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.utils import wrpcap

from dataplane.cli import main
from dataplane.decode import decode_frame
from dataplane.pipeline import FastPath
from dataplane.replay import NumberedLines, Outputs, collector_paused, pcap_record, replay
from dataplane.shards import FrameShards, Shards, shard_filter_of, shard_of
from dataplane.topology import load_scenario
from dataplane.whatif import scenarios, whatif
from dataplane.errors import DataplaneError
from dataplane.replay import worker_count
from dataplane.workers import _dump_result, _load_result, local_runner, merge_lines, merge_lines_python

from datafiles import SHARED_PCAPS, scenario_capture, shared_captures
from frames import ether

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pcaps" / "demo"
SCENARIO = DEMO / "scenario.yaml"
SHARED_SCENARIO = ROOT / "tests" / "fixtures" / "shared-captures" / "scenario.yaml"
T0 = 1_700_000_000.0
needs_c = pytest.mark.skipif(FastPath is None, reason="the C extension was not built (no compiler at install)")
FRONTEND, REMOTE, OFFICE, JUMP_PUBLIC, JUMP = "20.50.1.100", "93.184.216.34", "203.0.113.50", "20.50.1.10", \
    "10.10.3.4"
WEB1, WEB2 = "10.10.1.4", "10.10.1.5"
OUTPUTS = {"--verdicts": "verdicts.jsonl", "--flow-log": "flow-log.json", "--vnet-flow-log": "vnet-flow-log.json",
           "--allowed": "allowed.pcap", "--denied": "denied.pcap", "--translated": "translated.pcap",
           "--summary": "summary.json", "--flow-log-dir": "nsg-tree", "--vnet-flow-log-dir": "vnet-tree"}


def run(scenario: Path, capture: Path, folder: Path, *options: str, outputs: dict[str, str] = OUTPUTS) -> dict:
    """Every output of one replay, by name (a folder as its files), with the wall-clock rate left out."""
    folder.mkdir()
    argv = ["replay", str(scenario), str(capture), *options]
    for option, name in outputs.items():
        argv += [option, str(folder / name)]
    status = main(argv)
    files = {"status": status}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(folder))] = path.read_bytes()
    summary = json.loads(files.pop("summary.json"))
    del summary["packets_per_second"]
    files["summary"] = summary
    return files


def same_with_two_workers(scenario: Path, capture: Path, tmp_path: Path, *options: str) -> tuple[dict, dict]:
    one = run(scenario, capture, tmp_path / "one", *options)
    two = run(scenario, capture, tmp_path / "two", "--workers", "2", *options)
    return one, two


@pytest.mark.parametrize("name", ["web", "scan", "rule-removal", "icmp-ipv6"])
def test_two_workers_write_what_one_writes_on_every_demo_capture(name, tmp_path) -> None:
    one, two = same_with_two_workers(SCENARIO, DEMO / f"{name}.pcap", tmp_path)
    assert one["summary"]["packets"] > 0
    assert two == one


VERDICT_LINES = {"--verdicts": "verdicts.jsonl", "--summary": "summary.json"}
FLOW_LOGS = {"--flow-log": "flow-log.json", "--vnet-flow-log": "vnet-flow-log.json", "--flow-log-dir": "nsg-tree",
             "--vnet-flow-log-dir": "vnet-tree", "--summary": "summary.json"}
ALLOWED = {"--allowed": "allowed.pcap", "--summary": "summary.json"}
BY_DECISION = {"--allowed": "allowed.pcap", "--denied": "denied.pcap", "--summary": "summary.json"}


@pytest.mark.parametrize("outputs", [VERDICT_LINES, FLOW_LOGS, ALLOWED, BY_DECISION],
                         ids=["verdict lines", "flow logs", "allowed packets", "allowed and denied packets"])
@pytest.mark.parametrize("name", ["web", "scan", "rule-removal", "icmp-ipv6"])
def test_two_workers_write_what_one_writes_when_it_is_the_only_per_packet_output(name, outputs, tmp_path):
    """Then the C walks take known flows' packets (writing their verdict lines, `Wanted.verdict_lines`, or
    their pcap records, or passing them within each flow-log minute), in each worker as in one process."""
    capture = DEMO / f"{name}.pcap"
    one = run(SCENARIO, capture, tmp_path / "one", outputs=outputs)
    two = run(SCENARIO, capture, tmp_path / "two", "--workers", "2", outputs=outputs)
    every_output = run(SCENARIO, capture, tmp_path / "all")
    assert two == one and all(one[name] == every_output[name] for name in one)


def test_two_workers_close_a_minute_that_ends_between_two_packets_of_a_second_as_one_does(tmp_path) -> None:
    """The sweep of idle flows runs once a second; each worker's C path still stops at the minute's end."""
    minute = T0 + 40
    ssh = [(-0.5, OFFICE, JUMP_PUBLIC, "S"), (-0.45, JUMP, OFFICE, "SA"), (-0.4, OFFICE, JUMP_PUBLIC, "A"),
           (-0.2, OFFICE, JUMP_PUBLIC, "PA"), (0.2, JUMP, OFFICE, "PA"), (30.0, OFFICE, JUMP_PUBLIC, "PA")]
    frames = []
    for dt, src, dst, flags in ssh:
        sport, dport = (50000, 22) if src == OFFICE else (22, 50000)
        frame = ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / (b"x" * 100)
        frame.time = minute + dt
        frames.append(frame)
    capture = tmp_path / "boundary.pcap"
    wrpcap(str(capture), frames)
    one = run(SCENARIO, capture, tmp_path / "one", outputs=FLOW_LOGS)
    two = run(SCENARIO, capture, tmp_path / "two", "--workers", "2", outputs=FLOW_LOGS)
    every_output = run(SCENARIO, capture, tmp_path / "all")
    assert one["flow-log.json"].count(b",A,C,") == 1  # the minute closes while the flow is live
    assert two == one and all(one[name] == every_output[name] for name in one)


def test_two_workers_apply_an_update_as_one_does(tmp_path) -> None:
    one, two = same_with_two_workers(SCENARIO, DEMO / "rule-removal.pcap", tmp_path,
                                     "--update", f"120={DEMO / 'nsg-jump-locked.json'}")
    assert one["summary"]["rule_hits"]["nsg-jump"] == {"AllowSshFromOffice": 2, "DenyAllInBound": 2}
    assert two == one


@pytest.mark.parametrize("name", shared_captures(), ids=str)
def test_two_workers_write_what_one_writes_on_every_shared_capture(name, tmp_path) -> None:
    capture = scenario_capture(SHARED_PCAPS / name, tmp_path)
    one, two = same_with_two_workers(SHARED_SCENARIO, capture, tmp_path)
    assert two == one


@pytest.fixture
def nat_scenario(tmp_path) -> Path:
    """The demo, with web1 and web2 leaving to the Internet behind the load balancer's frontend."""
    doc = yaml.safe_load(SCENARIO.read_text())
    doc["load_balancers"][0]["outbound_pool"] = ["web1-nic", "web2-nic"]
    for nsg in doc["network_security_groups"]:
        if nsg["name"] == "nsg-web-nic":
            nsg["security_rules"].append(
                {"name": "AllowHttpsOut", "priority": 100, "direction": "Outbound", "access": "Allow",
                 "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
                 "destinationAddressPrefix": "Internet", "destinationPortRange": "443"})
    path = tmp_path / "nat.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def nat_traffic() -> list:
    """Clients through the frontend and their replies from the backends; both backends to one remote
    end from the same source port (the frontend must hand one of them another port) and the replies to
    the frontend's ports; SSH through the jump box's public IP; fragments and an ICMP error; over three
    minutes, so flows idle out and flow-log minutes close."""
    packets = []
    for i in range(24):
        client, port, t = f"198.18.0.{10 + i}", 50000 + i, 5.0 * i
        backend = (WEB1, WEB2)[i % 2]
        packets += [(t, IP(src=client, dst=FRONTEND) / TCP(sport=port, dport=80, flags="S")),
                    (t + 0.01, IP(src=backend, dst=client) / TCP(sport=8080, dport=port, flags="SA")),
                    (t + 0.02, IP(src=client, dst=FRONTEND) / TCP(sport=port, dport=80, flags="A"))]
    for i, (web, frontend_port) in enumerate(((WEB1, 40000), (WEB2, 1024))):
        t = 7.0 + i
        packets += [(t, IP(src=web, dst=REMOTE) / TCP(sport=40000, dport=443, flags="S")),
                    (t + 0.05, IP(src=REMOTE, dst=FRONTEND) / TCP(sport=443, dport=frontend_port, flags="SA")),
                    (t + 70, IP(src=web, dst=REMOTE) / TCP(sport=40000, dport=443, flags="PA"))]
    packets += [(12.0, IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(sport=53000, dport=22, flags="S")),
                (12.01, IP(src=JUMP, dst=OFFICE) / TCP(sport=22, dport=53000, flags="SA")),
                (130.0, IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(sport=53000, dport=22, flags="PA"))]
    big = IP(src="198.18.1.1", dst=FRONTEND, id=77) / UDP(sport=5000, dport=80) / (b"x" * 3000)
    packets += [(20.0 + k * 0.001, f) for k, f in enumerate(fragment(big, fragsize=1000))]
    quoted = IP(src=JUMP_PUBLIC, dst=OFFICE) / TCP(sport=22, dport=53000, flags="A")
    packets.append((12.5, IP(src="192.0.2.1", dst=JUMP_PUBLIC) / ICMP(type=3, code=4) / bytes(quoted)[:28]))
    frames = []
    for t, p in sorted(packets, key=lambda tp: tp[0]):
        frame = ether() / p
        frame.time = T0 + t
        frames.append(frame)
    return frames


def test_two_workers_translate_and_log_nat_flows_as_one_does(nat_scenario, tmp_path) -> None:
    capture = tmp_path / "nat.pcap"
    wrpcap(str(capture), nat_traffic())
    one, two = same_with_two_workers(nat_scenario, capture, tmp_path)
    translated = [json.loads(line) for line in one["verdicts.jsonl"].splitlines() if b"translated" in line]
    assert len(translated) > 10 and one["summary"]["flows"]["created"] > 20
    assert two == one


def mixed_traffic(seed: int) -> list:
    """Random conversations over twelve minutes, with quiet gaps that let flows idle out: Internet
    clients to the frontend and the jump box, web to db inside the VNet, pings, UDP, denied probes."""
    rng = random.Random(seed)
    packets = []
    for n in range(150):
        t = rng.choice((0, 200, 420)) + rng.uniform(0, 200)
        client, port = f"198.18.{rng.randrange(4)}.{rng.randrange(1, 40)}", rng.randrange(1024, 65535)
        kind = rng.randrange(5)
        if kind == 0:
            backend = rng.choice((WEB1, WEB2))
            steps = [(IP(src=client, dst=FRONTEND) / TCP(sport=port, dport=80, flags="S")),
                     (IP(src=backend, dst=client) / TCP(sport=8080, dport=port, flags="SA")),
                     (IP(src=client, dst=FRONTEND) / TCP(sport=port, dport=80, flags="A"))]
        elif kind == 1:
            office = f"203.0.113.{rng.randrange(1, 20)}"
            steps = [(IP(src=office, dst=JUMP_PUBLIC) / TCP(sport=port, dport=22, flags="S")),
                     (IP(src=JUMP, dst=office) / TCP(sport=22, dport=port, flags="SA")),
                     (IP(src=office, dst=JUMP_PUBLIC) / TCP(sport=port, dport=22, flags="PA"))]
        elif kind == 2:
            web = rng.choice((WEB1, WEB2))
            steps = [(IP(src=web, dst="10.10.2.4") / TCP(sport=port, dport=1433, flags="S")),
                     (IP(src="10.10.2.4", dst=web) / TCP(sport=1433, dport=port, flags="SA")),
                     (IP(src=web, dst="10.10.2.4") / TCP(sport=port, dport=1433, flags="F"))]
        elif kind == 3:
            steps = [(IP(src=JUMP, dst=rng.choice((WEB1, WEB2))) / ICMP(type=8, id=n)),
                     (IP(src=client, dst=JUMP_PUBLIC) / UDP(sport=port, dport=53))]
        else:
            steps = [(IP(src=client, dst=rng.choice((JUMP_PUBLIC, FRONTEND))) / TCP(sport=port, dport=3389,
                                                                                   flags="S"))]
        for step in steps:
            packets.append((t, step))
            t += rng.uniform(0.001, 40)
    frames = []
    for t, p in sorted(packets, key=lambda tp: tp[0]):
        frame = ether() / p
        frame.time = T0 + 13 + t
        frames.append(frame)
    return frames


@pytest.mark.parametrize("seed", [1, 2])
def test_three_workers_write_what_one_writes_on_random_mixed_traffic(seed, nat_scenario, tmp_path) -> None:
    capture = tmp_path / "mixed.pcap"
    wrpcap(str(capture), mixed_traffic(seed))
    one = run(nat_scenario, capture, tmp_path / "one")
    three = run(nat_scenario, capture, tmp_path / "three", "--workers", "3")
    assert one["summary"]["flows"]["expired"] > 10
    assert three == one


@pytest.mark.parametrize("outputs", [FLOW_LOGS, BY_DECISION], ids=["flow logs", "allowed and denied packets"])
@pytest.mark.parametrize("seed", [1, 2])
def test_three_workers_write_what_one_writes_alone_on_random_mixed_traffic(seed, outputs, nat_scenario, tmp_path):
    """Outputs the C walks serve, alone: each as one process writes it, and as it is beside every other."""
    capture = tmp_path / "mixed.pcap"
    wrpcap(str(capture), mixed_traffic(seed))
    one = run(nat_scenario, capture, tmp_path / "one", outputs=outputs)
    three = run(nat_scenario, capture, tmp_path / "three", "--workers", "3", outputs=outputs)
    every_output = run(nat_scenario, capture, tmp_path / "all")
    assert three == one and all(one[name] == every_output[name] for name in one)


def test_parquet_verdicts_of_two_workers_equal_one_workers(tmp_path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    outputs = {"--verdicts": "verdicts.parquet", "--summary": "summary.json"}
    one = run(SCENARIO, DEMO / "web.pcap", tmp_path / "one", outputs=outputs)
    two = run(SCENARIO, DEMO / "web.pcap", tmp_path / "two", "--workers", "2", outputs=outputs)
    table = pq.read_table(tmp_path / "one" / "verdicts.parquet")
    assert pq.read_table(tmp_path / "two" / "verdicts.parquet").equals(table)
    assert two["summary"] == one["summary"]


def test_the_report_of_two_workers_is_the_report_of_one(tmp_path) -> None:
    pytest.importorskip("altair", reason="the report needs dataplane[report]")
    outputs = {"--report": "report.html", "--summary": "summary.json"}
    one = run(SCENARIO, DEMO / "web.pcap", tmp_path / "one", outputs=outputs)
    two = run(SCENARIO, DEMO / "web.pcap", tmp_path / "two", "--workers", "2", outputs=outputs)
    assert len(one["report.html"]) > 1000
    assert two == one


def test_a_truncated_capture_gives_two_workers_the_error_and_outputs_of_one(tmp_path, capsys) -> None:
    capture = tmp_path / "cut.pcap"
    capture.write_bytes((DEMO / "web.pcap").read_bytes()[:-10])
    one = run(SCENARIO, capture, tmp_path / "one")
    first = capsys.readouterr().err
    two = run(SCENARIO, capture, tmp_path / "two", "--workers", "2")
    assert one["status"] == two["status"] == 2
    assert "truncated at byte" in first and capsys.readouterr().err == first
    assert two == one


def test_an_interrupted_sharded_replay_still_writes_its_outputs(tmp_path, capsys, monkeypatch) -> None:
    import dataplane.workers

    def interrupted(workers):
        def run(function, calls):
            raise KeyboardInterrupt
        return run
    monkeypatch.setattr(dataplane.workers, "local_runner", interrupted)
    files = run(SCENARIO, DEMO / "web.pcap", tmp_path / "two", "--workers", "2")
    assert files["status"] == 130 and files["summary"]["interrupted"]
    assert files["verdicts.jsonl"] == b"" and files["allowed.pcap"][:4] == bytes.fromhex("d4c3b2a1")
    assert "interrupted" in capsys.readouterr().err


def _in_worker(index: int) -> int:
    if index == 1:
        raise ValueError("the second worker's error")
    if index == 2:
        os._exit(3)
    return os.getpid()


def test_local_workers_run_the_first_call_here_and_the_others_in_child_processes() -> None:
    pids = local_runner(3)(_in_worker, [(0,), (0,), (0,)])
    assert pids[0] == os.getpid() and len(set(pids)) == 3


def test_workers_run_where_processes_cannot_fork(monkeypatch) -> None:
    monkeypatch.delattr(os, "fork")
    pids = local_runner(2)(_in_worker, [(0,), (0,)])
    assert len(pids) == 2 and os.getpid() not in pids


def test_an_error_in_a_worker_process_is_raised_by_the_client() -> None:
    with pytest.raises(ValueError, match="the second worker's error"):
        local_runner(2)(_in_worker, [(0,), (1,)])


def test_a_worker_process_that_dies_is_an_error_naming_its_exit_code() -> None:
    with pytest.raises(DataplaneError, match=r"exit code 3"):
        local_runner(3)(_in_worker, [(0,), (0,), (2,)])


def _interrupted_or_asleep(index: int) -> None:
    if index == 0:
        raise KeyboardInterrupt
    time.sleep(60)


def test_an_interrupted_client_ends_its_workers_at_once() -> None:
    """The client's own shard interrupted (Ctrl-C reaches it; the workers ignore it): the workers are ended
    and reaped, not waited for."""
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        local_runner(3)(_interrupted_or_asleep, [(0,), (1,), (1,)])
    assert time.monotonic() - started < 30


def test_a_worker_that_gave_its_results_is_reaped_by_the_next_run() -> None:
    first = local_runner(2)(_in_worker, [(0,), (0,)])[1]
    local_runner(2)(_in_worker, [(0,), (0,)])
    with pytest.raises(ChildProcessError):
        os.waitpid(first, os.WNOHANG)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open files are counted in /proc/self/fd (Linux)")
def test_a_fork_that_fails_is_raised_and_leaves_no_file_open(monkeypatch) -> None:
    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(BlockingIOError):
        local_runner(2)(_in_worker, [(0,), (0,)])
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_worker_result_of_hundreds_of_megabytes_reaches_the_client() -> None:
    """Results come back through a file in memory, not 64 KB at a time through a pipe."""
    sizes = local_runner(2)(_big_result, [(1,), (300 << 20,)])
    assert [len(s) for s in sizes] == [1, 300 << 20] and sizes[1][-1] == 7


def _big_result(size: int) -> bytes:
    return bytes(size - 1) + b"\x07"


# Workers' verdict lines: each worker's numbered lines, their indexes rising and never shared.
line_texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=12)
worker_lines = st.lists(st.sampled_from([0, 1, 2]), max_size=60).flatmap(
    lambda owners: st.tuples(st.just(owners), st.lists(line_texts, min_size=len(owners), max_size=len(owners))))


def _shards_of(owners: list[int], texts: list[str], count: int) -> tuple[list[bytes], list[bytes]]:
    lines = [b"".join((t + "\n").encode() for t, o in zip(texts, owners) if o == k) for k in range(count)]
    indexes = [array("q", [i for i, o in enumerate(owners) if o == k]).tobytes() for k in range(count)]
    return lines, indexes


@needs_c
@given(worker_lines, st.integers(1, 70))
def test_workers_lines_merge_in_c_as_in_python(owned, per_block) -> None:
    owners, texts = owned
    lines, indexes = _shards_of(owners, texts, 3)
    merged = merge_lines(lines, indexes, per_block)
    assert merged == merge_lines_python(lines, indexes, per_block)
    assert b"".join(merged) == "".join(t + "\n" for t in texts).encode()


@needs_c
@given(worker_lines, st.integers(1, 70))
def test_workers_lines_merged_in_c_are_handed_to_a_writer_block_by_block_as_in_python(owned, per_block) -> None:
    owners, texts = owned
    lines, indexes = _shards_of(owners, texts, 3)
    written, written_in_python = [], []
    assert merge_lines(lines, indexes, per_block, False, lambda *block: written.append(block)) is None
    merge_lines_python(lines, indexes, per_block, False, lambda *block: written_in_python.append(block))
    assert written == written_in_python == [(b, b.count(b"\n")) for b in merge_lines(lines, indexes, per_block)]


@needs_c
@given(worker_lines, st.integers(1, 70))
def test_workers_pcap_records_merge_in_c_as_in_python(owned, per_block) -> None:
    owners, texts = owned
    records = [pcap_record(i * 0.5, t.encode(), len(t) + 4) for i, t in enumerate(texts)]
    buffers = [b"".join(r for r, o in zip(records, owners) if o == k) for k in range(3)]
    _, indexes = _shards_of(owners, texts, 3)
    merged = merge_lines(buffers, indexes, per_block, True)
    assert merged == merge_lines_python(buffers, indexes, per_block, True)
    assert b"".join(merged) == b"".join(records)


@needs_c
def test_merging_workers_records_refuses_a_record_cut_short() -> None:
    record = pcap_record(1.0, b"frame", 5)
    with pytest.raises(ValueError, match="worker 0 gave 0 whole records for 1 indexes"):
        merge_lines([record[:-1]], [array("q", [0]).tobytes()], 10, True)


@needs_c
def test_merging_workers_lines_takes_buffers_of_any_kind() -> None:
    lines, indexes = _shards_of([1, 0, 1], ["a", "b", "c"], 2)
    assert merge_lines([bytearray(b) for b in lines], [memoryview(i) for i in indexes], 2) == [b"a\nb\n", b"c\n"]


@needs_c
@pytest.mark.parametrize("lines, indexes, problem", [
    ([b"a\n", b""], [array("q", [0, 1]).tobytes(), b""], "worker 0 gave 1 whole lines for 2 indexes"),
    ([b"a\nb"], [array("q", [0, 1]).tobytes()], "worker 0 gave 1 whole lines for 2 indexes"),
    ([b"a\n"], [b"\0" * 7], "indexes must be aligned int64s"),
], ids=["missing line", "unended line", "odd index bytes"])
def test_merging_workers_lines_refuses_lines_and_indexes_that_disagree(lines, indexes, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        merge_lines(lines, indexes, 10)


@needs_c
def test_merging_workers_lines_refuses_what_is_not_two_lists_of_buffers() -> None:
    with pytest.raises(TypeError):
        merge_lines([b"a\n"], [], 1)
    with pytest.raises(TypeError):
        merge_lines(["a\n"], [array("q", [0]).tobytes()], 1)


def _ours_then_a_run_of_theirs(folder: Path) -> Path:
    """Shard 0's one connection, then a minute of shard 1's."""
    shards = Shards.of(load_scenario(SCENARIO), 2)
    clients = [f"198.51.100.{i}" for i in range(1, 40)]
    ours = next(c for c in clients if FrameShards(shards)(bytes(ether() / IP(src=c, dst=WEB1) / TCP()), 1) == 0)
    theirs = next(c for c in clients if FrameShards(shards)(bytes(ether() / IP(src=c, dst=WEB1) / TCP()), 1) == 1)
    frames = [ether() / IP(src=ours, dst=WEB1) / TCP(sport=40000, dport=80, flags="S")]
    frames += [ether() / IP(src=theirs, dst=WEB1) / TCP(sport=40001, dport=80, flags="S" if i == 0 else "A")
               for i in range(600)]
    for i, frame in enumerate(frames):
        frame.time = T0 + i * 0.1
    capture = folder / "runs.pcap"
    wrpcap(str(capture), frames)
    return capture


def _frames_looked_at_in_python(monkeypatch, capture: Path, outputs: "Outputs") -> int:
    """Frames whose shard Python worked out, the shards replayed one after the other in this process."""
    import dataplane.workers

    looked_at = []
    shard_of_frame = FrameShards.__call__
    monkeypatch.setattr(FrameShards, "__call__", lambda self, *a: looked_at.append(a) or shard_of_frame(self, *a))
    monkeypatch.setattr(dataplane.workers, "local_runner", lambda count: lambda function, calls: [function(*calls[0])])
    replay(load_scenario(SCENARIO), [str(capture)], outputs, workers=2)
    return len(looked_at)


@needs_c
def test_a_worker_walks_past_a_run_of_another_shards_frames_in_c(tmp_path, monkeypatch) -> None:
    """Each sweep stops shard 0's walk at one of shard 1's frames, and the walk goes on after it instead
    of Python reading every frame up to the end."""
    assert _frames_looked_at_in_python(monkeypatch, _ours_then_a_run_of_theirs(tmp_path), Outputs()) < 100


@needs_c
def test_a_worker_deciding_every_packet_of_its_shard_in_python_skips_another_shards_run_in_c(tmp_path,
                                                                                              monkeypatch) -> None:
    """Each of the shard's packets goes through Python (here to be written as translated): its frames are
    made in C, which skips the other shard's records."""
    outputs = Outputs(translated=str(tmp_path / "translated.pcap"))
    assert _frames_looked_at_in_python(monkeypatch, _ours_then_a_run_of_theirs(tmp_path), outputs) < 100


@needs_c
def test_a_worker_leaves_to_python_the_shard_only_of_frames_c_cannot_key(tmp_path, monkeypatch) -> None:
    """The denied packets written: each walk stops before a new flow, whose frame Python reads; C says
    whose it is (Ethernet, IPv4, not ICMP), as it does for the records it walks."""
    outputs = Outputs(denied=str(tmp_path / "denied.pcap"))
    assert _frames_looked_at_in_python(monkeypatch, _ours_then_a_run_of_theirs(tmp_path), outputs) == 0


@needs_c
def test_workers_writing_flow_logs_decide_new_flows_in_c(monkeypatch, tmp_path) -> None:
    """A port scan: each SYN a new flow, decided in the C walk, which tells the flow log its packet's place."""
    import dataplane.workers
    from dataplane.pipeline import Dataplane
    from dataplane.replay import Capture

    processed = []
    process = Dataplane.process
    monkeypatch.setattr(Dataplane, "process", lambda self, *args: processed.append(args) or process(self, *args))
    monkeypatch.setattr(dataplane.workers, "local_runner", lambda count: lambda function, calls: [function(*c) for c in calls])
    capture = DEMO / "scan.pcap"
    replay(load_scenario(SCENARIO), [str(capture)], Outputs(flow_log=str(tmp_path / "flow-log.json")), workers=2)
    assert len(processed) < len(list(Capture(str(capture)).frames())) / 3


@needs_c
@pytest.mark.parametrize("name", ["web", "rule-removal"])
def test_a_workers_allowed_records_made_in_c_are_placed_at_their_packets(name, monkeypatch) -> None:
    """The allowed packets written alone: the C walk makes most records, each with its packet's index."""
    from dataplane.pipeline import Dataplane
    from dataplane.replay import Capture, pcap_record
    from dataplane.workers import Wanted, run_shard

    capture = str(DEMO / f"{name}.pcap")
    frames = list(Capture(capture).frames())
    reference = Dataplane(load_scenario(SCENARIO))
    allowed = [(i, pcap_record(f.ts, f.data, max(f.wirelen, len(f.data)))) for i, f in enumerate(frames)
               if reference.process(f.data, f.ts, f.linktype).decision == "Allow"]
    processed = []
    process = Dataplane.process
    monkeypatch.setattr(Dataplane, "process", lambda self, *args: processed.append(args) or process(self, *args))
    scenario = load_scenario(SCENARIO)
    result = run_shard(scenario, [capture], [], Shards.of(scenario, 1), 0,
                       Wanted(False, False, False, Outputs(allowed="allowed.pcap")))
    linktype, made = result.framed["allowed"]
    assert (linktype, array("q", made.indexes).tolist()) == (1, [i for i, _ in allowed])
    assert made.records == b"".join(record for _, record in allowed)
    assert len(processed) < len(allowed)  # the C walk made the others


def test_a_sharded_replay_leaves_nothing_frozen_for_the_garbage_collector() -> None:
    """The first shard runs in the client process: what it freezes for its run thaws after it."""
    assert gc.get_freeze_count() == 0
    replay(load_scenario(SCENARIO), [str(DEMO / "web.pcap")], workers=2)
    assert gc.get_freeze_count() == 0


def test_objects_made_while_the_collector_is_paused_go_to_its_oldest_generation() -> None:
    """The young collection after a worker's results are read back must not walk each of them."""
    with collector_paused():
        made = [(i, [i]) for i in range(1000)]
    assert not {id(m) for m in made} & {id(o) for o in gc.get_objects(generation=0)}
    assert {id(m) for m in made} <= {id(o) for o in gc.get_objects(generation=2)}
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_pausing_the_collector_thaws_nothing_someone_else_froze() -> None:
    frozen = [[i] for i in range(10)]
    gc.freeze()
    try:
        with collector_paused():
            made = [[i] for i in range(10)]
        assert gc.get_freeze_count() > 0
        assert {id(m) for m in made} <= {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
    assert frozen and made


@pytest.mark.parametrize("cyclic", [False, True], ids=["plain", "cyclic"])
def test_a_workers_result_reads_back_equal_and_a_cycle_too(cyclic, tmp_path) -> None:
    shared = ("nsg-web", "AllowHttps")
    result = [(0, i, shared) for i in range(100)]
    if cyclic:
        result.append(result)
    with open(tmp_path / "result", "w+b") as kept:
        _dump_result((True, result), kept)
        done, back = _load_result(kept)
    assert done and back[:100] == result[:100]
    assert (back[100] is back) if cyclic else len(back) == 100


@needs_c
def test_a_workers_large_buffers_are_read_in_place_aligned_for_the_merge(tmp_path) -> None:
    """Verdict lines and their indexes (int64s, which merge_lines wants aligned) after an odd-sized pickle."""
    lines = NumberedLines(bytearray(), bytearray())
    for i in range(20_000):
        lines.add(2 * i, f"line {i}" + "x" * (i % 3))
    with open(tmp_path / "result", "w+b") as kept:
        _dump_result((True, ("odd", lines, bytearray(b"small"))), kept)
        done, (_, back, small) = _load_result(kept)
    assert isinstance(back.text, memoryview) and back.text == lines.text and back.indexes == lines.indexes
    assert small == bytearray(b"small")
    assert merge_lines([back.text], [back.indexes], 10**6) == [bytes(lines.text)]


def test_workers_auto_is_one_per_core() -> None:
    assert worker_count("auto") == os.cpu_count()


def test_a_worker_count_that_is_not_positive_is_an_error(capsys) -> None:
    assert main(["replay", str(SCENARIO), str(DEMO / "web.pcap"), "--workers", "0"]) == 2
    assert "--workers '0': expected a positive number" in capsys.readouterr().err


# -- the shard function ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards() -> Shards:
    return Shards.of(load_scenario(SCENARIO), 7)


def shard(shards: Shards, packet) -> int:
    return shard_of(shards, decode_frame(bytes(ether() / packet)))


def test_both_directions_of_a_flow_are_in_one_shard(shards) -> None:
    for i in range(50):
        client = f"198.51.100.{i}"
        assert shard(shards, IP(src=client, dst=JUMP_PUBLIC) / TCP(sport=1000 + i, dport=22)) == \
            shard(shards, IP(src=JUMP, dst=client) / TCP(sport=22, dport=1000 + i))


def test_flows_spread_over_every_shard(shards) -> None:
    seen = {shard(shards, IP(src=f"198.51.{i // 256}.{i % 256}", dst=FRONTEND) / TCP(dport=80)) for i in range(500)}
    assert seen == set(range(7))


def test_translated_and_untranslated_forms_are_in_one_shard(shards) -> None:
    before = shard(shards, IP(src=WEB1, dst=REMOTE) / TCP(sport=40000, dport=443))
    assert shard(shards, IP(src=FRONTEND, dst=REMOTE) / TCP(sport=1024, dport=443)) == before
    assert shard(shards, IP(src=REMOTE, dst=FRONTEND) / TCP(sport=443, dport=1024)) == before
    assert shard(shards, IP(src=REMOTE, dst=WEB1) / TCP(sport=443, dport=40000)) == before


def test_later_fragments_are_in_the_shard_of_the_first(shards) -> None:
    pieces = fragment(IP(src="198.18.1.1", dst=FRONTEND, id=9) / UDP(sport=5000, dport=80) / (b"x" * 3000),
                      fragsize=1000)
    assert len({shard(shards, p) for p in pieces}) == 1


def test_an_icmp_error_is_in_the_shard_of_the_flow_it_quotes(shards) -> None:
    flows = [(JUMP_PUBLIC, f"203.0.113.{i}") for i in range(30)]
    for inside, outside in flows:
        quoted = bytes(IP(src=inside, dst=outside) / TCP(sport=22, dport=53000))[:28]
        error = IP(src="192.0.2.1", dst=inside) / ICMP(type=3, code=4) / quoted
        assert shard(shards, error) == shard(shards, IP(src=outside, dst=JUMP) / TCP(sport=53000, dport=22))


def test_traffic_through_an_inside_frontend_goes_to_shard_zero(shards) -> None:
    assert shard(shards, IP(src=JUMP, dst=FRONTEND) / TCP(sport=3000, dport=80)) == 0
    assert shard(shards, IP(src=JUMP, dst=WEB1) / TCP(sport=3000, dport=8080)) == 0


ADDRESSES = st.sampled_from([FRONTEND, REMOTE, OFFICE, JUMP_PUBLIC, JUMP, WEB1, WEB2, "10.10.2.4", "10.20.0.1",
                             "198.18.0.1", "0.0.0.0", "255.255.255.255"]) | st.ip_addresses(v=4).map(str)


@needs_c
@given(ADDRESSES, ADDRESSES, st.sampled_from([1, 6, 17, 50]), st.integers(1, 9))
def test_the_c_shard_filter_shards_frames_as_frame_shards_does(src, dst, proto, count) -> None:
    """The C path skips other shards' records itself: it must agree with the Python keying, and leave
    to Python the frames it does not key (ICMP, whose errors are keyed by what they quote)."""
    frame = bytes(ether() / IP(src=src, dst=dst, proto=proto) / (b"\0" * 20))
    shards = Shards.of(load_scenario(SCENARIO), count)
    c_shard = shard_filter_of(shards, 0).shard(frame)
    assert c_shard == (-1 if proto == 1 else FrameShards(shards)(frame, 1))


@pytest.mark.parametrize("name", ["web", "scan", "rule-removal", "icmp-ipv6"])
def test_two_workers_sum_up_what_one_does_when_nothing_is_written_per_packet(name, tmp_path) -> None:
    """Without per-packet outputs each worker's C path walks the whole capture, skipping other shards'."""
    outputs = {"--summary": "summary.json"}
    one = run(SCENARIO, DEMO / f"{name}.pcap", tmp_path / "one", outputs=outputs)
    two = run(SCENARIO, DEMO / f"{name}.pcap", tmp_path / "two", "--workers", "2", outputs=outputs)
    assert two == one


@pytest.mark.parametrize("name", shared_captures(), ids=str)
def test_two_workers_sum_up_every_shared_capture_as_one_does_when_nothing_is_written_per_packet(name, tmp_path) -> None:
    capture = scenario_capture(SHARED_PCAPS / name, tmp_path)
    outputs = {"--summary": "summary.json"}
    one = run(SHARED_SCENARIO, capture, tmp_path / "one", outputs=outputs)
    two = run(SHARED_SCENARIO, capture, tmp_path / "two", "--workers", "2", outputs=outputs)
    assert two == one


def test_a_frame_that_is_not_ip_goes_to_shard_zero(shards) -> None:
    from scapy.layers.l2 import ARP
    assert shard(shards, ARP(psrc="10.10.1.4", pdst="10.10.1.5")) == 0


# -- Dask ------------------------------------------------------------------------------------------------


def test_dask_local_writes_what_the_local_run_writes(tmp_path) -> None:
    pytest.importorskip("distributed", reason="dask's distributed is not installed: pip install 'dataplane[cluster]'")
    one = run(SCENARIO, DEMO / "web.pcap", tmp_path / "one")
    dask = run(SCENARIO, DEMO / "web.pcap", tmp_path / "dask", "--dask", "local", "--workers", "2")
    assert dask == one


def test_dask_without_the_cluster_extra_is_an_error_naming_it(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    status = main(["replay", str(SCENARIO), str(DEMO / "web.pcap"), "--dask", "local"])
    err = capsys.readouterr().err
    assert status == 2
    assert "pip install 'dataplane[cluster]'" in err and "Traceback" not in err


# -- whatif ----------------------------------------------------------------------------------------------

LOCKED = DEMO / "nsg-jump-locked.json"


def run_whatif(capsys, folder: Path, traffic: list[Path], *options: str) -> tuple[int, str, bytes]:
    """whatif's exit status, printed report and JSON lines."""
    folder.mkdir()
    status = main(["whatif", str(SCENARIO), "--change", str(LOCKED), *map(str, traffic),
                   "--json", str(folder / "changes.jsonl"), *options])
    return status, capsys.readouterr().out, (folder / "changes.jsonl").read_bytes()


@pytest.mark.parametrize("name", ["web", "rule-removal", "scan", "icmp-ipv6"])
def test_two_workers_give_the_whatif_report_of_one_on_captures(name, tmp_path, capsys) -> None:
    one = run_whatif(capsys, tmp_path / "one", [DEMO / f"{name}.pcap"])
    two = run_whatif(capsys, tmp_path / "two", [DEMO / f"{name}.pcap"], "--workers", "2")
    assert two == one


def test_two_workers_give_the_whatif_report_of_one_on_several_and_compressed_captures(tmp_path, capsys) -> None:
    """Not one mapped capture: each worker reads the frames in Python (`ShardFrames`), not in C walks."""
    packed = tmp_path / "scan.pcap.gz"
    packed.write_bytes(gzip.compress((DEMO / "scan.pcap").read_bytes()))
    traffic = [DEMO / "web.pcap", DEMO / "rule-removal.pcap", packed]
    one = run_whatif(capsys, tmp_path / "one", traffic)
    assert one[2]
    assert run_whatif(capsys, tmp_path / "two", traffic, "--workers", "2") == one


def test_two_workers_give_the_whatif_report_of_one_on_flow_logs(tmp_path, capsys) -> None:
    logs = demo_flow_logs(tmp_path, capsys)
    before, after = scenarios(str(SCENARIO), [str(LOCKED)])
    one = whatif(before, after, list(map(str, logs)))
    assert one.changes
    assert whatif(before, after, list(map(str, logs)), workers=2) == one


def test_whatif_dask_local_reports_what_the_local_run_reports(tmp_path, capsys) -> None:
    pytest.importorskip("distributed", reason="dask's distributed is not installed: pip install 'dataplane[cluster]'")
    one = run_whatif(capsys, tmp_path / "one", [DEMO / "rule-removal.pcap"])
    dask = run_whatif(capsys, tmp_path / "dask", [DEMO / "rule-removal.pcap"], "--dask", "local", "--workers", "2")
    assert dask == one


def test_whatif_dask_without_the_cluster_extra_is_an_error_naming_it(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    status = main(["whatif", str(SCENARIO), "--change", str(LOCKED), str(DEMO / "web.pcap"), "--dask", "local"])
    err = capsys.readouterr().err
    assert status == 2
    assert "pip install 'dataplane[cluster]'" in err and "Traceback" not in err


# -- replay of flow logs ---------------------------------------------------------------------------------

FLOW_LOG_OUTPUTS = {"--verdicts": "verdicts.jsonl", "--summary": "summary.json"}


def demo_flow_logs(folder: Path, capsys) -> list[Path]:
    """Our NSG and VNet flow logs of the demo captures."""
    logs = []
    for name in ("web", "rule-removal", "scan"):
        for option in ("--flow-log", "--vnet-flow-log"):
            logs.append(folder / f"{name}{option}.json")
            main(["replay", str(SCENARIO), str(DEMO / f"{name}.pcap"), option, str(logs[-1])])
    capsys.readouterr()
    return logs


def run_flow_logs(folder: Path, logs: list[Path], *options: str) -> dict:
    folder.mkdir()
    argv = ["replay", str(SCENARIO), *map(str, logs), *options]
    for option, name in FLOW_LOG_OUTPUTS.items():
        argv += [option, str(folder / name)]
    files = {"status": main(argv), "verdicts": (folder / "verdicts.jsonl").read_bytes()}
    summary = json.loads((folder / "summary.json").read_text())
    del summary["packets_per_second"]
    return files | {"summary": summary}


def test_two_workers_replay_flow_logs_as_one_does(tmp_path, capsys) -> None:
    logs = demo_flow_logs(tmp_path, capsys)
    one = run_flow_logs(tmp_path / "one", logs)
    assert one["verdicts"]
    assert run_flow_logs(tmp_path / "two", logs, "--workers", "2") == one


def test_a_malformed_flow_log_gives_two_workers_the_error_and_outputs_of_one(tmp_path, capsys) -> None:
    logs = demo_flow_logs(tmp_path, capsys)
    broken = tmp_path / "PT1H.json"
    broken.write_text(json.dumps({"records": [{"time": "2024-05-01T10:00:00Z", "macAddress": "000D3A000001",
                                               "flowRecords": {"flows": [{"aclID": "x", "flowGroups": [
                                                   {"rule": "r", "flowTuples": ["1,2,3"]}]}]}}]}))
    one = run_flow_logs(tmp_path / "one", [*logs, broken])
    one_err = capsys.readouterr().err
    two = run_flow_logs(tmp_path / "two", [*logs, broken], "--workers", "2")
    assert two == one and one["status"] == 2 and one["summary"]["error"] and one["verdicts"]
    assert capsys.readouterr().err == one_err
