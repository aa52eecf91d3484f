"""Load a dataset file as typed records, checking every row and reporting every problem at once.

`load_records` is what stages call: it raises one DataError line when rows are bad (unless drop_bad),
so nothing trains silently on broken data. `validate` is the same scan without the raise, for
`tether data validate`. `save_records` writes our own JSON lines ("tether" format), which round-trips.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.data.formats import (
    FORMAT_KINDS,
    FORMATS,
    IDENTICAL,
    KINDS,
    Issue,
    Record,
    convert,
    detect_format,
    json_type,
)
from tether.data.readers import BadRow, read_rows
from tether.data.records import PreferencePair
from tether.errors import DataError

EMPTY_PROMPT = "empty prompt"
EMPTY_RESPONSE = "empty response"
OVER_LONG = "over-long"

DEFAULT_MAX_CHARS = 20_000


@dataclass(frozen=True)
class Problem:
    """One problem at one row: prints as "file:line: message"."""

    file: str
    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ValidationReport:
    """Every problem found in a file, with counts; n_bad rows hold at least one problem."""

    file: str
    kind: str | None
    fmt: str
    n_rows: int = 0
    n_ok: int = 0
    n_records: int = 0
    n_dropped: int = 0
    problems: list[Problem] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def n_bad(self) -> int:
        return self.n_rows - self.n_ok

    @property
    def counts(self) -> dict[str, int]:
        """Bad rows per problem kind (a row counts once per kind), most frequent first."""
        per_kind = Counter(kind for _, kind in dict.fromkeys((p.line, p.kind) for p in self.problems))
        return dict(sorted(per_kind.items(), key=lambda kv: (-kv[1], kv[0])))

    def lines(self, kind: str | None = None) -> list[int]:
        """The line numbers of bad rows (with a problem of `kind`, when given), in file order."""
        return list(dict.fromkeys(p.line for p in self.problems if kind is None or p.kind == kind))

    def counts_text(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.counts.items())

    def totals(self) -> str:
        """e.g. "8552 rows, 45 bad: 34 chosen == rejected, 11 empty response"."""
        text = f"{self.n_rows} rows, {self.n_bad} bad"
        if self.n_bad:
            text += f": {self.counts_text()}"
        if self.n_records != self.n_ok:
            text += f"; {self.n_records} records"
        skipped = sorted((k, n) for k, n in self.skipped.items() if n)
        if skipped:
            text += "; left out by the format's rules: " + ", ".join(f"{n} {k}" for k, n in skipped)
        if self.n_dropped:
            text += f"; {self.n_dropped} bad rows dropped"
        return text

    def summary(self, max_lines: int | None = None) -> str:
        """One "file:line: problem" line per problem (up to max_lines), then the totals."""
        shown = self.problems if max_lines is None else self.problems[:max_lines]
        out = [str(p) for p in shown]
        if len(shown) < len(self.problems):
            out.append(f"... and {len(self.problems) - len(shown)} more")
        out.append(self.totals())
        return "\n".join(out)

    def error_message(self) -> str:
        """The one-line DataError message load_records raises for bad rows."""
        first = self.problems[0]
        return (
            f"{self.file}: {self.n_bad} bad rows of {self.n_rows} ({self.counts_text()}); "
            f"first at line {first.line}: {first.message}; "
            f"run `tether data validate {self.file}` to list them or pass drop_bad to drop them"
        )


def check_record(record: Record, max_chars: int = DEFAULT_MAX_CHARS) -> list[Issue]:
    """Content checks every record gets: empty prompt or reply, chosen == rejected, over-long text."""
    issues: list[Issue] = []
    if not record.prompt or not record.prompt[-1]["content"].strip():
        issues.append(Issue(EMPTY_PROMPT, EMPTY_PROMPT))
    replies = _replies(record)
    empty = [name for name, text in replies.items() if not text.strip()]
    if empty:
        issues.append(Issue(EMPTY_RESPONSE, f"{EMPTY_RESPONSE} ({' and '.join(empty)})"))
    elif isinstance(record, PreferencePair) and record.chosen.strip() == record.rejected.strip():
        issues.append(Issue(IDENTICAL, IDENTICAL))
    fields = {f"prompt message {i}": m["content"] for i, m in enumerate(record.prompt, start=1)} | replies
    too_long = next(((name, len(text)) for name, text in fields.items() if len(text) > max_chars), None)
    if too_long:
        name, n = too_long
        issues.append(Issue(OVER_LONG, f"{OVER_LONG}: {name} has {n:,} characters (max {max_chars:,})"))
    return issues


def _replies(record: Record) -> dict[str, str]:
    if isinstance(record, PreferencePair):
        return {"chosen": record.chosen, "rejected": record.rejected}
    completion = getattr(record, "completion", None)
    return {} if completion is None else {"completion": completion}


def _check_args(kind: str | None, fmt: str) -> None:
    if kind is not None and kind not in KINDS:
        raise DataError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _check_format_gives(file: str, fmt: str, kind: str | None) -> None:
    if kind is not None and kind not in FORMAT_KINDS[fmt]:
        gives = ", ".join(k for k in KINDS if k in FORMAT_KINDS[fmt])
        raise DataError(f"{file}: the {fmt} format gives {gives} records, not {kind}")


def _scan(
    path: str | Path, kind: str | None, fmt: str, max_chars: int
) -> tuple[list[Record], ValidationReport]:
    _check_args(kind, fmt)
    file = str(path)
    fmt_used = None if fmt == "auto" else fmt
    if fmt_used is not None:
        _check_format_gives(file, fmt_used, kind)
    report = ValidationReport(file=file, kind=kind, fmt=fmt)
    records: list[Record] = []
    for line, row in read_rows(path):
        report.n_rows += 1
        if isinstance(row, BadRow):
            report.problems.append(Problem(file, line, row.kind, str(row)))
            continue
        if fmt_used is None:
            fmt_used = _detect(file, line, row)
            _check_format_gives(file, fmt_used, kind)
            report.fmt = fmt_used
        out = convert(row, kind, fmt_used)
        report.skipped.update(out.skipped)
        issues = [(None, i) for i in out.issues]
        for j, record in enumerate(out.records, start=1):
            issues += [(j, i) for i in check_record(record, max_chars)]
        if issues:
            many = len(out.records) > 1
            report.problems += [
                Problem(
                    file,
                    line,
                    i.kind,
                    i.message + (f" (record {j} of {len(out.records)})" if many and j else ""),
                )
                for j, i in issues
            ]
            continue
        report.n_ok += 1
        for record in out.records:
            record.meta.setdefault("source", f"{file}:{line}")
        records += out.records
    report.n_records = len(records)
    return records, report


def _detect(file: str, line: int, row: Any) -> str:
    fmt = detect_format(row)
    if fmt is None:
        keys = ", ".join(map(str, row)) if isinstance(row, dict) else json_type(row)
        raise DataError(
            f"{file}:{line}: cannot tell the data format from this row ({keys}); "
            f"pass fmt, one of {', '.join(f for f in FORMATS if f != 'auto')}"
        )
    return fmt


def validate(
    path: str | Path, kind: str | None = None, fmt: str = "auto", max_chars: int = DEFAULT_MAX_CHARS
) -> ValidationReport:
    """Check every row of `path`; never raises for bad rows (only for an unreadable file or bad args).

    kind None checks the records the format gives naturally (an OASST tree: pairs and SFT examples).
    """
    return _scan(path, kind, fmt, max_chars)[1]


def load_records(
    path: str | Path,
    kind: str,
    fmt: str = "auto",
    drop_bad: bool = False,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> tuple[list[Record], ValidationReport]:
    """Read `path` as records of `kind` ("sft", "preference", "prompt", "feedback").

    Every row is checked. Bad rows raise one DataError line with the counts and the first bad line,
    unless drop_bad, which returns only the good records and sets report.n_dropped. Each record's
    meta["source"] is "file:line" (rows that already carry a source, e.g. from save_records, keep it).
    """
    records, report = _scan(path, kind, fmt, max_chars)
    if report.n_bad and not drop_bad:
        raise DataError(report.error_message())
    if not records:
        raise DataError(f"{report.file}: no {kind} records ({report.totals()})")
    report.n_dropped = report.n_bad
    return records, report


def load_many(
    paths: Iterable[str | Path], kind: str, fmt: str = "auto", drop_bad: bool = False
) -> tuple[list[Record], int]:
    """`load_records` over several files, concatenated in order; returns the records and how many rows
    were dropped in all (only with drop_bad; otherwise the first file with a bad row raises)."""
    records: list[Record] = []
    dropped = 0
    for path in paths:
        recs, report = load_records(path, kind, fmt, drop_bad=drop_bad)
        records += recs
        dropped += report.n_dropped
    return records, dropped


def record_to_row(record: Record) -> dict[str, Any]:
    """A record as a "tether" row: its fields, without a margin that is None."""
    row = dataclasses.asdict(record)
    if row.get("margin", 0) is None:
        del row["margin"]
    return row


def save_records(path: str | Path, records: Iterable[Record]) -> Path:
    """Write records as "tether" JSON lines (.jsonl or .jsonl.gz), atomically; load_records reads them back."""
    path = Path(path)
    if not path.name.endswith((".jsonl", ".jsonl.gz")):
        raise DataError(f"{path}: save_records writes JSON lines; name the file .jsonl or .jsonl.gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            out = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.name.endswith(".gz") else raw
            for record in records:
                out.write(json.dumps(record_to_row(record), ensure_ascii=False).encode("utf-8") + b"\n")
            if out is not raw:
                out.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
