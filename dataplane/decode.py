"""Frames → decoded packets: the struct fast path of the replay loop (dpkt style: layouts as data).

It never raises on any bytes: a frame that cannot be read returns a `Skip` saying why.
`tests/test_decode.py` proves it agrees with scapy's dissection on every shared capture.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IEEE802_11 = 105
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100})
IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
IPV6_FRAGMENT = 44
MAX_EXTENSIONS = 16
ICMP_ERRORS = {1: frozenset({3, 4, 5, 11, 12}), 58: frozenset({1, 2, 3, 4})}
ICMP_ECHO = {1: frozenset({0, 8}), 58: frozenset({128, 129})}
# BSD loopback headers carry the socket address family: AF_INET is 2 everywhere, AF_INET6 differs by system.
LOOPBACK_FAMILIES = {2: 0x0800, 10: 0x86DD, 24: 0x86DD, 28: 0x86DD, 30: 0x86DD}
LLC_SNAP = b"\xaa\xaa\x03\x00\x00\x00"
ETHERTYPE_NAMES = {0x0806: "ARP", 0x8847: "MPLS", 0x8848: "MPLS", 0x88CC: "LLDP", 0x9000: "loopback",
                   0x8035: "RARP"}

U16 = struct.Struct("!H")
IPV4 = struct.Struct("!BBHHHBBH4s4s")  # ver/ihl, tos, total length, id, flags/offset, ttl, proto, csum, src, dst
IPV4_ADDRS = struct.Struct("!II")
IPV6_HEAD = struct.Struct("!IHBB")  # version/class/label, payload length, next header, hop limit
IPV6_ADDRS = struct.Struct("!QQQQ")
PORTS = struct.Struct("!HH")
# The common frame in one read: Ethernet type, IPv4 version/IHL, total length, id, flags/offset,
# protocol, source, destination, and the first four transport bytes (the ports of TCP and UDP).
ETH_IPV4_PORTS = struct.Struct("!12xHBxHHHxBxxIIHH")
_new = tuple.__new__


class Packet(NamedTuple):
    version: int
    proto: int
    src: int
    dst: int
    sport: int
    dport: int
    tcp_flags: int
    icmp_type: int
    icmp_code: int
    icmp_id: int
    length: int
    ip_id: int
    frag_offset: int
    more_fragments: bool
    fragmented: bool
    vlans: tuple
    inner: "Packet | None"


class Skip(NamedTuple):
    reason: str  # non-ip | truncated | malformed | unsupported-link-type
    detail: str


def decode_frame(frame: bytes, linktype: int = LINKTYPE_ETHERNET) -> Packet | Skip:
    """Decode one captured frame of the given link type."""
    n = len(frame)
    if linktype == LINKTYPE_ETHERNET and n >= 54:
        ethertype, vihl, total, ip_id, frag, proto, src, dst, sport, dport = ETH_IPV4_PORTS.unpack_from(frame)
        if ethertype == ETH_IPV4 and vihl == 0x45 and not frag & 0x3FFF and total >= 40 and n >= 14 + total:
            if proto == 6:
                return _new(Packet, (4, 6, src, dst, sport, dport, frame[47], -1, -1, 0, n, ip_id, 0, False, False,
                                     (), None))
            if proto == 17 and total >= 28:
                return _new(Packet, (4, 17, src, dst, sport, dport, 0, -1, -1, 0, n, ip_id, 0, False, False,
                                     (), None))
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return Skip("truncated", f"frame of {n} bytes, shorter than an Ethernet header")
        ethertype = (frame[12] << 8) | frame[13]
        offset = 14
        vlans: tuple = ()
        while ethertype in VLAN_TYPES:
            if n < offset + 4:
                return Skip("truncated", "frame ends inside a VLAN tag")
            vlans += (((frame[offset] << 8) | frame[offset + 1]) & 0x0FFF,)
            ethertype = (frame[offset + 2] << 8) | frame[offset + 3]
            offset += 4
        return _by_ethertype(frame, offset, ethertype, vlans)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if n < 1:
            return Skip("truncated", "empty frame")
        version = frame[0] >> 4
        return _by_ethertype(frame, 0, ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0, ())
    if linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return Skip("truncated", "frame shorter than a Linux cooked header")
        return _by_ethertype(frame, 16, (frame[14] << 8) | frame[15], ())
    if linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return Skip("truncated", "frame shorter than a Linux cooked v2 header")
        return _by_ethertype(frame, 20, (frame[0] << 8) | frame[1], ())
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return Skip("truncated", "frame shorter than a loopback header")
        family = LOOPBACK_FAMILIES.get(int.from_bytes(frame[:4], "little")) or \
            LOOPBACK_FAMILIES.get(int.from_bytes(frame[:4], "big"))
        if family is None:
            return Skip("non-ip", f"loopback address family {frame[:4].hex()}")
        return _by_ethertype(frame, 4, family, ())
    if linktype == LINKTYPE_IEEE802_11:
        return _ieee80211(frame, 0)
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        if n < 8:
            return Skip("truncated", "frame shorter than a radiotap header")
        return _ieee80211(frame, int.from_bytes(frame[2:4], "little"))
    return Skip("unsupported-link-type", f"link type {linktype} is not read")


def _ieee80211(frame: bytes, offset: int) -> Packet | Skip:
    """An 802.11 data frame carrying IP behind LLC/SNAP; management, control and encrypted frames
    carry none that can be read."""
    if len(frame) < offset + 24:
        return Skip("truncated", "frame shorter than an 802.11 header")
    control, flags = frame[offset], frame[offset + 1]
    if (control >> 2) & 3 != 2:
        return Skip("non-ip", "802.11 management or control frame")
    if flags & 0x40:
        return Skip("non-ip", "802.11 frame with a protected (encrypted) body")
    header = 24 + (6 if flags & 3 == 3 else 0) + (2 if control & 0x80 else 0)
    start = offset + header
    if frame[start:start + 6] != LLC_SNAP or len(frame) < start + 8:
        return Skip("non-ip", "802.11 data frame without LLC/SNAP")
    return _by_ethertype(frame, start + 8, (frame[start + 6] << 8) | frame[start + 7], ())


def decode_scapy(pkt) -> Packet | Skip:
    """A scapy packet: Ether first → Ethernet, IP/IPv6 first → raw IP, CookedLinux → SLL."""
    name = type(pkt).__name__
    if name == "Ether":
        return decode_frame(bytes(pkt), LINKTYPE_ETHERNET)
    if name in ("IP", "IPv6"):
        return decode_frame(bytes(pkt), LINKTYPE_RAW)
    if name == "CookedLinux":
        return decode_frame(bytes(pkt), LINKTYPE_LINUX_SLL)
    if name == "CookedLinuxV2":
        return decode_frame(bytes(pkt), LINKTYPE_LINUX_SLL2)
    return Skip("non-ip", f"a scapy {name} packet is not a frame")


def _by_ethertype(frame: bytes, offset: int, ethertype: int, vlans: tuple) -> Packet | Skip:
    if ethertype == ETH_IPV4:
        return _ipv4(frame, offset, vlans, len(frame))
    if ethertype == ETH_IPV6:
        return _ipv6(frame, offset, vlans, len(frame))
    if ethertype < 0x0600:
        return Skip("non-ip", "802.3 frame (length field, not an ethertype)")
    name = ETHERTYPE_NAMES.get(ethertype)
    return Skip("non-ip", f"ethertype 0x{ethertype:04x}" + (f" ({name})" if name else ""))


def _ipv4(frame: bytes, offset: int, vlans: tuple, length: int, quoted: bool = False) -> Packet | Skip:
    n = len(frame)
    if n < offset + 20:
        return Skip("truncated", "frame ends inside the IPv4 header")
    vihl, _, total, ip_id, frag, _, proto, _, _, _ = IPV4.unpack_from(frame, offset)
    if vihl >> 4 != 4:
        return Skip("malformed", f"IP version {vihl >> 4} in an IPv4 packet")
    ihl = (vihl & 0x0F) * 4
    if ihl < 20:
        return Skip("malformed", f"IPv4 header length {ihl} < 20")
    if not quoted and total < ihl:
        return Skip("malformed", f"IPv4 total length {total} < header length {ihl}")
    if n < offset + ihl:
        return Skip("truncated", "frame ends inside the IPv4 options")
    src, dst = IPV4_ADDRS.unpack_from(frame, offset + 12)
    frag_offset = (frag & 0x1FFF) * 8
    more = bool(frag & 0x2000)
    end = min(n, offset + total) if not quoted and total else n
    return _transport(frame, offset + ihl, end, 4, proto, src, dst, length, ip_id, frag_offset, more,
                      more or frag_offset > 0, vlans, quoted)


def _ipv6(frame: bytes, offset: int, vlans: tuple, length: int, quoted: bool = False) -> Packet | Skip:
    n = len(frame)
    if n < offset + 40:
        return Skip("truncated", "frame ends inside the IPv6 header")
    first, payload, proto, _ = IPV6_HEAD.unpack_from(frame, offset)
    if first >> 28 != 6:
        return Skip("malformed", f"IP version {first >> 28} in an IPv6 packet")
    s_hi, s_lo, d_hi, d_lo = IPV6_ADDRS.unpack_from(frame, offset + 8)
    src, dst = (s_hi << 64) | s_lo, (d_hi << 64) | d_lo
    end = min(n, offset + 40 + payload) if not quoted else n
    at = offset + 40
    ip_id = frag_offset = 0
    more = fragmented = False
    for _ in range(MAX_EXTENSIONS):
        if proto in IPV6_EXTENSIONS:
            if end < at + 8:
                return Skip("truncated", "frame ends inside an IPv6 extension header")
            proto, at = frame[at], at + (frame[at + 1] + 1) * 8
        elif proto == IPV6_FRAGMENT:
            if end < at + 8:
                return Skip("truncated", "frame ends inside the IPv6 fragment header")
            field = U16.unpack_from(frame, at + 2)[0]
            frag_offset, more, fragmented = field & 0xFFF8, bool(field & 1), True
            ip_id = struct.unpack_from("!I", frame, at + 4)[0]
            proto, at = frame[at], at + 8
        else:
            break
    else:
        return Skip("malformed", f"more than {MAX_EXTENSIONS} IPv6 extension headers")
    return _transport(frame, at, end, 6, proto, src, dst, length, ip_id, frag_offset, more, fragmented, vlans,
                      quoted)


def _transport(frame: bytes, at: int, end: int, version: int, proto: int, src: int, dst: int, length: int,
               ip_id: int, frag_offset: int, more: bool, fragmented: bool, vlans: tuple,
               quoted: bool) -> Packet | Skip:
    if frag_offset:
        return Packet(version, proto, src, dst, 0, 0, 0, -1, -1, 0, length, ip_id, frag_offset, more, True, vlans,
                      None)
    if proto == 6 or proto == 17:
        if end < at + (4 if quoted else 14 if proto == 6 else 8):
            return Skip("truncated", f"frame ends inside the {'TCP' if proto == 6 else 'UDP'} header")
        sport, dport = PORTS.unpack_from(frame, at)
        flags = frame[at + 13] if proto == 6 and end >= at + 14 else 0
        return Packet(version, proto, src, dst, sport, dport, flags, -1, -1, 0, length, ip_id, 0, more,
                      fragmented, vlans, None)
    if proto == 1 or proto == 58:
        if end < at + 4:
            return Skip("truncated", "frame ends inside the ICMP header")
        icmp_type, code = frame[at], frame[at + 1]
        icmp_id = 0
        inner = None
        if icmp_type in ICMP_ECHO[proto] and end >= at + 6:
            icmp_id = U16.unpack_from(frame, at + 4)[0]
        elif icmp_type in ICMP_ERRORS[proto] and not quoted:
            quote = frame[at + 8:end]
            inner_packet = (_ipv4 if proto == 1 else _ipv6)(quote, 0, (), len(quote), True) if quote else None
            inner = inner_packet if isinstance(inner_packet, Packet) else None
        return Packet(version, proto, src, dst, 0, 0, 0, icmp_type, code, icmp_id, length, ip_id, 0, more,
                      fragmented, vlans, inner)
    return Packet(version, proto, src, dst, 0, 0, 0, -1, -1, 0, length, ip_id, 0, more, fragmented, vlans, None)
