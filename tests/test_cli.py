"""`dataplane check`, `explain` and `rules` as the contract (shared/design/interfaces.md) writes them."""

from __future__ import annotations

import gc
import io
import json
from pathlib import Path

import pytest

from dataplane.cli import main

ROOT = Path(__file__).resolve().parents[1]
NSG = str(ROOT / "tests" / "fixtures" / "shapes" / "rest.json")
DEMO = str(ROOT / "pcaps" / "demo" / "scenario.yaml")
HIW = str(ROOT / "tests" / "fixtures" / "scenarios" / "asg-example.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- check --nsg ---------------------------------------------------------------------------------

def test_check_nsg_prints_one_line_per_flow_naming_the_deciding_rule(capsys) -> None:
    status, out, _ = run(capsys, "check", "--nsg", NSG, "--direction", "inbound",
                         "tcp 198.51.100.9:5 > 10.0.0.4:8443", "icmp 198.51.100.9 > 10.0.0.4")
    assert status == 0
    assert out.splitlines() == ["Allow  tcp 198.51.100.9:5 > 10.0.0.4:8443  nsg-app/AllowHttps  (rules)",
                                "Deny   icmp 198.51.100.9 > 10.0.0.4  nsg-app/DenyAllInBound  (rules)"]


def test_check_nsg_json_is_the_contracts_object_with_one_evaluation_and_no_attachment(capsys) -> None:
    _, out, _ = run(capsys, "check", "--nsg", NSG, "--direction", "outbound", "--json",
                    "tcp 10.0.0.4:5 > 20.60.0.1:443")
    data = json.loads(out)
    assert data == {"flow": "tcp 10.0.0.4:5 > 20.60.0.1:443", "decision": "Allow", "nsg": "nsg-app",
                    "rule": "AllowInternetOutBound", "translated": "tcp 10.0.0.4:5 > 20.60.0.1:443",
                    "evaluations": [{"nsg": "nsg-app", "attachment": None, "nic": None, "direction": "Outbound",
                                     "rule": "AllowInternetOutBound", "access": "Allow"}],
                    "reason": "rules"}


def test_check_nsg_address_space_defines_virtual_network(capsys) -> None:
    flow = "tcp 172.20.1.1:5 > 172.20.0.4:9000"
    assert "DenyAllInBound" in run(capsys, "check", "--nsg", NSG, "--direction", "inbound", flow)[1]
    assert "AllowVnetInBound" in run(capsys, "check", "--nsg", NSG, "--direction", "inbound",
                                     "--address-space", "172.20.0.0/16", flow)[1]


def test_check_reads_flows_from_a_file_and_answers_the_good_lines_around_a_bad_one(tmp_path, capsys) -> None:
    flows = tmp_path / "flows.txt"
    flows.write_text("# inbound checks\ntcp 1.2.3.4:1 > 10.0.0.4:443\nbogus line\n\nudp 1.2.3.4:1 > 10.0.0.4:53\n")
    status, out, err = run(capsys, "check", "--nsg", NSG, "--direction", "inbound", "--flows", str(flows))
    assert status == 2
    assert len(out.splitlines()) == 2
    assert f"error: {flows}:3: 'bogus line': expected 'PROTO SRC[:PORT] > DST[:PORT]" in err


def test_check_reads_flows_from_stdin(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("tcp 1.2.3.4:1 > 10.0.0.4:443\n"))
    status, out, _ = run(capsys, "check", "--nsg", NSG, "--direction", "inbound", "--flows", "-")
    assert status == 0 and "AllowHttps" in out


@pytest.mark.parametrize("expect, status", [("allow", 1), ("deny", 0)])
def test_check_expect_exits_1_when_a_decision_differs(capsys, expect, status) -> None:
    assert run(capsys, "check", "--nsg", NSG, "--direction", "inbound", "--expect", expect,
               "tcp 1.2.3.4:1 > 10.0.0.4:22")[0] == status


def test_check_nsg_without_direction_is_a_usage_error(capsys) -> None:
    status, _, err = run(capsys, "check", "--nsg", NSG, "tcp 1.2.3.4:1 > 10.0.0.4:22")
    assert status == 2 and "--nsg needs --direction inbound|outbound" in err


def test_check_a_missing_file_is_an_error_without_traceback(capsys) -> None:
    status, _, err = run(capsys, "check", "--nsg", "nowhere.json", "--direction", "inbound", "tcp 1.2.3.4:1 > 5.6.7.8:2")
    assert status == 2
    assert err.startswith("error: nowhere.json: cannot read") and "Traceback" not in err


def test_check_a_batch_of_100000_flows(tmp_path, capsys) -> None:
    flows = tmp_path / "flows.txt"
    flows.write_text("".join(f"tcp 198.51.{i // 256 % 256}.{i % 256}:{1024 + i % 60000} > 10.0.0.4:"
                             f"{(443, 22, 8443, 53)[i % 4]}\n" for i in range(100_000)))
    status, out, _ = run(capsys, "check", "--nsg", NSG, "--direction", "inbound", "--flows", str(flows))
    assert status == 0
    assert out.count("\n") == 100_000


# -- check --scenario, explain, rules ---------------------------------------------------------------

def test_check_scenario_json_lists_the_evaluations_in_azures_order(capsys) -> None:
    _, out, _ = run(capsys, "check", "--scenario", DEMO, "--json", "tcp 203.0.113.7:51000 > 20.50.1.100:80")
    data = json.loads(out)
    assert data["decision"] == "Allow" and data["nsg"] == "nsg-web-nic" and data["rule"] == "AllowHttpFromInternet"
    backend = data["evaluations"][0]["nic"]
    assert [(e["nsg"], e["attachment"], e["nic"], e["direction"]) for e in data["evaluations"]] == [
        ("nsg-web-subnet", "subnet vnet-demo/web", backend, "Inbound"),
        ("nsg-web-nic", f"nic {backend}", backend, "Inbound")]
    assert data["translated"].startswith("tcp 203.0.113.7:51000 > 10.10.1.")


def test_check_scenario_between_two_vms_lists_source_outbound_before_destination_inbound(capsys) -> None:
    _, out, _ = run(capsys, "check", "--scenario", HIW, "--json", "tcp 10.0.1.4:50000 > 10.0.2.5:1433")
    evaluations = json.loads(out)["evaluations"]
    assert [(e["nic"], e["direction"], e["rule"]) for e in evaluations] == [
        ("nic1", "Outbound", "AllowVnetOutBound"), ("nic4", "Inbound", "Deny-Database-All")]


def test_check_scenario_a_flow_outside_the_scenario_is_an_error_for_that_flow(capsys) -> None:
    status, _, err = run(capsys, "check", "--scenario", HIW, "tcp 1.1.1.1:1 > 2.2.2.2:2")
    assert status == 2 and "neither 1.1.1.1 nor 2.2.2.2 is an address" in err


def test_explain_shows_every_rule_with_the_fields_that_matched(capsys) -> None:
    status, out, _ = run(capsys, "explain", "--scenario", HIW, "--json", "tcp 10.0.1.4:50000 > 10.0.2.5:1433")
    data = json.loads(out)
    inbound = next(n for n in data["nsgs"] if n["direction"] == "Inbound")
    rules = {r["name"]: r for r in inbound["rules"]}
    assert rules["Allow-Database-BusinessLogic"]["fields"] == {
        "protocol": True, "source": False, "source port": True, "destination": True, "destination port": True}
    assert rules["Deny-Database-All"]["decided"] and not rules["Allow-Database-BusinessLogic"]["decided"]
    assert [r["priority"] for r in inbound["rules"]] == [100, 110, 120, 65000, 65001, 65500]


def test_explain_prints_a_table_per_nsg_and_marks_the_deciding_rule(capsys) -> None:
    status, out, _ = run(capsys, "explain", "--scenario", HIW, "tcp 10.0.1.4:50000 > 10.0.2.5:1433")
    assert status == 0
    assert "NSG1 (subnet vnet1/backend, Inbound, NIC nic4)" in out
    assert "← decides" in out and "Deny by NSG1/Deny-Database-All" in out


def test_rules_shows_the_effective_rules_with_asgs_and_tags_expanded(capsys) -> None:
    status, out, _ = run(capsys, "rules", "--scenario", HIW, "--nic", "nic4", "--json")
    assert status == 0
    groups = json.loads(out)
    text = json.dumps(groups)
    assert "10.0.2.4/32" in text and "10.0.2.5/32" in text
    assert "168.63.129.16/32" in text and "10.0.0.0/16" in text


def test_rules_for_an_unknown_nic_is_an_error(capsys) -> None:
    status, _, err = run(capsys, "rules", "--scenario", HIW, "--nic", "nic9")
    assert status == 2 and "nic9" in err


def test_check_nsg_uses_the_given_service_tags_file(tmp_path, capsys) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps({"changeNumber": 1, "values": [
        {"name": "Storage", "properties": {"addressPrefixes": ["192.0.2.0/24"]}}]}))
    flow = "tcp 10.0.0.4:5 > 192.0.2.9:443"
    status, out, _ = run(capsys, "check", "--nsg", NSG, "--direction", "outbound", "--address-space", "10.0.0.0/16",
                         "--service-tags", str(tags), flow)
    assert status == 0 and "nsg-app/DenyStorageOut" in out


def _freeze_count_at_summary(monkeypatch) -> list[int]:
    import dataplane.cli as cli

    seen: list[int] = []
    printed = cli._print_summary
    monkeypatch.setattr(cli, "_print_summary", lambda summary: (seen.append(gc.get_freeze_count()), printed(summary)))
    return seen


def test_the_command_leaves_a_replays_objects_to_the_exit(monkeypatch, capsys) -> None:
    """`dataplane` ends with its command: the replay's flow records are frozen before the summary, not
    walked and freed by a collection just before the process ends."""
    import dataplane.cli as cli

    seen = _freeze_count_at_summary(monkeypatch)
    monkeypatch.setattr(cli, "_ENDS_WITH_COMMAND", False)
    monkeypatch.setattr("sys.argv", ["dataplane", "replay", DEMO, str(ROOT / "pcaps" / "demo" / "web.pcap")])
    try:
        with pytest.raises(SystemExit) as ended:
            cli.run()
        assert ended.value.code == 0
        assert seen and seen[0] > 0
    finally:
        gc.unfreeze()


def test_main_called_by_a_program_leaves_its_objects_to_the_collector(monkeypatch, capsys) -> None:
    seen = _freeze_count_at_summary(monkeypatch)
    assert main(["replay", DEMO, str(ROOT / "pcaps" / "demo" / "web.pcap")]) == 0
    assert seen == [0]
