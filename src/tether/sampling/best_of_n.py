"""Best-of-N sampling: draw N responses per prompt from a policy, score each with a reward model (or the
demo task's gold judge, as an oracle upper bound), keep the best.

Best-of-N is a policy of its own: it needs no training, and its KL to the base policy is known in closed
form (Stiennon et al. 2020, app. G; Hilton & Gao 2022): when the N scores have no ties,

    KL(π_bon ‖ π) = log N − (N − 1) / N                                          (best_of_n_kl)

(0 at N = 1, 1.9 at N = 16, 3.5 at N = 64). With ties (a discrete reward, duplicate responses) the
true KL is smaller: the formula is an upper bound (Beirami et al. 2024). It is the yardstick that puts
best-of-N and PPO on the same "gold score vs KL" axis.

The base in that formula is the distribution the candidates were drawn from. Sampled at a temperature T ≠ 1
(or with top-k / top-p), that is the tempered policy π_T, not π. The KL to π itself splits exactly:

    KL(π_bon ‖ π) = KL(π_bon ‖ π_T) + E_{y∼π_bon}[log π_T(y|x) − log π(y|x)]      (tempered_kl_shift)

The first term is at most the formula. The second is estimated on the chosen responses (samples of π_bon),
from the sampler's own log-probabilities and one forward of π over the chosen responses. Their sum,
`kl_to_policy`, is an estimated upper bound on the KL to π, comparable with PPO's KL to SFT.

**Regularised selection** (`kl_coef` β > 0): pick argmax_y r(y) + β·log π(y|x) instead of argmax r(y), a best-of-N
regularised toward the policy, as Jinnai et al. 2024 (arXiv 2404.01054) propose, with the KL of the point mass on y
as the regulariser: r(y) − β·KL(δ_y ‖ π), where KL(δ_y ‖ π) = −log π(y|x). Among candidates the reward model rates
alike it takes the one the policy finds more likely, which guards against picks that win on a reward-model blind
spot. At temperature 1 the sampler's own log-probabilities are log π, so it costs nothing beyond keeping them; at
another temperature one forward of π over the candidates gives them. The selection is still best-of-N under one
deterministic score per candidate, so the KL formula above still bounds its KL to the sampling distribution (the
true KL is lower where the regulariser pulls the pick toward the policy's likelier responses).

`best_of_n` returns every candidate with its score and the chosen index, so one run also gives the
whole curve for k ≤ N (`best_of_k_curve`: the unbiased expectation over random k-subsets of the N
samples, as in Nakano et al. 2021) and, with demo-task prompts, the gold score of each candidate (how
much of the proxy gain is real). The chosen responses are an SFT dataset (`to_sft_examples`):
rejection-sampling fine-tuning, which `tether sft` trains on.

    tether bon --policy runs/demo/sft --reward-model runs/demo/rm \
        --prompts runs/demo/data/eval_prompts.jsonl --n 16 --out runs/demo/bon-16
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether.data.records import PromptRow, SFTExample
from tether.data.validate import save_records
from tether.errors import DataError
from tether.eval.metrics import mean_ci
from tether.sampling.generate import Generation, SamplingConfig
from tether.sampling.labelling import gold_scores, penalise_truncated, reward_model_scores, sample_candidates

__all__ = [
    "BestOfN",
    "best_of_k_curve",
    "best_of_n",
    "best_of_n_kl",
    "expected_best_of_k",
    "gold_summary",
    "policy_logprobs",
    "regularised_scores",
    "reward_model_scores",
    "samples_the_policy",
    "select_best",
    "tempered_kl_shift",
    "to_sft_examples",
    "write_best_of_n",
]


def best_of_n_kl(n: int) -> float:
    """Analytic KL(best-of-n ‖ base) in nats: log n − (n − 1)/n (exact when the scores have no ties)."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return math.log(n) - (n - 1) / n


def select_best(scores: Sequence[float]) -> int:
    """Index of the highest score; among equal scores the first (so the choice is deterministic).

    A NaN score is never chosen (unless every score is NaN: then index 0); an empty list is an error.
    """
    if len(scores) == 0:
        raise ValueError("select_best needs at least one score")
    best = 0
    for i, s in enumerate(scores):
        s, b = float(s), float(scores[best])
        if not math.isnan(s) and (math.isnan(b) or s > b):
            best = i
    return best


def expected_best_of_k(scores: Sequence[float], values: Sequence[float], k: int) -> float:
    """E[value of the top-`scores` item of a uniformly random k-subset] of N scored samples (k ≤ N).

    With the samples sorted by score ascending (ranks r = 1..N), the item of rank r is the subset's best
    with probability C(r−1, k−1) / C(N, k). At k = 1 this is the mean value, at k = N the value of the
    best-scored sample. Equal scores are ranked by position (ties are rare for a continuous RM).
    """
    n = len(scores)
    if n != len(values):
        raise ValueError(f"{n} scores but {len(values)} values")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    order = sorted(range(n), key=lambda i: (float(scores[i]), -i))  # ascending; the first of equals ranks highest
    total = math.comb(n, k)
    return math.fsum(math.comb(r - 1, k - 1) / total * float(values[i]) for r, i in enumerate(order, start=1))


def best_of_k_curve(scores: list[list[float]], values: list[list[float]],
                    ks: Sequence[int] | None = None) -> list[dict]:
    """For each k: analytic KL and the mean over prompts of `expected_best_of_k` (select by `scores`, report
    `values`: the proxy itself, or the gold score). ks default to 1, 2, 4, … up to N, and N."""
    n = min(len(s) for s in scores)
    if ks is None:
        ks = sorted({2**i for i in range(int(math.log2(n)) + 1)} | {n})
    return [{"n": k, "kl": best_of_n_kl(k),
             "value": math.fsum(expected_best_of_k(s, v, k) for s, v in zip(scores, values)) / len(scores)}
            for k in ks]


@dataclass
class BestOfN:
    """Every candidate, its scores, and the chosen one, per prompt."""

    rows: list[PromptRow]
    candidates: list[list[Generation]]
    """(prompts, N) sampled responses."""
    scores: list[list[float]]
    """(prompts, N) the scorer's scores (the reward model's after any missing-EOS penalty, or gold with scorer
    'gold'); the pick maximises `selection_scores()`, which adds the kl_coef term."""
    chosen: list[int]
    """Per prompt, the index of the selected candidate (`select_best` of its `selection_scores`)."""
    scorer: str
    """'rm' or 'gold'."""
    gold: list[list[float]] | None = None
    """(prompts, N) gold-judge totals when the prompts carry demo-task meta, else None."""
    extra: dict = field(default_factory=dict)
    tempered_shift: list[float] | None = None
    """Per prompt, log π_T(y) − log π(y) of the chosen response, when the sampler was not π itself (temperature
    ≠ 1, top-k, top-p or min_new_tokens; see `tempered_kl_shift`); None when it was π."""
    kl_coef: float = 0.0
    """β of the regularised selection: the pick maximises score + β·log π(y|x) (0: plain best-of-N)."""
    policy_logprobs: list[list[float]] | None = None
    """(prompts, N) log π(y|x) of every candidate under the policy at temperature 1, when kl_coef > 0."""

    def selection_scores(self) -> list[list[float]]:
        """(prompts, N) what the pick maximises (`regularised_scores`)."""
        return regularised_scores(self.scores, self.policy_logprobs, self.kl_coef)

    @property
    def n(self) -> int:
        return len(self.candidates[0]) if self.candidates else 0

    @property
    def kl(self) -> float:
        """Analytic KL(best-of-N ‖ the sampling distribution) in nats."""
        return best_of_n_kl(self.n)

    def chosen_generations(self) -> list[Generation]:
        """The selected response per prompt (a policy's output: evaluate it like any other policy)."""
        return [gens[i] for gens, i in zip(self.candidates, self.chosen)]

    def summary(self) -> dict:
        """Proxy (selection) score and gold score before (mean over all N samples = one sample from the
        policy) and after selection, truncation rates, the analytic KL, and the best-of-k curve."""
        n_prompts = len(self.rows)
        chosen_scores = [s[i] for s, i in zip(self.scores, self.chosen)]
        out = {
            "n": self.n, "prompts": n_prompts, "scorer": self.scorer, "kl_analytic": self.kl,
            "proxy_before": math.fsum(x for s in self.scores for x in s) / (n_prompts * self.n),
            "proxy_after": math.fsum(chosen_scores) / n_prompts,
            "truncated_before": sum(g.truncated for gens in self.candidates for g in gens) / (n_prompts * self.n),
            "truncated_after": sum(g.truncated for g in self.chosen_generations()) / n_prompts,
            "distinct_candidates": sum(len({g.text for g in gens}) for gens in self.candidates) / n_prompts,
            "curve_proxy": best_of_k_curve(self.selection_scores(), self.scores),
            "kl_coef": self.kl_coef,
        }
        if self.policy_logprobs is not None:
            lps = self.policy_logprobs
            out |= {"policy_logprob_before": math.fsum(x for lp in lps for x in lp) / (n_prompts * self.n),
                    "policy_logprob_after": math.fsum(lp[i] for lp, i in zip(lps, self.chosen)) / n_prompts}
        if self.tempered_shift is not None:
            shift, lo, hi = mean_ci(self.tempered_shift)
            out |= {"tempered_shift": shift, "kl_to_policy": self.kl + shift,
                    "kl_to_policy_ci": [self.kl + lo, self.kl + hi]}
        if self.gold is not None:
            out |= gold_summary(self.selection_scores(), self.gold, self.chosen)
        return {**out, **self.extra}


def regularised_scores(scores: list[list[float]], logprobs: list[list[float]] | None,
                       kl_coef: float) -> list[list[float]]:
    """(prompts, N) score + kl_coef · log π(y|x) per candidate: what a regularised pick maximises; `scores` itself
    when kl_coef is 0."""
    if not kl_coef:
        return scores
    if logprobs is None:
        raise ValueError("a regularised pick (kl_coef > 0) needs each candidate's log π(y|x)")
    return [[s + kl_coef * lp for s, lp in zip(ss, lps)] for ss, lps in zip(scores, logprobs)]


def samples_the_policy(sampling: SamplingConfig) -> bool:
    """True when `sampling` draws from the policy's own distribution π (temperature 1, no top-k / top-p, EOS
    allowed from the first token), so best_of_n_kl is the KL to π itself."""
    return (sampling.temperature == 1.0 and not sampling.top_k and sampling.top_p >= 1.0
            and not sampling.min_new_tokens)


def policy_logprobs(policy, tokenizer, generations: list[Generation], batch_size: int = 16) -> list[float]:
    """log π(y|x) of each Generation under `policy` at temperature 1: Σ over its response tokens (one no-grad
    forward, `models/scoring.py:response_logprobs`)."""
    from tether.models.scoring import response_logprobs

    logp, _ = response_logprobs(policy, [g.prompt_ids for g in generations], [g.response_ids for g in generations],
                                tokenizer.pad_token_id, batch_size)
    return list(logp)


def tempered_kl_shift(policy, tokenizer, chosen: list[Generation], batch_size: int = 16,
                      logprobs: list[float] | None = None) -> list[float]:
    """Per chosen response, Σ_t log π_T(y_t|·) − Σ_t log π(y_t|·): the sampler's log-probabilities (carried by
    the Generation) less the policy's at temperature 1 (one no-grad forward, `response_logprobs`). The sampler's
    are kept for every candidate, not only the picks: one log-softmax per decode step, beside a 135M-parameter
    forward, and exact under top-k / top-p / min_new_tokens, which a later forward would have to re-apply. Their
    mean over prompts estimates the second term of KL(π_bon ‖ π) = KL(π_bon ‖ π_T) + E_{π_bon}[log π_T − log π]
    (module docstring). `logprobs`: the chosen responses' log π(y|x) when already computed (`policy_logprobs`)."""
    if any(g.logprobs is None or len(g.logprobs) != len(g.response_ids) for g in chosen):
        raise ValueError("tempered_kl_shift needs each Generation's sampler logprobs (generate(..., logprobs=True))")
    logp = logprobs if logprobs is not None else policy_logprobs(policy, tokenizer, chosen, batch_size)
    return [math.fsum(g.logprobs) - lp for g, lp in zip(chosen, logp)]  # type: ignore[arg-type]


def gold_summary(selection: list[list[float]], gold: list[list[float]], chosen: list[int]) -> dict:
    """Gold score before selection (mean over every candidate = one sample of the policy), after it (mean of
    the chosen candidates), and the gold best-of-k curve under the `selection` scores (what the pick maximises)."""
    n_all = sum(len(g) for g in gold)
    return {"gold_before": math.fsum(x for g in gold for x in g) / n_all,
            "gold_after": math.fsum(g[i] for g, i in zip(gold, chosen)) / len(gold),
            "curve_gold": best_of_k_curve(selection, gold)}


def _has_gold_meta(rows: list[PromptRow]) -> bool:
    return bool(rows) and all("answer" in r.meta for r in rows)


def best_of_n(policy, tokenizer, rows: list[PromptRow], n: int, sampling: SamplingConfig | None = None,
              scorer: str = "rm", reward_model=None, rm_tokenizer=None, missing_eos_penalty: float = 1.0,
              seed: int = 0, batch_size: int = 16, kl_coef: float = 0.0) -> BestOfN:
    """Sample `n` responses per prompt from `policy` and select the best of each.

    scorer 'rm': `reward_model` (a ScalarHeadModel; `rm_tokenizer` defaults to `tokenizer`) scores every
    candidate; scorer 'gold': the demo task's gold judge (an oracle: the best a perfect reward model could do).
    `missing_eos_penalty` (default 1.0, as in PPO) is subtracted from the selection score of responses cut at
    max_new_tokens (scorer 'rm' only: the gold judge scores truncation itself); 0 selects on the raw score.
    With demo-task prompts the gold score of every candidate is recorded too, whatever the scorer.
    `kl_coef` β > 0 (scorer 'rm'): select by score + β·log π(y|x), the KL-regularised best-of-N (module docstring).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if scorer not in ("rm", "gold"):
        raise ValueError(f"scorer must be 'rm' or 'gold', got {scorer!r}")
    if scorer == "rm" and reward_model is None:
        raise ValueError("scorer 'rm' needs a reward_model")
    if not (math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
    if kl_coef and scorer != "rm":
        raise ValueError("kl_coef regularises a reward model's selection; the gold scorer takes none")
    if scorer == "gold" and not _has_gold_meta(rows):
        raise DataError("best-of-N with the gold scorer needs demo-task prompts (meta with 'answer')")
    sampling = sampling or SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=64)
    if not sampling.do_sample and n > 1:
        raise ValueError("best-of-N with n > 1 needs do_sample=True (greedy gives N copies of one response)")
    tempered = sampling.do_sample and not samples_the_policy(sampling)
    candidates = sample_candidates(policy, tokenizer, rows, n, sampling, seed=seed, logprobs=tempered or kl_coef > 0)
    gold = gold_scores(rows, candidates) if _has_gold_meta(rows) else None
    if scorer == "gold":  # the gold judge already marks a truncated response down (its ending rule)
        scores = [list(s) for s in gold]  # type: ignore[union-attr]
    else:
        raw = reward_model_scores(reward_model, rm_tokenizer or tokenizer, rows, candidates, tokenizer, batch_size)
        scores = penalise_truncated(raw, candidates, missing_eos_penalty)
    logp = None
    if kl_coef:  # log π(y|x): the sampler's own when it is π (temperature 1, no filters), else one forward of π
        flat = [g for gens in candidates for g in gens]
        sums = (policy_logprobs(policy, tokenizer, flat, batch_size) if tempered
                else [math.fsum(g.logprobs) for g in flat])  # type: ignore[arg-type]
        logp = [sums[p * n:(p + 1) * n] for p in range(len(rows))]
    result = BestOfN(rows, candidates, scores, [], scorer, gold, kl_coef=kl_coef, policy_logprobs=logp)
    result.chosen = [select_best(s) for s in result.selection_scores()]
    if tempered:
        picks = [g[i] for g, i in zip(candidates, result.chosen)]
        known = None if logp is None else [lp[i] for lp, i in zip(logp, result.chosen)]
        result.tempered_shift = tempered_kl_shift(policy, tokenizer, picks, batch_size, known)
    result.extra = {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
                    "max_new_tokens": sampling.max_new_tokens, "missing_eos_penalty": missing_eos_penalty,
                    "seed": seed}
    return result


def to_sft_examples(result: BestOfN, min_score: float | None = None,
                    keep_truncated: bool = False) -> tuple[list[SFTExample], dict[str, int]]:
    """The chosen responses as SFT demonstrations (rejection-sampling fine-tuning).

    Dropped (and counted): a chosen response cut at max_new_tokens (training on it with an EOS appended
    would teach the policy to stop mid-sentence) unless keep_truncated, one below `min_score`, an empty one.
    """
    examples, dropped = [], {"truncated": 0, "below_min_score": 0, "empty": 0}
    for row, gens, scores, i in zip(result.rows, result.candidates, result.scores, result.chosen):
        g = gens[i]
        if g.truncated and not keep_truncated:
            dropped["truncated"] += 1
        elif min_score is not None and scores[i] < min_score:
            dropped["below_min_score"] += 1
        elif not g.text.strip():
            dropped["empty"] += 1
        else:
            meta = {k: v for k, v in row.meta.items() if k != "source"}
            meta.update(best_of_n=result.n, scorer=result.scorer, score=scores[i])
            if "source" in row.meta:
                meta["prompt_source"] = row.meta["source"]
            examples.append(SFTExample(row.prompt, g.text, meta))
    return examples, dropped


def write_best_of_n(out_dir: Path, result: BestOfN, min_score: float | None = None,
                    extra: dict | None = None) -> dict:
    """Write `out_dir`/candidates.jsonl (every candidate with its scores and the chosen index),
    sft.jsonl (the chosen responses, `tether sft --data.train_file` reads it) and result.json (summary).
    Returns the summary written to result.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "candidates.jsonl").open("w") as f:
        for p, (row, gens, scores, i) in enumerate(zip(result.rows, result.candidates, result.scores, result.chosen)):
            f.write(json.dumps({
                "prompt": row.prompt, "meta": row.meta, "chosen": i,
                "candidates": [{"text": g.text, "score": s, "truncated": g.truncated, "n_tokens": len(g.response_ids),
                                **({"policy_logprob": result.policy_logprobs[p][j]}
                                   if result.policy_logprobs is not None else {}),
                                **({"gold": result.gold[p][j]} if result.gold is not None else {})}
                               for j, (g, s) in enumerate(zip(gens, scores))],
            }, ensure_ascii=False) + "\n")
    examples, dropped = to_sft_examples(result, min_score=min_score)
    if examples:
        save_records(out_dir / "sft.jsonl", examples)
    summary = {**result.summary(), "sft_examples": len(examples), "sft_dropped": dropped, **(extra or {})}
    (out_dir / "result.json").write_text(json.dumps(summary, indent=2))
    return summary
