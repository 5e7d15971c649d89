"""The lean capture readers of `dataplane.replay` agree with scapy's readers, and fail clearly."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
from scapy.utils import PcapNgReader, PcapReader, RawPcapNgReader, RawPcapReader

from dataplane import Dataplane, load_scenario
from dataplane.errors import CaptureError
from dataplane.pipeline import FastPath
from dataplane.replay import PASS_BATCH, Capture, Frame, PcapWriter, read_in_c

from datafiles import SHARED_PCAPS, shared_captures
from frames import ether

DEMO = Path(__file__).resolve().parents[1] / "pcaps" / "demo"

needs_c = pytest.mark.skipif(FastPath is None, reason="the C extension was not built (no compiler at install)")


def scapy_frames(path: Path) -> list[tuple[float, bytes]]:
    """The library's view: every record's time and bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        magic = f.read(4)
    with opener(path, "rb") as f:
        reader_class = RawPcapNgReader if magic == b"\x0a\x0d\x0d\x0a" else RawPcapReader
        reader = reader_class(f)
        out = []
        for data, meta in reader:
            if reader_class is RawPcapReader:
                ts = meta.sec + meta.usec / (1e9 if reader.nano else 1e6)
            else:
                ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            out.append((ts, data))
        return out


@pytest.mark.parametrize("name", shared_captures(), ids=str)
def test_reader_yields_the_frames_and_times_scapy_yields(name: str) -> None:
    path = SHARED_PCAPS / name
    ours = [(f.ts, f.data) for f in Capture(path).frames()]
    theirs = scapy_frames(path)
    assert len(ours) == len(theirs)
    for i, ((ts, data), (their_ts, their_data)) in enumerate(zip(ours, theirs)):
        assert data == their_data, f"{name} frame {i}: bytes differ"
        assert ts == pytest.approx(their_ts, abs=1e-6), f"{name} frame {i}: time differs"


def test_reader_reads_demo_captures_like_scapy() -> None:
    for path in sorted(DEMO.glob("*.pcap")):
        with PcapReader(str(path)) as reader:
            expected = [bytes(p) for p in reader]
        assert [f.data for f in Capture(path).frames()] == expected


def test_a_file_that_is_not_a_capture_is_an_error_naming_file_and_offset(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("hello, this is text")
    with pytest.raises(CaptureError) as info:
        list(Capture(bogus).frames())
    assert "notes.pcap" in str(info.value)
    assert "byte 0" in str(info.value)


def test_a_capture_cut_inside_a_frame_is_an_error_naming_the_byte_offset(tmp_path: Path) -> None:
    whole = (DEMO / "web.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:200])
    frames = []
    with pytest.raises(CaptureError) as info:
        for frame in Capture(cut).frames():
            frames.append(frame)
    assert frames, "the frames before the cut are read"
    assert "cut.pcap" in str(info.value) and "truncated at byte 200" in str(info.value)


def test_a_capture_cut_inside_a_record_header_is_truncated_not_ended(tmp_path: Path) -> None:
    whole = (DEMO / "web.pcap").read_bytes()
    first_record_end = 24 + 16 + struct.unpack_from("<I", whole, 24 + 8)[0]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:first_record_end + 7])
    with pytest.raises(CaptureError, match=f"truncated at byte {first_record_end + 7}"):
        list(Capture(cut).frames())


def test_gzip_compressed_capture_reads_the_same_frames(tmp_path: Path) -> None:
    plain = DEMO / "scan.pcap"
    packed = tmp_path / "scan.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert [f.data for f in Capture(packed).frames()] == [f.data for f in Capture(plain).frames()]


def test_written_pcap_reads_back_in_scapy(tmp_path: Path) -> None:
    out = tmp_path / "out.pcap"
    writer = PcapWriter(str(out), 1)
    frames = list(Capture(DEMO / "scan.pcap").frames())
    for f in frames:
        writer.write(f.ts, f.data, f.wirelen)
    writer.close()
    back = scapy_frames(out)
    assert [d for _, d in back] == [f.data for f in frames]
    assert [t for t, _ in back] == pytest.approx([f.ts for f in frames], abs=1e-6)


def test_pcapng_reader_agrees_with_scapy_on_a_pcapng_written_by_scapy(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.utils import PcapNgWriter

    path = tmp_path / "x.pcapng"
    with PcapNgWriter(str(path)) as w:
        for i in range(5):
            p = ether() / IP(dst="10.0.0.1") / TCP(dport=80 + i)
            p.time = 1000.5 + i
            w.write(p)
    with PcapNgReader(str(path)) as reader:
        expected = [(float(p.time), bytes(p)) for p in reader]
    ours = [(f.ts, f.data) for f in Capture(path).frames()]
    assert [d for _, d in ours] == [d for _, d in expected]
    assert [t for t, _ in ours] == pytest.approx([t for t, _ in expected], abs=1e-6)



def test_the_writer_rounds_a_time_just_below_a_second_up_to_the_next_second(tmp_path: Path) -> None:
    path = tmp_path / "edge.pcap"
    writer = PcapWriter(str(path), 1)
    writer.write(9.9999997, b"\x00" * 60, 60)
    writer.close()
    assert [f.ts for f in Capture(path).frames()] == [10.0]


def _as_pcapng(plain: Path, out: Path) -> Path:
    from scapy.utils import PcapNgWriter

    with PcapReader(str(plain)) as reader, PcapNgWriter(str(out)) as writer:
        for packet in reader:
            writer.write(packet)
    return out


def _as_gzip(plain: Path, out: Path) -> Path:
    out.write_bytes(gzip.compress(plain.read_bytes()))
    return out


def _read_both_ways(path: Path) -> tuple[list[Frame], int, list[Frame], int]:
    python, in_c = Capture(path), Capture(path)
    expected = list(python.frames())
    made = list(read_in_c(in_c, Dataplane(load_scenario(DEMO / "scenario.yaml")).read_frames))
    return made, in_c.backwards, expected, python.backwards


@needs_c
@pytest.mark.parametrize("name", sorted(p.name for p in DEMO.glob("*.pcap")) + shared_captures(), ids=str)
def test_frames_made_in_c_are_the_python_readers_frame_for_frame(name: str) -> None:
    path = DEMO / name if (DEMO / name).exists() else SHARED_PCAPS / name
    made, backwards, expected, expected_backwards = _read_both_ways(path)
    assert made == expected  # time, link type, bytes and original length
    assert {type(f) for f in made} <= {Frame}
    assert backwards == expected_backwards


@needs_c
@pytest.mark.parametrize("form", [_as_pcapng, _as_gzip], ids=["pcapng", "gzip"])
def test_frames_made_in_c_of_a_pcapng_or_compressed_capture_are_the_python_readers(form, tmp_path: Path) -> None:
    made, _, expected, _ = _read_both_ways(form(DEMO / "web.pcap", tmp_path / "web"))
    assert made == expected and len(made) > 1


@needs_c
def test_frames_made_in_c_go_on_past_a_full_batch_and_count_times_going_backwards(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP

    path = tmp_path / "many.pcap"
    writer = PcapWriter(str(path), 1)
    for i in range(PASS_BATCH + 10):
        frame = bytes(ether() / IP(dst="10.0.0.1") / UDP(dport=i))
        writer.write(1000.0 + (i if i % 100 else i - 50) * 0.001, frame, 1514)
    writer.close()
    made, backwards, expected, expected_backwards = _read_both_ways(path)
    assert made == expected and len(made) == PASS_BATCH + 10
    assert backwards == expected_backwards > 0
