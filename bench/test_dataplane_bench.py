"""The stateful dataplane: flow setups/s, established packets/s, bytes per tracked flow.

Frames are built once with struct (what a capture gives the replay loop) and fed to
`Dataplane.process` with capture timestamps; ratios compare figures of the same run.
"""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest

from dataplane import Dataplane, NetworkSecurityGroup, rule_from_azure

from figures import FIGURES, rate, ratio

FLOWS = 50_000
ETH = b"\x00\x0d\x3a\x00\x00\x01\x12\x34\x56\x78\x9a\xbc\x08\x00"
VM = (10 << 24) | 4


def tcp_frame(src: int, dst: int, sport: int, dport: int, flags: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    return ETH + ip + struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, flags, 1000, 0, 0)


@pytest.fixture(scope="module")
def nsg_1000() -> NetworkSecurityGroup:
    """999 random inbound rules over internet prefixes and ports, then an allow-all at 4096."""
    rng = random.Random(7)
    rules = [rule_from_azure({
        "name": f"r{i}", "priority": 100 + i, "direction": "Inbound", "access": "Deny" if i % 3 == 0 else "Allow",
        "protocol": rng.choice(["Tcp", "Udp", "*"]),
        "sourceAddressPrefix": f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.0.0/{rng.choice([8, 16, 24])}",
        "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": str(rng.randint(1, 2000))})
        for i in range(999)]
    rules.append(rule_from_azure({
        "name": "AllowAll", "priority": 4096, "direction": "Inbound", "access": "Allow", "protocol": "*",
        "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": "*"}))
    return NetworkSecurityGroup("nsg1000", rules)


@pytest.fixture(scope="module")
def syn_frames() -> list[bytes]:
    """One SYN per new flow: random internet sources toward the VM."""
    rng = random.Random(11)
    return [tcp_frame(rng.getrandbits(32) | 0x01000000, VM, rng.randint(1024, 65535), rng.randint(1, 2000), 0x02)
            for _ in range(FLOWS)]


def test_flow_setups_per_second_with_1000_rules(benchmark, nsg_1000, syn_frames):
    def setup():
        return (Dataplane.for_nsg(nsg_1000),), {}

    def run(dp):
        process = dp.process
        for i, frame in enumerate(syn_frames):
            process(frame, i * 1e-5)

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    rate(benchmark, "flow setups (new flow every packet, 1,000 rules)", FLOWS)


def test_established_packets_per_second(benchmark, nsg_1000):
    """1,000 live flows, each packet an ACK of one of them in turn, replies included."""
    rng = random.Random(13)
    flows = [(rng.getrandbits(24) | 0x14000000, rng.randint(1024, 65535)) for _ in range(1000)]
    dp = Dataplane.for_nsg(nsg_1000)
    for i, (src, sport) in enumerate(flows):
        dp.process(tcp_frame(src, VM, sport, 4444, 0x02), i * 1e-6)
    packets = []
    for _ in range(FLOWS // 2000):
        for src, sport in flows:
            packets.append(tcp_frame(src, VM, sport, 4444, 0x10))
            packets.append(tcp_frame(VM, src, 4444, sport, 0x10))
    clock = [1.0]

    def run():
        process = dp.process
        t = clock[0]
        for i, frame in enumerate(packets):
            process(frame, t + i * 1e-6)
        clock[0] = t + 1.0

    benchmark.pedantic(run, rounds=5, iterations=1)
    rate(benchmark, "established packets", len(packets))
    assert dp.stats.denied == 0
    ratio("established / setups", "established packets", "flow setups (new flow every packet, 1,000 rules)", ">= 2")


def test_bytes_per_tracked_flow(benchmark, nsg_1000, syn_frames):
    def measure():
        dp = Dataplane.for_nsg(nsg_1000)
        dp.process(syn_frames[0], 0.0)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i, frame in enumerate(syn_frames):
            dp.process(frame, i * 1e-5)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / dp.stats.flows_created

    per_flow = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["bytes per flow"] = round(per_flow)
    FIGURES["bytes per tracked flow (tracemalloc)"] = f"{per_flow:.0f} (target <= 450)"
