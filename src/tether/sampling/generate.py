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
from tether.models.kv_cache import ReservedCache
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
    logprobs: list[float] | None = None
    """With `generate(..., logprobs=True)`: each response token's log-probability under the distribution it was
    drawn from — log_softmax(logits / T), top-k/top-p filtered, EOS held back before `min_new_tokens` — from
    the decode step's own logits. At T = 1 without filters that is log π(y_t | ·) (the eval's KL uses it)."""


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


def _below(bound: torch.Tensor) -> torch.Tensor:
    """The largest float64 strictly below each entry of `bound` (a draw u·total may round up to total)."""
    return torch.nextafter(bound, torch.zeros_like(bound))


@torch.no_grad()
def sample_categorical(probs: torch.Tensor, block: int = 256, u: torch.Tensor | None = None) -> torch.Tensor:
    """(B,V) non-negative weights (rows need not sum to 1) → (B,) draws, token i with probability p_i / Σp.

    Inverse CDF in two levels: the row's mass in blocks of `block` tokens, a uniform draw picks the block by
    their cumulative sum (float64), then the token by the cumulative sum inside that one block (float64 again,
    so a token of tiny probability keeps it: one float32 running sum over 49,152 tokens would round those away).
    `u` (B,) in [0, 1): the uniforms (default: `torch.rand`, the caller's seeded RNG). On 2 CPU cores, 128 rows
    × the 49,152-token vocabulary: 0.8 ms, where `torch.multinomial` took 104 ms (its exponential draw for every
    token was 30 % of a T = 1 generation). A row without positive finite mass (NaN logits) raises, as
    `torch.multinomial` does."""
    rows, vocab = probs.shape
    if vocab % block:
        probs = torch.nn.functional.pad(probs, (0, -vocab % block))  # zero weight: never drawn
    blocks = probs.reshape(rows, -1, block)  # (B,K,b)
    mass = blocks.sum(-1).to(torch.float64)  # (B,K) float32 sums of 256 (summing in float64 took 12 ms)
    cdf = mass.cumsum(-1)  # (B,K)
    total = cdf[:, -1]  # (B,)
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        raise ValueError("sampling: a row's probabilities are NaN, infinite or all zero (non-finite logits?)")
    if u is None:
        u = torch.rand(rows, dtype=torch.float64, device=probs.device)
    target = torch.minimum(u.to(torch.float64)[:, None] * cdf[:, -1:], _below(cdf[:, -1:]))  # (B,1)
    k = torch.searchsorted(cdf, target, right=True)  # (B,1) first block whose cumulative mass exceeds the target
    inside = (target - (cdf.gather(1, k) - mass.gather(1, k))).clamp(min=0)  # (B,1) offset into block k
    within = blocks.gather(1, k[:, :, None].expand(rows, 1, block)).squeeze(1).to(torch.float64).cumsum(-1)  # (B,b)
    j = torch.searchsorted(within, torch.minimum(inside, _below(within[:, -1:])), right=True)  # (B,1)
    return (k * block + j).squeeze(1)


def next_tokens(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """(B,V) last-position logits → (B,) next tokens: argmax, or a draw from softmax(filtered logits / T)."""
    if not cfg.do_sample:
        return logits.argmax(-1)
    probs = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p).softmax(-1)  # (B,V)
    return sample_categorical(probs)


LEAVE_AT = 8
"""Rows that have emitted EOS leave the batch once they number at least 1/LEAVE_AT of the rows still writing
(until then they are carried along, their tokens ignored): dropping them copies every layer's cache, and doing
it at each EOS was 15 % of a 128-row T = 1 generation on 2 CPU cores. 64 of the demo's prompts × 2 samples,
the base model, one 128-row call: 2.15 ms per generated token leaving at every EOS, 1.97 at 1/8 (1.93 at 1/4,
1.89 at 1/16; single runs). benchmarks/decode.py: 2.29 → 2.11 ms on 150 prompts × 2."""


@torch.no_grad()
def generate_tokens(model, prompt_ids: list[list[int]], cfg: SamplingConfig, pad_id: int, eos_id: int,
                    return_logprobs: bool = False):
    """New tokens of each prompt, up to and including its EOS (or `max_new_tokens` without one); with
    `return_logprobs`, (tokens, logprobs): each token's log-probability under the distribution it was drawn from
    (`Generation.logprobs`; it costs one more log-softmax over the vocabulary per step).

    One left-padded prefill of the distinct prompts (k samples of one prompt share it: its cache rows are
    copied k times), then one KV-cached forward per token. Rows that have emitted EOS leave the batch (their
    cache rows are dropped, `batch_select_indices`) once they are 1/`LEAVE_AT` of the rows still writing, so
    the later steps run mostly the rows still writing. With T = 1 most replies end long before the longest,
    and HF `generate` would keep forwarding the finished rows as padding (benchmarks/generation.py). The cache
    (`models.kv_cache.ReservedCache`) reserves room for `max_new_tokens` at the prefill, so a step writes its
    keys/values in place instead of copying the whole cache, as `DynamicCache`'s concatenation does. The LM
    head runs at the last position only.
    The caller seeds torch's RNG and batches."""
    device = next(model.parameters()).device
    distinct: dict[tuple[int, ...], int] = {}
    source = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids])  # (B,) row → prompt
    batch = collate_prompts([list(p) for p in distinct], pad_id)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)  # (U,P)
    cache = ReservedCache(reserve=cfg.max_new_tokens)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (U,P) pads get 0; they are masked anyway
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1].float()  # (U,V)
    if len(distinct) < len(prompt_ids):
        logits, mask = logits[source.to(device)], mask[source.to(device)]  # (B,V), (B,P)
        cache.batch_select_indices(source.to(device))
    out: list[list[int]] = [[] for _ in prompt_ids]
    out_logprobs: list[list[float]] = [[] for _ in prompt_ids]
    rows = torch.arange(len(prompt_ids))  # (A,) which prompt each batch row is
    done = torch.zeros(len(prompt_ids), dtype=torch.bool, device=device)  # (A,) rows past their EOS, still in the batch
    for step in range(cfg.max_new_tokens):
        if step < cfg.min_new_tokens:
            logits[:, eos_id] = float("-inf")
        token = next_tokens(logits, cfg)  # (A,)
        for r, t, finished in zip(rows.tolist(), token.tolist(), done.tolist()):
            if not finished:
                out[r].append(t)
        if return_logprobs:
            drawn = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p).log_softmax(-1)  # (A,V)
            for r, lp, finished in zip(rows.tolist(), drawn.gather(1, token[:, None]).squeeze(1).tolist(),
                                       done.tolist()):
                if not finished:
                    out_logprobs[r].append(lp)
        done |= token == eos_id
        if step == cfg.max_new_tokens - 1 or done.all():
            break
        if done.sum() * LEAVE_AT >= max(len(done) - done.sum(), 1):  # finished rows leave the batch
            keep = (~done).nonzero().squeeze(1)  # (A',)
            rows, token, mask, done = rows[keep.cpu()], token[keep], mask[keep], done[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # (A,P+step+1)
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                       cache=cache, use_cache=True).logits[:, -1].float()  # (A,V)
    return (out, out_logprobs) if return_logprobs else out


@torch.no_grad()
def generate(model, tokenizer, prompts: list[Messages], cfg: SamplingConfig, seed: int = 0,
             show_progress: bool = False, logprobs: bool = False) -> list[Generation]:
    """One Generation per prompt, in order (prompts sorted by length into calls of `cfg.batch_size` rows, call b
    seeded by (seed, b)); `logprobs`: each also carries its tokens' sampler log-probabilities."""
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
            new = generate_tokens(model, [encoded[i] for i in idx], cfg, tokenizer.pad_token_id,
                                  tokenizer.eos_token_id, return_logprobs=logprobs)
            new_tokens, new_logprobs = new if logprobs else (new, [None] * len(idx))  # (b,R) each
            for i, tokens, lps in zip(idx, new_tokens, new_logprobs):
                response, truncated = cut_at_eos(tokens, tokenizer.eos_token_id)
                results[i] = Generation(encoded[i], response,
                                        tokenizer.decode(response, skip_special_tokens=True).strip(), truncated,
                                        None if lps is None else lps[: len(response)])
    return results  # type: ignore[return-value]
