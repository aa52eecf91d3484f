"""collate_rollout against literal tensors: left-padded prompts, right-padded responses, aligned columns."""

from __future__ import annotations

import torch

from tether.data.collators import collate_rollout

PAD = 0


def test_literal_layout():
    batch = collate_rollout([[5, 6, 7], [8]], [[9, 2], [3, 4, 2]], PAD)
    # P = 3, R = 3: row 0 = [5 6 7 | 9 2 pad], row 1 = [pad pad 8 | 3 4 2]
    assert batch["input_ids"].tolist() == [[5, 6, 7, 9, 2, PAD], [PAD, PAD, 8, 3, 4, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    assert batch["response_ids"].tolist() == [[9, 2, PAD], [3, 4, 2]]
    assert batch["response_mask"].tolist() == [[True, True, False], [True, True, True]]
    assert int(batch["prompt_width"]) == 3
    # the logits at column P − 1 + t predict response token t in every row
    p = int(batch["prompt_width"])
    assert torch.equal(batch["input_ids"][:, p:], batch["response_ids"])


def test_empty_response_keeps_one_masked_column():
    batch = collate_rollout([[5, 6]], [[]], PAD)
    assert batch["input_ids"].tolist() == [[5, 6, PAD]]
    assert batch["response_mask"].tolist() == [[False]]
