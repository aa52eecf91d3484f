"""PPO losses on per-token tensors: the clipped policy loss, the clipped value loss, explained variance.

All inputs are ``(B,R)`` over response tokens with ``response_mask`` True at real tokens. Entries at
padding never reach a loss, a stat or a gradient, even when they hold nan or inf (they are replaced
with neutral values by ``torch.where`` before any arithmetic). ``old_logprobs``, ``advantages``,
``old_values`` and ``returns`` come from the rollout and are treated as constants (detached).

Why ``num_tokens``: as in ``losses/sft.py``, each loss is the sum over this batch's real tokens divided by
``num_tokens``; the default is this batch's real-token count (the token mean; 0 tokens give a loss of 0).
Passing the real-token count of the whole minibatch makes the summed microbatch (or per-process) losses
equal the minibatch token mean, however it is split. Stats are always this batch's own token means.
"""

from __future__ import annotations

import torch

from tether.ops import masked_sum

__all__ = ["clipped_policy_loss", "clipped_value_loss", "explained_variance"]

Stats = dict[str, torch.Tensor]


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{listed} must all be (B,R)")


def _check_clip(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_range: float = 0.2,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """PPO's clipped surrogate: Schulman et al. 2017, "Proximal Policy Optimization Algorithms", eq. 7.

        ρ_t = exp(log π_θ(y_t) − log π_old(y_t))
        L = (1 / N) · Σ_t max( −A_t·ρ_t, −A_t·clip(ρ_t, 1 − ε, 1 + ε) )

    the negated L^CLIP (a loss to minimise), summed over real tokens. At ρ = 1 (the first minibatch of a
    rollout) the loss is −(token mean of A) and the gradient is that of the plain policy gradient.

    Args:
        logprobs: ``(B,R)`` current policy log-probabilities of the sampled tokens (with gradient).
        old_logprobs: ``(B,R)`` log-probabilities under the policy that sampled the rollout (constant).
        advantages: ``(B,R)`` advantages A_t, usually whitened (constant).
        response_mask: ``(B,R)`` True at real tokens.
        clip_range: ε > 0.
        num_tokens: the divisor N; default this batch's real-token count.

    Returns:
        ``(loss, stats)``: the scalar loss and detached token-mean stats over this batch's real tokens:
        ``loss/policy``; ``policy/approx_kl``, the k3 estimate (ρ − 1) − log ρ of KL(π_old‖π_θ) (unbiased
        for tokens sampled from π_old, and ≥ 0; Schulman 2020); ``policy/clipfrac``, the fraction of real
        tokens where the clipped term is strictly larger, i.e. selected (A > 0 and ρ > 1 + ε, or A < 0 and
        ρ < 1 − ε: the tokens that get no gradient); ``policy/ratio_mean``; ``policy/ratio_max`` (0 when
        there are no real tokens).
    """
    _check_shapes(logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, response_mask=response_mask)
    _check_clip("clip_range", clip_range)
    mask = response_mask.bool()  # (B,R)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)  # ()
    log_ratio = torch.where(mask, logprobs - old_logprobs.detach(), zero)  # (B,R) pads: 0, so ρ = 1
    adv = torch.where(mask, advantages.detach().to(logprobs.dtype), zero)  # (B,R) pads: 0
    ratio = torch.exp(log_ratio)  # (B,R)
    unclipped = -adv * ratio  # (B,R)
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)  # (B,R)
    per_token = torch.maximum(unclipped, clipped)  # (B,R)
    local_tokens = mask.sum()  # ()
    divisor = local_tokens.clamp(min=1) if num_tokens is None else num_tokens
    loss = masked_sum(per_token, mask) / divisor  # ()
    with torch.no_grad():
        count = local_tokens.clamp(min=1)  # ()
        log_ratio_d = log_ratio.detach()  # (B,R)
        ratio_d = ratio.detach()  # (B,R)
        k3 = torch.expm1(log_ratio_d) - log_ratio_d  # (B,R) 0 at pads
        clip_selected = (clipped.detach() > unclipped.detach()) & mask  # (B,R)
        stats = {
            "loss/policy": loss.detach(),
            "policy/approx_kl": masked_sum(k3, mask) / count,
            "policy/clipfrac": clip_selected.sum().to(logprobs.dtype) / count,
            "policy/ratio_mean": masked_sum(ratio_d, mask) / count,
            "policy/ratio_max": torch.where(mask, ratio_d, zero).max() if mask.numel() else zero.clone(),
        }
    return loss, stats


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    response_mask: torch.Tensor,
    value_clip_range: float = 0.2,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Clipped value loss: the value clipping of OpenAI baselines' PPO2 (Huang et al. 2022, "The 37
    Implementation Details of Proximal Policy Optimization", detail 9):

        V^clip_t = V_old,t + clip(V_t − V_old,t, −ε, ε)
        L = ½ · (1 / N) · Σ_t max( (V_t − R_t)², (V^clip_t − R_t)² )

    Args:
        values: ``(B,R)`` current value predictions V_t (with gradient).
        old_values: ``(B,R)`` the rollout's value predictions V_old (constant).
        returns: ``(B,R)`` GAE returns R_t, the regression targets (constant).
        response_mask: ``(B,R)`` True at real tokens.
        value_clip_range: ε > 0, in the units of the values.
        num_tokens: the divisor N; default this batch's real-token count.

    Returns:
        ``(loss, stats)``: the scalar loss and detached token-mean stats: ``loss/value``;
        ``value/clipfrac``, the fraction of real tokens where the clipped error is strictly larger (the
        selected term; those tokens get no gradient); ``value/error``, the token mean of (V − R)².
    """
    _check_shapes(values=values, old_values=old_values, returns=returns, response_mask=response_mask)
    _check_clip("value_clip_range", value_clip_range)
    mask = response_mask.bool()  # (B,R)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)  # ()
    old = old_values.detach().to(values.dtype)  # (B,R)
    target = returns.detach().to(values.dtype)  # (B,R)
    # pads: V = V_old = R = 0, so both errors are 0 and no nan can reach a sum or a gradient
    v = torch.where(mask, values, zero)  # (B,R)
    old = torch.where(mask, old, zero)  # (B,R)
    target = torch.where(mask, target, zero)  # (B,R)
    v_clipped = old + torch.clamp(v - old, -value_clip_range, value_clip_range)  # (B,R)
    error = (v - target).square()  # (B,R)
    error_clipped = (v_clipped - target).square()  # (B,R)
    per_token = torch.maximum(error, error_clipped)  # (B,R)
    local_tokens = mask.sum()  # ()
    divisor = local_tokens.clamp(min=1) if num_tokens is None else num_tokens
    loss = 0.5 * masked_sum(per_token, mask) / divisor  # ()
    with torch.no_grad():
        count = local_tokens.clamp(min=1)  # ()
        clip_selected = (error_clipped.detach() > error.detach()) & mask  # (B,R)
        stats = {
            "loss/value": loss.detach(),
            "value/clipfrac": clip_selected.sum().to(values.dtype) / count,
            "value/error": masked_sum(error.detach(), mask) / count,
        }
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Var[R − V] / Var[R] over the real tokens: 1 for perfect values, 0 for a constant at the mean
    of the returns, < 0 for values worse than that constant.

    Both variances are population variances over the same tokens (the ratio does not depend on the
    normalisation). Returns a detached 0-dim tensor; nan when there are no real tokens or the returns
    have zero variance (the ratio is undefined).
    """
    if values.shape != returns.shape or values.shape != mask.shape:
        raise ValueError(
            f"values {tuple(values.shape)}, returns {tuple(returns.shape)} and mask {tuple(mask.shape)} disagree"
        )
    with torch.no_grad():
        keep = mask.bool()  # (B,R)
        count = keep.sum()  # ()
        dtype = torch.promote_types(values.dtype, returns.dtype)
        target = returns.detach().to(dtype)  # (B,R)
        residual = target - values.detach().to(dtype)  # (B,R)

        def population_var(x: torch.Tensor) -> torch.Tensor:
            mean = masked_sum(x, keep) / count  # ()
            return masked_sum((x - mean).square(), keep) / count  # ()

        var_returns = population_var(target)  # ()
        ratio = population_var(residual) / var_returns  # ()
        nan = torch.full((), float("nan"), dtype=dtype, device=values.device)  # ()
        return torch.where(var_returns > 0, 1.0 - ratio, nan)  # ()
