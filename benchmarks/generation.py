"""Generation speed: tether's decode loop (finished rows leave the batch) vs HF `model.generate` on the same prompts.

    .venv/bin/python benchmarks/generation.py [--model runs/demo/sft] [--prompts 64] [--samples 4] [--batch 64]
        [--new-tokens 64] [--repeats 2]

Work: the first `--prompts` of the demo task's eval prompts (seed 0), sorted by length; (a) sampled at
temperature 1, each prompt repeated `--samples` times in consecutive rows (as labelling, PPO rollouts and the
sampled evaluation ask for k samples per prompt), and (b) greedy, each prompt once; cut into batches of
`--batch` rows as `tether.sampling.generate` batches them and decoded up to `--new-tokens` new tokens, once by
`generate_tokens` (one prefill of the distinct prompts, then one KV-cached forward per token over the rows that
have not yet emitted EOS) and once by HF `model.generate` (KV-cached, prefills every row, keeps the finished
rows in the batch as padding until every row is done or the limit is hit). The two run interleaved
batch by batch, `--repeats` times, so a busy machine slows both alike. Reports seconds, response tokens,
tokens/s, the speed-up, and for greedy decoding how many responses are token-for-token identical. Writes
benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write_result

from tether.data.demo_task import make_demo_task
from tether.data.tokenization import encode_prompt
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.sampling.generate import SamplingConfig, cut_at_eos, generate_tokens


def hf_generate(model, batch_ids, cfg: SamplingConfig, pad_id: int, eos_id: int) -> list[list[int]]:
    """The previous backend: one `model.generate` call, rows padded after their EOS."""
    from tether.data.collators import collate_prompts

    batch = collate_prompts(batch_ids, pad_id)
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, pad_token_id=pad_id, eos_token_id=eos_id)
    kwargs.update(temperature=cfg.temperature, top_k=None, top_p=None) if cfg.do_sample else kwargs.update(
        temperature=None, top_k=None, top_p=None)
    out = model.generate(**batch, **kwargs)  # (B,P+R)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/sft", help="Model dir or embedded name (smollm2-135m-instruct).")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4, help="Samples per prompt in the sampled mode.")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    tok = load_tokenizer(args.model)
    model = load_causal_lm(args.model, tok).eval()
    rows = make_demo_task(0).eval_prompts[: args.prompts]
    encoded = sorted((encode_prompt(tok, r.prompt) for r in rows), key=len)
    backends = {"tether": generate_tokens, "hf_generate": hf_generate}
    result = {"model": args.model, "prompts": len(encoded), "samples": args.samples, "batch": args.batch,
              "new_tokens": args.new_tokens,
              "repeats": args.repeats, "threads": torch.get_num_threads(), "modes": {}}
    for mode, k, cfg in (("sampled_t1", args.samples, SamplingConfig(max_new_tokens=args.new_tokens)),
                         ("greedy", 1, SamplingConfig(max_new_tokens=args.new_tokens, do_sample=False))):
        flat = [p for p in encoded for _ in range(k)]
        batches = [flat[i : i + args.batch] for i in range(0, len(flat), args.batch)]
        secs = {name: 0.0 for name in backends}
        tokens = {name: 0 for name in backends}
        outputs: dict[str, list[list[int]]] = {name: [] for name in backends}
        for rep in range(args.repeats):
            for b, ids in enumerate(batches):
                for name, fn in backends.items():
                    torch.manual_seed(rep * 1000 + b)
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        new = fn(model, ids, cfg, tok.pad_token_id, tok.eos_token_id)
                    secs[name] += time.perf_counter() - t0
                    cut = [cut_at_eos(t, tok.eos_token_id)[0] for t in new]
                    tokens[name] += sum(len(t) for t in cut)
                    if rep == 0:
                        outputs[name] += cut
        entry = {name: {"seconds": round(secs[name], 2), "response_tokens": tokens[name],
                        "tokens_per_s": round(tokens[name] / secs[name], 1)} for name in backends}
        entry["speedup"] = round(secs["hf_generate"] / secs["tether"], 2)
        if mode == "greedy":
            entry["identical_responses"] = sum(a == b for a, b in zip(outputs["tether"], outputs["hf_generate"]))
        mean_len = tokens["tether"] / (args.repeats * len(flat))
        entry["mean_response_tokens"] = round(mean_len, 1)
        result["modes"][mode] = entry
        print(mode, entry, flush=True)
    print("wrote", write_result("generation", result))


if __name__ == "__main__":
    main()
