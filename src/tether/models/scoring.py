"""Batched scoring of (prompt, response) token sequences with a scalar-head model (reward/value), or with a
causal LM's log-likelihood of the response (`response_logprobs`).

Used by the reward-model trainer's evaluation, `tether eval rm`, the reward-model labeller,
best-of-N and serving: one place that pads, batches (longest-first, less padding) and restores order.
"""

from __future__ import annotations

import torch

from tether.data.collators import collate_sft
from tether.data.tokenization import EncodedExample
from tether.models.lora import eval_mode


@torch.no_grad()
def _per_sequence(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int, batch_size: int,
                  fn) -> list:
    """`fn(model, batch on the model's device)` -> one value per row, over every prompt+response, batched
    longest-first (less padding), in input order."""
    examples = [EncodedExample(p, r) for p, r in zip(prompts, responses)]
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    values: list = [None] * len(examples)
    device = next(model.parameters()).device
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_sft([examples[i] for i in idx], pad_id)
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            for i, v in zip(idx, fn(model, batch)):
                values[i] = v
    return values


def score_sequences(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                    batch_size: int = 16) -> list[float]:
    """Score of each prompt+response (responses end with EOS); returned in input order."""
    return _per_sequence(model, prompts, responses, pad_id, batch_size,
                         lambda m, b: m(b["input_ids"], b["attention_mask"], b["position_ids"]).tolist())  # (b,)


def response_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                      batch_size: int = 16) -> tuple[list[float], list[int]]:
    """Summed log π(response | prompt) of a causal LM and the response token counts, in input order."""
    from tether.models.logprobs import sequence_logprobs

    def fn(m, b):
        logp, n = sequence_logprobs(m, b | {"response_mask": b["loss_mask"]})  # (b,), (b,)
        return list(zip(logp.tolist(), n.tolist()))

    pairs = _per_sequence(model, prompts, responses, pad_id, batch_size, fn)
    return [lp for lp, _ in pairs], [int(n) for _, n in pairs]


def score_pairs(model, pairs, pad_id: int, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Chosen and rejected scores of EncodedPairs."""
    prompts = [p.prompt_ids for p in pairs]
    chosen = score_sequences(model, prompts, [p.chosen_ids for p in pairs], pad_id, batch_size)
    rejected = score_sequences(model, prompts, [p.rejected_ids for p in pairs], pad_id, batch_size)
    return chosen, rejected
