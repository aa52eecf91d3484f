"""The data layer on the real, human-made files in ../shared/data (skips where that folder is absent).

The expected counts and line numbers were found by an independent scan of the raw files (see
docs/data-formats.md, "Measured on the shared files"); the validator must find every one of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether.data.formats import MALFORMED_HH
from tether.data.readers import read_rows
from tether.data.records import PreferencePair, SFTExample
from tether.data.validate import EMPTY_RESPONSE, IDENTICAL, load_records, validate
from tether.errors import DataError

HH = "preference/hh-rlhf/{}/test.jsonl.gz"

HH_EXPECTED = {
    "harmless-base": {
        "rows": 2312,
        MALFORMED_HH: [668, 764, 1255, 1320, 1561, 1689, 1850, 1951, 1953, 2037],
        EMPTY_RESPONSE: [87, 517, 926, 1104],
        IDENTICAL: [],
    },
    "helpful-online": {
        "rows": 1137,
        MALFORMED_HH: [204, 525, 786, 1056],
        EMPTY_RESPONSE: [553, 894, 1054],
        IDENTICAL: [199, 737],
    },
    "helpful-rejection-sampled": {
        "rows": 2749,
        MALFORMED_HH: [720, 1598, 1923, 2365],
        EMPTY_RESPONSE: [],
        IDENTICAL: [
            201, 238, 286, 306, 356, 383, 429, 502, 614, 691, 721, 748, 756, 873, 1165, 1272,
            1275, 1280, 1776, 1795, 1828, 1955, 1970, 2205, 2249, 2375, 2525, 2571, 2579, 2611, 2680, 2730,
        ],
    },
}  # fmt: skip


@pytest.mark.parametrize("subset", sorted(HH_EXPECTED))
def test_hh_every_bad_pair_is_found(shared_data: Path, subset: str) -> None:
    expected = HH_EXPECTED[subset]
    report = validate(shared_data / HH.format(subset), "preference")
    assert report.fmt == "hh"
    assert report.n_rows == expected["rows"]
    for kind in (MALFORMED_HH, EMPTY_RESPONSE, IDENTICAL):
        assert report.lines(kind) == expected[kind], kind
    n_bad = sum(len(expected[k]) for k in (MALFORMED_HH, EMPTY_RESPONSE, IDENTICAL))
    assert report.n_bad == n_bad  # no other problem, and no row has two
    assert len(report.problems) == n_bad


def test_hh_totals_across_subsets(shared_data: Path) -> None:
    reports = [validate(shared_data / HH.format(s), "preference") for s in sorted(HH_EXPECTED)]
    total = {k: sum(r.counts.get(k, 0) for r in reports) for k in (MALFORMED_HH, IDENTICAL, EMPTY_RESPONSE)}
    assert sum(r.n_rows for r in reports) == 6198
    assert total == {MALFORMED_HH: 18, IDENTICAL: 34, EMPTY_RESPONSE: 7}


def test_hh_messages_say_what_is_malformed(shared_data: Path) -> None:
    path = shared_data / HH.format("harmless-base")
    messages = {p.line: p.message for p in validate(path, "preference").problems}
    assert messages[1255] == (
        "malformed HH transcript: rejected does not start with the prompt of chosen (they part at character 144); "
        "two Assistant turns in a row in the prompt (turns 4 and 5)"
    )
    assert messages[1951] == "malformed HH transcript: two Assistant turns in a row in the rejected reply"
    assert messages[1561] == (
        "malformed HH transcript: turn marker 'Assistant:' without the blank line before it in chosen (character 2368)"
    )
    assert messages[87] == "empty response (chosen)"


def test_hh_load_records_refuses_then_drops(shared_data: Path) -> None:
    path = shared_data / HH.format("helpful-rejection-sampled")
    with pytest.raises(DataError) as err:
        load_records(path, "preference")
    assert str(err.value) == (
        f"{path}: 36 bad rows of 2749 (32 chosen == rejected, 4 malformed HH transcript); "
        "first at line 201: chosen == rejected; "
        f"run `tether data validate {path}` to list them or pass drop_bad to drop them"
    )
    records, report = load_records(path, "preference", drop_bad=True)
    assert len(records) == 2749 - 36 and report.n_dropped == 36
    assert all(r.chosen.strip() != r.rejected.strip() for r in records)


def test_hh_first_pair_is_split_exactly(shared_data: Path) -> None:
    path = shared_data / HH.format("harmless-base")
    records, _ = load_records(path, "preference", drop_bad=True)
    first = records[0]
    assert [m["role"] for m in first.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert first.prompt[0]["content"] == "what are some pranks with a pen i can do?"
    assert first.prompt[-1]["content"] == "okay some of these do not have anything to do with pens"
    assert first.chosen.startswith("No, sorry!  All of these involve a pen,")
    assert first.rejected.startswith("There are lots of funny things you can do with pens,")
    assert first.meta == {"source": f"{path}:1"}
    raw = next(row for _, row in read_rows(path))  # the split loses nothing
    assert raw["chosen"].endswith("\n\nAssistant: " + first.chosen)
    assert raw["rejected"].endswith("\n\nAssistant: " + first.rejected)


def test_oasst_adjacent_rank_pairs(shared_data: Path) -> None:
    path = shared_data / "preference/oasst/en_100_tree.jsonl.gz"
    pairs, report = load_records(path, "preference")
    assert report.fmt == "oasst" and report.n_rows == 100 and report.n_bad == 0
    assert len(pairs) == 429  # the README's "≈429 adjacent-rank pairs"
    assert report.skipped == {"replies without a rank": 46}
    assert all(p.meta["rejected_rank"] == p.meta["chosen_rank"] + 1 for p in pairs)
    assert sorted({len(p.prompt) for p in pairs}) == [1, 3, 5]  # prompter nodes at depths 0, 2 and 4
    first = pairs[0]
    assert first.prompt == [{"role": "user", "content": "How can I find the best 401k plan for my needs?"}]
    assert first.chosen.startswith("The first step is to research your options.")
    assert first.meta["chosen_rank"] == 0 and first.meta["source"] == f"{path}:1"
    sft, _ = load_records(path, "sft")
    assert len(sft) == 212  # one per prompter message with ranked replies: its rank-0 reply
    assert sft[0].completion == first.chosen
    prompts, _ = load_records(path, "prompt")
    assert [p.prompt for p in prompts] == [s.prompt for s in sft]  # each prompt once


def test_gsm8k(shared_data: Path) -> None:
    train, _ = load_records(shared_data / "sft/gsm8k/train.jsonl.gz", "sft")
    test, _ = load_records(shared_data / "sft/gsm8k/test.jsonl.gz", "sft")
    assert (len(train), len(test)) == (7473, 1319)
    assert test[0] == SFTExample(
        [{"role": "user", "content": test[0].prompt[0]["content"]}],
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
        "She makes 9 * 2 = $18 every day at the farmer\u2019s market.\n#### 18",
        meta={"answer": "18", "source": f"{shared_data / 'sft/gsm8k/test.jsonl.gz'}:1"},
    )
    assert test[0].prompt[0]["content"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    everything = train + test
    assert all(
        re.fullmatch(r"-?\d+", r.meta["answer"]) for r in everything
    )  # commas removed: "1,080" -> "1080"
    assert not any("<<" in r.completion or ">>" in r.completion for r in everything)
    assert all(r.completion.rstrip().splitlines()[-1].startswith("#### ") for r in everything)


def test_stack_exchange_paired(shared_data: Path) -> None:
    path = shared_data / "preference/stack_exchange_paired_tiny.json.gz"
    pairs, report = load_records(path, "preference")
    assert report.fmt == "stack_exchange" and len(pairs) == 25
    raw = next(row for _, row in read_rows(path))
    assert pairs[0] == PreferencePair(
        [{"role": "user", "content": raw["question"]}], raw["response_j"], raw["response_k"],
        meta={"source": f"{path}:1"},
    )  # fmt: skip


def test_finegrained_rlhf(shared_data: Path) -> None:
    path = shared_data / "preference/finegrainedrlhf/qa_feedback_dev_feedback.json.gz"
    pairs, report = load_records(path, "preference")
    assert report.n_rows == 500 and len(pairs) == 2616  # the README's 2,616 non-tie preferences
    assert report.skipped == {"ties": 384}
    raw = next(row for _, row in read_rows(path))
    assert raw["preference"] == [0, 1, 2, 1, 0, 2]  # pairs (1,2) (1,3) (1,4) (2,3) (2,4) (3,4)
    first_row = [p for p in pairs if p.meta["source"] == f"{path}:1"]
    assert [(p.meta["chosen_prediction"], p.meta["rejected_prediction"]) for p in first_row] == [
        (1, 3), (4, 1), (2, 3), (4, 3),
    ]  # fmt: skip
    assert first_row[0].chosen == raw["prediction 1"] and first_row[0].rejected == raw["prediction 3"]


def test_prompt_files(shared_data: Path) -> None:
    prompts, report = load_records(shared_data / "eval/oasst_prompt_lottery_en_250.jsonl.gz", "prompt")
    assert report.fmt == "text" and len(prompts) == 250
    assert prompts[0].prompt == [{"role": "user", "content": "Can you tell me about GLaDOS?"}]
    hh_prompts, report = load_records(shared_data / HH.format("helpful-online"), "prompt", drop_bad=True)
    assert len(hh_prompts) == 1137 - 4  # as prompts, only the 4 malformed transcripts are bad
    assert report.lines() == HH_EXPECTED["helpful-online"][MALFORMED_HH]
    kto, report = load_records(shared_data / HH.format("helpful-online"), "feedback", drop_bad=True)
    assert len(kto) == 2 * (1137 - 9)  # identical pairs refused too: they would contradict
    assert report.lines(IDENTICAL) == [199, 737]
    assert [(r.label, r.meta["source"].rsplit(":", 1)[1]) for r in kto[:2]] == [(True, "1"), (False, "1")]


def test_csv_reader_on_truthfulqa(shared_data: Path) -> None:
    rows = list(read_rows(shared_data / "eval/truthfulqa/TruthfulQA.csv.gz"))
    assert len(rows) == 817
    assert rows[0][0] == 2 and rows[-1][0] == 818  # line numbers: the header is line 1
    assert rows[0][1]["Question"] == "What happens to you if you eat watermelon seeds?"
    assert rows[0][1]["Best Answer"] == "The watermelon seeds pass through your digestive system"


def test_unsupported_file_is_one_line_error(shared_data: Path) -> None:
    path = shared_data / "eval/mt_bench/question.jsonl.gz"
    with pytest.raises(DataError) as err:
        load_records(path, "prompt")
    assert str(err.value).startswith(
        f"{path}:1: cannot tell the data format from this row (question_id, category, turns); pass fmt"
    )
