"""Forwarding each prompt once for all of its replies: a preference pair's chosen and rejected reply (or the
k samples of one prompt) share the prompt, so the prompts run once, keeping their keys and values (the KV
cache), and the replies continue from copies of their prompt's rows. Same results as one forward per
prompt+reply row (up to float rounding), with the gradient of every reply flowing into its prompt's states.

The replies run in groups of similar length whatever their prompt (each group takes the cache rows it needs),
so a short reply does not pay for a long one's padding. Batches come from
`data.collators.collate_prompt_replies` / `collate_pair_prompts`: prompts left-padded ``(U,P)``, replies
right-padded ``(N,R)``, ``source (N,)`` naming each reply's prompt row. Under DDP every forward goes through
the wrapped model and one backward follows, as in a plain step. A model whose forward takes no KV cache needs
the row-by-row layout (`train.share_prompts false`), and so does one with sliding-window attention layers on
sequences longer than its window: the copied caches are plain full-attention `DynamicLayer`s.

Used by the pairwise stages (reward model, DPO family), the scorers (`models.scoring`) and PPO's k samples per
prompt (`shared_prompt_per_token`: per-token logprobs, entropy and values).
"""

from __future__ import annotations

import torch

from tether.data.collators import position_ids_from_mask
from tether.ops import gather_logprobs, masked_sum


def reply_groups(reply_mask: torch.Tensor, group_rows: int) -> list[torch.Tensor]:
    """Reply rows longest first, in groups of `group_rows` (0: one group of all rows): index tensors ``(g,)``."""
    if group_rows < 0:
        raise ValueError(f"group_rows must be >= 0, got {group_rows}")
    order = torch.argsort(reply_mask.sum(-1), descending=True, stable=True)  # (N,)
    return list(order.split(group_rows)) if group_rows else [order]


def run_prompts(model, batch: dict[str, torch.Tensor], **kwargs):
    """``(output, kv)``: the prompts' forward through `model` (a transformers decoder, with or without an LM
    head; ``kwargs`` such as ``logits_to_keep=1`` go to it) and each layer's ``(keys, values)``, ``(U,h,P,d)``."""
    from transformers import DynamicCache

    mask = batch["prompt_mask"]  # (U,P)
    cache = DynamicCache()
    out = model(input_ids=batch["prompt_ids"], attention_mask=mask, position_ids=position_ids_from_mask(mask),
                cache=cache, use_cache=True, **kwargs)
    return out, [(layer.keys, layer.values) for layer in cache.layers]


def run_replies(model, batch: dict[str, torch.Tensor], kv, rows: torch.Tensor, reply_ids: torch.Tensor,
                reply_mask: torch.Tensor, **kwargs):
    """The forward of ``reply_ids (g,R')`` (reply `rows`, or a leading column slice of them) continuing from
    the cached states of their prompts (``kwargs`` go to the model)."""
    from transformers import DynamicCache

    source = batch["source"][rows]  # (g,) prompt row of each reply
    cache = DynamicCache(ddp_cache_data=[(keys[source], values[source]) for keys, values in kv])
    prompt_mask = batch["prompt_mask"][source]  # (g,P)
    mask = torch.cat([prompt_mask, reply_mask.to(prompt_mask.dtype)], dim=1)  # (g,P+R')
    offsets = torch.arange(reply_ids.shape[1], device=reply_ids.device)  # (R',)
    positions = prompt_mask.sum(-1, keepdim=True) + offsets  # (g,R') continuing each prompt's positions
    return model(input_ids=reply_ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                 **kwargs)


def _in_row_order(groups: list[torch.Tensor], parts: list[torch.Tensor]) -> torch.Tensor:
    """Per-group results ``(g,...)`` back in reply-row order (autograd graphs kept)."""
    order = torch.cat(groups)  # (N,)
    return torch.cat(parts)[torch.argsort(order)]


def shared_prompt_logprobs(model, batch: dict[str, torch.Tensor], temperature: float = 1.0,
                           group_rows: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log π(reply | prompt) per reply row and its token count: ``(N,)``, ``(N,)`` — what
    `models.logprobs.sequence_logprobs` gives on the row-by-row layout.

    The prompt's last position predicts each reply's first token (the LM head runs there only); the replies,
    in `reply_groups` of `group_rows`, predict the rest and skip their last column, which predicts nothing.
    """
    reply_ids, reply_mask = batch["reply_ids"], batch["reply_mask"].bool()  # (N,R)
    prompt_out, kv = run_prompts(model, batch, logits_to_keep=1)
    first = prompt_out.logits[:, -1]  # (U,V) predicts each prompt's first reply token
    groups = reply_groups(reply_mask, group_rows)
    parts = []
    for rows in groups:
        width = int(reply_mask[rows].sum(-1).max())
        ids, mask = reply_ids[rows, :width], reply_mask[rows, :width]  # (g,w)
        total = torch.where(mask[:, 0], gather_logprobs(first[batch["source"][rows]], ids[:, 0], temperature), 0.0)
        if width > 1:
            logits = run_replies(model, batch, kv, rows, ids[:, :-1], mask[:, :-1]).logits  # (g,w-1,V)
            total = total + masked_sum(gather_logprobs(logits, ids[:, 1:], temperature), mask[:, 1:], dim=-1)
        parts.append(total)  # (g,)
    return _in_row_order(groups, parts), reply_mask.sum(-1)


def shared_prompt_per_token(model, batch: dict[str, torch.Tensor], fn, logits: bool = True, hidden: bool = False,
                            group_rows: int = 0) -> tuple[torch.Tensor, ...]:
    """Per-token results over the replies, ``(N,R)`` tensors in row order, 0 past each reply's end.

    For reply token t the model's outputs at the position that predicts it (the prompt's last position for
    t = 0, reply position t − 1 after) — the row layout's ``[:, P-1 : P-1+R]`` column slice — go to
    ``fn(logits (g,w,V) or None, hidden (g,w,H) or None, rows (g,))``, which returns ``(g,w)`` tensors (PPO's
    logprobs, entropy, values). ``logits``: a causal LM's; ``hidden``: its (or, with ``logits=False``, a
    backbone's) last hidden states. The replies run in `reply_groups` of `group_rows` (0: one forward), each
    cut to its longest reply; the LM head runs at the prompts' last position and on the replies only.
    """
    reply_ids, reply_mask, source = batch["reply_ids"], batch["reply_mask"].bool(), batch["source"]  # (N,R), (N,)
    width_all, lengths = reply_ids.shape[1], reply_mask.sum(-1)  # R, (N,)

    def outputs(out) -> list[torch.Tensor]:  # the requested tensors of one forward, (·,T,·) each
        states = [out.hidden_states[-1] if logits else out.last_hidden_state] if hidden else []
        return ([out.logits] if logits else []) + states

    lm_kwargs = {"output_hidden_states": hidden} if logits else {}  # a backbone returns last_hidden_state anyway
    prompt_out, kv = run_prompts(model, batch, **({**lm_kwargs, "logits_to_keep": 1} if logits else {}))
    last = outputs(prompt_out)  # (U,·,·) each; position −1 predicts every reply's first token
    groups = reply_groups(reply_mask, group_rows)
    parts = []
    for rows in groups:
        width = max(1, int(lengths[rows].max()))
        per_forward = [[t[source[rows], -1:] for t in last]]  # (g,1,·) each
        if width > 1:  # the reply's last column predicts nothing
            out = run_replies(model, batch, kv, rows, reply_ids[rows, : width - 1], reply_mask[rows, : width - 1],
                              **lm_kwargs)
            per_forward.append(outputs(out))  # (g,w-1,·) each
        merged = [torch.cat(ts, dim=1) for ts in zip(*per_forward)]  # (g,w,·) each
        group_logits, group_hidden = (merged.pop(0) if logits else None), (merged.pop(0) if hidden else None)
        results = fn(group_logits, group_hidden, rows)  # (g,w) each
        parts.append([torch.nn.functional.pad(torch.where(reply_mask[rows, :width], r, 0.0), (0, width_all - width))
                      for r in results])  # (g,R) each
    return tuple(_in_row_order(groups, list(column)) for column in zip(*parts))


def shared_prompt_hidden(backbone, batch: dict[str, torch.Tensor], pooling: str,
                         group_rows: int = 0) -> torch.Tensor:
    """``(N,H)`` pooled last hidden states of each prompt+reply row of a decoder backbone: ``last`` at the
    reply's last real token (its EOS), ``mean`` over the prompt's and the reply's real tokens."""
    reply_ids, reply_mask = batch["reply_ids"], batch["reply_mask"].bool()  # (N,R)
    lengths = reply_mask.sum(-1)  # (N,)
    if bool((lengths == 0).any()):
        raise ValueError("a reply has no token; cannot score an empty reply")
    prompt_out, kv = run_prompts(backbone, batch)
    prompt_mask, source = batch["prompt_mask"].bool(), batch["source"]  # (U,P), (N,)
    if pooling == "mean":  # the prompt's share of each row's mean
        prompt_sum = masked_sum(prompt_out.last_hidden_state, prompt_mask[..., None], dim=1)  # (U,H)
    groups = reply_groups(reply_mask, group_rows)
    parts = []
    for rows in groups:
        width = int(lengths[rows].max())
        mask = reply_mask[rows, :width]  # (g,w)
        hidden = run_replies(backbone, batch, kv, rows, reply_ids[rows, :width], mask).last_hidden_state  # (g,w,H)
        if pooling == "last":
            parts.append(hidden[torch.arange(len(rows), device=hidden.device), lengths[rows] - 1])  # (g,H)
        else:
            count = prompt_mask.sum(-1)[source[rows]] + lengths[rows]  # (g,)
            parts.append((prompt_sum[source[rows]] + masked_sum(hidden, mask[..., None], dim=1)) / count[:, None])
    return _in_row_order(groups, parts)
