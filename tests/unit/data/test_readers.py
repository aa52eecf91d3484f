"""read_rows: every file type, exact positions, bad lines yielded (not raised), bad files one-line errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tether.data.readers import INVALID_JSON, UNDECODABLE, BadRow, read_rows
from tether.errors import DataError

ROWS = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]


def _write(path: Path, data: bytes) -> Path:
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


JSONL = (
    b'{"prompt": "a", "completion": "b"}\n'
    b"\n"  # blank line: skipped, still counted
    b'{"prompt": "c", "completion": \n'  # truncated JSON
    b'{"prompt": "caf\xe9", "completion": "x"}\n'  # latin-1 byte, not UTF-8
    b'{"prompt": "c", "completion": "d"}\n'
)


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_jsonl_positions_and_bad_lines(tmp_path: Path, name: str) -> None:
    rows = list(read_rows(_write(tmp_path / name, JSONL)))
    assert [line for line, _ in rows] == [1, 3, 4, 5]
    assert rows[0][1] == ROWS[0] and rows[3][1] == ROWS[1]
    assert rows[1][1] == BadRow(INVALID_JSON, "Expecting value at column 31")
    assert rows[2][1] == BadRow(UNDECODABLE, "byte 0xe9 at column 16 is not UTF-8")
    assert str(rows[2][1]) == "undecodable text (byte 0xe9 at column 16 is not UTF-8)"


def test_jsonl_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = _write(tmp_path / "bom.jsonl", b'\xef\xbb\xbf{"prompt": "a"}\r\n{"prompt": "b"}\r\n')
    assert list(read_rows(path)) == [(1, {"prompt": "a"}), (2, {"prompt": "b"})]


@pytest.mark.parametrize("name", ["rows.json", "rows.json.gz"])
def test_json_list_and_data_key(tmp_path: Path, name: str) -> None:
    as_list = _write(tmp_path / name, json.dumps(ROWS, indent=2).encode())
    assert list(read_rows(as_list)) == [(1, ROWS[0]), (2, ROWS[1])]
    as_data = _write(tmp_path / f"data_{name}", json.dumps({"data": ROWS}).encode())
    assert list(read_rows(as_data)) == [(1, ROWS[0]), (2, ROWS[1])]


def test_json_file_holding_json_lines_is_read_as_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "lines.json", b'{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n')
    rows = list(read_rows(path))
    assert rows[0] == (1, {"prompt": "a"}) and rows[2] == (3, {"prompt": "c"})
    assert isinstance(rows[1][1], BadRow) and rows[1][1].kind == INVALID_JSON


def test_json_list_with_undecodable_item(tmp_path: Path) -> None:
    path = _write(tmp_path / "rows.json", b'[{"prompt": "ok"}, {"prompt": "caf\xe9"}]')
    rows = list(read_rows(path))
    assert rows[0] == (1, {"prompt": "ok"})
    assert rows[1] == (2, BadRow(UNDECODABLE, "a field holds bytes that are not UTF-8"))


def test_broken_json_document_is_one_line_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.json", b'[\n  {"prompt": "a"},\n  {"prompt": }\n]')
    with pytest.raises(
        DataError, match=r"broken\.json: invalid JSON at line 3 column 14 \(Expecting value\)"
    ):
        read_rows(path)


def test_json_scalar_document_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"scalar\.json: expected a JSON list of rows .* found a int"):
        read_rows(_write(tmp_path / "scalar.json", b"42"))


@pytest.mark.parametrize("name", ["rows.csv", "rows.csv.gz"])
def test_csv_positions_follow_physical_lines(tmp_path: Path, name: str) -> None:
    data = b'prompt,completion\na,b\n"two\nlines",c\nd,"caf\xe9"\ne,f\n'
    rows = list(read_rows(_write(tmp_path / name, data)))
    assert [line for line, _ in rows] == [2, 3, 5, 6]
    assert rows[0][1] == {"prompt": "a", "completion": "b"}
    assert rows[1][1] == {"prompt": "two\nlines", "completion": "c"}
    assert rows[2][1] == BadRow(UNDECODABLE, "a field holds bytes that are not UTF-8")
    assert rows[3][1] == {"prompt": "e", "completion": "f"}


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert list(read_rows(path)) == [(1, ROWS[0]), (2, ROWS[1])]


def test_corrupt_parquet_is_one_line_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.parquet", b"not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet: cannot be read as Parquet"):
        read_rows(path)


def test_hf_save_to_disk_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert list(read_rows(tmp_path / "ds")) == [(1, ROWS[0]), (2, ROWS[1])]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"dd: holds several splits \(train\); pass .*dd/<split>"):
        read_rows(tmp_path / "dd")
    assert list(read_rows(tmp_path / "dd" / "train"))[1] == (2, ROWS[1])


def test_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match=r"plain: not a `datasets` save_to_disk folder"):
        read_rows(tmp_path / "plain")


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"notes\.txt: unknown file type; expected one of \.jsonl"):
        read_rows(_write(tmp_path / "notes.txt", b"hello"))
    with pytest.raises(DataError, match=r"absent\.jsonl: no such file or folder"):
        read_rows(tmp_path / "absent.jsonl")


def test_truncated_gzip_is_one_line_error(tmp_path: Path) -> None:
    whole = gzip.compress(b'{"prompt": "a"}\n' * 2000)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz: cannot be read \(EOFError"):
        list(read_rows(path))
    as_json = tmp_path / "cut.json.gz"
    as_json.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.json\.gz: cannot be read \(EOFError"):
        read_rows(as_json)
