"""Greedy decoding in fp32 and with bf16 weights: speed per generated token and how many replies change.

    .venv/bin/python benchmarks/decode_dtype.py [--model runs/demo/sft] [--prompts 150]

Work: the first `--prompts` held-out prompts of the demo task (seed 0), greedy, ≤ 64 new tokens, through
`tether.sampling.generate` (its default 128-row calls), once with the model loaded in fp32 and once in bfloat16.
On a CPU with bf16 matrix units (AMX) the bf16 weights decode faster; the question for an evaluation is whether
they decode the *same policy*: greedy replies are compared text for text and both are scored by the gold judge.
Writes benchmarks/results/decode_dtype.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write_result

from tether.data.demo_task import make_demo_task
from tether.data.gold_judge import gold_score
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.sampling.generate import SamplingConfig, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/sft", help="Model dir or embedded name.")
    ap.add_argument("--prompts", type=int, default=150)
    args = ap.parse_args()

    rows = make_demo_task(0).eval_prompts[: args.prompts]
    tok = load_tokenizer(args.model)
    cfg = SamplingConfig(do_sample=False, max_new_tokens=64)
    result = {"model": args.model, "prompts": len(rows), "new_tokens": 64, "threads": torch.get_num_threads(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "dtypes": {}}
    replies = {}
    for dtype in ("float32", "bfloat16"):
        model = load_causal_lm(args.model, tok, dtype=dtype).eval()
        start = time.perf_counter()
        out = generate(model, tok, [r.prompt for r in rows], cfg, seed=0)
        seconds = time.perf_counter() - start
        tokens = sum(len(g.response_ids) for g in out)
        replies[dtype] = [g.text for g in out]
        gold = sum(gold_score(r.meta, g.text, g.truncated).total for r, g in zip(rows, out)) / len(rows)
        result["dtypes"][dtype] = {"seconds": round(seconds, 2), "tokens": tokens,
                                   "ms_per_token": round(1000 * seconds / tokens, 2), "gold": round(gold, 3)}
        print(dtype, result["dtypes"][dtype], flush=True)
        del model
    same = sum(a == b for a, b in zip(replies["float32"], replies["bfloat16"]))
    result["same_replies"] = same
    result["speedup_per_token"] = round(result["dtypes"]["float32"]["ms_per_token"]
                                        / result["dtypes"]["bfloat16"]["ms_per_token"], 2)
    print(f"same greedy reply on {same} of {len(rows)} prompts; bf16 {result['speedup_per_token']}x per token")
    write_result("decode_dtype", result)


if __name__ == "__main__":
    main()
