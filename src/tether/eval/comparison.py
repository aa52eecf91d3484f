"""Compare two policies on one prompt set (`tether eval compare`): a win rate under a judge and, for each
policy, the metrics that tell whether a change is real (definitions and formulas: docs/evaluation.md).

Each policy answers every prompt once greedily (the evaluated response: reproducible) and, for diversity
and KL, `samples_per_prompt` more times at temperature 1. Per policy:
- gold score (mean, 95 % CI) and correct rate, with demo-task prompts;
- proxy reward: mean reward-model score of the greedy responses, with a reward model;
- KL(policy ‖ reference) on its own temperature-1 samples (k1, sequence level), with a reference;
- response length (tokens), EOS rate, distinct-1/2, repetition rate (greedy responses);
- self-similarity (mean pairwise word-1/2-gram Jaccard of the samples for one prompt, averaged over
  prompts) and cross-prompt similarity (the same over the greedy responses to different prompts).
Win rate of A over B (ties half, Wilson 95 % CI) under a judge: `gold` (the demo judge), `rm` (a reward
model's scores) or a file of human labels (rows {prompt, choice: a | b | tie}; `export_pairs` writes the
file to annotate).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tether.data.gold_judge import gold_score
from tether.data.readers import BadRow, read_rows
from tether.data.records import PromptRow, prompt_text
from tether.errors import DataError
from tether.eval.metrics import (
    distinct_n,
    mean_ci,
    outcomes_from_scores,
    repetition_rate,
    self_similarity,
    win_rate,
)
from tether.sampling.generate import Generation, SamplingConfig, generate

JUDGES = ("gold", "rm")


@dataclass
class PolicyOutputs:
    """One policy's responses to a prompt set."""

    name: str
    greedy: list[Generation]
    """One greedy response per prompt: what the judge, gold score, proxy, length and diversity see."""
    samples: list[list[Generation]]
    """(prompts, K) responses at temperature 1: self-similarity and KL (K may be 0)."""


def collect_outputs(name: str, model, tokenizer, rows: list[PromptRow], samples_per_prompt: int = 4,
                    max_new_tokens: int = 64, seed: int = 0, batch_size: int = 32,
                    show_progress: bool = False) -> PolicyOutputs:
    greedy = generate(model, tokenizer, [r.prompt for r in rows],
                      SamplingConfig(do_sample=False, max_new_tokens=max_new_tokens, batch_size=batch_size),
                      seed=seed, show_progress=show_progress)
    k = samples_per_prompt
    samples: list[list[Generation]] = [[] for _ in rows]
    if k:
        flat = generate(model, tokenizer, [r.prompt for r in rows for _ in range(k)],
                        SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=max_new_tokens,
                                       batch_size=batch_size), seed=seed, show_progress=show_progress)
        samples = [flat[i * k : (i + 1) * k] for i in range(len(rows))]
    return PolicyOutputs(name, greedy, samples)


def has_gold_meta(rows: list[PromptRow]) -> bool:
    return bool(rows) and all("answer" in r.meta for r in rows)


def gold_totals(rows: list[PromptRow], gens: list[Generation]) -> list[float]:
    if not has_gold_meta(rows):
        raise DataError("the gold judge needs demo-task prompts (meta with 'answer'); use --judge rm or a labels file")
    return [gold_score(r.meta, g.text, truncated=g.truncated).total for r, g in zip(rows, gens)]


def proxy_scores(reward_model, rm_tokenizer, rows: list[PromptRow], gens: list[Generation],
                 policy_tokenizer=None, batch_size: int = 16) -> list[float]:
    """Reward-model score of one response per prompt (re-tokenised if the RM's vocabulary differs)."""
    from tether.sampling.labelling import reward_model_scores

    scores = reward_model_scores(reward_model, rm_tokenizer, rows, [[g] for g in gens], policy_tokenizer, batch_size)
    return [s[0] for s in scores]


def score_texts(reward_model, rm_tokenizer, rows: list[PromptRow], texts: list[str],
                batch_size: int = 16) -> list[float]:
    """Reward-model score of one response text per prompt, tokenised with the RM's tokenizer and chat template
    with EOS appended, cut responses included (`data.tokenization.finished_reply`): for responses kept as
    text, e.g. a `PolicyEval`'s. No missing-EOS penalty: this is the RM's own reading."""
    from tether.data.tokenization import encode_prompt, encode_response
    from tether.models.scoring import score_sequences

    prompts = [encode_prompt(rm_tokenizer, r.prompt) for r in rows]
    responses = [encode_response(rm_tokenizer, t) for t in texts]
    return score_sequences(reward_model, prompts, responses, rm_tokenizer.pad_token_id, batch_size)


def attach_proxy(evaluation, rows: list[PromptRow], reward_model, rm_tokenizer) -> float:
    """Set `evaluation.proxy_mean` (a `PolicyEval` on `rows`, same order) to the RM's mean score of its
    responses, so it appears in the policy summary and the report's proxy-reward column; returns it."""
    if [s.prompt for s in evaluation.samples] != [prompt_text(r.prompt) for r in rows]:
        raise ValueError(f"'{evaluation.name}' was not evaluated on these prompts (in this order)")
    scores = score_texts(reward_model, rm_tokenizer, rows, [s.response for s in evaluation.samples])
    evaluation.proxy_mean = math.fsum(scores) / len(scores)
    return evaluation.proxy_mean


def response_metrics(out: PolicyOutputs) -> dict:
    """Length, EOS rate, distinct-1/2, repetition, cross-prompt similarity of the greedy responses;
    self-similarity and distinct-2 of the temperature-1 samples (None without samples)."""
    texts = [g.text for g in out.greedy]
    n = len(texts)
    metrics = {
        "n": n,
        "mean_tokens": sum(len(g.response_ids) for g in out.greedy) / n,
        "eos_rate": sum(not g.truncated for g in out.greedy) / n,
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "repetition": sum(repetition_rate(t) for t in texts) / n,
        "cross_similarity": self_similarity([texts]) if n > 1 else None,
        "self_similarity": None,
        "sample_distinct_2": None,
    }
    if any(len(s) > 1 for s in out.samples):
        metrics["self_similarity"] = self_similarity([[g.text for g in s] for s in out.samples])
        metrics["sample_distinct_2"] = distinct_n([g.text for s in out.samples for g in s], 2)
    return metrics


def _prompt_key(value, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return prompt_text(value)
    raise DataError(f"{where}: 'prompt' must be a string or a list of chat messages")


def export_pairs(path: Path, rows: list[PromptRow], a: list[str], b: list[str]) -> int:
    """Write {id, prompt, response_a, response_b} per prompt for annotators, who add "choice": a | b | tie;
    the annotated file is then a `--judge` labels file. Returns the number of rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, (row, ra, rb) in enumerate(zip(rows, a, b)):
            f.write(json.dumps({"id": i, "prompt": prompt_text(row.prompt), "response_a": ra, "response_b": rb},
                               ensure_ascii=False) + "\n")
    return len(rows)


def read_labels(path: Path, rows: list[PromptRow], a: list[str] | None = None,
                b: list[str] | None = None) -> tuple[list[int | None], int]:
    """Human choices from `path` aligned to `rows`: +1 (A better), −1 (B better), 0 (tie), None (no label).

    Each row: {"prompt": text or messages, "choice": "a" | "b" | "tie"}, optionally "response_a" /
    "response_b" — when present they must equal A's / B's responses (`a`, `b`), so labels collected on
    other outputs are refused rather than silently reused. Any malformed row is a DataError naming file:line.
    Returns the outcomes and the number of evaluated prompts without a label.
    """
    keys = [prompt_text(r.prompt) for r in rows]
    if len(set(keys)) != len(keys):
        raise DataError("a labels file needs distinct prompt texts, but the evaluated prompts repeat one")
    index = {k: i for i, k in enumerate(keys)}
    outcomes: list[int | None] = [None] * len(rows)
    for line, row in read_rows(path):
        where = f"{path}:{line}"
        if isinstance(row, BadRow):
            raise DataError(f"{where}: {row}")
        if not isinstance(row, dict) or "prompt" not in row:
            raise DataError(f"{where}: a label row needs 'prompt' and 'choice'")
        choice = row.get("choice")
        if choice not in ("a", "b", "tie"):
            raise DataError(f"{where}: choice must be 'a', 'b' or 'tie', got {choice!r}")
        key = _prompt_key(row["prompt"], where)
        if key not in index:
            raise DataError(f"{where}: prompt {key[:60]!r} is not among the evaluated prompts")
        i = index[key]
        if outcomes[i] is not None:
            raise DataError(f"{where}: prompt {key[:60]!r} labelled twice")
        for side, texts in (("a", a), ("b", b)):
            given = row.get(f"response_{side}")
            if given is not None and texts is not None and given != texts[i]:
                raise DataError(f"{where}: response_{side} differs from policy {side.upper()}'s response to this "
                                "prompt (labels were collected on other outputs)")
        outcomes[i] = {"a": 1, "b": -1, "tie": 0}[choice]
    return outcomes, sum(o is None for o in outcomes)


def judge_outcomes(judge: str, rows: list[PromptRow], a: PolicyOutputs, b: PolicyOutputs, reward_model=None,
                   rm_tokenizer=None, policy_tokenizer=None, tolerance: float = 1e-6) -> tuple[list[int], dict]:
    """Per-prompt outcomes of A vs B under `judge` ('gold', 'rm' or a labels-file path), unlabelled prompts
    left out; and what the judge saw (scores per side, unlabelled count)."""
    a_gens, b_gens = a.greedy, b.greedy
    if judge == "gold":
        sa, sb = gold_totals(rows, a_gens), gold_totals(rows, b_gens)
        return outcomes_from_scores(sa, sb, tolerance), {"a_scores": sa, "b_scores": sb}
    if judge == "rm":
        if reward_model is None:
            raise DataError("--judge rm needs --reward-model DIR")
        sa = proxy_scores(reward_model, rm_tokenizer, rows, a_gens, policy_tokenizer)
        sb = proxy_scores(reward_model, rm_tokenizer, rows, b_gens, policy_tokenizer)
        return outcomes_from_scores(sa, sb, tolerance), {"a_scores": sa, "b_scores": sb}
    path = Path(judge)
    if not path.is_file():
        raise DataError(f"--judge: {judge!r} is not 'gold', 'rm' or an existing labels file")
    labelled, unlabelled = read_labels(path, rows, [g.text for g in a_gens], [g.text for g in b_gens])
    outcomes = [o for o in labelled if o is not None]
    if not outcomes:
        raise DataError(f"{path}: no label matches an evaluated prompt")
    return outcomes, {"labels": labelled, "unlabelled": unlabelled}


def _gold_summary(rows: list[PromptRow], gens: list[Generation]) -> dict:
    scores = [gold_score(r.meta, g.text, truncated=g.truncated) for r, g in zip(rows, gens)]
    mean, lo, hi = mean_ci([s.total for s in scores])
    return {"gold_mean": mean, "gold_ci": [lo, hi], "correct_rate": sum(s.correct for s in scores) / len(scores)}


def compare_policies(rows: list[PromptRow], a: PolicyOutputs, b: PolicyOutputs, judge: str = "gold", *,
                     policy_tokenizer=None, reward_model=None, rm_tokenizer=None, kl: dict | None = None,
                     tolerance: float = 1e-6) -> dict:
    """The comparison report (JSON-ready): per-policy metrics, the win rate of A over B, deltas.

    `kl`: optional {"a": {...}, "b": {...}} from `tether.eval.evaluate.kl_of_generations`. Proxy reward is
    reported whenever `reward_model` is given (whatever the judge); gold whenever prompts carry demo meta.
    """
    if len(a.greedy) != len(rows) or len(b.greedy) != len(rows):
        raise ValueError("both policies must answer every prompt")
    outcomes, seen = judge_outcomes(judge, rows, a, b, reward_model, rm_tokenizer, policy_tokenizer, tolerance)
    w = win_rate(outcomes)
    policies = {}
    for side, out in (("a", a), ("b", b)):
        m = {"name": out.name, **response_metrics(out)}
        if has_gold_meta(rows):
            m.update(_gold_summary(rows, out.greedy))
        if reward_model is not None:
            scores = seen[f"{side}_scores"] if judge == "rm" else proxy_scores(
                reward_model, rm_tokenizer, rows, out.greedy, policy_tokenizer)
            mean, lo, hi = mean_ci(scores)
            m.update(proxy_mean=mean, proxy_ci=[lo, hi], proxy_scores=scores)
        if kl and side in kl:
            m["kl"] = kl[side]
        policies[side] = m
    deltas = {key: policies["a"][key] - policies["b"][key]
              for key in ("gold_mean", "proxy_mean", "mean_tokens") if key in policies["a"]}
    report = {
        "prompts": len(rows),
        "judge": judge if judge in JUDGES else f"labels:{judge}",
        "win_rate": {"a_vs_b": w.rate, "ci_low": w.lo, "ci_high": w.hi, "wins": w.wins, "ties": w.ties,
                     "losses": w.losses, "n": len(outcomes), "unlabelled": seen.get("unlabelled", 0)},
        "policies": policies,
        "a_minus_b": deltas,
    }
    return report


def write_comparison(path: Path, report: dict, rows: list[PromptRow], a: PolicyOutputs, b: PolicyOutputs) -> Path:
    """`path` (the report, per-response score lists dropped) and `<stem>_samples.jsonl`: per prompt both
    greedy responses, their gold/proxy scores when known."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(report))
    per_prompt = {side: slim["policies"][side].pop("proxy_scores", None) for side in ("a", "b")}
    path.write_text(json.dumps(slim, indent=2, allow_nan=True))
    gold = has_gold_meta(rows)
    with path.with_name(path.stem + "_samples.jsonl").open("w") as f:
        for i, row in enumerate(rows):
            rec: dict = {"prompt": prompt_text(row.prompt)}
            for side, out in (("a", a), ("b", b)):
                g = out.greedy[i]
                rec[side] = {"response": g.text, "truncated": g.truncated, "n_tokens": len(g.response_ids)}
                if gold:
                    rec[side]["gold"] = gold_score(row.meta, g.text, truncated=g.truncated).total
                if per_prompt[side] is not None:
                    rec[side]["proxy"] = per_prompt[side][i]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def format_comparison(report: dict) -> list[tuple[str, str, str]]:
    """(metric, A, B) rows for a printed table."""
    a, b = report["policies"]["a"], report["policies"]["b"]

    def fmt(m: dict, key: str, spec: str = ".3f") -> str:
        v = m.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return format(v, spec)

    rows = [("policy", a["name"], b["name"])]
    if "gold_mean" in a:
        rows += [("gold score", fmt(a, "gold_mean"), fmt(b, "gold_mean")),
                 ("correct", fmt(a, "correct_rate", ".1%"), fmt(b, "correct_rate", ".1%"))]
    if "proxy_mean" in a:
        rows.append(("proxy reward (RM)", fmt(a, "proxy_mean"), fmt(b, "proxy_mean")))
    if "kl" in a:
        rows.append(("KL to reference", f"{a['kl']['kl']:.3f}", f"{b['kl']['kl']:.3f}"))
    rows += [("tokens", fmt(a, "mean_tokens", ".1f"), fmt(b, "mean_tokens", ".1f")),
             ("EOS rate", fmt(a, "eos_rate", ".1%"), fmt(b, "eos_rate", ".1%")),
             ("distinct-1", fmt(a, "distinct_1"), fmt(b, "distinct_1")),
             ("distinct-2", fmt(a, "distinct_2"), fmt(b, "distinct_2")),
             ("repetition", fmt(a, "repetition"), fmt(b, "repetition")),
             ("self-similarity (samples)", fmt(a, "self_similarity"), fmt(b, "self_similarity")),
             ("cross-prompt similarity", fmt(a, "cross_similarity"), fmt(b, "cross_similarity"))]
    return rows
