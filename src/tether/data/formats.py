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

This module holds the generic formats (trl, messages, text, tether), detection, dispatch and kinds; the
named-dataset converters (gsm8k, stack_exchange, hh, oasst, finegrained) are in `formats_datasets`, the
shared types, problem kinds and field accessors in `format_rows`. All are importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The shared types, problem kinds and dataset converters are importable from here too
# (`tether.data.formats.Issue`, `tether.data.formats.split_hh`).
from tether.data.format_rows import (
    IDENTICAL,
    MALFORMED_CONVERSATION,
    MALFORMED_HH,  # noqa: F401
    MALFORMED_ROW,  # noqa: F401
    MISSING_FIELD,
    ROLES,  # noqa: F401
    UNKNOWN_FIELD,
    WRONG_TYPE,
    Converted,
    Issue,
    Record,
    _check_turn_order,
    _converter,
    _issue,
    _messages,
    _prompt,
    _reply,
    _RowError,
    json_type,
)
from tether.data.formats_datasets import (
    ASSISTANT,  # noqa: F401
    FINEGRAINED_PAIRS,  # noqa: F401
    from_finegrained,
    from_gsm8k,
    from_hh,
    from_oasst,
    from_stack_exchange,
    split_hh,  # noqa: F401
)
from tether.data.records import RECORD_KINDS, FeedbackRow, PreferencePair, PromptRow, SFTExample, user_prompt

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
