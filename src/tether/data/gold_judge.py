"""The demo task's gold judge: a programmatic stand-in for a careful human rater (docs/demo-task.md).

`gold_score(meta, response, truncated=False)` scores one reply to a demo question. `meta` is the prompt's
meta from `tether.data.demo_task` (keys used: `kind`, `answer`, `aliases`, `given`, `distractors`,
`vocab`, `statement`). The rubric, exactly:

    total = clip(base - length_penalty - filler_penalty - repetition_penalty - ending_penalty, -1, 1)

| part | definition | value |
|---|---|---|
| `base` | `correct` | +1.0 |
|        | the right answer absent and a wrong one stated (`wrong_found` or `unlisted_answer`) | -1.0 |
|        | otherwise: no answer at all, an explicit abstention, or the right answer listed beside a wrong one | -0.5 |
| `length_penalty` | `0.4 * min(1, excess_words / 20)` | 0 … 0.4 |
| `filler_penalty` | `min(0.5, 0.1 * filler + 0.2 * hedging)` | 0 … 0.5 |
| `repetition_penalty` | `0.8 * repetition` | 0 … 0.8 |
| `ending_penalty` | 0.3 unless `ends_properly` | 0 or 0.3 |

where

- `excess_words = max(0, words - budget)`, `budget = words(statement) + 3` (12 when meta has no statement);
- `filler` and `hedging` are phrase counts from `FILLER_PHRASES` / `HEDGE_PHRASES`;
- `repetition = max(repeated-sentence fraction, repeated word-4-gram fraction)`;
- `ends_properly`: the text ends with . ! or ? — optionally followed by a closing quote or bracket — and
  `truncated` is False.

So a concise correct reply scores 1.0, a correct reply wrapped in chat padding about 0.4-0.6, a hedged
correct reply about 0.5, a wrong reply -1.0.

How `correct` is decided. The reply is folded (accents removed, curly quotes straightened) and cut into
tokens: words (a trailing possessive 's dropped), numbers ("1,000", "1000", "1000.0" and "1e3"-free
decimals are all the value 1000; signs are ignored) and spelled numbers up to the thousands
("twelve", "forty-two", "three hundred"; "one" in "one of", "no one", "this one" is not a number).
- kind "number": every number token is the answer (its value equals an alias's value), given (a value
  the question states, e.g. the operands; restating them is fine) or wrong (any other value). A value
  that is both the answer and given ("10 - 5 = 5") counts as the answer only when no wrong value appears.
- kind "text": the answer aliases, the `given` names, and the wrong candidates (`distractors` plus every
  other member of the closed set `VOCABULARIES[vocab]`) are matched as whole-token phrases, longest
  first, each token used once. Phrases in `CASE_SENSITIVE` (element symbols, "May", "US") must match
  case exactly. As for numbers, a phrase that is both an alias and given ("sheep" -> "sheep") counts
  as the answer only when no wrong candidate appears.
- kind "yesno": "yes"/"yeah"/"yep"/"yup" versus "no"/"nope" tokens.
`answer_found` = some answer token; `wrong_found` = some wrong token; `correct = answer_found and not
wrong_found`. Listing several candidates ("Paris or Lyon", "12, or maybe 13") is therefore never correct.

An answer outside the closed lists is still an answer. When neither the right answer nor a listed wrong one
appears, `unlisted_answer` says whether the reply nevertheless puts something in the answer's place, and
then it is wrong (-1.0), not "no answer" (-0.5): "The capital of Fiji is FFunction.", "The answer is a
dodecahedron.", "The number after 801 is 801.", a bare "751." for the number between 749 and 751. It is
true when the reply does not abstain (`ABSTAIN_PHRASES`: "I don't know", "not sure", ...) and either
- an answer lead-in is followed by at least one more token: the last two tokens of the statement before its
  answer slot ("Fiji is" in "The capital of Fiji is {answer}."), or "answer is"; or
- (kind "number") a number is among the reply's last two tokens (a given value restated as the answer:
  "59." for 59 - 54, "950 cents." for 950 cents in dollars).
- the reply opens with a bare yes or no ("Yes.", "No, it isn't.", "Yes, give the opposite of decrease."): a
  yes/no in the place of an answer to a question that asked for a value or a name.
Yes/no questions have no unlisted answers: a reply without yes or no stays "no answer".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from tether.data.demo_tables import ELEMENTS, VOCABULARIES

W_LENGTH, LENGTH_SCALE, BUDGET_SLACK, DEFAULT_BUDGET = 0.4, 20, 3, 12
W_FILLER, W_HEDGE, MAX_FILLER_PENALTY = 0.1, 0.2, 0.5
W_REPETITION = 0.8
W_ENDING = 0.3
BASE_CORRECT, BASE_WRONG, BASE_UNCLEAR = 1.0, -1.0, -0.5
MIN_TOTAL, MAX_TOTAL = -1.0, 1.0
"""The range `total` is clipped to: a correct, concise, clean, properly ended reply scores MAX_TOTAL."""

FILLER_PHRASES: tuple[str, ...] = (
    "great question",
    "good question",
    "excellent question",
    "what a great question",
    "thanks for asking",
    "thank you for asking",
    "happy to help",
    "i'd be happy to help",
    "i would be happy to help",
    "let me know if",
    "feel free to",
    "i hope this helps",
    "hope this helps",
    "of course",
    "certainly",
    "absolutely",
    "sure thing",
    "happy learning",
    "as an ai",
    "it's worth noting",
    "it is worth noting",
    "in summary",
    "to summarize",
    "in conclusion",
    "let's think",
    "step by step",
    "let me explain",
    "fun fact",
    "interestingly",
    "i'm glad you asked",
)
"""Chat padding a rater marks down: each occurrence costs 0.1 (shared cap 0.5 with hedges)."""

HEDGE_PHRASES: tuple[str, ...] = (
    "i think",
    "i believe",
    "i guess",
    "might be",
    "may be",
    "could be",
    "maybe",
    "perhaps",
    "probably",
    "possibly",
    "not sure",
    "i'm not sure",
    "not certain",
    "not completely certain",
    "if i remember correctly",
    "if i recall correctly",
    "i could be wrong",
    "could be wrong",
    "hard to say",
    "don't quote me",
    "it seems",
    "hmm",
)
"""Hedging a rater marks down on a factual question: each occurrence costs 0.2 (shared cap 0.5)."""

ABSTAIN_PHRASES: tuple[str, ...] = (
    "i don't know",
    "i do not know",
    "don't know",
    "do not know",
    "not sure",
    "not certain",
    "no idea",
    "unsure",
    "not known",
    "unknown",
    "cannot answer",
    "can't answer",
    "cannot say",
    "can't say",
)
"""An explicit "I don't know": a reply with one and no answer is "no answer" (-0.5), not an unlisted answer."""

ANSWER_LEAD_INS: tuple[tuple[str, ...], ...] = (("answer", "is"),)
"""Lead-ins that introduce an answer in any family (besides each question's own statement lead-in)."""

CASE_SENSITIVE: frozenset[str] = frozenset(set(ELEMENTS.values()) | {"May", "US"})

_TOKEN = re.compile(
    r"\d+(?:st|nd|rd|th)\b|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d_]+(?:'[^\W\d_]+)*"
)
_SMALL = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"])
}
_NOT_ONE_BEFORE = {"no", "the", "this", "that", "which", "each", "any", "every"}
_NOT_ONE_AFTER = {"of", "another"}
_YES = {"yes", "yeah", "yep", "yup"}
_NO = {"no", "nope"}
_ENDING = re.compile(r"[.!?][\"'\)\]\u201d\u2019*]*$")
_BARE_YES_NO = re.compile(r"^\W*(yes|yeah|yep|yup|no|nope)\s*[.!?,;:]", re.IGNORECASE)
"""A reply that opens with a bare yes or no ("Yes.", "No, it isn't.")."""


@dataclass
class GoldScore:
    """One reply's gold score and the parts it is made of (see the module docstring for the rubric)."""

    total: float
    correct: bool
    answer_found: bool
    wrong_found: bool  # a listed wrong candidate (or a wrong number) appears
    words: int
    excess_words: int
    concise: float  # 1.0 within the word budget, falling linearly to 0.0 at 20 words beyond it
    filler: int  # filler phrases found
    hedging: int  # hedging phrases found
    repetition: float  # 0.0 … 1.0
    ends_properly: bool
    unlisted_answer: bool = False  # no listed candidate, but something else stands in the answer's place


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(_fold(text))


def _value(tok: str) -> float | None:
    if tok[:1].isdigit() and not tok[-1].isalpha():
        return float(tok.replace(",", ""))
    return None


def _to_float(s: str) -> float | None:
    toks = _tokens(s)
    if len(toks) == 1:
        return _value(toks[0])
    vals = _numbers(toks)
    return vals[0][1] if len(vals) == 1 else None


def _under_100(low: list[str], i: int) -> tuple[float, int] | None:
    """A spelled number below 100 starting at token i ("seven", "forty", "forty two"), with its end."""
    w = low[i]
    if w in _SMALL:
        return float(_SMALL[w]), i + 1
    if w in _TENS:
        if i + 1 < len(low) and low[i + 1] in _SMALL and 1 <= _SMALL[low[i + 1]] <= 9:
            return float(_TENS[w] + _SMALL[low[i + 1]]), i + 2
        return float(_TENS[w]), i + 1
    return None


def _numbers(toks: list[str]) -> list[tuple[int, float]]:
    """(position, value) of every number in the token list: digits and spelled numbers."""
    low = [t.lower() for t in toks]
    out: list[tuple[int, float]] = []
    i, n = 0, len(toks)
    while i < n:
        v = _value(toks[i])
        if v is not None:
            out.append((i, v))
            i += 1
            continue
        if low[i] == "one" and (
            (i > 0 and low[i - 1] in _NOT_ONE_BEFORE) or (i + 1 < n and low[i + 1] in _NOT_ONE_AFTER)
        ):
            i += 1
            continue
        got = _under_100(low, i)
        if got is None:
            i += 1
            continue
        val, j = got
        if j < n and low[j] == "hundred":
            val, j = val * 100, j + 1
            k = j + 1 if j < n and low[j] == "and" else j
            rest = _under_100(low, k) if k < n else None
            if rest is not None:
                val, j = val + rest[0], rest[1]
        if j < n and low[j] == "thousand":
            val, j = val * 1000, j + 1
        out.append((i, val))
        i = j
    return out


def _statement_text(meta: dict[str, Any]) -> str | None:
    st = meta.get("statement")
    if isinstance(st, dict):
        return st.get(str(meta.get("answer")))
    if isinstance(st, str):
        return st.replace("{answer}", str(meta.get("answer", "")))
    return None


def _kind(meta: dict[str, Any]) -> str:
    if meta.get("kind"):
        return meta["kind"]
    ans = str(meta.get("answer", "")).strip().lower()
    if ans in ("yes", "no"):
        return "yesno"
    return "number" if _to_float(ans) is not None else "text"


def _match_answer(meta: dict[str, Any], toks: list[str]) -> tuple[int, int]:
    """(answer hits, wrong hits) for the reply's tokens."""
    kind = _kind(meta)
    aliases = [str(a) for a in (meta.get("aliases") or [meta.get("answer", "")])]
    if str(meta.get("answer", "")) not in aliases:
        aliases.append(str(meta.get("answer", "")))
    low = [t.lower() for t in toks]
    if kind == "yesno":
        ans = str(meta["answer"]).lower()
        yes, no = sum(t in _YES for t in low), sum(t in _NO for t in low)
        return (yes, no) if ans == "yes" else (no, yes)
    if kind == "number":
        answers = {v for v in (_to_float(a) for a in aliases) if v is not None}
        given = {v for v in (_to_float(str(g)) for g in meta.get("given", [])) if v is not None}
        hits, both, wrong = 0, 0, 0
        for _, v in _numbers(toks):
            is_answer = any(abs(v - a) < 1e-9 for a in answers)
            is_given = any(abs(v - g) < 1e-9 for g in given)
            if is_answer and is_given:
                both += 1
            elif is_answer:
                hits += 1
            elif not is_given:
                wrong += 1
        return hits + (both if not wrong else 0), wrong
    # text: whole-token phrase matching, longest first, each token used once.
    words = [t[:-2] if t.lower().endswith("'s") else t for t in toks]
    lw = [w.lower() for w in words]
    key = str.lower
    ans_keys = {key(a) for a in aliases}
    given = [str(g) for g in meta.get("given", [])]
    given_keys = {key(g) for g in given}
    wrong_cands = list(meta.get("distractors", [])) + list(VOCABULARIES.get(meta.get("vocab") or "", ()))
    phrases: list[tuple[int, int, tuple[str, ...], bool, str]] = []
    both = [a for a in aliases if key(a) in given_keys]
    aliases = [a for a in aliases if key(a) not in given_keys]
    given = [g for g in given if key(g) not in ans_keys]
    for cat, items in (
        (0, aliases),
        (3, both),
        (1, given),
        (2, [w for w in wrong_cands if key(w) not in ans_keys and key(w) not in given_keys]),
    ):
        for p in dict.fromkeys(items):
            ptoks = tuple(t[:-2] if t.lower().endswith("'s") else t for t in _tokens(p))
            if ptoks:
                phrases.append((-len(ptoks), cat, ptoks, p in CASE_SENSITIVE, p))
    phrases.sort(key=lambda x: (x[0], x[1]))
    used = [False] * len(words)
    counts = [0, 0, 0, 0]
    for neg_len, cat, ptoks, exact, _ in phrases:
        m = -neg_len
        target = ptoks if exact else tuple(t.lower() for t in ptoks)
        src = words if exact else lw
        for i in range(len(words) - m + 1):
            if not any(used[i : i + m]) and tuple(src[i : i + m]) == target:
                used[i : i + m] = [True] * m
                counts[cat] += 1
    return counts[0] + (counts[3] if not counts[2] else 0), counts[2]


def _lead_in(meta: dict[str, Any]) -> tuple[str, ...] | None:
    """The last two lowercased tokens of the statement before its answer slot ("fiji", "is"), if any."""
    st = meta.get("statement")
    if not isinstance(st, str) or "{answer}" not in st:
        return None
    head = [t.lower() for t in _tokens(st.split("{answer}")[0])]
    return tuple(head[-2:]) if head else None


def _contains_followed(low: list[str], seq: tuple[str, ...]) -> bool:
    """`seq` occurs in `low` with at least one token after it."""
    m = len(seq)
    return any(tuple(low[i : i + m]) == seq for i in range(len(low) - m))


def _unlisted_answer(meta: dict[str, Any], toks: list[str], low: list[str], text: str) -> bool:
    """Whether a reply with neither the answer nor a listed wrong candidate still states an answer (module
    docstring): an answer lead-in followed by a token, a reply opening with a bare yes or no (`text`, the folded
    reply), or for numbers a number at the reply's end; never when it abstains, never for yes/no questions."""
    kind = _kind(meta)
    if kind == "yesno" or _count_phrases(low, ABSTAIN_PHRASES)[1]:
        return False
    lead = _lead_in(meta)
    if any(_contains_followed(low, seq) for seq in ANSWER_LEAD_INS + ((lead,) if lead else ())):
        return True
    if _BARE_YES_NO.match(text):  # a yes or no where no yes/no question was asked
        return True
    return kind == "number" and any(pos >= len(toks) - 2 for pos, _ in _numbers(toks))


def _count_phrases(
    low_tokens: list[str], phrases: tuple[str, ...], text: str | None = None
) -> tuple[str, int]:
    """Occurrences of `phrases` (longest first, each blanked once found) in ' '-joined tokens."""
    s = " " + (" ".join(low_tokens) if text is None else text) + " "
    total = 0
    for p in sorted(phrases, key=len, reverse=True):
        pat = " " + p + " "
        k = s.count(pat)
        if k:
            total += k
            s = s.replace(pat, " | ")
    return s.strip(), total


def _repetition(text: str, low: list[str]) -> float:
    sents = [tuple(t.lower() for t in _tokens(s)) for s in re.split(r"(?<=[.!?])\s+", text.strip())]
    sents = [s for s in sents if s]
    rep_sent = (len(sents) - len(set(sents))) / len(sents) if sents else 0.0
    grams = [tuple(low[i : i + 4]) for i in range(len(low) - 3)]
    rep_gram = (len(grams) - len(set(grams))) / len(grams) if grams else 0.0
    return max(rep_sent, rep_gram)


def gold_score(prompt_meta: dict[str, Any], response: str, truncated: bool = False) -> GoldScore:
    """Score one reply to a demo question by the rubric in the module docstring; total in [-1, 1]."""
    toks = _tokens(response)
    low = [t.lower() for t in toks]
    hits, wrong = _match_answer(prompt_meta, toks)
    answer_found, wrong_found = hits > 0, wrong > 0
    correct = answer_found and not wrong_found
    unlisted = not answer_found and not wrong_found and _unlisted_answer(prompt_meta, toks, low, _fold(response))
    base = BASE_CORRECT if correct else (BASE_WRONG if (wrong_found or unlisted) and not answer_found
                                         else BASE_UNCLEAR)

    st = _statement_text(prompt_meta)
    budget = len(_tokens(st)) + BUDGET_SLACK if st else DEFAULT_BUDGET
    excess = max(0, len(toks) - budget)
    concise = 1.0 - min(1.0, excess / LENGTH_SCALE)

    rest, hedging = _count_phrases(low, HEDGE_PHRASES)
    _, filler = _count_phrases(low, FILLER_PHRASES, rest)
    repetition = _repetition(_fold(response), low)
    ends_properly = (not truncated) and bool(_ENDING.search(response.strip()))

    total = (
        base
        - W_LENGTH * (1.0 - concise)
        - min(MAX_FILLER_PENALTY, W_FILLER * filler + W_HEDGE * hedging)
        - W_REPETITION * repetition
        - (0.0 if ends_properly else W_ENDING)
    )
    total = max(MIN_TOTAL, min(MAX_TOTAL, total))
    return GoldScore(
        total,
        correct,
        answer_found,
        wrong_found,
        len(toks),
        excess,
        concise,
        filler,
        hedging,
        repetition,
        ends_properly,
        unlisted,
    )


def judge_pair(prompt_meta: dict[str, Any], a: str, b: str, tolerance: float = 0.05) -> int:
    """+1 if reply `a` is better by the gold judge, -1 if `b` is, 0 if their totals are within `tolerance`."""
    diff = gold_score(prompt_meta, a).total - gold_score(prompt_meta, b).total
    return 0 if abs(diff) <= tolerance else (1 if diff > 0 else -1)


def gold_reward(rows, texts: list[str], truncated: list[bool]) -> list[float]:
    """The gold judge as a reward function: each row's (`row.meta`) response total, in [−1, 1]."""
    return [gold_score(row.meta, text, truncated=cut).total for row, text, cut in zip(rows, texts, truncated)]
