"""`tether eval rm`: score a preference set with a reward model and report (see
`tether.eval.metrics.reward_model_report` for the metrics):
- accuracy: fraction of pairs with r(chosen) > r(rejected) (ties count half);
- margin: mean r(chosen) − r(rejected);
- calibration: expected calibration error of P = σ(r_c − r_r) against the labels, with a reliability
  table. Each pair counts in both orders (σ(Δ) with label 1, σ(−Δ) with label 0) so both classes exist;
- score distributions of chosen and rejected responses (mean, std, quantiles);
- length bias: Pearson correlation of score with response length (tokens), and how often the RM
  prefers the longer response vs how often the labels do;
- optionally (`by`), accuracy per group of pairs: per value of a meta field (e.g. the demo task's
  `family`), or per "correctness" of the two sides under the gold judge (`pair_group`).

`likelihood_baseline` is the yardstick a learned RM should beat: the pairwise accuracy of a policy's own
log-likelihood of each response (summed, and per token) on the same pairs — no training at all.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from tether.data.gold_judge import gold_score
from tether.data.tokenization import encode_pairs
from tether.errors import DataError
from tether.eval.metrics import pairwise_accuracy, reward_model_report
from tether.models.scoring import response_logprobs, score_pairs


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
    for key, groups in report.get("by", {}).items():
        shown = ", ".join(f"{g} {d['accuracy']:.1%} ({d['n']})" for g, d in groups.items())
        lines.append(f"accuracy by {key}: {shown}")
    lines.append("reliability (P(chosen) bin: count, mean P, observed):")
    for b in report["reliability"]:
        if b["count"]:
            lines.append(f"  [{b['lo']:.1f}, {b['hi']:.1f}): {b['count']:5d}  "
                         f"{b['mean_prob']:.3f}  {b['accuracy']:.3f}")
    return "\n".join(lines)


def pair_group(pair, key: str) -> str:
    """The group of a PreferencePair under `key`: the value of `pair.meta[key]` ("(none)" when absent), or,
    for key "correctness" on demo-task pairs, whether the gold judge finds each side right: "right over
    wrong", "right over right", "wrong over wrong" or "wrong over right" ("wrong": not right — a wrong
    answer, none, or several). The latter tells a reward model that knows the answers from one that judges
    style: on "right over wrong" pairs only knowing which answer is right helps."""
    if key != "correctness":
        return str(pair.meta.get(key, "(none)"))
    if "answer" not in pair.meta:
        raise DataError("grouping by correctness needs demo-task pairs (meta with 'answer', as `tether demo` and "
                        "`tether data label --labeller gold` write)")
    chosen, rejected = (gold_score(pair.meta, text).correct for text in (pair.chosen, pair.rejected))
    return f"{'right' if chosen else 'wrong'} over {'right' if rejected else 'wrong'}"


def accuracy_by(groups: list[str], chosen: list[float], rejected: list[float]) -> dict[str, dict]:
    """{group: {"n", "accuracy"}} of pairs labelled `groups` (ties count half), groups in sorted order."""
    out = {}
    for g in sorted(set(groups)):
        idx = [i for i, x in enumerate(groups) if x == g]
        out[g] = {"n": len(idx), "accuracy": pairwise_accuracy([chosen[i] for i in idx], [rejected[i] for i in idx])}
    return out


def encode_within(tokenizer, pairs, max_length: int) -> tuple[list, list[int]]:
    """The encoded pairs no longer than `max_length` and their indices in `pairs` (so per-pair groups stay
    aligned with the scores; `encode_pairs` alone drops over-long pairs without saying which)."""
    encoded, _ = encode_pairs(tokenizer, pairs, max_length=sys.maxsize)
    keep = [i for i, e in enumerate(encoded) if len(e) <= max_length]
    return [encoded[i] for i in keep], keep


HELD_OUT_SCORES = "held_out_scores.json"
"""Written by the reward stage beside the model: its scores of the held-out pairs at the end of training."""


def pairs_digest(encoded) -> str:
    """What identifies a list of EncodedPairs: a hash of every pair's token ids, in order."""
    h = hashlib.sha256()
    for p in encoded:
        h.update(json.dumps([p.prompt_ids, p.chosen_ids, p.rejected_ids]).encode())
    return h.hexdigest()


def save_held_out_scores(path: Path, encoded, chosen: list[float], rejected: list[float]) -> None:
    """The reward model's final scores of the held-out pairs `encoded`, for `evaluate_reward_model` to reuse."""
    path.write_text(json.dumps({"pairs_digest": pairs_digest(encoded), "chosen": chosen, "rejected": rejected}))


def load_held_out_scores(path: Path, encoded) -> tuple[list[float], list[float]] | None:
    """(chosen, rejected) saved by `save_held_out_scores` for exactly these pairs, else None."""
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    if d.get("pairs_digest") != pairs_digest(encoded) or len(d["chosen"]) != len(encoded):
        return None
    return d["chosen"], d["rejected"]


def evaluate_reward_model(model, tokenizer, pairs, max_length: int, batch_size: int = 16,
                          by: tuple[str, ...] = (), scores_file: Path | None = None) -> dict:
    """Score PreferencePairs with a scalar-head model and build the report (over-long pairs dropped, counted).
    `by`: meta keys (or "correctness", see `pair_group`) to also report the accuracy per group of, under
    `report["by"][key]`. `scores_file`: the reward stage's `HELD_OUT_SCORES` of this model; when it holds
    scores of exactly these pairs (same token ids, same order) they are used instead of scoring again."""
    encoded, keep = encode_within(tokenizer, pairs, max_length)
    saved = load_held_out_scores(scores_file, encoded) if scores_file is not None else None
    chosen, rejected = saved or score_pairs(model, encoded, tokenizer.pad_token_id, batch_size)
    report = reward_model_report(chosen, rejected, [len(p.chosen_ids) for p in encoded],
                                 [len(p.rejected_ids) for p in encoded])
    report["dropped_over_long"] = len(pairs) - len(keep)
    if by:
        report["by"] = {key: accuracy_by([pair_group(pairs[i], key) for i in keep], chosen, rejected) for key in by}
    return report


def pair_loglikelihoods(policy, encoded, pad_id: int, batch_size: int = 16) -> dict[str, list[float]]:
    """log π(y | x) of each EncodedPair's chosen and rejected response under `policy`: summed (`sum_c`,
    `sum_r`) and per token (`mean_c`, `mean_r`)."""
    prompts = [p.prompt_ids for p in encoded]
    c_sum, c_n = response_logprobs(policy, prompts, [p.chosen_ids for p in encoded], pad_id, batch_size)
    r_sum, r_n = response_logprobs(policy, prompts, [p.rejected_ids for p in encoded], pad_id, batch_size)
    return {"sum_c": c_sum, "sum_r": r_sum, "mean_c": [s / max(n, 1) for s, n in zip(c_sum, c_n)],
            "mean_r": [s / max(n, 1) for s, n in zip(r_sum, r_n)]}


def likelihood_baseline(policy, tokenizer, pairs, max_length: int, batch_size: int = 16,
                        by: tuple[str, ...] = ()) -> dict:
    """Pairwise accuracy of log π(y | x) as a reward (ties half) on PreferencePairs: `accuracy_sum` with the
    summed log-likelihood, `accuracy_mean` with the per-token mean; `by` as in `evaluate_reward_model` (under
    `by[key][group]` both accuracies). Pairs longer than `max_length` are dropped (`dropped_over_long`)."""
    encoded, keep = encode_within(tokenizer, pairs, max_length)
    if not keep:
        raise DataError(f"no pair fits max_length {max_length}")
    ll = pair_loglikelihoods(policy, encoded, tokenizer.pad_token_id, batch_size)
    c_sum, r_sum, c_mean, r_mean = ll["sum_c"], ll["sum_r"], ll["mean_c"], ll["mean_r"]
    report = {"n_pairs": len(keep), "dropped_over_long": len(pairs) - len(keep),
              "accuracy_sum": pairwise_accuracy(c_sum, r_sum), "accuracy_mean": pairwise_accuracy(c_mean, r_mean)}
    if by:
        report["by"] = {}
        for key in by:
            groups = [pair_group(pairs[i], key) for i in keep]
            by_sum, by_mean = accuracy_by(groups, c_sum, r_sum), accuracy_by(groups, c_mean, r_mean)
            report["by"][key] = {g: {"n": d["n"], "accuracy_sum": d["accuracy"],
                                     "accuracy_mean": by_mean[g]["accuracy"]} for g, d in by_sum.items()}
    return report


def format_likelihood(report: dict, policy: str) -> str:
    lines = [f"baseline: log-likelihood under {policy} as the reward, {report['n_pairs']} pairs: accuracy "
             f"{report['accuracy_sum']:.1%} (summed), {report['accuracy_mean']:.1%} (per token)"]
    for key, groups in report.get("by", {}).items():
        shown = ", ".join(f"{g} {d['accuracy_sum']:.1%} / {d['accuracy_mean']:.1%} ({d['n']})"
                          for g, d in groups.items())
        lines.append(f"  by {key} (summed / per token): {shown}")
    return "\n".join(lines)
