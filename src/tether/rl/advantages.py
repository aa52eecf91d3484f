"""Generalized advantage estimation over response tokens, and advantage whitening.

GAE (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
eqs. 11–16), with the response as one episode whose token t is a step, value V_t and reward r_t:

    δ_t = r_t + γ·V_{t+1} − V_t
    A_t = δ_t + γλ·A_{t+1}              (A_t = Σ_l (γλ)^l δ_{t+l})
    returns_t = A_t + V_t               (the λ-return, the value-function target)

The episode ends at the last real token T: V_{T+1} = 0 and A_{T+1} = 0. Padding is skipped, as if the
padded positions were removed from the row: the recursion carries V and A of the next real token across
pads, and pads get advantage 0 and return 0. So a row gives the same advantages on its real tokens
whether it is right-padded, left-padded or has holes.

With γ = 1, λ = 1, A_t = Σ_{u≥t} r_u − V_t (Monte Carlo); with λ = 0, A_t = δ_t (one-step TD).

Critic-free estimators take one sequence return per response, R_i = Σ_t rewards_i,t (the score minus
the KL penalty), for k responses sampled per prompt (rows p·k … p·k + k − 1 share prompt p), and
give every token of response i the same advantage:

    RLOO (Ahmadian et al. 2024, "Back to Basics", eq. 5; Kool et al. 2019):
        A_i = R_i − 1/(k−1) · Σ_{j≠i} R_j          the leave-one-out mean is the baseline
    GRPO (Shao et al. 2024, "DeepSeekMath", §4.1.2, outcome supervision):
        A_i = (R_i − mean_j R_j) / (std_j R_j + eps)  std with Bessel's correction

``SEQUENCE_ADVANTAGES`` maps the names to these functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tether.ops import masked_whiten

__all__ = ["SEQUENCE_ADVANTAGES", "gae", "grpo_advantages", "rloo_advantages", "whiten_advantages"]


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float = 1.0,
    gae_lambda: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns by the backward GAE recursion (a Python loop over R, vectorised over B).

    Args:
        rewards: ``(B,R)`` per-token rewards (``shaped_rewards``); ignored at padding.
        values: ``(B,R)`` value estimates V_t of the rollout; ignored at padding (may be nan/inf there).
        response_mask: ``(B,R)`` True at real tokens.
        gamma: discount γ in [0, 1].
        gae_lambda: λ in [0, 1], the bias/variance trade-off (1: Monte Carlo, 0: one-step TD).

    Returns:
        ``(advantages, returns)``, both ``(B,R)`` and detached (they are constants in the PPO losses),
        0 at padding; ``returns = advantages + values`` at real tokens.
    """
    if rewards.dim() != 2 or rewards.shape != values.shape or rewards.shape != response_mask.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and response_mask "
            f"{tuple(response_mask.shape)} must all be (B,R)"
        )
    if not (0.0 <= gamma <= 1.0 and 0.0 <= gae_lambda <= 1.0):
        raise ValueError(f"gamma and gae_lambda must be in [0, 1], got gamma={gamma}, gae_lambda={gae_lambda}")
    rewards = rewards.detach()  # (B,R)
    values = values.detach()  # (B,R)
    mask = response_mask.bool()  # (B,R)
    dtype = torch.promote_types(rewards.dtype, values.dtype)
    zero = torch.zeros((), dtype=dtype, device=rewards.device)  # ()
    batch, length = rewards.shape
    next_value = torch.zeros(batch, dtype=dtype, device=rewards.device)  # (B,) V_{t+1}; 0 after the last token
    next_advantage = torch.zeros(batch, dtype=dtype, device=rewards.device)  # (B,) A_{t+1}
    advantages = torch.zeros(batch, length, dtype=dtype, device=rewards.device)  # (B,R)
    for t in reversed(range(length)):
        real = mask[:, t]  # (B,)
        value_t = torch.where(real, values[:, t].to(dtype), zero)  # (B,) pads: 0, so no nan enters
        reward_t = torch.where(real, rewards[:, t].to(dtype), zero)  # (B,)
        delta = reward_t + gamma * next_value - value_t  # (B,)
        advantage_t = delta + gamma * gae_lambda * next_advantage  # (B,)
        advantages[:, t] = torch.where(real, advantage_t, zero)  # (B,)
        next_value = torch.where(real, value_t, next_value)  # (B,) a pad carries the next real token's V
        next_advantage = torch.where(real, advantage_t, next_advantage)  # (B,)
    returns = torch.where(mask, advantages + values.to(dtype), zero)  # (B,R)
    return advantages, returns


def whiten_advantages(advantages: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Advantages normalised over the real tokens of the batch to mean 0 (if ``shift_mean``) and variance 1.

    Statistics come from the real tokens only (``ops.masked_whiten``, unbiased variance, eps 1e-8);
    padded entries of the result are exactly 0. Raises ValueError with fewer than 2 real tokens.

    Args:
        advantages: ``(B,R)`` from ``gae``.
        mask: ``(B,R)`` True at real tokens.
        shift_mean: subtract the mean (the usual choice); False only rescales (the mean is kept).

    Returns:
        ``(B,R)`` whitened advantages.
    """
    return masked_whiten(advantages, mask, shift_mean=shift_mean)  # (B,R) 0 at padding


def _groups(returns: torch.Tensor, k: int) -> torch.Tensor:
    """``(B,)`` sequence returns as ``(B/k, k)`` prompt groups (raises unless k ≥ 2 divides B)."""
    if returns.dim() != 1:
        raise ValueError(f"sequence returns must be (B,), got {tuple(returns.shape)}")
    if k < 2 or returns.shape[0] % k:
        raise ValueError(f"need k ≥ 2 samples per prompt dividing the batch, got k={k} for B={returns.shape[0]}")
    return returns.detach().reshape(-1, k)  # (B/k,k)


def rloo_advantages(returns: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out: each response's return minus the mean return of the other k − 1.

    Vectorised as A_i = R_i − (Σ_j R_j − R_i) / (k − 1). Plain loop::

        for i in range(B): A[i] = R[i] − mean(R[j] for j in group(i) if j != i)

    Args:
        returns: ``(B,)`` sequence returns, rows grouped by prompt in consecutive blocks of ``k``.
        k: samples per prompt (≥ 2).

    Returns:
        ``(B,)`` detached advantages; they sum to 0 within each group.
    """
    grouped = _groups(returns, k)  # (B/k,k)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)  # (B/k,k)
    return (grouped - baseline).reshape(-1)  # (B,)


def grpo_advantages(returns: torch.Tensor, k: int, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised returns: (R_i − group mean) / (group std + eps), std unbiased (k − 1).

    A group whose k returns are equal gets advantages 0 (nothing to learn from it).

    Args:
        returns: ``(B,)`` sequence returns, rows grouped by prompt in consecutive blocks of ``k``.
        k: samples per prompt (≥ 2).
        eps: added to the std (keeps near-tied groups from exploding).

    Returns:
        ``(B,)`` detached advantages.
    """
    grouped = _groups(returns, k)  # (B/k,k)
    mean = grouped.mean(dim=1, keepdim=True)  # (B/k,1)
    std = grouped.std(dim=1, keepdim=True)  # (B/k,1) unbiased
    return ((grouped - mean) / (std + eps)).reshape(-1)  # (B,)


SEQUENCE_ADVANTAGES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "rloo": rloo_advantages,
    "grpo": grpo_advantages,
}
"""Critic-free advantage estimators by name: ``fn(returns (B,), k) -> (B,)``."""
