"""load_records / validate / save_records on hand-made files holding every kind of problem."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest

from tether.data.records import FeedbackRow, PreferencePair, PromptRow, SFTExample
from tether.data.validate import (
    EMPTY_PROMPT,
    EMPTY_RESPONSE,
    IDENTICAL,
    OVER_LONG,
    Problem,
    check_record,
    load_many,
    load_records,
    save_records,
    validate,
)
from tether.errors import DataError


def U(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _jsonl(path: Path, lines: list[object]) -> Path:
    """Write lines: dicts as JSON, bytes as they are (to plant broken lines)."""
    out = b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)
    path.write_bytes(out)
    return path


def _pair(chosen: object = "good", rejected: object = "bad", prompt: object = "Q") -> dict:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return _jsonl(
        tmp_path / "messy.jsonl",
        [
            _pair(),  # 1 ok
            _pair("same", "same "),  # 2 chosen == rejected (after strip)
            _pair(chosen="  "),  # 3 empty response
            _pair(prompt=""),  # 4 empty prompt
            b'{"prompt": "Q", "chosen": "a", ',  # 5 invalid JSON
            b'{"prompt": "\xff", "chosen": "a", "rejected": "b"}',  # 6 undecodable
            {"prompt": "Q", "chosen": "a"},  # 7 missing field
            _pair(chosen=7),  # 8 wrong type
            _pair(chosen="x" * 60),  # 9 over-long (max_chars=50 below)
            _pair("fine", "worse"),  # 10 ok
            _pair(prompt=[U("Q"), {"role": "assistant", "content": "A"}]),  # 11 malformed conversation
            _pair(chosen="", rejected=""),  # 12 empty response (both), not also "chosen == rejected"
        ],
    )


def test_validate_finds_every_problem(messy: Path) -> None:
    report = validate(messy, "preference", max_chars=50)
    assert (report.n_rows, report.n_ok, report.n_bad, report.n_records) == (12, 2, 10, 2)
    assert report.fmt == "trl"
    assert report.counts == {
        "empty response": 2,
        "chosen == rejected": 1,
        "empty prompt": 1,
        "invalid JSON": 1,
        "malformed conversation": 1,
        "missing field": 1,
        "over-long": 1,
        "undecodable text": 1,
        "wrong type": 1,
    }
    assert report.lines() == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    assert report.lines(EMPTY_RESPONSE) == [3, 12]
    f = str(messy)
    assert report.summary().splitlines() == [
        f"{f}:2: chosen == rejected",
        f"{f}:3: empty response (chosen)",
        f"{f}:4: empty prompt",
        f"{f}:5: invalid JSON (Expecting property name enclosed in double quotes at column 32)",
        f"{f}:6: undecodable text (byte 0xff at column 13 is not UTF-8)",
        f"{f}:7: missing field: 'rejected'",
        f"{f}:8: wrong type: chosen is an integer, expected a string or a list of messages",
        f"{f}:9: over-long: chosen has 60 characters (max 50)",
        f"{f}:11: malformed conversation: prompt ends with an 'assistant' turn, expected 'user'",
        f"{f}:12: empty response (chosen and rejected)",
        (
            "12 rows, 10 bad: 2 empty response, 1 chosen == rejected, 1 empty prompt, 1 invalid JSON, "
            "1 malformed conversation, 1 missing field, 1 over-long, 1 undecodable text, 1 wrong type"
        ),
    ]
    assert report.problems[0] == Problem(f, 2, IDENTICAL, "chosen == rejected")


def test_load_records_raises_one_line(messy: Path) -> None:
    with pytest.raises(DataError) as err:
        load_records(messy, "preference", max_chars=50)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"{messy}: 10 bad rows of 12 (2 empty response, 1 chosen == rejected, 1 empty prompt, 1 invalid JSON, "
        "1 malformed conversation, 1 missing field, 1 over-long, 1 undecodable text, 1 wrong type); "
        "first at line 2: chosen == rejected; "
        f"run `tether data validate {messy}` to list them or pass drop_bad to drop them"
    )


def test_load_records_drop_bad_keeps_the_good_rows(messy: Path) -> None:
    records, report = load_records(messy, "preference", drop_bad=True, max_chars=50)
    assert records == [
        PreferencePair([U("Q")], "good", "bad", meta={"source": f"{messy}:1"}),
        PreferencePair([U("Q")], "fine", "worse", meta={"source": f"{messy}:10"}),
    ]
    assert report.n_dropped == 10
    assert report.totals().endswith("; 10 bad rows dropped")


def test_load_many_concatenates_in_order_and_counts_drops(messy: Path, tmp_path: Path) -> None:
    clean = _jsonl(tmp_path / "clean.jsonl", [_pair("a", "b"), _pair("c", "d")])
    records, dropped = load_many([clean, messy], "preference", drop_bad=True)
    assert [r.chosen for r in records] == ["a", "c", "good", "x" * 60, "fine"]
    assert dropped == 9  # messy's 10 bad rows less the one that is over-long only at max_chars=50
    with pytest.raises(DataError, match=r"messy.jsonl"):
        load_many([clean, messy], "preference")


def test_over_long_uses_max_chars(messy: Path) -> None:
    assert validate(messy, "preference").counts.get(OVER_LONG) is None  # default 20,000
    long_prompt = PromptRow([U("y" * 30_001)])
    assert (
        check_record(long_prompt)[0].message
        == "over-long: prompt message 1 has 30,001 characters (max 20,000)"
    )


def test_check_record_per_kind() -> None:
    assert [i.kind for i in check_record(SFTExample([U("Q")], " \n"))] == [EMPTY_RESPONSE]
    assert [i.kind for i in check_record(FeedbackRow([U(" ")], "ok", True))] == [EMPTY_PROMPT]
    assert check_record(PromptRow([U("fine")])) == []


def test_hh_file_counts_and_lines(tmp_path: Path) -> None:
    p = "\n\nHuman: Hi\n\nAssistant:"
    path = _jsonl(
        tmp_path / "hh.jsonl",
        [
            {"chosen": p + " Hello", "rejected": p + " Go away"},
            {"chosen": p + " Same", "rejected": p + " Same"},
            {"chosen": p + " ", "rejected": p + " Something"},
            {"chosen": p + " Hello", "rejected": "\n\nHuman: Other\n\nAssistant: x"},
        ],
    )
    report = validate(path, "preference")
    assert report.fmt == "hh"
    assert report.counts == {"chosen == rejected": 1, "empty response": 1, "malformed HH transcript": 1}
    assert report.lines("malformed HH transcript") == [4]
    records, _ = load_records(path, "preference", drop_bad=True)
    assert records == [PreferencePair([U("Hi")], "Hello", "Go away", meta={"source": f"{path}:1"})]
    sft, _ = load_records(path, "sft", drop_bad=True)  # HH as SFT: the chosen reply
    assert [(r.completion, r.meta["source"]) for r in sft] == [("Hello", f"{path}:1"), ("Same", f"{path}:2")]


def test_save_records_round_trips(tmp_path: Path) -> None:
    records = [
        SFTExample([U("Q")], "A", meta={"answer": "4"}),
        PreferencePair(
            [{"role": "system", "content": "s"}, U("Q")], "a", "b", margin=1.5, meta={"source": "x:3"}
        ),
        PreferencePair([U("Q2")], "é ünïcode", "b"),
        PromptRow([U("P")]),
        FeedbackRow([U("F")], "c", False),
    ]
    for name in ("out.jsonl", "out.jsonl.gz"):
        path = save_records(tmp_path / name, records)
        sources = [r.meta.get("source", f"{path}:{i}") for i, r in enumerate(records, start=1)]
        expected = [dataclasses.replace(r, meta={**r.meta, "source": s}) for r, s in zip(records, sources)]
        loaded, report = load_records(path, "sft", drop_bad=True)
        assert report.fmt == "tether"
        assert loaded[0] == expected[0]  # then the two pairs give SFT examples from their chosen replies
        assert load_records(path, "feedback", drop_bad=True)[0][-1] == expected[4]
        pairs, report = load_records(path, "preference", drop_bad=True)
        assert pairs == expected[1:3]  # an existing source is kept, a new one names the saved file
        assert report.lines() == [1, 4, 5]  # the SFT, prompt and feedback rows are not pairs
        assert validate(path).totals() == "5 rows, 0 bad"  # kind None: each row as what it is
        assert [r for r in load_records(path, "prompt")[0] if r.prompt == [U("P")]] == [expected[3]]
    first = gzip.decompress((tmp_path / "out.jsonl.gz").read_bytes()).decode().splitlines()[0]
    assert json.loads(first) == {"prompt": [U("Q")], "completion": "A", "meta": {"answer": "4"}}
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_save_records_needs_jsonl(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"out\.csv: save_records writes JSON lines"):
        save_records(tmp_path / "out.csv", [])


def test_argument_and_format_errors(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "a\n#### 1"}])
    with pytest.raises(DataError, match=r"unknown record kind 'pairs'; expected one of sft, preference"):
        load_records(path, "pairs")
    with pytest.raises(DataError, match=r"unknown data format 'yaml'"):
        load_records(path, "sft", fmt="yaml")
    with pytest.raises(
        DataError, match=r"g\.jsonl: the gsm8k format gives sft, prompt records, not preference"
    ):
        load_records(path, "preference")
    records, _ = load_records(path, "prompt")
    assert records == [PromptRow([U("q")], meta={"answer": "1", "source": f"{path}:1"})]


def test_undetectable_format_names_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "odd.jsonl", [b"{broken", {"question_id": 1, "turns": ["a"]}])
    with pytest.raises(
        DataError,
        match=r"odd\.jsonl:2: cannot tell the data format from this row \(question_id, turns\); pass fmt",
    ):
        validate(path)


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "q.jsonl", [{"question": "q", "answer": "no hashes"}])
    assert validate(path, "sft").counts == {"malformed row": 1}
    with pytest.raises(DataError, match="missing field: 'prompt'"):
        load_records(path, "sft", fmt="trl")


def test_empty_file_has_no_records(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "empty.jsonl", [])
    assert validate(path, "sft").totals() == "0 rows, 0 bad"
    with pytest.raises(DataError, match=r"empty\.jsonl: no sft records \(0 rows, 0 bad\)"):
        load_records(path, "sft")


def test_multi_record_rows_name_the_record(tmp_path: Path) -> None:
    row = {
        "question": "Q",
        "prediction 1": "same",
        "prediction 2": "same",
        "prediction 3": "c",
        "prediction 4": "d",
        "preference": [1, 0, 0, 0, 0, 1],
    }
    path = tmp_path / "fg.json"
    path.write_text(json.dumps([row]))
    report = validate(path, "preference")
    assert [str(p) for p in report.problems] == [f"{path}:1: chosen == rejected (record 1 of 2)"]
    assert report.skipped == {"ties": 4}
