"""One policy's held-out evaluation, cached on disk: what the pipeline and the experiments share.

`evaluate_cached` writes `<run>/eval/policy-<name>.json` (the gold-judge summary, every scored sample, the
proxy RM score and the KL to the SFT policy) and reuses it when it covers the same prompts with the same
response budget and the policy's weights are unchanged (a retrained policy in the same dir is evaluated again).
A reused evaluation is scored again by the current gold judge (`evaluate.rejudge`), and by the reward model
when it was retrained: the responses are cached, the verdicts are not trusted across a rubric or RM change.
"""

from __future__ import annotations

import json
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
    from tether.data.records import prompt_text
    from tether.eval.comparison import attach_proxy
    from tether.eval.evaluate import evaluate_policy, generate_and_evaluate, kl_of_generations, kl_to_reference, rejudge
    from tether.models.loading import freeze, load_causal_lm
    from tether.sampling.generate import SamplingConfig

    k = samples_per_prompt
    cache = run / "eval" / (f"policy-{name}-sampled.json" if k else f"policy-{name}.json")
    cached = load_eval(cache)
    scored_rows = [r for r in rows for _ in range(max(k, 1))]  # one per response, prompt-major
    wanted, wanted_kl = [prompt_text(r.prompt) for r in scored_rows], [prompt_text(r.prompt) for r in kl_rows]
    sampled_kl = bool(k) and temperature == 1.0 and name not in ("base", "sft")
    trained = not k and name not in ("base", "sft") and bool(kl_rows)  # greedy: KL on a separate draw
    key = {"policy": policy_fingerprint(spec), "max_new_tokens": max_new_tokens,
           "rm": policy_fingerprint(rm_spec) if rm_spec else None}
    if k:
        seed += SAMPLED_EVAL_SEED_OFFSET
        key |= {"samples_per_prompt": k, "temperature": temperature, "seed": seed}
    def generation_key(d: dict | None) -> dict:
        return {k: v for k, v in (d or {}).items() if k != "rm"}

    if cached is not None and [s.prompt for s in cached[0].samples] == wanted \
            and (not trained or cached[2] == wanted_kl) and (not sampled_kl or cached[1] is not None) \
            and same_record(generation_key(cached[3]), generation_key(key)):
        evaluation, kl_value, _, _ = cached
        log(f"      {name}: reusing {cache}")
        evaluation, changed = rejudge(evaluation, scored_rows)
        if changed:
            log(f"      {name}: {changed} of {evaluation.n} cached responses scored differently by the current "
                "gold judge; updated")
        rm_changed = not same_record(cached[3].get("rm"), key["rm"])
        if rm_changed:
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
