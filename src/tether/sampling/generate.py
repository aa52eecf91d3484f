"""Batched generation with the HF backend: left-padded prompts, KV cache, stop per sequence at EOS.

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
    batch_size: int = 32
    """Prompts per generate call."""


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
def generate_tokens(model, prompt_ids: list[list[int]], cfg: SamplingConfig, pad_id: int,
                    eos_id: int) -> list[list[int]]:
    """New tokens of each prompt from ONE left-padded, KV-cached `model.generate` call (rows continue with
    padding after their EOS; cut them with `cut_at_eos`). The caller seeds torch's RNG and batches."""
    device = next(model.parameters()).device
    batch = collate_prompts(prompt_ids, pad_id)
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, pad_token_id=pad_id, eos_token_id=eos_id)
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_k=cfg.top_k or None, top_p=cfg.top_p)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    out = model.generate(input_ids=batch["input_ids"].to(device),
                         attention_mask=batch["attention_mask"].to(device), **kwargs)  # (B,P+R)
    return out[:, batch["input_ids"].shape[1]:].tolist()  # (B,R)


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
