"""One policy's held-out evaluation, cached on disk: what the pipeline and the experiments share.

`evaluate_cached` writes `<run>/eval/policy-<name>.json` (the gold-judge summary, every scored sample, the
proxy RM score and the KL to the SFT policy) and reuses it when it covers the same prompts with the same
response budget and the policy's weights are unchanged (a retrained policy in the same dir is evaluated again).
A reused evaluation is scored again by the current gold judge (`evaluate.rejudge`), and by the reward model
when it was retrained: the responses are cached, the verdicts are not trusted across a rubric or RM change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tether.runtime.provenance import same_record, weights_fingerprint

SAMPLED_EVAL_SEED_OFFSET = 7919
"""Added to the run's seed for the sampled evaluation, so its samples are drawn apart from labelling's and
best-of-N's (same seed, same prompts would otherwise give the same first draws)."""


policy_fingerprint = weights_fingerprint
"""What identifies a policy's weights: the same key as a stage record's (`runtime.provenance`)."""


def save_eval(path: Path, evaluation, kl: dict | None, kl_prompts: list[str] | None = None,
              key: dict | None = None) -> None:
    """`key`: what else the result depends on ({"policy": ..., "max_new_tokens": n, "rm": ...})."""
    from dataclasses import asdict

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": evaluation.summary(), "kl_to_sft": kl, "kl_prompts": kl_prompts,
                                "key": key, "samples": [asdict(s) for s in evaluation.samples]}))


def load_eval(path: Path):
    """(PolicyEval, kl, kl_prompts, key) saved by `save_eval`, or None when absent."""
    from tether.eval.evaluate import PolicyEval, ScoredSample

    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    summary = d["summary"] | {"gold_ci": tuple(d["summary"]["gold_ci"])}
    return (PolicyEval(**summary, samples=[ScoredSample(**s) for s in d["samples"]]), d["kl_to_sft"],
            d.get("kl_prompts"), d.get("key"))


def evaluate_cached(run: Path, name: str, spec: str, rows, kl_rows, tokenizer, sft_model, rm, rm_tokenizer,
                    seed: int = 0, max_new_tokens: int = 64, rm_spec: str | None = None, log=print,
                    samples_per_prompt: int = 0, temperature: float = 1.0):
    """(PolicyEval, KL to SFT or None) of one policy: greedy responses on `rows` scored by the gold judge, the
    RM's mean score of them (proxy), and — for trained policies — KL(π ‖ π_SFT) on its own samples on
    `kl_rows`; responses up to `max_new_tokens`. Saved to eval/policy-<name>.json and reused when it covers the
    same prompts (in order) and token budget and the policy's weights have not changed (`policy_fingerprint`);
    the reused responses are scored again by the current gold judge, and by the RM again when `rm_spec` (the RM's
    dir) names other weights than those that scored them (a retrained RM): generation is the costly part, and
    neither verdict depends on it being redone.

    `samples_per_prompt` K > 0: the sampled evaluation instead — K responses per prompt at `temperature`
    (prompt-major; seeded apart from the other stages' sampling), saved to eval/policy-<name>-sampled.json. At
    temperature 1 a trained policy's KL to SFT is measured on these same samples (`kl_rows` is not used): they
    are the policy's own samples, K × len(rows) of them instead of a separate smaller draw."""
    from tether.eval.comparison import attach_proxy
    from tether.eval.evaluate import evaluate_policy, generate_and_evaluate, kl_of_generations, kl_to_reference, rejudge
    from tether.models.loading import freeze, load_causal_lm
    from tether.sampling.generate import SamplingConfig

    req = _Request.of(run, name, spec, rows, kl_rows, seed, max_new_tokens, rm_spec, samples_per_prompt,
                      temperature)
    cache, scored_rows, trained, sampled_kl, key = req.cache, req.scored_rows, req.trained, req.sampled_kl, req.key
    wanted_kl, k, seed = req.wanted_kl, samples_per_prompt, req.seed
    cached = req.cached()
    if cached is not None:
        evaluation, kl_value, _, _ = cached
        log(f"      {name}: reusing {cache}")
        evaluation, changed = rejudge(evaluation, scored_rows)
        if changed:
            log(f"      {name}: {changed} of {evaluation.n} cached responses scored differently by the current "
                "gold judge; updated")
        rm_changed = not same_record(cached[3].get("rm"), key["rm"])
        if rm_changed and cached[3].get("rm") is None:  # generated without a reward model (the pipeline's workers)
            log(f"      {name}: no proxy score yet; {'added' if rm is not None else 'none'}")
        elif rm_changed:
            evaluation.proxy_mean = None  # scored by other RM weights
            log(f"      {name}: the reward model changed; proxy score {'recomputed' if rm is not None else 'dropped'}")
        needs_proxy = evaluation.proxy_mean is None and rm is not None
        if needs_proxy:
            attach_proxy(evaluation, scored_rows, rm, rm_tokenizer)
        if changed or needs_proxy or rm_changed:
            save_eval(cache, evaluation, kl_value, wanted_kl if trained else None, key)
        return evaluation, kl_value
    log(f"      {name}: evaluating {spec}")
    model = sft_model if name == "sft" else freeze(load_causal_lm(spec, tokenizer))
    kl_value = None
    if k:
        evaluation, gens = generate_and_evaluate(
            name, model, tokenizer, rows, SamplingConfig(do_sample=True, temperature=temperature,
                                                         max_new_tokens=max_new_tokens),
            seed=seed, show_progress=False, samples_per_prompt=k, logprobs=sampled_kl)
        if sampled_kl:  # T = 1, no top-k / top-p: the sampler's log-probabilities are log π
            kl_value = kl_of_generations(model, sft_model, tokenizer, gens, sampler_logprobs=True)
    else:
        evaluation = evaluate_policy(name, model, tokenizer, rows,
                                     SamplingConfig(do_sample=False, max_new_tokens=max_new_tokens))
        if trained:
            kl_value = kl_to_reference(model, sft_model, tokenizer, kl_rows, max_new_tokens, seed=seed)
    if rm is not None:
        attach_proxy(evaluation, scored_rows, rm, rm_tokenizer)
    save_eval(cache, evaluation, kl_value, wanted_kl if trained else None, key)
    return evaluation, kl_value


def has_cached_generation(run: Path, name: str, spec: str, rows, kl_rows, seed: int = 0, max_new_tokens: int = 64,
                          samples_per_prompt: int = 0, temperature: float = 1.0) -> bool:
    """Whether `evaluate_cached` with these arguments would reuse saved responses (and KL) instead of generating:
    what the pipeline asks before handing a policy's evaluation to a worker. Loads no model."""
    return _Request.of(run, name, spec, rows, kl_rows, seed, max_new_tokens, None, samples_per_prompt,
                       temperature).cached() is not None


@dataclass
class _Request:
    """What one `evaluate_cached` call asks for: its cache file, the prompts it scores (one per response,
    prompt-major), the KL prompts, and the key its responses depend on."""

    cache: Path
    scored_rows: list
    wanted: list[str]
    wanted_kl: list[str]
    trained: bool      # greedy evaluation of a trained policy with KL on a separate draw (`kl_rows`)
    sampled_kl: bool   # sampled evaluation at T = 1 of a trained policy: KL on its own samples
    key: dict
    seed: int

    @classmethod
    def of(cls, run, name, spec, rows, kl_rows, seed, max_new_tokens, rm_spec, samples_per_prompt, temperature):
        from tether.data.records import prompt_text

        k = samples_per_prompt
        cache = run / "eval" / (f"policy-{name}-sampled.json" if k else f"policy-{name}.json")
        scored_rows = [r for r in rows for _ in range(max(k, 1))]
        key = {"policy": policy_fingerprint(spec), "max_new_tokens": max_new_tokens,
               "rm": policy_fingerprint(rm_spec) if rm_spec else None}
        if k:
            seed += SAMPLED_EVAL_SEED_OFFSET
            key |= {"samples_per_prompt": k, "temperature": temperature, "seed": seed}
        return cls(cache, scored_rows, [prompt_text(r.prompt) for r in scored_rows],
                   [prompt_text(r.prompt) for r in kl_rows], not k and name not in ("base", "sft") and bool(kl_rows),
                   bool(k) and temperature == 1.0 and name not in ("base", "sft"), key, seed)

    def cached(self):
        """`load_eval`'s tuple when the cache holds these prompts' responses (and KL) from the same policy and
        generation settings — whatever reward model scored them — else None."""
        cached = load_eval(self.cache)
        if cached is None or [s.prompt for s in cached[0].samples] != self.wanted:
            return None
        if (self.trained and cached[2] != self.wanted_kl) or (self.sampled_kl and cached[1] is None):
            return None
        generation = [{k: v for k, v in (d or {}).items() if k != "rm"} for d in (cached[3], self.key)]
        return cached if same_record(*generation) else None
