"""Generation speed, step by step: what each of tether's decode-loop choices is worth on the evaluation's work.

    .venv/bin/python benchmarks/decode.py [--model smollm2-135m-instruct] [--prompts 150] [--batches 128 32]

Work: the first `--prompts` held-out prompts of the demo task (seed 0), (a) 2 samples per prompt at temperature 1
(the pipeline's sampled evaluation) and (b) greedy, each prompt once; ≤ 64 new tokens; through
`tether.sampling.generate` (batch_size 128 is its default; PPO's demo rollouts use 32). Arms, each adding one
change to the one before (the earlier arms put the old piece back by patching `tether.sampling.generate`):

| arm | sampler | KV cache | a finished row leaves the batch |
|---|---|---|---|
| `multinomial` | `torch.multinomial` | transformers `DynamicCache` (concatenates every step) | at its EOS |
| `inverse_cdf` | `sample_categorical` (two-level inverse CDF) | `DynamicCache` | at its EOS |
| `reserved_cache` | `sample_categorical` | `ReservedCache` (writes in place) | at its EOS |
| `late_leave` (tether) | `sample_categorical` | `ReservedCache` | once finished rows are 1/`LEAVE_AT` of the rest |

The sampler changes which tokens a seed draws (not their distribution), so sampled arms are compared by
milliseconds per generated token; `reserved_cache` must generate exactly `inverse_cdf`'s tokens (the cache is
bit-equal), and the greedy arms' replies are compared. Also the mean time of one KV-cached decode step over 64
steps after a 40-token prefill at 16, 64 and 128 rows with either cache (`step_ms`). Writes
benchmarks/results/decode.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import decode_step_ms, write_result
from transformers import DynamicCache

import tether.sampling.generate as gen_module
from tether.data.demo_task import make_demo_task
from tether.models.kv_cache import ReservedCache
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.sampling.generate import SamplingConfig, generate


def _dynamic(reserve: int) -> DynamicCache:
    return DynamicCache()


def _multinomial(probs: torch.Tensor) -> torch.Tensor:
    return torch.multinomial(probs, 1).squeeze(1)


ARMS = {  # (sampler, cache, LEAVE_AT); 10**9: any finished row leaves at once
    "multinomial": (_multinomial, _dynamic, 10**9),
    "inverse_cdf": (gen_module.sample_categorical, _dynamic, 10**9),
    "reserved_cache": (gen_module.sample_categorical, ReservedCache, 10**9),
    "late_leave": (gen_module.sample_categorical, ReservedCache, gen_module.LEAVE_AT),
}


def use(arm: str) -> None:
    gen_module.sample_categorical, gen_module.ReservedCache, gen_module.LEAVE_AT = ARMS[arm]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="Model dir or embedded name.")
    ap.add_argument("--prompts", type=int, default=150)
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 32])
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    tok = load_tokenizer(args.model)
    model = load_causal_lm(args.model, tok).eval()
    rows = make_demo_task(0).eval_prompts[: args.prompts]
    work = {"sampled_t1_x2": ([r.prompt for r in rows for _ in range(2)], True),
            "greedy": ([r.prompt for r in rows], False)}
    result = {"model": args.model, "prompts": len(rows), "new_tokens": 64, "threads": torch.get_num_threads(),
              "leave_at": gen_module.LEAVE_AT, "step_ms": {}, "modes": {}}
    for name, make in (("dynamic", _dynamic), ("reserved", ReservedCache)):
        result["step_ms"][name] = {str(b): decode_step_ms(model, b, make, steps=64, summary=statistics.mean)
                                  for b in (16, 64, 128)}
        print("decode step ms by rows", name, result["step_ms"][name], flush=True)
    for mode, (prompts, sample) in work.items():
        for b in args.batches:
            cfg = SamplingConfig(do_sample=sample, temperature=1.0, max_new_tokens=64, batch_size=b)
            entry, tokens = {}, {}
            for arm in ARMS:
                use(arm)
                t0 = time.perf_counter()
                gens = generate(model, tok, prompts, cfg, seed=args.seed)
                seconds = time.perf_counter() - t0
                tokens[arm] = [g.response_ids for g in gens]
                n = sum(len(t) for t in tokens[arm])
                entry[arm] = {"seconds": round(seconds, 2), "response_tokens": n,
                              "ms_per_token": round(1000 * seconds / n, 3)}
            use("late_leave")
            if tokens["reserved_cache"] != tokens["inverse_cdf"]:
                raise SystemExit(f"{mode} batch {b}: ReservedCache generated other tokens than DynamicCache")
            entry["speedup_vs_multinomial"] = round(entry["multinomial"]["ms_per_token"]
                                                    / entry["late_leave"]["ms_per_token"], 3)
            if not sample:
                entry["greedy_replies_equal_to_multinomial_arm"] = sum(
                    a == b for a, b in zip(tokens["late_leave"], tokens["multinomial"]))
            result["modes"].setdefault(mode, {})[str(b)] = entry
            print(mode, b, entry, flush=True)
    print(f"wrote {write_result('decode', result)}")


if __name__ == "__main__":
    main()
