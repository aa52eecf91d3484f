"""Reward-model training step speed: tether vs TRL's RewardTrainer on identical work.

    .venv/bin/python benchmarks/rm_step.py [--pairs 8] [--seq-len 256] [--steps 3]
    (TRL part runs where `trl` is installed: pip install -e '.[bench]')

Work per step: `--pairs` preference pairs, every chosen and rejected sequence exactly `--seq-len`
tokens (synthetic ids; cost depends on shapes only), full fine-tuning of SmolLM2-135M with a scalar
head, AdamW, one optimizer step. tether forwards each pair's prompt (half of each sequence) once and scores
both replies from its KV cache (`train.share_prompts`, its default; same scores and gradients); it is also
timed one row per prompt+reply (`tether_rows`), as TRL runs it. Reports seconds/step and tokens/s
(2 × pairs × seq-len tokens per step) and the ratio. Writes benchmarks/results/rm_step.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import make_pairs, mean_after_warmup, trl_step_timer, write_result

from tether.data.collators import collate_pair_batch
from tether.data.tokenization import EncodedPair
from tether.losses.reward import bradley_terry_loss
from tether.models.loading import load_tokenizer, resolve_model_path
from tether.models.scalar_head import ScalarHeadModel
from tether.train.loop import TrainConfig, build_optimizer
from tether.train.reward import _score_pairs


def bench_tether(model_spec: str, pairs: list[EncodedPair], steps: int, share_prompts: bool = True) -> float:
    tok = load_tokenizer(model_spec)
    model = ScalarHeadModel.from_pretrained_lm(model_spec, tok).train()
    opt = build_optimizer(model, TrainConfig(learning_rate=1e-6))  # tether's AdamW (fused on CPU)
    batch = collate_pair_batch(pairs, tok.pad_token_id, share_prompts)  # tether's default: each prompt once
    times = []
    for _ in range(steps + 1):  # the first step is warm-up
        t0 = time.perf_counter()
        chosen, rejected = _score_pairs(model, batch, "cpu")  # (B,), (B,)
        loss, _ = bradley_terry_loss(chosen, rejected)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return mean_after_warmup(times)


def bench_trl(model_spec: str, pairs: list[EncodedPair], steps: int) -> float | None:
    try:
        from datasets import Dataset
        from transformers import AutoModelForSequenceClassification
        from trl import RewardConfig, RewardTrainer
    except ImportError:
        return None
    path = resolve_model_path(model_spec)
    tok = load_tokenizer(model_spec)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    data = Dataset.from_list([{"chosen_ids": p.prompt_ids + p.chosen_ids, "rejected_ids": p.prompt_ids + p.rejected_ids}
                              for p in pairs] * (steps + 2))
    times: list[float] = []
    args = RewardConfig(output_dir="/tmp/tether-bench-trl", per_device_train_batch_size=len(pairs), max_steps=steps + 1,
                        learning_rate=1e-6, logging_steps=1000, save_strategy="no", report_to="none", use_cpu=True,
                        max_length=None, dataloader_num_workers=0, disable_tqdm=True, gradient_checkpointing=False,
                        bf16=False)
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                            callbacks=[trl_step_timer(times)])
    trainer.train()
    return mean_after_warmup(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    pairs = make_pairs(args.pairs, args.seq_len)
    tokens = 2 * args.pairs * args.seq_len
    result = {"model": args.model, "pairs": args.pairs, "seq_len": args.seq_len, "threads": torch.get_num_threads()}
    t = bench_tether(args.model, pairs, args.steps)
    result["tether"] = {"seconds_per_step": round(t, 3), "tokens_per_s": round(tokens / t, 1)}
    print(f"tether  {t:7.2f} s/step  {tokens / t:7.1f} tok/s")
    rows_t = bench_tether(args.model, pairs, args.steps, share_prompts=False)
    result["tether_rows"] = {"seconds_per_step": round(rows_t, 3), "tokens_per_s": round(tokens / rows_t, 1)}
    print(f"rows    {rows_t:7.2f} s/step  {tokens / rows_t:7.1f} tok/s   (tether, one row per prompt+reply)")
    trl_t = bench_trl(args.model, pairs, args.steps)
    if trl_t is None:
        print("trl     not installed (pip install -e '.[bench]'); skipped")
    else:
        import trl

        result["trl"] = {"version": trl.__version__, "seconds_per_step": round(trl_t, 3),
                         "tokens_per_s": round(tokens / trl_t, 1)}
        result["speedup_vs_trl"] = round(trl_t / t, 3)
        result["rows_speedup_vs_trl"] = round(trl_t / rows_t, 3)
        print(f"trl     {trl_t:7.2f} s/step  {tokens / trl_t:7.1f} tok/s   (tether {trl_t / t:.2f}x faster; "
              f"row by row {trl_t / rows_t:.2f}x)")
    write_result("rm_step", result)


if __name__ == "__main__":
    main()
