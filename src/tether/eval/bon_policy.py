"""Best-of-N as an evaluated policy: the `tether bon` stage, callable from the pipeline.

`run_best_of_n` loads the policy (and reward model), samples N responses per prompt, keeps the best
(`tether.sampling.best_of_n`), writes the candidates, the chosen responses as an SFT dataset and a summary,
and — with demo-task prompts — scores the chosen responses with the gold judge as a `PolicyEval` and
compares them with a baseline's greedy responses (win rate, ties half, 95 % CI).

Output dir: candidates.jsonl, sft.jsonl, result.json (summary: n, analytic KL, proxy and gold before/after
selection, best-of-k curves, eval, vs_baseline), eval.json + eval_samples.jsonl (baseline vs best-of-N).
The stage is complete when result.json exists. `rejudge_best_of_n` brings a finished run's gold-judge figures
up to date with the current judge without sampling again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tether.data.records import PromptRow, prompt_text
from tether.eval.evaluate import (
    PolicyEval,
    ScoredSample,
    compare,
    evaluate_generations,
    evaluate_policy,
    judge,
    rejudge,
    summarise,
    write_eval,
)
from tether.sampling.best_of_n import best_of_n, gold_summary, regularised_scores, write_best_of_n
from tether.sampling.generate import SamplingConfig


def _matching_baseline(baseline: PolicyEval, rows: list[PromptRow]) -> PolicyEval:
    """`baseline` restricted to the first len(rows) prompts, which must be `rows` in order."""
    wanted = [prompt_text(r.prompt) for r in rows]
    have = [s.prompt for s in baseline.samples[: len(rows)]]
    if have != wanted:
        raise ValueError(f"baseline '{baseline.name}' was not evaluated on these prompts (in this order)")
    if len(baseline.samples) == len(rows):
        return baseline
    return summarise(baseline.name, baseline.samples[: len(rows)])


BON_SAMPLING = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=64)
"""How `run_best_of_n` samples its candidates unless told otherwise (the demo changes only the temperature)."""


def run_best_of_n(policy: str, reward_model: str | None, rows: list[PromptRow], n: int, out_dir: Path, *,
                  scorer: str = "rm", baseline: str | PolicyEval | None = "policy",
                  sampling: SamplingConfig | None = None, missing_eos_penalty: float = 1.0,
                  min_score: float | None = None, seed: int = 0, name: str | None = None, kl_coef: float = 0.0,
                  log=print) -> dict:
    """Best-of-`n` of `policy` (dir, embedded name or HF id) under `reward_model` (dir; None with scorer 'gold').

    baseline: "policy" (default) = the same policy decoded greedily, another policy spec evaluated greedily,
    an already computed `PolicyEval` on these prompts (a prefix of its prompts is fine), or None (no comparison).
    The comparison and the gold evaluation need demo-task prompts; without them only the RM summary is written.
    kl_coef β > 0: the KL-regularised pick, argmax of RM score + β·log π(y|x) (`sampling/best_of_n.py`).
    Returns the summary written to `out_dir`/result.json.
    """
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer

    out_dir = Path(out_dir)
    name = name or f"bon{n}"
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(policy)
    model = freeze(load_causal_lm(policy, tokenizer))
    rm = rm_tokenizer = None
    if scorer == "rm":
        if reward_model is None:
            raise ValueError("scorer 'rm' needs a reward model dir")
        from tether.models.scalar_head import ScalarHeadModel

        rm = freeze(ScalarHeadModel.from_pretrained(Path(reward_model)))
        rm_tokenizer = load_tokenizer(str(reward_model))
    sampling = sampling or BON_SAMPLING
    log(f"best-of-{n}: sampling {n} × {len(rows)} responses from {policy}, scoring with "
        f"{reward_model if scorer == 'rm' else 'the gold judge'}"
        + (f", regularised by {kl_coef:g}·log π(y|x)" if kl_coef else ""))
    result = best_of_n(model, tokenizer, rows, n, sampling, scorer=scorer, reward_model=rm, rm_tokenizer=rm_tokenizer,
                       missing_eos_penalty=missing_eos_penalty, seed=seed, kl_coef=kl_coef)
    extra: dict = {"name": name, "policy": str(policy), "reward_model": str(reward_model) if reward_model else None}
    if result.gold is not None:
        bon_eval = evaluate_generations(name, rows, result.chosen_generations())
        extra["eval"] = bon_eval.summary()
        if baseline is not None:
            if isinstance(baseline, PolicyEval):
                base_eval = _matching_baseline(baseline, rows)
            else:
                spec = policy if baseline == "policy" else baseline
                base_model = model if spec == policy else freeze(load_causal_lm(spec, tokenizer))
                base_eval = evaluate_policy("baseline", base_model, tokenizer, rows,
                                            SamplingConfig(do_sample=False, max_new_tokens=sampling.max_new_tokens),
                                            seed=seed, show_progress=False)
                extra["baseline_spec"] = str(spec)
            comparison = compare(bon_eval, base_eval)
            extra["baseline"] = base_eval.name
            extra["baseline_eval"] = base_eval.summary()
            extra["vs_baseline"] = comparison
            write_eval(out_dir / "eval.json", [base_eval, bon_eval], {f"{name}_vs_{base_eval.name}": comparison})
    extra["seconds"] = time.perf_counter() - t0
    summary = write_best_of_n(out_dir, result, min_score=min_score, extra=extra)
    shown = {k: round(summary[k], 4) for k in ("kl_analytic", "proxy_before", "proxy_after")}
    log(f"best-of-{n} → {out_dir}: {json.dumps(shown)}")
    return summary


def rejudge_best_of_n(out_dir: Path, log=print) -> dict:
    """The summary (result.json) of a finished best-of-N run under a reward model, with every candidate scored
    again by the current gold judge: gold before/after selection, the gold best-of-k curve, the chosen responses'
    evaluation and the comparison with the baseline are recomputed (and the files rewritten) when any candidate's
    gold score changed. The selection is the reward model's, so it stands; a run selected by the gold judge
    itself is returned as it is, with a warning when its verdicts are stale (re-run it)."""
    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "result.json").read_text())
    lines = [json.loads(line) for line in (out_dir / "candidates.jsonl").read_text().splitlines()]
    if not lines or "gold" not in lines[0]["candidates"][0]:
        return summary
    fresh = [[judge(d["meta"], prompt_text(d["prompt"]), c["text"], c["truncated"], c["n_tokens"])
              for c in d["candidates"]] for d in lines]
    changed = sum(s.gold != c["gold"] for ss, d in zip(fresh, lines) for s, c in zip(ss, d["candidates"]))
    if not changed:
        return summary
    if summary.get("scorer") == "gold":
        log(f"WARNING: {out_dir} selected by an earlier gold judge ({changed} candidates score differently now); "
            "re-run it")
        return summary
    log(f"      best-of-N: {changed} candidates scored differently by the current gold judge; updating {out_dir}")
    chosen = [d["chosen"] for d in lines]
    beta = summary.get("kl_coef") or 0.0  # the selection the run made: the same rule as its pick
    logprobs = [[c["policy_logprob"] for c in d["candidates"]] for d in lines] if beta else None
    selection = regularised_scores([[c["score"] for c in d["candidates"]] for d in lines], logprobs, beta)
    summary |= gold_summary(selection, [[s.gold for s in ss] for ss in fresh], chosen)
    bon_eval = summarise(summary.get("name", "bon"), [ss[i] for ss, i in zip(fresh, chosen)])
    summary["eval"] = bon_eval.summary()
    samples_file = out_dir / "eval_samples.jsonl"
    if summary.get("baseline") and samples_file.is_file():
        base = summary["baseline"]
        stored = [ScoredSample(**json.loads(line)[base]) for line in samples_file.read_text().splitlines()]
        rows = [PromptRow(d["prompt"], d["meta"]) for d in lines[: len(stored)]]
        base_eval, _ = rejudge(summarise(base, stored), rows)
        if len(stored) != len(lines):
            bon_eval = summarise(bon_eval.name, bon_eval.samples[: len(stored)])
        comparison = compare(bon_eval, base_eval)
        summary |= {"baseline_eval": base_eval.summary(), "vs_baseline": comparison}
        write_eval(out_dir / "eval.json", [base_eval, bon_eval], {f"{bon_eval.name}_vs_{base}": comparison})
    for ss, d in zip(fresh, lines):
        for s, c in zip(ss, d["candidates"]):
            c["gold"] = s.gold
    (out_dir / "candidates.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines))
    (out_dir / "result.json").write_text(json.dumps(summary, indent=2))
    return summary
