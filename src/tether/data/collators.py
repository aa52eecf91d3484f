"""Collators: lists of token ids → padded tensors. Pure functions of their inputs (tested literally).

Conventions: `attention_mask` 1 = real token; `loss_mask` True where the token is a training target
(response tokens, EOS included); position ids restart at 0 at each sequence's first real token so
left padding changes nothing.
"""

from __future__ import annotations

import torch

from tether.data.tokenization import EncodedExample, EncodedPair, PairGroup


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,T) 0/1 mask → (B,T) positions counting real tokens only (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B,T)


def collate_sft(batch: list[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad prompt+response to the batch's longest sequence."""
    width = max(len(ex) for ex in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # (B,T)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B,T)
    loss_mask = torch.zeros((len(batch), width), dtype=torch.bool)  # (B,T)
    for i, ex in enumerate(batch):
        p, r = len(ex.prompt_ids), len(ex.response_ids)
        input_ids[i, : p + r] = torch.tensor(ex.prompt_ids + ex.response_ids)
        attention_mask[i, : p + r] = 1
        loss_mask[i, p : p + r] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask,
            "position_ids": position_ids_from_mask(attention_mask)}


def pack_examples(examples: list[EncodedExample], max_length: int) -> list[list[EncodedExample]]:
    """Greedy first-fit packing of examples into rows of at most `max_length` tokens (order kept)."""
    rows: list[list[EncodedExample]] = []
    lengths: list[int] = []
    for ex in examples:
        for i, used in enumerate(lengths):
            if used + len(ex) <= max_length:
                rows[i].append(ex)
                lengths[i] += len(ex)
                break
        else:
            rows.append([ex])
            lengths.append(len(ex))
    return rows


def collate_packed(rows: list[list[EncodedExample]], pad_id: int) -> dict[str, torch.Tensor]:
    """Concatenate each row's examples; position ids restart per example.

    No attention_mask is returned on purpose: transformers then derives a block-diagonal mask from
    the restarting position ids, so packed examples never attend to each other. Trailing pads form
    their own segment and are excluded from the loss.
    """
    width = max(sum(len(ex) for ex in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B,T)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)  # (B,T)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.bool)  # (B,T)
    for i, row in enumerate(rows):
        start = 0
        for ex in row:
            p, n = len(ex.prompt_ids), len(ex)
            input_ids[i, start : start + n] = torch.tensor(ex.prompt_ids + ex.response_ids)
            position_ids[i, start : start + n] = torch.arange(n)
            loss_mask[i, start + p : start + n] = True
            start += n
        position_ids[i, start:] = torch.arange(width - start)
    return {"input_ids": input_ids, "attention_mask": None, "loss_mask": loss_mask, "position_ids": position_ids}


def collate_prompts(prompts: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts for generation (the last column is every prompt's last token)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)  # (B,P)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B,P)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p):] = torch.tensor(p)
        attention_mask[i, width - len(p):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def collate_pairs(batch: list[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """B pairs → 2B right-padded sequences, chosen rows first (rows 0..B-1), then rejected (B..2B-1).

    One batched forward scores both sides. `response_mask` marks response tokens (for mean pooling
    over the response, and lengths).
    """
    n = len(batch)
    out = collate_scored_rows([p.prompt_ids for p in batch], [p.chosen_ids for p in batch]
                              + [p.rejected_ids for p in batch], [*range(n), *range(n)], pad_id)
    return {**out, "margin": torch.tensor([p.margin for p in batch], dtype=torch.float32)}  # (B,)


def collate_prompt_replies(prompts: list[list[int]], replies: list[list[int]], source: list[int],
                           pad_id: int) -> dict[str, torch.Tensor]:
    """Each prompt once, left-padded, and the replies right-padded: the layout of a forward that runs every
    prompt once and reuses its KV cache for all of its replies (`models.shared_prompt`).

    ``source[j]`` is the prompt row of reply j. Returns prompt_ids/prompt_mask ``(U,P)`` (the last column is
    every prompt's last token), reply_ids/reply_mask ``(N,R)`` and source ``(N,)``. Every reply needs a token.
    """
    if len(source) != len(replies) or any(not 0 <= s < len(prompts) for s in source):
        raise ValueError(f"source must give a prompt row in [0, {len(prompts)}) for each of {len(replies)} replies")
    if any(not r for r in replies):
        raise ValueError("every reply needs at least one token (its EOS)")
    prompt = collate_prompts(prompts, pad_id)
    width = max(len(r) for r in replies)
    reply_ids = torch.full((len(replies), width), pad_id, dtype=torch.long)  # (N,R)
    reply_mask = torch.zeros((len(replies), width), dtype=torch.long)  # (N,R)
    for i, r in enumerate(replies):
        reply_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        reply_mask[i, : len(r)] = 1
    return {"prompt_ids": prompt["input_ids"], "prompt_mask": prompt["attention_mask"], "reply_ids": reply_ids,
            "reply_mask": reply_mask, "source": torch.tensor(source, dtype=torch.long)}


def collate_pair_prompts(batch: list[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """B pairs → B prompts (left-padded, each once) and 2B replies, chosen rows first (0..B-1), then rejected
    (B..2B-1): `collate_pairs`' rows, laid out for a shared-prompt forward (`collate_prompt_replies`)."""
    n = len(batch)
    out = collate_prompt_replies([p.prompt_ids for p in batch], [p.chosen_ids for p in batch]
                                 + [p.rejected_ids for p in batch], [*range(n), *range(n)], pad_id)
    return {**out, "margin": torch.tensor([p.margin for p in batch], dtype=torch.float32)}  # margin (B,)


def select_replies(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The shared-prompt batch of reply ``rows`` (in that order) and only their prompts, each cut to the
    narrowest width that holds them (prompt padding is on the left, reply padding on the right)."""
    used, source = torch.unique(batch["source"][rows], return_inverse=True)  # (U',), (n,)
    prompt_mask = batch["prompt_mask"][used]  # (U',P)
    reply_mask = batch["reply_mask"][rows]  # (n,R)
    p_width, r_width = int(prompt_mask.sum(-1).max()), int(reply_mask.sum(-1).max())
    return {"prompt_ids": batch["prompt_ids"][used, -p_width:], "prompt_mask": prompt_mask[:, -p_width:],
            "reply_ids": batch["reply_ids"][rows, :r_width], "reply_mask": reply_mask[:, :r_width], "source": source}


def collate_pair_batch(batch: list[EncodedPair], pad_id: int, share_prompts: bool) -> dict[str, torch.Tensor]:
    """`collate_pair_prompts` (each prompt forwarded once for both replies) or `collate_pairs` (one row per
    prompt+reply): the pairwise stages' `train.share_prompts`."""
    return collate_pair_prompts(batch, pad_id) if share_prompts else collate_pairs(batch, pad_id)


def collate_scored_rows(prompts: list[list[int]], replies: list[list[int]], source: list[int],
                        pad_id: int) -> dict[str, torch.Tensor]:
    """One right-padded row per reply, its prompt (``prompts[source[j]]``) in front: `collate_sft`'s rows, with
    its loss mask as ``response_mask``. Returns input_ids/attention_mask/position_ids/response_mask ``(N,T)``."""
    rows = collate_sft([EncodedExample(prompts[s], r) for s, r in zip(source, replies)], pad_id)
    rows["response_mask"] = rows.pop("loss_mask")  # (N,T) True at reply tokens
    return rows


def collate_pair_groups(groups: list[PairGroup], pad_id: int, share_prompts: bool) -> dict[str, torch.Tensor]:
    """Prompt groups (`group_pairs`) → every distinct reply once, in the shared-prompt layout
    (`collate_prompt_replies`) or one row per prompt+reply (`collate_scored_rows`), and the pairs as row
    indices: ``chosen_index``/``rejected_index`` (P,) into the N reply rows, ``margin`` (P,)."""
    replies, source, chosen, rejected, margins = [], [], [], [], []
    for g, group in enumerate(groups):
        first = len(replies)
        replies += group.replies
        source += [g] * len(group.replies)
        chosen += [first + c for c, _ in group.pairs]
        rejected += [first + r for _, r in group.pairs]
        margins += group.margins
    prompts = [group.prompt_ids for group in groups]
    out = (collate_prompt_replies(prompts, replies, source, pad_id) if share_prompts
           else collate_scored_rows(prompts, replies, source, pad_id))
    return {**out, "chosen_index": torch.tensor(chosen, dtype=torch.long),
            "rejected_index": torch.tensor(rejected, dtype=torch.long),
            "margin": torch.tensor(margins, dtype=torch.float32)}


def forwarded_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Token slots (padding included) one forward of a pair batch runs, in either layout: the numerator of a
    stage's tokens/s."""
    if "reply_ids" in batch:
        return int(batch["prompt_ids"].numel() + batch["reply_ids"].numel())
    return int(batch["input_ids"].numel())


def collate_rollout(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """PPO layout: left-padded prompts, then right-padded responses, so every response starts at column P.

    The logits that predict response token t then sit at column P − 1 + t in every row, so per-token
    logprobs, values and KL are plain column slices ``[:, P-1 : P-1+R]``. Responses may be empty lists.
    Returns input_ids/attention_mask/position_ids ``(B,P+R)``, response_ids/response_mask ``(B,R)`` and
    ``prompt_width`` (P, a 0-dim tensor).
    """
    p_width = max(len(p) for p in prompts)
    r_width = max(1, max(len(r) for r in responses))
    batch = len(prompts)
    input_ids = torch.full((batch, p_width + r_width), pad_id, dtype=torch.long)  # (B,P+R)
    attention_mask = torch.zeros((batch, p_width + r_width), dtype=torch.long)  # (B,P+R)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, p_width - len(p) : p_width + len(r)] = torch.tensor(p + r, dtype=torch.long)
        attention_mask[i, p_width - len(p) : p_width + len(r)] = 1
    response_mask = attention_mask[:, p_width:].bool()  # (B,R)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "position_ids": position_ids_from_mask(attention_mask),
            "response_ids": input_ids[:, p_width:], "response_mask": response_mask,
            "prompt_width": torch.tensor(p_width)}


def collate_rollout_shared(prompts: list[list[int]], responses: list[list[int]],
                           pad_id: int) -> dict[str, torch.Tensor]:
    """PPO rows in the shared-prompt layout (`collate_prompt_replies`): each distinct prompt once, the
    responses right-padded, ``source`` naming each response's prompt; ``response_ids`` is ``reply_ids`` (so
    column t is response token t, as in `collate_rollout`). Every response needs a token (its EOS, or the
    cut); `models.shared_prompt.shared_prompt_per_token` runs it."""
    distinct: dict[tuple[int, ...], int] = {}
    source = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
    batch = collate_prompt_replies([list(p) for p in distinct], responses, source, pad_id)
    return {**batch, "response_ids": batch["reply_ids"], "response_mask": batch["reply_mask"].bool()}
