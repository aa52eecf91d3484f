"""Rows per generate call: how the batch size changes tether's decode speed on the evaluation's work.

    .venv/bin/python benchmarks/generation_batch.py [--model runs/demo/sft] [--prompts 150] [--batches 32 64 128]

Work: the first `--prompts` held-out prompts of the demo task (seed 0), (a) 2 samples per prompt at temperature 1
(the pipeline's sampled evaluation) and (b) greedy, each prompt once; ≤ 64 new tokens; through
`tether.sampling.generate` (prompts sorted by length, cut into batches of `batch_size` rows; a row leaves the
batch at its EOS). On two CPU cores a decode step costs a fixed part (reading the weights once per step) and a
part per row, so a fuller batch spreads the fixed part over more rows; a batch runs until its longest row ends,
so very large batches wait on one long tail. Reports seconds, response tokens and tokens/s per batch size, and
the median time of one KV-cached decode step at 1, 8, 32 and 64 rows (40-token prompts, `step_ms`).
Writes benchmarks/results/generation_batch.json.
"""

from __future__ import annotations

import argparse
import time

from common import decode_step_ms, write_result

from tether.data.demo_task import make_demo_task
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.sampling.generate import SamplingConfig, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/sft", help="Model dir or embedded name.")
    ap.add_argument("--prompts", type=int, default=150)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    tok = load_tokenizer(args.model)
    model = load_causal_lm(args.model, tok).eval()
    rows = make_demo_task(0).eval_prompts[: args.prompts]
    work = {"sampled_t1_x2": ([r.prompt for r in rows for _ in range(2)], True),
            "greedy": ([r.prompt for r in rows], False)}
    result = {"model": args.model, "prompts": len(rows), "new_tokens": 64, "modes": {},
              "step_ms": {str(b): decode_step_ms(model, b) for b in (1, 8, 32, 64)}}
    print("decode step ms by rows:", result["step_ms"], flush=True)
    for mode, (prompts, sample) in work.items():
        result["modes"][mode] = {}
        for b in args.batches:
            cfg = SamplingConfig(do_sample=sample, temperature=1.0, max_new_tokens=64, batch_size=b)
            t0 = time.perf_counter()
            gens = generate(model, tok, prompts, cfg, seed=args.seed)
            seconds = time.perf_counter() - t0
            tokens = sum(len(g.response_ids) for g in gens)
            result["modes"][mode][str(b)] = {"seconds": round(seconds, 2), "response_tokens": tokens,
                                             "tokens_per_s": round(tokens / seconds, 1)}
            print(mode, b, result["modes"][mode][str(b)], flush=True)
    print(f"wrote {write_result('generation_batch', result)}")


if __name__ == "__main__":
    main()
