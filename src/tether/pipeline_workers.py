"""The demo pipeline's stages after SFT as worker jobs (`runtime.workers.run_jobs`): what `run_demo` hands to
its workers when `DemoOptions.workers` > 1 — each `_Stage`, and one evaluation per policy (greedy, and sampled),
whose responses the pipeline's evaluation stage then finds cached (docs/architecture.md, "Worker processes")."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tether.eval.policy_cache import has_cached_generation
from tether.pipeline import _reusable, _Stage
from tether.runtime.workers import Job


def worker_jobs(stages: list[_Stage], evaluations, policies: dict, stage, log, *, run: Path, sft_dir: Path,
                rm_dir: Path, tokenizer: tuple[str, int], seed: int, max_new_tokens: int, temperature: float):
    """The stages after SFT and the evaluation's generation as `runtime.workers.Job`s, the critical path first
    (labelling → RM → PPO; then DPO, the base and SFT evaluations, best-of-N, the trained policies'). Each stage
    runs in a worker unless it is finished (`before`: the same reuse check as the serial pass, with its line); each
    evaluation unless its responses are cached. The base policy's evaluation does not wait for the RM: its proxy
    score is added by the evaluation stage."""
    def log_file(key: str) -> Path:
        return run / "logs" / f"{key.replace(':', '-')}.log"

    def stage_before(st: _Stage):
        def before() -> bool:
            if _reusable(st.output, st.record(), log, is_file=st.is_file):
                stage(st.progress, st.reuse_message)
                return False
            stage(st.progress, f"{st.message} (in a worker; log {log_file(st.key)})")
            return True
        return before

    def eval_before(name: str, rows, kl_rows, k: int, key: str):
        def before() -> bool:
            if has_cached_generation(run, name, policies[name], rows, kl_rows, seed=seed, max_new_tokens=max_new_tokens,
                                     samples_per_prompt=k, temperature=temperature):
                return False
            what = f"{k} sample{'s' * (k != 1)} per prompt" if k else "greedy"
            stage("eval", f"{name}: {what} on {len(rows)} prompts (in a worker; log {log_file(key)})")
            return True
        return before

    jobs = {st.key: Job(st.key, st.task, log_file(st.key), st.needs, stage_before(st)) for st in stages}
    trained_by = {st.output: st.key for st in stages}
    for name, rows, kl_rows, k in evaluations:
        key = f"eval:{name}" + ("-sampled" if k else "")
        needs = () if name == "base" else ("rm_s", *([trained_by[Path(policies[name])]] if name != "sft" else []))
        task = partial(_evaluate_task, run, name, policies[name], rows, kl_rows, *tokenizer, sft_dir,
                       None if name == "base" else rm_dir, seed, max_new_tokens, k, temperature)
        jobs[key] = Job(key, task, log_file(key), needs, eval_before(name, rows, kl_rows, k, key))
    first = [k for k in ("label:onpolicy_pairs.jsonl", "label:eval_pairs.jsonl", "rm_s", "ppo_s") if k in jobs]
    then = [st.key for st in stages if st.progress == "preference"]
    then += ["eval:base", "eval:sft", "eval:sft-sampled", "bon_s"]
    return [jobs[k] for k in first + then if k in jobs] + [j for k, j in jobs.items() if k not in first + then]


def _evaluate_task(run: Path, name: str, spec: str, rows, kl_rows, tokenizer_spec: str, max_length: int,
                   sft_dir: Path, rm_dir: Path | None, seed: int, max_new_tokens: int, samples_per_prompt: int,
                   temperature: float) -> None:
    """One policy's evaluation (`evaluate_cached`) in a worker; without `rm_dir` the proxy score is left for the
    pipeline's evaluation stage to add."""
    from tether.eval.policy_cache import evaluate_cached
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    tokenizer = load_tokenizer(tokenizer_spec, max_length)
    sft_model = freeze(load_causal_lm(str(sft_dir), tokenizer))
    rm = freeze(ScalarHeadModel.from_pretrained(rm_dir)) if rm_dir else None
    evaluate_cached(run, name, spec, rows, kl_rows, tokenizer, sft_model, rm,
                    load_tokenizer(str(rm_dir)) if rm_dir else None, seed=seed, max_new_tokens=max_new_tokens,
                    rm_spec=str(rm_dir) if rm_dir else None, samples_per_prompt=samples_per_prompt,
                    temperature=temperature)
