"""Which worker a packet belongs to, so that every packet of a flow lands in one shard.

A flow's packets share its endpoint outside the scenario (the Internet end), before and after any
translation, so that endpoint is the shard key; a flow with both ends inside is keyed by the pair,
with a public IP standing for its NIC's address. Addresses alone (no ports) keep a flow's later IP
fragments, which carry none, with their first; an ICMP error is keyed by the packet it quotes.
Traffic between two inside ends where a load-balancer frontend or backend takes part goes to shard
0: its translated and untranslated forms share no address to key on.
"""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

from .addresses import V6, ip_key
from .decode import Packet, Skip, decode_frame
from .nat import Translations
from .topology import Scenario

_MIX = 0x9E3779B97F4A7C15
"""An odd 64-bit constant (Fibonacci hashing): neighbouring addresses spread over the shards."""


class Shards(NamedTuple):
    """The shard count and what is inside the scenario, as shard keys need it."""

    count: int
    inside: tuple[tuple[int, int], ...]
    """Inclusive (first, last) `ip_key` ranges of the VNets' address spaces."""
    aliases: dict[int, int]
    """Public IP → the private address of its NIC."""
    translated: frozenset[int]
    """Public IPs and load-balancer frontends: inside, though outside every VNet."""
    pinned: frozenset[int]
    """Load-balancer frontends and backend addresses: inside-to-inside traffic with one goes to shard 0."""

    @classmethod
    def of(cls, scenario: Scenario, count: int) -> "Shards":
        ranges = set()
        for vnet in scenario.virtual_networks.values():
            for prefix in vnet.address_space:
                net = ipaddress.ip_network(prefix)
                first = ip_key(net.version, int(net.network_address))
                ranges.add((first, first + net.num_addresses - 1))
        translations = Translations(scenario)
        backends = {ip if ip < 1 << 32 else ip | V6 for slots in translations.frontends.values()
                    for _, targets in slots.values() for _, ip in targets}
        aliases = {public: private | (public & V6) for public, private in translations.public_private.items()}
        return cls(count, tuple(sorted(ranges)), aliases,
                   frozenset(translations.public) | frozenset(translations.frontends),
                   frozenset(translations.frontends) | frozenset(backends))

    def is_inside(self, key: int) -> bool:
        if key in self.translated:
            return True
        for first, last in self.inside:
            if first <= key <= last:
                return True
        return False


def shard_of(shards: Shards, packet: Packet | Skip) -> int:
    """The shard of a decoded packet; a frame that decoded to nothing goes to shard 0."""
    if shards.count == 1 or type(packet) is Skip:
        return 0
    p = packet.inner if packet.inner is not None else packet
    return pair_shard(shards, ip_key(p.version, p.src), ip_key(p.version, p.dst))


def pair_shard(shards: Shards, a: int, b: int) -> int:
    """The shard of a packet between a and b (`ip_key`s), either way round."""
    a_inside, b_inside = shards.is_inside(a), shards.is_inside(b)
    if a_inside != b_inside:
        return _spread(b if a_inside else a, shards.count)
    if a_inside and (a in shards.pinned or b in shards.pinned):
        return 0
    a, b = shards.aliases.get(a, a), shards.aliases.get(b, b)
    low, high = (a, b) if a <= b else (b, a)
    return _spread(low * 31 + high, shards.count)


class FrameShards:
    """The shard of each captured frame: the one place the worker loop decides which frames it skips.

    An Ethernet IPv4 frame that is not ICMP (an ICMP error is keyed by what it quotes) is looked up
    by its two addresses (either way round), without decoding, in a bounded cache of the pairs seen."""

    LIMIT = 1 << 16

    def __init__(self, shards: Shards) -> None:
        self.shards = shards
        self._pairs: dict[bytes, int] = {}

    def __call__(self, data: bytes, linktype: int) -> int:
        if linktype == 1 and len(data) >= 34 and data[12] == 8 and data[13] == 0 and data[23] != 1:
            a, b = data[26:30], data[30:34]
            pair = a + b if a <= b else b + a
            shard = self._pairs.get(pair)
            if shard is None:
                if len(self._pairs) >= self.LIMIT:
                    self._pairs.clear()
                shard = self._pairs[pair] = pair_shard(self.shards, int.from_bytes(a), int.from_bytes(b)) \
                    if self.shards.count > 1 else 0
            return shard
        return shard_of(self.shards, decode_frame(data, linktype))


def _spread(key: int, count: int) -> int:
    folded = (key ^ (key >> 64) ^ (key >> 128)) & 0xFFFFFFFFFFFFFFFF
    return (((folded * _MIX) & 0xFFFFFFFFFFFFFFFF) >> 32) % count


def shard_filter_of(shards: Shards, index: int) -> Any:
    """`FrameShards` in C (`_fastpath.ShardFilter`), for the C path walking a capture's records."""
    from ._fastpath import ShardFilter
    return ShardFilter(index, shards.count, shards.inside, shards.aliases, shards.translated, shards.pinned)
