"""PPO (or RLOO / GRPO) on the demo task, then the held-out evaluation against the SFT policy.

    .venv/bin/python benchmarks/ppo_demo.py [--estimator gae|rloo|grpo] [--reward rm|gold] [--eval-prompts 200]
        [-- any `tether ppo` override, e.g. --train.max_steps 20]

Trains from configs/demo/ppo.yaml (policy runs/demo/sft, reward model runs/demo/rm, prompts
runs/demo/data/rl_prompts.jsonl) into runs/demo/ppo-<estimator>-<reward>, then evaluates on N held-out
prompts of runs/demo/data/eval_prompts.jsonl (the first N after interleaving the ten families; greedy, gold
judge): gold score before/after, win rate of PPO over SFT (ties half, Wilson 95 % CI), proxy reward (RM
mean score of the greedy responses) before/after, response length, and KL(PPO ‖ SFT) on PPO's own
temperature-1 samples (k1, sequence level). Writes
benchmarks/results/ppo_demo_<estimator>_<reward>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import write_result

from tether.data.records import interleave_by
from tether.data.validate import load_records
from tether.eval.comparison import attach_proxy
from tether.eval.evaluate import compare, evaluate_policy, kl_to_reference
from tether.models.loading import freeze, load_causal_lm, load_tokenizer
from tether.models.scalar_head import ScalarHeadModel
from tether.runtime.config import load_config
from tether.train.ppo import PPOConfig, train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimator", default="gae", choices=["gae", "rloo", "grpo"])
    parser.add_argument("--reward", default="rm", choices=["rm", "gold"])
    parser.add_argument("--eval-prompts", type=int, default=200, help="Held-out prompts evaluated (greedy).")
    parser.add_argument("--kl-prompts", type=int, default=100, help="Prompts for the KL estimate (1 sample each).")
    parser.add_argument("--config", default=str(ROOT / "configs/demo/ppo.yaml"))
    args, overrides = parser.parse_known_args()
    name = f"{args.estimator}_{args.reward}"
    cfg = load_config(PPOConfig, args.config, ["--advantage_estimator", args.estimator, "--reward", args.reward,
                                               "--output_dir", f"runs/demo/ppo-{args.estimator}-{args.reward}",
                                               *[o for o in overrides if o != "--"]])
    started = time.perf_counter()
    result = train(cfg)
    train_seconds = time.perf_counter() - started

    rows = interleave_by(load_records(ROOT / "runs/demo/data/eval_prompts.jsonl", "prompt")[0])  # spans families
    rows = rows[: args.eval_prompts]
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.max_length)
    sft = freeze(load_causal_lm(cfg.model.name, tokenizer))
    ppo = freeze(load_causal_lm(str(result.output_dir), tokenizer))
    t0 = time.perf_counter()
    evals = {label: evaluate_policy(label, model, tokenizer, rows, show_progress=False)
             for label, model in (("sft", sft), ("ppo", ppo))}
    proxy = {}
    if Path(cfg.reward_model).is_dir():
        rm = freeze(ScalarHeadModel.from_pretrained(cfg.reward_model))
        rm_tok = load_tokenizer(cfg.reward_model)
        proxy = {label: attach_proxy(e, rows, rm, rm_tok) for label, e in evals.items()}
    kl = kl_to_reference(ppo, sft, tokenizer, rows[: args.kl_prompts])  # temperature 1, as the demo samples
    out = {
        "command": "benchmarks/ppo_demo.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
                   + (" " + " ".join(overrides) if overrides else ""),
        "estimator": args.estimator, "reward": args.reward, "iterations": result.steps,
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - t0, 1),
        "eval_prompts": len(rows), "win_rate_ppo_vs_sft": compare(evals["ppo"], evals["sft"]),
        "gold": {k: {"mean": e.gold_mean, "ci": e.gold_ci, "correct_rate": e.correct_rate} for k, e in evals.items()},
        "proxy_reward": proxy, "mean_tokens": {k: e.mean_tokens for k, e in evals.items()},
        "eos_rate": {k: e.eos_rate for k, e in evals.items()}, "kl_ppo_to_sft": kl,
        "last_train_metrics": {k: v for k, v in result.metrics.items() if not k.startswith(("time/", "perf/"))},
    }
    path = write_result(f"ppo_demo_{name}", out)
    w = out["win_rate_ppo_vs_sft"]
    print(f"{name}: {result.steps} iterations in {train_seconds:.0f} s; gold {evals['sft'].gold_mean:.3f} → "
          f"{evals['ppo'].gold_mean:.3f}; win rate {w['win_rate']:.1%} ({w['ci_low']:.1%}–{w['ci_high']:.1%}, "
          f"{w['wins']}W/{w['ties']}T/{w['losses']}L); KL {kl['kl']:.2f} nats; tokens "
          f"{evals['sft'].mean_tokens:.1f} → {evals['ppo'].mean_tokens:.1f}; proxy {proxy} → {path}")


if __name__ == "__main__":
    main()
