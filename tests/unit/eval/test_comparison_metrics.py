"""The evaluation-suite metrics against hand-made examples: outcomes with ties, win rate from them,
n-gram Jaccard, self-similarity, distinct-n on repeated samples (the KL health rule: tests/unit/rl)."""

from __future__ import annotations

import pytest

from tether.eval.metrics import (
    distinct_n,
    ngram_jaccard,
    outcomes_from_scores,
    self_similarity,
    win_rate,
)


def test_outcomes_with_ties_within_tolerance_and_their_win_rate():
    a = [1.0, 0.5, 0.2, -1.0, 0.3]
    b = [0.0, 0.5, 0.25, 1.0, 0.3000001]
    assert outcomes_from_scores(a, b) == [1, 0, -1, -1, 0]  # 1e-7 apart is a tie at tolerance 1e-6
    assert outcomes_from_scores(a, b, tolerance=0.1) == [1, 0, 0, -1, 0]
    w = win_rate(outcomes_from_scores(a, b))
    assert w.rate == pytest.approx((1 + 0.5 * 2) / 5)  # 1 win, 2 ties (half each), 2 losses
    assert (w.wins, w.ties, w.losses) == (1, 2, 2) and w.lo < w.rate < w.hi
    with pytest.raises(ValueError, match="3 scores for A but 2"):
        outcomes_from_scores([1, 2, 3], [1, 2])


def test_ngram_jaccard_by_hand():
    # "the cat sat": {the, cat, sat, the cat, cat sat}; "the cat ran": {the, cat, ran, the cat, cat ran}
    # shared {the, cat, the cat} = 3; union 5 + 5 − 3 = 7
    assert ngram_jaccard("the cat sat", "the cat ran") == pytest.approx(3 / 7)
    assert ngram_jaccard("the cat sat", "the cat sat") == 1.0
    assert ngram_jaccard("a b", "c d") == 0.0
    assert ngram_jaccard("", "") == 1.0 and ngram_jaccard("", "word") == 0.0
    assert ngram_jaccard("the cat sat", "the cat ran", max_n=1) == pytest.approx(2 / 4)  # {the, cat} / 4 words
    assert ngram_jaccard("Paris.", "paris") == 0.0  # case and punctuation are kept, as in distinct-n


def test_self_similarity_by_hand():
    # group 1: three identical samples → every pair 1.0; group 2: "x y" vs "x z" → {x} shared of {x, y, z, x y, x z}
    groups = [["Paris.", "Paris.", "Paris."], ["x y", "x z"]]
    assert self_similarity(groups) == pytest.approx((1.0 + 1 / 5) / 2)
    # pairs within a group: (a,b)=3/7, (a,c)=1, (b,c)=3/7 → mean 13/21
    assert self_similarity([["the cat sat", "the cat ran", "the cat sat"]]) == pytest.approx((3 / 7 + 1 + 3 / 7) / 3)
    assert self_similarity([["only one"], ["a", "b"]]) == 0.0  # groups under two texts are skipped
    with pytest.raises(ValueError, match="two or more"):
        self_similarity([["alone"], []])


def test_distinct_n_falls_when_samples_repeat():
    varied = ["the cat sat", "a dog ran", "birds fly high"]
    collapsed = ["the cat sat"] * 3
    assert distinct_n(varied, 2) == 1.0
    assert distinct_n(collapsed, 2) == pytest.approx(2 / 6)  # 2 unique bigrams of 6
    assert distinct_n(collapsed, 1) == pytest.approx(3 / 9)
