"""DPO training step speed: tether vs TRL's DPOTrainer on identical work.

    .venv/bin/python benchmarks/dpo_step.py [--pairs 8] [--seq-len 256] [--steps 3]
    (TRL part runs where `trl` is installed: pip install -e '.[bench]')

Work per step: `--pairs` preference pairs, every chosen and rejected sequence exactly `--seq-len`
tokens (half prompt, half response; synthetic ids), full fine-tuning of SmolLM2-135M, sigmoid DPO
loss, AdamW, one optimizer step. Both sides use reference logprobs computed before training
(tether's cache; TRL's `precompute_ref_log_probs=True`), so a step is one policy forward + backward
over 2 × pairs rows. tether forwards each pair's prompt once and continues both replies from its KV cache
(`train.share_prompts`, its default; same loss and gradients); it is also timed one row per prompt+reply
(`tether_rows`), as TRL runs it, to show what the sharing buys. TRL is also timed with its default
(reference forward every step) for context.
Reports seconds/step, tokens/s (2 × pairs × seq-len per step) and the ratio. Writes
benchmarks/results/dpo_step.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import make_pairs, mean_after_warmup, trl_step_timer, write_result

from tether.data.collators import collate_pair_batch
from tether.data.tokenization import EncodedPair
from tether.losses.preference import dpo
from tether.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from tether.train.dpo import pair_logps
from tether.train.loop import TrainConfig, build_optimizer


def bench_tether(model_spec: str, pairs: list[EncodedPair], steps: int, share_prompts: bool = True) -> float:
    tok = load_tokenizer(model_spec)
    model = load_causal_lm(model_spec, tok)
    batch = collate_pair_batch(pairs, tok.pad_token_id, share_prompts)  # tether's default: each prompt once
    with torch.no_grad():  # the cached reference, as `tether dpo` computes it before step 1
        ref = pair_logps(model.eval(), batch, "cpu")
    model.train()
    opt = build_optimizer(model, TrainConfig(learning_rate=1e-6))  # tether's AdamW (fused on CPU)
    times = []
    for _ in range(steps + 1):  # the first step is warm-up
        t0 = time.perf_counter()
        lp = pair_logps(model, batch, "cpu")
        loss, _ = dpo(lp["chosen"], lp["rejected"], ref["chosen"], ref["rejected"], beta=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return mean_after_warmup(times)


def bench_trl(model_spec: str, pairs: list[EncodedPair], steps: int, precompute: bool) -> float | None:
    try:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM
        from trl import DPOConfig, DPOTrainer
    except ImportError:
        return None

    class PreTokenised(DPOTrainer):  # the rows are already token ids: skip TRL's text preprocessing
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    tok = load_tokenizer(model_spec)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(model_spec))
    data = Dataset.from_list([{"prompt_ids": p.prompt_ids, "chosen_ids": p.chosen_ids, "rejected_ids": p.rejected_ids}
                              for p in pairs] * (steps + 2))
    times: list[float] = []
    args = DPOConfig(output_dir="/tmp/tether-bench-trl-dpo", per_device_train_batch_size=len(pairs),
                     max_steps=steps + 1, learning_rate=1e-6, beta=0.1, logging_steps=1000, save_strategy="no",
                     report_to="none", use_cpu=True, max_length=None, dataloader_num_workers=0, disable_tqdm=True,
                     gradient_checkpointing=False, bf16=False, precompute_ref_log_probs=precompute)
    trainer = PreTokenised(model=model, args=args, train_dataset=data, processing_class=tok,
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
    print(f"tether                    {t:7.2f} s/step  {tokens / t:7.1f} tok/s")
    rows_t = bench_tether(args.model, pairs, args.steps, share_prompts=False)
    result["tether_rows"] = {"seconds_per_step": round(rows_t, 3), "tokens_per_s": round(tokens / rows_t, 1)}
    print(f"tether, row by row        {rows_t:7.2f} s/step  {tokens / rows_t:7.1f} tok/s")
    for precompute, key in ((True, "trl"), (False, "trl_reference_each_step")):
        trl_t = bench_trl(args.model, pairs, args.steps, precompute)
        if trl_t is None:
            print("trl not installed (pip install -e '.[bench]'); skipped")
            break
        import trl

        result[key] = {"version": trl.__version__, "seconds_per_step": round(trl_t, 3),
                       "tokens_per_s": round(tokens / trl_t, 1)}
        result[f"speedup_vs_{key}"] = round(trl_t / t, 3)
        result[f"rows_speedup_vs_{key}"] = round(trl_t / rows_t, 3)
        print(f"{key:25s} {trl_t:7.2f} s/step  {tokens / trl_t:7.1f} tok/s   (tether {trl_t / t:.2f}x faster; "
              f"row by row {trl_t / rows_t:.2f}x)")
    write_result("dpo_step", result)


if __name__ == "__main__":
    main()
