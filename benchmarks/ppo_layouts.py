"""PPO's k samples per prompt: each prompt forwarded once (`train.share_prompts true`) vs one row per sample.

    .venv/bin/python benchmarks/ppo_layouts.py [--seeds 3] [--config configs/demo/ppo.yaml] [-- overrides]

Runs the first iteration of the demo PPO config (runs/demo/sft, runs/demo/rm, 8 prompts × 4 samples, LoRA,
shared critic) once per seed in each layout, after one warm-up iteration that is not kept, in the order
shared, rows, rows, shared, ... so that neither always runs first. The first iteration samples from the
starting policy with the seed's generator in both layouts, so both score and train on the same rollout: the
phases after generation (RM, reference, old logprobs and values; the PPO epochs) are the same work in the
two layouts. `-- --model.name runs/demo/ppo` starts from the trained PPO policy, whose answers are short
(the regime of a run's later iterations, where the prompt is most of each row). Reports the seconds of each
phase, the rollout's response length and the first iteration's metrics side by side: the rollout's (score,
KL) are the same in both layouts; the update metrics are not, since prompt-grouped microbatches put other rows
together in the shuffled minibatches. Writes benchmarks/results/ppo_layouts.json (`--out NAME` for another name).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import write_result

from tether.runtime.config import load_config
from tether.runtime.metrics import read_metrics
from tether.train.ppo import PPOConfig, train

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("time/generate", "time/score", "time/train", "perf/seconds")
CHECKED = ("reward/score", "kl/sequence", "policy/approx_kl", "loss/policy", "gen/response_len")


def one_iteration(config: str, overrides: list[str], seed: int, share: bool, root: Path) -> dict:
    out = root / f"{'shared' if share else 'rows'}-{seed}"
    cfg = load_config(PPOConfig, config, [*overrides, "--output_dir", str(out), "--train.max_steps", "1",
                                          "--train.seed", str(seed), "--train.share_prompts", str(share).lower(),
                                          "--train.report_to", "[]", "--ppo.sample_table_steps", "0"])
    train(cfg)
    (metrics,) = read_metrics(out / "metrics.jsonl")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "configs/demo/ppo.yaml"))
    parser.add_argument("--out", default="ppo_layouts", help="Result name under benchmarks/results/.")
    args, overrides = parser.parse_known_args()
    overrides = [o for o in overrides if o != "--"]
    runs: dict[str, list[dict]] = {"shared": [], "rows": []}
    with tempfile.TemporaryDirectory(prefix="ppo-layouts-") as tmp:
        one_iteration(args.config, overrides, 1000, True, Path(tmp))  # warm-up (the process's first PPO), not kept
        for seed in range(args.seeds):
            order = (True, False) if seed % 2 == 0 else (False, True)
            for share in order:
                m = one_iteration(args.config, overrides, seed, share, Path(tmp))
                runs["shared" if share else "rows"].append(m)
                print(f"seed {seed} {'shared' if share else 'rows  '}: " + "  ".join(
                    f"{k.split('/')[1]} {m[k]:.1f} s" for k in PHASES) + f"  response {m['gen/response_len']:.1f}")
    mean = {layout: {k: sum(m[k] for m in ms) / len(ms) for k in PHASES} for layout, ms in runs.items()}
    after_generation = {layout: v["time/score"] + v["time/train"] for layout, v in mean.items()}
    result = {
        "command": "python benchmarks/ppo_layouts.py " + " ".join(sys.argv[1:]),
        "config": args.config, "overrides": overrides, "seeds": args.seeds,
        "per_run": {layout: [{k: round(m[k], 2) for k in (*PHASES, *CHECKED)} for m in ms]
                    for layout, ms in runs.items()},
        "mean_seconds": {layout: {k: round(v, 2) for k, v in phases.items()} for layout, phases in mean.items()},
        "speedup_score_plus_train": round(after_generation["rows"] / after_generation["shared"], 3),
        "speedup_iteration": round(mean["rows"]["perf/seconds"] / mean["shared"]["perf/seconds"], 3),
    }
    print(json.dumps(result["mean_seconds"], indent=1))
    print(f"score + train: {after_generation['shared']:.1f} s shared vs {after_generation['rows']:.1f} s rows "
          f"({result['speedup_score_plus_train']:.2f}x); whole iteration {result['speedup_iteration']:.2f}x "
          f"→ {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
