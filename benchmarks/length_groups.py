"""Pairwise forward+backward on the demo's preference pairs: one forward per microbatch vs forwards of a few rows
of similar length (`train.forward_group_rows`), in both layouts: one row per prompt+reply (`collate_pairs`,
`ops.map_length_groups`) and each prompt forwarded once for both replies (`collate_pair_prompts`,
the replies in length groups across pairs: `models.shared_prompt`; `train.share_prompts`).

    .venv/bin/python benchmarks/length_groups.py [--microbatches 6] [--groups 0 8 4] [--layouts rows shared]
        [--dpo-config configs/demo/dpo.yaml]

Work: microbatches of 8 demo-task pairs (templated, seed 0; or a DPO config's training pairs), drawn as the RM
and DPO trainers draw them (each step's 16 pairs sorted by length into 2 microbatches); per microbatch the summed
response logprobs of the 16 rows (chosen and rejected) under SmolLM2-135M and a backward of their sum — the
body of a DPO step. Each microbatch is timed under every layout and grouping in turn (interleaved, so a busy
machine slows all alike). Reports seconds, token slots forwarded (padding included) per setting and the largest
logprob difference from the first setting. Writes benchmarks/results/length_groups.json.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from common import write_result

from tether.data.collators import collate_pair_prompts, collate_pairs
from tether.data.demo_task import make_demo_task
from tether.data.tokenization import encode_pairs
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.models.logprobs import sequence_logprobs
from tether.models.shared_prompt import reply_groups, shared_prompt_logprobs
from tether.ops import map_length_groups

KEYS = ("input_ids", "attention_mask", "position_ids", "response_mask")


def run(model, micro, layout: str, group: int, pad_id: int, slots: list[int]) -> torch.Tensor:
    """Summed reply logprobs of the microbatch's 16 rows (chosen first) in `layout`, counting forwarded slots."""
    if layout == "rows":
        batch = collate_pairs(micro, pad_id)
        rows = {k: batch[k] for k in KEYS}

        def fn(b):
            slots.append(int(b["input_ids"].numel()))
            return sequence_logprobs(model, b)

        return (map_length_groups(fn, rows, group) if group else fn(rows))[0]
    batch = collate_pair_prompts(micro, pad_id)
    slots.append(int(batch["prompt_ids"].numel()))  # the prompts, once
    slots.extend(int(batch["reply_mask"][rows].sum(-1).max()) * len(rows) for rows in reply_groups(
        batch["reply_mask"], group))
    return shared_prompt_logprobs(model, batch, group_rows=group)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--microbatches", type=int, default=6)
    ap.add_argument("--groups", type=int, nargs="+", default=[0, 8, 4])
    ap.add_argument("--layouts", nargs="+", default=["rows", "shared"], choices=["rows", "shared"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dpo-config", default=None,
                    help="draw the pairs (and the model) a DPO config trains on, e.g. configs/demo/dpo.yaml after "
                         "`tether demo`: templated + on-policy pairs, the SFT policy (default: templated pairs only, "
                         "--model)")
    args = ap.parse_args()

    if args.dpo_config:
        from tether.runtime.config import load_config
        from tether.train.dpo import DPOConfig, load_examples

        cfg = load_config(DPOConfig, args.dpo_config, [])
        tok = load_tokenizer(cfg.model.name, cfg.model.max_length)
        pairs, _ = load_examples(cfg, tok)
        model = load_causal_lm(cfg.model.name, tok)
    else:
        tok = load_tokenizer(args.model)
        pairs, _ = encode_pairs(tok, make_demo_task(seed=0).preference, 256)
        model = load_causal_lm(args.model, tok)
    model.train()
    rng = random.Random(args.seed)
    settings = [(layout, g) for layout in args.layouts for g in args.groups]
    seconds = {key: 0.0 for key in settings}
    slots: dict[tuple[str, int], list[int]] = {key: [] for key in settings}
    real, max_diff = 0, 0.0
    for _ in range(args.microbatches // 2):
        step = sorted(rng.sample(pairs, 16), key=len)
        for micro in (step[:8], step[8:]):
            real += sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in micro)
            results = {}
            for key in settings:
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                total = run(model, micro, *key, tok.pad_token_id, slots[key])
                total.sum().backward()
                seconds[key] += time.perf_counter() - t0
                results[key] = total.detach()
            max_diff = max(max_diff, *(float((r - results[settings[0]]).abs().max()) for r in results.values()))
    base = settings[0]
    result = {
        "model": cfg.model.name if args.dpo_config else args.model, "pairs": args.dpo_config or "templated",
        "microbatches": args.microbatches, "pairs_per_microbatch": 8,
        "threads": torch.get_num_threads(), "real_tokens_row_by_row": real, "max_logprob_diff": max_diff,
        "by_setting": {f"{layout}/{g}": {"seconds": round(seconds[(layout, g)], 2),
                                         "token_slots": sum(slots[(layout, g)]),
                                         "speedup_vs_first": round(seconds[base] / seconds[(layout, g)], 2)}
                       for layout, g in settings},
    }
    for name, r in result["by_setting"].items():
        print(f"{name:9s} (layout/group_rows): {r['seconds']:.1f} s, {r['token_slots']} token slots "
              f"({real} real tokens row by row), {r['speedup_vs_first']}x vs {base[0]}/{base[1]}")
    print(f"largest logprob difference from {base[0]}/{base[1]}: {max_diff:.2e}")
    print(write_result("length_groups", result))


if __name__ == "__main__":
    main()
