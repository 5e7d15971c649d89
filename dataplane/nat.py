"""Translations: DNAT of public IPs and load-balancer frontends inbound, SNAT outbound (reference §2).

Inbound NSGs see the packet after public→private translation; outbound NSGs see it before
private→public translation. A load-balanced flow keeps the client's source address and port, and
the backend is chosen from the flow's source by a stable hash, so a replay is reproducible.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

from .topology import NetworkInterface, Scenario

V6 = 1 << 128


def ip_key(version: int, ip: int) -> int:
    """One integer key space for both families (an IPv4 int could equal an IPv6 int)."""
    return ip if version == 4 else ip | V6


class Inbound(NamedTuple):
    """Where a packet addressed to a translated address goes."""

    nic: NetworkInterface | None  # None: a load-balancer frontend with no rule for this port
    dst: int
    dport: int
    via: str  # "public-ip NAME" or "load-balancer NAME"


class Outbound(NamedTuple):
    src: int
    frontend: str | None  # the load balancer whose frontend the flow leaves by, if any


class Translations:
    """The scenario's translated addresses, indexed for the per-packet path."""

    def __init__(self, scenario: Scenario):
        self.public: dict[int, NetworkInterface] = {}
        self.private_v4: dict[str, int] = {}
        self.frontends: dict[int, dict[tuple[int, int], tuple[int, list[NetworkInterface]]]] = {}
        self.frontend_names: dict[int, str] = {}
        self.outbound_frontend: dict[str, tuple[int, str]] = {}
        for nic in scenario.network_interfaces.values():
            v4 = [int(ip) for ip in nic.private_ips if ip.version == 4]
            if v4:
                self.private_v4[nic.name] = v4[0]
            if nic.public_ip is not None:
                self.public[ip_key(nic.public_ip.version, int(nic.public_ip))] = nic
        for lb in scenario.load_balancers.values():
            key = ip_key(lb.frontend_ip.version, int(lb.frontend_ip))
            table = self.frontends.setdefault(key, {})
            self.frontend_names[key] = lb.name
            for rule in lb.rules:
                proto = 6 if rule.protocol == "Tcp" else 17
                table[(proto, rule.frontend_port)] = (
                    rule.backend_port, [scenario.network_interfaces[n] for n in rule.backend_pool])
            for name in lb.outbound_pool:
                self.outbound_frontend.setdefault(name, (int(lb.frontend_ip), lb.name))

    def inbound(self, proto: int, version: int, src: int, sport: int, dst: int, dport: int) -> Inbound | None:
        """The DNAT for a packet to a public IP or frontend; None when dst is not translated."""
        key = ip_key(version, dst)
        nic = self.public.get(key)
        if nic is not None:
            private = self.private_v4.get(nic.name)
            return Inbound(nic, private, dport, f"public-ip {nic.name}") if private is not None else None
        table = self.frontends.get(key)
        if table is None:
            return None
        name = f"load-balancer {self.frontend_names[key]}"
        target = table.get((proto, dport))
        if target is None:
            return Inbound(None, dst, dport, name)
        backend_port, pool = target
        chosen = pool[zlib.crc32(f"{version}/{src}/{sport}/{proto}".encode()) % len(pool)] if pool else None
        if chosen is None or chosen.name not in self.private_v4:
            return Inbound(None, dst, dport, name)
        return Inbound(chosen, self.private_v4[chosen.name], backend_port, name)

    def outbound(self, nic: NetworkInterface, version: int, src: int) -> Outbound | None:
        """The SNAT for a packet leaving the VNet: the NIC's public IP, else its LB frontend.

        None means default outbound access, whose address Azure does not publish: the flow
        leaves with its private source as far as the simulator shows (README).
        """
        if version != 4:
            return None
        if nic.public_ip is not None and nic.public_ip.version == 4:
            return Outbound(int(nic.public_ip), None)
        frontend = self.outbound_frontend.get(nic.name)
        if frontend is not None:
            return Outbound(frontend[0], frontend[1])
        return None


class SnatPorts:
    """Source ports of a shared frontend, handed out without collision and given back on expiry."""

    FIRST, LAST = 1024, 65535

    def __init__(self) -> None:
        self._used: dict[tuple[int, int, int, int], set[int]] = {}
        self._next: dict[tuple[int, int, int, int], int] = {}

    def allocate(self, frontend: int, proto: int, remote: int, remote_port: int, wanted: int) -> int | None:
        """A free port toward (remote, remote_port), the wanted one if free; None when exhausted."""
        key = (frontend, proto, remote, remote_port)
        used = self._used.setdefault(key, set())
        if self.FIRST <= wanted <= self.LAST and wanted not in used:
            used.add(wanted)
            return wanted
        size = self.LAST - self.FIRST + 1
        start = self._next.get(key, self.FIRST)
        for i in range(size):
            port = self.FIRST + (start - self.FIRST + i) % size
            if port not in used:
                used.add(port)
                self._next[key] = port + 1 if port < self.LAST else self.FIRST
                return port
        return None

    def release(self, frontend: int, proto: int, remote: int, remote_port: int, port: int) -> None:
        key = (frontend, proto, remote, remote_port)
        used = self._used.get(key)
        if used is not None:
            used.discard(port)
            if not used:
                del self._used[key]
                self._next.pop(key, None)
