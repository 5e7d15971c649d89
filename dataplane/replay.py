"""Captures in and out: the edge where files and the capture's clock meet the sans-I/O Dataplane.

The readers are lean struct-based ones rather than scapy's, for two reasons a benchmark and a test
show: they know the byte offset of every record, so a truncated or corrupt capture is reported
where it breaks, and they are faster. `tests/test_capture_readers.py` checks that they yield exactly the
frames and timestamps scapy's readers yield on every shared capture.
"""

from __future__ import annotations

import gc
import gzip
import heapq
import json
import math
import mmap
import os
import stat
import struct
import sys
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, NamedTuple

from .conntrack import LATEST_TIME
from .documents import GZIP_MAGIC, is_flow_log
from .errors import CaptureError, DataplaneError
from .nsg import NetworkSecurityGroup, load_nsgs
from .pipeline import VERDICT_COLUMNS, Dataplane, Statistics, Verdict, tsv_row
from .flows import key_to_flow
from .topology import Scenario

if TYPE_CHECKING:  # imported where flow logs and the report are asked for: a replay starts without them
    from .flowlog import FlowLogs
    from .report import Traffic

try:
    from ._fastpath import Tally
except ImportError:  # installed without a C compiler
    Tally = None

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
              b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
new_frame = tuple.__new__


class Frame(NamedTuple):
    ts: float
    linktype: int
    data: bytes
    wirelen: int


class Capture:
    """One capture file (pcap, pcapng, either gzip-compressed): frames with their times.

    The records are read from one buffer: the whole file mapped into memory where it is a regular
    uncompressed file, else a window refilled from the stream (gzip, a pipe). The C fast path walks
    the same buffer (`pass_records`), and the frames generator goes on where it stopped.
    """

    CHUNK = 1 << 22

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            raw = open(self.path, "rb")
        except OSError as e:
            raise CaptureError(f"cannot read: {e.strerror}", file=self.path) from None
        self._raw = raw
        self._stream: BinaryIO | None = raw
        self._buffer: bytes | mmap.mmap = b""
        self._pos = 0
        self._base = 0
        self._damage: tuple[int, Exception] | None = None
        if raw.peek(2)[:2] == GZIP_MAGIC:  # peek, not seek: a capture may come through a pipe
            self._stream = gzip.open(raw)  # type: ignore[assignment]
        elif stat.S_ISREG(os.fstat(raw.fileno()).st_mode) and os.fstat(raw.fileno()).st_size:
            self._buffer = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
            self._stream = None
        self.backwards = 0
        """Records whose timestamp is earlier than the record before them in the file."""
        self._last = -math.inf
        self.linktype: int | None = None
        self.format: tuple | None = None
        """What `Dataplane.pass_records` needs to walk the records: (pcapng, big-endian, the (linktype,
        seconds per tick) of each interface, the largest captured length, the latest time); None until
        the headers are read."""

    @property
    def offset(self) -> int:
        """Bytes of the capture read so far (uncompressed)."""
        return self._base + self._pos

    @property
    def bytes_read(self) -> int:
        """Progress in the file as stored (compressed bytes for .gz)."""
        return self._raw.tell() if self._stream is not None else self.offset

    def close(self) -> None:
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()
        if self._stream is not None:
            self._stream.close()
        self._raw.close()

    @property
    def mapped(self) -> bool:
        """Whether the whole file is in the buffer (mapped), so other readers of it may walk it alike."""
        return isinstance(self._buffer, mmap.mmap)

    def walk(self, function: Callable, *args: Any) -> tuple:
        """Let a C walk take records from here on: `function(buffer, pos, format, last, *args)` returns
        how many it took, where it stopped, the last one's time, how many went backwards and what else
        it gives (`Dataplane.pass_records`: the verdicts of the new flows among them); this returns
        (how many, the last one's time or None, what else). The frames generator goes on from there."""
        if self.format is None:
            return 0, None
        taken, self._pos, last, backwards, *rest = function(self._buffer, self._pos, self.format, self._last, *args)
        if not taken:
            return (0, None, *rest)
        self.backwards += backwards
        self._last = last
        return (taken, last, *rest)

    def _fill(self, n: int) -> None:
        """At least n bytes from the position on, where the stream has them. A corrupt stream is
        reported once the bytes before the damage are used up, so their frames are replayed."""
        assert self._stream is not None
        chunks = [self._buffer[self._pos:]]
        have = len(chunks[0])
        wanted = n if self._stream is self._raw else max(n, self.CHUNK)  # a pipe may be live: never wait on it
        while have < wanted and self._damage is None:
            try:
                more = self._stream.read1(self.CHUNK)
            except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
                self._damage = (self._raw.tell(), e)
                break
            if not more:
                break
            chunks.append(more)
            have += len(more)
        self._base += self._pos
        self._pos = 0
        self._buffer = b"".join(chunks)
        if have < n and self._damage is not None:
            at, e = self._damage
            raise CaptureError(f"corrupt compressed data near byte {at} of the file (byte {self.offset + have} "
                               f"of the capture inside): {e}", file=self.path)

    def _read(self, n: int, what: str, record: int | None = None) -> bytes:
        """n bytes, or an error naming the byte offset where the file breaks off."""
        end = self._pos + n
        if end > len(self._buffer) and self._stream is not None:
            self._fill(n)
            end = n
        data = self._buffer[self._pos:end]
        if len(data) != n:
            if not data and what == "record header":
                raise EOFError
            where = f" at byte {record}" if record is not None else ""
            raise CaptureError(f"truncated at byte {self.offset + len(data)}: {what}{where} needs {n} bytes, "
                               f"{len(data)} remain", file=self.path)
        self._pos = end
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
        self.linktype = linktype
        most = max(snaplen, 262144) * 4
        self.format = (False, order == ">", ((linktype, resolution),), most, LATEST_TIME)
        record = struct.Struct(order + "IIII")
        read = self._read
        while True:
            start = self.offset
            try:
                sec, frac, caplen, wirelen = record.unpack(read(16, "record header"))
            except EOFError:
                return
            if caplen > most:
                raise CaptureError(f"corrupt record at byte {start}: captured length {caplen}", file=self.path)
            ts = sec + frac * resolution
            if ts < self._last:
                self.backwards += 1
            self._last = ts
            yield new_frame(Frame, (ts, linktype, read(caplen, "the frame of the record", start), wirelen))

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
                self.format = None
            elif block_type == 1:
                linktype = struct.unpack_from(order + "H", body)[0]
                interfaces.append((linktype, _tsresol(body[8:], order)))
                if self.linktype is None:
                    self.linktype = linktype
                self.format = (True, order == ">", tuple(interfaces), 1 << 28, LATEST_TIME)
            elif block_type == 6:
                iface, high, low, caplen, wirelen = struct.unpack_from(order + "IIIII", body)
                if iface >= len(interfaces):
                    raise CaptureError(f"packet block at byte {start} names interface {iface}, not described",
                                       file=self.path)
                linktype, resolution = interfaces[iface]
                ts = ((high << 32) | low) * resolution
                if ts > LATEST_TIME:
                    raise CaptureError(f"corrupt packet block at byte {start}: timestamp {ts:.0f} s is past the "
                                       f"latest time the dataplane keeps ({LATEST_TIME:.0f} s)", file=self.path)
                if ts < self._last:
                    self.backwards += 1
                self._last = ts
                yield Frame(ts, linktype, body[20:20 + caplen], wirelen)
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


def freeze_collector() -> Callable[[], None]:
    """What exists now (the scenario, its compiled rules) lives as long as a replay: frozen, full
    collections need not walk it again and again. While the replay runs the collector pauses: what it
    makes (flow records, keys, verdicts, flow-log tuples) forms no cycle, a dataplane's own cycles end
    with it, and young collections walked it in vain (7% of a replay of new flows, a tenth of whatif's).
    The thaw to call when the replay ends: what it froze thaws (nothing when something else had frozen
    objects before), and the collector resumes (`_resume`)."""
    frozen = gc.get_freeze_count()
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()

    def thaw() -> None:
        if not frozen:
            gc.unfreeze()
        _resume(enabled)
    return thaw


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while a block makes many objects in no cycle (a worker's results read back, the
    workers' flow-log tuples merged): full collections would walk them all again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        _resume(enabled)


def _resume(enabled: bool) -> None:
    """What was made while the collector paused goes to its oldest generation (frozen and thawed at once,
    when nothing else is frozen): the first young collection after would otherwise walk every object
    made (0.15 s for a shard's flow-log tuples). Then the collector runs again if it did before."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
    if enabled:
        gc.enable()


PASS_BATCH = 4096
"""Frames the C path may pass between two looks at the progress bar."""


def left_to_python(frames: Iterator[Frame], capture: Capture | None, pass_records: Callable | None,
                   pass_frames: Callable | None, hits: dict[tuple[str, str], int], until: Callable[[], float],
                   took: Callable[[int, float, bool], None], shard: Any = None, lines: NumberedLines | None = None,
                   index: Callable[[], int] | None = None, heard: Callable[[Verdict], None] | None = None,
                   allowed: list[bytes] | NumberedRecords | None = None, tally: Any = None) -> Iterator[Frame]:
    """The frames Python decides, in order, each once the C path has taken what it could before it:
    `pass_records` walking one capture's buffer (its new flows' rule hits counted into `hits`, and their
    verdicts told to `heard`; with `lines`, the verdict line of each packet it takes appended there,
    `index()` the next record's place; with `allowed`, the pcap record of each allowed packet it takes: a
    list of them, or as `NumberedRecords` with each record's place as the lines have theirs; with `tally`,
    the report's, the packets of the flows it watches, each counted there, and new flows, each told to
    `heard` as (verdict, length on the wire, place, placeholder)),
    else `pass_frames` over the frames (with `tally`, the known flows' packets it watches, counted there).
    The C path goes no further than `until()`; `took(count, last time, walked)` hears of each batch it
    took (`walked`: records of the buffer, which `frames` never yielded)."""
    while True:
        told: list = []
        if pass_records is not None and capture is not None and tally is not None:
            passed, last, *decided = capture.walk(pass_records, until(), PASS_BATCH, shard, False, None,
                                                  index() if index is not None else 0, None, tally)
            frame, walked, again = None, True, False
            told = decided[0] if decided else []  # (verdict, length on the wire, place, placeholder) to `heard`
            count_hits(hits, (new[0] for new in told))
        elif pass_records is not None and capture is not None:
            runs = False
            if lines is not None and index is not None:
                passed, last, *decided = capture.walk(pass_records, until(), PASS_BATCH, shard, False, lines, index())
            elif allowed is not None:  # whether a new flow is allowed: its Verdict says
                passed, last, *decided = capture.walk(pass_records, until(), PASS_BATCH, shard, False, None,
                                                      index() if index is not None else 0, allowed)
            else:  # only the hits of new flows are needed, as runs of results, unless someone hears of them
                runs = heard is None
                passed, last, *decided = capture.walk(pass_records, until(), PASS_BATCH, shard, runs)
            frame, walked, again = None, True, False
            if decided:
                (count_hit_runs if runs else count_hits)(hits, decided[0])
                if heard is not None and decided[0]:
                    told = decided[0]  # heard once `took` has counted them
                    again = True  # the walk may have stopped after a flow it denied (`walks_stop_at_new_flows`)
        elif pass_frames is not None:
            passed, last, frame = pass_frames(frames, until(), PASS_BATCH, tally)
            walked = again = False
        else:
            passed, last, frame, walked, again = 0, None, next(frames, None), False, False
        if passed:
            took(passed, last, walked)
        for verdict in told:
            heard(verdict)  # type: ignore[misc]
        if isinstance(frame, BaseException):
            raise frame
        if again or (passed == PASS_BATCH and frame is None):
            continue  # a full batch, or a walk stopped after a new flow: take again
        if walked:
            frame = next(frames, None)
        if frame is OTHERS:
            continue
        if frame is None:
            return
        yield frame


OTHERS = Frame(math.nan, 0, b"", 0)
"""What a sharded reader of frames answers with another shard's frame, when a walk goes on after it."""


def count_hits(hits: dict[tuple[str, str], int], verdicts: Iterable[Verdict]) -> None:
    """The rule hits of new flows: one per NSG evaluation of each verdict."""
    for verdict in verdicts:
        for evaluation in verdict.evaluations:
            slot = (evaluation.nsg, evaluation.rule)
            hits[slot] = hits.get(slot, 0) + 1


def count_hit_runs(hits: dict[tuple[str, str], int], runs: Iterable[tuple[Any, int]]) -> None:
    """`count_hits` of (verdict or policy result, how many new flows it decided) pairs."""
    for result, times in runs:
        for evaluation in result.evaluations:
            slot = (evaluation.nsg, evaluation.rule)
            hits[slot] = hits.get(slot, 0) + times


def read_in_c(capture: Capture, read_frames: Callable[..., tuple]) -> Iterator[Frame]:
    """A capture's frames as `Capture.frames` gives them, made in C batch by batch
    (`Dataplane.read_frames`), for a replay that decides every packet in Python; the Python reader reads
    what C leaves to it (the headers, other blocks, anything wrong) and a compressed stream's chunks."""
    frames = capture.frames()
    while True:
        taken, _, *made = capture.walk(read_frames, math.inf, PASS_BATCH, Frame)
        if taken:
            yield from made[0]
        if taken < PASS_BATCH:
            frame = next(frames, None)
            if frame is None:
                return
            yield frame


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
        if not sep or not 0 <= seconds < math.inf or not path:
            raise DataplaneError(f"--update {text!r}: expected TIME=NSG_FILE, TIME in seconds after the first packet")
        nsgs = load_nsgs(path)
        if len(nsgs) != 1:
            raise DataplaneError(f"holds {len(nsgs)} NSGs; an update file holds one", file=path)
        return cls(seconds, nsgs[0])


class _Batched:
    """An output written in batches: `flush` writes what is pending; closing flushes first."""

    path: str
    _file: Any

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with _naming(self.path):
                self._file.close()


def pcap_record(ts: float, data: bytes, wirelen: int) -> bytes:
    """A frame as a classic pcap record (microsecond timestamp)."""
    sec, usec = divmod(round(ts * 1e6), 1000000)
    return struct.pack("<IIII", sec, usec, len(data), wirelen) + data


class PcapWriter(_Batched):
    """A classic pcap file (microsecond timestamps) written in batches."""

    def __init__(self, path: str, linktype: int):
        self.path = path
        self._file = _open_output(path, "wb")
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        self._pending: list[bytes] = []
        self.count = 0

    def write(self, ts: float, data: bytes, wirelen: int) -> None:
        self._pending.append(pcap_record(ts, data, wirelen))
        self.count += 1
        if len(self._pending) >= 8192:
            self.flush()

    def write_records(self, records: list[bytes]) -> None:
        """Records made as `write` makes them (the C walk's)."""
        self._pending.extend(records)
        self.count += len(records)
        if len(self._pending) >= 8192:
            self.flush()

    def write_block(self, block: bytes, records: int) -> None:
        """`records` whole records one after another (the workers' merged by `merge_lines`), written at
        once: a block is large enough."""
        self.flush()
        self.count += records
        with _naming(self.path):
            self._file.write(block)

    def flush(self) -> None:
        with _naming(self.path):
            self._file.write(b"".join(self._pending))
        self._pending.clear()


class NumberedLines(NamedTuple):
    """Verdict lines as the C walk appends them (`pass_records(..., lines)`): their UTF-8, each ending in a
    newline, and the packet index of each (native int64s). A worker's travel as these two buffers and
    merge in C (`workers.merge_lines`)."""

    text: bytearray
    indexes: bytearray

    def add(self, index: int, line: str) -> None:
        """A line Python writes (a packet the walk left to it)."""
        self.text.extend(line.encode())
        self.text.append(10)
        self.indexes.extend(index.to_bytes(8, sys.byteorder, signed=True))

    def clear(self) -> None:
        del self.text[:], self.indexes[:]


class NumberedRecords(NamedTuple):
    """A worker's pcap records of one output, one after another as the C walk appends them
    (`pass_records(..., frames)`), and the packet index of each (native int64s): they travel as two
    buffers and merge in C as verdict lines do (`workers.merge_lines`)."""

    records: bytearray
    indexes: bytearray

    def add(self, index: int, record: bytes) -> None:
        """A record Python made (of a packet the walk left to it)."""
        self.records.extend(record)
        self.indexes.extend(index.to_bytes(8, sys.byteorder, signed=True))


class LinesWriter(_Batched):
    """Verdict lines (JSON Lines), written in batches."""

    BATCH = 4096
    separated = False
    """Its lines are tab-separated (`Verdict.tsv_line`), not JSON."""

    def __init__(self, path: str):
        self.path = path
        self._file = _open_output(path, "wb")
        self._pending = bytearray()
        self._lines = 0

    def write(self, obj: Any) -> None:
        self.write_line(json.dumps(obj))

    def write_verdict(self, verdict: Verdict, index: int) -> None:
        self.write_line(verdict.json_line(index))

    def write_line(self, line: str) -> None:
        self._pending += line.encode()
        self._pending += b"\n"
        self._lines += 1
        if self._lines >= self.BATCH:
            self.flush()

    def write_block(self, block: bytes | bytearray, lines: int) -> None:
        """`lines` whole lines, UTF-8, each ending in a newline: as the C walk and `merge_lines` give them."""
        self._pending += block
        self._lines += lines
        if self._lines >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            block, self._pending, self._lines = self._pending, bytearray(), 0
            with _naming(self.path):
                self._write(block)

    def _write(self, block: bytearray) -> None:
        self._file.write(block)


class ParquetWriter(LinesWriter):
    """Verdicts as Apache Parquet, one typed row per packet (or per flow, with packets and bytes, for
    flow-log input), for DuckDB, pandas or Spark. It takes the verdict lines tab-separated (`tsv_line`),
    as the C walk writes them, and pyarrow's CSV reader makes each row group's lines typed columns: a
    Python object per field and row would cost ten times the replay, and its JSON reader took five
    times the CSV reader's time."""

    BATCH = 65_536
    separated = True

    def __init__(self, path: str):
        try:
            import pyarrow as pa
            import pyarrow.compute as pc
            import pyarrow.csv as pcsv
            import pyarrow.parquet as pq
        except ImportError:
            raise DataplaneError("Parquet verdicts need pyarrow: pip install 'dataplane[parquet]'",
                                 file=path) from None
        self.path = path
        self._pa, self._pc, self._pcsv = pa, pc, pcsv
        types = {name: pa.string() for name in VERDICT_COLUMNS} | {"index": pa.int64(), "ts": pa.float64(),
                                                                   "packets": pa.int64(), "bytes": pa.int64()}
        self._schema = pa.schema([(name, pa.timestamp("us", tz="UTC") if name == "ts" else types[name])
                                  for name in VERDICT_COLUMNS])
        self._read = pcsv.ReadOptions(column_names=list(VERDICT_COLUMNS), block_size=1 << 22)
        self._parse = pcsv.ParseOptions(delimiter="\t", quote_char='"', double_quote=True, escape_char=False,
                                        newlines_in_values=True)
        self._convert = pcsv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""],
                                            quoted_strings_can_be_null=False)
        with _naming(path):
            self._file = pq.ParquetWriter(path, self._schema, compression="zstd")
        self._pending = bytearray()
        self._lines = 0
        self._blocks: Any = None  # a queue.Queue, and its thread, from the first row group on
        self._encoder: Any = None
        self._failure: BaseException | None = None

    def write(self, obj: Any) -> None:
        self.write_line(tsv_row(obj))

    def write_verdict(self, verdict: Verdict, index: int) -> None:
        self.write_line(verdict.tsv_line(index))

    def _write(self, block: bytearray) -> None:
        """Row groups are read and written by a thread of their own, in order: pyarrow lets go of the
        interpreter while it works, so they cost the replay little where a second core is free. The
        thread starts with the first group, after any worker processes were forked."""
        self._surface()
        if self._encoder is None:
            import queue
            import threading

            self._blocks = queue.Queue(maxsize=2)
            self._encoder = threading.Thread(target=self._encode_all, name=f"parquet {self.path}", daemon=True)
            self._encoder.start()
        self._blocks.put(bytes(block))  # type: ignore[union-attr]

    def _encode_all(self) -> None:
        while (block := self._blocks.get()) is not None:  # type: ignore[union-attr]
            if self._failure is None:
                try:
                    self._encode(block)
                except BaseException as e:  # raised where the replay writes next, or closes
                    self._failure = e

    def _encode(self, block: bytes) -> None:
        pa, pc = self._pa, self._pc
        table = self._pcsv.read_csv(pa.BufferReader(block), read_options=self._read,
                                    parse_options=self._parse, convert_options=self._convert)
        micros = pc.round(pc.multiply(table["ts"], 1_000_000.0), round_mode="half_to_even")  # as round(ts * 1e6)
        table = table.set_column(1, "ts", pc.cast(pc.cast(micros, pa.int64()), self._schema.field("ts").type))
        self._file.write_table(table)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._encoder is not None:
                self._blocks.put(None)  # type: ignore[union-attr]
                self._encoder.join()
            with _naming(self.path):
                self._file.close()
            self._surface()

    def _surface(self) -> None:
        """What the row groups' thread raised, raised here: an OSError as an error naming the file."""
        if self._failure is not None:
            with _naming(self.path):
                raise self._failure


def verdict_writer(path: str) -> LinesWriter:
    """JSON Lines, or Parquet for a name ending in .parquet."""
    return ParquetWriter(path) if path.lower().endswith(".parquet") else LinesWriter(path)


@dataclass
class Outputs:
    verdicts: str | None = None
    flow_log: str | None = None
    vnet_flow_log: str | None = None
    allowed: str | None = None
    denied: str | None = None
    translated: str | None = None
    summary: str | None = None
    report: str | None = None
    flow_log_dir: str | None = None
    vnet_flow_log_dir: str | None = None

    @property
    def by_decision(self) -> bool:
        """Whether a capture of the packets by their decision is asked for (`FRAME_OUTPUTS`)."""
        return any(getattr(self, name) for name in FRAME_OUTPUTS)


FRAME_OUTPUTS = ("allowed", "denied", "translated")
"""The outputs of packets by decision."""


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
    interrupted: bool = False
    timestamps_backwards: int = 0
    unsupported_link_types: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"packets": self.packets, "allowed": self.allowed, "denied": self.denied,
                "skipped": dict(sorted(self.skipped.items())), "rule_hits": self.rule_hits,
                "rules_never_hit": self.rules_never_hit, "flows": self.flows,
                "packets_per_second": round(self.packets_per_second, 1),
                "capture_seconds": round(self.capture_seconds, 6), "error": self.error,
                "interrupted": self.interrupted, "timestamps_backwards": self.timestamps_backwards,
                "unsupported_link_types": {str(k): v for k, v in sorted(self.unsupported_link_types.items())},
                "warnings": self.warnings}


Progress = Callable[[int], None]


def replay(scenario: Scenario, paths: Iterable[str], outputs: Outputs | None = None, *,
           updates: Iterable[Update] = (), progress: Progress | None = None,
           clock: Callable[[], float] | None = None, workers: int = 1, dask: str | None = None) -> Summary:
    """Replay captures through the scenario; outputs are written even when a capture breaks off.

    `workers` > 1 shards the flows over that many processes, `dask` over a Dask cluster (`local`, or
    a scheduler's address): the results are the same (`workers.py`), of captures and of flow logs.

    Raises CaptureError (a capture breaks off) and KeyboardInterrupt (the user stopped it) after
    closing every output, with the summary of what was done attached as `error.summary`.
    """
    outputs = outputs or Outputs()
    paths = list(paths)
    _check_outputs(outputs, paths, scenario, updates)
    if paths and all(is_flow_log(p) for p in paths):
        from .traffic import replay_flow_logs  # traffic builds on this module

        return replay_flow_logs(scenario, paths, outputs, updates=updates, clock=clock, workers=workers, dask=dask)
    if workers > 1 or dask is not None:
        from .workers import replay_sharded, runner_of
        runner, count = runner_of(workers, dask)
        return replay_sharded(scenario, paths, outputs, list(updates), count, runner, clock)
    writers: dict[str, Any] = {}
    flowlogs = _flow_logs(outputs, writers)
    traffic = _traffic(outputs)
    dataplane = Dataplane(scenario, listener=flowlogs)
    pending = sorted(updates, key=lambda u: u.at)
    tally = report_tally(dataplane, traffic, not (outputs.verdicts or flowlogs or outputs.by_decision), pending)
    hits: dict[tuple[str, str], int] = {}
    captures: list[Capture] = []
    summary = Summary()
    started = clock() if clock else 0.0
    first_ts = last_ts = None
    index = 0
    thaw = freeze_collector()
    try:
        captures = [Capture(p) for p in paths]
        verdict_lines = verdict_writer(outputs.verdicts) if outputs.verdicts else None
        if verdict_lines:
            writers["verdicts"] = verdict_lines
            if verdict_lines.separated:
                dataplane.tab_separated_lines()
        process = dataplane.process
        captures_out = outputs.by_decision
        per_packet = verdict_lines is not None or flowlogs is not None or captures_out or traffic is not None
        # What the C path may take without Python: verdict lines alone (it writes those of the packets it
        # takes); the allowed packets (it writes their frames: every known flow's packet is allowed); flow
        # logs and the denied packets, which hear of new flows only (it passes known flows' packets within
        # each flow-log minute)
        walkable = traffic is None and not outputs.translated
        written = NumberedLines(bytearray(), bytearray()) if verdict_lines is not None and walkable and \
            flowlogs is None and not captures_out else None
        allowed: list[bytes] | None = [] if outputs.allowed and walkable and verdict_lines is None else None
        new_flows_heard = walkable and verdict_lines is None and (flowlogs is not None or bool(outputs.denied))
        if new_flows_heard:  # the denied packets' frames are written by the Python loop, flow logs hear verdicts
            dataplane.walks_stop_at_new_flows(decided=not outputs.denied)
        pass_frames = dataplane.pass_frames if not per_packet or (new_flows_heard and allowed is None) or \
            tally is not None else None
        pass_records = dataplane.pass_records if (pass_frames is not None or written is not None or
                                                  allowed is not None or tally is not None) and len(captures) == 1 \
            else None
        shown = 0

        def show() -> None:
            nonlocal shown
            if progress is not None and index >= shown + 2048:
                progress(sum(c.bytes_read for c in captures))
                shown = index

        def until() -> float:
            due = -math.inf if first_ts is None else first_ts + pending[0].at if pending else math.inf
            return min(due, flowlogs.next_minute()) if flowlogs is not None else due

        def took(count: int, last: float, walked: bool) -> None:
            nonlocal index, last_ts
            if written is not None and written.text:
                verdict_lines.write_block(written.text, len(written.indexes) // 8)
                written.clear()
            if allowed:
                _pcap_writer(writers, outputs, "allowed", 1).write_records(allowed)  # C walks Ethernet frames only
                allowed.clear()
            if tally is not None:
                traffic.take_counts()  # type: ignore[union-attr]
            index += count
            last_ts = last
            show()

        frames = read_in_c(captures[0], dataplane.read_frames) if pass_records is None and pass_frames is None \
            and dataplane.read_frames is not None and len(captures) == 1 else merged(captures)
        for frame in left_to_python(frames, captures[0] if captures else None, pass_records, pass_frames,
                                    hits, until, took, lines=written, index=lambda: index,
                                    heard=flowlogs.verdict if flowlogs is not None else
                                    (lambda new: traffic.decided_in_c(new[0], new[1], None, new[3]))  # type: ignore
                                    if tally is not None else None, allowed=allowed, tally=tally):
            show()
            index += 1
            ts, linktype, data, _ = frame
            if first_ts is None:
                first_ts = ts
            last_ts = ts
            while pending and ts >= first_ts + pending[0].at:
                update = pending.pop(0)
                dataplane.replace_nsg(update.nsg, first_ts + update.at)
            verdict = process(data, ts, linktype)
            if verdict.reason == "unsupported-link-type":
                summary.unsupported_link_types[linktype] = summary.unsupported_link_types.get(linktype, 0) + 1
            count_hits(hits, (verdict,))
            if per_packet:
                if verdict_lines is not None:
                    verdict_lines.write_verdict(verdict, index - 1)
                if flowlogs is not None:
                    flowlogs.verdict(verdict)
                if traffic is not None:
                    traffic.verdict(verdict, frame.wirelen)
                if captures_out:
                    _write_frame(writers, outputs, frame, verdict.decision, verdict.translated)
    except CaptureError as e:
        summary.error = str(e)
        e.summary = summary  # type: ignore[attr-defined]
        raise
    except KeyboardInterrupt as e:
        summary.interrupted = True
        e.summary = summary  # type: ignore[attr-defined]
        raise
    finally:
        thaw()
        if last_ts is not None:
            dataplane.close(last_ts)
        if flowlogs is not None:
            flowlogs.close()
        linktype = next((c.linktype for c in captures if c.linktype is not None), 1)
        for name in FRAME_OUTPUTS:
            if getattr(outputs, name):  # an output no packet reached is an empty capture
                _pcap_writer(writers, outputs, name, linktype)
        failure = _close_all(writers.values())
        for capture in captures:
            capture.close()
        _fill_summary(summary, dataplane.stats, hits, scenario)
        summary.seconds = (clock() - started) if clock else 0.0
        summary.capture_seconds = (last_ts - first_ts) if first_ts is not None else 0.0
        summary.timestamps_backwards = sum(c.backwards for c in captures)
        summary.warnings += never_applied(pending, summary.capture_seconds)
        if tally is not None:
            traffic.take_counts(everything=True)  # type: ignore[union-attr]
        _write_summary(outputs, summary, traffic, scenario, [c.path for c in captures])
        if failure is not None:
            raise failure
    return summary


def report_tally(dataplane: Dataplane, traffic: Traffic | None, alone: bool, updates: list) -> Any:
    """For a report that is `alone` of the outputs of each packet, the C walk's counts of known flows'
    packets (`Traffic.counted_in_c`), which the walk takes without Python once the collector has heard
    of their flow's first packet (a capture's walk also decides new flows and hands them back; a walk of
    frames merged from several stops at them). None where every packet goes through Python: other
    per-packet outputs, no C, `--update` (a rule's access may change)."""
    if traffic is None or not alone or Tally is None or dataplane.pass_records is None or updates:
        return None
    tally = Tally(by_minute=True)
    traffic.counted_in_c(tally)
    return tally


def never_applied(updates: Iterable[Update], capture_seconds: float) -> list[str]:
    """The summary's warning for each `--update` due after the capture's last packet."""
    return [f"--update at {u.at:g} s ({u.nsg.name}) was never applied: the capture ends {capture_seconds:g} s "
            "after its first packet" for u in updates]


def worker_count(text: str) -> int:
    """`--workers N`, or `auto` for the machine's cores (here, not in `workers`: one worker needs none of it)."""
    if text == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise DataplaneError(f"--workers {text!r}: expected a positive number of processes or 'auto'")
    return count


def _traffic(outputs: Outputs) -> Traffic | None:
    """The report's collector, with `--report`, whose plotting extra must be there before the replay, not after."""
    if not outputs.report:
        return None
    from .report import Traffic, require_extra

    require_extra()
    return Traffic()


def _write_summary(outputs: Outputs, summary: Summary, traffic: Traffic | None, scenario: Scenario,
                   captures: list[str]) -> None:
    """The summary file and the HTML report, once every other output is closed."""
    if outputs.summary:
        _write_json(outputs.summary, summary.to_json())
    if outputs.report and traffic is not None:
        from .report import render_replay_report

        sources = [f"scenario {scenario.file}"] if scenario.file else []
        render_replay_report(summary.to_json(), traffic, outputs.report,
                             sources=sources + [f"capture {c}" for c in captures])


class RecordsFile:
    """A flow log as one JSON document, `{"records": [...]}`, written record by record as minutes close."""

    def __init__(self, path: str):
        self.path = path
        self._file = _open_output(path, "w")
        self._count = 0
        with _naming(path):
            self._file.write('{"records": [')

    def write(self, record: dict[str, Any]) -> None:
        with _naming(self.path):
            self._file.write((",\n" if self._count else "\n") + json.dumps(record, separators=(",", ":")))
        self._count += 1

    def close(self) -> None:
        try:
            with _naming(self.path):
                self._file.write("\n]}\n")
        finally:
            with _naming(self.path):
                self._file.close()


class StorageTree:
    """Flow logs laid out as Azure writes them to a storage account: one compact `PT1H.json` per NSG
    (or flow log) and MAC and hour, written when the capture's clock leaves that hour (reference §6)."""

    def __init__(self, root: str, container: str, id_field: str):
        self.path = root
        self._root = Path(root) / container
        self._id_field = id_field
        self._hour = ""
        self._blobs: dict[Path, list[dict[str, Any]]] = {}

    def write(self, record: dict[str, Any]) -> None:
        time = record["time"]
        if time[:13] != self._hour:
            self._write_hour()
            self._hour = time[:13]
        folder = (f"{self._id_field}={record[self._id_field]}/y={time[0:4]}/m={time[5:7]}/d={time[8:10]}/"
                  f"h={time[11:13]}/m=00/macAddress={record['macAddress']}")
        self._blobs.setdefault(self._root / folder / "PT1H.json", []).append(record)

    def close(self) -> None:
        self._write_hour()

    def _write_hour(self) -> None:
        blobs, self._blobs = self._blobs, {}
        for blob, records in blobs.items():
            with _naming(str(blob)):
                blob.parent.mkdir(parents=True, exist_ok=True)
                blob.write_text(json.dumps({"records": records}, separators=(",", ":")), encoding="utf-8")


def _flow_logs(outputs: Outputs, writers: dict[str, Any]) -> FlowLogs | None:
    """The flow log builder, feeding every flow log output asked for (they join `writers`)."""
    sinks: dict[str, list[Any]] = {"nsg": [], "vnet": []}
    for name, kind, make in (
            ("flow_log", "nsg", RecordsFile), ("vnet_flow_log", "vnet", RecordsFile),
            ("flow_log_dir", "nsg", lambda p: StorageTree(p, "insights-logs-networksecuritygroupflowevent",
                                                          "resourceId")),
            ("vnet_flow_log_dir", "vnet", lambda p: StorageTree(p, "insights-logs-flowlogflowevent",
                                                                "flowLogResourceID"))):
        path = getattr(outputs, name)
        if path:
            writers[name] = make(path)
            sinks[kind].append(writers[name])
    if not sinks["nsg"] and not sinks["vnet"]:
        return None

    def emit(kind: str, record: dict[str, Any]) -> None:
        for sink in sinks[kind]:
            sink.write(record)

    from .flowlog import FlowLogs

    return FlowLogs(emit, tuple(kind for kind, kept in sinks.items() if kept))


def _write_frame(writers: dict[str, Any], outputs: Outputs, frame: Frame, decision: str,
                 translated: tuple | None) -> None:
    for name, data in frame_outputs(outputs, frame, decision, translated):
        _pcap_writer(writers, outputs, name, frame.linktype).write(frame.ts, data, max(frame.wirelen, len(data)))


def frame_outputs(outputs: Outputs, frame: Frame, decision: str,
                  translated: tuple | None) -> Iterator[tuple[str, bytes]]:
    """The outputs asked for that a packet goes to, each with its frame as written there."""
    for name, wanted in zip(FRAME_OUTPUTS, (decision == "Allow", decision == "Deny", decision == "Allow")):
        if wanted and getattr(outputs, name):
            yield name, translate_frame(frame.data, frame.linktype, translated) \
                if name == "translated" and translated is not None else frame.data


def _pcap_writer(writers: dict[str, Any], outputs: Outputs, name: str, linktype: int) -> PcapWriter:
    """The capture an output of packets by decision goes to, opened for the link type of its first frame."""
    writer = writers.get(name)
    if writer is None:
        writer = writers[name] = PcapWriter(getattr(outputs, name), linktype)
    return writer


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


def _fill_summary(summary: Summary, stats: Statistics, hits: dict, scenario: Scenario) -> None:
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
    with _naming(path), _open_output(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


@contextmanager
def _naming(path: str) -> Iterator[None]:
    """An output that fails mid-run (a full disk, a closed device) is an error naming it."""
    try:
        yield
    except OSError as e:
        raise DataplaneError(f"cannot write: {e.strerror or e}", file=path) from None


def _close_all(writers: Iterable[Any]) -> DataplaneError | None:
    """Closes every writer, also after one fails; the first failure is returned to be raised."""
    first = None
    for writer in writers:
        try:
            writer.close()
        except DataplaneError as e:
            first = first or e
    return first


def _check_outputs(outputs: Outputs, captures: list[str], scenario: Scenario, updates: Iterable[Update]) -> None:
    """Before anything is written: no file is both an output and an input, or two outputs."""
    inputs = {**{c: "a capture" for c in captures}, **{u.nsg.file: "an --update file" for u in updates if u.nsg.file}}
    if scenario.file:
        inputs[scenario.file] = "the scenario"
    seen: dict[str, str] = {}
    for name in ("verdicts", "flow_log", "vnet_flow_log", "allowed", "denied", "translated", "summary", "report"):
        path = getattr(outputs, name, None)
        if not path or _is_device(path):
            continue
        option = "--" + name.replace("_", "-")
        real = os.path.realpath(path)
        for given, what in inputs.items():
            if os.path.realpath(given) == real:
                raise DataplaneError(f"{option} would overwrite {what}", file=path)
        if real in seen:
            raise DataplaneError(f"given to both {seen[real]} and {option}", file=path)
        seen[real] = option


def _is_device(path: str) -> bool:
    """/dev/null, /dev/stdout and pipes may take several outputs."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)
