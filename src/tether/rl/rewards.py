"""From sampled responses and reward-model scores to per-token PPO rewards.

Three steps, in the order the PPO trainer runs them:

1. ``truncate_at_eos``: everything after a response's first EOS becomes padding and is masked out; the
   EOS itself is a real token (the reward model reads its score there, and the policy must learn to
   emit it). The mask is the only record of where a response ends, so pad must differ from EOS.
2. ``apply_missing_eos_penalty``: responses that hit the length limit without an EOS get ``penalty``
   subtracted from their score (truncated answers are usually incomplete; without the penalty the
   policy can learn to ramble until it is cut off).
3. ``shaped_rewards``: the per-token reward of Ziegler et al. 2019 (eq. 2) / Stiennon et al. 2020 (eq. 1),
   spread over tokens as in Ouyang et al. 2022:

       rewards_t = −β·KL_t                      at every real token t
       rewards_T += score                       at the last real token T of the response
       rewards_t = 0                            at padding

   with KL_t a per-token estimate from ``tether.rl.kl`` and β = ``kl_coef``.
"""

from __future__ import annotations

import torch

from tether.errors import ConfigError
from tether.ops import first_true_index

__all__ = ["apply_missing_eos_penalty", "shaped_rewards", "truncate_at_eos"]


def truncate_at_eos(
    response_ids: torch.Tensor, eos_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each response after its first EOS.

    Only the first EOS decides where a response ends: a token equal to ``pad_id`` before it (a model can
    sample the pad token when it is a real vocabulary entry) stays a real token, and a response with no
    EOS keeps all R tokens.

    Args:
        response_ids: ``(B,R)`` sampled token ids, the response's first token at position 0.
        eos_id: the end-of-sequence id.
        pad_id: the padding id written after the EOS; must differ from ``eos_id``.

    Returns:
        ``(response_ids, response_mask, has_eos)``: ``(B,R)`` ids with every position after the first EOS
        set to ``pad_id``; ``(B,R)`` bool mask, True at real tokens up to and including the first EOS;
        ``(B,)`` bool, True where the response contains an EOS.

    Raises:
        ConfigError: ``pad_id == eos_id`` (padding would be indistinguishable from the end of a response).
    """
    if pad_id == eos_id:
        raise ConfigError(
            f"pad token id {pad_id} equals the EOS id: PPO needs a pad token distinct from EOS "
            "(set the tokenizer's pad token to another special token)"
        )
    if response_ids.dim() != 2:
        raise ValueError(f"response_ids must be (B,R), got {tuple(response_ids.shape)}")
    length = response_ids.shape[1]
    eos_index = first_true_index(response_ids == eos_id, dim=1)  # (B,) R where no EOS
    positions = torch.arange(length, device=response_ids.device)  # (R,)
    response_mask = positions.unsqueeze(0) <= eos_index.unsqueeze(1)  # (B,R)
    truncated = torch.where(response_mask, response_ids, torch.full_like(response_ids, pad_id))  # (B,R)
    has_eos = eos_index < length  # (B,)
    return truncated, response_mask, has_eos


def apply_missing_eos_penalty(score: torch.Tensor, has_eos: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """``score − penalty`` for the responses without an EOS; others (and all, when ``penalty`` is None) unchanged.

    Args:
        score: ``(B,)`` reward-model scores.
        has_eos: ``(B,)`` bool from ``truncate_at_eos``.
        penalty: how much to subtract (≥ 0), or None for no penalty (the input tensor is returned).

    Returns:
        ``(B,)`` penalised scores (a new tensor unless ``penalty`` is None).
    """
    if score.shape != has_eos.shape or score.dim() != 1:
        raise ValueError(f"score {tuple(score.shape)} and has_eos {tuple(has_eos.shape)} must both be (B,)")
    if penalty is None:
        return score
    if not penalty >= 0:
        raise ValueError(f"missing_eos_penalty must be ≥ 0 (it is subtracted), got {penalty}")
    return torch.where(has_eos.bool(), score, score - penalty)  # (B,)


def shaped_rewards(
    score: torch.Tensor, kl: torch.Tensor, response_mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards: −kl_coef·kl_t at real tokens, the score added at each row's last real token.

    The last real token is the highest True position of the row's mask (the EOS, or the final token of a
    truncated response), so this works for right padding and for masks with holes alike.

    A row with no real token at all (an empty response) gets rewards 0 everywhere: its score has no
    token to land on and is dropped. Such a row also has no token in any loss, so it trains nothing.

    Args:
        score: ``(B,)`` sequence scores (after ``apply_missing_eos_penalty``).
        kl: ``(B,R)`` per-token KL estimates; values at padding are ignored (may be nan/inf).
        response_mask: ``(B,R)`` True at real tokens.
        kl_coef: β ≥ 0 (a controller's ``.value``); 0 makes the score the only reward.

    Returns:
        ``(B,R)`` rewards, 0 at padding, in the promoted dtype of ``kl`` and ``score``.
    """
    if kl.dim() != 2 or kl.shape != response_mask.shape or score.shape != kl.shape[:1]:
        raise ValueError(
            f"score {tuple(score.shape)}, kl {tuple(kl.shape)}, response_mask {tuple(response_mask.shape)}: "
            "need (B,), (B,R), (B,R)"
        )
    mask = response_mask.bool()  # (B,R)
    dtype = torch.promote_types(kl.dtype, score.dtype)
    if mask.shape[1] == 0:  # R = 0: nothing to reward (max over an empty dim would raise)
        return torch.zeros(kl.shape, dtype=dtype, device=kl.device)  # (B,0)
    zero = torch.zeros((), dtype=dtype, device=kl.device)  # ()
    kl_penalty = torch.where(mask, -kl_coef * kl.to(dtype), zero)  # (B,R)
    positions = torch.arange(kl.shape[1], device=kl.device)  # (R,)
    last_index = torch.where(mask, positions, -1).max(dim=1).values  # (B,) −1 for a row without real tokens
    is_last = positions.unsqueeze(0) == last_index.unsqueeze(1)  # (B,R) one True per non-empty row
    return kl_penalty + torch.where(is_last, score.to(dtype).unsqueeze(1), zero)  # (B,R)
