"""Our per-token logprobs equal a plain transformers forward, and padding changes none of them."""

import torch

from tether.data.collators import collate_packed, collate_sft
from tether.data.tokenization import EncodedExample
from tether.models.logprobs import sequence_token_logprobs


def _plain_logprobs(model, ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double() / temperature  # (T,V)
    lp = torch.log_softmax(logits, -1)
    return torch.stack([lp[t, ids[t + 1]] for t in range(len(ids) - 1)])  # (T-1,)


def test_matches_plain_forward_under_padding(tiny):
    model, tok = tiny
    a = EncodedExample([1, 40, 41, 42], [50, 51, tok.eos_token_id])
    b = EncodedExample([1, 43], [52, tok.eos_token_id])
    batch = collate_sft([a, b], tok.pad_token_id)
    with torch.no_grad():
        lp = sequence_token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                     batch["loss_mask"], temperature=0.7)
    for row, ex in enumerate([a, b]):
        ids = ex.prompt_ids + ex.response_ids
        expected = _plain_logprobs(model, ids, temperature=0.7)[len(ex.prompt_ids) - 1:]
        got = lp[row][batch["loss_mask"][row, 1:]]
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    # a lone example (no padding at all) gives the same logprobs as inside the padded batch
    alone = collate_sft([b], tok.pad_token_id)
    with torch.no_grad():
        lp_alone = sequence_token_logprobs(model, alone["input_ids"], alone["attention_mask"],
                                           alone["position_ids"], alone["loss_mask"], temperature=0.7)
    torch.testing.assert_close(lp_alone[0][alone["loss_mask"][0, 1:]], lp[1][batch["loss_mask"][1, 1:]],
                               atol=1e-5, rtol=1e-5)


def test_left_padding_changes_no_logprob(tiny):
    model, tok = tiny
    ids = [1, 40, 41, 50, 51, tok.eos_token_id]
    mask = torch.tensor([[False, False, False, True, True, True]])
    pad = 3
    padded_ids = torch.tensor([[tok.pad_token_id] * pad + ids])
    attention = torch.tensor([[0] * pad + [1] * len(ids)])
    positions = torch.tensor([[0] * pad + list(range(len(ids)))])
    padded_mask = torch.cat([torch.zeros(1, pad, dtype=torch.bool), mask], 1)
    with torch.no_grad():
        plain = sequence_token_logprobs(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long),
                                        torch.arange(len(ids))[None], mask)
        left = sequence_token_logprobs(model, padded_ids, attention, positions, padded_mask)
    torch.testing.assert_close(left[padded_mask[:, 1:]], plain[mask[:, 1:]], atol=1e-5, rtol=1e-5)


def test_packed_rows_do_not_attend_across_examples(tiny):
    model, tok = tiny
    a = EncodedExample([1, 40, 41], [50, tok.eos_token_id])
    b = EncodedExample([1, 43, 44, 45], [52, 53, tok.eos_token_id])
    packed = collate_packed([[a, b]], tok.pad_token_id)
    sep = collate_sft([a, b], tok.pad_token_id)
    with torch.no_grad():
        lp_packed = sequence_token_logprobs(model, packed["input_ids"], packed["attention_mask"],
                                            packed["position_ids"], packed["loss_mask"])
        lp_sep = sequence_token_logprobs(model, sep["input_ids"], sep["attention_mask"], sep["position_ids"],
                                         sep["loss_mask"])
    torch.testing.assert_close(lp_packed[packed["loss_mask"][:, 1:]], lp_sep[sep["loss_mask"][:, 1:]],
                               atol=1e-5, rtol=1e-5)


def test_sequence_logprobs_sum_response_tokens_only(tiny):
    from tether.data.collators import collate_pairs
    from tether.data.tokenization import EncodedPair
    from tether.models.logprobs import sequence_logprobs

    model, tok = tiny
    eos = tok.eos_token_id
    pairs = [EncodedPair([1, 40, 41], [50, 51, eos], [52, eos]), EncodedPair([1, 43], [53, eos], [54, 55, 56, eos])]
    batch = collate_pairs(pairs, tok.pad_token_id)
    with torch.no_grad():
        total, count = sequence_logprobs(model, batch)
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    for i, (prompt, response) in enumerate(rows):
        expected = _plain_logprobs(model, prompt + response)[len(prompt) - 1:].sum()
        torch.testing.assert_close(total[i].double(), expected, atol=1e-5, rtol=1e-5)
        assert int(count[i]) == len(response)


def test_non_target_positions_are_zero_and_gradients_match_a_plain_log_softmax(tiny):
    model, tok = tiny
    a = EncodedExample([1, 40, 41, 42], [50, 51, tok.eos_token_id])
    b = EncodedExample([1, 43], [52, tok.eos_token_id])
    batch = collate_sft([a, b], tok.pad_token_id)
    mask = batch["loss_mask"][:, 1:].bool()
    params = [p for p in model.parameters() if p.requires_grad]

    lp = sequence_token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                 batch["loss_mask"])
    assert torch.all(lp[~mask] == 0) and torch.all(lp[mask] < 0)
    ours = torch.autograd.grad(lp.sum(), params, allow_unused=True)

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"]).logits[:, :-1]  # (B,T-1,V): every position
    plain = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(lp[mask], plain[mask], atol=1e-5, rtol=1e-5)
    reference = torch.autograd.grad(plain[mask].sum(), params, allow_unused=True)
    for g, r in zip(ours, reference):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
