"""What start-up loads: `import dataplane` and the commands that need neither decode frames with scapy nor
print tables with rich load neither. Each case runs in a fresh interpreter, since this one has loaded both."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dataplane

ROOT = Path(__file__).resolve().parents[1]
NSG = str(ROOT / "tests" / "fixtures" / "shapes" / "rest.json")
DEMO = str(ROOT / "pcaps" / "demo" / "scenario.yaml")
HIW = str(ROOT / "tests" / "fixtures" / "scenarios" / "asg-example.yaml")
FLOW = "tcp 203.0.113.7:51000 > 10.0.1.4:80"

# Runs `dataplane ARGS...` (or only the import) in this interpreter and prints its status and the
# top-level packages and dataplane modules it loaded, as JSON.
PROBE = """
import contextlib, io, json, sys
status = None
if len(sys.argv) > 1:
    from dataplane.cli import main
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = main(sys.argv[1:])
        except SystemExit as e:
            status = e.code
else:
    import dataplane
print(json.dumps({"status": status, "modules": sorted({m if m.startswith("dataplane") else m.split(".")[0]
                                                       for m in sys.modules})}))
"""


def this_tree() -> dict[str, str]:
    """The environment that runs this checkout's package, whatever is installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def loaded(*argv: str) -> tuple[int | None, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=this_tree(),
                          cwd=ROOT, check=True)
    result = json.loads(done.stdout)
    return result["status"], set(result["modules"])


def test_import_dataplane_loads_no_submodule() -> None:
    _, modules = loaded()
    assert {m for m in modules if m.startswith("dataplane.")} == set()


def test_import_dataplane_loads_neither_scapy_nor_rich() -> None:
    _, modules = loaded()
    assert not {"scapy", "rich"} & modules


@pytest.mark.parametrize("name", dataplane.__all__)
def test_every_exported_name_imports_from_the_package(name: str) -> None:
    """`from dataplane import NAME` is this call."""
    package = __import__("dataplane", fromlist=[name])
    assert getattr(package, name) is getattr(importlib.import_module(f"dataplane.{dataplane._MODULE_OF[name]}"), name)


def test_every_exported_name_is_listed_by_dir() -> None:
    assert set(dataplane.__all__) <= set(dir(dataplane))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        dataplane.no_such_name  # noqa: B018


def test_help_loads_neither_scapy_nor_rich() -> None:
    status, modules = loaded("--help")
    assert status == 0
    assert not {"scapy", "rich"} & modules


def test_help_does_not_load_the_packet_path() -> None:
    _, modules = loaded("--help")
    assert not {"dataplane.pipeline", "dataplane.replay", "dataplane.report"} & modules


def test_help_loads_only_the_command_line() -> None:
    """The commands' modules (and the models under them) load when a command runs, not to list it."""
    _, modules = loaded("--help")
    assert {m for m in modules if m.startswith("dataplane.")} <= {"dataplane.cli", "dataplane.errors"}


def test_lint_loads_neither_scapy_nor_rich() -> None:
    status, modules = loaded("lint", NSG)
    assert status == 0
    assert not {"scapy", "rich"} & modules


def test_lint_does_not_load_the_packet_path() -> None:
    _, modules = loaded("lint", NSG)
    assert not {"dataplane.pipeline", "dataplane.replay", "dataplane.report"} & modules


def test_check_loads_neither_scapy_nor_rich() -> None:
    status, modules = loaded("check", "--nsg", NSG, "--direction", "inbound", FLOW)
    assert status == 0
    assert not {"scapy", "rich"} & modules


def test_check_of_a_scenario_loads_neither_scapy_nor_rich() -> None:
    status, modules = loaded("check", "--scenario", DEMO, "tcp 203.0.113.7:51000 > 10.10.1.4:8080")
    assert status == 0
    assert not {"scapy", "rich"} & modules


def test_explain_json_loads_neither_scapy_nor_rich() -> None:
    status, modules = loaded("explain", "--nsg", NSG, "--direction", "inbound", "--json", FLOW)
    assert status == 0
    assert not {"scapy", "rich"} & modules


def test_rules_json_loads_neither_scapy_nor_rich() -> None:
    status, modules = loaded("rules", "--scenario", HIW, "--nic", "nic4", "--json")
    assert status == 0
    assert not {"scapy", "rich"} & modules


@pytest.mark.parametrize("argv", [
    ("explain", "--nsg", NSG, "--direction", "inbound", FLOW),
    ("rules", "--scenario", HIW, "--nic", "nic4"),
    ("analyze", NSG, "--direction", "inbound"),
    ("diff", NSG, NSG, "--direction", "inbound"),
    ("exposure", "--scenario", DEMO),
], ids=lambda argv: argv[0])
def test_commands_printing_tables_do_not_load_scapy(argv: tuple[str, ...]) -> None:
    status, modules = loaded(*argv)
    assert status == 0
    assert "scapy" not in modules


def test_replay_of_a_capture_does_not_load_scapy(tmp_path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes((ROOT / "pcaps" / "demo" / "web.pcap").read_bytes()[:24])
    status, modules = loaded("replay", DEMO, str(empty))
    assert status == 0
    assert "scapy" not in modules


def test_a_plain_replay_loads_neither_the_report_the_flow_logs_nor_the_workers(tmp_path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes((ROOT / "pcaps" / "demo" / "web.pcap").read_bytes()[:24])
    status, modules = loaded("replay", DEMO, str(empty))
    assert status == 0
    assert not {"dataplane.report", "dataplane.flowlog", "dataplane.traffic", "dataplane.workers"} & modules


def test_a_scenario_of_ipv6_spaces_and_asgs_loads_without_netaddr(tmp_path) -> None:
    """The demo's VNet has an IPv6 space and its rules name ASGs."""
    status, modules = loaded("check", "--scenario", DEMO, "tcp 203.0.113.7:51000 > 10.10.1.4:8080")
    assert status == 0
    assert "netaddr" not in modules


def test_import_command_loads_neither_scapy_nor_rich(tmp_path) -> None:
    status, modules = loaded("import", str(ROOT / "tests" / "fixtures" / "import" / "az" / "az-network-asg-list.json"),
                             "-o", str(tmp_path / "scenario.yaml"))
    assert status == 0
    assert not {"scapy", "rich"} & modules


def test_whatif_on_flow_logs_does_not_load_scapy(tmp_path) -> None:
    log = tmp_path / "flowlog.json"
    subprocess.run([sys.executable, "-m", "dataplane.cli", "replay", DEMO, str(ROOT / "pcaps" / "demo" / "web.pcap"),
                    "--flow-log", str(log)], check=True, capture_output=True, env=this_tree(), cwd=ROOT)
    status, modules = loaded("whatif", DEMO, "--change", str(ROOT / "pcaps" / "demo" / "nsg-jump-locked.json"), str(log))
    assert status == 0
    assert "scapy" not in modules


def test_a_scenario_of_ipv4_spaces_and_default_rules_decides_without_netaddr(tmp_path) -> None:
    """netaddr reads service tag files and unusual spellings; AzureLoadBalancer, in every NSG's default
    rules, is one address, and importing netaddr for it cost each replay worker a tenth of its start."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "virtual_networks: [{name: vnet, address_space: [10.1.0.0/16], subnets: [{name: web, prefix: 10.1.0.0/24}]}]\n"
        "network_interfaces: [{name: web, subnet: vnet/web, private_ips: [10.1.0.4], nsg: nsg-web}]\n"
        "network_security_groups: [{name: nsg-web, security_rules: [{name: AllowHttps, priority: 100, "
        "direction: Inbound, access: Allow, protocol: Tcp, sourceAddressPrefix: Internet, sourcePortRange: '*', "
        "destinationAddressPrefix: '*', destinationPortRange: '443'}]}]\n")
    status, modules = loaded("check", "--scenario", str(scenario), "tcp 168.63.129.16:51000 > 10.1.0.4:80")
    assert status == 0
    assert "netaddr" not in modules
