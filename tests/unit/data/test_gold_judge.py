"""The gold judge: each rubric rule on hand-written replies (totals worked out by hand), number formats,
multi-answer replies, and agreement with the demo task's constructed preferences."""

from __future__ import annotations

import pytest

from tether.data.demo_task import make_demo_task
from tether.data.gold_judge import FILLER_PHRASES, HEDGE_PHRASES, gold_score, judge_pair

CAPITAL = {
    "kind": "text",
    "answer": "Paris",
    "aliases": ["Paris"],
    "given": ["France"],
    "distractors": ["Lyon"],
    "vocab": "capitals",
    "statement": "The capital of France is {answer}.",
}  # budget 6 + 3 = 9 words
ADD = {
    "kind": "number",
    "answer": "12",
    "aliases": ["12"],
    "given": ["7", "5"],
    "distractors": ["13"],
    "vocab": None,
    "statement": "7 + 5 = {answer}.",
}  # budget 3 + 3 = 6 words
KM = {
    "kind": "number",
    "answer": "3000",
    "aliases": ["3000", "3,000"],
    "given": ["3", "1", "1000"],
    "distractors": ["300"],
    "vocab": None,
    "statement": "3 kilometers is {answer} meters.",
}
SUB = {
    "kind": "number",
    "answer": "5",
    "aliases": ["5"],
    "given": ["10", "5"],
    "distractors": ["4"],
    "vocab": None,
    "statement": "10 - 5 = {answer}.",
}
PRIME = {
    "kind": "yesno",
    "answer": "yes",
    "aliases": ["yes"],
    "given": [],
    "distractors": [],
    "vocab": None,
    "statement": {"yes": "Yes, 17 is a prime number.", "no": "No, 17 is not a prime number."},
}
IRON = {
    "kind": "text",
    "answer": "Fe",
    "aliases": ["Fe"],
    "given": ["iron"],
    "distractors": ["Cu"],
    "vocab": "elements",
    "statement": "The chemical symbol for iron is {answer}.",
}
SHEEP = {
    "kind": "text",
    "answer": "sheep",
    "aliases": ["sheep"],
    "given": ["sheep"],
    "distractors": ["sheeps"],
    "vocab": None,
    "statement": "The plural of sheep is {answer}.",
}
AFTER_APRIL = {
    "kind": "text",
    "answer": "May",
    "aliases": ["May"],
    "given": ["April"],
    "distractors": ["June"],
    "vocab": "calendar",
    "statement": "The month after April is {answer}.",
}
LEGS = {
    "kind": "number",
    "answer": "8",
    "aliases": ["8"],
    "given": [],
    "distractors": ["6"],
    "vocab": None,
    "statement": "A spider has {answer} legs.",
}  # budget 5 + 3 = 8 words


def test_concise_correct_scores_one():
    for reply in ("Paris.", "The capital of France is Paris.", "France's capital is Paris."):
        g = gold_score(CAPITAL, reply)
        assert (g.total, g.correct, g.concise, g.filler, g.hedging, g.repetition, g.ends_properly) == (
            1.0,
            True,
            1.0,
            0,
            0,
            0.0,
            True,
        )


def test_padded_correct_loses_length_and_filler():
    reply = (
        "Great question! The capital of France is Paris, which is also its largest city. "
        "Let me know if you have other questions!"
    )
    g = gold_score(CAPITAL, reply)
    # 22 words, budget 9 -> 13 excess -> 0.4 * 13/20 = 0.26; filler: "great question", "let me know if" -> 0.2
    assert (g.correct, g.words, g.excess_words, g.filler, g.hedging) == (True, 22, 13, 2, 0)
    assert g.concise == pytest.approx(1 - 13 / 20)
    assert g.total == pytest.approx(1.0 - 0.26 - 0.2)


def test_hedging_is_penalised_and_capped():
    g = gold_score(CAPITAL, "I think it might be Paris, but I'm not sure.")
    # 10 words -> 1 excess -> 0.02; hedges "i think", "might be", "i'm not sure" -> 3 * 0.2 = 0.6, capped at 0.5
    assert (g.correct, g.hedging, g.filler, g.excess_words) == (True, 3, 0, 1)
    assert g.total == pytest.approx(1.0 - 0.02 - 0.5)


def test_wrong_answer_is_negative_and_clipped():
    g = gold_score(CAPITAL, "The capital of France is Lyon.")
    assert (g.correct, g.answer_found, g.wrong_found, g.total) == (False, False, True, -1.0)
    g = gold_score(CAPITAL, "Great question! The capital of France is Madrid. I hope this helps!")
    assert g.total == -1.0  # -1 - 0.2 filler -> clipped to -1
    assert gold_score(ADD, "7 + 5 = 13.").total == -1.0


def test_listing_several_candidates_is_not_correct():
    for reply in (
        "Paris or Madrid.",
        "The capital of France is Paris, not Lyon.",
        "It could be Paris or Rome.",
    ):
        g = gold_score(CAPITAL, reply)
        assert (g.correct, g.answer_found, g.wrong_found) == (False, True, True), reply
    assert gold_score(CAPITAL, "Paris or Madrid.").total == pytest.approx(-0.5)
    g = gold_score(ADD, "12, or maybe 13.")
    assert (g.correct, g.hedging) == (False, 1)
    assert g.total == pytest.approx(-0.5 - 0.2)
    assert not gold_score(KM, "3000 or 300.").correct


def test_number_formats():
    for reply in ("3000.", "3,000.", "3000.0 meters.", "It is three thousand.", "3 km is 3,000 m."):
        g = gold_score(KM, reply)
        assert g.correct and g.total == 1.0, reply
    assert gold_score(KM, "There are 1,000 meters in a kilometer, so 3 km is 3000 m.").correct  # given values
    assert not gold_score(KM, "It is 2,999.").correct
    assert gold_score(ADD, "Twelve.").correct and gold_score(ADD, "7 plus five is twelve.").correct
    assert not gold_score(ADD, "Thirteen.").correct
    # "one" in "one of" is not a number: 10 words, budget 8 -> 2 excess -> 0.4 * 2/20 = 0.04
    g = gold_score(LEGS, "Spiders are one of the few animals with eight legs.")
    assert g.correct and g.total == pytest.approx(0.96)
    assert not gold_score(LEGS, "A spider has six legs.").correct


def test_answer_that_is_also_given_counts_only_without_a_wrong_value():
    assert gold_score(SUB, "10 - 5 = 5.").correct
    g = gold_score(SUB, "10 - 5 = 4.")
    assert (g.answer_found, g.wrong_found, g.total) == (False, True, -1.0)
    assert gold_score(SHEEP, "The plural of sheep is sheep.").correct
    assert gold_score(SHEEP, "The plural of sheep is sheeps.").total == -1.0


def test_unlisted_wrong_answer_is_wrong_not_missing():
    """An answer outside the closed lists still counts as wrong once it stands in the answer's place."""
    for reply in (
        "The capital of France is Marseille-sur-Mer.",  # lead-in "france is" + a token
        "The answer is Berlinopolis.",  # "answer is" + a token
        "The capital of France is France.",  # the given name restated as the answer
    ):
        g = gold_score(CAPITAL, reply)
        assert (g.answer_found, g.wrong_found, g.unlisted_answer, g.total) == (False, False, True, -1.0), reply
    # 59 - 54: a given value restated as the answer, bare or after the lead-in
    minus = {**SUB, "answer": "5", "aliases": ["5"], "given": ["59", "54"], "statement": "59 - 54 = {answer}."}
    for reply in ("59.", "The answer is 54.", "It is 54."):
        g = gold_score(minus, reply)
        assert (g.unlisted_answer, g.total) == (True, -1.0), reply
    assert gold_score(IRON, "The chemical symbol for iron is iron.").total == -1.0
    # a bare yes or no where a value or a name was asked for (PPO at beta 0.05 collapsed to "Yes!")
    for meta, reply in ((CAPITAL, "Yes."), (CAPITAL, "No, it isn't."), (ADD, "Yes!"),
                        (ADD, "No, it's not that simple."), (IRON, "Yes, give the symbol for iron.")):
        g = gold_score(meta, reply)
        assert (g.unlisted_answer, g.total) == (True, -1.0), reply
    # ... but not a yes/no that goes on to the answer, nor a word that merely starts with "no"
    assert gold_score(CAPITAL, "Yes, of course. The capital of France is Paris.").correct
    assert gold_score(CAPITAL, "No worries.").total == -0.5
    assert gold_score(CAPITAL, "Nobody knows.").total == -0.5


def test_no_answer_stays_half_wrong():
    # nothing in the answer's place: a truncated lead-in, an abstention, chat with no value, an empty reply
    assert gold_score(CAPITAL, "The capital of France is", truncated=True).total == pytest.approx(-0.8)
    g = gold_score(CAPITAL, "I don't know the capital of France.")
    assert (g.unlisted_answer, g.hedging, g.total) == (False, 0, -0.5)
    # "not sure" abstains (and hedges: -0.2), even after a lead-in
    g = gold_score(CAPITAL, "Not sure; France is hard.")
    assert (g.unlisted_answer, g.total) == (False, pytest.approx(-0.5 - 0.2))
    assert gold_score(CAPITAL, "Good question!").total == pytest.approx(-0.5 - 0.1)
    # numbers: a given value not at the reply's end is context, not an answer
    g = gold_score(ADD, "Adding 7 and 5 is easy.")
    assert (g.unlisted_answer, g.total) == (False, -0.5)
    # yes/no questions have no unlisted answers
    assert gold_score(PRIME, "17 is a prime number.").total == -0.5


def test_yes_no():
    assert gold_score(PRIME, "Yes.").total == 1.0
    assert gold_score(PRIME, "Yes, 17 is a prime number.").total == 1.0
    assert gold_score(PRIME, "No, 17 is not a prime number.").total == -1.0
    g = gold_score(PRIME, "Yes or no, hard to say.")
    assert (g.correct, g.hedging) == (False, 1)
    assert g.total == pytest.approx(-0.5 - 0.2)


def test_case_sensitive_terms():
    assert gold_score(IRON, "Fe.").correct
    assert not gold_score(IRON, "Fe or Cu.").correct
    assert not gold_score(IRON, "fe.").answer_found  # chemical symbols must be written as symbols
    assert gold_score(AFTER_APRIL, "May.").correct
    assert not gold_score(AFTER_APRIL, "May or June.").correct
    assert gold_score(AFTER_APRIL, "It is May, as you may know.").correct  # the verb "may" is no month


def test_repetition():
    g = gold_score(CAPITAL, "Paris. Paris. Paris.")
    # 3 sentences, 1 distinct -> 2/3 repeated; penalty 0.8 * 2/3
    assert g.repetition == pytest.approx(2 / 3) and g.total == pytest.approx(1 - 0.8 * 2 / 3)
    g = gold_score(CAPITAL, "The capital of France is Paris. The capital of France is Paris.")
    # 12 words, budget 9 -> 3 excess -> 0.06; sentences 1/2 repeated; 4-grams: 9, distinct 6 -> 3/9 -> max = 0.5
    assert g.repetition == pytest.approx(0.5) and g.total == pytest.approx(1 - 0.06 - 0.4)


def test_ending_and_truncation():
    g = gold_score(CAPITAL, "Paris.", truncated=True)
    assert (g.ends_properly, g.total) == (False, pytest.approx(0.7))
    assert gold_score(CAPITAL, 'It is "Paris."').ends_properly
    g = gold_score(CAPITAL, "The capital of France is")
    # no answer -> -0.5, no ending -> -0.3
    assert (g.correct, g.ends_properly, g.total) == (False, False, pytest.approx(-0.8))
    assert gold_score(CAPITAL, "").total == pytest.approx(-0.8)


def test_every_listed_phrase_is_detected():
    for p in FILLER_PHRASES:
        assert gold_score(CAPITAL, f"Paris, {p}.").filler >= 1, p
    for p in HEDGE_PHRASES:
        assert gold_score(CAPITAL, f"Paris, {p}.").hedging >= 1, p


def test_judge_pair():
    assert judge_pair(CAPITAL, "Paris.", "Great question! Paris. I hope this helps!") == 1
    assert judge_pair(CAPITAL, "Lyon.", "Paris.") == -1
    assert judge_pair(CAPITAL, "Paris.", "The capital of France is Paris.") == 0


@pytest.fixture(scope="module")
def task():
    return make_demo_task(seed=0)


def test_gold_judge_agrees_with_constructed_preferences(task):
    agree = sum(
        gold_score(p.meta, p.chosen).total > gold_score(p.meta, p.rejected).total for p in task.preference
    )
    assert agree / len(task.preference) >= 0.99
    assert all(gold_score(p.meta, p.chosen).correct for p in task.preference)


def test_sft_completions_are_correct_and_concise_beats_padded(task):
    scores = {"concise": [], "padded": []}
    for ex in task.sft:
        g = gold_score(ex.meta, ex.completion)
        assert g.correct, (ex.prompt, ex.completion)
        scores[ex.meta["style"]].append(g.total)
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    assert mean["concise"] - mean["padded"] >= 0.3
