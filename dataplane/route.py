"""Where a new flow's packet goes: the NICs it crosses, in order, each with the key as it sees it.

The path (reference §1, §2, §9): a packet from a NIC's private address leaves through that NIC
(outbound, on its private source) and is translated (SNAT) if it leaves the VNet; a packet to a NIC's
private address, public IP or load-balancer frontend is translated first (DNAT) and arrives inbound
at that NIC. So inbound NSGs see the packet after public→private translation, outbound NSGs before
private→public translation. A load-balanced flow keeps the client's source address and port, and the
backend is chosen from the flow's source by a stable hash, so a replay is reproducible; an inbound NAT
rule is a load-balancing rule whose pool is one NIC's address. The policy evaluates the legs; the
dataplane keeps a flow record at each of them.
"""

from __future__ import annotations

import zlib
from typing import Callable, NamedTuple

from .addresses import V6, ip_key
from .nat import ANY_PORT, Nat, Translations
from .rules import Direction
from .topology import NetworkInterface

Key = tuple[int, int, int, int, int, int]
"""(protocol, version, src, sport, dst, dport) with integer addresses: what the hot path carries."""

OUTBOUND, INBOUND = Direction.OUTBOUND, Direction.INBOUND


class Leg(NamedTuple):
    """One NIC a packet crosses. `nat` is this leg's translation: leaving, the source the peer sees
    (SNAT); arriving, the destination the peer addressed (DNAT); None when nothing is translated."""

    nic: NetworkInterface
    direction: Direction
    key: Key
    nat: Nat | None


class Route(NamedTuple):
    """A packet's legs and its key as it finally travels. `blocked` names why it goes nowhere
    (a load-balancer frontend without a rule for its port) after the legs it crossed."""

    legs: tuple[Leg, ...]
    translated: Key
    blocked: str | None = None


class Inbound(NamedTuple):
    """Where a packet addressed to a translated address goes."""

    nic: NetworkInterface | None  # None: a load-balancer frontend with no rule for this port
    dst: int
    dport: int


class Outbound(NamedTuple):
    src: int
    frontend: str | None  # the load balancer whose frontend the flow leaves by, if any


class Router:
    """The scenario's addresses, indexed for routing a packet by its 5-tuple."""

    def __init__(self, nics_by_ip: dict[int, NetworkInterface], translations: Translations,
                 virtual_network: Callable):
        self.nics_by_ip = nics_by_ip
        self.translations = translations
        self.virtual_network = virtual_network

    def legs(self, key: Key) -> Route:
        """No legs when neither address is one of the scenario's."""
        proto, version, src, sport, dst, dport = key
        legs: list[Leg] = []
        translated = key
        nics = self.nics_by_ip
        source_nic = nics.get(src if version == 4 else src | V6)
        dest_nic = nics.get(dst if version == 4 else dst | V6)
        if source_nic is not None:
            snat = None
            if dest_nic is None and not self.virtual_network(source_nic.vnet).contains(version, dst):
                out = self.outbound(source_nic, version, src)
                if out is not None and out.src != src:
                    snat = Nat(out.src, sport, out.src if out.frontend is not None else None)
                    translated = (proto, version, out.src, sport, dst, dport)
            legs.append(Leg(source_nic, OUTBOUND, key, snat))
        if dest_nic is None:
            inbound = self.inbound(proto, version, translated[2], sport, dst, dport)
            if inbound is not None:
                if inbound.nic is None:
                    return Route(tuple(legs), translated, "no-lb-rule")
                translated = (proto, version, translated[2], sport, inbound.dst, inbound.dport)
                dest_nic = nics.get(inbound.dst if version == 4 else inbound.dst | V6)
        if dest_nic is not None:
            dnat = Nat(dst, dport) if translated[4] != dst or translated[5] != dport else None
            legs.append(Leg(dest_nic, INBOUND, translated, dnat))
        return Route(tuple(legs), translated)

    def inbound(self, proto: int, version: int, src: int, sport: int, dst: int, dport: int) -> Inbound | None:
        """The DNAT for a packet to a public IP or frontend; None when dst is not translated."""
        translations = self.translations
        key = dst if version == 4 else dst | V6
        nic = translations.public.get(key)
        if nic is not None:
            private = translations.public_private.get(key)
            return Inbound(nic, private, dport) if private is not None else None
        table = translations.frontends.get(key)
        if table is None:
            return None
        target = table.get((proto, dport)) or table.get(ANY_PORT)
        if target is None or not target[1]:
            return Inbound(None, dst, dport)
        backend_port, pool = target
        chosen, private = pool[zlib.crc32(f"{version}/{src}/{sport}/{proto}".encode()) % len(pool)]
        return Inbound(chosen, private, backend_port or dport)

    def outbound(self, nic: NetworkInterface, version: int, src: int) -> Outbound | None:
        """The SNAT for a packet leaving the VNet: the NIC's public IP, else its LB frontend.

        None means default outbound access, whose address Azure does not publish: the flow
        leaves with its private source as far as the simulator shows (README). With IP
        configurations each address leaves by its own public IP; a `src` that is none of them
        asks whether the NIC translates at all.
        """
        if version != 4:
            return None
        translations = self.translations
        if nic.ip_configurations:
            public = translations.config_public.get(src)
            if public is not None:
                return Outbound(public, None)
        elif nic.public_ip is not None and nic.public_ip.version == 4:
            return Outbound(int(nic.public_ip), None)
        frontend = translations.outbound_frontend.get(nic.name)
        if frontend is not None:
            return Outbound(frontend[0], frontend[1])
        if nic.ip_configurations and not any(int(c.private_ip) == src for c in nic.ip_configurations):
            public = next((c.public_ip for c in nic.ip_configurations if c.public_ip and c.public_ip.version == 4), None)
            return Outbound(int(public), None) if public is not None else None
        return None

    def arriving(self, src_nic: NetworkInterface | None, key: Key) -> Inbound | None:
        """Where a packet to a public IP or frontend goes that no flow record translates: where a new
        flow's would; from inside a VNet only a frontend or an address outside it is translated."""
        proto, version, src, sport, dst, dport = key
        if src_nic is not None and ip_key(version, dst) not in self.translations.frontends and \
                self.virtual_network(src_nic.vnet).contains(version, dst):
            return None
        inbound = self.inbound(proto, version, src, sport, dst, dport)
        return inbound if inbound is not None and inbound.nic is not None else None
