"""Demo-task replies: the correct demonstrations (concise, padded, longer) and the dispreferred styles
`corrupt` writes, all from a question's meta.
"""

from __future__ import annotations

import random
from typing import Any

from tether.data.demo_questions import _cap
from tether.data.demo_tables import ASIDES, CLOSERS, OPENERS, VERBOSE_FLUFF, VOCABULARIES

REJECTED_STYLES: tuple[str, ...] = ("padded", "hedging", "wrong", "repetition", "verbose", "missing_end")
"""What `corrupt` can produce for any question; preference pairs also use "longer" (correct, no filler, just more
words) and, for questions that are not yes/no, "off_question" (`OFF_QUESTION_REPLIES`)."""
OFF_QUESTION_REPLIES: tuple[str, ...] = ("Yes.", "No.", "Yes!", "No, it isn't.", "Yes, it is.", "No, it's not.",
                                         "Yes, that's right.", "No, that's not right.")
"""A bare yes or no to a question that asked for a value or a name. PPO against the demo reward model found this
hole twice ("Yes!" in its last rollouts at beta 0.05; "No." for 104 of 150 held-out prompts on another label draw):
the templated pairs had never shown the reward model such a reply as the worse one."""


def statement(meta: dict[str, Any], value: str | None = None) -> str:
    """The one-sentence answer, with `value` (default: the correct answer) in it."""
    value = meta["answer"] if value is None else value
    st = meta["statement"]
    if isinstance(st, dict):
        return st[value]
    return _cap(st.format(answer=value))


def _wrong_value(meta: dict[str, Any], rng: random.Random) -> str:
    if meta["kind"] == "yesno":
        return "no" if meta["answer"] == "yes" else "yes"
    if meta["distractors"]:
        return rng.choice(meta["distractors"])
    vocab = [v for v in VOCABULARIES.get(meta.get("vocab") or "", ()) if v not in meta["aliases"]]
    return rng.choice(vocab)


def _short(meta: dict[str, Any], value: str) -> str:
    return f"{_cap(value) if meta['kind'] != 'number' else value}."


def concise_answer(meta: dict[str, Any], rng: random.Random) -> str:
    """A short, direct, correct reply ("Paris." / "The capital of France is Paris.")."""
    ans = meta["answer"]
    if meta["kind"] == "number":
        ans = rng.choice(meta["aliases"][:2] if len(meta["aliases"]) > 1 else [ans])
    forms = [_short(meta, ans), statement(meta, ans if meta["kind"] != "yesno" else None)]
    if meta["kind"] == "yesno":
        forms.append("Yes, it is." if ans == "yes" else "No, it isn't.")
    else:
        forms.append(f"The answer is {ans}.")
    return rng.choices(forms, weights=[3, 5, 2])[0]


def padded_answer(meta: dict[str, Any], rng: random.Random) -> str:
    """A correct reply wrapped in chatty padding: opener, the answer, extra sentences, a closing line."""
    parts = []
    has_opener = rng.random() < 0.75
    if has_opener:
        parts.append(rng.choice(OPENERS))
    parts.append(statement(meta))
    parts.append(meta["explain"])
    if rng.random() < 0.5:
        parts.append(rng.choice(ASIDES))
    if not has_opener or rng.random() < 0.7:
        parts.append(rng.choice(CLOSERS))
    return " ".join(parts)


def longer_answer(meta: dict[str, Any], rng: random.Random) -> str:
    """Correct, no filler phrases, but more words than the question needs."""
    return " ".join([statement(meta), meta["explain"], rng.choice(ASIDES)])


def corrupt(prompt_meta: dict[str, Any], style: str, rng: random.Random) -> str:
    """A dispreferred reply in one of `REJECTED_STYLES` (or "longer", or "off_question") for the question in
    `prompt_meta`."""
    meta = prompt_meta
    ans = meta["answer"]
    if style == "padded":
        return padded_answer(meta, rng)
    if style == "longer":
        return longer_answer(meta, rng)
    if style == "wrong":
        w = _wrong_value(meta, rng)
        return rng.choice(
            [statement(meta, w), _short(meta, w), statement(meta, w) + " " + rng.choice(ASIDES)]
        )
    if style == "hedging":
        if meta["kind"] == "yesno":
            options = [
                f"I think the answer is probably {ans}, but I'm not sure.",
                f"Hmm, maybe {ans}? I'm not certain about this one.",
                f"If I remember correctly, {statement(meta)[0].lower() + statement(meta)[1:]} But I could be wrong.",
                "It could be yes or it could be no. I'm not sure.",
            ]
        else:
            w = _wrong_value(meta, rng)
            options = [
                f"I think it might be {ans}, but I'm not sure.",
                f"If I remember correctly, {statement(meta)[0].lower() + statement(meta)[1:]} But I could be wrong.",
                f"Perhaps {ans}? I'm not completely certain.",
                f"It could be {ans}, or maybe {w}. I'm not sure.",
                f"I believe it's probably {w}, but I'm not certain.",
            ]
        return rng.choice(options)
    if style == "repetition":
        base = rng.choice([statement(meta), f"The answer is {ans}.", _short(meta, ans)])
        return " ".join([base] * rng.randint(3, 5))
    if style == "verbose":
        fluff = rng.sample(VERBOSE_FLUFF, 3)
        st = statement(meta)
        return " ".join(
            [fluff[0], fluff[1], st, meta["explain"], fluff[2], "In summary, " + st[0].lower() + st[1:]]
        )
    if style == "off_question":
        if not _off_question_is_wrong(meta):
            raise ValueError(f"off_question needs a question whose answer is not a yes or no: {meta['id']}")
        return rng.choice(OFF_QUESTION_REPLIES)
    if style == "missing_end":
        text = rng.choice([padded_answer(meta, rng), corrupt(meta, "verbose", rng), longer_answer(meta, rng)])
        words = text.split(" ")
        cuts = [k for k in range(3, len(words)) if not words[k - 1].endswith((".", "!", "?"))]
        k = rng.choice(cuts)
        return " ".join(words[:k]).rstrip(",;:")
    raise ValueError(f"unknown rejected style {style!r}; expected one of "
                     f"{(*REJECTED_STYLES, 'longer', 'off_question')}")


def _off_question_is_wrong(meta: dict[str, Any]) -> bool:
    """A bare yes/no is a wrong reply to this question: it is not yes/no and "yes"/"no" is not an answer."""
    return meta["kind"] != "yesno" and not {a.lower() for a in meta["aliases"]} & {"yes", "no"}
