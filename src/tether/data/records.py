"""Typed records every stage consumes. A prompt is always a list of chat messages.

`Messages` is a list of {"role": "system"|"user"|"assistant", "content": str}; the last message of a
prompt is from the user (the model answers next). Completions/responses are plain assistant text,
without any end-of-turn token (tokenisation appends EOS).
`meta` carries what a judge or report needs (demo task: family, answer; source file and line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Messages = list[dict[str, str]]


def user_prompt(text: str, system: str | None = None) -> Messages:
    """A single-turn prompt as messages."""
    messages: Messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": text})
    return messages


def prompt_text(prompt: Messages) -> str:
    """The last user turn: a short human-readable key for a prompt."""
    return prompt[-1]["content"]


def interleave_by(rows: list, key: str = "family") -> list:
    """Rows reordered round-robin over the groups of `meta[key]` (groups in order of first appearance, rows
    in file order within a group), so that every prefix is balanced across groups.

    The demo task writes its held-out prompts grouped by family (30 each); "the first 100 prompts" of the
    file would be four families. Rows without the key form one group, so a file without it keeps its order.
    """
    groups: dict[Any, list] = {}
    for row in rows:
        groups.setdefault(row.meta.get(key), []).append(row)
    queues = list(groups.values())
    out = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


@dataclass
class SFTExample:
    """A demonstration: the prompt and the assistant reply to imitate."""

    prompt: Messages
    completion: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreferencePair:
    """One prompt with a preferred (chosen) and a dispreferred (rejected) reply."""

    prompt: Messages
    chosen: str
    rejected: str
    margin: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptRow:
    """A prompt with no reply: RL rollouts, evaluation, labelling."""

    prompt: Messages
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeedbackRow:
    """Unpaired binary feedback (KTO): is this reply desirable for this prompt?"""

    prompt: Messages
    completion: str
    label: bool
    meta: dict[str, Any] = field(default_factory=dict)


RECORD_KINDS: dict[str, type] = {
    "sft": SFTExample,
    "preference": PreferencePair,
    "prompt": PromptRow,
    "feedback": FeedbackRow,
}
