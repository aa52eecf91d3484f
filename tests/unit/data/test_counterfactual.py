"""Counterfactual minimal pairs (`tether data counterfactual`): the swaps by hand, the gold judge's filter, dedup."""

from __future__ import annotations

import random

import pytest

from tether.data.counterfactual import counterfactual_pairs, swap_answer
from tether.data.gold_judge import gold_score
from tether.data.records import PreferencePair
from tether.errors import DataError

ARITH = {"id": "arithmetic/57-53", "family": "arithmetic", "kind": "number", "answer": "4", "aliases": ["4"],
         "given": ["57", "53"], "distractors": ["5"], "vocab": None, "statement": "57 - 53 = {answer}."}
YESNO = {"id": "yes_no/skopje", "family": "yes_no", "kind": "yesno", "answer": "no", "aliases": ["no"], "given": [],
         "distractors": [], "vocab": None,
         "statement": {"yes": "Yes, Skopje is the capital of Venezuela.",
                       "no": "No, Skopje is not the capital of Venezuela."}}
ELEMENT = {"id": "elements/neon", "family": "elements", "kind": "text", "answer": "Ne", "aliases": ["Ne"],
           "given": ["neon"], "distractors": ["Mg"], "vocab": "elements",
           "statement": "The chemical symbol for neon is {answer}."}
CAPITAL = {"id": "capitals/beirut", "family": "capitals", "kind": "text", "answer": "Lebanon", "aliases": ["Lebanon"],
           "given": ["Beirut"], "distractors": ["Japan"], "vocab": "countries",
           "statement": "Beirut is the capital of {answer}."}
PROMPT = [{"role": "user", "content": "a question"}]


def test_numbers_are_swapped_as_whole_numbers_only():
    rng = random.Random(0)
    assert swap_answer(ARITH, "57 - 53 = 4. Happy learning!", rng) == "57 - 53 = 5. Happy learning!"
    # "4" inside 4.5, 14 or 1,400 is another number: untouched, and here there is no 4 of its own to swap
    assert swap_answer(ARITH, "Not 4.5, not 14, not 1,400.", rng) is None
    assert swap_answer(ARITH, "It is 4, not 4.5.", rng) == "It is 5, not 4.5."


def test_yes_no_swaps_the_statement_or_flips_the_words():
    rng = random.Random(0)
    assert swap_answer(YESNO, "No, Skopje is not the capital of Venezuela. It is in Europe.", rng) == \
        "Yes, Skopje is the capital of Venezuela. It is in Europe."
    assert swap_answer(YESNO, "No. It is Caracas.", rng) == "Yes. It is Caracas."
    assert swap_answer(YESNO, "It is Caracas.", rng) is None


def test_text_answers_keep_case_rules():
    rng = random.Random(0)
    # element symbols match case-sensitively and as whole tokens: "Ne" is the symbol, the "Ne" of "Neon" is not
    assert swap_answer(ELEMENT, "The symbol for neon is Ne.", rng) == "The symbol for neon is Mg."
    assert swap_answer(ELEMENT, "Neon is a gas.", rng) is None
    assert swap_answer(ELEMENT, "The symbol is ne.", rng) is None  # lower-case "ne" is not the symbol either
    # other names are matched in any case, as the gold judge matches them
    assert swap_answer(CAPITAL, "beirut is the capital of lebanon.", rng) == "beirut is the capital of Japan."
    assert swap_answer({**CAPITAL, "distractors": ["Lebanon"]}, "Lebanon.", rng) is None  # no wrong candidate


def test_one_pair_per_distinct_right_reply_ranked_by_the_gold_judge():
    pairs = [PreferencePair(PROMPT, "57 - 53 = 4.", "57 - 53 = 5. Great question!", meta=ARITH | {
                 "pair_type": "quality", "chosen_score": 1.0, "rejected_score": -1.0}),
             PreferencePair(PROMPT, "57 - 53 = 4.", "Sure! 57 - 53 = 4. Happy to help!", meta=ARITH),  # repeat
             PreferencePair(PROMPT, "No, Skopje is not the capital of Venezuela.", "Maybe.", meta=YESNO)]
    made, stats = counterfactual_pairs(pairs, seed=0)
    assert (stats.replies, stats.right, stats.pairs, stats.no_swap, stats.not_worse) == (5, 3, 3, 0, 0)
    assert [(p.chosen, p.rejected) for p in made] == [
        ("57 - 53 = 4.", "57 - 53 = 5."),
        ("Sure! 57 - 53 = 4. Happy to help!", "Sure! 57 - 53 = 5. Happy to help!"),
        ("No, Skopje is not the capital of Venezuela.", "Yes, Skopje is the capital of Venezuela.")]
    for p in made:
        meta = p.meta
        assert meta["pair_type"] == "counterfactual" and meta["labeller"] == "gold" and "rejected_style" not in meta
        assert gold_score(meta, p.chosen).correct and not gold_score(meta, p.rejected).correct
        assert meta["chosen_score"] > meta["rejected_score"]


def test_a_swap_the_judge_does_not_rank_lower_is_dropped():
    # right, but so padded, repetitive and unfinished that the judge scores it within 0.05 of the -1 floor: the
    # swapped (wrong) reply is a tie, not a worse reply, so no pair is written
    reply = "Great question! Good question! Excellent question! Thanks for asking! Happy to help! " + \
        "It is 4. " * 200 + "and"
    assert gold_score(ARITH, reply).correct and gold_score(ARITH, reply).total < -0.95
    made, stats = counterfactual_pairs([PreferencePair(PROMPT, reply, "No idea.", meta=ARITH)])
    assert made == [] and (stats.right, stats.not_worse) == (1, 1)


def test_pairs_without_demo_meta_are_refused_naming_the_pair():
    with pytest.raises(DataError, match="pair 2: counterfactual pairs need demo-task meta"):
        counterfactual_pairs([PreferencePair(PROMPT, "a.", "b.", meta=ARITH), PreferencePair(PROMPT, "a.", "b.")])
