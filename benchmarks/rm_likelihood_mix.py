"""Does keeping the SFT policy's likelihood in the reward help?  r_α(x, y) = RM head(x, y) + α · log π_SFT(y | x).

    .venv/bin/python benchmarks/rm_likelihood_mix.py [--rm runs/demo/rm] [--policy runs/demo/sft]

The demo RM (a Bradley–Terry head on the SFT backbone) is less accurate on held-out pairs than the SFT
policy's own log-likelihood of each response (docs/reward-model.md). This scores every pair of the RM's
on-policy *training* pairs (runs/demo/data/onpolicy_pairs.jsonl) and its held-out pairs
(runs/demo/data/eval_pairs.jsonl) with both, picks α on the training pairs (the best accuracy over a grid,
the smaller α on ties) and reports the held-out accuracy at that α, beside the grid itself — whose best
held-out value is an optimistic bound, since it is chosen on the pairs it is measured on. Both the summed and
the per-token (mean) log-likelihood are tried. Writes benchmarks/results/rm_likelihood_mix.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import write_result

from tether.data.validate import load_records
from tether.eval.metrics import pairwise_accuracy
from tether.eval.reward_eval import encode_within, pair_loglikelihoods
from tether.models.loading import freeze, load_causal_lm, load_tokenizer
from tether.models.scalar_head import ScalarHeadModel
from tether.models.scoring import score_pairs

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (0.0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 1e3)
"""α grid; 1e3 is the likelihood alone in effect (the head's scores span a few units)."""


def pair_scores(rm, rm_tok, policy, policy_tok, pairs, max_length: int) -> dict[str, list[float]]:
    """Head scores (`head_c`, `head_r`) and `reward_eval.pair_loglikelihoods` of the pairs that fit `max_length`
    under both tokenizers."""
    enc_rm, keep_rm = encode_within(rm_tok, pairs, max_length)
    enc_pol, keep_pol = encode_within(policy_tok, pairs, max_length)
    both = set(keep_rm) & set(keep_pol)
    enc_rm = [e for e, i in zip(enc_rm, keep_rm) if i in both]
    enc_pol = [e for e, i in zip(enc_pol, keep_pol) if i in both]
    head_c, head_r = score_pairs(rm, enc_rm, rm_tok.pad_token_id)
    return {"head_c": head_c, "head_r": head_r, **pair_loglikelihoods(policy, enc_pol, policy_tok.pad_token_id)}


def mixed_accuracy(s: dict, kind: str, alpha: float) -> float:
    chosen = [h + alpha * ll for h, ll in zip(s["head_c"], s[f"{kind}_c"])]
    rejected = [h + alpha * ll for h, ll in zip(s["head_r"], s[f"{kind}_r"])]
    return pairwise_accuracy(chosen, rejected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rm", default="runs/demo/rm")
    parser.add_argument("--policy", default="runs/demo/sft")
    parser.add_argument("--train-pairs", default="runs/demo/data/onpolicy_pairs.jsonl")
    parser.add_argument("--held-out-pairs", default="runs/demo/data/eval_pairs.jsonl")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    t0 = time.perf_counter()
    rm, rm_tok = freeze(ScalarHeadModel.from_pretrained(Path(args.rm))), load_tokenizer(args.rm)
    policy_tok = load_tokenizer(args.policy)
    policy = freeze(load_causal_lm(args.policy, policy_tok))
    scores = {split: pair_scores(rm, rm_tok, policy, policy_tok, load_records(path, "preference")[0], args.max_length)
              for split, path in (("train", args.train_pairs), ("held_out", args.held_out_pairs))}
    result = {"command": "python benchmarks/rm_likelihood_mix.py " + " ".join(sys.argv[1:]), "rm": args.rm,
              "policy": args.policy, "pairs": {k: len(v["head_c"]) for k, v in scores.items()}}
    for kind in ("sum", "mean"):
        grid = [{"alpha": a, "train": mixed_accuracy(scores["train"], kind, a),
                 "held_out": mixed_accuracy(scores["held_out"], kind, a)} for a in ALPHAS]
        picked = max(grid, key=lambda g: (g["train"], -g["alpha"]))
        result[kind] = {"grid": grid, "alpha_picked_on_train": picked["alpha"],
                        "held_out_at_picked": picked["held_out"],
                        "held_out_best_optimistic": max(g["held_out"] for g in grid)}
        print(f"log-likelihood {kind}: α picked on train {picked['alpha']:g} → held-out {picked['held_out']:.3f}; "
              f"head alone {grid[0]['held_out']:.3f}; best over the grid (optimistic) "
              f"{result[kind]['held_out_best_optimistic']:.3f}")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"→ {write_result('rm_likelihood_mix', result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
