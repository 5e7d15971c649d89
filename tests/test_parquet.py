"""`--verdicts F.parquet`: the verdicts as typed Parquet rows, equal to the JSON Lines verdicts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dataplane import load_scenario
from dataplane.errors import DataplaneError
from dataplane.replay import Outputs, replay

DEMO = Path(__file__).resolve().parents[1] / "pcaps" / "demo"
CAPTURES = [str(p) for p in sorted(DEMO.glob("*.pcap"))]


@pytest.fixture
def verdicts(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the 'parquet' extra) is not installed")
    replay(load_scenario(DEMO / "scenario.yaml"), CAPTURES, Outputs(verdicts=str(tmp_path / "v.parquet")))
    replay(load_scenario(DEMO / "scenario.yaml"), CAPTURES, Outputs(verdicts=str(tmp_path / "v.jsonl")))
    rows = pq.read_table(tmp_path / "v.parquet").to_pylist()
    lines = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    return rows, lines


def test_parquet_verdicts_have_one_row_per_packet(verdicts) -> None:
    rows, lines = verdicts
    assert len(rows) == len(lines) == 96


def test_parquet_verdicts_decide_as_the_json_verdicts(verdicts) -> None:
    rows, lines = verdicts
    fields = ("index", "flow", "direction", "nic", "decision", "nsg", "rule", "reason", "state")
    assert [tuple(row[f] for f in fields) for row in rows] == [tuple(line[f] for f in fields) for line in lines]
    assert [row["translated"] for row in rows] == [line.get("translated") for line in lines]


def test_parquet_timestamps_are_typed_utc_times(verdicts) -> None:
    rows, lines = verdicts
    assert all(abs(row["ts"].timestamp() - line["ts"]) < 1e-6 for row, line in zip(rows, lines))
    assert rows[0]["ts"].tzinfo is not None


def test_parquet_verdicts_without_pyarrow_name_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataplaneError, match=r"pip install 'dataplane\[parquet\]'"):
        replay(load_scenario(DEMO / "scenario.yaml"), CAPTURES, Outputs(verdicts=str(tmp_path / "v.parquet")))
