"""Where the shared real data sits (../shared beside the repository) and a clear skip when it does not."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator

import pytest

from dataplane.replay import Capture, Frame

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_PCAPS = SHARED_DATA / "pcaps"


def shared_captures() -> list[str]:
    """Capture names for parametrize; one skipped case when the shared data is absent."""
    if not SHARED_PCAPS.is_dir():
        return [pytest.param("missing", marks=pytest.mark.skip(
            reason="../shared/data/pcaps not found: the shared data folder sits beside the repository in CI"))]
    return sorted(p.name for p in SHARED_PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng", ".gz"))

CLASSBENCH = SHARED_DATA / "classbench"
SERVICE_TAGS = SHARED_DATA / "servicetags"


def need(path: Path) -> Path:
    """The shared file or folder, or a skip that says where it was looked for."""
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data folder sits beside the repository in CI")
    return path


LOOPBACK = bytes([127, 0, 0, 1])
LOOPBACK_MOVED = bytes([10, 127, 0, 4])
"""Azure refuses 127.0.0.0/8 in a virtual network: a capture of loopback traffic is replayed with its
host moved to 10.127.0.4, which tests/fixtures/shared-captures/scenario.yaml gives a NIC."""


def scenario_frames(path: Path) -> Iterator[Frame]:
    """The frames of a shared capture as the shared-captures scenario expects them."""
    capture = Capture(str(path))
    try:
        for frame in capture.frames():
            yield _moved(frame)
    finally:
        capture.close()


def scenario_capture(path: Path, folder: Path) -> Path:
    """The shared capture itself, or, where a host had to move, `scenario_frames` written as a pcap."""
    frames = list(scenario_frames(path))
    capture = Capture(str(path))
    try:
        if all(a.data is b.data for a, b in zip(frames, capture.frames())):
            return path
    finally:
        capture.close()
    out = folder / (path.name.split(".")[0] + ".pcap")
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, frames[0].linktype))
        for frame in frames:
            sec, usec = divmod(round(frame.ts * 1e6), 1_000_000)
            f.write(struct.pack("<IIII", sec, usec, len(frame.data), frame.wirelen) + frame.data)
    return out


def _moved(frame: Frame) -> Frame:
    data = frame.data
    if frame.linktype == 1 and data[12:14] == b"\x08\x00" and LOOPBACK in (data[26:30], data[30:34]):
        src, dst = (LOOPBACK_MOVED if a == LOOPBACK else a for a in (data[26:30], data[30:34]))
        return frame._replace(data=data[:26] + src + dst + data[34:])
    return frame
