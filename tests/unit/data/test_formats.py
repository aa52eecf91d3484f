"""Each format on hand-made rows: the exact records, and the exact issue for each malformation."""

from __future__ import annotations

from typing import Any

import pytest

from tether.data.formats import (
    MALFORMED_CONVERSATION,
    MALFORMED_HH,
    MALFORMED_ROW,
    MISSING_FIELD,
    UNKNOWN_FIELD,
    WRONG_TYPE,
    Converted,
    Issue,
    convert,
    detect_format,
    from_finegrained,
    from_gsm8k,
    from_hh,
    from_messages,
    from_oasst,
    from_stack_exchange,
    from_tether,
    from_text,
    from_trl,
    parse_row,
    split_hh,
    to_kind,
)
from tether.data.records import FeedbackRow, PreferencePair, PromptRow, SFTExample, user_prompt


def U(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def A(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def S(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def only_issue(result: Any) -> Issue:
    assert isinstance(result, list) and len(result) == 1, result
    return result[0]


# --- TRL -----------------------------------------------------------------------------------------


def test_trl_standard_columns() -> None:
    assert from_trl({"prompt": "Hi", "completion": "Hello"}) == SFTExample([U("Hi")], "Hello")
    assert from_trl({"prompt": "Hi", "chosen": "Yes", "rejected": "No"}) == PreferencePair(
        [U("Hi")], "Yes", "No"
    )
    assert from_trl({"prompt": "Hi"}) == PromptRow([U("Hi")])
    assert from_trl({"prompt": "Hi", "completion": "x", "label": False}) == FeedbackRow([U("Hi")], "x", False)
    assert from_trl({"prompt": "Hi", "chosen": "a", "rejected": "b", "margin": 2}).margin == 2.0


def test_trl_conversational_columns() -> None:
    prompt = [S("Be brief."), U("Hi"), A("Hello"), U("Bye?")]
    row = {"prompt": prompt, "chosen": [A("Bye!")], "rejected": [A("No.")]}
    assert from_trl(row) == PreferencePair(prompt, "Bye!", "No.")
    assert from_trl({"prompt": [U("Q")], "completion": [A("R")]}) == SFTExample([U("Q")], "R")


def test_trl_implicit_prompt() -> None:
    row = {"chosen": [U("Q"), A("good")], "rejected": [U("Q"), A("bad")]}
    assert from_trl(row) == PreferencePair([U("Q")], "good", "bad")
    diverging = {"chosen": [U("Q"), A("good")], "rejected": [U("other"), A("bad")]}
    assert only_issue(from_trl(diverging)) == Issue(
        MALFORMED_CONVERSATION,
        "malformed conversation: chosen and rejected do not share every turn but the last",
    )
    strings = only_issue(from_trl({"chosen": "a", "rejected": "b"}))
    assert strings.kind == WRONG_TYPE and "use fmt='hh'" in strings.message


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"prompt": "Hi", "chosen": "a"}, Issue(MISSING_FIELD, "missing field: 'rejected'")),
        (
            {"completion": "a"},
            Issue(
                MISSING_FIELD,
                "missing field: 'prompt' (TRL rows need prompt, or chosen and rejected, or messages)",
            ),
        ),
        (
            {"prompt": 3, "completion": "a"},
            Issue(WRONG_TYPE, "wrong type: prompt is an integer, expected a string or a list of messages"),
        ),
        (
            {"prompt": "Hi", "completion": "x", "label": "yes"},
            Issue(WRONG_TYPE, "wrong type: 'label' is a string, expected true or false"),
        ),
        (
            {"prompt": "Hi", "chosen": "a", "rejected": "b", "margin": "big"},
            Issue(WRONG_TYPE, "wrong type: 'margin' is a string, expected a number"),
        ),
        (
            {"prompt": [U("Q"), A("R")], "completion": "x"},
            Issue(
                MALFORMED_CONVERSATION,
                "malformed conversation: prompt ends with an 'assistant' turn, expected 'user'",
            ),
        ),
        (
            {"prompt": [A("R"), U("Q")], "completion": "x"},
            Issue(
                MALFORMED_CONVERSATION,
                "malformed conversation: prompt message 1 is 'assistant', expected 'user'",
            ),
        ),
        (
            {"prompt": [{"role": "bot", "content": "Q"}], "completion": "x"},
            Issue(
                MALFORMED_CONVERSATION,
                "malformed conversation: prompt message 1 has role 'bot', "
                "expected one of ('system', 'user', 'assistant')",
            ),
        ),
        (
            {"prompt": [{"role": "user"}], "completion": "x"},
            Issue(MISSING_FIELD, "missing field: prompt message 1 has no 'content'"),
        ),
        (
            {"prompt": "Q", "chosen": [A("a"), A("b")], "rejected": "c"},
            Issue(
                MALFORMED_CONVERSATION,
                "malformed conversation: chosen must be one assistant message, found roles ['assistant', 'assistant']",
            ),
        ),
    ],
)
def test_trl_malformed(row: dict[str, Any], expected: Issue) -> None:
    assert only_issue(from_trl(row)) == expected


# --- messages ------------------------------------------------------------------------------------


def test_messages_last_assistant_turn_is_the_completion() -> None:
    msgs = [S("sys"), U("a"), A("b"), U("c"), A("d")]
    assert from_messages({"messages": msgs}) == SFTExample(msgs[:-1], "d")
    assert from_messages({"messages": msgs[:-1]}) == PromptRow(msgs[:-1])


def test_messages_malformed() -> None:
    assert only_issue(from_messages({"messages": [U("a"), U("b"), A("c")]})) == Issue(
        MALFORMED_CONVERSATION, "malformed conversation: messages message 2 is 'user', expected 'assistant'"
    )
    assert only_issue(from_messages({"messages": [S("only system")]})).message == (
        "malformed conversation: messages has no user turn"
    )
    assert only_issue(from_messages({"messages": "text"})).kind == WRONG_TYPE


# --- Anthropic HH --------------------------------------------------------------------------------

HH_PROMPT = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke.\n\nAssistant:"


def test_hh_split_rule() -> None:
    row = {"chosen": HH_PROMPT + " Why did the chicken...", "rejected": HH_PROMPT + "  No."}
    pair = from_hh(row)
    assert pair == PreferencePair(
        [U("Hi there"), A("Hello! How can I help?"), U("Tell me a joke.")],
        "Why did the chicken...",
        " No.",  # exactly one leading space is removed
    )


def test_hh_prompt_may_contain_single_newlines_and_colons() -> None:
    prompt = "\n\nHuman: A list:\n1. Human: rights\n\nAssistant:"
    assert from_hh({"chosen": prompt + " ok", "rejected": prompt + " no"}) == PreferencePair(
        [U("A list:\n1. Human: rights")], "ok", "no"
    )


@pytest.mark.parametrize(
    ("chosen", "rejected", "detail"),
    [
        # rejected is another conversation
        (
            HH_PROMPT + " a",
            "\n\nHuman: Hi there\n\nAssistant: Go away.",
            "rejected does not start with the prompt of chosen (they part at character 31)",
        ),
        # an inline Human turn lost its blank line, so two Assistant markers follow each other
        (
            "\n\nHuman: Hi\n\nAssistant: Hello.  Human: And you?\n\nAssistant: Fine.",
            "\n\nHuman: Hi\n\nAssistant: Hello.  Human: And you?\n\nAssistant: Bad.",
            "two Assistant turns in a row in the prompt (turns 2 and 3)",
        ),
        (
            "\n\nHuman: Hi\n\nHuman: Again\n\nAssistant: a",
            "\n\nHuman: Hi\n\nHuman: Again\n\nAssistant: b",
            "two Human turns in a row in the prompt (turns 1 and 2)",
        ),
        (
            HH_PROMPT + " a",
            HH_PROMPT + " b  Human: more?\n\nAssistant: c",
            "two Assistant turns in a row in the rejected reply",
        ),
        (
            HH_PROMPT + " a\n\nHuman: thanks",
            HH_PROMPT + " b",
            "a Human turn after the last Assistant turn in the chosen reply",
        ),
        (
            HH_PROMPT + " a",
            HH_PROMPT + " b\n\n Human: thanks",
            "turn marker 'Human:' without the blank line before it in rejected (character 94)",
        ),
        (
            HH_PROMPT + " a\nAssistant: again",
            HH_PROMPT + " b",
            "turn marker 'Assistant:' without the blank line before it in chosen (character 92)",
        ),
        (
            "Preamble\n\nHuman: Hi\n\nAssistant: a",
            "Preamble\n\nHuman: Hi\n\nAssistant: b",
            "text before the first '\\n\\nHuman:' turn",
        ),
        ("\n\nAssistant: a", "\n\nAssistant: b", "the first turn is not a Human turn"),
        ("\n\nHuman: no reply marker", "\n\nHuman: x", "chosen has no '\\n\\nAssistant:' turn"),
    ],
)
def test_hh_malformed(chosen: str, rejected: str, detail: str) -> None:
    issue = only_issue(from_hh({"chosen": chosen, "rejected": rejected}))
    assert issue.kind == MALFORMED_HH
    assert issue.message == f"malformed HH transcript: {detail}"


def test_hh_reports_every_structural_problem_of_a_row() -> None:
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello.  Human: And you?\n\nAssistant: Fine."
    rejected = "\n\nHuman: Hi\n\nAssistant: Go away."
    assert split_hh(chosen, rejected) == [
        "rejected does not start with the prompt of chosen (they part at character 25)",
        "two Assistant turns in a row in the prompt (turns 2 and 3)",
    ]


def test_hh_missing_and_wrong_type() -> None:
    assert only_issue(from_hh({"chosen": "x"})) == Issue(MISSING_FIELD, "missing field: 'rejected'")
    assert only_issue(from_hh({"chosen": ["x"], "rejected": "y"})) == Issue(
        WRONG_TYPE, "wrong type: 'chosen' is a list, expected a string"
    )


# --- OpenAssistant -------------------------------------------------------------------------------


def _node(
    role: str, text: str, rank: int | None = None, replies: list | None = None, deleted: bool = False
) -> dict:
    node = {"role": role, "text": text, "deleted": deleted, "replies": replies or [], "message_id": text}
    if rank is not None:
        node["rank"] = rank
    return node


OASST_TREE = {
    "message_tree_id": "t1",
    "prompt": _node(
        "prompter",
        "Q1",
        replies=[
            _node("assistant", "second", rank=1),
            _node(
                "assistant",
                "best",
                rank=0,
                replies=[
                    _node(
                        "prompter",
                        "Q2",
                        replies=[
                            _node("assistant", "x", rank=0),
                            _node("assistant", "y", rank=1),
                            _node("assistant", "z"),
                        ],
                    )
                ],
            ),
            _node("assistant", "third", rank=2),
            _node("assistant", "unranked"),
            _node(
                "assistant",
                "gone",
                rank=3,
                deleted=True,
                replies=[
                    _node(
                        "prompter",
                        "Q3",
                        replies=[
                            _node("assistant", "p", rank=0),
                            _node("assistant", "q", rank=1),
                        ],
                    )
                ],
            ),
        ],
    ),
}


def test_oasst_adjacent_rank_pairs_and_top_reply() -> None:
    out = from_oasst(OASST_TREE)
    pairs = [r for r in out.records if isinstance(r, PreferencePair)]
    sft = [r for r in out.records if isinstance(r, SFTExample)]
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ([U("Q1")], "best", "second"),
        ([U("Q1")], "second", "third"),  # adjacent ranks only: never best vs third
        ([U("Q1"), A("best"), U("Q2")], "x", "y"),
    ]
    assert pairs[0].meta == {"message_tree_id": "t1", "parent_id": None, "chosen_rank": 0, "rejected_rank": 1}
    assert [(s.prompt, s.completion) for s in sft] == [
        ([U("Q1")], "best"),
        ([U("Q1"), A("best"), U("Q2")], "x"),
    ]
    assert out.issues == []
    assert out.skipped == {"replies without a rank": 2, "deleted messages": 1}


def test_oasst_malformed() -> None:
    bad_role = {"prompt": _node("prompter", "Q", replies=[_node("prompter", "Q again")])}
    assert from_oasst(bad_role).issues == [
        Issue(MALFORMED_ROW, "malformed row: OASST message 0.0 is a prompter reply to a prompter message")
    ]
    bad_rank = {
        "prompt": _node(
            "prompter",
            "Q",
            replies=[_node("assistant", "a", rank=0), {**_node("assistant", "b"), "rank": "1"}],
        )
    }
    assert from_oasst(bad_rank).issues[0].message == (
        "malformed row: OASST message 0 has a reply with a non-integer rank or no text"
    )
    assert from_oasst({"message_tree_id": "t"}).issues[0].kind == MISSING_FIELD


# --- GSM8K, Stack Exchange, FineGrainedRLHF, text ----------------------------------------------


def test_gsm8k_removes_calculator_annotations_and_keeps_final_line() -> None:
    row = {
        "question": "Q?",
        "answer": "It costs 2*3=<<2*3=6>>6 dollars.\nSo 1,000+6=<<1000+6=1006>>1,006\n#### 1,006",
    }
    assert from_gsm8k(row) == SFTExample(
        [U("Q?")], "It costs 2*3=6 dollars.\nSo 1,000+6=1,006\n#### 1,006", meta={"answer": "1006"}
    )
    assert only_issue(from_gsm8k({"question": "Q", "answer": "no final line"})) == Issue(
        MALFORMED_ROW, "malformed row: GSM8K answer has no '#### <answer>' line"
    )
    assert only_issue(from_gsm8k({"question": "Q"})) == Issue(MISSING_FIELD, "missing field: 'answer'")


def test_stack_exchange_response_j_is_chosen() -> None:
    row = {"question": "How?", "response_j": "Like this.", "response_k": "Dunno."}
    assert from_stack_exchange(row) == PreferencePair([U("How?")], "Like this.", "Dunno.")


def test_finegrained_pairs_follow_preference_order() -> None:
    row = {
        "question": "Q",
        **{f"prediction {i}": f"p{i}" for i in range(1, 5)},
        "preference": [1, 2, 0, 0, 1, 2],
    }
    out = from_finegrained(row)
    assert [(r.chosen, r.rejected) for r in out.records] == [
        ("p1", "p2"),
        ("p3", "p1"),
        ("p2", "p4"),
        ("p4", "p3"),
    ]
    assert out.records[1].meta == {"chosen_prediction": 3, "rejected_prediction": 1}
    assert out.skipped == {"ties": 2}
    bad = from_finegrained({**row, "preference": [1, 2, 3]})
    assert bad.issues == [
        Issue(MALFORMED_ROW, "malformed row: 'preference' must be a list of 6 values in {0, 1, 2}")
    ]


def test_text_rows_are_prompts() -> None:
    assert from_text("Why is the sky blue?") == PromptRow(user_prompt("Why is the sky blue?"))
    assert only_issue(from_text(7)).kind == WRONG_TYPE


# --- tether ------------------------------------------------------------------------------------


def test_tether_rows_are_strict() -> None:
    row = {"prompt": [U("Q")], "chosen": "a", "rejected": "b", "margin": 0.5, "meta": {"id": 3}}
    assert from_tether(row) == PreferencePair([U("Q")], "a", "b", 0.5, meta={"id": 3})
    assert only_issue(from_tether({**row, "extra": 1})) == Issue(
        UNKNOWN_FIELD, "unknown field: 'extra' is not a PreferencePair field"
    )
    assert only_issue(from_tether({**row, "prompt": "Q"})) == Issue(
        WRONG_TYPE, "wrong type: 'prompt' is a string, expected a list of messages"
    )
    assert only_issue(from_tether({**row, "chosen": [A("a")]})).kind == WRONG_TYPE
    assert only_issue(from_tether({**row, "meta": []})).kind == WRONG_TYPE


# --- detection, dispatch, kinds ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        ({"prompt": "p", "completion": "c"}, "trl"),
        ({"prompt": [U("p")], "chosen": "a", "rejected": "b"}, "trl"),
        ({"chosen": [U("p"), A("a")], "rejected": [U("p"), A("b")]}, "trl"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, "hh"),
        ({"messages": [U("a")]}, "messages"),
        ({"message_tree_id": "t", "prompt": {}}, "oasst"),
        ({"question": "q", "answer": "a"}, "gsm8k"),
        ({"question": "q", "response_j": "a", "response_k": "b"}, "stack_exchange"),
        ({"question": "q", "prediction 1": "a", "preference": []}, "finegrained"),
        ({"prompt": [U("p")], "meta": {}}, "tether"),
        ("a bare prompt", "text"),
        ({"question_id": 81, "turns": ["a"]}, None),
        (42, None),
    ],
)
def test_detect_format(row: Any, fmt: str | None) -> None:
    assert detect_format(row) == fmt


def test_parse_row_rejects_non_objects_and_unknown_formats() -> None:
    assert parse_row(["a"], "trl").issues == [
        Issue(WRONG_TYPE, "wrong type: row is a list, expected an object")
    ]
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        parse_row({}, "yaml")


def test_to_kind_derivations() -> None:
    pair = PreferencePair([U("Q")], "good", "bad", meta={"k": 1})
    assert to_kind([pair], "preference") == [pair]
    assert to_kind([pair], "sft") == [SFTExample([U("Q")], "good", meta={"k": 1})]
    assert to_kind([pair], "prompt") == [PromptRow([U("Q")], meta={"k": 1})]
    assert to_kind([pair], "feedback") == [
        FeedbackRow([U("Q")], "good", True, meta={"k": 1}),
        FeedbackRow([U("Q")], "bad", False, meta={"k": 1}),
    ]
    sft = SFTExample([U("Q")], "A")
    assert to_kind([sft, pair], "sft") == [sft]  # native records win over derived ones
    assert to_kind([sft, pair], "prompt") == [PromptRow([U("Q")])]  # derived from one record type only
    assert to_kind([PreferencePair([U("Q")], "same", "same ")], "feedback") == Issue(
        "chosen == rejected",
        "chosen == rejected (as feedback rows they would be labelled both true and false)",
    )
    assert to_kind([sft], "preference", strict=False) == []
    assert to_kind([sft], "preference") == Issue(
        MISSING_FIELD,
        "missing field: a preference row needs prompt, chosen and rejected; this row gives SFTExample",
    )


def test_convert_applies_the_kind() -> None:
    row = {"prompt": "Q", "chosen": "a", "rejected": "b"}
    assert convert(row, "sft", "trl") == Converted(records=[SFTExample([U("Q")], "a")])
    assert convert({"prompt": "Q", "completion": "a"}, "preference", "trl").issues[0].kind == MISSING_FIELD
    assert convert(row, None, "trl").records == [PreferencePair([U("Q")], "a", "b")]
