"""How much does the SFT policy itself know about which answer is right?  Pairwise accuracy of per-token
log-likelihood features of each response under the policy, untrained, on the RM's held-out pairs.

    .venv/bin/python benchmarks/rm_likelihood_features.py [--policy runs/demo/sft]
        [--pairs runs/demo/data/eval_pairs.jsonl]

A response the model finds surprising somewhere (a wrong number, a wrong name) has one very unlikely token; the
sum and the mean over its tokens blur that with length. Each feature ranks the two responses of a pair (higher
wins, ties half): the summed and mean log-likelihood (what `tether eval rm --likelihood-of` reports), the least
likely token, the two least likely tokens, and the first 8 / 16 tokens. Reported over all pairs and per kind
of pair (`--by correctness` of `tether eval rm`: right over wrong, right over right, wrong over wrong), beside
nothing trained: it bounds what a reward model built on this backbone can read off the policy's own beliefs.
Writes benchmarks/results/rm_likelihood_features.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import torch
from common import write_result

from tether.data.collators import collate_sft
from tether.data.tokenization import EncodedExample
from tether.data.validate import load_records
from tether.eval.reward_eval import encode_within, pair_group
from tether.models.loading import freeze, load_causal_lm, load_tokenizer
from tether.models.logprobs import sequence_token_logprobs

FEATURES = {
    "sum": sum,
    "mean": lambda x: sum(x) / len(x),
    "min": min,
    "two_lowest": lambda x: sum(sorted(x)[:2]),
    "first_8": lambda x: sum(x[:8]),
    "first_16": lambda x: sum(x[:16]),
}


@torch.no_grad()
def token_logprobs(model, pad_id: int, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
    """log π(token | prefix) of every response token, per response."""
    out = []
    for start in range(0, len(prompts), 16):
        batch = collate_sft([EncodedExample(p, r) for p, r in zip(prompts[start : start + 16],
                                                                   responses[start : start + 16])], pad_id)
        lp = sequence_token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                     batch["loss_mask"])  # (b,T-1)
        mask = batch["loss_mask"][:, 1:].bool()  # (b,T-1)
        out += [row[keep].tolist() for row, keep in zip(lp, mask)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="runs/demo/sft")
    parser.add_argument("--pairs", default="runs/demo/data/eval_pairs.jsonl")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    t0 = time.perf_counter()
    tok = load_tokenizer(args.policy)
    model = freeze(load_causal_lm(args.policy, tok))
    pairs = load_records(args.pairs, "preference")[0]
    encoded, keep = encode_within(tok, pairs, args.max_length)
    prompts = [e.prompt_ids for e in encoded]
    chosen = token_logprobs(model, tok.pad_token_id, prompts, [e.chosen_ids for e in encoded])
    rejected = token_logprobs(model, tok.pad_token_id, prompts, [e.rejected_ids for e in encoded])
    groups = [pair_group(pairs[i], "correctness") for i in keep]
    result = {"command": "python benchmarks/rm_likelihood_features.py " + " ".join(sys.argv[1:]),
              "policy": args.policy, "pairs": args.pairs, "n_pairs": len(keep), "accuracy": {}}
    for name, feature in FEATURES.items():
        wins = defaultdict(list)
        for c, r, group in zip(chosen, rejected, groups):
            a, b = feature(c), feature(r)
            win = 1.0 if a > b else 0.5 if a == b else 0.0
            wins["all"].append(win)
            wins[group].append(win)
        result["accuracy"][name] = {g: {"accuracy": round(sum(w) / len(w), 4), "n": len(w)}
                                    for g, w in sorted(wins.items())}
        print(f"{name:11s}", "  ".join(f"{g} {sum(w) / len(w):.1%} ({len(w)})" for g, w in sorted(wins.items())))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"→ {write_result('rm_likelihood_features', result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
