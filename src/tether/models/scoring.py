"""Batched scoring of (prompt, response) token sequences with a scalar-head model (reward/value), or with a
causal LM's log-likelihood of the response (`response_logprobs`).

Used by the reward-model trainer's evaluation, `tether eval rm`, the reward-model labeller,
best-of-N, evaluation and serving: one place that pads, batches (longest first, less padding), forwards each
distinct prompt once for all its responses (k samples of a prompt, a pair's two replies) and restores order.
"""

from __future__ import annotations

import torch

from tether.data.collators import collate_prompt_replies, collate_sft
from tether.data.tokenization import EncodedExample
from tether.models.logprobs import sequence_logprobs
from tether.models.lora import eval_mode
from tether.models.shared_prompt import shared_prompt_logprobs
from tether.ops import map_length_groups

# Distinct prompts per shared-prompt batch: their replies are then grouped by length across prompts.
_PROMPTS_PER_BATCH = 64


@torch.no_grad()
def _per_sequence(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int, batch_size: int,
                  fn_shared, fn_rows) -> tuple[torch.Tensor, ...]:
    """Per-row tensors over every prompt+response, in input order, `batch_size` responses per forward.

    Each distinct prompt is forwarded once and its responses continue from its cache, in groups of similar
    length across prompts (`fn_shared(model, shared-prompt batch, group_rows)`; `models.shared_prompt`), up
    to `_PROMPTS_PER_BATCH` prompts at a time. Where a response is empty: one row per prompt+response
    (`fn_rows(model, rows)`, longest first; `ops.map_length_groups`). Batches go to the model's device."""
    if not prompts:
        return (torch.zeros(0), torch.zeros(0))
    device = next(model.parameters()).device
    with eval_mode(model):
        if not all(responses):
            rows = collate_sft([EncodedExample(p, r) for p, r in zip(prompts, responses)], pad_id)
            return map_length_groups(lambda b: fn_rows(model, {k: v.to(device) for k, v in b.items()}), rows,
                                     batch_size)
        distinct: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prompts):
            distinct.setdefault(tuple(p), []).append(i)
        blocks = sorted(distinct.items(), key=lambda item: len(item[0]))  # similar prompt widths per batch
        done, parts = [], []
        for start in range(0, len(blocks), _PROMPTS_PER_BATCH):
            block = blocks[start : start + _PROMPTS_PER_BATCH]
            rows = [i for _, members in block for i in members]
            source = [u for u, (_, members) in enumerate(block) for _ in members]
            batch = collate_prompt_replies([list(p) for p, _ in block], [responses[i] for i in rows], source, pad_id)
            parts.append(fn_shared(model, {k: v.to(device) for k, v in batch.items()}, batch_size))
            done.extend(rows)
        inverse = torch.argsort(torch.tensor(done))  # (N,)
        return tuple(torch.cat(column)[inverse.to(column[0].device)] for column in zip(*parts))


def score_sequences(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                    batch_size: int = 16) -> list[float]:
    """Score of each prompt+response (responses end with EOS; a scalar-head model); returned in input order."""
    (scores, *_) = _per_sequence(model, prompts, responses, pad_id, batch_size,
                                 lambda m, b, g: (m(shared=b, group_rows=g),),
                                 lambda m, b: m(b["input_ids"], b["attention_mask"], b["position_ids"]))  # (b,)
    return scores.tolist()


def response_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                      batch_size: int = 16) -> tuple[list[float], list[int]]:
    """Summed log π(response | prompt) of a causal LM and the response token counts, in input order."""
    logp, n = _per_sequence(model, prompts, responses, pad_id, batch_size,
                            lambda m, b, g: shared_prompt_logprobs(m, b, group_rows=g),
                            lambda m, b: sequence_logprobs(m, b | {"response_mask": b["loss_mask"]}))  # (b,), (b,)
    return logp.tolist(), [int(x) for x in n.tolist()]


def score_pairs(model, pairs, pad_id: int, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Chosen and rejected scores of EncodedPairs (each prompt forwarded once for both replies)."""
    n = len(pairs)
    scores = score_sequences(model, [p.prompt_ids for p in pairs] * 2, [p.chosen_ids for p in pairs]
                             + [p.rejected_ids for p in pairs], pad_id, batch_size)
    return scores[:n], scores[n:]
