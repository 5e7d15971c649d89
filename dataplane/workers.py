"""`replay|whatif --workers N` and `--dask ADDRESS`: the flows sharded over processes.

Every worker reads the whole capture and lets its Dataplane see only its shard's packets
(`shards.py` keeps a flow's packets together); for the others it only lets the capture's clock run,
so flows idle out and flow-log minutes close exactly when they would in one process. Each worker
hands back its verdict lines and pcap records by packet index, its flow-log tuples with the place each
had in the one-process order, and the report's counts of its packets, and the client merges and writes
every output: the files equal one worker's.
`whatif` shards the same way: each worker reports its shard's flows, and the reports add up to one
process's.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import io
import math
import mmap
import os
import pickle
import signal
import struct
import sys
import threading
from array import array
from collections import Counter
from dataclasses import fields
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, NamedTuple

from .addresses import ip_key
from .conntrack import FlowRecord
from .decode import LINKTYPE_ETHERNET
from .errors import CaptureError, DataplaneError
from .flowlog import _STATE, FlowLogs
from .pipeline import Dataplane, Statistics, Verdict
from .replay import (FRAME_OUTPUTS, OTHERS, PASS_BATCH, Capture, Frame, NumberedLines, NumberedRecords, Outputs,
                     Summary, Update, _close_all, _fill_summary, _flow_logs, _pcap_writer, _traffic, _write_summary,
                     collector_paused, count_hits, frame_outputs, freeze_collector, left_to_python, merged,
                     never_applied, pcap_record, report_tally, verdict_writer)
from .report import Traffic
from .shards import FrameShards, Shards, pair_shard, shard_filter_of
from .topology import Scenario

if TYPE_CHECKING:
    from .traffic import FlowTally
    from .whatif import Report

CLUSTER_EXTRA = "--dask needs dask and distributed: pip install 'dataplane[cluster]'"


class Wanted(NamedTuple):
    """What the client needs back from each worker besides the counts."""

    report: bool
    flow_logs: bool
    verdict_lines: bool
    """Verdicts are written (JSON Lines or Parquet, both made of lines): each comes back as its line
    (`Verdict.json_line`, or `tsv_line`), ready to write."""
    frames: Outputs | None
    """The outputs of packets by decision asked for (`--allowed`, `--denied`, `--translated`): each worker
    makes the pcap records of its packets that go there."""
    separated: bool = False
    """The verdict lines are tab-separated (`Verdict.tsv_line`), for Parquet."""

    @property
    def per_packet(self) -> bool:
        """Whether something comes back of each packet."""
        return self.verdict_lines or self.frames is not None


def merge_lines_python(texts: list[bytes], indexes: list[bytes], per_block: int, records: bool = False,
                       write: Callable[[bytes, int], Any] | None = None) -> list[bytes] | None:
    """Workers' verdict lines (or pcap records) in index order, `per_block` a bytes object, each given to
    `write(block, count)` when there is one: `_fastpath.merge_lines`, which the tests check against this,
    without a compiler."""
    numbered = heapq.merge(*(zip(array("q", ix), _records(bytes(text)) if records else
                                 (line + b"\n" for line in bytes(text).split(b"\n")[:-1]))
                             for text, ix in zip(texts, indexes)))
    ordered = [item for _, item in numbered]
    blocks = [ordered[i:i + per_block] for i in range(0, len(ordered), per_block)]
    if write is None:
        return [b"".join(block) for block in blocks]
    for block in blocks:
        write(b"".join(block), len(block))
    return None


def _records(text: bytes) -> Iterator[bytes]:
    """pcap records one after another, as `pcap_record` makes them."""
    at = 0
    while at < len(text):
        end = at + 16 + int.from_bytes(text[at + 8:at + 12], "little")
        yield text[at:end]
        at = end


try:
    from ._fastpath import merge_lines
except ImportError:  # installed without a C compiler
    merge_lines = merge_lines_python


class ShardResult(NamedTuple):
    verdicts: list[tuple[int, str]]
    """(packet index, verdict line) of each of the shard's packets, when Python writes the lines; empty when
    they are all the client writes (`lines`, two buffers). Lines, not Verdicts, travel: they pickle ten
    times faster."""
    lines: NumberedLines | None
    framed: dict[str, tuple[int, NumberedRecords]]
    """Of each output of packets by decision: the link type of its first record, and the pcap records of
    the shard's packets that go there."""
    traffic: Traffic | None
    """What the report shows of the shard's packets, counted where they were decided (`Traffic.merged`)."""
    minutes: list[tuple[float, list[tuple[tuple, tuple]]]]
    """Closed flow-log minutes: (minute, [(place in the one-process order, the fields of a flowlog._Tuple)])."""
    stats: Statistics
    hits: dict[tuple[str, str], int]
    unsupported_link_types: dict[int, int]
    frames: int
    first_ts: float | None
    last_ts: float | None
    backwards: int
    linktype: int | None
    updates_applied: int
    error: CaptureError | None


class ShardFlowLogs(FlowLogs):
    """Flow logs that keep minutes as tuples, each with its place in the order one process makes them:
    (packet index, phase, ...) for tuples made at a packet; a minute's C tuples last, in the order their
    flows began, as `FlowLogs.tick` makes them."""

    def __init__(self, nic_order: dict[str, int]) -> None:
        super().__init__(lambda kind, record: None)
        self.minutes: list[tuple[float, list]] = []
        self._nic_order = nic_order
        self._began: dict[int, tuple] = {}
        self._index = 0
        self._phase: tuple = ()
        self._seq = 0
        self.walk_position: Callable[[], int] = lambda: -1
        """The index of the packet whose new flow a C walk is deciding, else -1 (`Dataplane.walk_taken`)."""

    def at(self, index: int, phase: tuple) -> None:
        """Where the replay is: phase (0, n) the n-th NSG update, (1,) the sweep of expired flows,
        (2,) the packet itself, (3,) the end of the capture."""
        self._index, self._phase, self._seq = index, phase, 0

    def _at_packet(self, index: int) -> None:
        if index != self._index or self._phase != (2,):
            self.at(index, (2,))

    def flow_started(self, nic: str, record: FlowRecord, ts: float) -> None:
        at = self.walk_position()
        if at >= 0:  # a flow a C walk made: its begin's place is its packet's
            self._at_packet(at)
        super().flow_started(nic, record, ts)

    def decided(self, index: int, verdict: Verdict) -> None:
        """A new flow's verdict from a C walk, heard after it: a walk stops right after a flow it denies,
        so a deny (the tuple this makes) is the packet at `index`, the walk's last."""
        self._at_packet(index)
        self.verdict(verdict)

    def _entry(self, t: tuple, nic: str | None, record: FlowRecord | None) -> tuple:
        state = t[_STATE]
        if state == "C":
            return (1, self._began[id(record)]), t
        phase = self._phase
        if phase == (2,):
            self._seq += 1
            place = (0, self._index, 2, self._seq)
        elif phase == (1,):  # the order of Dataplane.advance
            place = (0, self._index, 1, record.expires, self._nic_order[nic], record.key)
        else:  # NSG by NSG, NIC by NIC, each table's flows in the order they began
            place = (0, self._index, *phase, self._nic_order[nic], self._began[id(record)])
        if state == "B":
            self._began[id(record)] = place
        elif state == "E":
            del self._began[id(record)]
        return place, t

    def _closed(self, minute: float, tuples: list) -> None:
        self.minutes.append((minute, tuples))


class ShardFrames:
    """The shard's frames out of all the capture's: the one place a worker passes over the others'
    frames, which only move its clock (NSG updates, the sweep of idle flows, flow-log minutes). Such a
    frame changes nothing unless it is the first or last, or its time reaches the next update, sweep
    (`Dataplane.pass_time`) or flow-log minute: a reader that filters shards in C need only hand those
    over, with the count of frames before each."""

    def __init__(self, dataplane: Dataplane, logs: ShardFlowLogs | None, shards: Shards, index: int,
                 updates: list[Update], shard_filter: Any = None) -> None:
        self._dataplane, self._logs, self._index = dataplane, logs, index
        self._shard = FrameShards(shards)
        self._shard_in_c: Callable[[bytes], int] | None = shard_filter.shard if shard_filter is not None else None
        """The shard of an Ethernet frame C keys (IPv4, not ICMP), else -1: `FrameShards` without Python."""
        self._pending = sorted(updates, key=lambda u: u.at)
        self.count = 0
        """Frames read so far; the one last yielded has index count - 1."""
        self.applied = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._due = math.inf
        """When the next update is due."""

    def of(self, frames: Iterator[Frame], walked: bool = False) -> Iterator[Frame]:
        """`walked`: a C walk takes the records between the frames asked for, so another shard's frame is
        answered with `OTHERS` and the walk goes on after it, rather than with this shard's next frame, which
        may be far ahead: Python would read every frame up to it."""
        shard, in_c, index, logs, met = self._shard, self._shard_in_c, self._index, self._logs, self._met
        for frame in frames:
            met(self.count, frame[0])
            which = in_c(frame[2]) if in_c is not None and frame[1] == 1 else -1
            if (which if which >= 0 else shard(frame[2], frame[1])) == index:
                if logs is not None:
                    logs.at(self.count - 1, (2,))
                yield frame
                continue
            if logs is not None:
                logs.tick(frame[0])
            if walked:
                yield OTHERS

    def read(self, capture: Capture, read_frames: Callable[..., tuple], shard: Any,
             until: Callable[[], float]) -> Iterator[Frame]:
        """The shard's frames of one capture, made in C (`Dataplane.read_frames`) with the other shards'
        records skipped there up to `until()`; `of` reads what C leaves, one frame at a time."""
        frames = self.of(capture.frames(), walked=True)
        places = bytearray()
        logs = self._logs
        while True:
            first = self.count
            taken, last, *made = capture.walk(read_frames, until(), PASS_BATCH, Frame, shard, places)
            for offset, frame in zip(array("q", places), made[0] if made else ()):
                self._met(first + offset, frame[0])
                if logs is not None:
                    logs.at(first + offset, (2,))
                yield frame
            places.clear()
            if taken:
                self.count = first + taken
                self.last_ts = last
            if taken < PASS_BATCH:
                frame = next(frames, None)
                if frame is None:
                    return
                if frame is not OTHERS:
                    yield frame

    def _met(self, i: int, ts: float) -> None:
        """Frame i, at ts, is read: the updates due by then deployed, the clock moved."""
        self.count = i + 1
        self.last_ts = ts
        if self.first_ts is None:
            self.first_ts = ts
            self._due = self._next_update()
        if ts >= self._due:
            self._due = self._update(i, ts)
        if self._logs is not None:
            self._logs.at(i, (1,))
        self._dataplane.pass_time(ts)

    def _next_update(self) -> float:
        return self.first_ts + self._pending[0].at if self._pending else math.inf

    def until(self) -> float:
        """Up to when a reader may skip frames past this shard without handing them over: the next
        update (the sweeps it leaves to the C path, which stops before one is due)."""
        return -math.inf if self.first_ts is None else self._next_update()

    def _update(self, i: int, ts: float) -> float:
        """Every update due at ts, deployed as one process deploys it; when the next one is due."""
        pending = self._pending
        while pending and ts >= self.first_ts + pending[0].at:
            update = pending.pop(0)
            if self._logs is not None:
                self._logs.at(i, (0, self.applied))
            self.applied += 1
            self._dataplane.replace_nsg(update.nsg, self.first_ts + update.at)
        return self._next_update()


def run_shard(scenario: Scenario, paths: list[str], updates: list[Update], shards: Shards, index: int,
              wanted: Wanted) -> ShardResult:
    """One worker: the whole capture read, the shard's packets replayed, the others' clock kept. Without
    per-packet outputs the C fast path passes the packets of known flows, as in one process."""
    logs = ShardFlowLogs({name: i for i, name in enumerate(scenario.network_interfaces)}) \
        if wanted.flow_logs else None
    dataplane = Dataplane(scenario, listener=logs)
    process = dataplane.process
    line_of = Verdict.tsv_line if wanted.separated else Verdict.json_line
    if wanted.separated:
        dataplane.tab_separated_lines()
    shard_filter = shard_filter_of(shards, index) if dataplane.pass_records is not None else None  # C is built
    own = ShardFrames(dataplane, logs, shards, index, updates, shard_filter)
    hits: dict[tuple[str, str], int] = {}
    unsupported: dict[int, int] = {}
    verdicts: list[tuple[int, str]] = []
    framed = {name: NumberedRecords(bytearray(), bytearray()) for name in FRAME_OUTPUTS
              if wanted.frames is not None and getattr(wanted.frames, name)}
    linktypes: dict[str, int] = {}
    """Of each output whose first record Python made, that frame's link type: the C walk's are Ethernet."""
    captures: list[Capture] = []
    traffic = Traffic() if wanted.report else None
    alone = not (wanted.verdict_lines or wanted.flow_logs or wanted.frames is not None)
    tally = report_tally(dataplane, traffic, alone, updates)
    # flow logs alone hear of new flows only: known flows' packets pass in C within a minute, as in one process
    pass_frames = dataplane.pass_frames if not (wanted.per_packet or wanted.report) or tally is not None else None
    if logs is not None and pass_frames is not None:  # a tuple's place is its packet's: the walk tells it
        dataplane.walks_stop_at_new_flows(decided=True)
        logs.walk_position = lambda: own.count + taken if (taken := dataplane.walk_taken) >= 0 else -1
    # verdict lines alone: the C walk writes those of the shard's packets it takes, as in one process
    written = NumberedLines(bytearray(), bytearray()) if wanted.verdict_lines and not (
        wanted.report or wanted.frames is not None or logs is not None) else None
    # the allowed and denied packets alone: as in one process, the C walk makes the records of the allowed
    # packets it takes (with their places), and Python those of the packets left to it
    by_decision = wanted.frames if wanted.frames is not None and not (
        wanted.frames.translated or wanted.report or wanted.verdict_lines or logs is not None) else None
    walked_records = framed["allowed"] if by_decision is not None and by_decision.allowed else None
    if by_decision is not None and by_decision.denied:
        dataplane.walks_stop_at_new_flows(decided=False)
    # each of the shard's packets goes through Python: its frames are made in C, the others' records skipped there
    read_frames = dataplane.read_frames if pass_frames is None and written is None and by_decision is None \
        and tally is None and len(paths) == 1 else None
    pass_records = dataplane.pass_records if len(paths) == 1 and read_frames is None else None
    error = None
    thaw = freeze_collector()  # the first shard runs in the client, whose objects must thaw after it
    try:
        captures = [Capture(p) for p in paths]

        def took(count: int, last: float, walked: bool) -> None:
            if walked:  # records the walk took never went through `own`
                own.count += count
                own.last_ts = last
            if tally is not None:
                traffic.take_counts()  # type: ignore[union-attr]

        def until() -> float:
            """Frames through `own` have its updates applied: walks and reads in C, which skip it, stop before one."""
            due = own.until() if len(captures) == 1 else math.inf
            return min(due, logs.next_minute()) if logs is not None else due
        heard = (lambda verdict: logs.decided(own.count - 1, verdict)) if logs is not None else \
            (lambda new: traffic.decided_in_c(*new)) if tally is not None else None  # type: ignore[union-attr]
        frames = own.read(captures[0], read_frames, shard_filter, until) if read_frames is not None else \
            left_to_python(own.of(merged(captures), pass_records is not None), captures[0], pass_records,
                           pass_frames, hits, until, took, shard_filter, lines=written, index=lambda: own.count,
                           heard=heard, allowed=walked_records, tally=tally)
        for frame in frames:
            ts, linktype, data, wirelen = frame
            i = own.count - 1
            verdict = process(data, ts, linktype)
            if verdict.reason == "unsupported-link-type":
                unsupported[linktype] = unsupported.get(linktype, 0) + 1
            count_hits(hits, (verdict,))
            if logs is not None:
                logs.verdict(verdict)
            if traffic is not None:
                traffic.verdict(verdict, wirelen, i)
            if wanted.frames is not None:
                for name, out in frame_outputs(wanted.frames, frame, verdict.decision, verdict.translated):
                    if not framed[name].indexes:
                        linktypes[name] = linktype
                    framed[name].add(i, pcap_record(ts, out, max(wirelen, len(out))))
            if wanted.verdict_lines:
                if written is not None:
                    written.add(i, line_of(verdict, i))
                else:
                    verdicts.append((i, line_of(verdict, i)))
    except CaptureError as e:
        error = e
    finally:
        thaw()
        for capture in captures:
            capture.close()
    if tally is not None:
        traffic.take_counts(everything=True)  # type: ignore[union-attr]
    if own.last_ts is not None:
        if logs is not None:
            logs.at(own.count, (1,))
        dataplane.advance(own.last_ts)
        if logs is not None:
            logs.at(own.count, (3,))
        dataplane.close(own.last_ts)
    if logs is not None:
        logs.close()
    framed_of = {name: (linktypes.get(name, LINKTYPE_ETHERNET), kept) for name, kept in framed.items() if kept.indexes}
    return ShardResult(verdicts, written, framed_of, traffic, logs.minutes if logs is not None else [], dataplane.stats,
                       hits, unsupported, own.count, own.first_ts, own.last_ts, sum(c.backwards for c in captures),
                       next((c.linktype for c in captures if c.linktype is not None), None), own.applied, error)


Runner = Callable[[Callable[..., Any], list[tuple]], list[Any]]
"""Runs a worker (run_shard, whatif_shard) once per argument tuple, somewhere, and returns the results in order."""


def local_runner(workers: int) -> Runner:
    """Processes on this machine, the first call run here (this process has nothing else to do while
    the others run), the others in children forked after it has loaded everything they need; Ctrl-C
    stops them at once. With other threads running, which a fork would not carry, the children are
    forked from a server that has imported the package, and this process only waits; where processes
    cannot fork, they are fresh interpreters."""
    def run(function: Callable[..., Any], calls: list[tuple]) -> list[Any]:
        if threading.active_count() > 1 or not hasattr(os, "fork"):
            import multiprocessing  # here: a forked run starts without it

            server = "forkserver" in multiprocessing.get_all_start_methods()  # else fresh interpreters (Windows)
            context = multiprocessing.get_context("forkserver" if server else "spawn")
            if server:
                context.set_forkserver_preload([__name__])
            with context.Pool(workers, initializer=_ignore_interrupts) as pool:
                try:
                    return pool.starmap(function, calls)
                except BaseException:
                    pool.terminate()
                    raise
        _reap_answered()
        sys.stdout.flush()  # what this process has buffered is written once, not again by each child
        sys.stderr.flush()
        children: list[tuple[int, int, BinaryIO]] = []
        ended: set[int] = set()
        try:
            for call in calls[1:]:
                kept = _result_file()
                receive, send = os.pipe()
                try:
                    pid = os.fork()
                except OSError:
                    for fd in (receive, send):
                        os.close(fd)
                    kept.close()
                    raise
                if pid == 0:
                    os.close(receive)
                    _child(function, call, send, kept)
                os.close(send)
                children.append((pid, receive, kept))
            results = [function(*calls[0])] if calls else []
            for pid, receive, kept in children:
                if not os.read(receive, 1):
                    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    ended.add(pid)
                    raise DataplaneError(f"a worker process ended (exit code {status}) before giving its results")
                with collector_paused():
                    done, result = _load_result(kept)
                ended.add(pid)
                if not _ANSWERED:
                    atexit.register(_reap_answered)
                _ANSWERED.append(pid)
                if not done:
                    raise result
                results.append(result)
            return results
        finally:
            for pid, receive, kept in children:
                os.close(receive)
                kept.close()
                if pid not in ended:
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
    return run


_ANSWERED: list[int] = []
"""Workers that gave their results and are ending, reaped by the next forked run or at exit: waiting for
one to free its memory would delay the merge (7-9 ms after a shard of the churn capture), and a process
whose parent ended is not reaped by every container's first process."""


def _reap_answered() -> None:
    while _ANSWERED:
        with contextlib.suppress(ChildProcessError):  # reaped by other code's os.wait()
            os.waitpid(_ANSWERED.pop(), 0)
    atexit.unregister(_reap_answered)


def _result_file() -> BinaryIO:
    """Where a forked worker leaves its result: a file in memory, as a pipe would move a worker's verdict
    lines (hundreds of MB) 64 KB at a time."""
    if hasattr(os, "memfd_create"):
        return open(os.memfd_create("dataplane-worker"), "w+b")
    import tempfile  # where memfd_create is missing only

    return tempfile.TemporaryFile()


def _child(function: Callable[..., Any], call: tuple, send: int, kept: BinaryIO) -> None:
    """A forked worker: its result, or what it raised, into `kept`, then a byte through the pipe `send`;
    it ends there, without the exit handlers and buffers it shares with the client."""
    status = 1
    try:
        _ignore_interrupts()
        try:
            outcome = (True, function(*call))
        except BaseException as e:  # the client raises it
            outcome = (False, e)
        _dump_result(outcome, kept)
        os.write(send, b".")
        status = 0
    finally:
        os._exit(status)


class _ResultPickler(pickle.Pickler):
    """A worker's result with its large buffers (verdict lines, pcap records and their indexes) out of
    band, to be written after the pickle as they are and mapped by the client rather than copied twice
    (`_load_result`): the client's merge reads them in place."""

    LARGE = 1 << 16

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (NumberedLines, NumberedRecords)):
            return type(obj), tuple(pickle.PickleBuffer(b) if len(b) >= self.LARGE else b for b in obj)
        return NotImplemented


def _dump_result(outcome: tuple, kept: BinaryIO) -> None:
    """A result pickled without the memo of every object written (a quarter of the time for a shard's
    flow-log tuples, on the critical path: the client waits for it), its large buffers after it: the
    pickle's length, the buffers' count and lengths, the pickle, then each buffer at a multiple of 8
    bytes (their int64s stay aligned). Shared objects are written once per reference, which results can
    afford; a cycle, which fast mode refuses, is pickled the usual way."""
    buffers: list[pickle.PickleBuffer] = []
    data = io.BytesIO()
    pickler = _ResultPickler(data, protocol=5, buffer_callback=buffers.append)
    pickler.fast = True
    try:
        pickler.dump(outcome)
    except ValueError:
        buffers.clear()
        data = io.BytesIO()
        _ResultPickler(data, protocol=5, buffer_callback=buffers.append).dump(outcome)
    views = [buffer.raw() for buffer in buffers]
    kept.write(struct.pack(f"<QQ{len(views)}Q", data.tell(), len(views), *(view.nbytes for view in views)))
    kept.write(data.getbuffer())
    for view in views:
        kept.write(bytes(-kept.tell() % 8))
        kept.write(view)
    kept.flush()


def _load_result(kept: BinaryIO) -> Any:
    """A result `_dump_result` wrote, its large buffers left where they are, in the mapped file."""
    whole = memoryview(mmap.mmap(kept.fileno(), 0, access=mmap.ACCESS_READ))
    size, count = struct.unpack_from("<QQ", whole)
    lengths = struct.unpack_from(f"<{count}Q", whole, 16)
    at = 16 + 8 * count
    data = whole[at:at + size]
    at += size
    buffers = []
    for length in lengths:
        at += -at % 8
        buffers.append(whole[at:at + length])
        at += length
    return pickle.loads(data, buffers=buffers)


def _ignore_interrupts() -> None:
    """Ctrl-C reaches the whole process group: the client stops the workers itself, with a SIGTERM that
    ends them at once (not through the client's handler, which writes what was replayed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def dask_runner(address: str, workers: int | None) -> tuple[Runner, int]:
    """A Dask cluster (`local`: processes on this machine, listening on loopback only) and the shard
    count: --workers when given, else one shard per worker thread of the cluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DataplaneError(CLUSTER_EXTRA) from None
    if address == "local":
        count = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    else:
        cluster = None
        try:
            client = Client(address, timeout="10s")
        except OSError as e:
            raise DataplaneError(f"--dask {address}: cannot reach the scheduler: {e}") from None
        count = workers or sum(client.nthreads().values()) or 1

    def run(function: Callable[..., ShardResult], calls: list[tuple]) -> list[ShardResult]:
        try:
            futures = [client.submit(function, *call, pure=False) for call in calls]
            return client.gather(futures)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return run, count


def runner_of(workers: int, dask: str | None) -> tuple[Runner, int]:
    """`--dask ADDRESS` (with `--workers N` as its shard count), else `--workers N` local processes."""
    if dask is not None:
        return dask_runner(dask, workers if workers > 1 else None)
    return local_runner(workers), workers


def _check_rereadable(paths: list[str], folders: bool = False) -> None:
    """Every worker reads the whole input: a pipe or device cannot be read again."""
    for path in paths:
        if os.path.exists(path) and not os.path.isfile(path) and not (folders and os.path.isdir(path)):
            raise DataplaneError("every worker reads the whole input, and a pipe or device can be read only "
                                 "once: give it to one worker", file=path)


def replay_sharded(scenario: Scenario, paths: list[str], outputs: Outputs, updates: list[Update],
                   count: int, runner: Runner, clock: Callable[[], float] | None) -> Summary:
    """`replay` over `count` shards: the results and every output as one process gives them."""
    _check_rereadable(paths)
    writers: dict[str, Any] = {}
    flowlogs = _flow_logs(outputs, writers)
    traffic = _traffic(outputs)
    shards = Shards.of(scenario, count)
    summary = Summary()
    started = clock() if clock else 0.0
    results: list[ShardResult] = []
    try:
        lines = verdict_writer(outputs.verdicts) if outputs.verdicts else None
        if lines is not None:
            writers["verdicts"] = lines
        wanted = Wanted(traffic is not None, flowlogs is not None, lines is not None,
                        outputs if outputs.by_decision else None, lines is not None and lines.separated)
        results = runner(run_shard, [(scenario, paths, updates, shards, index, wanted) for index in range(count)])
        first = results[0]
        for update in sorted(updates, key=lambda u: u.at)[:first.updates_applied]:
            scenario.network_security_groups[update.nsg.name] = update.nsg
        if flowlogs is not None:
            with collector_paused():  # a third of the merge's time went to collections
                _write_flow_logs(flowlogs, results)
        if lines is not None and first.lines is not None:
            merge_lines([r.lines.text for r in results], [r.lines.indexes for r in results], lines.BATCH, False,
                        lines.write_block)
        elif lines is not None:  # by packet index: no two are alike, so nothing after it is compared
            for _, line in sorted(v for result in results for v in result.verdicts):
                lines.write_line(line)
        if traffic is not None:
            traffic = Traffic.merged(r.traffic for r in results if r.traffic is not None)
        for name in FRAME_OUTPUTS:  # the records by packet index, as the lines
            parts = [result.framed[name] for result in results if name in result.framed]
            if parts:
                linktype = min(parts, key=lambda part: _first_index(part[1].indexes))[0]
                merge_lines([kept.records for _, kept in parts], [kept.indexes for _, kept in parts], RECORDS_BLOCK,
                            True, _pcap_writer(writers, outputs, name, linktype).write_block)
    except KeyboardInterrupt as e:
        summary.interrupted = True
        e.summary = summary  # type: ignore[attr-defined]
        raise
    finally:
        linktype = next((r.linktype for r in results if r.linktype is not None), 1)
        for name in FRAME_OUTPUTS:
            if getattr(outputs, name):  # an output no packet reached is an empty capture
                _pcap_writer(writers, outputs, name, linktype)
        failure = _close_all(writers.values())
        if results:
            _merge_summary(summary, results, scenario, updates)
        summary.seconds = (clock() - started) if clock else 0.0
        _write_summary(outputs, summary, traffic, scenario, paths)
        if failure is not None:
            raise failure
    error = results[0].error
    if error is not None:
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return summary


RECORDS_BLOCK = 4096
"""pcap records a merged block holds."""


def _first_index(indexes: bytearray) -> int:
    return int.from_bytes(indexes[:8], sys.byteorder, signed=True)


def _write_flow_logs(flowlogs: FlowLogs, results: list[ShardResult]) -> None:
    """Each minute's tuples from every shard, in the order one process makes them."""
    minutes: dict[float, list] = {}
    for result in results:
        for minute, tuples in result.minutes:
            minutes.setdefault(minute, []).extend(tuples)
    for minute in sorted(minutes):
        flowlogs.write_minute(minute, [t for _, t in sorted(minutes[minute], key=_place)])


def _place(kept: tuple) -> tuple:
    return kept[0]


def _merge_summary(summary: Summary, results: list[ShardResult], scenario: Scenario,
                   updates: list[Update]) -> None:
    stats = Statistics()
    hits: Counter = Counter()
    unsupported: Counter = Counter()
    for result in results:
        for f in fields(Statistics):
            if f.name == "skipped":
                for reason, n in result.stats.skipped.items():
                    stats.skipped[reason] = stats.skipped.get(reason, 0) + n
            else:
                setattr(stats, f.name, getattr(stats, f.name) + getattr(result.stats, f.name))
        hits.update(result.hits)
        unsupported.update(result.unsupported_link_types)
    _fill_summary(summary, stats, dict(hits), scenario)
    first = results[0]
    summary.unsupported_link_types = dict(unsupported)
    summary.capture_seconds = (first.last_ts - first.first_ts) if first.first_ts is not None else 0.0
    summary.timestamps_backwards = first.backwards
    if first.error is not None:
        summary.error = str(first.error)
    summary.warnings += never_applied(sorted(updates, key=lambda u: u.at)[first.updates_applied:],
                                      summary.capture_seconds)


# -- whatif ----------------------------------------------------------------------------------------

def whatif_shards(before: Scenario, after: Scenario, count: int) -> Shards:
    """Shards that keep a flow whole in both scenarios: what is inside either is inside, and an address
    the two translate differently (a public IP moved to another NIC) is pinned to shard 0 with its NICs."""
    one, two = Shards.of(before, count), Shards.of(after, count)
    moved = {public for public, private in one.aliases.items() if two.aliases.get(public, private) != private}
    moved |= {public for public, private in two.aliases.items() if one.aliases.get(public, private) != private}
    nics = {aliases[public] for aliases in (one.aliases, two.aliases) for public in moved if public in aliases}
    return Shards(count, tuple(sorted(set(one.inside) | set(two.inside))), one.aliases | two.aliases,
                  one.translated | two.translated, one.pinned | two.pinned | moved | nics)


class ShardFlows:
    """A shard's flows out of a flow log's: each flow is decided on its own, so the shard of its two
    addresses (`pair_shard`, as a capture's packets are sharded) is all that keeps it."""

    LIMIT = 1 << 16

    def __init__(self, shards: Shards, index: int) -> None:
        self._shards, self._index = shards, index
        self._pairs: dict[tuple, int] = {}
        self.count = 0
        """Flows read so far; the one last yielded has index count - 1."""

    def of(self, flows: Iterable[Any]) -> Iterator[Any]:
        shards, index, pairs = self._shards, self._index, self._pairs
        for flow in flows:
            self.count += 1
            _, version, src, _, dst, _ = flow.key
            pair = (version, src, dst)
            shard = pairs.get(pair)
            if shard is None:
                if len(pairs) >= self.LIMIT:
                    pairs.clear()
                shard = pairs[pair] = pair_shard(shards, ip_key(version, src), ip_key(version, dst))
            if shard == index:
                yield flow


def whatif_shard(before: Scenario, after: Scenario, paths: list[str], logs: bool, shards: Shards,
                 index: int) -> Report:
    """One worker of `whatif`: all the traffic read, the shard's flows reported."""
    from .whatif import whatif_captures, whatif_flow_logs

    if logs:
        return whatif_flow_logs(before, after, paths, ShardFlows(shards, index))
    return whatif_captures(before, after, paths, (shards, index))


def whatif_sharded(before: Scenario, after: Scenario, paths: list[str], logs: bool, count: int,
                   runner: Runner) -> Report:
    """`whatif` over `count` shards: the report one process gives."""
    from .whatif import merged_reports

    _check_rereadable(paths, folders=logs)
    shards = whatif_shards(before, after, count)
    return merged_reports(runner(whatif_shard, [(before, after, paths, logs, shards, i) for i in range(count)]))


# -- replay of flow logs ---------------------------------------------------------------------------

def replay_flow_log_shard(scenario: Scenario, paths: list[str], shards: Shards, index: int,
                          verdicts: bool) -> tuple[list[dict], FlowTally, CaptureError | None]:
    """One worker of a flow-log replay: all the logs read, the shard's flows decided; its verdict lines
    (by their index among all the flows), its tally, and the error of a malformed log. `traffic` is a
    layer above this module, so it is imported here."""
    from .traffic import FlowTally, decide_flows

    lines: list[dict] = []
    tally = FlowTally()
    error = None
    try:
        decide_flows(scenario, paths, tally, lines.append if verdicts else None, ShardFlows(shards, index))
    except CaptureError as e:
        error = e
    return lines, tally, error


def replay_flow_logs_sharded(scenario: Scenario, paths: list[str], outputs: Outputs, count: int, runner: Runner,
                             clock: Callable[[], float] | None, started: float) -> Summary:
    """A flow-log replay over `count` shards: the verdict lines in the order of the flows, the tallies
    added up (each keyed anew by its shard: the identities they are keyed by are each process's own)."""
    from .traffic import FlowTally, flow_log_summary

    _check_rereadable(paths, folders=True)
    shards = Shards.of(scenario, count)
    tally = FlowTally()
    error = None
    results: list[tuple[list[dict], FlowTally, CaptureError | None]] = []
    lines = verdict_writer(outputs.verdicts) if outputs.verdicts else None
    try:
        results = runner(replay_flow_log_shard, [(scenario, paths, shards, index, lines is not None)
                                                 for index in range(count)])
        if lines is not None:
            for line in sorted((line for shard_lines, _, _ in results for line in shard_lines), key=_index):
                lines.write(line)
    finally:
        if lines is not None:
            lines.close()
        for index, (_, shard_tally, error) in enumerate(results):
            tally.tally.update({(decision, logged, (index, kept)): counts
                                for (decision, logged, kept), counts in shard_tally.tally.items()})
            tally.first, tally.last = min(tally.first, shard_tally.first), max(tally.last, shard_tally.last)
        summary = flow_log_summary(scenario, tally, error, outputs, clock, started)
    if error is not None:
        raise error
    return summary


def _index(line: dict) -> int:
    return line["index"]
