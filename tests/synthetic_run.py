"""Hand-made run directories and CLI inputs for the best-of-N / evaluation / report tests.

`make_run(root)`: a synthetic runs/<name>/ with every file `tether report` reads (no model involved).
`make_bon_inputs(root, tiny_model_dir)`: a reward-model dir on the tiny model and a demo-style prompt file.
"""

from __future__ import annotations

import json
from pathlib import Path


def _policy(gold: float, tokens: float) -> dict:
    return {"name": "", "n": 4, "gold_mean": gold, "gold_ci": [gold - 0.1, gold + 0.1], "correct_rate": 0.5,
            "eos_rate": 0.75, "mean_tokens": tokens, "distinct_1": 0.6, "distinct_2": 0.8, "repetition": 0.01,
            "by_family": {}}


def _cmp(rate: float) -> dict:
    return {"win_rate": rate, "ci_low": rate - 0.2, "ci_high": min(1.0, rate + 0.2), "wins": 3, "ties": 0, "losses": 1}


RM_BY_CORRECTNESS = {"right over wrong": {"n": 30, "accuracy": 0.9}, "wrong over wrong": {"n": 10, "accuracy": 1.0}}


def make_run(root: Path, ppo: bool = True) -> Path:
    run = root / "demo"
    (run / "eval").mkdir(parents=True)
    policies = {"base": _policy(-0.2, 40), "sft": _policy(0.3, 20), "dpo": _policy(0.5, 12)}
    comparisons = {"sft_vs_base": _cmp(0.75), "dpo_vs_sft": _cmp(0.75)}
    (run / "eval" / "policies.json").write_text(json.dumps({"policies": policies, "comparisons": comparisons}))
    (run / "summary.json").write_text(json.dumps({"policies": policies, "comparisons": comparisons,
                                                  "kl_to_sft": {"dpo": {"kl": 3.1, "kl_ci_low": 2.5,
                                                                        "kl_ci_high": 3.7}}}))
    prompts = ["What is 2 plus 2?", "Capital of France?", "Opposite of hot?"]
    with (run / "eval" / "policies_samples.jsonl").open("w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p, **{name: {"response": f"{name} says <b>{p}</b>", "gold": 0.5}
                                                 for name in policies}}) + "\n")
    bins = [{"lo": b / 10, "hi": (b + 1) / 10, "count": 0 if b < 2 else 5,
             "mean_prob": None if b < 2 else b / 10 + 0.05, "accuracy": None if b < 2 else b / 10} for b in range(10)]
    (run / "eval" / "rm.json").write_text(json.dumps({"n_pairs": 40, "accuracy": 0.925, "margin": 1.2, "ece": 0.04,
                                                      "length_corr": 0.1, "rm_prefers_longer": 0.4,
                                                      "labels_prefer_longer": 0.45, "reliability": bins,
                                                      "by": {"correctness": RM_BY_CORRECTNESS}}))
    (run / "rm").mkdir()
    (run / "rm" / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "eval/accuracy": 0.6 + s / 100}) + "\n"
                                                      for s in (10, 20, 30)))
    if ppo:
        (run / "ppo").mkdir()
        with (run / "ppo" / "metrics.jsonl").open("w") as f:
            for s in range(1, 11):
                f.write(json.dumps({"step": s, "reward/score": 0.1 * s, "reward/gold": 0.05 * s, "kl/sequence": 0.3 * s,
                                    "kl/beta": 0.05, "gen/response_len": 30 - s, "loss/policy": 0.1,
                                    "kl/health": "healthy"}) + "\n")
    bon = run / "bon-16"
    bon.mkdir()
    (bon / "result.json").write_text(json.dumps({
        "name": "bon16", "n": 16, "scorer": "rm", "kl_analytic": 1.835, "proxy_before": 0.1, "proxy_after": 1.4,
        "eval": _policy(0.6, 15), "vs_baseline": _cmp(0.8), "baseline": "baseline", "baseline_spec": "runs/demo/sft",
        "curve_gold": [{"n": k, "kl": kl, "value": v}
                       for k, kl, v in ((1, 0.0, 0.2), (4, 0.636, 0.45), (16, 1.835, 0.6))],
    }))
    with (bon / "eval_samples.jsonl").open("w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p, "baseline": {"response": "greedy", "gold": 0.1},
                                "bon16": {"response": f"best {p}", "gold": 0.9}}) + "\n")
    return run


def make_bon_inputs(root: Path, tiny_model_dir: Path) -> dict[str, Path]:
    from tether.data.records import PromptRow
    from tether.data.validate import save_records
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    tok = load_tokenizer(str(tiny_model_dir))
    rm_dir = root / "rm"
    ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=4).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    rows = [PromptRow([{"role": "user", "content": f"What is {a} plus {b}?"}],
                      meta={"kind": "number", "answer": str(a + b), "given": [str(a), str(b)], "family": "arithmetic"})
            for a, b in ((2, 2), (3, 4), (5, 1), (6, 2))]
    prompts = save_records(root / "prompts.jsonl", rows)
    return {"root": root, "rm": rm_dir, "prompts": prompts}
