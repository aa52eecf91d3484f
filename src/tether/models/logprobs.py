"""Per-token log-probabilities, computing the vocabulary head only where target tokens are.

The LM head is a (hidden × 49k) matmul, ~20 % of SmolLM2's FLOPs: running it over prompt positions
is waste. We call the model's own forward (so DDP/FSDP/DeepSpeed and PEFT wrappers see a normal
forward and synchronise gradients) with `logits_to_keep` = the suffix of positions that holds any
target, then pick the target positions out of it.
"""

from __future__ import annotations

import torch

from tether.ops import gather_logprobs


def target_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  position_ids: torch.Tensor, target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits predicting each target token, and those tokens.

    input_ids, position_ids, target_mask: (B,T); target_mask True where input_ids[t] is a target.
    Returns logits (N,V) float32 and labels (N,) for the N targets, in row-major order.
    """
    seq_len = input_ids.shape[1]
    predicts = target_mask[:, 1:]  # (B,T-1): the state at position t predicts token t+1
    columns = predicts.any(0).nonzero()
    start = int(columns[0]) if len(columns) else seq_len - 1  # first position that predicts a target
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                logits_to_keep=seq_len - start)  # logits at positions start..T-1: (B,T-start,V)
    logits = out.logits[:, :-1][predicts[:, start:]].float()  # (N,V)
    labels = input_ids[:, 1:][predicts]  # (N,)
    return logits, labels


def sequence_token_logprobs(model, input_ids, attention_mask, position_ids, target_mask,
                            temperature: float = 1.0) -> torch.Tensor:
    """(B,T-1) log π(token t+1 | ≤ t) at target positions, 0 elsewhere (temperature-aware).

    The log-softmax runs on the logits block the model returns, as it is (contiguous): picking the target
    rows out first (`target_logits`) would copy the (N, V) logits and scatter their gradient back, ~1 s per
    step at 16 × 128 response tokens. Positions in the block that predict no target (the last one, padding)
    read a dummy label 0 and are zeroed after.
    """
    seq_len = input_ids.shape[1]
    predicts = target_mask[:, 1:].bool()  # (B,T-1): the state at position t predicts token t+1
    columns = predicts.any(0).nonzero()
    start = int(columns[0]) if len(columns) else seq_len - 1  # first position that predicts a target
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                logits_to_keep=seq_len - start)  # logits at positions start..T-1: (B,T-start,V)
    labels = torch.nn.functional.pad(input_ids[:, start + 1 :], (0, 1))  # (B,T-start); the last predicts nothing
    logprobs = gather_logprobs(out.logits, labels, temperature=temperature)[:, :-1]  # (B,T-1-start)
    logprobs = torch.where(predicts[:, start:], logprobs, 0.0)  # (B,T-1-start)
    return torch.nn.functional.pad(logprobs, (start, 0))  # (B,T-1)


def sequence_logprobs(model, batch: dict, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log π(response | prompt) per row and the number of response tokens per row.

    `batch` has input_ids, attention_mask, position_ids and `response_mask` (B,T) marking response
    tokens (as `collate_pairs` / `collate_sft`'s loss_mask do). Returns (sum (B,), count (B,)); the
    mean per-token logprob, used by length-normalised losses, is sum / count.
    """
    mask = batch["response_mask"]
    token_logps = sequence_token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                          mask, temperature)  # (B,T-1)
    return token_logps.sum(-1), mask[:, 1:].sum(-1)  # (B,), (B,)
