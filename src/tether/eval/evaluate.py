"""Evaluate policies on held-out prompts with the demo task's gold judge.

`evaluate_policy` generates one response per prompt (greedy by default, so numbers are
reproducible) — or, sampling, `samples_per_prompt` responses per prompt — scores each with the gold judge
and summarises: mean gold score with a 95 % CI, correct rate, response length, EOS rate, diversity,
per-family breakdown. `compare` turns two policies' scored samples on the same prompts into a win rate
(ties count half); with several samples per prompt the i-th sample of one policy meets the i-th of the
other and the interval treats prompts as the units (`win_rate_clustered`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tether.data.gold_judge import MAX_TOTAL, gold_score
from tether.data.records import PromptRow, prompt_text
from tether.eval.metrics import distinct_n, mean_ci, repetition_rate, win_rate, win_rate_ceiling, win_rate_clustered
from tether.models.scoring import response_logprobs
from tether.sampling.generate import SamplingConfig, generate


@dataclass
class ScoredSample:
    prompt: str
    family: str
    response: str
    gold: float
    correct: bool
    truncated: bool
    n_tokens: int


@dataclass
class PolicyEval:
    name: str
    n: int
    gold_mean: float
    gold_ci: tuple[float, float]
    correct_rate: float
    eos_rate: float
    mean_tokens: float
    distinct_1: float
    distinct_2: float
    repetition: float
    by_family: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: list[ScoredSample] = field(default_factory=list)
    proxy_mean: float | None = None
    """Mean reward-model score of the responses, when one was computed (`tether.eval.comparison.proxy_scores`)."""

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        return d


def judge(meta: dict, prompt: str, response: str, truncated: bool, n_tokens: int) -> ScoredSample:
    """One response scored by the gold judge."""
    g = gold_score(meta, response, truncated=truncated)
    return ScoredSample(prompt, meta.get("family", ""), response, g.total, g.correct, truncated, n_tokens)


def score_generations(rows: list[PromptRow], generations) -> list[ScoredSample]:
    return [judge(row.meta, prompt_text(row.prompt), gen.text, gen.truncated, len(gen.response_ids))
            for row, gen in zip(rows, generations)]


def rejudge(evaluation: PolicyEval, rows: list[PromptRow]) -> tuple[PolicyEval, int]:
    """`evaluation` with its stored responses scored again by the current gold judge (one row per sample, in
    order), and how many scores changed: a cached evaluation keeps its generations (the costly part) but never
    a judge's verdict from before a rubric change. The proxy RM score is kept (it does not depend on the judge)."""
    if [prompt_text(r.prompt) for r in rows] != [s.prompt for s in evaluation.samples]:
        raise ValueError(f"'{evaluation.name}': the rows do not match the evaluated prompts")
    samples = [judge(r.meta, s.prompt, s.response, s.truncated, s.n_tokens) for r, s in zip(rows, evaluation.samples)]
    changed = sum(a.gold != b.gold or a.correct != b.correct for a, b in zip(samples, evaluation.samples))
    if not changed:
        return evaluation, 0
    fresh = summarise(evaluation.name, samples)
    fresh.proxy_mean = evaluation.proxy_mean
    return fresh, changed


def summarise(name: str, samples: list[ScoredSample]) -> PolicyEval:
    gold = [s.gold for s in samples]
    mean, lo, hi = mean_ci(gold)
    by_family: dict[str, list[ScoredSample]] = defaultdict(list)
    for s in samples:
        by_family[s.family].append(s)
    texts = [s.response for s in samples]
    return PolicyEval(
        name=name, n=len(samples), gold_mean=mean, gold_ci=(lo, hi),
        correct_rate=sum(s.correct for s in samples) / len(samples),
        eos_rate=sum(not s.truncated for s in samples) / len(samples),
        mean_tokens=sum(s.n_tokens for s in samples) / len(samples),
        distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2),
        repetition=sum(repetition_rate(t) for t in texts) / len(texts),
        by_family={fam: {"n": len(ss), "gold_mean": sum(s.gold for s in ss) / len(ss),
                         "correct_rate": sum(s.correct for s in ss) / len(ss)}
                   for fam, ss in sorted(by_family.items())},
        samples=samples,
    )


def evaluate_policy(name: str, model, tokenizer, rows: list[PromptRow], sampling: SamplingConfig | None = None,
                    seed: int = 0, show_progress: bool = True, samples_per_prompt: int = 1) -> PolicyEval:
    """Gold-judge evaluation of `model` on `rows`: greedy by default; with a sampling config that samples,
    `samples_per_prompt` responses per prompt (the samples list is prompt-major: row 0's K samples first)."""
    return generate_and_evaluate(name, model, tokenizer, rows, sampling, seed, show_progress, samples_per_prompt)[0]


def generate_and_evaluate(name: str, model, tokenizer, rows: list[PromptRow], sampling: SamplingConfig | None = None,
                          seed: int = 0, show_progress: bool = True, samples_per_prompt: int = 1,
                          logprobs: bool = False) -> tuple[PolicyEval, list]:
    """`evaluate_policy` and the Generations it scored (token ids kept: e.g. for the KL on the same samples;
    `logprobs`: with their sampler log-probabilities, `Generation.logprobs`)."""
    sampling = sampling or SamplingConfig(do_sample=False, max_new_tokens=64)
    if samples_per_prompt < 1 or (samples_per_prompt > 1 and not sampling.do_sample):
        raise ValueError(f"samples_per_prompt={samples_per_prompt} needs >= 1, and sampling when > 1")
    rows = [r for r in rows for _ in range(samples_per_prompt)]
    generations = generate(model, tokenizer, [r.prompt for r in rows], sampling, seed=seed,
                           show_progress=show_progress, logprobs=logprobs)
    return summarise(name, score_generations(rows, generations)), generations


def evaluate_generations(name: str, rows: list[PromptRow], generations) -> PolicyEval:
    """Gold-judge evaluation of responses produced any way (one Generation per row, in order): e.g. the
    responses best-of-N chose, so best-of-N is compared with `compare` like any trained policy."""
    if len(rows) != len(generations):
        raise ValueError(f"{len(rows)} prompts but {len(generations)} responses")
    return summarise(name, score_generations(rows, generations))


def compare(a: PolicyEval, b: PolicyEval, tolerance: float = 1e-6) -> dict[str, float]:
    """Win rate of `a` over `b` by gold score on the same prompts (ties = half), with a 95 % CI: Wilson for
    one response per prompt; cluster-robust over prompts when a prompt occurs more than once (K samples each).
    Also how often correctness changed between the paired responses: `correct_gained` (a right, b not) and
    `correct_lost` (b right, a not); wins beyond `correct_gained` are style (length, padding, endings, hedging)
    or a lesser mistake (no answer beats a wrong one). `win_rate_ceiling`: the most any `a` could reach
    against these `b` responses — where `b` already has the top gold score, `a` can only tie."""
    prompts = [s.prompt for s in a.samples]
    if prompts != [s.prompt for s in b.samples]:
        raise ValueError(f"'{a.name}' and '{b.name}' were evaluated on different prompts (or sample counts)")
    outcomes = [0 if abs(x.gold - y.gold) <= tolerance else (1 if x.gold > y.gold else -1)
                for x, y in zip(a.samples, b.samples)]
    w = win_rate(outcomes) if len(set(prompts)) == len(prompts) else win_rate_clustered(outcomes, prompts)
    gained = sum(x.correct and not y.correct for x, y in zip(a.samples, b.samples))
    lost = sum(y.correct and not x.correct for x, y in zip(a.samples, b.samples))
    return {"win_rate": w.rate, "ci_low": w.lo, "ci_high": w.hi, "wins": w.wins, "ties": w.ties, "losses": w.losses,
            "correct_gained": gained, "correct_lost": lost,
            "win_rate_ceiling": win_rate_ceiling([y.gold for y in b.samples], MAX_TOTAL, tolerance)}


def align_to(single: PolicyEval, multi: PolicyEval) -> tuple[PolicyEval, PolicyEval]:
    """Pair a one-response-per-prompt evaluation with a K-samples-per-prompt one (e.g. best-of-N's picks with
    the SFT policy's temperature-1 samples): both cut to the prompts both cover (`multi` may cover fewer), and
    `single`'s response repeated for each of their samples, so `compare` sees K pairs per prompt (clustered by
    prompt)."""
    by_prompt = {s.prompt: s for s in single.samples}
    kept = [s for s in multi.samples if s.prompt in by_prompt]
    if not kept:
        raise ValueError(f"'{single.name}' and '{multi.name}' share no prompt")
    return summarise(single.name, [by_prompt[s.prompt] for s in kept]), summarise(multi.name, kept)


def write_eval(path: Path, evals: list[PolicyEval], comparisons: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"policies": {e.name: e.summary() for e in evals}, "comparisons": comparisons},
                               indent=2))
    samples = path.with_name(path.stem + "_samples.jsonl")
    with samples.open("w") as f:
        for i in range(len(evals[0].samples)):
            f.write(json.dumps({"prompt": evals[0].samples[i].prompt,
                                **{e.name: asdict(e.samples[i]) for e in evals}}) + "\n")


@torch.no_grad()
def kl_to_reference(policy, reference, tokenizer, rows: list[PromptRow], max_new_tokens: int = 64,
                    seed: int = 0, batch_size: int = 16) -> dict[str, float]:
    """KL(π ‖ π_ref) estimated on the policy's own samples (temperature 1): mean over prompts of
    Σ_t [log π(y_t|·) − log π_ref(y_t|·)] for y ~ π (the unbiased k1 estimator of the sequence KL).

    Per-sample values can be negative; their mean is the estimate (with a 95 % CI).
    """
    sampling = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=max_new_tokens)
    gens = generate(policy, tokenizer, [r.prompt for r in rows], sampling, seed=seed, logprobs=True)
    return kl_of_generations(policy, reference, tokenizer, gens, batch_size, sampler_logprobs=True)


@torch.no_grad()
def kl_of_generations(policy, reference, tokenizer, gens, batch_size: int = 16,
                      sampler_logprobs: bool = False) -> dict[str, float]:
    """The k1 estimate of KL(π ‖ π_ref) on responses `gens` that π sampled at temperature 1 (see
    `kl_to_reference`): mean and 95 % CI of Σ_t [log π(y_t|·) − log π_ref(y_t|·)] per response. With several
    responses to a prompt the interval is that of the per-prompt means (prompts are the independent units).

    `sampler_logprobs`: log π is read from the Generations (`generate(..., logprobs=True)` at T = 1, no top-k /
    top-p: the distribution the tokens were drawn from), so only the reference runs a forward; the decode
    step's logits match a full forward's to float rounding (tested). Otherwise π runs a forward too."""
    prompts, responses = [g.prompt_ids for g in gens], [g.response_ids for g in gens]
    if sampler_logprobs:
        if any(g.logprobs is None or len(g.logprobs) != len(g.response_ids) for g in gens):
            raise ValueError("sampler_logprobs: every Generation needs its logprobs (generate(..., logprobs=True))")
        logp = [sum(g.logprobs) for g in gens]
    else:
        logp, _ = response_logprobs(policy, prompts, responses, tokenizer.pad_token_id, batch_size)
    ref_logp, _ = response_logprobs(reference, prompts, responses, tokenizer.pad_token_id, batch_size)
    values = [a - b for a, b in zip(logp, ref_logp)]
    by_prompt: dict[tuple, list[float]] = defaultdict(list)
    for g, v in zip(gens, values):
        by_prompt[tuple(g.prompt_ids)].append(v)
    mean, lo, hi = mean_ci(values)
    if len(by_prompt) < len(values) and len({len(v) for v in by_prompt.values()}) == 1:
        _, lo, hi = mean_ci([sum(v) / len(v) for v in by_prompt.values()])  # equal K: same mean, clustered CI
    return {"kl": mean, "kl_ci_low": lo, "kl_ci_high": hi, "n": len(values),
            "mean_tokens": sum(len(g.response_ids) for g in gens) / len(gens)}
