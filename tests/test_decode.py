"""The struct decoder agrees with scapy's dissection, and never raises on any bytes.

scapy is the library the decoder is checked against: every frame of every shared capture, and
frames hypothesis builds with scapy (VLAN stacks, IPv4 options, IPv6 extension headers, fragments,
ICMP errors quoting a header), must decode to the fields scapy reads.
"""

from __future__ import annotations

import gzip
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, IPOption_NOP, IPOption_RR, UDPerror, TCPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
from scapy.layers.l2 import LLC, SNAP, CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.utils import RawPcapNgReader, RawPcapReader

from dataplane.decode import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    Packet,
    Skip,
    decode_frame,
    decode_scapy,
)

from datafiles import SHARED_PCAPS, shared_captures
from frames import ether

ICMP_ERROR_TYPES = {1: {3, 4, 5, 11, 12}, 58: {1, 2, 3, 4}}
ICMP_ECHO_TYPES = {1: {0, 8}, 58: {128, 129}}
IPV6_EXTENSION_CLASSES = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt)


def as_int(address: str) -> int:
    return int(ipaddress.ip_address(address))


def scapy_view(pkt) -> tuple | str:
    """What scapy's dissection says, in the decoder's fields; a string for frames that are not IP."""
    layer = pkt.payload if isinstance(pkt, Ether) else pkt
    vlans = []
    while isinstance(layer, (Dot1Q, Dot1AD)):
        vlans.append(layer.vlan)
        layer = layer.payload
    if isinstance(layer, IP):
        ip = layer
        frag_offset, more, ip_id = ip.frag * 8, bool(ip.flags.MF), ip.id
        version, proto, transport = 4, ip.proto, ip.payload
    elif isinstance(layer, IPv6):
        version, proto, transport = 6, layer.nh, layer.payload
        frag_offset, more, ip_id = 0, False, 0
        while isinstance(transport, IPV6_EXTENSION_CLASSES + (IPv6ExtHdrFragment,)):
            if isinstance(transport, IPv6ExtHdrFragment):
                frag_offset, more, ip_id = transport.offset * 8, bool(transport.m), transport.id
            proto, transport = transport.nh, transport.payload
    else:
        return "non-ip"
    fields = dict(version=version, proto=proto, src=as_int(layer.src), dst=as_int(layer.dst), sport=0, dport=0,
                  tcp_flags=0, icmp_type=-1, icmp_code=-1, icmp_id=0, ip_id=ip_id, frag_offset=frag_offset,
                  more_fragments=more, vlans=tuple(vlans), inner=None)
    if frag_offset:
        return tuple(fields.values())
    raw = bytes(transport)
    if proto in (6, 17):
        fields.update(sport=int.from_bytes(raw[0:2], "big"), dport=int.from_bytes(raw[2:4], "big"))
        if proto == 6:
            fields.update(tcp_flags=raw[13])
    elif proto in (1, 58):
        fields.update(icmp_type=raw[0], icmp_code=raw[1])
        if raw[0] in ICMP_ECHO_TYPES[proto]:
            fields.update(icmp_id=int.from_bytes(raw[4:6], "big"))
        elif raw[0] in ICMP_ERROR_TYPES[proto]:
            quoted = transport.getlayer(IPerror6 if proto == 58 else IPerror)
            if quoted is not None:
                fields.update(inner=quoted_view(quoted))
    return tuple(fields.values())


def quoted_view(quoted) -> tuple:
    """The header an ICMP error quotes: addresses, protocol and (for TCP/UDP) ports."""
    proto = quoted.nh if isinstance(quoted, IPerror6) else quoted.proto
    ports = (0, 0)
    transport = quoted.payload
    while isinstance(transport, IPV6_EXTENSION_CLASSES):
        proto, transport = transport.nh, transport.payload
    if proto in (6, 17):
        raw = bytes(transport)
        ports = (int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big"))
    return (6 if isinstance(quoted, IPerror6) else 4, proto, as_int(quoted.src), as_int(quoted.dst)) + ports


def decoder_view(decoded: Packet | Skip) -> tuple | str:
    if isinstance(decoded, Skip):
        return decoded.reason
    inner = decoded.inner
    return (decoded.version, decoded.proto, decoded.src, decoded.dst, decoded.sport, decoded.dport,
            decoded.tcp_flags, decoded.icmp_type, decoded.icmp_code, decoded.icmp_id, decoded.ip_id,
            decoded.frag_offset, decoded.more_fragments, decoded.vlans,
            None if inner is None else (inner.version, inner.proto, inner.src, inner.dst, inner.sport, inner.dport))


def raw_frames(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        reader_class = RawPcapNgReader if f.read(4) == b"\x0a\x0d\x0d\x0a" else RawPcapReader
    with opener(path, "rb") as f:
        for data, _ in reader_class(f):
            yield data


@pytest.mark.parametrize("name", shared_captures(), ids=str)
def test_decoder_agrees_with_scapy_on_every_frame_of_every_shared_capture(name: str) -> None:
    frames = list(raw_frames(SHARED_PCAPS / name))
    if name.endswith(".gz"):
        frames = frames[::50]  # the 82,582-frame echo capture repeats one shape; a sample keeps CI quick
    for i, frame in enumerate(frames):
        assert decoder_view(decode_frame(frame)) == scapy_view(Ether(frame)), f"{name} frame {i}"


def test_the_shared_captures_exercise_every_branch_the_agreement_test_claims() -> None:
    """Guard against a silent corpus: VLANs, fragments of both families, ICMP errors and IPv6 all occur."""
    if not SHARED_PCAPS.is_dir():
        pytest.skip("../shared/data/pcaps not found: the shared data folder sits beside the repository in CI")
    seen = set()
    for name in shared_captures():
        if name.endswith(".gz"):
            continue
        for frame in raw_frames(SHARED_PCAPS / name):
            p = decode_frame(frame)
            if isinstance(p, Packet):
                seen.add(f"v{p.version}")
                if p.vlans:
                    seen.add(f"vlan{len(p.vlans)}")
                if p.frag_offset:
                    seen.add(f"later-fragment-v{p.version}")
                if p.inner is not None:
                    seen.add(f"icmp-error-v{p.version}")
            else:
                seen.add(p.reason)
    assert {"v4", "v6", "vlan1", "vlan2", "later-fragment-v4", "later-fragment-v6", "icmp-error-v4",
            "icmp-error-v6", "non-ip"} <= seen


ipv4 = st.integers(1, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(1, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ports = st.integers(0, 65535)


@st.composite
def transports(draw, version: int):
    kind = draw(st.sampled_from(["tcp", "udp", "echo", "error", "other"]))
    if kind == "tcp":
        return TCP(sport=draw(ports), dport=draw(ports), flags=draw(st.integers(0, 255)))
    if kind == "udp":
        return UDP(sport=draw(ports), dport=draw(ports)) / b"payload"
    if kind == "echo":
        ident = draw(st.integers(0, 65535))
        if version == 4:
            return ICMP(type=draw(st.sampled_from([0, 8])), id=ident)
        return draw(st.sampled_from([ICMPv6EchoRequest, ICMPv6EchoReply]))(id=ident)
    if kind == "error":
        quoted_transport = draw(st.sampled_from([UDPerror, TCPerror]))(sport=draw(ports), dport=draw(ports))
        if version == 4:
            quote = IPerror(src=draw(ipv4), dst=draw(ipv4)) / quoted_transport
            return ICMP(type=draw(st.sampled_from([3, 11])), code=draw(st.integers(0, 15))) / quote
        quote = IPerror6(src=draw(ipv6), dst=draw(ipv6)) / quoted_transport
        return draw(st.sampled_from([ICMPv6DestUnreach, ICMPv6TimeExceeded]))() / quote
    return draw(st.sampled_from([50, 51, 47, 132])), b"\x00" * 24


@st.composite
def frames(draw):
    """Ethernet frames scapy builds: VLAN stacks, IPv4 options and fragments, IPv6 extension headers."""
    version = draw(st.sampled_from([4, 6]))
    transport = draw(transports(version))
    if isinstance(transport, tuple):
        proto, payload = transport
    else:
        proto, payload = None, transport
    if version == 4:
        options = draw(st.sampled_from([[], [IPOption_NOP()] * 4, [IPOption_RR(routers=["10.0.0.1"])]]))
        header = IP(src=draw(ipv4), dst=draw(ipv4), id=draw(st.integers(0, 65535)), options=options)
        if proto is not None:
            header.proto = proto
        if draw(st.booleans()):
            header.flags = "MF" if draw(st.booleans()) else 0
            header.frag = draw(st.integers(0, 100))
        packet = header / payload
    else:
        header = IPv6(src=draw(ipv6), dst=draw(ipv6))
        extensions = draw(st.lists(st.sampled_from(IPV6_EXTENSION_CLASSES), max_size=3))
        for extension in extensions:
            header = header / extension()
        if draw(st.booleans()):
            header = header / IPv6ExtHdrFragment(offset=draw(st.integers(0, 100)), m=draw(st.integers(0, 1)),
                                                 id=draw(st.integers(0, 2**32 - 1)))
        if proto is not None:
            header.lastlayer().nh = proto
        packet = header / payload
    tags = draw(st.lists(st.integers(1, 4094), max_size=2))
    frame = Ether(src="00:0d:3a:00:00:01", dst="00:0d:3a:00:00:02")
    for i, vlan in enumerate(tags):
        frame = frame / (Dot1AD(vlan=vlan) if i == 0 and len(tags) == 2 else Dot1Q(vlan=vlan))
    return bytes(frame / packet)


@settings(max_examples=300, deadline=None)
@given(frames())
def test_decoder_agrees_with_scapy_on_generated_frames(frame: bytes) -> None:
    assert decoder_view(decode_frame(frame)) == scapy_view(Ether(frame))


@settings(max_examples=200, deadline=None)
@given(frames(), st.data())
def test_a_frame_cut_anywhere_is_a_packet_or_a_skip_never_an_exception(frame: bytes, data) -> None:
    cut = data.draw(st.integers(0, len(frame)))
    assert isinstance(decode_frame(frame[:cut]), (Packet, Skip))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, 147]))
def test_any_bytes_of_any_link_type_decode_to_a_packet_or_a_skip(frame: bytes, linktype: int) -> None:
    assert isinstance(decode_frame(frame, linktype), (Packet, Skip))


def test_a_frame_cut_inside_the_tcp_header_is_skipped_as_truncated() -> None:
    frame = bytes(ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    assert decode_frame(frame[:14 + 20 + 10]) == Skip("truncated", "frame ends inside the TCP header")


def test_an_ip_header_length_below_twenty_bytes_is_malformed() -> None:
    frame = bytearray(bytes(ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP()))
    frame[14] = 0x44
    assert decode_frame(bytes(frame)).reason == "malformed"


def test_arp_is_skipped_as_non_ip_naming_the_ethertype() -> None:
    from scapy.layers.l2 import ARP

    assert decode_frame(bytes(ether() / ARP())) == Skip("non-ip", "ethertype 0x0806 (ARP)")


def test_raw_ip_and_linux_cooked_frames_decode_like_ethernet_ones() -> None:
    packet = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53)
    expected = decoder_view(decode_frame(bytes(ether() / packet)))
    assert decoder_view(decode_frame(bytes(packet), LINKTYPE_RAW)) == expected
    assert decoder_view(decode_frame(bytes(CookedLinux(proto=0x0800) / packet), LINKTYPE_LINUX_SLL)) == expected


def test_scapy_packets_are_decoded_by_their_first_layer() -> None:
    packet = IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=2, flags="S")
    assert decode_scapy(packet) == decode_frame(bytes(packet), LINKTYPE_RAW)
    assert decode_scapy(ether() / packet) == decode_frame(bytes(ether() / packet))


def test_an_icmp_error_carries_the_quoted_flow() -> None:
    error = IP(src="10.0.0.9", dst="10.0.0.1") / ICMP(type=3, code=3) / IPerror(src="10.0.0.1", dst="8.8.8.8") / \
        UDPerror(sport=40000, dport=53)
    inner = decode_frame(bytes(ether() / error)).inner
    assert (inner.proto, inner.src, inner.dst, inner.sport, inner.dport) == (
        17, as_int("10.0.0.1"), as_int("8.8.8.8"), 40000, 53)


LOOPBACK_IPV6 = {"linux": 10, "openbsd": 24, "freebsd": 28, "macos": 30}


def _same_packet(frame: bytes, linktype: int, ip_packet) -> None:
    decoded = decode_frame(frame, linktype)
    assert isinstance(decoded, Packet), decoded
    assert decoded._replace(length=0) == decode_frame(bytes(ip_packet), LINKTYPE_RAW)._replace(length=0)


@pytest.mark.parametrize("linktype, order", [(0, "little"), (108, "big")])
def test_bsd_loopback_frames_decode_to_their_ipv4_packet(linktype: int, order: str) -> None:
    packet = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S")
    _same_packet((2).to_bytes(4, order) + bytes(packet), linktype, packet)


@pytest.mark.parametrize("family", LOOPBACK_IPV6.values(), ids=LOOPBACK_IPV6.keys())
def test_bsd_loopback_frames_decode_ipv6_of_every_system(family: int) -> None:
    packet = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5353, dport=53)
    _same_packet(family.to_bytes(4, "little") + bytes(packet), 0, packet)


def test_a_loopback_frame_of_another_family_is_not_ip() -> None:
    assert decode_frame(b"\x07\x00\x00\x00" + b"\x00" * 40, 0).reason == "non-ip"


def test_radiotap_data_frames_decode_to_the_ip_behind_llc_snap() -> None:
    packet = IP(src="192.168.1.5", dst="192.168.1.1") / UDP(sport=40000, dport=53)
    frame = RadioTap() / Dot11(type=2, subtype=8, addr1="00:0d:3a:00:00:02", addr2="00:0d:3a:00:00:01",
                               addr3="00:0d:3a:00:00:02") / Dot11QoS() / LLC() / SNAP(code=0x0800) / packet
    _same_packet(bytes(frame), 127, packet)
    assert isinstance(decode_frame(bytes(frame[Dot11]), 105), Packet)


def test_an_encrypted_80211_frame_is_skipped_as_not_ip() -> None:
    frame = Dot11(type=2, FCfield="protected", addr1="00:0d:3a:00:00:02", addr2="00:0d:3a:00:00:01",
                  addr3="00:0d:3a:00:00:02") / (b"\x00" * 60)
    assert decode_frame(bytes(frame), 105).reason == "non-ip"


def test_a_link_type_the_decoder_does_not_read_is_skipped_and_named() -> None:
    skipped = decode_frame(b"\x00" * 60, 147)
    assert skipped == Skip("unsupported-link-type", "link type 147 is not read")
