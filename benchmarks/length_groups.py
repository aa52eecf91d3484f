"""Pairwise forward+backward on the demo's preference pairs: one forward per microbatch vs forwards of a few rows
of similar length (`train.forward_group_rows`, `ops.map_length_groups`).

    .venv/bin/python benchmarks/length_groups.py [--microbatches 6] [--groups 0 8 4]

Work: microbatches of 8 demo-task pairs (templated, seed 0), drawn as the RM and DPO trainers draw them (each
step's 16 pairs sorted by length into 2 microbatches); per microbatch the summed response logprobs of the 16
rows (chosen and rejected) under SmolLM2-135M and a backward of their sum — the body of a DPO step. Each
microbatch is timed under every grouping in turn (interleaved, so a busy machine slows all alike). Reports
seconds, padded token slots per grouping and the largest logprob difference from one forward. Writes
benchmarks/results/length_groups.json.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from common import write_result

from tether.data.collators import collate_pairs
from tether.data.demo_task import make_demo_task
from tether.data.tokenization import encode_pairs
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.models.logprobs import sequence_logprobs
from tether.ops import map_length_groups

KEYS = ("input_ids", "attention_mask", "position_ids", "response_mask")


def padded_slots(lengths: list[int], group: int) -> int:
    """Token slots a forward pays for: each group padded to its longest row (group 0: all rows together)."""
    if not group:
        return max(lengths) * len(lengths)
    ordered = sorted(lengths, reverse=True)
    return sum(ordered[i] * len(ordered[i : i + group]) for i in range(0, len(ordered), group))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--microbatches", type=int, default=6)
    ap.add_argument("--groups", type=int, nargs="+", default=[0, 8, 4])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    tok = load_tokenizer(args.model)
    model = load_causal_lm(args.model, tok)
    model.train()
    pairs, _ = encode_pairs(tok, make_demo_task(seed=0).preference, 256)
    rng = random.Random(args.seed)
    seconds = {g: 0.0 for g in args.groups}
    slots = {g: 0 for g in args.groups}
    real, max_diff = 0, 0.0
    for _ in range(args.microbatches // 2):
        step = sorted(rng.sample(pairs, 16), key=len)
        for micro in (step[:8], step[8:]):
            batch = collate_pairs(micro, tok.pad_token_id)
            rows = {k: batch[k] for k in KEYS}
            lengths = batch["attention_mask"].sum(-1).tolist()
            real += sum(lengths)
            results = {}
            for g in args.groups:
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                fn = lambda b: sequence_logprobs(model, b)  # noqa: E731
                total, _ = map_length_groups(fn, rows, g) if g else fn(rows)
                total.sum().backward()
                seconds[g] += time.perf_counter() - t0
                slots[g] += padded_slots(lengths, g)
                results[g] = total.detach()
            max_diff = max(max_diff, *(float((results[g] - results[args.groups[0]]).abs().max()) for g in results))
    base = args.groups[0]
    result = {
        "model": args.model, "microbatches": args.microbatches, "pairs_per_microbatch": 8,
        "threads": torch.get_num_threads(), "real_tokens": real, "max_logprob_diff": max_diff,
        "by_group_rows": {str(g): {"seconds": round(seconds[g], 2), "padded_slots": slots[g],
                                   "speedup_vs_first": round(seconds[base] / seconds[g], 2)} for g in args.groups},
    }
    for g in args.groups:
        r = result["by_group_rows"][str(g)]
        print(f"group_rows {g}: {r['seconds']:.1f} s, {r['padded_slots']} token slots for {real} real tokens, "
              f"{r['speedup_vs_first']}× vs group_rows {base}")
    print(f"largest logprob difference from group_rows {base}: {max_diff:.2e}")
    print(write_result("length_groups", result))


if __name__ == "__main__":
    main()
