"""The demo pipeline on the embedded default: data → SFT → on-policy labelling → reward model →
direct preference optimisation (DPO by default; any of the family) → evaluation.

Each stage's output is reused when complete (its `result.json` / output file exists), so re-running
resumes instead of redoing finished work. Later stages (PPO, best-of-N, report) extend it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tether.data.demo_task import make_demo_task
from tether.data.validate import load_records, save_records
from tether.runtime.config import load_config


def default_config_dir() -> Path:
    """$TETHER_CONFIG_DIR, else ./configs/demo, else the repo's configs/demo next to the package source."""
    if os.environ.get("TETHER_CONFIG_DIR"):
        return Path(os.environ["TETHER_CONFIG_DIR"])
    local = Path("configs/demo")
    return local if local.is_dir() else Path(__file__).resolve().parents[2] / "configs" / "demo"


@dataclass
class DemoOptions:
    name: str = "demo"
    """Run name: everything goes to runs/<name>/."""
    runs_dir: str = "runs"
    """Parent of run dirs."""
    seed: int = 0
    """Seed of the demo task and every stage."""
    quick: bool = False
    """Fewer steps and prompts: every stage runs, no quality bars (smoke runs)."""
    label_prompts: int = 300
    """Preference prompts whose SFT samples are labelled by the gold judge (on-policy RM training pairs)."""
    eval_label_prompts: int = 150
    """Held-out eval prompts whose SFT samples make the RM's held-out pairs."""
    samples_per_prompt: int = 4
    """Responses sampled per prompt for labelling."""
    preference_losses: tuple[str, ...] = ("dpo",)
    """Direct preference losses trained from the SFT policy and evaluated (any of dpo, ipo, kto, orpo, simpo)."""
    kl_prompts: int = 100
    """Held-out prompts on which each preference-trained policy's KL to the SFT policy is estimated."""
    config_dir: str = field(default_factory=lambda: str(default_config_dir()))
    """Where the stage YAML configs live (see `default_config_dir`)."""


def _stage_done(path: Path) -> bool:
    return (path / "result.json").is_file()


def _label_on_policy(policy_dir: Path, rows, out: Path, opts: DemoOptions, seed: int, log) -> dict:
    """Sample K responses per prompt from the SFT policy and label pairs with the gold judge."""
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.sampling import labelling
    from tether.sampling.generate import SamplingConfig

    tokenizer = load_tokenizer(str(policy_dir))
    policy = freeze(load_causal_lm(str(policy_dir), tokenizer))
    sampling = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=64, batch_size=64)
    cands = labelling.sample_candidates(policy, tokenizer, rows, opts.samples_per_prompt, sampling, seed)
    pairs, stats = labelling.pairs_from_scores(rows, cands, labelling.gold_scores(rows, cands), "gold",
                                               max_pairs_per_prompt=2, seed=seed)
    save_records(out, pairs)
    log(f"      {out.name}: {stats.pairs} pairs from {stats.prompts} prompts × {opts.samples_per_prompt} samples "
        f"(ties dropped {stats.ties_dropped}, duplicates dropped {stats.duplicates_dropped})")
    return {"pairs": stats.pairs, "ties_dropped": stats.ties_dropped, "duplicates_dropped": stats.duplicates_dropped}


def run_demo(opts: DemoOptions, log=print) -> dict:
    from tether.eval.evaluate import compare, evaluate_policy, kl_to_reference, write_eval
    from tether.eval.reward_eval import evaluate_reward_model, write_report
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel
    from tether.train import dpo, reward, sft

    run = Path(opts.runs_dir) / opts.name
    timings: dict[str, float] = {}
    quick = opts.quick

    # 1. Demo task data (deterministic in the seed).
    t0 = time.perf_counter()
    data_dir = run / "data"
    if not (data_dir / "manifest.json").is_file():
        log(f"[1/6] data: generating the demo task into {data_dir}")
        make_demo_task(seed=opts.seed).write(data_dir)
    else:
        log(f"[1/6] data: reusing {data_dir}")
    timings["data_s"] = time.perf_counter() - t0

    # 2. SFT.
    t0 = time.perf_counter()
    sft_dir = run / "sft"
    overrides = ["--output_dir", str(sft_dir), "--data.train_file", str(data_dir / "sft.jsonl"),
                 "--train.seed", str(opts.seed)]
    if quick:
        overrides += ["--train.max_steps", "6", "--train.eval_steps", "0", "--train.save_steps", "0",
                      "--data.max_eval_examples", "16"]
    sft_cfg = load_config(sft.SFTConfig, str(Path(opts.config_dir) / "sft.yaml"), overrides)
    if _stage_done(sft_dir):
        log(f"[2/6] sft: reusing the finished run in {sft_dir}")
    else:
        log(f"[2/6] sft: {sft_cfg.train.max_steps} steps × {sft_cfg.train.batch_size} examples → {sft_dir}")
        sft.train(sft_cfg)
    timings["sft_s"] = time.perf_counter() - t0

    # 3. On-policy preference collection: SFT samples labelled by the gold judge (train and held-out prompts).
    t0 = time.perf_counter()
    label_stats = {}
    n_train, n_eval = (24, 16) if quick else (opts.label_prompts, opts.eval_label_prompts)
    pref_prompts = [r for r in _as_prompts(load_records(data_dir / "preference.jsonl", "preference")[0])][:n_train]
    eval_rows, _ = load_records(data_dir / "eval_prompts.jsonl", "prompt")
    targets = [("onpolicy_pairs.jsonl", pref_prompts, opts.seed + 1), ("eval_pairs.jsonl", eval_rows[:n_eval], opts.seed + 2)]
    for fname, rows, seed in targets:
        if (data_dir / fname).is_file():
            log(f"[3/6] label: reusing {data_dir / fname}")
            continue
        log(f"[3/6] label: sampling {opts.samples_per_prompt} SFT responses for {len(rows)} prompts, gold-judge pairs")
        label_stats[fname] = _label_on_policy(sft_dir, rows, data_dir / fname, opts, seed, log)
    timings["label_s"] = time.perf_counter() - t0

    # 4. Reward model: from the SFT backbone, on templated + on-policy pairs; held out: eval-prompt pairs.
    t0 = time.perf_counter()
    rm_dir = run / "rm"
    overrides = ["--output_dir", str(rm_dir), "--model.name", str(sft_dir), "--train.seed", str(opts.seed),
                 "--data.train_files", f"[{data_dir / 'preference.jsonl'}, {data_dir / 'onpolicy_pairs.jsonl'}]",
                 "--data.eval_file", str(data_dir / "eval_pairs.jsonl"), "--data.norm_file", str(data_dir / "sft.jsonl")]
    if quick:
        overrides += ["--train.max_steps", "4", "--train.eval_steps", "0", "--train.save_steps", "0",
                      "--data.max_eval_pairs", "32", "--data.max_norm_examples", "16"]
    rm_cfg = load_config(reward.RMConfig, str(Path(opts.config_dir) / "rm.yaml"), overrides)
    if _stage_done(rm_dir):
        log(f"[4/6] rm: reusing the finished run in {rm_dir}")
    else:
        log(f"[4/6] rm: {rm_cfg.train.max_steps} steps × {rm_cfg.train.batch_size} pairs → {rm_dir}")
        reward.train(rm_cfg)
    timings["rm_s"] = time.perf_counter() - t0

    # 5. Direct preference optimisation from the SFT policy, on the same templated + on-policy pairs.
    pref_runs = {}
    for loss in opts.preference_losses:
        t0 = time.perf_counter()
        out = run / f"dpo-{loss}"
        overrides = ["--output_dir", str(out), "--loss", loss, "--model.name", str(sft_dir), "--train.seed",
                     str(opts.seed), "--data.train_files",
                     f"[{data_dir / 'preference.jsonl'}, {data_dir / 'onpolicy_pairs.jsonl'}]"]
        if quick:
            overrides += ["--train.max_steps", "3", "--data.max_eval_pairs", "8"]
        dpo_cfg = load_config(dpo.DPOConfig, str(Path(opts.config_dir) / "dpo.yaml"), overrides)
        if _stage_done(out):
            log(f"[5/6] {loss}: reusing the finished run in {out}")
        else:
            log(f"[5/6] {loss}: {dpo_cfg.train.max_steps} steps × {dpo_cfg.train.batch_size} pairs → {out}")
            dpo.train(dpo_cfg)
        pref_runs[loss] = out
        timings[f"{loss}_s"] = time.perf_counter() - t0

    # 6. Evaluate on held-out prompts (greedy, gold judge): base vs SFT, each preference policy vs SFT and its
    #    KL to SFT; the RM on held-out on-policy pairs.
    t0 = time.perf_counter()
    rows = eval_rows[:24] if quick else eval_rows
    kl_rows = rows[: 8 if quick else opts.kl_prompts]
    log(f"[6/6] eval: {len(rows)} held-out prompts (greedy, gold judge); KL to SFT on {len(kl_rows)}; RM on held-out pairs")
    tokenizer = load_tokenizer(sft_cfg.model.name, sft_cfg.model.max_length)
    sft_model = freeze(load_causal_lm(str(sft_dir), tokenizer))
    evals = {"base": evaluate_policy("base", load_causal_lm(sft_cfg.model.name, tokenizer), tokenizer, rows),
             "sft": evaluate_policy("sft", sft_model, tokenizer, rows)}
    comparisons = {"sft_vs_base": compare(evals["sft"], evals["base"])}
    kl = {}
    for loss, out in pref_runs.items():
        model = freeze(load_causal_lm(str(out), tokenizer))
        evals[loss] = evaluate_policy(loss, model, tokenizer, rows)
        comparisons[f"{loss}_vs_sft"] = compare(evals[loss], evals["sft"])
        kl[loss] = kl_to_reference(model, sft_model, tokenizer, kl_rows, seed=opts.seed)
        del model
    write_eval(run / "eval" / "policies.json", list(evals.values()), comparisons)
    held_out, _ = load_records(data_dir / "eval_pairs.jsonl", "preference")
    rm_report = evaluate_reward_model(freeze(ScalarHeadModel.from_pretrained(rm_dir)), load_tokenizer(str(rm_dir)),
                                      held_out, rm_cfg.model.max_length)
    write_report(run / "eval" / "rm.json", rm_report)
    timings["eval_s"] = time.perf_counter() - t0
    train_seconds = {loss: json.loads((out / "result.json").read_text()).get("train_seconds")
                     for loss, out in pref_runs.items()}
    summary = {"policies": {e.name: e.summary() for e in evals.values()}, "comparisons": comparisons,
               "kl_to_sft": kl, "preference_train_seconds": train_seconds,
               "reward_model": {k: v for k, v in rm_report.items() if k != "reliability"},
               "labelling": label_stats, "timings": timings}
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _as_prompts(pairs):
    """Distinct prompts of preference pairs, in first-seen order, with their meta."""
    from tether.data.records import PromptRow

    seen, rows = set(), []
    for p in pairs:
        key = json.dumps(p.prompt)
        if key not in seen:
            seen.add(key)
            rows.append(PromptRow(p.prompt, {k: v for k, v in p.meta.items() if k != "source"}))
    return rows
