"""The pieces every row converter shares: the record and issue types, the problem kinds a
ValidationReport counts by, the `_converter` wrapper and the field accessors that raise `_RowError`.
The converters are in `formats` (generic formats, detection and dispatch) and `formats_datasets` (named
public datasets); both import from here.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tether.data.records import FeedbackRow, Messages, PreferencePair, PromptRow, SFTExample, user_prompt

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
