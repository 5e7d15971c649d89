"""Where the shared real data sits (../shared beside the repository) and a clear skip when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

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
