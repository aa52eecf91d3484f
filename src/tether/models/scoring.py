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
from tether.ops import map_length_groups


@torch.no_grad()
def _per_sequence(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int, batch_size: int,
                  fn) -> tuple[torch.Tensor, ...]:
    """`fn(model, batch on the model's device)` -> per-row tensors, over every prompt+response, batched
    longest-first (less padding; `ops.map_length_groups`), in input order."""
    if not prompts:
        return (torch.zeros(0), torch.zeros(0))
    rows = collate_sft([EncodedExample(p, r) for p, r in zip(prompts, responses)], pad_id)
    device = next(model.parameters()).device
    with eval_mode(model):
        return map_length_groups(lambda b: fn(model, {k: v.to(device) for k, v in b.items()}), rows, batch_size)


def score_sequences(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                    batch_size: int = 16) -> list[float]:
    """Score of each prompt+response (responses end with EOS); returned in input order."""
    (scores, *_) = _per_sequence(model, prompts, responses, pad_id, batch_size,
                                 lambda m, b: m(b["input_ids"], b["attention_mask"], b["position_ids"]))  # (b,)
    return scores.tolist()


def response_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                      batch_size: int = 16) -> tuple[list[float], list[int]]:
    """Summed log π(response | prompt) of a causal LM and the response token counts, in input order."""
    from tether.models.logprobs import sequence_logprobs

    logp, n = _per_sequence(model, prompts, responses, pad_id, batch_size,
                            lambda m, b: sequence_logprobs(m, b | {"response_mask": b["loss_mask"]}))  # (b,), (b,)
    return logp.tolist(), [int(x) for x in n.tolist()]


def score_pairs(model, pairs, pad_id: int, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Chosen and rejected scores of EncodedPairs."""
    prompts = [p.prompt_ids for p in pairs]
    chosen = score_sequences(model, prompts, [p.chosen_ids for p in pairs], pad_id, batch_size)
    rejected = score_sequences(model, prompts, [p.rejected_ids for p in pairs], pad_id, batch_size)
    return chosen, rejected
