"""Seconds per SFT optimizer step on the embedded model, and what computing the LM head only at
response positions saves.

    .venv/bin/python benchmarks/sft_step.py [--batch 8] [--prompt-len 40] [--response-len 30] [--steps 3]

Writes benchmarks/results/sft_step.json. Synthetic token ids (the cost depends on shapes only).
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write_result

from tether.data.collators import collate_sft
from tether.data.tokenization import EncodedExample
from tether.losses.sft import sft_loss
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.models.logprobs import target_logits
from tether.models.lora import apply_lora
from tether.models.spec import ModelConfig
from tether.train.loop import TrainConfig, build_optimizer


def step_seconds(model, batch, steps: int, head_at_targets: bool) -> float:
    opt = build_optimizer(model, TrainConfig(learning_rate=1e-6))  # tether's AdamW (fused on CPU)
    times = []
    for _ in range(steps + 1):  # first step is warm-up
        t0 = time.perf_counter()
        if head_at_targets:
            logits, labels, mask, _ = target_logits(model, batch["input_ids"], batch["attention_mask"],
                                                    batch["position_ids"], batch["loss_mask"])
            loss, _ = sft_loss(logits, labels, mask)
        else:  # the plain way: logits at every position, then mask
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            loss, _ = sft_loss(logits, batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--response-len", type=int, default=30)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = load_tokenizer(args.model)
    ex = [EncodedExample(torch.randint(100, 40000, (args.prompt_len,)).tolist(),
                         torch.randint(100, 40000, (args.response_len,)).tolist()) for _ in range(args.batch)]
    batch = collate_sft(ex, tok.pad_token_id)
    tokens = args.batch * (args.prompt_len + args.response_len)
    results = {"model": args.model, "batch": args.batch, "prompt_len": args.prompt_len,
               "response_len": args.response_len, "threads": torch.get_num_threads(), "runs": {}}
    for name, lora, head in (("full_ft/head_at_targets", False, True), ("full_ft/full_logits", False, False),
                             ("lora/head_at_targets", True, True)):
        model = load_causal_lm(args.model, tok)
        if lora:
            model = apply_lora(model, ModelConfig(use_lora=True))
        model.train()
        s = step_seconds(model, batch, args.steps, head)
        results["runs"][name] = {"seconds_per_step": round(s, 3), "tokens_per_s": round(tokens / s, 1)}
        print(f"{name:28s} {s:6.2f} s/step  {tokens / s:7.1f} tok/s")
        del model
    write_result("sft_step", results)


if __name__ == "__main__":
    main()
