"""Bad input, run as a user runs it: a subprocess, exit status 2, a message naming the input, no traceback."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from dataplane.documents import _shallow, bounded_loaders, parse_yaml
from dataplane.errors import DataplaneError
from frames import ether

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pcaps" / "demo"
SCENARIO = DEMO / "scenario.yaml"
NSG_JSON = ROOT / "tests" / "fixtures" / "shapes" / "rest.json"
OFFICE, JUMP_PUBLIC, JUMP = "203.0.113.50", "20.50.1.10", "10.10.3.4"


def dataplane(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataplane.cli", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=120, cwd=ROOT)


def assert_refused(result: subprocess.CompletedProcess, *named: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    for text in named:
        assert text in result.stderr, (text, result.stderr)


def ssh_session(n: int = 3, t0: float = 1_700_000_000.0) -> list:
    packets = []
    for i in range(n):
        syn = ether() / IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(sport=50000 + i, dport=22, flags="S")
        syn.time = t0 + i
        packets.append(syn)
    return packets


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "ssh.pcap"
    wrpcap(str(path), ssh_session())
    return path


# -- arguments and documents ------------------------------------------------------------------------

def test_an_address_space_that_is_not_a_prefix_is_refused() -> None:
    result = dataplane("check", "--nsg", NSG_JSON, "--direction", "inbound", "--address-space", "foo",
                       "tcp 1.2.3.4:1 > 10.0.0.4:80")
    assert_refused(result, "--address-space", "'foo'")


def test_an_ipv6_endpoint_with_a_port_but_no_brackets_is_refused_with_the_bracketed_form() -> None:
    result = dataplane("check", "--scenario", SCENARIO, "tcp 2001:db8::1:80 > fd00::4:22")
    assert_refused(result, "[2001:db8::1]:80")


@pytest.mark.parametrize("kind", ["nsg", "scenario", "update", "expectations", "service-tags"])
@pytest.mark.parametrize("problem, text, message", [
    ("deep-json", "[" * 100_000 + "]" * 100_000, "nested deeper than"),
    ("long-number", '{"x": ' + "9" * 5000 + "}", "more than 100 digits"),
], ids=["deep-json", "long-number"])
def test_a_hostile_json_document_is_refused_wherever_a_file_is_read(tmp_path: Path, capture: Path, kind: str,
                                                                   problem: str, text: str, message: str) -> None:
    bad = tmp_path / f"{problem}.json"
    bad.write_text(text)
    result = _read_as(kind, bad, capture)
    assert_refused(result, str(bad), message)


def test_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "deep.yaml"
    bad.write_text("x: " + "[" * 3000 + "]" * 3000 + "\n")
    assert_refused(dataplane("check", "--scenario", bad, "tcp 1.2.3.4:1 > 10.0.0.4:80"), str(bad),
                   "nested deeper than")


@pytest.mark.parametrize("text", ["- " * 300 + "x\n", "".join(" " * i + "a:\n" for i in range(300)) + " " * 300 + "b\n"],
                         ids=["compact-sequences", "indented-mappings"])
def test_yaml_nested_deeply_in_block_style_is_refused(tmp_path: Path, text: str) -> None:
    """libyaml's composer, which reads the shallow documents, has no depth check: these must not reach it."""
    bad = tmp_path / "deep.yaml"
    bad.write_text(text)
    assert_refused(dataplane("check", "--scenario", bad, "tcp 1.2.3.4:1 > 10.0.0.4:80"), str(bad),
                   "nested deeper than")


@given(st.recursive(st.integers() | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3), max_leaves=30),
       st.sampled_from([False, True, None]))
def test_libyaml_and_the_python_reader_read_a_document_alike(doc, flow_style) -> None:
    text = yaml.safe_dump({"doc": doc}, default_flow_style=flow_style)
    assert _shallow(text)
    assert parse_yaml(text) == yaml.load(text, Loader=bounded_loaders()[0]) == {"doc": doc}


@pytest.mark.parametrize("text", ["c: {<<: {b: 1}, d: 2}", "!!set {a, b}", "x: !!binary aGVsbG8=", "a: 2001-01-01",
                                  "a: [1, 2.5, true, null, ~, 0x10, '7', 1_000]", "!!omap [a: 1, b: 2]"],
                         ids=["merge-key", "set", "binary", "timestamp", "scalars", "omap"])
def test_the_plain_yaml_builder_leaves_what_it_does_not_build_to_pyyaml(text: str) -> None:
    assert parse_yaml(text) == yaml.load(text, Loader=bounded_loaders()[0])


def test_an_unhashable_yaml_key_is_an_error_as_pyyaml_reads_it() -> None:
    with pytest.raises(DataplaneError, match="is not valid JSON or YAML at line 1"):
        parse_yaml("? [1, 2]\n: x\n")


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    result = dataplane("check", "--scenario", bomb, "tcp 1.2.3.4:1 > 10.0.0.4:80")
    assert time.perf_counter() - started < 10
    assert_refused(result, str(bomb), "alias")


def _read_as(kind: str, bad: Path, capture: Path) -> subprocess.CompletedProcess:
    if kind == "nsg":
        return dataplane("check", "--nsg", bad, "--direction", "inbound", "tcp 1.2.3.4:1 > 10.0.0.4:80")
    if kind == "scenario":
        return dataplane("replay", bad, capture)
    if kind == "update":
        return dataplane("replay", SCENARIO, capture, "--update", f"1={bad}")
    if kind == "expectations":
        return dataplane("check", "--scenario", SCENARIO, "--expectations", bad)
    return dataplane("check", "--nsg", NSG_JSON, "--direction", "inbound", "--service-tags", bad,
                     "tcp 1.2.3.4:1 > 10.0.0.4:80")


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_a_timeout_that_is_not_finite_is_a_lint_problem(tmp_path: Path, value: str) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.read_text() + f"\ntimeouts: {{udp: {value}}}\n")
    result = dataplane("lint", scenario)
    assert result.returncode == 1
    assert "timeouts.udp" in result.stdout + result.stderr and "finite" in result.stdout + result.stderr


# -- captures ---------------------------------------------------------------------------------------

def test_a_corrupt_gzip_capture_is_named_with_its_byte_offset_and_outputs_are_kept(tmp_path: Path) -> None:
    packets = ssh_session(2000)
    plain = tmp_path / "plain.pcap"
    wrpcap(str(plain), packets)
    data = bytearray(gzip.compress(plain.read_bytes(), compresslevel=0))
    second_block = 10 + 5 + 65535  # gzip header, then stored deflate blocks of 65,535 bytes after 5 of header
    data[second_block + 3] ^= 0xFF  # the block's length check no longer matches: zlib.error
    corrupt = tmp_path / "corrupt.pcap.gz"
    corrupt.write_bytes(bytes(data))
    verdicts, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    result = dataplane("replay", SCENARIO, corrupt, "--verdicts", verdicts, "--summary", summary)
    assert_refused(result, str(corrupt), "corrupt compressed data near byte")
    assert len(verdicts.read_text().splitlines()) == json.loads(summary.read_text())["packets"] > 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fill a disk")
def test_an_output_that_fails_mid_run_is_named(capture: Path) -> None:
    result = dataplane("replay", SCENARIO, capture, "--verdicts", "/dev/full")
    assert_refused(result, "/dev/full", "cannot write")


def test_the_same_file_for_two_outputs_is_refused_before_anything_is_written(tmp_path: Path, capture: Path) -> None:
    out = tmp_path / "out.json"
    result = dataplane("replay", SCENARIO, capture, "--summary", out, "--flow-log", out)
    assert_refused(result, str(out), "--flow-log", "--summary")
    assert not out.exists()


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path: Path, capture: Path) -> None:
    before = capture.read_bytes()
    assert_refused(dataplane("replay", SCENARIO, capture, "--denied", capture), "would overwrite a capture")
    assert capture.read_bytes() == before


@pytest.mark.parametrize("time_text", ["nan", "inf", "-1"])
def test_an_update_time_that_is_not_a_time_in_the_capture_is_refused(capture: Path, time_text: str) -> None:
    result = dataplane("replay", SCENARIO, capture, "--update", f"{time_text}={DEMO / 'nsg-jump-locked.json'}")
    assert_refused(result, "--update")


def test_an_update_after_the_end_of_the_capture_is_a_warning_in_the_summary(tmp_path: Path, capture: Path) -> None:
    summary = tmp_path / "s.json"
    result = dataplane("replay", SCENARIO, capture, "--update", f"3600={DEMO / 'nsg-jump-locked.json'}",
                       "--summary", summary)
    assert result.returncode == 0
    warnings = json.loads(summary.read_text())["warnings"]
    assert len(warnings) == 1 and "was never applied" in warnings[0] and "nsg-jump" in warnings[0]
    assert "was never applied" in result.stderr


def test_an_output_capture_with_no_packets_is_an_empty_valid_pcap(tmp_path: Path, capture: Path) -> None:
    denied = tmp_path / "denied.pcap"
    assert dataplane("replay", SCENARIO, capture, "--denied", denied).returncode == 0
    assert struct.unpack("<IHHiIII", denied.read_bytes()) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)


def test_packets_of_a_link_type_not_read_are_counted_once_on_stderr_and_in_the_summary(tmp_path: Path) -> None:
    frames = [bytes(ether() / IP(src=OFFICE, dst=JUMP_PUBLIC) / TCP(dport=22, flags="S"))] * 3
    radio = tmp_path / "tokenring.pcap"
    radio.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147) + b"".join(
        struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f for i, f in enumerate(frames)))
    summary = tmp_path / "s.json"
    result = dataplane("replay", SCENARIO, radio, "--summary", summary)
    assert result.returncode == 0
    assert json.loads(summary.read_text())["unsupported_link_types"] == {"147": 3}
    assert result.stderr.count("link type 147") == 1


def test_timestamps_going_backwards_are_replayed_in_file_order_and_counted(tmp_path: Path) -> None:
    packets = ssh_session(4)
    packets[2].time -= 10
    capture = tmp_path / "backwards.pcap"
    wrpcap(str(capture), packets)
    summary = tmp_path / "s.json"
    result = dataplane("replay", SCENARIO, capture, "--summary", summary)
    assert result.returncode == 0
    doc = json.loads(summary.read_text())
    assert (doc["timestamps_backwards"], doc["packets"]) == (1, 4)
    assert "earlier than the packet before them" in result.stderr


# -- pipes and signals --------------------------------------------------------------------------------

def test_a_closed_pipe_does_not_turn_a_failing_lint_into_success(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    rules = [{"name": f"r{i}", "properties": {"priority": 5, "direction": "Inbound", "access": "Allow",
                                              "protocol": "Tcp", "sourceAddressPrefix": "*",
                                              "sourcePortRange": "*", "destinationAddressPrefix": "*",
                                              "destinationPortRange": "22"}} for i in range(2000)]
    bad.write_text(json.dumps({"name": "nsg", "properties": {"securityRules": rules}}))
    reader, writer = os.pipe()
    process = subprocess.Popen([sys.executable, "-m", "dataplane.cli", "lint", str(bad)], stdout=writer,
                               stderr=subprocess.PIPE, cwd=ROOT)
    os.close(writer)
    os.close(reader)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert b"Traceback" not in stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_replay_writes_every_output_and_says_so(tmp_path: Path, signum: int, status: int) -> None:
    if signal.getsignal(signum) == signal.SIG_IGN:  # a background job's: the replay inherits it and would wait on
        pytest.skip(f"{signal.Signals(signum).name} is ignored in this process (started in the background), "
                    "and so in the replay it starts")
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    verdicts, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    process = subprocess.Popen([sys.executable, "-m", "dataplane.cli", "replay", str(SCENARIO), str(fifo),
                                "--verdicts", str(verdicts), "--summary", str(summary)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    frames = [bytes(p) for p in ssh_session(5)]
    with open(fifo, "wb") as live:
        live.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(
            struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f for i, f in enumerate(frames)))
        live.flush()
        time.sleep(2)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert b"Traceback" not in stderr
    doc = json.loads(summary.read_text())
    assert doc["interrupted"] is True and doc["packets"] == 5
    assert len(verdicts.read_text().splitlines()) == 5
