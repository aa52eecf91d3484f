"""Bradley–Terry reward-model loss on paired scores (chosen vs rejected response to the same prompt).

Model (Bradley & Terry 1952; as used for RLHF reward models by Ziegler et al. 2019, Stiennon et al. 2020,
Ouyang et al. 2022): P(chosen ≻ rejected) = σ(r_c − r_r). The loss is the pair-mean negative
log-likelihood, optionally with a per-pair margin m_i that the chosen score must clear (Llama 2, Touvron
et al. 2023, §3.2.2: larger margins for pairs rated as clearly different):

    L = (1 / N) · Σ_i [ −log σ(r_c,i − r_r,i − m_i)  +  c · (r_c,i + r_r,i)² ]

``−log σ(x)`` is computed as ``-logsigmoid(x)`` (= softplus(−x)), which is exact and finite for any finite
``x`` (a naive ``-log(sigmoid(x))`` gives inf at x ≈ −1e2 in float32). The optional term with ``c =
center_coef`` (Eisenstein et al. 2023, "Helping or Herding?"; TRL's ``center_rewards_coefficient``) pulls
the scores of each pair towards a zero mean, so scores stay centred without changing which response
wins; it is 0 by default.

Why ``num_pairs``: as in ``losses/sft.py``, the sum is divided by the pair count of the whole global batch
when the caller passes it, so the summed microbatch (or per-process) losses equal the full-batch mean,
however the batch is split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bradley_terry_loss"]


def bradley_terry_loss(
    chosen_scores: torch.Tensor,
    rejected_scores: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    num_pairs: float | torch.Tensor | None = None,
    center_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed Bradley–Terry negative log-likelihood of the pairs, divided by ``num_pairs``.

    Args:
        chosen_scores: ``(B,)`` scalar scores r_c of the preferred responses.
        rejected_scores: ``(B,)`` scores r_r of the dispreferred responses (same prompts, same order).
        margin: ``(B,)`` (or a scalar) m_i ≥ 0 the difference must exceed; ``None`` means 0.
        num_pairs: the divisor; default ``B`` (this batch's pair mean). Pass the global batch's pair count
            when the batch is split into microbatches or processes. An empty batch gives a loss of 0.
        center_coef: c ≥ 0, weight of the centring regulariser c·(r_c + r_r)² (0 = off).

    Returns:
        ``(loss, stats)``: the scalar loss (dtype of the scores) and detached stats over this batch:
        ``loss/reward`` (this loss), ``reward/accuracy`` (fraction with r_c > r_r, ties count 0.5; the
        margin is not applied), ``reward/margin`` (mean r_c − r_r), ``reward/chosen_score`` and
        ``reward/rejected_score`` (mean scores).
    """
    if chosen_scores.shape != rejected_scores.shape or chosen_scores.dim() != 1:
        raise ValueError(
            f"chosen_scores {tuple(chosen_scores.shape)} and rejected_scores {tuple(rejected_scores.shape)} "
            "must both be (B,)"
        )
    diff = chosen_scores - rejected_scores  # (B,)
    logits = diff if margin is None else diff - margin  # (B,)
    pair_nll = -F.logsigmoid(logits)  # (B,)
    if center_coef:
        pair_nll = pair_nll + center_coef * (chosen_scores + rejected_scores).square()  # (B,)
    local_pairs = diff.shape[0]
    divisor = max(local_pairs, 1) if num_pairs is None else num_pairs
    loss = pair_nll.sum() / divisor  # ()
    with torch.no_grad():
        count = max(local_pairs, 1)
        wins = (diff > 0).to(diff.dtype) + 0.5 * (diff == 0).to(diff.dtype)  # (B,)
        stats = {
            "loss/reward": loss.detach(),
            "reward/accuracy": wins.sum() / count,
            "reward/margin": diff.sum() / count,
            "reward/chosen_score": chosen_scores.detach().sum() / count,
            "reward/rejected_score": rejected_scores.detach().sum() / count,
        }
    return loss, stats
