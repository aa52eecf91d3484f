"""Tensor helpers shared by the losses, the RL math and the models (torch only; no transformers).

Masks are boolean (or 0/1) tensors broadcastable to ``x``; True marks a real entry. Masked-out
entries never reach a sum, even when they hold ``nan`` or ``-inf`` (a padded logprob often does),
because they are selected away with ``torch.where`` rather than multiplied by zero.
"""

from __future__ import annotations

import torch

__all__ = [
    "entropy_from_logits",
    "exact_div",
    "first_true_index",
    "gather_logprobs",
    "map_length_groups",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
]

# Rows of low-precision logits upcast to float32 at a time inside gather_logprobs: bounds the extra memory
# to one float32 copy of this many rows rather than of the whole batch.
_UPCAST_CHUNK_ROWS = 1024


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` over entries where ``mask`` is True (over all entries, or along ``dim``)."""
    kept = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))  # x.shape
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over entries where ``mask`` is True; ``nan`` where no entry is kept."""
    count = mask.bool().expand_as(x).sum() if dim is None else mask.bool().expand_as(x).sum(dim=dim)
    return masked_sum(x, mask, dim) / count


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the kept entries of ``x`` (a scalar), with Bessel's correction when ``unbiased``.

    Raises ValueError when too few entries are kept for the estimate (none; or one when unbiased).
    """
    count = int(mask.bool().expand_as(x).sum())
    if count == 0 or (unbiased and count == 1):
        raise ValueError(f"masked_var needs at least {2 if unbiased else 1} kept entries, got {count}")
    centered = x - masked_mean(x, mask)  # x.shape
    variance = masked_sum(centered.square(), mask) / count  # ()
    return variance * count / (count - 1) if unbiased else variance


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise the kept entries of ``x`` to unit (unbiased) variance, and zero mean if ``shift_mean``.

    Statistics come from kept entries only; masked-out entries of the result are exactly 0.
    With ``shift_mean=False`` the original mean is added back (used for PPO reward whitening).
    """
    mean = masked_mean(x, mask)  # ()
    variance = masked_var(x, mask, unbiased=True)  # ()
    whitened = (x - mean) * torch.rsqrt(variance + eps)  # x.shape
    if not shift_mean:
        whitened = whitened + mean  # x.shape
    return torch.where(mask.bool(), whitened, torch.zeros((), dtype=x.dtype, device=x.device))  # x.shape


def gather_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-token ``log_softmax(logits / temperature)`` read at ``labels``.

    ``logits`` is ``(..., V)`` and ``labels`` is ``(...)`` holding valid vocabulary ids (callers mask out
    padding afterwards, so replace ignore ids such as -100 by any valid id first). The result has the
    shape of ``labels`` and is float32 (float64 for float64 logits).

    Memory: uses ``logit[label] - logsumexp(logits)`` so no full-vocabulary log-softmax is kept; float16 /
    bfloat16 logits are upcast to float32 a chunk of rows at a time.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (N,V)
    flat_labels = labels.reshape(-1, 1).long()  # (N,1)
    if flat_logits.dtype in (torch.float32, torch.float64):
        logprobs = _rows_logprobs(flat_logits, flat_labels, temperature)  # (N,)
    else:
        step = _UPCAST_CHUNK_ROWS
        chunks = [
            _rows_logprobs(flat_logits[i : i + step].float(), flat_labels[i : i + step], temperature)
            for i in range(0, flat_logits.shape[0], step)
        ]  # each (≤step,)
        logprobs = torch.cat(chunks) if chunks else flat_logits.new_zeros(0, dtype=torch.float32)  # (N,)
    return logprobs.reshape(labels.shape)  # labels.shape


def _rows_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log_softmax(logits / temperature)[label]`` for float32/64 rows: logits (N,V), labels (N,1)."""
    if temperature != 1.0:
        logits = logits / temperature  # (N,V)
    picked = logits.gather(-1, labels).squeeze(-1)  # (N,)
    return picked - torch.logsumexp(logits, dim=-1)  # (N,)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` over the last dim: ``(..., V) -> (...)``, in float32 or wider."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # (...,V)
    log_z = torch.logsumexp(logits, dim=-1)  # (...)
    probs = torch.softmax(logits, dim=-1)  # (...,V)
    return log_z - (probs * logits).sum(dim=-1)  # (...)


def first_true_index(bool_tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Index of the first True along ``dim`` for each row; the length of ``dim`` where a row has none.

    Example: ``first_true_index(response_ids == eos_id)`` is each response's EOS position (or R if cut).
    """
    length = bool_tensor.shape[dim]
    shape = [1] * bool_tensor.dim()
    shape[dim] = length
    positions = torch.arange(length, device=bool_tensor.device).view(shape)  # 1 … L … 1
    candidates = torch.where(bool_tensor.bool(), positions, length)  # bool_tensor.shape
    return candidates.min(dim=dim).values  # bool_tensor.shape without dim


def exact_div(a: int, b: int, what: str) -> int:
    """``a // b``, raising ValueError naming ``what`` unless ``b`` divides ``a`` exactly."""
    if b == 0 or a % b != 0:
        raise ValueError(f"{what}: {a} is not divisible by {b}")
    return a // b


def map_length_groups(fn, rows: dict[str, torch.Tensor], group_size: int) -> tuple[torch.Tensor, ...]:
    """``fn(sub_rows) -> tuple of (n,) tensors`` over a right-padded batch, in groups of ``group_size`` rows of
    similar length, each group cut to its own longest row: the same per-row results as one call on the whole
    batch (up to float rounding), computed on less padding. Results come back in the original row order (with
    their autograd graphs, so a loss over them backpropagates through every group).

    ``rows``: ``(N,T)`` tensors, one of them ``attention_mask`` (1 = real token, padding on the right only).
    A chosen and a rejected reply of one pair are often of very different lengths; batched together, the short
    one pays for the long one's padding.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    mask = rows["attention_mask"]  # (N,T)
    lengths = mask.sum(dim=-1)  # (N,)
    if not bool((mask.cumsum(dim=-1).eq(lengths[:, None]) | mask.bool()).all()):
        raise ValueError("map_length_groups needs right-padded rows (real tokens first)")
    order = torch.argsort(lengths, descending=True, stable=True)  # (N,)
    parts: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, order.numel(), group_size):
        idx = order[start : start + group_size]  # (g,)
        width = int(lengths[idx].max())
        out = fn({k: v[idx, :width] for k, v in rows.items()})
        parts.append(out if isinstance(out, tuple) else (out,))
    inverse = torch.argsort(order)  # (N,)
    return tuple(torch.cat(group)[inverse.to(group[0].device)] for group in zip(*parts))
