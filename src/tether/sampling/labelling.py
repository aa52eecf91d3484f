"""Preference collection, the real stage-2 workflow: sample K responses per prompt from a policy (the
SFT model), then turn them into preference pairs with a labeller:

- `gold`: the demo task's programmatic judge (plays the human annotator; needs demo-task meta);
- `rm`: a reward model's scores;
- `human`: export candidate pairs for annotators (`export_candidates`), then read their choices back
  (`pairs_from_choices`).

Within a prompt, every pair of distinct candidates whose scores differ by more than `tie_tolerance`
is a pair (better one chosen); ties are dropped and counted, and a candidate whose text repeats an earlier
one's is dropped and counted (so no pair appears twice). `max_pairs_per_prompt`
keeps the widest-gap pair first, then a seeded random choice of the rest.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from tether.data.gold_judge import gold_score
from tether.data.readers import BadRow, read_rows
from tether.data.records import PreferencePair, PromptRow
from tether.errors import DataError
from tether.sampling.generate import Generation, SamplingConfig, generate


@dataclass
class LabelStats:
    prompts: int = 0
    candidates: int = 0
    pairs: int = 0
    ties_dropped: int = 0
    duplicates_dropped: int = 0
    truncated_candidates: int = 0
    extra: dict = field(default_factory=dict)


def sample_candidates(model, tokenizer, rows: list[PromptRow], k: int, sampling: SamplingConfig,
                      seed: int = 0, logprobs: bool = False) -> list[list[Generation]]:
    """K sampled responses per prompt (one batched generate over all prompt copies); `logprobs`: each carries
    its tokens' log-probabilities under the sampler's distribution (`Generation.logprobs`)."""
    flat = generate(model, tokenizer, [r.prompt for r in rows for _ in range(k)], sampling, seed=seed,
                    show_progress=True, logprobs=logprobs)
    return [flat[i * k : (i + 1) * k] for i in range(len(rows))]


def gold_scores(rows: list[PromptRow], candidates: list[list[Generation]]) -> list[list[float]]:
    if rows and "answer" not in rows[0].meta:
        raise DataError("the gold labeller needs demo-task prompts (meta with 'answer'); use --labeller rm or human")
    return [[gold_score(row.meta, g.text, truncated=g.truncated).total for g in gens]
            for row, gens in zip(rows, candidates)]


def reward_model_scores(reward_model, rm_tokenizer, rows: list[PromptRow], candidates: list[list[Generation]],
                        policy_tokenizer=None, batch_size: int = 16) -> list[list[float]]:
    """Reward-model score of every candidate, (prompts, N).

    When the RM shares the policy's vocabulary (the usual case: an RM trained from the SFT backbone) the
    policy's own token ids are scored. Otherwise each prompt and response is re-tokenised with the RM's
    tokenizer and chat template. Either way a response cut at max_new_tokens is read with EOS appended, as
    the RM was trained (`data.tokenization.finished_reply`); the caller charges the cut (a missing-EOS penalty).
    """
    from tether.data.tokenization import encode_prompt, encode_response, finished_reply
    from tether.models.scoring import score_sequences

    flat = [g for gens in candidates for g in gens]
    k = len(candidates[0]) if candidates else 0
    if policy_tokenizer is None or rm_tokenizer.get_vocab() == policy_tokenizer.get_vocab():
        prompts = [g.prompt_ids for g in flat]
        responses = [finished_reply(g.response_ids, rm_tokenizer.eos_token_id) for g in flat]
    else:
        encoded = [encode_prompt(rm_tokenizer, row.prompt) for row in rows]
        prompts = [encoded[i] for i in range(len(rows)) for _ in range(k)]
        responses = [encode_response(rm_tokenizer, g.text) for g in flat]
    scores = score_sequences(reward_model, prompts, responses, rm_tokenizer.pad_token_id, batch_size)
    return [scores[i * k : (i + 1) * k] for i in range(len(candidates))]


def penalised(score: float, truncated: bool, missing_eos_penalty: float) -> float:
    """`score` less `missing_eos_penalty` if the reply was cut at the token limit (no EOS), as PPO's reward step."""
    return score - (missing_eos_penalty if truncated else 0.0)


def penalise_truncated(scores: list[list[float]], candidates: list[list[Generation]],
                       missing_eos_penalty: float) -> list[list[float]]:
    """Reward-model scores less `missing_eos_penalty` for each candidate cut at max_new_tokens: the RM read it as if
    it ended there (`reward_model_scores`), and a cut answer is usually an incomplete one (as PPO's reward step)."""
    return [[penalised(s, g.truncated, missing_eos_penalty) for s, g in zip(sc, gens)]
            for sc, gens in zip(scores, candidates)]


def pairs_from_scores(rows: list[PromptRow], candidates: list[list[Generation]], scores: list[list[float]],
                      labeller: str, tie_tolerance: float = 1e-6, max_pairs_per_prompt: int = 0,
                      seed: int = 0) -> tuple[list[PreferencePair], LabelStats]:
    rng = random.Random(seed)
    stats = LabelStats(prompts=len(rows))
    pairs: list[PreferencePair] = []
    for row, gens, sc in zip(rows, candidates, scores):
        stats.candidates += len(gens)
        stats.truncated_candidates += sum(g.truncated for g in gens)
        unique = _distinct(gens)  # each distinct text once: a repeated sample would repeat its pairs
        stats.duplicates_dropped += len(gens) - len(unique)
        found = []
        for i, j in combinations(unique, 2):
            if abs(sc[i] - sc[j]) <= tie_tolerance:
                stats.ties_dropped += 1
            elif gens[i].text.strip() and gens[j].text.strip():
                found.append((i, j) if sc[i] > sc[j] else (j, i))
        found.sort(key=lambda ij: sc[ij[1]] - sc[ij[0]])  # widest gap first
        if max_pairs_per_prompt and len(found) > max_pairs_per_prompt:
            rest = found[1:]
            rng.shuffle(rest)
            found = [found[0], *rest[:max_pairs_per_prompt - 1]]
        for w, l_ in found:
            pairs.append(PreferencePair(row.prompt, gens[w].text, gens[l_].text, meta={
                **{k: v for k, v in row.meta.items() if k != "source"}, "labeller": labeller,
                "chosen_score": sc[w], "rejected_score": sc[l_]}))
    stats.pairs = len(pairs)
    return pairs, stats


def export_candidates(path: Path, rows: list[PromptRow], candidates: list[list[Generation]]) -> int:
    """Write every pair of distinct candidates for annotators: one row {id, prompt, response_a, response_b}; a
    candidate whose text repeats an earlier one's is left out (its pairs would be asked twice)."""
    n = 0
    with Path(path).open("w") as f:
        for r, (row, gens) in enumerate(zip(rows, candidates)):
            for i, j in combinations(_distinct(gens), 2):
                f.write(json.dumps({"id": f"{r}/{i}-{j}", "prompt": row.prompt, "response_a": gens[i].text,
                                    "response_b": gens[j].text}) + "\n")
                n += 1
    return n


def _distinct(gens: list[Generation]) -> list[int]:
    """Indices of the first candidate with each text, in order."""
    first: dict[str, int] = {}
    for i, g in enumerate(gens):
        first.setdefault(g.text, i)
    return sorted(first.values())


def pairs_from_choices(candidates_file: Path, choices_file: Path) -> tuple[list[PreferencePair], LabelStats]:
    """Join exported candidates with annotators' choices rows {id, choice: a | b | tie}; ties dropped, counted.

    A malformed choices row (bad JSON, unknown id, choice not a/b/tie) is an error naming file:line.
    """
    candidates = {}
    for line, row in read_rows(candidates_file):
        if isinstance(row, BadRow) or not isinstance(row, dict) or "id" not in row:
            raise DataError(f"{candidates_file}:{line}: not an exported candidate row")
        candidates[row["id"]] = row
    stats, pairs, seen = LabelStats(), [], set()
    for line, row in read_rows(choices_file):
        where = f"{choices_file}:{line}"
        if isinstance(row, BadRow):
            raise DataError(f"{where}: {row.kind} ({row.detail})")
        if not isinstance(row, dict) or row.get("id") not in candidates:
            got = row.get("id") if isinstance(row, dict) else row
            raise DataError(f"{where}: unknown or missing candidate id {got!r}")
        choice = row.get("choice")
        if choice not in ("a", "b", "tie"):
            raise DataError(f"{where}: choice must be 'a', 'b' or 'tie', got {choice!r}")
        if row["id"] in seen:
            raise DataError(f"{where}: candidate {row['id']} chosen twice")
        seen.add(row["id"])
        cand = candidates[row["id"]]
        if choice == "tie":
            stats.ties_dropped += 1
            continue
        a, b = cand["response_a"], cand["response_b"]
        chosen, rejected = (a, b) if choice == "a" else (b, a)
        pairs.append(PreferencePair(cand["prompt"], chosen, rejected, meta={"labeller": "human", "id": row["id"]}))
    stats.pairs = len(pairs)
    stats.extra["unlabelled_candidates"] = len(candidates) - len(seen)
    return pairs, stats
