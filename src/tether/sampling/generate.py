"""Batched generation: left-padded prompts, KV cache, each sequence leaves the batch at its EOS.

Prompts are sorted by length before batching (less padding) and results returned in input order.
A response is cut at its first EOS; one that never produced EOS within `max_new_tokens` is marked
`truncated` (the missing-EOS case later stages penalise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tether.data.collators import collate_prompts
from tether.data.records import Messages
from tether.data.tokenization import encode_prompt
from tether.models.lora import eval_mode


@dataclass
class SamplingConfig:
    max_new_tokens: int = 64
    """Longest response in tokens; a response without EOS by then is `truncated`."""
    temperature: float = 1.0
    """Sampling temperature (ignored when do_sample is false)."""
    top_k: int = 0
    """Keep only the k most likely tokens (0 = off)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    do_sample: bool = True
    """Sample (true) or decode greedily (false)."""
    batch_size: int = 128
    """Rows per generate call. On 2 CPU cores one KV-cached decode step of the 135M model took 59 ms for 1 row and
    181 ms for 64, so fuller batches finish sooner: 150 prompts × 2 samples at T 1 ran at 99 tokens/s in batches
    of 32 rows, 135 at 64 and 134 at 128 (two earlier runs: 90 / 128 / 146 and 99 / 138 / 147); greedy 70 / 81 /
    88 tokens/s (benchmarks/generation_batch.py). 128 rows matched 64 in one run and beat it by 7–14 % in two;
    the clear gain is over 32."""
    min_new_tokens: int = 0
    """EOS is not sampled before this many new tokens (0 = off; benchmarks use it to fix the length)."""


@dataclass
class Generation:
    prompt_ids: list[int]
    response_ids: list[int]
    """Response tokens up to and including the first EOS (no padding)."""
    text: str
    """Decoded response without special tokens."""
    truncated: bool
    """True when no EOS was produced within max_new_tokens."""


def cut_at_eos(tokens: list[int], eos_id: int) -> tuple[list[int], bool]:
    """Tokens up to and including the first EOS; (tokens, truncated=no EOS found)."""
    if eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1], False
    return tokens, True


@torch.no_grad()
def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(B,V) logits with every token outside the top-k and outside the nucleus set to -inf (same rule as
    HF's TopK/TopP warpers: top-k first; top-p keeps the smallest most-likely set whose mass reaches top_p,
    and always the most likely token)."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B,1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1)  # ascending (B,V)
        cum = sorted_logits.softmax(-1).cumsum(-1)  # (B,V)
        drop = cum <= 1 - top_p
        drop[:, -1] = False  # the most likely token stays
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """(B,V) last-position logits → (B,) next tokens: argmax, or a draw from softmax(filtered logits / T)."""
    if not cfg.do_sample:
        return logits.argmax(-1)
    probs = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p).softmax(-1)  # (B,V)
    return torch.multinomial(probs, 1).squeeze(1)


@torch.no_grad()
def generate_tokens(model, prompt_ids: list[list[int]], cfg: SamplingConfig, pad_id: int,
                    eos_id: int) -> list[list[int]]:
    """New tokens of each prompt, up to and including its EOS (or `max_new_tokens` without one).

    One left-padded prefill of the distinct prompts (k samples of one prompt share it: its cache rows are
    copied k times), then one KV-cached forward per token. A row that emits EOS leaves the batch: its cache
    rows are dropped (`DynamicCache.batch_select_indices`), so the later steps run only the rows still
    writing. With T = 1 most replies end long before the longest, and HF `generate` would keep forwarding
    the finished rows as padding (benchmarks/generation.py). The LM head runs at the last position only.
    The caller seeds torch's RNG and batches."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    distinct: dict[tuple[int, ...], int] = {}
    source = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids])  # (B,) row → prompt
    batch = collate_prompts([list(p) for p in distinct], pad_id)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)  # (U,P)
    cache = DynamicCache()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (U,P) pads get 0; they are masked anyway
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1].float()  # (U,V)
    if len(distinct) < len(prompt_ids):
        logits, mask = logits[source.to(device)], mask[source.to(device)]  # (B,V), (B,P)
        cache.batch_select_indices(source.to(device))
    out: list[list[int]] = [[] for _ in prompt_ids]
    rows = torch.arange(len(prompt_ids))  # (A,) which prompt each live row is
    for step in range(cfg.max_new_tokens):
        if step < cfg.min_new_tokens:
            logits[:, eos_id] = float("-inf")
        token = next_tokens(logits, cfg)  # (A,)
        for r, t in zip(rows.tolist(), token.tolist()):
            out[r].append(t)
        live = token != eos_id  # (A,)
        if step == cfg.max_new_tokens - 1 or not live.any():
            break
        if not live.all():
            keep = live.nonzero().squeeze(1)  # (A',)
            rows, token, mask = rows[keep.cpu()], token[keep], mask[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # (A,P+step+1)
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                       cache=cache, use_cache=True).logits[:, -1].float()  # (A,V)
    return out


@torch.no_grad()
def generate(model, tokenizer, prompts: list[Messages], cfg: SamplingConfig, seed: int = 0,
             show_progress: bool = False) -> list[Generation]:
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[Generation | None] = [None] * len(prompts)
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    if show_progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generate", dynamic_ncols=True)
    with eval_mode(model):
        for b, idx in enumerate(batches):
            torch.manual_seed(seed * 1_000_003 + b)
            new_tokens = generate_tokens(model, [encoded[i] for i in idx], cfg, tokenizer.pad_token_id,
                                         tokenizer.eos_token_id)  # (b,R)
            for i, tokens in zip(idx, new_tokens):
                response, truncated = cut_at_eos(tokens, tokenizer.eos_token_id)
                results[i] = Generation(encoded[i], response,
                                        tokenizer.decode(response, skip_special_tokens=True).strip(), truncated)
    return results  # type: ignore[return-value]
