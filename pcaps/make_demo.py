"""Craft the demo captures of pcaps/demo with scapy: run `python pcaps/make_demo.py` to rebuild them.

Every packet is as its sender sent it (reference §2): VMs send from their private addresses,
internet clients send to public IPs and the load-balancer frontend. Times and ports are fixed, so
the output is the same bytes on every run (a test checks it).

- web.pcap: three clients through the load balancer (handshake, request, reply, FIN), web → db on
  1433 (allowed), jump → db on 1433 (denied), db → the internet (denied outbound), web1 → web2
  (denied by the NIC NSG's DenyVnetInbound).
- scan.pcap: a port scan of the jump box's public IP from the internet, and an SSH session from
  the office range.
- icmp-ipv6.pcap: ICMP echo jump → web1 (subnet NSG allows, NIC NSG denies), ICMP echo from the
  internet to the jump box (denied), an ICMP error about a live UDP flow, and HTTPS over IPv6 to web1.
- rule-removal.pcap: an SSH session from the office to the jump box that lives through the
  deployment of nsg-jump-locked.json at 120 s (`--update 120=...`), then a new SSH connection
  at 180 s that the new rules deny.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from dataplane.flows import parse_flow
from dataplane.policy import Policy, key_to_flow
from dataplane.topology import load_scenario

BASE = 1_700_000_000.0
MAC_VM = "00:0d:3a:00:00:01"
MAC_GW = "12:34:56:78:9a:bc"
LB = "20.50.1.100"
JUMP_PUBLIC = "20.50.1.10"
WEB1, WEB2, DB1, JUMP = "10.10.1.4", "10.10.1.5", "10.10.2.4", "10.10.3.4"
WEB1_V6 = "fd00:10:0:1::4"
POLICY = Policy(load_scenario(Path(__file__).parent / "demo" / "scenario.yaml"))


class Capture:
    def __init__(self) -> None:
        self.packets = []

    def add(self, t: float, layer3) -> None:
        frame = Ether(src=MAC_GW, dst=MAC_VM) / layer3
        frame.time = BASE + t
        self.packets.append(frame)

    def tcp_session(self, t: float, client: str, cport: int, server: str, sport: int, reply_from: str | None = None,
                    reply_port: int | None = None, payload: bytes = b"GET / HTTP/1.1\r\n\r\n", v6: bool = False,
                    answered: bool = True, gap: float = 0.01) -> float:
        """A full connection; `reply_from` is the address the server replies from (its private IP)."""
        ip = IPv6 if v6 else IP
        back, back_port = reply_from or server, reply_port or sport
        steps = [(client, cport, server, sport, "S", b""), (back, back_port, client, cport, "SA", b""),
                 (client, cport, server, sport, "A", b""), (client, cport, server, sport, "PA", payload),
                 (back, back_port, client, cport, "PA", b"HTTP/1.1 200 OK\r\n\r\n"),
                 (client, cport, server, sport, "FA", b""), (back, back_port, client, cport, "FA", b""),
                 (client, cport, server, sport, "A", b"")]
        if not answered:
            steps = [steps[0], (client, cport, server, sport, "S", b"")]
        for src, sp, dst, dp, flags, data in steps:
            self.add(t, ip(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=1000, ack=2000) / data)
            t += gap
        return t

    def write(self, path: Path) -> None:
        wrpcap(str(path), sorted(self.packets, key=lambda frame: frame.time))


def web() -> Capture:
    c = Capture()
    t = 0.0
    for i, client in enumerate(("203.0.113.7", "198.51.100.23", "192.0.2.44")):
        t = c.tcp_session(t + 1, client, 50000 + i, LB, 80, reply_from=_backend(client, 50000 + i), reply_port=8080)
    t = c.tcp_session(t + 1, WEB1, 41000, DB1, 1433, payload=b"SELECT 1")
    t = c.tcp_session(t + 1, JUMP, 41001, DB1, 1433, answered=False)
    t = c.tcp_session(t + 1, DB1, 41002, "93.184.216.34", 443, answered=False)
    c.tcp_session(t + 1, WEB1, 41003, WEB2, 8080, answered=False)
    return c


def _backend(client: str, port: int) -> str:
    """The backend the load balancer picks for this client, so replies come from the right VM."""
    decision = POLICY.decide(parse_flow(f"tcp {client}:{port} > {LB}:80"))
    return str(key_to_flow(decision.translated).dst)


def scan() -> Capture:
    c = Capture()
    t = 0.0
    for port in (21, 22, 23, 25, 80, 443, 445, 1433, 3389, 8080):
        c.add(t, IP(src="192.0.2.66", dst=JUMP_PUBLIC) / TCP(sport=61000, dport=port, flags="S"))
        t += 0.05
    c.tcp_session(t + 1, "203.0.113.50", 52000, JUMP_PUBLIC, 22, reply_from=JUMP, payload=b"SSH-2.0-OpenSSH_9.6\r\n")
    return c


def icmp_ipv6() -> Capture:
    c = Capture()
    for seq in range(3):
        c.add(seq, IP(src=JUMP, dst=WEB1) / ICMP(type=8, id=7, seq=seq))
    for seq in range(2):
        c.add(3 + seq, IP(src="198.51.100.9", dst=JUMP_PUBLIC) / ICMP(type=8, id=9, seq=seq))
    c.add(5.0, IP(src=WEB1, dst="203.0.113.53") / UDP(sport=53000, dport=53) / b"\x12\x34query")
    error = IP(src="203.0.113.53", dst=WEB1) / ICMP(type=3, code=3) / \
        IP(src=WEB1, dst="203.0.113.53") / UDP(sport=53000, dport=53)
    c.add(5.1, error)
    c.add(6.0, IPv6(src=WEB1_V6, dst="2001:db8::1") / ICMPv6EchoRequest(id=5, seq=1))
    c.add(6.1, IPv6(src="2001:db8::1", dst=WEB1_V6) / ICMPv6EchoReply(id=5, seq=1))
    c.tcp_session(7.0, "2001:db8::7", 40000, WEB1_V6, 443, v6=True)
    c.tcp_session(8.0, "2001:db8::7", 40001, WEB1_V6, 22, v6=True, answered=False)
    return c


def rule_removal() -> Capture:
    """SSH from the office: a session that outlives its rule, then a new connection denied."""
    c = Capture()
    office, jump_port = "203.0.113.50", 22
    c.tcp_session(0.0, office, 53000, JUMP_PUBLIC, jump_port, reply_from=JUMP, payload=b"SSH-2.0-client\r\n")
    live = 53001
    for step, (src, sp, dst, dp, flags) in enumerate([(office, live, JUMP_PUBLIC, jump_port, "S"),
                                                      (JUMP, jump_port, office, live, "SA"),
                                                      (office, live, JUMP_PUBLIC, jump_port, "A")]):
        c.add(10.0 + step * 0.01, IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags))
    for minute in range(1, 5):
        t = 10.0 + minute * 60
        c.add(t, IP(src=office, dst=JUMP_PUBLIC) / TCP(sport=live, dport=jump_port, flags="PA") / b"keepalive")
        c.add(t + 0.01, IP(src=JUMP, dst=office) / TCP(sport=jump_port, dport=live, flags="PA") / b"ok")
    c.tcp_session(180.0, office, 53002, JUMP_PUBLIC, jump_port, reply_from=JUMP, answered=False)
    return c


CAPTURES = {"web.pcap": web, "scan.pcap": scan, "icmp-ipv6.pcap": icmp_ipv6, "rule-removal.pcap": rule_removal}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, build in CAPTURES.items():
        build().write(out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "demo")
