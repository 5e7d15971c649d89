"""Translations: the scenario's public IPs and load-balancer frontends indexed, and the ports of
shared frontends handed out to flows (`route` chooses a packet's translation from these indexes).
"""

from __future__ import annotations

from typing import NamedTuple

from .addresses import ip_key
from .flows import TCP, UDP
from .topology import NetworkInterface, Scenario

ANY_PORT = (0, 0)
"""The frontend slot of an HA-ports rule (protocol All, port 0): every protocol and port, the port kept."""
PROTOCOL_NUMBERS = {"Tcp": (TCP,), "Udp": (UDP,), "All": (TCP, UDP)}
"""The protocols of a load-balancing rule."""


class Nat(NamedTuple):
    """A flow's translation at one NIC: the address and port the peer sees there (the source of a
    flow leaving, the destination of one arriving)."""

    ip: int
    port: int
    frontend: int | None = None  # set when the port came from a shared frontend's pool


class Translations:
    """The scenario's translated addresses, indexed for the per-packet path."""

    def __init__(self, scenario: Scenario):
        self.public: dict[int, NetworkInterface] = {}
        self.private_v4: dict[str, int] = {}
        self.public_private: dict[int, int] = {}
        self.config_public: dict[int, int] = {}
        self.frontends: dict[int, dict[tuple[int, int], tuple[int, list[tuple[NetworkInterface, int]]]]] = {}
        self.frontend_names: dict[int, str] = {}
        self.outbound_frontend: dict[str, tuple[int, str]] = {}
        for nic in scenario.network_interfaces.values():
            v4 = [int(ip) for ip in nic.private_ips if ip.version == 4]
            if v4:
                self.private_v4[nic.name] = v4[0]
            if nic.ip_configurations:
                for config in nic.ip_configurations:
                    if config.public_ip is not None and config.private_ip.version == config.public_ip.version:
                        key = ip_key(config.public_ip.version, int(config.public_ip))
                        self.public[key] = nic
                        self.public_private[key] = int(config.private_ip)
                        if config.public_ip.version == 4:
                            self.config_public[int(config.private_ip)] = int(config.public_ip)
            elif nic.public_ip is not None:
                key = ip_key(nic.public_ip.version, int(nic.public_ip))
                self.public[key] = nic
                if v4:
                    self.public_private[key] = v4[0]
        nics = scenario.network_interfaces
        for lb in scenario.load_balancers.values():
            forwards = [(rule.protocol, rule.frontend_ip, rule.frontend_port, rule.backend_port,
                         [(nics[n], ip) for n, ip in zip(rule.backend_pool, rule.backend_ips or
                                                         [None] * len(rule.backend_pool))])
                        for rule in lb.rules]
            forwards += [(nat.protocol, nat.frontend_ip, nat.frontend_port, nat.backend_port,
                          [(nics[nat.network_interface], nat.private_ip)]) for nat in lb.inbound_nat_rules]
            for protocol, frontend_ip, frontend_port, backend_port, pool in forwards:
                frontend = frontend_ip or lb.frontend_ip
                key = ip_key(frontend.version, int(frontend))
                self.frontend_names[key] = lb.name
                targets = [(nic, int(ip) if ip is not None else self.private_v4.get(nic.name)) for nic, ip in pool]
                targets = [(nic, ip) for nic, ip in targets if ip is not None]
                slots = [ANY_PORT] if protocol == "All" and frontend_port == 0 else \
                    [(proto, frontend_port) for proto in PROTOCOL_NUMBERS[protocol]]
                for slot in slots:
                    self.frontends.setdefault(key, {})[slot] = (backend_port, targets)
            key = ip_key(lb.frontend_ip.version, int(lb.frontend_ip))
            self.frontends.setdefault(key, {})
            self.frontend_names[key] = lb.name
            for name in lb.outbound_pool:
                self.outbound_frontend.setdefault(name, (int(lb.frontend_ip), lb.name))


class SnatPorts:
    """Source ports of a shared frontend, handed out without collision and given back on expiry (the
    flow record a port was handed to is found by its outside key: `conntrack.Conntrack`)."""

    FIRST, LAST = 1024, 65535

    def __init__(self) -> None:
        self._used: dict[tuple[int, int, int, int], set[int]] = {}
        self._next: dict[tuple[int, int, int, int], int] = {}

    def allocate(self, frontend: int, key: tuple) -> int | None:
        """A free port of the frontend toward the remote end of key (a flow's first packet), its source
        port if free; None when exhausted."""
        proto, _, _, wanted, remote, remote_port = key
        slot = (frontend, proto, remote, remote_port)
        used = self._used.setdefault(slot, set())
        port = None
        if self.FIRST <= wanted <= self.LAST and wanted not in used:
            port = wanted
        else:
            size = self.LAST - self.FIRST + 1
            start = self._next.get(slot, self.FIRST)
            for i in range(size):
                candidate = self.FIRST + (start - self.FIRST + i) % size
                if candidate not in used:
                    port = candidate
                    self._next[slot] = candidate + 1 if candidate < self.LAST else self.FIRST
                    break
            else:
                return None
        used.add(port)
        return port

    def release(self, frontend: int, initiator: tuple, port: int) -> None:
        proto, _, _, _, remote, remote_port = initiator
        slot = (frontend, proto, remote, remote_port)
        used = self._used.get(slot)
        if used is not None:
            used.discard(port)
            if not used:
                del self._used[slot]
                self._next.pop(slot, None)
