"""tether.eval.metrics against values worked out by hand (or published tables) in each test."""

from __future__ import annotations

import math

import pytest

from tether.eval.metrics import (
    ReliabilityBin,
    distinct_n,
    expected_calibration_error,
    mean_ci,
    pairwise_accuracy,
    pearson,
    repetition_rate,
    win_rate,
    win_rate_ceiling,
)

Z95 = 1.959963984540054  # standard-normal 97.5 % quantile


def test_mean_ci_by_hand():
    # mean 3; sample variance (4+1+0+1+4)/4 = 2.5; standard error sqrt(2.5/5)
    mean, lo, hi = mean_ci([1, 2, 3, 4, 5])
    half = Z95 * math.sqrt(2.5 / 5)
    assert mean == 3.0
    assert lo == pytest.approx(3 - half, abs=1e-12)
    assert hi == pytest.approx(3 + half, abs=1e-12)
    _, lo90, hi90 = mean_ci([1, 2, 3, 4, 5], confidence=0.9)
    assert hi90 - lo90 == pytest.approx(2 * 1.6448536269514722 * math.sqrt(0.5), abs=1e-12)


def test_mean_ci_edge_cases():
    mean, lo, hi = mean_ci([7.5])
    assert mean == 7.5 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=1.0)


def test_win_rate_matches_published_wilson_interval():
    result = win_rate([1] * 8 + [-1] * 2)  # 8 of 10: Wilson 95 % interval is (0.4902, 0.9433)
    assert result.rate == 0.8
    assert (result.wins, result.ties, result.losses) == (8, 0, 2)
    assert result.lo == pytest.approx(0.4902, abs=1e-4)
    assert result.hi == pytest.approx(0.9433, abs=1e-4)
    perfect = win_rate([1] * 10)  # 10 of 10: (0.7225, 1.0)
    assert perfect.rate == 1.0
    assert perfect.lo == pytest.approx(0.7225, abs=1e-4)
    assert perfect.hi == pytest.approx(1.0, abs=1e-12)


def test_win_rate_counts_ties_as_half():
    result = win_rate([1, 0, 0, -1])  # (1 + 2·0.5) / 4
    assert result.rate == 0.5
    assert (result.wins, result.ties, result.losses) == (1, 2, 1)
    n, z2 = 4, Z95**2
    half = Z95 * math.sqrt(0.25 / n + z2 / (4 * n * n)) / (1 + z2 / n)  # centre stays 0.5 at p = 0.5
    assert result.lo == pytest.approx(0.5 - half, abs=1e-12)
    assert result.hi == pytest.approx(0.5 + half, abs=1e-12)
    assert win_rate([0, 0, 0]).rate == 0.5


def test_win_rate_rejects_bad_outcomes():
    with pytest.raises(ValueError, match="empty"):
        win_rate([])
    with pytest.raises(ValueError, match=r"got 2"):
        win_rate([1, 2])


def test_win_rate_ceiling_by_hand():
    # baseline at the top score on 2 of 5 prompts: the best policy ties those and wins the rest -> (2·½ + 3) / 5
    assert win_rate_ceiling([1.0, 0.4, 1.0, -1.0, 0.999], best=1.0) == pytest.approx(0.8)
    assert win_rate_ceiling([1.0, 0.4, 1.0, -1.0, 0.999], best=1.0, tolerance=0.01) == pytest.approx(0.7)
    assert win_rate_ceiling([1.0] * 3, best=1.0) == 0.5  # a perfect baseline can only be tied
    # the ceiling is reached: a policy at the top everywhere scores exactly it against the same baseline
    baseline = [1.0, 0.4, 1.0, -1.0]
    outcomes = [0 if b == 1.0 else 1 for b in baseline]
    assert win_rate(outcomes).rate == win_rate_ceiling(baseline, best=1.0)
    with pytest.raises(ValueError, match="empty"):
        win_rate_ceiling([], best=1.0)


def test_distinct_n_by_hand():
    texts = ["a b a b", "a b c"]
    # bigrams: ab ba ab | ab bc -> 5 total, 3 unique
    assert distinct_n(texts, 2) == 3 / 5
    # unigrams: a b a b a b c -> 7 total, 3 unique
    assert distinct_n(texts, 1) == 3 / 7
    assert distinct_n(["one two"], 3) == 0.0
    with pytest.raises(ValueError):
        distinct_n(texts, 0)


def test_repetition_rate_by_hand():
    assert repetition_rate("a b c d a b c d") == pytest.approx(1 - 4 / 5, abs=1e-15)  # 5 four-grams, 4 unique
    assert repetition_rate("x x x x x x") == pytest.approx(2 / 3, abs=1e-15)  # 3 four-grams, all the same
    assert repetition_rate("the cat sat on the mat") == 0.0
    assert repetition_rate("too short") == 0.0


def test_pairwise_accuracy_by_hand():
    # wins, loss, tie, win -> (1 + 0 + 0.5 + 1) / 4
    assert pairwise_accuracy([3, 1, 2, 5], [1, 2, 2, 0]) == 0.625
    with pytest.raises(ValueError, match="3 chosen scores but 2"):
        pairwise_accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        pairwise_accuracy([], [])


def test_expected_calibration_error_by_hand():
    probs = [0.05, 0.15, 0.12, 0.95, 1.0, 0.55]
    labels = [0, 0, 1, 1, 1, 0]
    result = expected_calibration_error(probs, labels, n_bins=10)
    # bin 0: 0.05 vs 0 (gap 0.05, n 1); bin 1: mean 0.135 vs 0.5 (gap 0.365, n 2);
    # bin 5: 0.55 vs 0 (gap 0.55, n 1); bin 9: mean 0.975 vs 1 (gap 0.025, n 2; p = 1.0 lands here)
    assert result.ece == pytest.approx((0.05 + 2 * 0.365 + 0.55 + 2 * 0.025) / 6, abs=1e-12)
    assert len(result.bins) == 10
    assert [b.count for b in result.bins] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert result.bins[1].lo == 0.1 and result.bins[1].hi == 0.2
    assert result.bins[1].mean_prob == pytest.approx(0.135, abs=1e-12)
    assert result.bins[1].accuracy == 0.5
    assert result.bins[2] == ReliabilityBin(0.2, 0.3, 0, None, None)
    assert result.bins[9].mean_prob == pytest.approx(0.975, abs=1e-12)


def test_expected_calibration_error_is_zero_when_calibrated():
    # in the bin [0.7, 0.8): predictions of 0.75 that come true 3 times out of 4
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0]).ece == pytest.approx(0.0, abs=1e-15)


def test_expected_calibration_error_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        expected_calibration_error([0.5], [2])
    with pytest.raises(ValueError, match="2 probs but 1 labels"):
        expected_calibration_error([0.5, 0.5], [1])


def test_pearson_by_hand():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0, abs=1e-15)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0, abs=1e-15)
    # deviations x: -1.5 -.5 .5 1.5, y: -1.5 .5 -.5 1.5 -> sxy 4, sxx 5, syy 5
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-15)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="3 values but y has 2"):
        pearson([1, 2, 3], [1, 2])


# --- Gao et al. overoptimisation fits -------------------------------------------------------------------------

def test_fit_gao_bon_recovers_hand_solved_coefficients():
    # d = 1, 2, 3 and gains 1, 1, 0: normal equations s11 = 14, s12 = −36, s22 = 98, t1 = 3, t2 = −5,
    # det = 76, α = (3·98 − 5·36)/76 = 1.5, β = (−70 + 108)/76 = 0.5; the curve 1.5d − 0.5d² hits all three.
    from tether.eval.metrics import fit_gao, gao_curve

    fit = fit_gao([1, 2, 3], [1, 1, 0], "bon")
    assert fit.alpha == pytest.approx(1.5) and fit.beta == pytest.approx(0.5)
    assert fit.r2 == pytest.approx(1.0) and fit.n == 3
    assert gao_curve(fit, 2.0) == pytest.approx(1.0) and gao_curve(fit, 0.0) == 0.0


def test_fit_gao_rl_recovers_its_form_and_handles_d_zero():
    from tether.eval.metrics import fit_gao

    e = math.e  # R(d) = d(2 − log d): R(0) = 0, R(1) = 2, R(e) = e
    fit = fit_gao([0.0, 1.0, e], [0.0, 2.0, e], "rl")
    assert fit.alpha == pytest.approx(2.0) and fit.beta == pytest.approx(1.0) and fit.r2 == pytest.approx(1.0)


def test_fit_gao_r2_matches_an_independent_least_squares():
    np = pytest.importorskip("numpy")
    from tether.eval.metrics import fit_gao

    d, y = [0.5, 1.0, 1.5, 2.0], [0.2, 0.5, 0.4, 0.45]
    x = np.array([[v, -v * v] for v in d])
    coef, *_ = np.linalg.lstsq(x, np.array(y), rcond=None)
    pred = x @ coef
    r2 = 1 - ((np.array(y) - pred) ** 2).sum() / ((np.array(y) - np.mean(y)) ** 2).sum()
    fit = fit_gao(d, y, "bon")
    assert (fit.alpha, fit.beta) == pytest.approx(tuple(coef)) and fit.r2 == pytest.approx(r2)
    assert 0 < fit.r2 < 1


def test_fit_gao_rejects_bad_input():
    from tether.eval.metrics import fit_gao

    with pytest.raises(ValueError, match="form"):
        fit_gao([1, 2], [1, 2], "linear")
    with pytest.raises(ValueError, match="distinct"):
        fit_gao([0, 0, 0], [0, 0, 0], "bon")
    with pytest.raises(ValueError, match="≥ 0"):
        fit_gao([-1, 2], [1, 2], "bon")


def test_clustered_win_rate_against_hand_arithmetic():
    from tether.eval.metrics import win_rate_clustered

    # one sample per cluster: the plain normal interval of the scores (1, 0, 1, 1): mean 0.75, se 0.25
    w = win_rate_clustered([1, -1, 1, 1], ["a", "b", "c", "d"])
    assert w.rate == 0.75 and w.lo == pytest.approx(0.75 - 1.959964 * 0.25) and w.hi == 1.0
    # equal clusters: the normal interval of the cluster means (1, 0.5, 0, 0.5): mean 0.5, sd √(1/6), se √(1/24)
    w = win_rate_clustered([1, 1, 1, -1, -1, -1, 0, 0], list("aabbccdd"))
    half = 1.959964 * (1 / 24) ** 0.5
    assert (w.rate, w.wins, w.ties, w.losses) == (0.5, 3, 2, 3)
    assert (w.lo, w.hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))


def test_clustered_win_rate_is_wider_than_wilson_when_clusters_agree():
    from tether.eval.metrics import win_rate_clustered

    outcomes = [1, 1, 1, 1, -1, -1, 1, 1, 1, 1, -1, -1] * 5  # whole prompts win or lose together
    clusters = [i // 2 for i in range(len(outcomes))]
    assert win_rate_clustered(outcomes, clusters).hi - win_rate_clustered(outcomes, clusters).lo > \
        win_rate(outcomes).hi - win_rate(outcomes).lo


def test_clustered_win_rate_rejects_bad_input():
    from tether.eval.metrics import win_rate_clustered

    with pytest.raises(ValueError, match="2 outcomes but 3"):
        win_rate_clustered([1, 0], "abc")
    with pytest.raises(ValueError, match="two clusters"):
        win_rate_clustered([1, 0], "aa")
    with pytest.raises(ValueError, match="must be"):
        win_rate_clustered([1, 2], "ab")
