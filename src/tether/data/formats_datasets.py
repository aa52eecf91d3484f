"""Converters for named public datasets: GSM8K, Stack Exchange paired, Anthropic HH-RLHF (`split_hh`),
OpenAssistant message trees and FineGrainedRLHF (see docs/data-formats.md). `formats` dispatches to them.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from tether.data.format_rows import (
    MALFORMED_HH,
    MALFORMED_ROW,
    MISSING_FIELD,
    WRONG_TYPE,
    Converted,
    Issue,
    _converter,
    _issue,
    _RowError,
    _text,
)
from tether.data.records import Messages, PreferencePair, SFTExample, user_prompt

# ---------------------------------------------------------------------------------------------
# Single-record datasets: each returns a record or [issue]


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
