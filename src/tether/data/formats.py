"""Dataset formats: turn one raw row into typed records, or say exactly what is wrong with it.

Formats (see docs/data-formats.md for the full mapping):
  trl             TRL columns: prompt/completion (SFT), prompt/chosen/rejected (preference; chosen and
                  rejected without a prompt = implicit prompt), prompt (prompt only), prompt/completion/
                  label (KTO feedback); each text a string or a list of {role, content} messages.
  messages        {"messages": [...]}: the last assistant turn is the completion, the rest the prompt.
  hh              Anthropic HH-RLHF {"chosen", "rejected"} transcripts ("\\n\\nHuman: " / "\\n\\nAssistant: ").
  oasst           OpenAssistant message trees: adjacent-rank preference pairs and top-ranked SFT replies.
  gsm8k           {"question", "answer"}: calculator annotations removed, final answer in meta.
  stack_exchange  {"question", "response_j", "response_k"}: response_j is the preferred answer.
  finegrained     FineGrainedRLHF QA feedback: 4 predictions, 6 human pairwise preferences (0 = tie).
  text            a bare JSON string: a single-turn prompt.
  tether          our own JSON lines: exactly the record fields, plus meta (written by save_records).

A converter returns the row's records of their natural type (`parse_row`); `to_kind` then derives the
kind a stage asked for where that is well defined (a pair gives an SFT example from its chosen reply,
a prompt, or two KTO rows).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, TypeVar

from tether.data.records import (
    RECORD_KINDS,
    FeedbackRow,
    Messages,
    PreferencePair,
    PromptRow,
    SFTExample,
    user_prompt,
)

Record = SFTExample | PreferencePair | PromptRow | FeedbackRow
_R = TypeVar("_R")

# Problem kinds: the keys a ValidationReport counts by.
MISSING_FIELD = "missing field"
WRONG_TYPE = "wrong type"
UNKNOWN_FIELD = "unknown field"
MALFORMED_HH = "malformed HH transcript"
MALFORMED_CONVERSATION = "malformed conversation"
MALFORMED_ROW = "malformed row"
IDENTICAL = "chosen == rejected"

FORMATS = (
    "auto",
    "trl",
    "messages",
    "hh",
    "oasst",
    "gsm8k",
    "stack_exchange",
    "finegrained",
    "text",
    "tether",
)
KINDS = ("sft", "preference", "prompt", "feedback")
_PAIR_KINDS = frozenset(KINDS)
FORMAT_KINDS: dict[str, frozenset[str]] = {
    "trl": frozenset(KINDS),
    "tether": frozenset(KINDS),
    "messages": frozenset({"sft", "prompt"}),
    "hh": _PAIR_KINDS,
    "stack_exchange": _PAIR_KINDS,
    "finegrained": _PAIR_KINDS,
    "oasst": frozenset({"preference", "sft", "prompt"}),
    "gsm8k": frozenset({"sft", "prompt"}),
    "text": frozenset({"prompt"}),
}
"""The record kinds each format can give (directly or derived)."""

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Issue:
    """What is wrong with a row: `kind` is one of the problem kinds, `message` starts with it."""

    kind: str
    message: str


@dataclass
class Converted:
    """The outcome of one raw row: its records, or the issues that stop it; `skipped` counts parts
    left out on purpose (OASST replies without a rank, FineGrainedRLHF ties)."""

    records: list[Record] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


_JSON_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
}


def json_type(value: Any) -> str:
    """How a value reads in JSON terms: "a string", "an integer", "null", ..."""
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), f"a {type(value).__name__}")


def _issue(kind: str, detail: str = "") -> Issue:
    return Issue(kind, f"{kind}: {detail}" if detail else kind)


class _RowError(Exception):
    """Raised by the field helpers below; converters turn it into their returned issue."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.issue = _issue(kind, detail)


def _converter(fn: Callable[[Any], _R]) -> Callable[[Any], _R]:
    """Let a converter raise _RowError; its caller gets `[issue]` back."""

    @functools.wraps(fn)
    def wrapper(row: Any) -> _R:
        try:
            return fn(row)
        except _RowError as e:
            return [e.issue]  # type: ignore[return-value]  # every converter returns `... | list[Issue]`

    return wrapper


# ---------------------------------------------------------------------------------------------
# Field access (each raises _RowError naming the field and what is wrong)


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        raise _RowError(MISSING_FIELD, repr(key))
    if not isinstance(value, str):
        raise _RowError(WRONG_TYPE, f"{key!r} is {json_type(value)}, expected a string")
    return value


def _messages(value: Any, where: str) -> Messages:
    """A list of {role, content} dicts with known roles; `where` names the field in messages."""
    if not isinstance(value, list):
        raise _RowError(WRONG_TYPE, f"{where} is {json_type(value)}, expected a string or a list of messages")
    messages: Messages = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict):
            raise _RowError(WRONG_TYPE, f"{where} message {i} is {json_type(m)}, expected an object")
        for key in ("role", "content"):
            if m.get(key) is None:
                raise _RowError(MISSING_FIELD, f"{where} message {i} has no {key!r}")
        if m["role"] not in ROLES:
            raise _RowError(
                MALFORMED_CONVERSATION, f"{where} message {i} has role {m['role']!r}, expected one of {ROLES}"
            )
        if not isinstance(m["content"], str):
            raise _RowError(
                WRONG_TYPE, f"{where} message {i} content is {json_type(m['content'])}, expected a string"
            )
        messages.append({"role": m["role"], "content": m["content"]})
    return messages


def _check_turn_order(messages: Messages, where: str) -> None:
    """System (optional) first, then user and assistant alternating, starting with user."""
    offset = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) == offset:
        raise _RowError(MALFORMED_CONVERSATION, f"{where} has no user turn")
    for i, m in enumerate(messages[offset:]):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise _RowError(
                MALFORMED_CONVERSATION,
                f"{where} message {i + 1 + offset} is {m['role']!r}, expected {expected!r}",
            )


def _prompt(value: Any, where: str = "prompt") -> Messages:
    """A prompt given as a string (one user turn) or as messages ending with a user turn."""
    if isinstance(value, str):
        return user_prompt(value)
    messages = _messages(value, where)
    _check_turn_order(messages, where)
    if messages[-1]["role"] != "user":
        raise _RowError(
            MALFORMED_CONVERSATION, f"{where} ends with an {messages[-1]['role']!r} turn, expected 'user'"
        )
    return messages


def _reply(value: Any, where: str) -> str:
    """A reply given as a string or, TRL-style, as a list holding one assistant message."""
    if isinstance(value, str):
        return value
    messages = _messages(value, where)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        roles = [m["role"] for m in messages]
        raise _RowError(MALFORMED_CONVERSATION, f"{where} must be one assistant message, found roles {roles}")
    return messages[0]["content"]


# ---------------------------------------------------------------------------------------------
# Single-record formats: each returns a record or [issue]


@_converter
def from_trl(row: dict[str, Any]) -> Record | list[Issue]:
    """TRL-style columns; which record depends on the columns present (see module docstring)."""
    if "chosen" in row or "rejected" in row:
        return _trl_pair(row)
    if "prompt" not in row:
        if "messages" in row:
            return from_messages(row)
        raise _RowError(MISSING_FIELD, "'prompt' (TRL rows need prompt, or chosen and rejected, or messages)")
    prompt = _prompt(row["prompt"])
    if "completion" not in row:
        return PromptRow(prompt)
    completion = _reply(row["completion"], "completion")
    if "label" not in row:
        return SFTExample(prompt, completion)
    if not isinstance(row["label"], bool):
        raise _RowError(WRONG_TYPE, f"'label' is {json_type(row['label'])}, expected true or false")
    return FeedbackRow(prompt, completion, row["label"])


def _trl_pair(row: dict[str, Any]) -> PreferencePair:
    for key in ("chosen", "rejected"):
        if row.get(key) is None:
            raise _RowError(MISSING_FIELD, repr(key))
    margin = row.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise _RowError(WRONG_TYPE, f"'margin' is {json_type(margin)}, expected a number")
    margin = None if margin is None else float(margin)
    if row.get("prompt") is None:
        return _implicit_prompt_pair(row["chosen"], row["rejected"], margin)
    prompt = _prompt(row["prompt"])
    return PreferencePair(
        prompt, _reply(row["chosen"], "chosen"), _reply(row["rejected"], "rejected"), margin
    )


def _implicit_prompt_pair(chosen: Any, rejected: Any, margin: float | None) -> PreferencePair:
    """TRL's implicit prompt: chosen and rejected are whole conversations sharing all but the reply."""
    if isinstance(chosen, str) or isinstance(rejected, str):
        raise _RowError(
            WRONG_TYPE,
            "without a 'prompt' column, chosen and rejected must be message lists "
            "(for Anthropic HH transcripts use fmt='hh')",
        )
    chosen_msgs, rejected_msgs = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    prompt = chosen_msgs[:-1]
    if not prompt:
        raise _RowError(MALFORMED_CONVERSATION, "chosen has no prompt turns")
    if rejected_msgs[: len(prompt)] != prompt:
        raise _RowError(MALFORMED_CONVERSATION, "chosen and rejected do not share every turn but the last")
    _check_turn_order(prompt, "prompt")
    if prompt[-1]["role"] != "user":
        raise _RowError(MALFORMED_CONVERSATION, "the shared prompt does not end with a user turn")
    chosen_text = _reply(chosen_msgs[len(prompt) :], "chosen reply")
    rejected_text = _reply(rejected_msgs[len(prompt) :], "rejected reply")
    return PreferencePair(prompt, chosen_text, rejected_text, margin)


@_converter
def from_messages(row: dict[str, Any]) -> SFTExample | PromptRow | list[Issue]:
    """{"messages": [...]}: ends with assistant -> SFTExample; ends with user -> PromptRow."""
    if "messages" not in row:
        raise _RowError(MISSING_FIELD, "'messages'")
    messages = _messages(row["messages"], "messages")
    _check_turn_order(messages, "messages")
    if messages[-1]["role"] == "user":
        return PromptRow(messages)
    return SFTExample(messages[:-1], messages[-1]["content"])


_GSM8K_CALC = re.compile(r"<<[^<>]*>>")


@_converter
def from_gsm8k(row: dict[str, Any]) -> SFTExample | list[Issue]:
    """GSM8K: completion = the worked answer without <<calculator>> annotations; meta answer = N."""
    question, answer = _text(row, "question"), _text(row, "answer")
    if "####" not in answer:
        raise _RowError(MALFORMED_ROW, "GSM8K answer has no '#### <answer>' line")
    final = answer.rsplit("####", 1)[1].strip().replace(",", "")
    return SFTExample(user_prompt(question), _GSM8K_CALC.sub("", answer), meta={"answer": final})


@_converter
def from_stack_exchange(row: dict[str, Any]) -> PreferencePair | list[Issue]:
    """lvwerra/stack-exchange-paired: response_j (higher-voted) is chosen over response_k."""
    question, chosen, rejected = (_text(row, k) for k in ("question", "response_j", "response_k"))
    return PreferencePair(user_prompt(question), chosen, rejected)


@_converter
def from_text(row: Any) -> PromptRow | list[Issue]:
    """A bare JSON string: a single-turn prompt."""
    if not isinstance(row, str):
        raise _RowError(WRONG_TYPE, f"row is {json_type(row)}, expected a string")
    return PromptRow(user_prompt(row))


_TETHER_FIELDS = {
    SFTExample: {"prompt", "completion", "meta"},
    PreferencePair: {"prompt", "chosen", "rejected", "margin", "meta"},
    PromptRow: {"prompt", "meta"},
    FeedbackRow: {"prompt", "completion", "label", "meta"},
}


@_converter
def from_tether(row: dict[str, Any]) -> Record | list[Issue]:
    """Our own rows: the record fields exactly, prompt as messages, replies as strings, meta an object."""
    prompt = row.get("prompt")
    if not isinstance(prompt, list):
        kind = MISSING_FIELD if prompt is None else WRONG_TYPE
        raise _RowError(kind, f"'prompt' is {json_type(prompt)}, expected a list of messages")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        raise _RowError(WRONG_TYPE, f"'meta' is {json_type(meta)}, expected an object")
    for key in ("completion", "chosen", "rejected"):
        if key in row and not isinstance(row[key], str):
            raise _RowError(WRONG_TYPE, f"{key!r} is {json_type(row[key])}, expected a string")
    record = from_trl({k: v for k, v in row.items() if k != "meta"})
    if isinstance(record, list):
        return record
    unknown = sorted(set(row) - _TETHER_FIELDS[type(record)])
    if unknown:
        raise _RowError(
            UNKNOWN_FIELD, f"{', '.join(map(repr, unknown))} is not a {type(record).__name__} field"
        )
    record.meta = dict(meta)
    return record


# ---------------------------------------------------------------------------------------------
# Anthropic HH-RLHF

ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_LOOSE_TURN = re.compile(r"\n[ \t]*(?:\n[ \t]*)*(Human|Assistant):")
"""A turn marker at the start of a line that is not the canonical blank line + marker."""


def _strip_one_space(text: str) -> str:
    return text.removeprefix(" ")


def split_hh(chosen: str, rejected: str) -> tuple[Messages, str, str] | list[str]:
    """Split an HH pair into (prompt messages, chosen reply, rejected reply), or the list of what is
    malformed.

    Rule: the prompt is `chosen` up to and including its last "\\n\\nAssistant:"; the chosen reply is
    the rest, the rejected reply is `rejected[len(prompt):]` (one leading space removed from each), and
    `rejected` must start with the prompt. The prompt must be "\\n\\nHuman:" and "\\n\\nAssistant:" turns
    alternating from Human; no reply may hold a further turn; no turn marker may start a line without
    the blank line before it.
    """
    cut = chosen.rfind(ASSISTANT)
    if cut < 0:
        return ["chosen has no '\\n\\nAssistant:' turn"]
    prompt_text = chosen[: cut + len(ASSISTANT)]
    problems: list[str] = []
    shares_prompt = rejected.startswith(prompt_text)
    if not shares_prompt:
        at = next((i for i, (a, b) in enumerate(zip(prompt_text, rejected)) if a != b), len(rejected))
        problems.append(
            f"rejected does not start with the prompt of chosen (they part at character {at + 1})"
        )
    parts = _HH_TURN.split(prompt_text)  # ['', 'Human', ' text', 'Assistant', ' text', ..., 'Assistant', '']
    if parts[0]:
        problems.append("text before the first '\\n\\nHuman:' turn")
    roles, contents = parts[1::2], parts[2::2]
    if roles[0] != "Human":
        problems.append("the first turn is not a Human turn")
    repeat = next((i for i in range(1, len(roles)) if roles[i] == roles[i - 1]), None)
    if repeat is not None:
        problems.append(f"two {roles[repeat]} turns in a row in the prompt (turns {repeat} and {repeat + 1})")
    replies = {"chosen": chosen[len(prompt_text) :], "rejected": rejected[len(prompt_text) :]}
    for name, reply in replies.items():
        extra = _HH_TURN.search(reply)
        if extra and (name == "chosen" or shares_prompt):
            what = (
                "two Assistant turns in a row"
                if extra.group(1) == "Assistant"
                else "a Human turn after the last Assistant turn"
            )
            problems.append(f"{what} in the {name} reply")
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        loose = next(
            (m for m in _HH_LOOSE_TURN.finditer(text) if m.group(0) != "\n\n" + m.group(1) + ":"), None
        )
        if loose:
            problems.append(
                f"turn marker '{loose.group(1)}:' without the blank line before it in {name} "
                f"(character {loose.start(1) + 1})"
            )
    if problems:
        return problems
    role_names = {"Human": "user", "Assistant": "assistant"}
    prompt = [
        {"role": role_names[r], "content": _strip_one_space(c)} for r, c in zip(roles[:-1], contents[:-1])
    ]
    return prompt, _strip_one_space(replies["chosen"]), _strip_one_space(replies["rejected"])


@_converter
def from_hh(row: dict[str, Any]) -> PreferencePair | list[Issue]:
    """Anthropic HH-RLHF {"chosen", "rejected"} transcripts (see split_hh for the rule)."""
    split = split_hh(_text(row, "chosen"), _text(row, "rejected"))
    if isinstance(split, list):
        raise _RowError(MALFORMED_HH, "; ".join(split))
    return PreferencePair(*split)


# ---------------------------------------------------------------------------------------------
# Multi-record formats


def from_oasst(tree: dict[str, Any]) -> Converted:
    """An OpenAssistant message tree.

    Every prompter message (not deleted, reached through messages that are not deleted) with ranked
    assistant replies gives: preference pairs of ADJACENT ranks (rank i chosen over rank i + 1) and one
    SFT example from the rank-0 reply. The prompt is the conversation from the root to that prompter
    message. Deleted messages (with their subtrees) and assistant replies without a rank are skipped
    and counted.
    """
    out = Converted()
    root = tree.get("prompt")
    if not isinstance(root, dict):
        out.issues.append(
            _issue(MISSING_FIELD if root is None else WRONG_TYPE, "'prompt' must be the tree's root message")
        )
        return out
    tree_id = tree.get("message_tree_id")

    def walk(node: dict[str, Any], history: Messages, path: str) -> None:
        if node.get("deleted"):
            out.skipped["deleted messages"] += 1
            return
        text, role = node.get("text"), node.get("role")
        if not isinstance(text, str) or role not in ("prompter", "assistant"):
            out.issues.append(
                _issue(
                    MALFORMED_ROW,
                    f"OASST message {path} needs a string 'text' and a role "
                    f"prompter or assistant (role {role!r})",
                )
            )
            return
        expected = "prompter" if len(history) % 2 == 0 else "assistant"
        if role != expected:
            out.issues.append(
                _issue(MALFORMED_ROW, f"OASST message {path} is a {role} reply to a {role} message")
            )
            return
        history = [*history, {"role": "user" if role == "prompter" else "assistant", "content": text}]
        replies = [r for r in node.get("replies") or [] if isinstance(r, dict)]
        if role == "prompter":
            _rank_replies(replies, history, path, tree_id, out)
        for i, reply in enumerate(replies):
            walk(reply, history, f"{path}.{i}")

    walk(root, [], "0")
    return out


def _rank_replies(
    replies: list[dict[str, Any]], prompt: Messages, path: str, tree_id: Any, out: Converted
) -> None:
    live = [r for r in replies if not r.get("deleted") and r.get("role") == "assistant"]
    ranked = [r for r in live if r.get("rank") is not None]
    if len(ranked) < len(live):
        out.skipped["replies without a rank"] += len(live) - len(ranked)
    if any(not isinstance(r["rank"], int) or not isinstance(r.get("text"), str) for r in ranked):
        out.issues.append(
            _issue(MALFORMED_ROW, f"OASST message {path} has a reply with a non-integer rank or no text")
        )
        return
    ranked.sort(key=lambda r: r["rank"])
    if not ranked:
        return
    meta = {"message_tree_id": tree_id, "parent_id": ranked[0].get("parent_id")}
    out.records.append(SFTExample(list(prompt), ranked[0]["text"], meta={**meta, "rank": ranked[0]["rank"]}))
    for better, worse in pairwise(ranked):
        if better["rank"] == worse["rank"]:
            out.skipped["tied adjacent ranks"] += 1
            continue
        out.records.append(
            PreferencePair(
                list(prompt),
                better["text"],
                worse["text"],
                meta={**meta, "chosen_rank": better["rank"], "rejected_rank": worse["rank"]},
            )
        )


FINEGRAINED_PAIRS = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))
"""The prediction pairs FineGrainedRLHF's `preference` list refers to, in its order."""


def from_finegrained(row: dict[str, Any]) -> Converted:
    """FineGrainedRLHF QA feedback: preference value 1 = first prediction better, 2 = second, 0 = tie
    (skipped and counted). The prompt is the question alone (the retrieved passages are not included)."""
    out = Converted()
    try:
        question = _text(row, "question")
        predictions = [_text(row, f"prediction {i}") for i in range(1, 5)]
    except _RowError as e:
        out.issues.append(e.issue)
        return out
    prefs = row.get("preference")
    if not (isinstance(prefs, list) and len(prefs) == 6 and all(p in (0, 1, 2) for p in prefs)):
        out.issues.append(_issue(MALFORMED_ROW, "'preference' must be a list of 6 values in {0, 1, 2}"))
        return out
    for (a, b), pref in zip(FINEGRAINED_PAIRS, prefs):
        if pref == 0:
            out.skipped["ties"] += 1
            continue
        good, bad = (a, b) if pref == 1 else (b, a)
        meta = {"chosen_prediction": good, "rejected_prediction": bad}
        out.records.append(
            PreferencePair(user_prompt(question), predictions[good - 1], predictions[bad - 1], meta=meta)
        )
    return out


# ---------------------------------------------------------------------------------------------
# Detection, dispatch and kinds

_SINGLE: dict[str, Callable[[Any], Record | list[Issue]]] = {
    "trl": from_trl,
    "messages": from_messages,
    "hh": from_hh,
    "gsm8k": from_gsm8k,
    "stack_exchange": from_stack_exchange,
    "text": from_text,
    "tether": from_tether,
}
_MULTI: dict[str, Callable[[dict[str, Any]], Converted]] = {
    "oasst": from_oasst,
    "finegrained": from_finegrained,
}


def detect_format(row: Any) -> str | None:
    """The format a row's keys point to, or None when they fit none."""
    if isinstance(row, str):
        return "text"
    if not isinstance(row, dict):
        return None
    keys = set(row)
    if "message_tree_id" in keys or (isinstance(row.get("prompt"), dict) and "replies" in row["prompt"]):
        return "oasst"
    if "meta" in keys and "prompt" in keys:
        return "tether"
    if "messages" in keys and "prompt" not in keys:
        return "messages"
    if {"question", "answer"} <= keys:
        return "gsm8k"
    if {"question", "response_j", "response_k"} <= keys:
        return "stack_exchange"
    if {"question", "preference", "prediction 1"} <= keys:
        return "finegrained"
    if "prompt" in keys:
        return "trl"
    if {"chosen", "rejected"} <= keys:
        return "hh" if isinstance(row["chosen"], str) and isinstance(row["rejected"], str) else "trl"
    return None


def parse_row(row: Any, fmt: str) -> Converted:
    """The records of one raw row in format `fmt` (not "auto"), of their natural types."""
    if fmt not in _SINGLE and fmt not in _MULTI:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt != "text" and not isinstance(row, dict):
        return Converted(issues=[_issue(WRONG_TYPE, f"row is {json_type(row)}, expected an object")])
    if fmt in _MULTI:
        return _MULTI[fmt](row)
    result = _SINGLE[fmt](row)
    return Converted(issues=result) if isinstance(result, list) else Converted(records=[result])


_NEEDS = {
    "sft": "prompt and completion (or messages ending with an assistant turn)",
    "preference": "prompt, chosen and rejected",
    "prompt": "prompt",
    "feedback": "prompt, completion and label",
}


def to_kind(records: list[Record], kind: str, strict: bool = True) -> list[Record] | Issue:
    """The records as `kind`: those already of that type, else ones derived from them.

    Derivations: a pair gives an SFT example from its chosen reply, a prompt, or two feedback rows
    (chosen True, rejected False; refused when the replies are equal: the labels would contradict);
    an SFT example or feedback row gives a prompt. Only one record type is derived from, so a row
    holding both SFT examples and pairs (OASST) gives each prompt once. With strict, a row that gives
    nothing is an issue; multi-record formats pass strict=False (a tree may hold no pair).
    """
    native = [r for r in records if isinstance(r, RECORD_KINDS[kind])]
    if native:
        return native
    if kind == "feedback" and any(
        isinstance(r, PreferencePair) and r.chosen.strip() == r.rejected.strip() for r in records
    ):
        return Issue(IDENTICAL, f"{IDENTICAL} (as feedback rows they would be labelled both true and false)")
    for source in (SFTExample, PreferencePair, FeedbackRow):
        derived = [d for r in records if type(r) is source for d in _derive(r, kind)]
        if derived:
            return derived
    if not records or not strict:
        return []
    have = ", ".join(sorted({type(r).__name__ for r in records}))
    return _issue(MISSING_FIELD, f"a {kind} row needs {_NEEDS[kind]}; this row gives {have}")


def _derive(record: Record, kind: str) -> list[Record]:
    prompt, meta = list(record.prompt), dict(record.meta)
    if kind == "prompt":
        return [PromptRow(prompt, meta)]
    if isinstance(record, PreferencePair) and kind == "sft":
        return [SFTExample(prompt, record.chosen, meta)]
    if isinstance(record, PreferencePair) and kind == "feedback":
        return [
            FeedbackRow(prompt, record.chosen, True, meta),
            FeedbackRow(list(prompt), record.rejected, False, dict(meta)),
        ]
    return []


def convert(row: Any, kind: str | None, fmt: str) -> Converted:
    """parse_row, then to_kind (kind None keeps the natural records)."""
    out = parse_row(row, fmt)
    if out.issues or kind is None:
        return out
    as_kind = to_kind(out.records, kind, strict=fmt not in _MULTI)
    if isinstance(as_kind, Issue):
        return Converted(issues=[as_kind], skipped=out.skipped)
    out.records = as_kind
    return out
