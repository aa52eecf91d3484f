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
def score_sequences(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                    batch_size: int = 16) -> list[float]:
    """Score of each prompt+response (responses end with EOS); returned in input order."""
    examples = [EncodedExample(p, r) for p, r in zip(prompts, responses)]
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    scores = [0.0] * len(examples)
    device = next(model.parameters()).device
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_sft([examples[i] for i in idx], pad_id)
            out = model(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                        batch["position_ids"].to(device))  # (b,)
            for i, s in zip(idx, out.tolist()):
                scores[i] = s
    return scores


@torch.no_grad()
def response_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                      batch_size: int = 16) -> tuple[list[float], list[int]]:
    """Summed log π(response | prompt) of a causal LM and the response token counts, in input order."""
    from tether.models.logprobs import sequence_logprobs

    examples = [EncodedExample(p, r) for p, r in zip(prompts, responses)]
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    sums, counts = [0.0] * len(examples), [0] * len(examples)
    device = next(model.parameters()).device
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_sft([examples[i] for i in idx], pad_id)
            batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                     "position_ids": batch["position_ids"], "response_mask": batch["loss_mask"]}
            logp, n = sequence_logprobs(model, {k: v.to(device) for k, v in batch.items()})  # (b,), (b,)
            for i, lp, c in zip(idx, logp.tolist(), n.tolist()):
                sums[i], counts[i] = lp, int(c)
    return sums, counts


def score_pairs(model, pairs, pad_id: int, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Chosen and rejected scores of EncodedPairs."""
    prompts = [p.prompt_ids for p in pairs]
    chosen = score_sequences(model, prompts, [p.chosen_ids for p in pairs], pad_id, batch_size)
    rejected = score_sequences(model, prompts, [p.rejected_ids for p in pairs], pad_id, batch_size)
    return chosen, rejected
