"""`--verdicts F.parquet`: the verdicts as typed Parquet rows, equal to the JSON Lines verdicts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import load_scenario, scenario_from_document
from dataplane.errors import CaptureError, DataplaneError
from dataplane.pipeline import VERDICT_COLUMNS, Verdict
from dataplane.replay import Outputs, ParquetWriter, replay

from test_pipeline_fast_path import SCENARIO, _pcap_of, _pcapng_of, conversations, steps, timed_frames

DEMO = Path(__file__).resolve().parents[1] / "pcaps" / "demo"
CAPTURES = [str(p) for p in sorted(DEMO.glob("*.pcap"))]


def parquet():
    """pyarrow.parquet, or the test skips: the extra is optional."""
    return pytest.importorskip("pyarrow.parquet", reason="pyarrow (the 'parquet' extra) is not installed")


@pytest.fixture
def verdicts(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    pq = parquet()
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


def _rows_and_lines(scenario, captures: list[str], folder: Path) -> tuple[list[dict], list[dict]]:
    """The Parquet rows (times as the JSON writes them) and the JSON verdicts of one replay each."""
    pq = parquet()
    for name in ("v.parquet", "v.jsonl"):
        loaded = load_scenario(scenario) if isinstance(scenario, Path) else scenario_from_document(scenario)
        try:
            replay(loaded, captures, Outputs(verdicts=str(folder / name)))
        except CaptureError:
            pass
    rows = [row | {"ts": round(row["ts"].timestamp() * 1e6)} for row in pq.read_table(folder / "v.parquet").to_pylist()]
    lines = [{name: line.get(name) for name in VERDICT_COLUMNS} | {"ts": round(line["ts"] * 1e6)}
             for line in map(json.loads, (folder / "v.jsonl").read_text().splitlines())]
    return rows, lines


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: Path(c).name)
def test_parquet_rows_of_a_capture_walked_in_c_are_the_json_verdicts_field_by_field(capture, tmp_path) -> None:
    """One capture: the C walk writes the lines of known flows' packets, tab-separated for Parquet."""
    rows, lines = _rows_and_lines(DEMO / "scenario.yaml", [capture], tmp_path)
    assert rows == lines


@settings(max_examples=30, deadline=None)
@given(conversations, steps, st.sampled_from(["pcap", "pcapng"]), st.integers(0, 40))
def test_parquet_rows_of_random_conversations_are_the_json_verdicts_field_by_field(tmp_path_factory, flows, sequence,
                                                                                   form, cut) -> None:
    folder = tmp_path_factory.mktemp("parquet")
    capture = folder / f"random.{form}"
    capture.write_bytes((_pcap_of if form == "pcap" else _pcapng_of)(timed_frames(flows, sequence), cut))
    rows, lines = _rows_and_lines(SCENARIO, [str(capture)], folder)
    assert rows == lines


TEXTS = ["tab\there", 'a "quoted" name', "line\nbreak", "carriage\rreturn", "", "été", "\\back\\slash", '"', None]


def test_parquet_keeps_text_with_tabs_quotes_line_breaks_or_nothing_as_written(tmp_path) -> None:
    pq = parquet()
    writer = ParquetWriter(str(tmp_path / "v.parquet"))
    written = [{"index": i, "ts": 1.5 + i, "flow": "tcp 10.0.0.1:1 > 10.0.0.2:2", "nic": text, "detail": text,
                "packets": i, "bytes": None} for i, text in enumerate(TEXTS)]
    for row in written:
        writer.write(row)
    writer.close()
    read = pq.read_table(tmp_path / "v.parquet").to_pylist()
    assert [(row["nic"], row["detail"], row["packets"], row["bytes"]) for row in read] == \
        [(row["nic"], row["detail"], row["packets"], None) for row in written]


def test_a_verdict_without_a_packet_is_written_with_the_fields_of_its_json_line(tmp_path) -> None:
    """`Verdict.tsv_line` of a verdict the C walk leaves to Python (no flow), odd texts in its fields."""
    pq = parquet()
    verdict = Verdict(1700000000.25, "Skip", "malformed", None, 'web\t"1"', None, None, None, None,
                      detail="truncated\nIPv4 header")
    writer = ParquetWriter(str(tmp_path / "v.parquet"))
    writer.write_verdict(verdict, 7)
    writer.close()
    row = pq.read_table(tmp_path / "v.parquet").to_pylist()[0]
    assert row | {"ts": row["ts"].timestamp()} == {name: verdict.to_json(7).get(name) for name in VERDICT_COLUMNS}


def test_parquet_rows_of_a_flow_log_replay_carry_each_flow_s_packets_and_bytes(tmp_path) -> None:
    from test_traffic import SCENARIO as FLOW_LOG_SCENARIO, vnet_record, write

    log = write(tmp_path / "PT1H.json", [vnet_record([
        "1714557600000,203.0.113.7,10.0.1.4,5000,443,6,I,B,NX,0,0,0,0",
        "1714557610000,203.0.113.7,10.0.1.4,5000,443,6,I,E,NX,4,400,3,3000",
        "1714557620000,203.0.113.8,10.0.1.4,5001,22,6,I,D,NX,0,0,0,0"], mac="001122334455")])
    rows, lines = _rows_and_lines(FLOW_LOG_SCENARIO, [log], tmp_path)
    assert rows == lines and [(row["packets"], row["bytes"]) for row in rows] == [(7, 3400), (0, 0)]


def test_row_groups_written_by_the_writers_thread_keep_the_order_of_the_verdicts(tmp_path, monkeypatch) -> None:
    pq = parquet()
    monkeypatch.setattr(ParquetWriter, "BATCH", 7)
    rows, lines = _rows_and_lines(DEMO / "scenario.yaml", CAPTURES, tmp_path)
    assert rows == lines and pq.ParquetFile(tmp_path / "v.parquet").metadata.num_row_groups == -(-len(rows) // 7)


@pytest.mark.parametrize("batch", [10, 65_536], ids=["mid-replay", "at the end"])
def test_a_parquet_file_that_cannot_be_written_is_an_error_naming_it(batch, tmp_path, monkeypatch) -> None:
    """The row groups' thread fails; the replay raises it when it next writes, or closes the file."""
    parquet()
    def full(self, block: bytes) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ParquetWriter, "_encode", full)
    monkeypatch.setattr(ParquetWriter, "BATCH", batch)
    path = tmp_path / "v.parquet"
    with pytest.raises(DataplaneError, match="No space left on device") as raised:
        replay(load_scenario(DEMO / "scenario.yaml"), CAPTURES, Outputs(verdicts=str(path)))
    assert str(path) in str(raised.value)
