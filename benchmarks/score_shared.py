"""Reward-model scoring of k replies per prompt (best-of-N, labelling, evaluation): each prompt forwarded once
for all its replies (`models.scoring.score_sequences`, `models.shared_prompt`) vs one row per prompt+reply.

    .venv/bin/python benchmarks/score_shared.py [--prompts 50] [--replies 16] [--repeats 2]

Work: `--prompts` demo-task prompts (templated pairs, seed 0) × `--replies` replies each, drawn from the
pairs' chosen and rejected replies (real lengths, 2 to 106 tokens), scored by a scalar head on SmolLM2-135M in
forwards of 16 replies, no gradients. The two layouts alternate `--repeats` times. Reports seconds per layout,
the speed-up and the largest score difference. Writes benchmarks/results/score_shared.json.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from common import write_result

from tether.data.collators import collate_sft
from tether.data.demo_task import make_demo_task
from tether.data.tokenization import EncodedExample, encode_pairs
from tether.models.loading import load_tokenizer
from tether.models.scalar_head import ScalarHeadModel
from tether.models.scoring import score_sequences
from tether.ops import map_length_groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--replies", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    tok = load_tokenizer(args.model)
    rm = ScalarHeadModel.from_pretrained_lm(args.model, tok).eval()
    pairs, _ = encode_pairs(tok, make_demo_task(seed=0).preference, 256)
    rng = random.Random(0)
    prompts, replies = [], []
    for pair in rng.sample(pairs, args.prompts):
        for _ in range(args.replies):
            other = rng.choice(pairs)
            prompts.append(pair.prompt_ids)
            replies.append(rng.choice([other.chosen_ids, other.rejected_ids]))

    def rows() -> torch.Tensor:  # the row layout: every prompt+reply in full, longest first
        batch = collate_sft([EncodedExample(p, r) for p, r in zip(prompts, replies)], tok.pad_token_id)
        with torch.no_grad():
            return map_length_groups(lambda b: rm(b["input_ids"], b["attention_mask"], b["position_ids"]), batch,
                                     16)[0]

    def shared() -> torch.Tensor:
        return torch.tensor(score_sequences(rm, prompts, replies, tok.pad_token_id, batch_size=16))

    seconds = {"rows": [], "shared": []}
    scores = {}
    for _ in range(args.repeats):
        for name, fn in (("rows", rows), ("shared", shared)):
            t0 = time.perf_counter()
            scores[name] = fn()
            seconds[name].append(round(time.perf_counter() - t0, 2))
    diff = float((scores["rows"] - scores["shared"]).abs().max())
    result = {"model": args.model, "prompts": args.prompts, "replies_per_prompt": args.replies,
              "threads": torch.get_num_threads(), "seconds": seconds, "max_score_diff": diff,
              "speedup": round(sum(seconds["rows"]) / sum(seconds["shared"]), 2)}
    print(f"rows {seconds['rows']} s, shared prompts {seconds['shared']} s: {result['speedup']}x; "
          f"largest score difference {diff:.2e}")
    print(write_result("score_shared", result))


if __name__ == "__main__":
    main()
