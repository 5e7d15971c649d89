"""Where a new flow's packet goes: the NICs it crosses, in order, each with the key as it sees it.

The path (reference §1, §2, §9): a packet from a NIC's private address leaves through that NIC
(outbound, on its private source) and is translated (SNAT) if it leaves the VNet; a packet to a NIC's
private address, public IP or load-balancer frontend is translated first (DNAT) and arrives inbound
at that NIC. The policy evaluates these legs; the dataplane keeps a flow record at each of them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from .addresses import ip_key
from .errors import DataplaneError
from .flows import key_to_flow
from .nat import Nat, Translations
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


class Router:
    """The scenario's addresses, indexed for routing a packet by its 5-tuple."""

    def __init__(self, nics_by_ip: dict[int, NetworkInterface], translations: Translations,
                 virtual_network: Callable):
        self.nics_by_ip = nics_by_ip
        self.translations = translations
        self.virtual_network = virtual_network

    def legs(self, key: Key) -> Route:
        proto, version, src, sport, dst, dport = key
        legs: list[Leg] = []
        translated = key
        nics = self.nics_by_ip
        source_nic = nics.get(ip_key(version, src))
        dest_nic = nics.get(ip_key(version, dst))
        if source_nic is not None:
            snat = None
            if dest_nic is None and not self.virtual_network(source_nic.vnet).contains(version, dst):
                out = self.translations.outbound(source_nic, version, src)
                if out is not None and out.src != src:
                    snat = Nat(out.src, sport, out.src if out.frontend is not None else None)
                    translated = (proto, version, out.src, sport, dst, dport)
            legs.append(Leg(source_nic, OUTBOUND, key, snat))
        if dest_nic is None:
            inbound = self.translations.inbound(proto, version, translated[2], sport, dst, dport)
            if inbound is not None:
                if inbound.nic is None:
                    return Route(tuple(legs), translated, "no-lb-rule")
                translated = (proto, version, translated[2], sport, inbound.dst, inbound.dport)
                dest_nic = nics.get(ip_key(version, inbound.dst))
        if dest_nic is not None:
            dnat = Nat(dst, dport) if translated[4] != dst or translated[5] != dport else None
            legs.append(Leg(dest_nic, INBOUND, translated, dnat))
        if not legs:
            flow = key_to_flow(key)
            raise DataplaneError(f"{flow}: neither {flow.src} nor {flow.dst} is an address of a NIC, public IP "
                                 "or load-balancer frontend of the scenario")
        return Route(tuple(legs), translated)
