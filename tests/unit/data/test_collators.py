import pytest
import torch

from tether.data.collators import (
    collate_packed,
    collate_prompts,
    collate_sft,
    pack_examples,
    position_ids_from_mask,
)
from tether.data.tokenization import EncodedExample, EncodedPair

PAD = 0


def test_collate_sft_right_pads_and_masks_response_only():
    batch = [EncodedExample([5, 6], [7, 2]), EncodedExample([5], [8, 9, 2])]
    out = collate_sft(batch, PAD)
    assert out["input_ids"].tolist() == [[5, 6, 7, 2], [5, 8, 9, 2]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert out["loss_mask"].tolist() == [[False, False, True, True], [False, True, True, True]]
    batch = [EncodedExample([5, 6, 6], [7, 2]), EncodedExample([5], [2])]
    out = collate_sft(batch, PAD)
    assert out["input_ids"].tolist() == [[5, 6, 6, 7, 2], [5, 2, PAD, PAD, PAD]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert out["loss_mask"].tolist() == [[False, False, False, True, True], [False, True, False, False, False]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 1, 1, 1]]


def test_collate_prompts_left_pads():
    out = collate_prompts([[5, 6, 7], [8]], PAD)
    assert out["input_ids"].tolist() == [[5, 6, 7], [PAD, PAD, 8]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_position_ids_ignore_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_pack_first_fit_keeps_order_and_limit():
    exs = [EncodedExample([1] * 3, [2] * 2), EncodedExample([1] * 4, [2] * 4), EncodedExample([1], [2] * 2)]
    rows = pack_examples(exs, max_length=8)
    assert [[len(e) for e in row] for row in rows] == [[5, 3], [8]]


def test_collate_packed_restarts_positions_and_masks():
    rows = [[EncodedExample([5], [7, 2]), EncodedExample([6, 6], [2])], [EncodedExample([5], [2])]]
    out = collate_packed(rows, PAD)
    assert out["attention_mask"] is None
    assert out["input_ids"].tolist() == [[5, 7, 2, 6, 6, 2], [5, 2, PAD, PAD, PAD, PAD]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2], [0, 1, 0, 1, 2, 3]]
    assert out["loss_mask"].tolist() == [[False, True, True, False, False, True],
                                         [False, True, False, False, False, False]]


def test_collate_pairs_chosen_first_one_batch():
    from tether.data.collators import collate_pairs
    from tether.data.tokenization import EncodedPair

    out = collate_pairs([EncodedPair([5, 6], [7, 2], [8, 8, 8, 2], margin=1.5), EncodedPair([5], [9, 2], [2])], PAD)
    assert out["input_ids"].tolist() == [[5, 6, 7, 2, PAD, PAD], [5, 9, 2, PAD, PAD, PAD],
                                         [5, 6, 8, 8, 8, 2], [5, 2, PAD, PAD, PAD, PAD]]
    assert out["attention_mask"].sum(1).tolist() == [4, 3, 6, 2]
    assert out["response_mask"].tolist()[2] == [False, False, True, True, True, True]
    assert out["response_mask"].tolist()[3] == [False, True, False, False, False, False]
    assert out["margin"].tolist() == [1.5, 0.0]


def test_collate_pair_prompts_each_prompt_once_left_padded_replies_right_padded():
    from tether.data.collators import collate_pair_prompts

    out = collate_pair_prompts([EncodedPair([5, 6], [7, 2], [8, 8, 8, 2], margin=1.5), EncodedPair([5], [9, 2], [2])],
                               PAD)
    assert out["prompt_ids"].tolist() == [[5, 6], [PAD, 5]]
    assert out["prompt_mask"].tolist() == [[1, 1], [0, 1]]
    assert out["reply_ids"].tolist() == [[7, 2, PAD, PAD], [9, 2, PAD, PAD], [8, 8, 8, 2], [2, PAD, PAD, PAD]]
    assert out["reply_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert out["source"].tolist() == [0, 1, 0, 1]
    assert out["margin"].tolist() == [1.5, 0.0]


def test_select_replies_keeps_their_prompts_and_cuts_both_paddings():
    from tether.data.collators import collate_prompt_replies, forwarded_tokens, select_replies

    batch = collate_prompt_replies([[5, 6, 7], [5], [4, 4]], [[9, 2], [2], [8, 8, 8, 2], [3, 2]], [0, 1, 2, 1], PAD)
    sub = select_replies(batch, torch.tensor([3, 1]))  # both replies of prompt 1 only
    assert sub["prompt_ids"].tolist() == [[5]] and sub["prompt_mask"].tolist() == [[1]]
    assert sub["reply_ids"].tolist() == [[3, 2], [2, PAD]]
    assert sub["source"].tolist() == [0, 0]
    assert forwarded_tokens(sub) == 1 + 4 and forwarded_tokens(batch) == 3 * 3 + 4 * 4


def test_collate_prompt_replies_rejects_a_bad_source_or_an_empty_reply():
    from tether.data.collators import collate_prompt_replies

    with pytest.raises(ValueError, match="source"):
        collate_prompt_replies([[5]], [[2], [2]], [0, 1], PAD)
    with pytest.raises(ValueError, match="at least one token"):
        collate_prompt_replies([[5]], [[]], [0], PAD)


def test_group_pairs_scores_each_reply_once_per_prompt():
    from tether.data.tokenization import group_pairs

    a, b, c = [7, 2], [8, 8, 2], [9, 2]
    groups = group_pairs([EncodedPair([5, 6], a, b, margin=1.0), EncodedPair([4], c, a),
                          EncodedPair([5, 6], a, c), EncodedPair([5, 6], b, c, margin=0.5)])
    assert [g.prompt_ids for g in groups] == [[5, 6], [4]]  # in order of each prompt's first pair
    assert groups[0].replies == [a, b, c] and groups[0].pairs == [(0, 1), (0, 2), (1, 2)]
    assert groups[0].margins == [1.0, 0.0, 0.5]
    assert groups[1].replies == [c, a] and groups[1].pairs == [(0, 1)] and groups[1].margins == [0.0]
    assert len(groups[0]) == 2 + 3  # prompt + longest reply


def test_collate_pair_groups_index_the_reply_rows_in_both_layouts():
    from tether.data.collators import collate_pair_groups
    from tether.data.tokenization import PairGroup

    groups = [PairGroup([5, 6], [[7, 2], [8, 8, 2], [9, 2]], [(0, 1), (0, 2), (1, 2)], [1.0, 0.0, 0.5]),
              PairGroup([4], [[3, 2], [2]], [(1, 0)], [0.0])]
    shared = collate_pair_groups(groups, PAD, share_prompts=True)
    assert shared["prompt_ids"].tolist() == [[5, 6], [PAD, 4]]
    assert shared["reply_ids"].tolist() == [[7, 2, PAD], [8, 8, 2], [9, 2, PAD], [3, 2, PAD], [2, PAD, PAD]]
    assert shared["source"].tolist() == [0, 0, 0, 1, 1]
    assert shared["chosen_index"].tolist() == [0, 0, 1, 4] and shared["rejected_index"].tolist() == [1, 2, 2, 3]
    assert shared["margin"].tolist() == [1.0, 0.0, 0.5, 0.0]
    rows = collate_pair_groups(groups, PAD, share_prompts=False)
    assert rows["input_ids"].tolist() == [[5, 6, 7, 2, PAD], [5, 6, 8, 8, 2], [5, 6, 9, 2, PAD],
                                          [4, 3, 2, PAD, PAD], [4, 2, PAD, PAD, PAD]]
    assert rows["response_mask"].tolist()[4] == [False, True, False, False, False]
    assert rows["chosen_index"].tolist() == [0, 0, 1, 4] and rows["rejected_index"].tolist() == [1, 2, 2, 3]
