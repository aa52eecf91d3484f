"""`tether eval rm`: score a preference set with a reward model and report (see
`tether.eval.metrics.reward_model_report` for the metrics):
- accuracy: fraction of pairs with r(chosen) > r(rejected) (ties count half);
- margin: mean r(chosen) − r(rejected);
- calibration: expected calibration error of P = σ(r_c − r_r) against the labels, with a reliability
  table. Each pair counts in both orders (σ(Δ) with label 1, σ(−Δ) with label 0) so both classes exist;
- score distributions of chosen and rejected responses (mean, std, quantiles);
- length bias: Pearson correlation of score with response length (tokens), and how often the RM
  prefers the longer response vs how often the labels do.
"""

from __future__ import annotations

import json
from pathlib import Path

from tether.data.tokenization import encode_pairs
from tether.eval.metrics import reward_model_report
from tether.models.scoring import score_pairs


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def format_report(report: dict) -> str:
    lines = [f"pairs {report['n_pairs']}  accuracy {report['accuracy']:.1%}  margin {report['margin']:.3f}  "
             f"ECE {report['ece']:.3f}  corr(score, length) {report['length_corr']:.3f}"]
    if report["rm_prefers_longer"] is not None:
        lines.append(f"prefers the longer response: RM {report['rm_prefers_longer']:.1%}, "
                     f"labels {report['labels_prefer_longer']:.1%}")
    for side in ("chosen", "rejected"):
        d = report[f"{side}_scores"]
        lines.append(f"{side:8s} score mean {d['mean']:+.3f} std {d['std']:.3f}  p10 {d['p10']:+.3f} "
                     f"p50 {d['p50']:+.3f} p90 {d['p90']:+.3f}")
    lines.append("reliability (P(chosen) bin: count, mean P, observed):")
    for b in report["reliability"]:
        if b["count"]:
            lines.append(f"  [{b['lo']:.1f}, {b['hi']:.1f}): {b['count']:5d}  "
                         f"{b['mean_prob']:.3f}  {b['accuracy']:.3f}")
    return "\n".join(lines)


def evaluate_reward_model(model, tokenizer, pairs, max_length: int, batch_size: int = 16) -> dict:
    """Score PreferencePairs with a scalar-head model and build the report (over-long pairs dropped, counted)."""
    encoded, n_long = encode_pairs(tokenizer, pairs, max_length, drop_long=True)
    chosen, rejected = score_pairs(model, encoded, tokenizer.pad_token_id, batch_size)
    report = reward_model_report(chosen, rejected, [len(p.chosen_ids) for p in encoded],
                                 [len(p.rejected_ids) for p in encoded])
    report["dropped_over_long"] = n_long
    return report
