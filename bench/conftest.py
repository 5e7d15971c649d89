"""The benchmark suite: `python -m pytest bench/ --benchmark-only` (not part of the CI test run).

The figures that matter are ratios between benchmarks of the same run (this machine is noisy), so
each benchmark records its rate in `figures.FIGURES` and the ratios are printed together at the end.
"""

from __future__ import annotations

import gc
import struct
import sys
from pathlib import Path

import pytest
import yaml

import big_capture
from figures import FIGURES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
SERVER = bytes((10, 1, 0, 4))
BUSY_FLOWS, BUSY_PACKETS_PER_FLOW = 2_500, 660
CHURN_CONNECTIONS = 200_000
RECORD = struct.Struct("<IIII")
T0 = 1_700_000_000


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("dataplane figures (rates and same-run ratios)")
    width = max(len(name) for name in FIGURES)
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name:<{width}}  {value}")


@pytest.fixture(scope="session")
def capture(tmp_path_factory) -> tuple[str, int]:
    """The replay benchmarks' capture (big_capture: VM to VM, two NICs a packet), built once a run."""
    if not big_capture.ECHO.is_file():
        pytest.skip("../shared/data/pcaps not found: the shared data folder sits beside the repository in CI")
    path = tmp_path_factory.mktemp("replay") / "echo-x5.pcap"
    return str(path), big_capture.build(path)


@pytest.fixture(autouse=True, scope="module")
def _collected_between_modules():
    """Each module's benchmarks start without the garbage of the modules before it."""
    gc.collect()
    yield


@pytest.fixture(scope="session")
def scenario(tmp_path_factory) -> Path:
    """One NIC behind an NSG of 1,000 rules: 999 that never match this traffic, then the allow."""
    rules = [{"name": f"DenyRange{i}", "priority": 100 + i, "direction": "Inbound", "access": "Deny",
              "protocol": "Tcp", "sourceAddressPrefix": f"100.{64 + i // 256}.{i % 256}.0/24",
              "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": str(1000 + i)}
             for i in range(999)]
    rules.append({"name": "AllowHttps", "priority": 2000, "direction": "Inbound", "access": "Allow",
                  "protocol": "Tcp", "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
                  "destinationAddressPrefix": "*", "destinationPortRange": "443"})
    doc = {"virtual_networks": [{"name": "vnet", "address_space": ["10.1.0.0/16"],
                                 "subnets": [{"name": "web", "prefix": "10.1.0.0/24", "nsg": "nsg-web"}]}],
           "network_interfaces": [{"name": "web", "subnet": "vnet/web", "private_ips": ["10.1.0.4"]}],
           "network_security_groups": [{"name": "nsg-web", "security_rules": rules}]}
    path = tmp_path_factory.mktemp("limit-scenario") / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _frame(src: bytes, dst: bytes, sport: int, dport: int, flags: int, payload: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + payload, 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, flags, 65535, 0, 0)
    return b"\x00\x0d\x3a\x00\x00\x02\x00\x0d\x3a\x00\x00\x01\x08\x00" + ip + tcp + b"x" * payload


def _write(path: Path, records) -> int:
    count = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for usec, frame in records:
            f.write(RECORD.pack(T0 + usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame)
            count += 1
    return count


def _client(i: int) -> tuple[bytes, int]:
    return bytes((198, 18 + (i >> 16) % 2, (i >> 8) & 0xFF, i & 0xFF)), 1024 + (i >> 17)


@pytest.fixture(scope="session")
def busy(tmp_path_factory) -> tuple[Path, int]:
    """Each connection: SYN, SYN-ACK, ACK, then requests and replies, round robin over the connections."""
    path = tmp_path_factory.mktemp("busy") / "busy.pcap"
    ends = []
    for i in range(BUSY_FLOWS):
        client, port = _client(i)
        ends.append((_frame(client, SERVER, port, 443, 0x02, 0), _frame(SERVER, client, 443, port, 0x12, 0),
                     _frame(client, SERVER, port, 443, 0x10, 0), _frame(client, SERVER, port, 443, 0x18, 60),
                     _frame(SERVER, client, 443, port, 0x18, 400)))

    def records():
        usec = 0
        for step in range(BUSY_PACKETS_PER_FLOW):
            which = step if step < 3 else 3 + step % 2
            for flow in ends:
                yield usec, flow[which]
                usec += 2
    return path, _write(path, records())


@pytest.fixture(scope="session")
def churn(tmp_path_factory) -> tuple[Path, int]:
    """Eight packets a connection 0.5 ms apart (handshake, request, reply, FIN both ways, and the last
    ACK 1 us early), a new connection every 0.5 ms: slot s carries packet k of connection s - k."""
    path = tmp_path_factory.mktemp("churn") / "churn.pcap"

    def connection(i: int) -> list[bytes]:
        client, port = _client(i)
        out = [(client, SERVER, port, 443), (SERVER, client, 443, port)]
        steps = [(0, 0x02, 0), (1, 0x12, 0), (0, 0x10, 0), (0, 0x18, 80), (1, 0x18, 600), (0, 0x11, 0),
                 (1, 0x11, 0), (0, 0x10, 0)]
        return [_frame(*out[side], flags, payload) for side, flags, payload in steps]

    def records():
        live: dict[int, list[bytes]] = {}
        for slot in range(CHURN_CONNECTIONS + 7):
            if slot < CHURN_CONNECTIONS:
                live[slot] = connection(slot)
            if slot - 7 in live:
                yield slot * 500 - 1, live.pop(slot - 7)[7]
            for k in range(7):
                if slot - k in live:
                    yield slot * 500, live[slot - k][k]
    return path, _write(path, records())
