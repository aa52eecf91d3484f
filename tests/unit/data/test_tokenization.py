"""split_by_prompt: whole prompts held out, deterministic in the generator; finished_reply: what an RM reads."""

from __future__ import annotations

import torch

from tether.data.tokenization import EncodedPair, finished_reply, split_by_prompt


def _pairs() -> list[EncodedPair]:
    # 10 prompts, prompt p has p % 3 + 1 pairs
    return [EncodedPair([p, 7], [p, k], [k]) for p in range(10) for k in range(p % 3 + 1)]


def test_split_by_prompt_holds_out_whole_prompts() -> None:
    items = _pairs()
    train, held = split_by_prompt(items, 0.3, torch.Generator().manual_seed(0))
    held_prompts = {tuple(x.prompt_ids) for x in held}
    assert len(held_prompts) == 3  # int(10 * 0.3)
    assert not held_prompts & {tuple(x.prompt_ids) for x in train}
    assert len(train) + len(held) == len(items)
    for p in held_prompts:  # every pair of a held-out prompt is held out
        assert sum(tuple(x.prompt_ids) == p for x in held) == p[0] % 3 + 1
    assert train == [x for x in items if x in train]  # input order kept


def test_split_by_prompt_is_a_function_of_the_generator() -> None:
    a = split_by_prompt(_pairs(), 0.3, torch.Generator().manual_seed(1))
    b = split_by_prompt(_pairs(), 0.3, torch.Generator().manual_seed(1))
    assert a == b
    assert split_by_prompt(_pairs(), 0.0, torch.Generator().manual_seed(1)) == (_pairs(), [])


def test_finished_reply_appends_eos_only_where_it_is_missing() -> None:
    eos = 2
    assert finished_reply([5, 6, eos], eos) == [5, 6, eos]  # ended with EOS: as it is
    assert finished_reply([5, 6], eos) == [5, 6, eos]  # cut at max_new_tokens: EOS appended
    assert finished_reply([], eos) == [eos]
    assert finished_reply([eos, 5], eos) == [eos, 5, eos]  # only the last token counts
    ids = [5, 6]
    finished_reply(ids, eos)
    assert ids == [5, 6]  # the input is not changed
