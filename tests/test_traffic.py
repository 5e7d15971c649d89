"""Azure flow logs read as traffic: NSG flow log v2 and VNet flow log v4, as Azure stores them, as
Elastic forwards them and as `replay` writes them; flows decided at their NIC; malformed logs named."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from ipaddress import ip_address
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from dataplane.cli import main
from dataplane.errors import CaptureError
from dataplane.flowlog import mac_of
from dataplane.topology import scenario_from_document
from dataplane import traffic
from dataplane.flows import key_to_flow
from dataplane.documents import is_flow_log
from dataplane.traffic import (DENIED_IDLE, FlowDecider, LoggedFlow, Addresses, flow_log_files, flow_text,
                               read_flow_logs, rows_fast, rows_plain)

from datafiles import SHARED_DATA, need
from frames import ether

FLOWLOGS = SHARED_DATA.parent / "realworld" / "flowlogs"
NIC_MAC = "000D3AF87856"


def vnet_record(tuples, mac=NIC_MAC, time="2024-05-01T10:00:00Z", rule="UserRule_AllowWeb"):
    return {"time": time, "flowLogVersion": 4, "macAddress": mac, "category": "FlowLogFlowEvent",
            "flowRecords": {"flows": [{"aclID": "/x/NETWORKSECURITYGROUPS/NSG-WEB",
                                       "flowGroups": [{"rule": rule, "flowTuples": tuples}]}]}}


def nsg_record(tuples, mac=NIC_MAC, time="2024-05-01T10:00:00Z", rule="UserRule_AllowWeb"):
    return {"time": time, "category": "NetworkSecurityGroupFlowEvent", "resourceId": "/x/NSG-WEB",
            "properties": {"Version": 2, "flows": [{"rule": rule, "flows": [{"mac": mac, "flowTuples": tuples}]}]}}


def write(path: Path, records, compress=False, mkdir=False) -> str:
    if mkdir:
        path.parent.mkdir(parents=True)
    data = json.dumps({"records": records}).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def flows(*paths, accelerated=True):
    return list(read_flow_logs([str(p) for p in paths], accelerated=accelerated))


# -- Azure's and Elastic's samples ----------------------------------------------------------------

def test_azure_nsg_v2_sample_holds_eleven_flows_seven_of_them_denied():
    found = flows(need(FLOWLOGS / "azure-docs-nsg-v2-sample.json"))
    assert len(found) == 11
    assert sum(f.logged == "Deny" for f in found) == 7


def test_azure_nsg_v2_sample_keeps_a_flow_first_seen_continuing_with_its_counters():
    found = flows(need(FLOWLOGS / "azure-docs-nsg-v2-sample.json"))
    running = next(f for f in found if f.key[5] == 443 and f.began == "C")
    assert (running.packets_out, running.bytes_out, running.packets_in, running.bytes_in) == (30, 16978, 24, 14008)


def test_azure_vnet_v4_sample_holds_fourteen_flows_five_of_them_allowed():
    found = flows(need(FLOWLOGS / "azure-docs-vnet-v4-sample.json"))
    assert len(found) == 14
    assert sorted(f.key[3] for f in found if f.logged == "Allow") == [22730, 22732, 22734, 23956, 36776]


def test_azure_vnet_v4_sample_flows_add_their_tuples_and_keep_milliseconds():
    found = flows(need(FLOWLOGS / "azure-docs-vnet-v4-sample.json"))
    flow = next(f for f in found if f.key[3] == 36776)
    assert (flow.first, flow.last, flow.packets, flow.bytes) == (1663146017.343, 1663146022.793, 55, 34683)


@pytest.mark.parametrize("name, count", [("elastic-test-nsg.log", 1), ("elastic-test-vnet.log", 2)])
def test_elastic_fixtures_of_one_record_per_line_are_read(name, count):
    assert len(flows(need(FLOWLOGS / name))) == count


# -- flows from tuples ----------------------------------------------------------------------------

def test_begin_continue_end_make_one_flow_whose_counters_add_up(tmp_path):
    log = write(tmp_path / "PT1H.json", [
        nsg_record(["1714557600,203.0.113.7,10.0.1.4,50000,443,T,I,A,B,,,,"]),
        nsg_record(["1714557660,203.0.113.7,10.0.1.4,50000,443,T,I,A,C,1021,588096,8005,4610880"],
                   time="2024-05-01T10:01:00Z"),
        nsg_record(["1714557720,203.0.113.7,10.0.1.4,50000,443,T,I,A,E,52,29952,47,27072"],
                   time="2024-05-01T10:02:00Z")])
    [flow] = flows(log)
    assert (flow.began, flow.first, flow.last, flow.packets) == ("B", 1714557600, 1714557720, 9125)
    assert (flow.flow, flow.direction) == ("tcp 203.0.113.7:50000 > 10.0.1.4:443", "Inbound")


def test_a_flow_without_its_end_ends_with_the_logs(tmp_path):
    log = write(tmp_path / "v.json", [vnet_record(["1714557600000,10.0.1.4,93.184.216.34,40000,443,6,O,B,NX,0,0,0,0",
                                                   "1714557630000,10.0.1.4,93.184.216.34,40000,443,6,O,C,NX,5,500,4,4000"])])
    [flow] = flows(log)
    assert (flow.last, flow.packets, flow.bytes) == (1714557630.0, 9, 4500)


def test_denied_tuples_of_one_five_tuple_join_while_they_recur(tmp_path):
    tuples = [f"{1714557600000 + i * 60_000},203.0.113.9,10.0.1.4,5353,53,17,I,D,NX,1,80,0,0" for i in range(3)]
    [flow] = flows(write(tmp_path / "v.json", [vnet_record(tuples)]))
    assert (flow.logged, flow.began, flow.packets, flow.last - flow.first) == ("Deny", "D", 3, 120)


def test_a_denied_tuple_after_an_idle_gap_is_another_flow(tmp_path):
    later = 1714557600000 + int(DENIED_IDLE * 1000) + 1000
    tuples = [f"{t},203.0.113.9,10.0.1.4,5353,53,17,I,D,NX,0,0,0,0" for t in (1714557600000, later)]
    assert len(flows(write(tmp_path / "v.json", [vnet_record(tuples)]))) == 2


def test_ipv6_and_icmp_tuples_are_read(tmp_path):
    log = write(tmp_path / "n.json", [nsg_record(["1714557600,2001:db8::7,fd00:1::4,0,0,I,I,D,B,,,,"])])
    [flow] = flows(log)
    assert flow.flow == "icmpv6 2001:db8::7 > fd00:1::4"


# -- inputs ---------------------------------------------------------------------------------------

def test_the_kind_is_read_from_the_content_not_the_name(tmp_path):
    log = write(tmp_path / "traffic.pcap", [vnet_record([])])
    capture = tmp_path / "capture.json"
    wrpcap(str(capture), [ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP()])
    assert (is_flow_log(log), is_flow_log(str(capture))) == (True, False)


def test_gzip_logs_read_as_plain_ones(tmp_path):
    tuples = ["1714557600000,10.0.1.4,93.184.216.34,40000,443,6,O,B,NX,0,0,0,0"]
    plain, packed = write(tmp_path / "a.json", [vnet_record(tuples)]), write(tmp_path / "b.json.gz",
                                                                            [vnet_record(tuples)], compress=True)
    assert is_flow_log(packed)
    assert flows(plain) == flows(packed)


def hour_file(root: Path, top: str, hour: int, tuples: list[str]) -> str:
    folder = root / top / f"y=2024/m=05/d=01/h={hour:02}/m=00/macAddress={NIC_MAC}"
    folder.mkdir(parents=True)
    return write(folder / "PT1H.json", [vnet_record(tuples, time=f"2024-05-01T{hour:02}:59:00Z")])


def test_a_storage_tree_is_read_hour_by_hour_whatever_the_folders_above_the_hour(tmp_path):
    later = hour_file(tmp_path, "NETWORKSECURITYGROUPS/NSG-A", 10, [])
    earlier = hour_file(tmp_path, "NETWORKSECURITYGROUPS/NSG-B", 9, [])
    assert flow_log_files([str(tmp_path)]) == [[earlier], [later]]


def test_a_flow_begun_in_one_hours_file_ends_in_the_next(tmp_path):
    hour_file(tmp_path, "FLOWLOGS/X", 9, ["1714557540000,10.0.1.4,93.184.216.34,40000,443,6,O,B,NX,0,0,0,0"])
    hour_file(tmp_path, "FLOWLOGS/X", 10, ["1714557660000,10.0.1.4,93.184.216.34,40000,443,6,O,E,NX,3,300,2,200"])
    [flow] = flows(tmp_path)
    assert (flow.began, flow.packets) == ("B", 5)


# -- malformed logs -------------------------------------------------------------------------------

@pytest.mark.parametrize("tuple_, problem", [
    ("1714557600000,10.0.1.999,10.0.1.4,1,2,6,I,B,NX,0,0,0,0", "'10.0.1.999' is not an IP address"),
    ("1714557600000,10.0.1.5,10.0.1.4,1,2,6,I,B,NX,0,0,0", "12 fields, version 4 has 13"),
    ("1714557600000,10.0.1.5,10.0.1.4,1,70000,6,I,B,NX,0,0,0,0", "port '70000'"),
    ("1714557600000,10.0.1.5,10.0.1.4,1,2,6,X,B,NX,0,0,0,0", "direction 'X' is not I or O"),
    ("1714557600000,10.0.1.5,10.0.1.4,1,2,6,I,Q,NX,0,0,0,0", "flow state 'Q'"),
    ("1714557600000,10.0.1.5,10.0.1.4,1,2,T,I,B,NX,0,0,0,0", "protocol 'T'"),
    ("1714557600000,10.0.1.5,10.0.1.4,1,2,6,I,B,NX,a,0,0,0", "counters"),
])
@pytest.mark.parametrize("accelerated", [True, False])
def test_a_bad_tuple_is_an_error_naming_file_record_and_tuple(tmp_path, tuple_, problem, accelerated):
    log = write(tmp_path / "PT1H.json", [vnet_record([]), vnet_record([tuple_])])
    with pytest.raises(CaptureError) as caught:
        flows(log, accelerated=accelerated)
    assert str(caught.value).startswith(f"{log}: record 1: tuple {tuple_!r}: ")
    assert problem in str(caught.value)


def test_bad_json_is_an_error_naming_file_and_place(tmp_path):
    log = tmp_path / "PT1H.json"
    log.write_text('{"records": [{"time": "x",}]}')
    with pytest.raises(CaptureError, match=rf"^{log}: not valid JSON: line 1 column 27"):
        flows(log)


def test_a_truncated_gzip_log_is_an_error_naming_the_file(tmp_path):
    log = tmp_path / "PT1H.json.gz"
    log.write_bytes(gzip.compress(json.dumps({"records": [vnet_record([])] * 50}).encode())[:-30])
    with pytest.raises(CaptureError, match=rf"^{log}: corrupt or truncated gzip"):
        flows(log)


def test_a_record_missing_its_tuples_is_an_error_naming_the_record(tmp_path):
    record = vnet_record([])
    del record["flowRecords"]["flows"][0]["flowGroups"][0]["flowTuples"]
    log = write(tmp_path / "PT1H.json", [record])
    with pytest.raises(CaptureError, match=r"record 0: no 'flowTuples'"):
        flows(log)


def test_nsg_flow_log_version_1_is_refused_by_name(tmp_path):
    record = nsg_record([])
    record["properties"]["Version"] = 1
    with pytest.raises(CaptureError, match=r"record 0: properties.Version 1"):
        flows(write(tmp_path / "PT1H.json", [record]))


# -- deciding at the NIC --------------------------------------------------------------------------

SCENARIO = {
    "virtual_networks": [{"name": "vnet", "address_space": ["10.0.0.0/16"],
                          "subnets": [{"name": "web", "prefix": "10.0.1.0/24"}]}],
    "network_interfaces": [{"name": "web-nic", "subnet": "vnet/web", "private_ips": ["10.0.1.4"], "nsg": "nsg-web"},
                           {"name": "other-nic", "subnet": "vnet/web", "private_ips": ["10.0.1.5"]}],
    "network_security_groups": [{"name": "nsg-web", "security_rules": [
        {"name": "AllowWeb", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
         "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
         "destinationPortRange": "443"}]}],
}


def one_flow(tmp_path, tuple_, mac):
    return flows(write(tmp_path / "v.json", [vnet_record([tuple_], mac=mac)]))[0]


def test_a_flow_is_decided_at_the_nic_of_its_mac(tmp_path):
    """The tuple's address is other-nic's, but the MAC names web-nic: web-nic's rules decide."""
    flow = one_flow(tmp_path, "1714557600000,203.0.113.7,10.0.1.5,5000,443,6,I,B,NX,0,0,0,0", mac_of("web-nic"))
    decided = FlowDecider(scenario_from_document(SCENARIO)).decide(flow)
    assert (decided.nic, decided.decision, decided.rule) == ("web-nic", "Allow", "AllowWeb")


def test_without_a_known_mac_the_nic_side_address_chooses_the_nic(tmp_path):
    flow = one_flow(tmp_path, "1714557600000,203.0.113.7,10.0.1.5,5000,443,6,I,B,NX,0,0,0,0", "001122334455")
    decided = FlowDecider(scenario_from_document(SCENARIO)).decide(flow)
    assert (decided.nic, decided.decision, decided.reason) == ("other-nic", "Allow", "no-nsg")


def test_a_flow_of_no_nic_is_not_decided(tmp_path):
    flow = one_flow(tmp_path, "1714557600000,10.0.1.4,203.0.113.7,5000,443,6,I,B,NX,0,0,0,0", "001122334455")
    assert FlowDecider(scenario_from_document(SCENARIO)).decide(flow) is None


# -- replay of flow logs --------------------------------------------------------------------------

@pytest.fixture
def scenario_file(tmp_path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return path


@pytest.fixture
def log(tmp_path) -> str:
    return write(tmp_path / "PT1H.json", [vnet_record([
        "1714557600000,203.0.113.7,10.0.1.4,5000,443,6,I,B,NX,0,0,0,0",
        "1714557610000,203.0.113.7,10.0.1.4,5000,443,6,I,E,NX,4,400,3,3000",
        "1714557620000,203.0.113.8,10.0.1.4,5001,22,6,I,D,NX,0,0,0,0",
        "1714557630000,192.0.2.1,192.0.2.2,5002,22,6,I,D,NX,0,0,0,0"], mac="001122334455")])


def test_replay_of_a_flow_log_writes_one_verdict_per_flow_with_packets_and_bytes(capsys, tmp_path,
                                                                                 scenario_file, log):
    verdicts = tmp_path / "v.jsonl"
    assert main(["replay", str(scenario_file), log, "--verdicts", str(verdicts)]) == 0
    lines = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert [(v["flow"], v["decision"], v["rule"], v["packets"], v["bytes"]) for v in lines] == [
        ("tcp 203.0.113.7:5000 > 10.0.1.4:443", "Allow", "AllowWeb", 7, 3400),
        ("tcp 203.0.113.8:5001 > 10.0.1.4:22", "Deny", "DenyAllInBound", 0, 0),
        ("tcp 192.0.2.1:5002 > 192.0.2.2:22", "Skip", None, 0, 0)]


def test_replay_of_a_flow_log_counts_flows_by_decision(capsys, tmp_path, scenario_file, log):
    summary = tmp_path / "s.json"
    assert main(["replay", str(scenario_file), log, "--summary", str(summary)]) == 0
    assert json.loads(summary.read_text())["flows"] == {"allowed": 1, "denied": 1, "not_in_scenario": 1,
                                                        "decided_otherwise": 0}


def test_replay_of_a_flow_log_refuses_capture_outputs(capsys, tmp_path, scenario_file, log):
    assert main(["replay", str(scenario_file), log, "--denied", str(tmp_path / "d.pcap")]) == 2
    assert "--denied needs captures" in capsys.readouterr().err


# -- the fast paths agree with the plain ones -----------------------------------------------------

VALID = {  # field → values valid in both versions, or (version 2 values, version 4 values)
    0: ["1714557600", "1714557600123"], 1: ["203.0.113.7", "10.0.1.5"], 2: ["10.0.1.4", "198.51.100.1"],
    3: ["0", "50000", "65535"], 4: ["443", "0", "53"], 5: (["T", "U", "I", "47"], ["6", "17", "1", "47"]),
    6: ["I", "O"], 7: (["A", "D"], ["B", "C", "E", "D"]), 8: (["B", "C", "E"], ["NX", "X"]),
    9: ["0", "12"], 10: ["0", "1400"], 11: ["0", "8"], 12: ["0", "12000"],
}
BAD = ["", "-5", "17e3", "１２", " 80", "+1", "65536", "10.0.1.999", "2001:db8::7", "X", "D", "T", "300", "1.5"]


@st.composite
def group_of_tuples(draw):
    """Tuples of one version, mostly valid, some with one field wrong or a field too many or few."""
    v4 = draw(st.booleans())
    tuples = []
    for _ in range(draw(st.integers(1, 6))):
        fields = [draw(st.sampled_from(v if isinstance(v, list) else v[v4])) for v in VALID.values()]
        if not v4 and fields[8] == "B" and draw(st.booleans()):
            fields[9:13] = ["", "", "", ""]
        mistake = draw(st.sampled_from(["none"] * 6 + ["field", "count"]))
        if mistake == "field":
            fields[draw(st.integers(0, 12))] = draw(st.sampled_from(BAD))
        elif mistake == "count":
            fields = fields[:12] if draw(st.booleans()) else [*fields, "0"]
        tuples.append(",".join(fields))
    return tuples, v4


@settings(max_examples=300, deadline=None)
@given(group_of_tuples())
def test_the_column_reader_reads_every_group_as_the_tuple_by_tuple_reader_and_refuses_the_same(group):
    tuples, v4 = group
    try:
        plain = [tuple(row) for row in rows_plain(tuples, v4, Addresses())]
    except ValueError:
        plain = None
    fast = rows_fast(tuples, v4, Addresses())
    assert (list(fast) if fast is not None else None) == plain


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([mac_of("web-nic"), "001122334455"]),
                          st.sampled_from(["10.0.1.4", "10.0.1.5", "10.0.9.9"]),
                          st.sampled_from(["Inbound", "Outbound"]), st.sampled_from([6, 17, 1]),
                          st.sampled_from(["203.0.113.7", "168.63.129.16", "10.0.1.5", "198.51.100.1"]),
                          st.integers(0, 65535), st.sampled_from([22, 53, 80, 443, 8080])), min_size=1, max_size=30))
def test_kept_decisions_agree_with_asking_the_policy_every_time(flows_):
    """web-nic's NSG names source ports inbound, other-nic has none; unknown MACs go by address."""
    doc = dict(SCENARIO, network_security_groups=[{"name": "nsg-web", "security_rules": [
        *SCENARIO["network_security_groups"][0]["security_rules"],
        {"name": "DenyLowSourcePorts", "priority": 200, "direction": "Inbound", "access": "Deny", "protocol": "*",
         "sourceAddressPrefix": "*", "sourcePortRange": "0-1023", "destinationAddressPrefix": "*",
         "destinationPortRange": "*"},
        {"name": "DenyDnsOut", "priority": 200, "direction": "Outbound", "access": "Deny", "protocol": "Udp",
         "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
         "destinationPortRange": "53"}]}])
    decider = FlowDecider(scenario_from_document(doc))
    for mac, nic_ip, direction, proto, remote, sport, dport in flows_:
        nic, other = int(ip_address(nic_ip)), int(ip_address(remote))
        src, dst = (other, nic) if direction == "Inbound" else (nic, other)
        flow = LoggedFlow(mac, direction, (proto, 4, src, sport, dst, dport), 0.0, 0.0, 0, 0, 0, 0, "B", "Allow",
                          None, None)
        assert decider.decide(flow) == decider.decide_plain(flow)


PAIRS = [("203.0.113.7", "10.0.1.4"), ("10.0.1.4", "198.51.100.1"), ("2001:db8::7", "fd00:1::4")]
ODD = ["+1", " 80", "0080", "1_0", "12345678901234567890", "9007199254740993", "010.0.1.4", "10.0.1.4 ", "１２",
       "::ffff:10.0.1.4", "10.0.1", "256.0.0.1", "D", "I"]


@st.composite
def flow_log_files_of(draw):
    """Files of records of both versions whose tuples come back to a few 5-tuples in every state, in
    time with gaps beyond the denied idle time; some with a field odd, bad or only unusual."""
    time, files = 1714557600, []
    for _ in range(draw(st.integers(1, 2))):
        records = []
        for _ in range(draw(st.integers(1, 4))):
            v4 = draw(st.booleans())
            tuples = []
            for _ in range(draw(st.integers(0, 8))):
                time += draw(st.sampled_from([0, 1, 30, int(DENIED_IDLE) + 1]))
                src, dst = draw(st.sampled_from(PAIRS))
                proto = draw(st.sampled_from(["6", "17", "1"] if v4 else ["T", "U", "I"]))
                state = draw(st.sampled_from("BCED" if v4 else "BCE"))
                counters = draw(st.sampled_from([["0"] * 4, ["3", "300", "2", "2000"], ["1"] * 4 if v4 else [""] * 4]))
                head = [f"{time * 1000 + draw(st.integers(0, 999))}" if v4 else str(time), src, dst,
                        draw(st.sampled_from(["50000", "50001"])), draw(st.sampled_from(["443", "22"])), proto,
                        draw(st.sampled_from("IO"))]
                fields = [*head, state, "NX"] if v4 else [*head, draw(st.sampled_from("AAD")), state]
                fields += counters
                if draw(st.integers(0, 9)) == 0:
                    fields[draw(st.integers(0, 12))] = draw(st.sampled_from(ODD + BAD))
                tuples.append(",".join(fields))
            mac = draw(st.sampled_from([NIC_MAC, "00-0D-3A-00-00-01"]))
            records.append(vnet_record(tuples, mac=mac) if v4 else nsg_record(tuples, mac=mac))
        files.append(records)
    return files


def read_both(files):
    with tempfile.TemporaryDirectory() as folder:
        paths = [write(Path(folder) / f"h={hour:02}" / "PT1H.json", records, mkdir=True)
                 for hour, records in enumerate(files)]
        results = []
        for accelerated in (True, False):
            try:
                results.append(flows(*paths, accelerated=accelerated))
            except CaptureError as e:
                results.append(str(e))
    return results


@settings(max_examples=300, deadline=None)
@given(flow_log_files_of())
def test_the_c_reader_gives_the_flows_and_errors_of_the_python_reader(files):
    fast, plain = read_both(files)
    assert fast == plain


@pytest.mark.skipif(traffic._flowlogs is None, reason="built without a C compiler")
def test_the_c_reader_reads_plain_tuples_and_leaves_others_to_python():
    reader = traffic._Reader()
    tuples = ["1714557600000,203.0.113.7,10.0.1.4,1,2,6,I,B,NX,0,0,0,0"]
    args = ([traffic._Tuples(4, NIC_MAC, "NSG-WEB", "AllowWeb", tuples)], True, reader.addresses, reader.open,
            reader.denied, LoggedFlow, DENIED_IDLE)
    assert reader.fast.batch(*args) == ([], 1714557600.0)
    tuples[0] = "1714557600000,203.0.113.7,10.0.1.4,+1,2,6,I,B,NX,0,0,0,0"
    assert reader.fast.batch(*args) is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([6, 17, 1, 58, 47, 50]), st.sampled_from([4, 6]), st.integers(0, 2**32 - 1),
       st.integers(0, 65535), st.integers(0, 2**32 - 1), st.integers(0, 65535), st.integers(0, 2**128 - 1))
def test_a_flow_prints_as_the_flow_of_its_key_prints(proto, version, src, sport, dst, dport, high):
    if version == 6:
        src, dst = src ^ high, dst ^ high
    key = (proto, version, src, sport, dst, dport)
    assert flow_text(key) == str(key_to_flow(key))


@pytest.mark.skipif(traffic._flowlogs is None, reason="built without a C compiler")
@pytest.mark.parametrize("groups, flow_type", [([("not", "a", "group")], LoggedFlow), ([], dict), ([], int)])
def test_the_c_reader_refuses_what_is_no_group_or_flow_type(groups, flow_type):
    with pytest.raises(TypeError):
        traffic._flowlogs.batch(groups, True, Addresses(), {}, {}, flow_type, DENIED_IDLE)


@pytest.mark.skipif(traffic._flowlogs is None, reason="built without a C compiler")
@pytest.mark.parametrize("denied", [{("slot",): [0.0] * 10}, {(0,) * 8: "not a flow"}, {(0,) * 8: [0.0] * 9}])
def test_the_c_sweep_refuses_a_table_of_anything_but_denied_flows(denied):
    with pytest.raises(TypeError):
        traffic._flowlogs.expired(denied, 1e9, DENIED_IDLE, LoggedFlow)


def test_the_c_reader_is_built_where_ci_asks_for_it():
    if os.environ.get("DATAPLANE_REQUIRE_C") != "1":
        pytest.skip("DATAPLANE_REQUIRE_C=1 is set by .ci/run, where a compiler is known to be present")
    assert traffic._flowlogs is not None, "pip install built the package without dataplane/_flowlogs.c"
