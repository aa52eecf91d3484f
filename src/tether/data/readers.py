"""Read raw rows from a dataset file or folder, with the position of each row.

Supported: `.jsonl`, `.json` (a list of objects, `{"data": [...]}`, or JSON lines under a `.json`
name), `.csv`, `.parquet`, the gzip'd `.jsonl.gz` / `.json.gz` / `.csv.gz`, and a folder written by
`datasets.Dataset.save_to_disk`.

Positions are 1-based: the line number in JSON lines and CSV files (the line where the row starts;
the CSV header is line 1), the item number in a JSON list, the row number in Parquet and `datasets`
folders. A line that is not valid JSON or not valid UTF-8 does not stop the read: it is yielded as a
`BadRow`, so a validator can report every bad line of a file in one pass.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tether.errors import DataError

INVALID_JSON = "invalid JSON"
UNDECODABLE = "undecodable text"

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz", ".json.gz", ".csv.gz")


@dataclass(frozen=True)
class BadRow:
    """A row that could not be decoded: `kind` is INVALID_JSON or UNDECODABLE."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})"


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (position, row) for every row of `path`.

    A row is what the file holds: usually a dict, possibly another JSON value (a string, in a file of
    prompts), or a `BadRow`. Raises DataError, naming the file, when it is missing, has an unknown
    extension, or cannot be read at all (truncated gzip, a `.json` file that is not JSON).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_hf_dir(path)
    name = path.name.lower()
    suffix = next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        raise DataError(
            f"{path}: unknown file type; expected one of {', '.join(SUFFIXES)} or a `datasets` save_to_disk folder"
        )
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix.startswith(".jsonl"):
        return _json_lines(path, _open_binary(path, gz=suffix.endswith(".gz")))
    data = _read_bytes(path, gz=suffix.endswith(".gz"))
    if suffix.startswith(".json"):
        return _json_document(path, data)
    return _csv_rows(data)


def _open_binary(path: Path, gz: bool) -> IO[bytes]:
    return gzip.open(path, "rb") if gz else path.open("rb")


def _read_bytes(path: Path, gz: bool) -> bytes:
    try:
        with _open_binary(path, gz) as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None


def _decode_line(raw: bytes) -> str | BadRow:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return BadRow(UNDECODABLE, f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8")


def _json_lines(path: Path, lines: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    """One JSON value per line, streamed; blank lines are skipped (their numbers still count)."""
    try:
        for lineno, raw in enumerate(lines, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte order mark
            text = _decode_line(raw.rstrip(b"\r\n"))
            if isinstance(text, BadRow):
                yield lineno, text
            elif text.strip():
                try:
                    yield lineno, json.loads(text)
                except json.JSONDecodeError as e:
                    yield lineno, BadRow(INVALID_JSON, f"{e.msg} at column {e.colno}")
    except (OSError, EOFError, zlib.error) as e:  # truncated or corrupt gzip stream
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()


def _json_document(path: Path, data: bytes) -> Iterator[tuple[int, Any]]:
    """A whole-file JSON list (or {"data": [...]}); JSON lines saved under a .json name also work."""
    text = data.decode("utf-8-sig", errors="surrogateescape")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" or (text.lstrip().startswith("{") and "\n{" in text):
            return _json_lines(path, data.split(b"\n"))
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        kind = type(doc).__name__
        raise DataError(f'{path}: expected a JSON list of rows or {{"data": [...]}}, found a {kind}')
    return (
        (i, BadRow(UNDECODABLE, "a field holds bytes that are not UTF-8") if _has_surrogates(row) else row)
        for i, row in enumerate(doc, start=1)
    )


def _csv_rows(data: bytes) -> Iterator[tuple[int, Any]]:
    """CSV with a header row; each row a dict of strings, positioned at the line where it starts."""
    text = data.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _ = reader.fieldnames  # reads the header, so line_num counts it
    start = reader.line_num + 1
    for row in reader:
        if _has_surrogates(row):
            yield start, BadRow(UNDECODABLE, "a field holds bytes that are not UTF-8")
        else:
            yield start, row
        start = reader.line_num + 1


def _has_surrogates(value: Any) -> bool:
    """True when a decoded value holds bytes that were not UTF-8 (kept as lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa  # heavy: imported only for parquet files
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot be read as Parquet ({type(e).__name__}: {e})") from None
    return iter(enumerate(table.to_pylist(), start=1))


def _read_hf_dir(path: Path) -> Iterator[tuple[int, Any]]:
    import datasets  # heavy: imported only for save_to_disk folders

    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as e:  # FileNotFoundError for a folder that is not a dataset
        raise DataError(f"{path}: not a `datasets` save_to_disk folder ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        raise DataError(f"{path}: holds several splits ({splits}); pass {path}/<split> for one of them")
    return iter(enumerate(ds, start=1))
