"""Counterfactual minimal pairs for the demo task: a right reply against the same reply with its answer swapped.

A reward model can rank the demo task's on-policy pairs well by style alone (concise, no filler, ends properly):
most of them differ in style as much as in correctness. A minimal pair removes that shortcut — chosen is a reply
the gold judge finds right, rejected is the same text with the answer replaced by a wrong candidate of the same
question ("57 - 53 = 4." → "57 - 53 = 5.", "No, Skopje is not the capital of Venezuela." → "Yes, Skopje is the
capital of Venezuela.") — so only knowing (or reading from the notes) which answer is right ranks it.

Used two ways (docs/reward-model.md): as a held-out diagnostic (`tether data counterfactual` on the held-out pairs,
then `tether eval rm --pairs` on its output: the RM's fact-checking accuracy), and as extra training pairs.

How a reply is swapped (`swap_answer`):
- kind "yesno": the question's answer statement in the reply (case-insensitive, without its final period) is
  replaced by the opposite statement; failing that, every yes/no word is flipped ("No," → "Yes,").
- kinds "number" and "text": every whole-token occurrence of an answer alias (longest first; case-sensitive for
  numbers and for `CASE_SENSITIVE` phrases such as element symbols) is replaced by one wrong candidate drawn from
  the question's `distractors` (seeded). A number inside a longer number ("4" in "4.5" or "1,400") is left alone.
A pair is kept only when the gold judge finds the reply right, the swapped one not right, and ranks the reply
above it (`judge_pair` = +1): the labeller is still the gold judge, only the candidates are made, not sampled.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tether.data.gold_judge import CASE_SENSITIVE, gold_score, judge_pair
from tether.data.records import PreferencePair
from tether.errors import DataError

PAIR_KEYS = ("chosen_score", "rejected_score", "pair_type", "rejected_style", "labeller")
"""Meta keys that describe a pair rather than its prompt: not carried over to the counterfactual pair."""

_YES_NO = {"Yes": "No", "No": "Yes", "yes": "no", "no": "yes", "YES": "NO", "NO": "YES"}


@dataclass
class CounterfactualStats:
    replies: int = 0
    """Distinct replies read (per prompt id)."""
    right: int = 0
    """Of those, right by the gold judge."""
    pairs: int = 0
    no_swap: int = 0
    """Right replies with no answer to swap (no alias found, or no wrong candidate in the meta)."""
    not_worse: int = 0
    """Swapped replies the gold judge did not rank below the original (dropped)."""


def _alias_pattern(aliases: list[str], numeric: bool, ignore_case: bool = False) -> re.Pattern:
    alts = "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True))
    # not inside a word or a longer number: no letter/digit/underscore on either side, no "4" in "4.5" or "1,400"
    pattern = rf"(?<![\w.,])({alts})(?![\w]|[.,]\d)" if numeric else rf"(?<!\w)({alts})(?!\w)"
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


def swap_answer(meta: dict, reply: str, rng: random.Random) -> str | None:
    """`reply` with its answer replaced by a wrong one (module docstring), or None when there is none to swap."""
    kind = meta.get("kind")
    if kind == "yesno":
        statements = meta.get("statement") or {}
        answer = str(meta.get("answer", "")).lower()
        other = "no" if answer == "yes" else "yes"
        if isinstance(statements, dict) and answer in statements and other in statements:
            body = statements[answer].rstrip(".")
            i = reply.lower().find(body.lower())
            if body and i >= 0:
                return reply[:i] + statements[other].rstrip(".") + reply[i + len(body):]
        flipped = re.sub(r"\b(yes|no)\b", lambda m: _YES_NO.get(m.group(1), m.group(1)), reply, flags=re.IGNORECASE)
        return flipped if flipped != reply else None
    aliases = [str(a) for a in (meta.get("aliases") or [meta.get("answer", "")]) if str(a)]
    alias_keys = {a.lower() for a in aliases}
    wrong = [str(d) for d in meta.get("distractors", []) if str(d).lower() not in alias_keys]
    if not aliases or not wrong:
        return None
    numeric = kind == "number"
    exact = [a for a in aliases if numeric or a in CASE_SENSITIVE]
    loose = [a for a in aliases if a not in exact]
    choice = rng.choice(wrong)
    swapped, n = reply, 0
    for group, ignore_case in ((exact, False), (loose, True)):
        if group:
            swapped, k = _alias_pattern(group, numeric, ignore_case).subn(lambda _: choice, swapped)
            n += k
    return swapped if n else None


def counterfactual_pairs(pairs: list[PreferencePair], seed: int = 0) -> tuple[list[PreferencePair],
                                                                           CounterfactualStats]:
    """One minimal pair per distinct right reply (either side of `pairs`, per prompt id), in input order."""
    rng = random.Random(seed)
    stats, seen, out = CounterfactualStats(), set(), []
    for n, pair in enumerate(pairs, 1):
        meta = pair.meta or {}
        if "answer" not in meta or "kind" not in meta:
            raise DataError(f"pair {n}: counterfactual pairs need demo-task meta ('answer', 'kind'), as "
                            "`tether demo` and `tether data label --labeller gold` write")
        prompt_meta = {k: v for k, v in meta.items() if k not in PAIR_KEYS}
        for reply in (pair.chosen, pair.rejected):
            key = (meta.get("id", n), reply)
            if key in seen:
                continue
            seen.add(key)
            stats.replies += 1
            right = gold_score(prompt_meta, reply)
            if not right.correct:
                continue
            stats.right += 1
            swapped = swap_answer(prompt_meta, reply, rng)
            if swapped is None:
                stats.no_swap += 1
                continue
            wrong = gold_score(prompt_meta, swapped)
            if wrong.correct or judge_pair(prompt_meta, reply, swapped) != 1:  # the judge's own tie tolerance
                stats.not_worse += 1
                continue
            out.append(PreferencePair(pair.prompt, reply, swapped, meta=prompt_meta | {
                "pair_type": "counterfactual", "labeller": "gold", "chosen_score": right.total,
                "rejected_score": wrong.total}))
            stats.pairs += 1
    return out, stats
