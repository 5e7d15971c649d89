"""The flow notation users type: `tcp 203.0.113.7:51000 > 10.0.1.4:80 flags=S`.

A `Flow` is a value: hashable, comparable, and printed back in the notation it was parsed from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Iterator

from .errors import FlowSyntaxError

TCP, UDP, ICMP, ICMPV6, ESP, AH = 6, 17, 1, 58, 50, 51
"""The protocol numbers the simulator names; every module takes them from here."""
PROTOCOL_NUMBERS = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "icmpv6": ICMPV6, "esp": ESP, "ah": AH}
PROTOCOL_NAMES = {n: p for p, n in PROTOCOL_NUMBERS.items()}
PORTED = (TCP, UDP)
TCP_FLAG_LETTERS = "FSRPAUEC"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Flow:
    """One packet's 5-tuple (ports are 0 for protocols without ports) and what the notation adds."""

    protocol: int
    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    icmp_type: int | None = None
    icmp_code: int | None = None
    flags: str = ""

    @property
    def version(self) -> int:
        return self.src.version

    @property
    def key(self) -> tuple[int, int, int, int, int, int]:
        """What the classifier takes: (protocol, version, src, sport, dst, dport) as integers."""
        return self.protocol, self.src.version, int(self.src), self.sport, int(self.dst), self.dport

    def translated(self, *, src: IPAddress | None = None, sport: int | None = None,
                   dst: IPAddress | None = None, dport: int | None = None) -> "Flow":
        return replace(self, src=src if src is not None else self.src,
                       sport=sport if sport is not None else self.sport,
                       dst=dst if dst is not None else self.dst,
                       dport=dport if dport is not None else self.dport)

    def reversed(self) -> "Flow":
        return replace(self, src=self.dst, sport=self.dport, dst=self.src, dport=self.sport)

    def __str__(self) -> str:
        proto = PROTOCOL_NAMES.get(self.protocol, str(self.protocol))
        ported = self.protocol in PORTED
        text = f"{proto} {_endpoint(self.src, self.sport if ported else None)} > " \
               f"{_endpoint(self.dst, self.dport if ported else None)}"
        extras = []
        if self.icmp_type is not None:
            extras.append(f"type={self.icmp_type}")
        if self.icmp_code is not None:
            extras.append(f"code={self.icmp_code}")
        if self.flags:
            extras.append(f"flags={self.flags}")
        return " ".join([text, *extras])


def key_to_flow(key: tuple[int, int, int, int, int, int]) -> Flow:
    """The Flow of a hot-path key (protocol, version, src, sport, dst, dport)."""
    proto, version, src, sport, dst, dport = key
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return Flow(proto, make(src), sport, make(dst), dport)


def flow_text(key: tuple[int, int, int, int, int, int]) -> str:
    """`str(key_to_flow(key))`, without making the Flow: a verdict line writes one per packet."""
    proto, version, src, sport, dst, dport = key
    name = PROTOCOL_NAMES.get(proto) or str(proto)
    if version == 4:
        a, b = _v4_text(src), _v4_text(dst)
        if proto == TCP or proto == UDP:
            return f"{name} {a}:{sport} > {b}:{dport}"
        return f"{name} {a} > {b}"
    return str(key_to_flow(key))


def address_text(version: int, address: int) -> str:
    """An address of a hot-path key as `ipaddress` writes it: flow logs write two per tuple."""
    return _v4_text(address) if version == 4 else str(ipaddress.IPv6Address(address))


def _v4_text(address: int) -> str:
    text = _V4_TEXTS.get(address)
    if text is None:
        if len(_V4_TEXTS) >= 65536:
            _V4_TEXTS.clear()
        text = _V4_TEXTS[address] = f"{address >> 24}.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"
    return text


_V4_TEXTS: dict[int, str] = {}
"""Dotted quads of the addresses met lately: a capture names few addresses many times."""


def _endpoint(ip: IPAddress, port: int | None) -> str:
    if port is None:
        return str(ip)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def parse_flow(text: str) -> Flow:
    """Parse one flow; errors say what is wrong with which token."""
    tokens = text.split("#", 1)[0].split()
    if len(tokens) < 4 or tokens[2] != ">":
        raise FlowSyntaxError(f"{text.strip()!r}: expected 'PROTO SRC[:PORT] > DST[:PORT] [key=value ...]'")
    proto_text = tokens[0].lower()
    if proto_text in PROTOCOL_NUMBERS:
        protocol = PROTOCOL_NUMBERS[proto_text]
    elif proto_text.isdigit() and int(proto_text) <= 255:
        protocol = int(proto_text)
    else:
        raise FlowSyntaxError(f"{tokens[0]!r} is not a protocol: use tcp, udp, icmp, icmpv6, esp, ah or 0-255")
    src, sport = _parse_endpoint(tokens[1], protocol)
    dst, dport = _parse_endpoint(tokens[3], protocol)
    if src.version != dst.version:
        raise FlowSyntaxError(f"{tokens[1]} and {tokens[3]} are of different IP versions")
    extras: dict[str, str] = {}
    for token in tokens[4:]:
        key, sep, value = token.partition("=")
        if not sep or key not in ("type", "code", "flags"):
            raise FlowSyntaxError(f"{token!r} is not one of type=N, code=N, flags=LETTERS")
        extras[key] = value
    icmp_type = _small_int(extras["type"], "type") if "type" in extras else None
    icmp_code = _small_int(extras["code"], "code") if "code" in extras else None
    flags = extras.get("flags", "").upper()
    if any(c not in TCP_FLAG_LETTERS for c in flags):
        raise FlowSyntaxError(f"flags={flags}: TCP flags are letters of {TCP_FLAG_LETTERS}")
    if flags and protocol != TCP:
        raise FlowSyntaxError("flags= applies to tcp only")
    return Flow(protocol, src, sport, dst, dport, icmp_type, icmp_code, flags)


def _small_int(value: str, name: str) -> int:
    if not value.isdigit() or int(value) > 255:
        raise FlowSyntaxError(f"{name}={value}: expected an integer 0-255")
    return int(value)


def _parse_endpoint(token: str, protocol: int) -> tuple[IPAddress, int]:
    host, port_text = token, None
    if token.startswith("["):
        host, sep, rest = token[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise FlowSyntaxError(f"{token!r}: an IPv6 address with a port is written [ADDRESS]:PORT")
        port_text = rest[1:] if rest else None
    elif token.count(":") == 1:
        host, port_text = token.split(":")
    elif protocol in PORTED:
        raise FlowSyntaxError(f"{token!r}: an IPv6 address of a tcp or udp flow goes in brackets, "
                              f"{_bracketed(token)}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise FlowSyntaxError(f"{host!r} is not an IP address") from None
    if port_text is None:
        return ip, 0
    if not port_text.isdigit() or int(port_text) > 65535:
        raise FlowSyntaxError(f"{token!r}: port {port_text!r} is not an integer 0-65535")
    if protocol not in PORTED:
        raise FlowSyntaxError(f"{token!r}: only tcp and udp flows have ports")
    return ip, int(port_text)


def _bracketed(token: str) -> str:
    """The bracketed spellings a user may have meant by an unbracketed IPv6 endpoint."""
    head, _, last = token.rpartition(":")
    whole = f"[{token}] for the address alone"
    try:
        ipaddress.IPv6Address(head)
    except ValueError:
        return f"e.g. {whole}"
    return f"e.g. [{head}]:{last} for port {last}, or {whole}" if last.isdigit() else f"e.g. {whole}"


def tcp_flag_bits(flags: str) -> int:
    return sum(1 << TCP_FLAG_LETTERS.index(c) for c in flags)


def read_flows(lines: Iterator[str]) -> Iterator[tuple[int, str, Flow | FlowSyntaxError]]:
    """(line number, text, flow or the error for that line); blank and comment lines are skipped."""
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            yield number, text, parse_flow(text)
        except FlowSyntaxError as e:
            yield number, text, e
