"""The replay benchmark's input: the shared echo-connections capture repeated with shifted
addresses and times until it holds at least 400,000 packets.

The original's 500 connections all run 127.0.0.1 → 127.0.0.1:7000. Copy k moves the client side
to 10.0.k.4 and the server side to 10.1.k.4, so every packet crosses two NICs (VM to VM) of the
scenario `scenario(copies)` builds.
"""

from __future__ import annotations

import struct
from pathlib import Path

from dataplane.replay import Capture, PcapWriter

ECHO = Path(__file__).resolve().parents[2] / "shared" / "data" / "pcaps" / "zeek-echo-connections.pcap.gz"
SERVER_PORT = 7000
COPIES = 5


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build(path: Path, copies: int = COPIES) -> int:
    frames = list(Capture(ECHO).frames())
    span = frames[-1].ts - frames[0].ts + 1.0
    writer = PcapWriter(str(path), 1)
    for k in range(copies):
        client = bytes((10, 0, k, 4))
        server = bytes((10, 1, k, 4))
        for frame in frames:
            data = bytearray(frame.data)
            sport = struct.unpack_from("!H", data, 34)[0]
            src, dst = (server, client) if sport == SERVER_PORT else (client, server)
            data[26:30], data[30:34] = src, dst
            data[24:26] = b"\0\0"
            data[24:26] = struct.pack("!H", _ip_checksum(bytes(data[14:34])))
            writer.write(frame.ts + k * span, bytes(data), frame.wirelen)
    writer.close()
    return copies * len(frames)


def scenario(copies: int = COPIES) -> dict:
    """Clients in one subnet, echo servers in another; the server NSG allows TCP 7000 in."""
    return {
        "virtual_networks": [{"name": "vnet", "address_space": ["10.0.0.0/15"],
                              "subnets": [{"name": "clients", "prefix": "10.0.0.0/16"},
                                          {"name": "servers", "prefix": "10.1.0.0/16", "nsg": "servers"}]}],
        "network_interfaces": [nic for k in range(copies) for nic in (
            {"name": f"client{k}", "subnet": "vnet/clients", "private_ips": [f"10.0.{k}.4"]},
            {"name": f"server{k}", "subnet": "vnet/servers", "private_ips": [f"10.1.{k}.4"]})],
        "network_security_groups": [{"name": "servers", "security_rules": [
            {"name": "AllowEcho", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
             "sourceAddressPrefix": "VirtualNetwork", "sourcePortRange": "*", "destinationAddressPrefix": "*",
             "destinationPortRange": str(SERVER_PORT)},
            {"name": "DenyVnet", "priority": 4000, "direction": "Inbound", "access": "Deny", "protocol": "*",
             "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
             "destinationPortRange": "*"}]}],
    }
