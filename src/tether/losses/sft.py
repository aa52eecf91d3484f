"""Supervised fine-tuning loss: token-mean cross-entropy over the response tokens.

The caller aligns logits and labels before calling (``logits[:, t]`` predicts ``labels[:, t]``): for a
causal LM that is ``logits = out.logits[:, :-1]``, ``labels = input_ids[:, 1:]``,
``loss_mask = response_mask[:, 1:]``. Computing logits only at the positions that are trained on
(``logits`` as ``(N, V)``, ``labels`` as ``(N,)``) works the same, and saves the vocabulary head's cost.

Why ``num_tokens``: with gradient accumulation or several processes, dividing each microbatch by its own
token count weights tokens in short microbatches more heavily. Passing the token count of the whole
global batch makes the summed microbatch losses equal the full-batch token mean, however it is split.
"""

from __future__ import annotations

import torch

from tether.ops import gather_logprobs, masked_sum

__all__ = ["sft_loss"]


def sft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor,
    num_tokens: int | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy summed over the tokens where ``loss_mask`` is True, divided by ``num_tokens``.

    Args:
        logits: ``(..., V)`` next-token logits, already aligned with ``labels``.
        labels: ``(...)`` target ids; entries outside ``loss_mask`` are ignored (any value, e.g. -100).
        loss_mask: ``(...)`` True where the token is trained on (response tokens).
        num_tokens: the divisor; default ``loss_mask.sum()`` (this batch's token mean). Pass the global
            batch's response-token count when the batch is split into microbatches or processes.
            A batch with no trained tokens gives a loss of 0 under the default.

    Returns:
        ``(loss, stats)``: the scalar loss (dtype of the logprobs: float32, or float64 for float64
        logits) and detached stats ``loss/sft`` (this loss), ``sft/nll`` (this batch's own token-mean
        negative log-likelihood), ``sft/accuracy`` (argmax == label over trained tokens) and
        ``sft/num_tokens`` (this batch's trained-token count).
    """
    mask = loss_mask.bool()  # (...)
    safe_labels = torch.where(mask, labels, torch.zeros_like(labels))  # (...) ignore ids -> 0
    token_nll = -gather_logprobs(logits, safe_labels)  # (...)
    local_tokens = mask.sum()  # ()
    divisor = local_tokens.clamp(min=1) if num_tokens is None else num_tokens
    nll_sum = masked_sum(token_nll, mask)  # ()
    loss = nll_sum / divisor  # ()
    with torch.no_grad():
        correct = (logits.argmax(dim=-1) == labels) & mask  # (...)
        stats = {
            "loss/sft": loss.detach(),
            "sft/nll": nll_sum.detach() / local_tokens.clamp(min=1),
            "sft/accuracy": correct.sum() / local_tokens.clamp(min=1),
            "sft/num_tokens": local_tokens,
        }
    return loss, stats
