"""PPO iteration speed: tether vs TRL's PPOTrainer on identical work.

    .venv/bin/python benchmarks/ppo_step.py [--rollout 16] [--new-tokens 64] [--epochs 4] [--minibatch 8]
        [--iterations 3] [--model smollm2-135m-instruct]
    (TRL part runs where `trl.experimental.ppo` imports, i.e. trl 1.12.0: pip install -e '.[bench]')

Work per iteration, the same on both sides: `--rollout` prompts (the first ones of the demo task's
rl_prompts, the same every iteration) × 1 sample at temperature 1, every response exactly `--new-tokens`
tokens (tether: rollout.min_new_tokens = --new-tokens, so EOS is not sampled before the last token;
TRL: no stop token, so it always generates `response_length` tokens); scoring by a reward model (the policy's
decoder with a fresh scalar head), reference logprobs (a frozen copy of the policy) and
values from a separate value model (the policy's decoder with a fresh head, trained alongside); GAE;
`--epochs` passes of clipped policy + value updates in minibatches of `--minibatch` rows (one forward of
`--minibatch` rows and one AdamW step each). Full fine-tuning in fp32, no LoRA, no gradient checkpointing.

Each side runs in its own process (peak RSS is per side) for `--iterations` iterations; the first is
warm-up, the rest are averaged. Reports seconds per iteration split into generation / scoring+reference
(everything between generation and the first update: RM, reference, values, old logprobs) / training (the
K epochs of updates), generation tokens/s, response tokens per iteration second, peak RSS, and the ratio
TRL / tether overall and per phase. Writes benchmarks/results/ppo_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import mean_after_warmup, write_result

PHASES = ("generate", "score", "train")
NOTES = [
    "phases: generate = sampling the rollout; score = everything from the end of generation to the first "
    "update (RM, reference, values, old logprobs, advantages); train = the K epochs of minibatch updates; "
    "other = the rest of the iteration (prompt batch, logging, clean-up)",
    "tether: the response length is forced by rollout.min_new_tokens (EOS is not sampled before it); "
    "`forced_length` says whether every response had it",
    "tether scoring: per length-grouped microbatch of minibatch rows, a policy forward (old logprobs, entropy), "
    "the value model, the reference and the RM; the LM head runs only at the response positions",
    "TRL 1.12 scoring: old logprobs come from the generation scores (no separate policy forward); the "
    "reference forward computes logits at every position; value model and RM score all positions; "
    "forwards run on local_rollout_forward_batch_size = rollout rows at once",
    "TRL 1.12 training: policy logits at every position plus the critic backbone per minibatch, entropy "
    "from a full softmax under no_grad, no gradient clipping (tether clips to 1.0)",
    "optimizer: torch's fused AdamW on both sides (transformers' default `adamw_torch_fused`; tether's "
    "build_optimizer). Before 2026-12-06 TRL ran with `adamw_torch`, torch's per-tensor CPU loop, which "
    "cost it ~1.1 s per optimizer step (8.6 s per iteration here) that tether did not pay",
]
TRL_MISSING = "TRL PPO not available (needs trl==1.12.0: pip install 'trl==1.12.0')"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def summarise(iterations: list[dict], new_tokens_key: str) -> dict:
    """Mean after warm-up of each phase, tokens/s, and the per-iteration records."""
    mean = {k: mean_after_warmup([it[k] for it in iterations]) for k in ("total", *PHASES)}
    tokens = mean_after_warmup([it[new_tokens_key] for it in iterations])
    return {"seconds_per_iteration": round(mean["total"], 3),
            **{f"{p}_s": round(mean[p], 3) for p in PHASES},
            "other_s": round(mean["total"] - sum(mean[p] for p in PHASES), 3),
            "response_tokens_per_iteration": round(tokens, 1),
            "gen_tokens_per_s": round(tokens / mean["generate"], 1),
            "tokens_per_s": round(tokens / mean["total"], 1),
            "per_iteration": [{k: round(v, 3) for k, v in it.items()} for it in iterations]}


# --- tether ----------------------------------------------------------------------------------------

def run_tether(args, work: Path) -> dict:
    import torch

    from tether.models.loading import freeze, load_tokenizer, resolve_model_path
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.spec import ModelConfig
    from tether.runtime.metrics import read_metrics
    from tether.train.loop import TrainConfig
    from tether.train.ppo import PPOConfig, PPODataConfig, PPOHParams, RolloutConfig, train

    model_dir = resolve_model_path(args.model)
    tok = load_tokenizer(model_dir, args.max_length)
    reward_model = freeze(ScalarHeadModel.from_pretrained_lm(model_dir, tok, seed=1))
    cfg = PPOConfig(
        output_dir=str(work / "tether-run"), advantage_estimator="gae", reward="rm", critic="separate",
        value_model=model_dir,  # a causal LM: its decoder gets a fresh value head
        model=ModelConfig(name=model_dir, dtype="float32", max_length=args.max_length, use_lora=False),
        data=PPODataConfig(prompts_file=str(work / "prompts.jsonl"), format="tether"),
        rollout=RolloutConfig(prompts_per_step=args.rollout, samples_per_prompt=1, max_new_tokens=args.new_tokens,
                              min_new_tokens=args.new_tokens,
                              temperature=1.0, generation_batch_size=args.rollout),
        ppo=PPOHParams(num_epochs=args.epochs, missing_eos_penalty=None, stop_on_catastrophic_kl=False,
                       sample_table_steps=0),
        train=TrainConfig(seed=0, learning_rate=args.lr, adam_epsilon=1e-5, lr_scheduler_type="constant",
                          warmup_ratio=0.0, max_steps=args.iterations, batch_size=args.minibatch,
                          micro_batch_size=args.minibatch, logging_steps=1, save_steps=0, report_to=[]))
    for part in (cfg, cfg.model, cfg.train):
        part.validate()
    started = time.perf_counter()
    train(cfg, reward_model=reward_model)
    wall = time.perf_counter() - started
    log = read_metrics(work / "tether-run" / "metrics.jsonl")
    iterations = [{"total": m["perf/seconds"], "generate": m["time/generate"], "score": m["time/score"],
                   "train": m["time/train"], "response_tokens": m["gen/response_len"] * args.rollout,
                   "eos_rate": m["gen/eos_rate"]} for m in log]
    forced = all(it["response_tokens"] == args.new_tokens * args.rollout for it in iterations)
    return {**summarise(iterations, "response_tokens"), "forced_length": forced,
            "train_call_wall_s": round(wall, 1), "peak_rss_mib": round(peak_rss_mib()),
            "threads": torch.get_num_threads()}


# --- TRL -------------------------------------------------------------------------------------------

def trl_available() -> bool:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the "trl.experimental is unstable" warning
    try:
        import trl.experimental.ppo  # noqa: F401
    except ImportError:
        return False
    return True


def run_trl(args, work: Path) -> dict:
    """TRL 1.12's experimental PPOTrainer on the same work; its `batch_generation` and `forward` are wrapped
    to time the phases (generation ends when batch_generation returns; training starts at the first forward
    with gradients on; an iteration ends at on_step_end)."""
    import torch
    import trl

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import trl.experimental.ppo.ppo_trainer as ppo_module
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from tether.data.tokenization import encode_prompt
    from tether.data.validate import load_records
    from tether.models.loading import load_tokenizer, resolve_model_path

    path = resolve_model_path(args.model)
    tok = load_tokenizer(args.model, args.max_length)
    tok.padding_side = "left"  # TRL's queries share one context length: left-padded prompts

    def lm():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.config.pad_token_id = model.generation_config.pad_token_id = tok.pad_token_id
        return model

    def scalar():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        return model

    rows, _ = load_records(work / "prompts.jsonl", "prompt", "tether")
    data = Dataset.from_list([{"input_ids": encode_prompt(tok, r.prompt)} for r in rows])

    marks: dict[str, float] = {}
    iterations: list[dict] = []
    generate, forward = ppo_module.batch_generation, ppo_module.forward

    def timed_generate(model, queries, *a, **k):
        marks.pop("train", None)
        marks["generate"] = time.perf_counter()
        out = generate(model, queries, *a, **k)
        marks["score"] = time.perf_counter()
        marks["response_tokens"] = float((out[0].shape[1] - queries.shape[1]) * queries.shape[0])
        return out

    def timed_forward(model, *a, **k):
        if torch.is_grad_enabled() and "train" not in marks:
            marks["train"] = time.perf_counter()
        return forward(model, *a, **k)

    class IterationTimer(TrainerCallback):
        def on_train_begin(self, a, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_step_end(self, a, state, control, **kwargs):
            now = time.perf_counter()
            iterations.append({"total": now - self.last, "generate": marks["score"] - marks["generate"],
                               "score": marks["train"] - marks["score"], "train": now - marks["train"],
                               "response_tokens": marks["response_tokens"]})
            self.last = now

    ppo_module.batch_generation, ppo_module.forward = timed_generate, timed_forward
    # Rollout = per_device_train_batch_size × gradient_accumulation_steps rows; minibatch = rollout /
    # num_mini_batches. With accumulation 1 each minibatch is one forward and one optimizer step, as in tether.
    config = PPOConfig(
        output_dir=str(work / "trl-run"), per_device_train_batch_size=args.rollout, gradient_accumulation_steps=1,
        num_mini_batches=args.rollout // args.minibatch, local_rollout_forward_batch_size=args.rollout,
        total_episodes=args.rollout * args.iterations, num_ppo_epochs=args.epochs, response_length=args.new_tokens,
        stop_token=None, temperature=1.0, missing_eos_penalty=None, kl_coef=0.05, learning_rate=args.lr,
        lr_scheduler_type="constant", adam_epsilon=1e-5, optim="adamw_torch_fused", num_sample_generations=0,
        seed=0, bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)
    trainer = PPOTrainer(args=config, processing_class=tok, model=lm(), ref_model=lm(), reward_model=scalar(),
                         value_model=scalar(), train_dataset=data, callbacks=[IterationTimer()])
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    forced = all(it["response_tokens"] == args.new_tokens * args.rollout for it in iterations)
    return {"version": trl.__version__, **summarise(iterations, "response_tokens"), "forced_length": forced,
            "train_call_wall_s": round(wall, 1), "peak_rss_mib": round(peak_rss_mib()),
            "threads": torch.get_num_threads()}


# --- driver ----------------------------------------------------------------------------------------

def run_side(side: str, argv: list[str], work: Path) -> dict:
    """One side in a fresh process (so each peak RSS is its own); returns its JSON."""
    out = work / f"{side}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side, "--work", str(work)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def write_prompts(n: int, path: Path) -> None:
    from tether.data.demo_task import make_demo_task
    from tether.data.validate import save_records

    save_records(path, make_demo_task(seed=0).rl_prompts[:n])


def report(name: str, r: dict) -> str:
    return (f"{name:7s} {r['seconds_per_iteration']:8.2f} s/iter = generate {r['generate_s']:.2f} + score/ref "
            f"{r['score_s']:.2f} + train {r['train_s']:.2f} + other {r['other_s']:.2f}   "
            f"gen {r['gen_tokens_per_s']:.1f} tok/s   {r['tokens_per_s']:.1f} resp tok/s   "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rollout", type=int, default=16, help="Rows per rollout (prompts × 1 sample).")
    ap.add_argument("--new-tokens", type=int, default=64, help="Response length (forced on both sides).")
    ap.add_argument("--epochs", type=int, default=4, help="PPO epochs per rollout.")
    ap.add_argument("--minibatch", type=int, default=8, help="Rows per minibatch (= per forward, per optimizer step).")
    ap.add_argument("--iterations", type=int, default=3, help="PPO iterations per side; the first is warm-up.")
    ap.add_argument("--max-length", type=int, default=512, help="Prompt + response budget (tether's model.max_length).")
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--side", choices=["both", "tether", "trl"], default="both", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.iterations < 2:
        ap.error("--iterations must be >= 2 (the first is warm-up)")
    if args.rollout % args.minibatch:
        ap.error("--minibatch must divide --rollout")

    if args.side != "both":  # a child: one side, its result as JSON in the work dir
        work = Path(args.work)
        result = run_tether(args, work) if args.side == "tether" else run_trl(args, work)
        (work / f"{args.side}.json").write_text(json.dumps(result))
        return

    argv = sys.argv[1:]
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/ppo_step.py", *argv])
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    result = {
        "model": args.model, "command": command,
        "settings": {"rollout_rows": args.rollout, "prompts_per_rollout": args.rollout, "samples_per_prompt": 1,
                     "prompts": f"demo task rl_prompts[:{args.rollout}], the same every iteration",
                     "response_tokens": args.new_tokens, "forced_response_length": True, "temperature": 1.0,
                     "ppo_epochs": args.epochs, "minibatch_rows": args.minibatch, "micro_batch_rows": args.minibatch,
                     "optimizer_steps_per_iteration": args.epochs * args.rollout // args.minibatch,
                     "generation_batch_rows": args.rollout, "critic": "separate value model (policy LM + fresh head)",
                     "reward_model": "policy LM + fresh scalar head", "reference": "frozen copy of the policy",
                     "dtype": "float32", "lora": False, "gradient_checkpointing": False,
                     "optimizer": "torch AdamW, fused kernel",
                     "learning_rate": args.lr, "iterations": args.iterations, "warmup_iterations": 1},
        "notes": NOTES,
    }
    with tempfile.TemporaryDirectory(prefix="tether-bench-ppo-") as tmp:
        work = Path(tmp)
        write_prompts(args.rollout, work / "prompts.jsonl")
        tether = run_side("tether", argv, work)
        result["threads"] = tether["threads"]
        result["tether"] = tether
        if not tether["forced_length"]:
            print("tether: responses were not all exactly --new-tokens long; tokens/s uses the actual counts")
        if trl_available():
            trl_r = run_side("trl", argv, work)
        else:
            trl_r = None
            print(TRL_MISSING)
    result["trl"] = trl_r
    print(report("tether", tether))
    if trl_r is None:
        result["trl_unavailable"] = TRL_MISSING
        result["speedup_vs_trl"] = None
    else:
        print(report("trl", trl_r))
        ratio = trl_r["seconds_per_iteration"] / tether["seconds_per_iteration"]
        per_phase = {p: round(trl_r[f"{p}_s"] / tether[f"{p}_s"], 3) for p in PHASES}
        result["speedup_vs_trl"] = round(ratio, 3)
        result["speedup_vs_trl_per_phase"] = per_phase
        result["meets_2x"] = ratio >= 2.0
        print(f"TRL / tether: {ratio:.2f}x overall ({'meets' if ratio >= 2 else 'MISSES'} the 2x target); "
              + ", ".join(f"{p} {r:.2f}x" for p, r in per_phase.items()))
    out = write_result("ppo_step", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
