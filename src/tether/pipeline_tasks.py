"""What each demo-pipeline stage after SFT runs, as picklable tasks (`pipeline._Stage.task`): in this process, or in
a worker process (`pipeline_workers`, `runtime.workers`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tether.data.validate import save_records


def label_on_policy(policy_dir: Path, rows, out: Path, samples_per_prompt: int, seed: int, log=print,
                    max_new_tokens: int = 64) -> dict:
    """Sample K responses per prompt from the SFT policy and label pairs with the gold judge."""
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.sampling import labelling
    from tether.sampling.generate import SamplingConfig

    tokenizer = load_tokenizer(str(policy_dir))
    policy = freeze(load_causal_lm(str(policy_dir), tokenizer))
    sampling = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=max_new_tokens)
    cands = labelling.sample_candidates(policy, tokenizer, rows, samples_per_prompt, sampling, seed)
    pairs, stats = labelling.pairs_from_scores(rows, cands, labelling.gold_scores(rows, cands), "gold",
                                               max_pairs_per_prompt=2, seed=seed)
    save_records(out, pairs)
    log(f"      {out.name}: {stats.pairs} pairs from {stats.prompts} prompts × {samples_per_prompt} samples "
        f"(ties dropped {stats.ties_dropped}, duplicates dropped {stats.duplicates_dropped})")
    return {"labels": {"pairs": stats.pairs, "ties_dropped": stats.ties_dropped,
                       "duplicates_dropped": stats.duplicates_dropped}}


def train_task(train_fn, cfg) -> None:
    """A training stage as a task (its return value stays in the worker)."""
    train_fn(cfg)


def best_of_n_task(policy: Path, rm_dir: Path, rows, n: int, out: Path, run: Path, seed: int, name: str,
                   kl_coef: float = 0.0, temperature: float = 1.0) -> None:
    """Best-of-N against SFT's greedy evaluation, read from its cache (written before this stage runs)."""
    from tether.eval.bon_policy import BON_SAMPLING, run_best_of_n
    from tether.eval.policy_cache import load_eval

    baseline = load_eval(run / "eval" / "policy-sft.json")[0]
    run_best_of_n(str(policy), str(rm_dir), rows, n, out, baseline=baseline, seed=seed, name=name, kl_coef=kl_coef,
                  sampling=replace(BON_SAMPLING, temperature=temperature))
