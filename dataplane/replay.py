"""Captures in and out: the edge where files and the capture's clock meet the sans-I/O Dataplane.

The readers are lean struct-based ones rather than scapy's, for two reasons a benchmark and a test
show: they know the byte offset of every record, so a truncated or corrupt capture is reported
where it breaks, and they are faster. `tests/test_capture_readers.py` checks that they yield exactly the
frames and timestamps scapy's readers yield on every shared capture.
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, NamedTuple

from .errors import CaptureError, DataplaneError
from .flowlog import FlowLogs
from .nsg import NetworkSecurityGroup, load_nsgs
from .pipeline import Dataplane, Verdict
from .policy import key_to_flow
from .topology import Scenario

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
              b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
new_frame = tuple.__new__


class Frame(NamedTuple):
    ts: float
    linktype: int
    data: bytes
    wirelen: int


class Capture:
    """One capture file (pcap, pcapng, either gzip-compressed): frames with their times."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            raw = open(self.path, "rb")
        except OSError as e:
            raise CaptureError(f"cannot read: {e.strerror}", file=self.path) from None
        self.size = Path(self.path).stat().st_size
        self._raw = raw
        self._file: BinaryIO = raw
        if raw.read(2) == GZIP_MAGIC:
            self._file = gzip.open(raw)  # type: ignore[assignment]
        raw.seek(0)
        self.offset = 0

    @property
    def bytes_read(self) -> int:
        """Progress in the file as stored (compressed bytes for .gz)."""
        return self._raw.tell()

    def close(self) -> None:
        self._file.close()
        self._raw.close()

    def _read(self, n: int, what: str, record: int | None = None) -> bytes:
        """n bytes, or an error naming the byte offset where the file breaks off."""
        try:
            data = self._file.read(n)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise CaptureError(f"corrupt compressed data near byte {self.offset} of the capture ({e})",
                               file=self.path) from None
        if len(data) != n:
            if not data and what == "record header":
                raise EOFError
            where = f" at byte {record}" if record is not None else ""
            raise CaptureError(f"truncated at byte {self.offset + len(data)}: {what}{where} needs {n} bytes, "
                               f"{len(data)} remain", file=self.path)
        self.offset += n
        return data

    def frames(self) -> Iterator[Frame]:
        try:
            magic = self._read(4, "file header")
        except EOFError:
            raise CaptureError("is empty, not a capture", file=self.path) from None
        if magic in PCAP_MAGIC:
            yield from self._pcap(magic)
        elif magic == PCAPNG_SHB:
            yield from self._pcapng(magic)
        else:
            raise CaptureError(f"is not a pcap or pcapng capture (starts with {magic.hex()} at byte 0)",
                               file=self.path)

    def _pcap(self, magic: bytes) -> Iterator[Frame]:
        order, resolution = PCAP_MAGIC[magic]
        _, _, _, _, snaplen, linktype = struct.unpack(order + "HHiIII", self._read(20, "file header"))
        linktype &= 0xFFFF
        record = struct.Struct(order + "IIII")
        read = self._read
        while True:
            start = self.offset
            try:
                sec, frac, caplen, wirelen = record.unpack(read(16, "record header"))
            except EOFError:
                return
            if caplen > max(snaplen, 262144) * 4:
                raise CaptureError(f"corrupt record at byte {start}: captured length {caplen}", file=self.path)
            yield new_frame(Frame, (sec + frac * resolution, linktype, read(caplen, "the frame of the record", start),
                                    wirelen))

    def _pcapng(self, magic: bytes) -> Iterator[Frame]:
        order = "<"
        interfaces: list[tuple[int, float]] = []
        block_type = struct.unpack("<I", magic)[0]
        first = True
        while True:
            start = self.offset
            if not first:
                try:
                    head = self._read(4, "record header")
                except EOFError:
                    return
                block_type = struct.unpack(order + "I", head)[0]
            length_raw = self._read(4, f"the block at byte {start}")
            if first:
                body_magic = self._read(4, "section header")
                order = "<" if body_magic == b"\x4d\x3c\x2b\x1a" else ">"
                if body_magic not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                    raise CaptureError(f"corrupt pcapng section header at byte {start}", file=self.path)
            length = struct.unpack(order + "I", length_raw)[0]
            if length < 12 or length % 4 or length > 1 << 28:
                raise CaptureError(f"corrupt pcapng block at byte {start}: length {length}", file=self.path)
            body = self._read(length - (16 if first else 12), f"the block at byte {start}")
            self._read(4, f"the end of the block at byte {start}")
            if block_type == 0x0A0D0D0A:
                if not first:
                    order = "<" if body[:4] == b"\x4d\x3c\x2b\x1a" else ">"
                    interfaces = []
                first = False
            elif block_type == 1:
                linktype = struct.unpack_from(order + "H", body)[0]
                interfaces.append((linktype, _tsresol(body[8:], order)))
            elif block_type == 6:
                iface, high, low, caplen, wirelen = struct.unpack_from(order + "IIIII", body)
                if iface >= len(interfaces):
                    raise CaptureError(f"packet block at byte {start} names interface {iface}, not described",
                                       file=self.path)
                linktype, resolution = interfaces[iface]
                yield Frame(((high << 32) | low) * resolution, linktype, body[20:20 + caplen], wirelen)
            elif block_type == 3 and interfaces:
                wirelen = struct.unpack_from(order + "I", body)[0]
                yield Frame(0.0, interfaces[0][0], body[4:4 + wirelen], wirelen)


def _tsresol(options: bytes, order: str) -> float:
    """if_tsresol (option 9): 10^-n, or 2^-n with the top bit set; microseconds by default."""
    i = 0
    while i + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, i)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[i + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        i += 4 + (length + 3) // 4 * 4
    return 1e-6


PASS_BATCH = 4096
"""Frames the C path may pass between two looks at the progress bar."""


def merged(captures: list[Capture]) -> Iterator[Frame]:
    """Frames of several captures in timestamp order."""
    if len(captures) == 1:
        return captures[0].frames()
    return heapq.merge(*(c.frames() for c in captures), key=lambda frame: frame.ts)


class Update(NamedTuple):
    """`--update TIME=NSG_FILE`: a new NSG version, TIME seconds after the first packet."""

    at: float
    nsg: NetworkSecurityGroup

    @classmethod
    def parse(cls, text: str) -> "Update":
        at, sep, path = text.partition("=")
        try:
            seconds = float(at)
        except ValueError:
            seconds = -1.0
        if not sep or seconds < 0 or not path:
            raise DataplaneError(f"--update {text!r}: expected TIME=NSG_FILE, TIME in seconds after the first packet")
        nsgs = load_nsgs(path)
        if len(nsgs) != 1:
            raise DataplaneError(f"holds {len(nsgs)} NSGs; an update file holds one", file=path)
        return cls(seconds, nsgs[0])


class PcapWriter:
    """A classic pcap file (microsecond timestamps) written in batches."""

    def __init__(self, path: str, linktype: int):
        self.path = path
        self._file = _open_output(path, "wb")
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        self._pending: list[bytes] = []
        self.count = 0

    def write(self, ts: float, data: bytes, wirelen: int) -> None:
        sec, usec = divmod(round(ts * 1e6), 1000000)
        self._pending.append(struct.pack("<IIII", sec, usec, len(data), wirelen))
        self._pending.append(data)
        self.count += 1
        if len(self._pending) >= 8192:
            self.flush()

    def flush(self) -> None:
        self._file.write(b"".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()


class LinesWriter:
    def __init__(self, path: str):
        self._file = _open_output(path, "w")
        self._pending: list[str] = []

    def write(self, obj: Any) -> None:
        self._pending.append(json.dumps(obj))
        if len(self._pending) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._file.write("\n".join(self._pending) + "\n")
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()


@dataclass
class Outputs:
    verdicts: str | None = None
    flow_log: str | None = None
    vnet_flow_log: str | None = None
    allowed: str | None = None
    denied: str | None = None
    translated: str | None = None
    summary: str | None = None


@dataclass
class Summary:
    packets: int = 0
    allowed: int = 0
    denied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    rule_hits: dict[str, dict[str, int]] = field(default_factory=dict)
    rules_never_hit: dict[str, list[str]] = field(default_factory=dict)
    flows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    capture_seconds: float = 0.0
    error: str | None = None

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"packets": self.packets, "allowed": self.allowed, "denied": self.denied,
                "skipped": dict(sorted(self.skipped.items())), "rule_hits": self.rule_hits,
                "rules_never_hit": self.rules_never_hit, "flows": self.flows,
                "packets_per_second": round(self.packets_per_second, 1),
                "capture_seconds": round(self.capture_seconds, 6), "error": self.error}


Progress = Callable[[int], None]


def replay(scenario: Scenario, paths: Iterable[str], outputs: Outputs | None = None, *,
           updates: Iterable[Update] = (), progress: Progress | None = None,
           clock: Callable[[], float] | None = None) -> Summary:
    """Replay captures through the scenario; outputs are written even when a capture breaks off.

    Raises CaptureError after closing every output, with the summary of what was read attached
    as `error.summary`.
    """
    outputs = outputs or Outputs()
    flowlogs = FlowLogs() if outputs.flow_log or outputs.vnet_flow_log else None
    dataplane = Dataplane(scenario, listener=flowlogs)
    pending = sorted(updates, key=lambda u: u.at)
    hits: dict[tuple[str, str], int] = {}
    captures: list[Capture] = []
    writers: dict[str, Any] = {}
    summary = Summary()
    started = clock() if clock else 0.0
    first_ts = last_ts = None
    index = 0
    try:
        captures = [Capture(p) for p in paths]
        verdict_lines = LinesWriter(outputs.verdicts) if outputs.verdicts else None
        if verdict_lines:
            writers["verdicts"] = verdict_lines
        process = dataplane.process
        captures_out = bool(outputs.allowed or outputs.denied or outputs.translated)
        per_packet = verdict_lines is not None or flowlogs is not None or captures_out
        pass_frames = dataplane.pass_frames if not per_packet else None
        frames = merged(captures)
        shown = 0
        while True:
            if progress is not None and index >= shown + 2048:
                progress(sum(c.bytes_read for c in captures))
                shown = index
            if pass_frames is not None:
                until = -math.inf if first_ts is None else first_ts + pending[0].at if pending else math.inf
                passed, last, frame = pass_frames(frames, until, PASS_BATCH)
                if passed:
                    index += passed
                    last_ts = last
                if frame is None:
                    if passed < PASS_BATCH:
                        break
                    continue
            else:
                frame = next(frames, None)
                if frame is None:
                    break
            index += 1
            ts, linktype, data, _ = frame
            if first_ts is None:
                first_ts = ts
            last_ts = ts
            while pending and ts >= first_ts + pending[0].at:
                update = pending.pop(0)
                dataplane.replace_nsg(update.nsg, first_ts + update.at)
            verdict = process(data, ts, linktype)
            for evaluation in verdict.evaluations:
                slot = (evaluation.nsg, evaluation.rule)
                hits[slot] = hits.get(slot, 0) + 1
            if per_packet:
                if verdict_lines is not None:
                    verdict_lines.write(verdict.to_json(index - 1))
                if flowlogs is not None:
                    flowlogs.verdict(verdict)
                if captures_out:
                    _write_frame(writers, outputs, frame, verdict)
    except CaptureError as e:
        summary.error = str(e)
        e.summary = summary  # type: ignore[attr-defined]
        raise
    finally:
        if last_ts is not None:
            dataplane.close(last_ts)
        if flowlogs is not None:
            flowlogs.close()
        for writer in writers.values():
            writer.close()
        for capture in captures:
            capture.close()
        _fill_summary(summary, dataplane, hits, scenario)
        summary.seconds = (clock() - started) if clock else 0.0
        summary.capture_seconds = (last_ts - first_ts) if first_ts is not None else 0.0
        if flowlogs is not None:
            if outputs.flow_log:
                _write_json(outputs.flow_log, {"records": flowlogs.nsg_records})
            if outputs.vnet_flow_log:
                _write_json(outputs.vnet_flow_log, {"records": flowlogs.vnet_records})
        if outputs.summary:
            _write_json(outputs.summary, summary.to_json())
    return summary


def _write_frame(writers: dict[str, Any], outputs: Outputs, frame: Frame, verdict: Verdict) -> None:
    for name, wanted in (("allowed", verdict.decision == "Allow"), ("denied", verdict.decision == "Deny"),
                         ("translated", verdict.decision == "Allow")):
        path = getattr(outputs, name)
        if not path or not wanted:
            continue
        writer = writers.get(name)
        if writer is None:
            writer = writers[name] = PcapWriter(path, frame.linktype)
        data = frame.data
        if name == "translated" and verdict.translated is not None:
            data = translate_frame(data, frame.linktype, verdict.translated)
        writer.write(frame.ts, data, max(frame.wirelen, len(data)))


def translate_frame(data: bytes, linktype: int, key: tuple) -> bytes:
    """The frame as it leaves the NAT: addresses and ports rewritten, checksums recomputed.

    scapy is imported here, not at the top: loading it costs half a second that a replay without
    `--translated` should not pay.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether

    link_layers = {1: Ether, 113: CookedLinux, 276: CookedLinuxV2}
    if linktype in link_layers:
        packet = link_layers[linktype](data)
    else:
        packet = IP(data) if data[:1] and data[0] >> 4 == 4 else IPv6(data)
    flow = key_to_flow(key)
    ip = packet.getlayer(IP) or packet.getlayer(IPv6)
    if ip is None:
        return data
    ip.src, ip.dst = str(flow.src), str(flow.dst)
    if hasattr(ip, "chksum"):
        del ip.chksum
    for layer in (TCP, UDP):
        l4 = packet.getlayer(layer)
        if l4 is not None:
            l4.sport, l4.dport = flow.sport, flow.dport
            del l4.chksum
    return bytes(packet)


def _fill_summary(summary: Summary, dataplane: Dataplane, hits: dict, scenario: Scenario) -> None:
    stats = dataplane.stats
    summary.packets, summary.allowed, summary.denied = stats.packets, stats.allowed, stats.denied
    summary.skipped = dict(stats.skipped)
    for (nsg, rule), count in sorted(hits.items()):
        summary.rule_hits.setdefault(nsg, {})[rule] = count
    for name, nsg in sorted(scenario.network_security_groups.items()):
        used = summary.rule_hits.get(name, {})
        summary.rules_never_hit[name] = [r.name for r in nsg.rules if r.name not in used]
    summary.flows = {"created": stats.flows_created, "closed": stats.flows_closed, "expired": stats.flows_expired,
                     "flushed": stats.flows_flushed, "refused": stats.flows_refused,
                     "open_at_end": stats.flows_open_at_end}


def _open_output(path: str, mode: str) -> Any:
    try:
        return open(path, mode, encoding=None if "b" in mode else "utf-8")
    except OSError as e:
        raise DataplaneError(f"cannot write: {e.strerror}", file=path) from None


def _write_json(path: str, data: Any) -> None:
    with _open_output(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
