"""Evaluation metrics as pure functions of plain numbers and strings (no torch needed).

Inputs are any iterables of numbers (lists, numpy arrays, 1-D tensors: each item goes through
``float``). Each function raises ValueError on input it cannot score (empty, mismatched lengths)
rather than returning a number that looks real.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist
from typing import NamedTuple

__all__ = [
    "Calibration",
    "GaoFit",
    "ReliabilityBin",
    "WinRate",
    "distinct_n",
    "expected_calibration_error",
    "fit_gao",
    "gao_curve",
    "mean_ci",
    "ngram_jaccard",
    "outcomes_from_scores",
    "pairwise_accuracy",
    "pearson",
    "repetition_rate",
    "self_similarity",
    "win_rate",
    "win_rate_ceiling",
    "win_rate_clustered",
]


class WinRate(NamedTuple):
    """A win rate with its confidence interval and the counts behind it."""

    rate: float
    """(wins + ties / 2) / n."""
    lo: float
    """Lower end of the interval (Wilson score; cluster-robust from `win_rate_clustered`)."""
    hi: float
    """Upper end of the interval."""
    wins: int
    ties: int
    losses: int


class ReliabilityBin(NamedTuple):
    """One row of a reliability table: predictions with ``lo <= prob < hi`` (the last bin includes 1)."""

    lo: float
    hi: float
    count: int
    mean_prob: float | None
    """Mean predicted probability in the bin; None for an empty bin."""
    accuracy: float | None
    """Fraction of labels equal to 1 in the bin; None for an empty bin."""


class Calibration(NamedTuple):
    """Expected calibration error and the reliability table it is computed from."""

    ece: float
    bins: list[ReliabilityBin]


def _floats(values: Iterable[float], what: str) -> list[float]:
    """``values`` as a list of floats; ValueError naming ``what`` when empty."""
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{what} is empty")
    return out


def _z(confidence: float) -> float:
    """Two-sided standard-normal quantile for ``confidence`` (1.959964 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean with a normal-approximation interval ``mean ± z·s/√n``.

    ``s`` is the sample standard deviation (n − 1). With a single value the interval is undefined and
    ``lo``/``hi`` are nan.
    """
    xs = _floats(values, "values")
    z = _z(confidence)
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return mean, math.nan, math.nan
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = z * std / math.sqrt(n)
    return mean, mean - half, mean + half


def win_rate(outcomes: Iterable[int], confidence: float = 0.95) -> WinRate:
    """Win rate of +1 (win) / 0 (tie) / −1 (loss) outcomes; a tie counts as half a win.

    The interval is the Wilson score interval with ``p = rate`` over ``n`` comparisons (ties enter as
    half-successes): ``(p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)``. Unlike ``p ± z·se`` it stays
    inside [0, 1] and is not degenerate at p = 0 or 1.
    """
    values = list(outcomes)
    if not values:
        raise ValueError("outcomes is empty")
    bad = [v for v in values if v not in (1, 0, -1)]
    if bad:
        raise ValueError(f"outcomes must be +1 (win), 0 (tie) or -1 (loss); got {bad[0]!r}")
    wins, ties, losses = values.count(1), values.count(0), values.count(-1)
    n = len(values)
    p = (wins + 0.5 * ties) / n
    z = _z(confidence)
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return WinRate(p, max(0.0, center - half), min(1.0, center + half), wins, ties, losses)


def win_rate_clustered(outcomes: Iterable[int], clusters: Iterable, confidence: float = 0.95) -> WinRate:
    """Win rate of outcomes that come in clusters — several samples per prompt — with a cluster-robust interval.

    The rate is the same as ``win_rate``'s, ``(wins + ties/2) / n``. Samples of one prompt are not independent
    (a prompt the policy cannot answer loses every sample), so the interval treats prompts, not samples, as
    the units: with ``S_c`` the summed scores (1, ½, 0) of cluster ``c``, ``n_c`` its size and ``C`` clusters,

        Var(rate) = C / (C − 1) · Σ_c (S_c − rate · n_c)² / n²,

    the ratio-estimator (sandwich) variance; the interval is ``rate ± z·√Var``, clipped to [0, 1]. With one
    sample per cluster it is the plain normal interval; with equal cluster sizes it is the normal interval of
    the C cluster means. Needs at least two clusters.
    """
    values, keys = list(outcomes), list(clusters)
    if len(values) != len(keys):
        raise ValueError(f"{len(values)} outcomes but {len(keys)} cluster keys")
    plain = win_rate(values)  # validates the outcomes; same rate and counts
    n, rate = len(values), plain.rate
    sums: dict = {}
    for v, k in zip(values, keys):
        s, m = sums.get(k, (0.0, 0))
        sums[k] = (s + (v + 1) / 2, m + 1)
    c = len(sums)
    if c < 2:
        raise ValueError("a clustered interval needs at least two clusters")
    var = c / (c - 1) * math.fsum((s - rate * m) ** 2 for s, m in sums.values()) / (n * n)
    half = _z(confidence) * math.sqrt(var)
    return WinRate(rate, max(0.0, rate - half), min(1.0, rate + half), plain.wins, plain.ties, plain.losses)


def win_rate_ceiling(baseline_scores: Iterable[float], best: float, tolerance: float = 1e-6) -> float:
    """The highest win rate any policy could reach against a baseline with these scores: where the baseline
    already scores within ``tolerance`` of the best possible score ``best``, the best outcome is a tie (½);
    elsewhere, a win (1). Mean over comparisons: ``1 − ½ · (share of baseline responses at the best)``.

    A win-rate target above this number cannot be met on these prompts, whatever the policy does.
    """
    xs = _floats(baseline_scores, "baseline_scores")
    return math.fsum(0.5 if x >= best - tolerance else 1.0 for x in xs) / len(xs)


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous ``n``-word windows of ``words``."""
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / total word n-grams, pooled over ``texts``.

    Words are whitespace-separated tokens. Returns 0.0 when no text has ``n`` words.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [g for text in texts for g in _ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 4) -> float:
    """Fraction of the word ``n``-grams (default 4) in ``text`` that repeat an earlier one.

    ``1 − unique / total``: "a b c d a b c d" has 5 four-grams, 4 unique, so 0.2. 0.0 for under n words.
    """
    grams = _ngrams(text.split(), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def outcomes_from_scores(a_scores: Iterable[float], b_scores: Iterable[float], tolerance: float = 1e-6) -> list[int]:
    """Per-item +1 / 0 / −1 outcomes of A against B from paired scores: a tie when ``|a − b| <= tolerance``."""
    a, b = _floats(a_scores, "a_scores"), _floats(b_scores, "b_scores")
    if len(a) != len(b):
        raise ValueError(f"{len(a)} scores for A but {len(b)} for B")
    return [0 if abs(x - y) <= tolerance else (1 if x > y else -1) for x, y in zip(a, b)]


def _gram_set(text: str, max_n: int) -> set[tuple[str, ...]]:
    words = text.split()
    return {g for n in range(1, max_n + 1) for g in _ngrams(words, n)}


def ngram_jaccard(a: str, b: str, max_n: int = 2) -> float:
    """Jaccard similarity of the sets of word 1- to ``max_n``-grams of two texts: ``|A ∩ B| / |A ∪ B|``.

    Words are whitespace-separated tokens (case and punctuation kept, as in ``distinct_n``). Two texts
    with no words are identical (1.0); one empty and one not share nothing (0.0).
    """
    ga, gb = _gram_set(a, max_n), _gram_set(b, max_n)
    if not ga and not gb:
        return 1.0
    return len(ga & gb) / len(ga | gb)


def self_similarity(groups: Iterable[Sequence[str]], max_n: int = 2) -> float:
    """Mean pairwise ``ngram_jaccard`` of the texts within each group, averaged over groups.

    ``self_similarity = (1/G) Σ_g [ (2 / (k_g (k_g − 1))) Σ_{i<j} J(x_gi, x_gj) ]`` over the groups with at
    least two texts. With a group = several samples for one prompt it measures how much a policy's samples
    repeat each other (1.0: every sample identical, mode collapse; near 0: no shared words); with one group
    of all responses across prompts it measures a shared template. ValueError when no group has two texts.
    """
    means = []
    for group in groups:
        texts = list(group)
        k = len(texts)
        if k < 2:
            continue
        sims = [ngram_jaccard(texts[i], texts[j], max_n) for i in range(k) for j in range(i + 1, k)]
        means.append(math.fsum(sims) / len(sims))
    if not means:
        raise ValueError("self_similarity needs at least one group with two or more texts")
    return math.fsum(means) / len(means)


def pairwise_accuracy(chosen_scores: Iterable[float], rejected_scores: Iterable[float]) -> float:
    """Fraction of pairs where the chosen response scores higher; an exact tie counts 0.5."""
    chosen = _floats(chosen_scores, "chosen_scores")
    rejected = _floats(rejected_scores, "rejected_scores")
    if len(chosen) != len(rejected):
        raise ValueError(f"{len(chosen)} chosen scores but {len(rejected)} rejected scores")
    credit = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)]
    return math.fsum(credit) / len(credit)


def expected_calibration_error(
    probs: Iterable[float], labels: Iterable[int], n_bins: int = 10
) -> Calibration:
    """ECE of predicted probabilities ``P(label = 1)`` against 0/1 ``labels``, over equal-width bins.

    ``ECE = Σ_b (count_b / N) · |mean_prob_b − accuracy_b|`` where ``accuracy_b`` is the fraction of
    labels equal to 1 in bin b. Bin b holds ``b/n_bins <= p < (b+1)/n_bins``; p = 1 falls in the last bin.
    For a reward model use ``probs = sigmoid(chosen_score − rejected_score)``, ``labels = 1``; better,
    present each pair in a random order so both label values occur.
    """
    ps = _floats(probs, "probs")
    ys = [int(y) for y in labels]
    if len(ps) != len(ys):
        raise ValueError(f"{len(ps)} probs but {len(ys)} labels")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if any(not 0.0 <= p <= 1.0 for p in ps):
        raise ValueError("probs must lie in [0, 1]")
    if any(y not in (0, 1) for y in ys):
        raise ValueError("labels must be 0 or 1")
    edges = [b / n_bins for b in range(n_bins + 1)]
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, p in enumerate(ps):
        members[min(bisect.bisect_right(edges, p) - 1, n_bins - 1)].append(i)
    bins, ece = [], 0.0
    for b, idx in enumerate(members):
        lo, hi = edges[b], edges[b + 1]
        if not idx:
            bins.append(ReliabilityBin(lo, hi, 0, None, None))
            continue
        mean_prob = math.fsum(ps[i] for i in idx) / len(idx)
        accuracy = sum(ys[i] for i in idx) / len(idx)
        bins.append(ReliabilityBin(lo, hi, len(idx), mean_prob, accuracy))
        ece += len(idx) / len(ps) * abs(mean_prob - accuracy)
    return Calibration(ece, bins)


def pearson(x: Iterable[float], y: Iterable[float]) -> float:
    """Pearson correlation of ``x`` and ``y``; nan when either is constant (correlation undefined)."""
    xs, ys = _floats(x, "x"), _floats(y, "y")
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} values but y has {len(ys)}")
    if len(xs) < 2:
        raise ValueError("pearson needs at least 2 pairs")
    mx, my = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(xs, ys))
    sxx = math.fsum((a - mx) ** 2 for a in xs)
    syy = math.fsum((b - my) ** 2 for b in ys)
    if sxx == 0.0 or syy == 0.0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


def _distribution(values: list[float]) -> dict[str, float]:
    xs = sorted(values)
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / max(n - 1, 1))

    def q(p: float) -> float:
        return xs[min(n - 1, int(p * (n - 1) + 0.5))]

    return {"mean": mean, "std": std, "p10": q(0.1), "p50": q(0.5), "p90": q(0.9)}


def reward_model_report(chosen: list[float], rejected: list[float], chosen_len: list[int],
                        rejected_len: list[int], n_bins: int = 10) -> dict:
    """Pairwise accuracy, mean margin, calibration (ECE of σ(r_c − r_r), each pair counted in both orders so
    both labels occur), chosen/rejected score distributions, and length bias (corr(score, length); how often
    the RM vs the labels prefer the longer response)."""
    deltas = [c - r for c, r in zip(chosen, rejected)]
    probs = [1.0 / (1.0 + math.exp(-d)) if d > -700 else 0.0 for d in deltas]
    calib = expected_calibration_error(probs + [1.0 - p for p in probs], [1] * len(probs) + [0] * len(probs),
                                       n_bins=n_bins)
    unequal = [(c, r, lc, lr) for c, r, lc, lr in zip(chosen, rejected, chosen_len, rejected_len) if lc != lr]
    return {
        "n_pairs": len(chosen),
        "accuracy": pairwise_accuracy(chosen, rejected),
        "margin": sum(deltas) / len(deltas),
        "ece": calib.ece,
        "reliability": [b._asdict() for b in calib.bins],
        "chosen_scores": _distribution(chosen),
        "rejected_scores": _distribution(rejected),
        "length_corr": pearson(chosen + rejected, [float(x) for x in chosen_len + rejected_len]),
        "rm_prefers_longer": (sum((c > r) == (lc > lr) for c, r, lc, lr in unequal) / len(unequal)
                              if unequal else None),
        "labels_prefer_longer": (sum(lc > lr for _, _, lc, lr in unequal) / len(unequal)) if unequal else None,
    }




class GaoFit(NamedTuple):
    """A fit of Gao, Schulman & Hilton (2022)'s reward-vs-KL forms, with its goodness of fit."""

    form: str
    """'bon': R(d) = d(α − βd); 'rl': R(d) = d(α − β log d); d = √KL."""
    alpha: float
    beta: float
    r2: float
    """1 − SS_res / SS_tot (about the mean of the observed gains); nan when the gains are constant."""
    n: int


def _gao_features(d: float, form: str) -> tuple[float, float]:
    if form == "bon":
        return d, -d * d
    return d, (-d * math.log(d)) if d > 0 else 0.0  # d log d → 0 as d → 0


def fit_gao(d: Iterable[float], gain: Iterable[float], form: str) -> GaoFit:
    """Least-squares fit of the reward gain over the initial policy against d = √KL (Gao et al. 2022, eq. 1-2):

        best-of-n (form 'bon'):  R(d) = d(α − β d)
        RL        (form 'rl'):   R(d) = d(α − β log d)

    Both forms are linear in (α, β) and pass through R(0) = 0, so this solves the 2×2 normal equations of a
    regression without intercept. ``gain`` is the reward minus the initial policy's reward (0 at d = 0).
    """
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    ds, ys = _floats(d, "d"), _floats(gain, "gain")
    if len(ds) != len(ys):
        raise ValueError(f"d has {len(ds)} values but gain has {len(ys)}")
    if any(x < 0 for x in ds):
        raise ValueError("d = √KL must be ≥ 0")
    feats = [_gao_features(x, form) for x in ds]
    s11 = math.fsum(a * a for a, _ in feats)
    s12 = math.fsum(a * b for a, b in feats)
    s22 = math.fsum(b * b for _, b in feats)
    t1 = math.fsum(a * y for (a, _), y in zip(feats, ys))
    t2 = math.fsum(b * y for (_, b), y in zip(feats, ys))
    det = s11 * s22 - s12 * s12
    if len(ds) < 2 or abs(det) <= 1e-12 * max(s11 * s22, 1e-300):
        raise ValueError("fit_gao needs at least 2 points with distinct d > 0")
    alpha = (t1 * s22 - t2 * s12) / det
    beta = (s11 * t2 - s12 * t1) / det
    mean = math.fsum(ys) / len(ys)
    ss_tot = math.fsum((y - mean) ** 2 for y in ys)
    ss_res = math.fsum((y - (alpha * a + beta * b)) ** 2 for (a, b), y in zip(feats, ys))
    return GaoFit(form, alpha, beta, 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan, len(ds))


def gao_curve(fit: GaoFit, d: float) -> float:
    """The fitted gain at d = √KL."""
    a, b = _gao_features(d, fit.form)
    return fit.alpha * a + fit.beta * b
