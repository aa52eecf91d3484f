"""PPO's shared-prompt layout (each prompt forwarded once for its k samples) gives the row layout's per-token
logprobs, entropy, values, reference logprobs and RM scores, with the same gradients; the microbatch plan keeps
a prompt's samples together."""

from __future__ import annotations

import copy

import pytest
import torch

from tether.data.collators import collate_rollout, collate_rollout_shared
from tether.data.tokenization import finished_reply
from tether.models.scalar_head import ScalarHeadModel
from tether.models.scoring import score_sequences
from tether.train.loop import plan_prompt_microbatches
from tether.train.ppo import PolicyAndValue, Rollout, reference_forward, rm_scores

# three samples of a 3-token prompt, two of a 1-token prompt, one of a 4-token prompt; responses of 1-5 tokens
PROMPTS = [[1, 40, 41]] * 3 + [[1]] * 2 + [[1, 43, 44, 45]]


def _responses(eos: int) -> list[list[int]]:
    return [[50, 51, eos], [eos], [52, 53, 54, 55, eos], [56, eos], [57, 58, 59], [60, 61, eos]]


def _rollout(tok, responses: list[list[int]]) -> Rollout:
    """The fields of a rollout that scoring reads."""
    batch = collate_rollout(PROMPTS, responses, tok.pad_token_id)
    has_eos = torch.tensor([r[-1] == tok.eos_token_id for r in responses])
    return Rollout([], PROMPTS, [], batch["response_ids"], batch["response_mask"], has_eos, [], {},
                   tok.pad_token_id, tok.eos_token_id)


def _params(module):
    return [p for p in module.parameters() if p.requires_grad]


def _check_same(shared: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor) -> None:
    torch.testing.assert_close(torch.where(mask, shared, 0.0), torch.where(mask, rows, 0.0), atol=1e-5, rtol=1e-5)


def test_collate_rollout_shared_forwards_each_prompt_once(tiny):
    _, tok = tiny
    batch = collate_rollout_shared(PROMPTS, _responses(tok.eos_token_id), tok.pad_token_id)
    assert batch["prompt_ids"].shape == (3, 4) and batch["source"].tolist() == [0, 0, 0, 1, 1, 2]
    assert batch["response_ids"] is batch["reply_ids"] and batch["response_ids"].shape == (6, 5)
    assert batch["response_mask"].sum(-1).tolist() == [3, 1, 5, 2, 3, 3]


@pytest.mark.parametrize("critic", ["shared", "separate", "separate-lora"])
@pytest.mark.parametrize("group_rows", [0, 2])  # responses in one forward, or in length groups of 2
def test_forward_and_gradients_equal_the_row_layout(tiny, tiny_model_dir, critic, group_rows):
    from tether.models.scalar_head import apply_lora_to_scalar
    from tether.models.spec import ModelConfig

    model, tok = tiny
    if critic == "shared":
        head = torch.nn.Linear(model.config.hidden_size, 1)
        module = PolicyAndValue(model, value_head=head, group_rows=group_rows)
    else:
        critic_model = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=2)
        if critic == "separate-lora":  # a peft-wrapped backbone (FEATURE_EXTRACTION) takes the KV cache too
            critic_model = apply_lora_to_scalar(critic_model, ModelConfig(name=str(tiny_model_dir), lora_r=4))
        module = PolicyAndValue(model, critic=critic_model, group_rows=group_rows)
    responses = _responses(tok.eos_token_id)
    rows = collate_rollout(PROMPTS, responses, tok.pad_token_id)
    shared = collate_rollout_shared(PROMPTS, responses, tok.pad_token_id)
    mask = rows["response_mask"]  # (6,5)
    results = []
    for batch in (rows, shared):
        logprobs, entropy, values = module(batch, temperature=0.7, entropy_grad=True)  # (6,5) each
        loss = (torch.where(mask, logprobs + 0.1 * entropy + values, 0.0)).sum()
        results.append((logprobs, entropy, values, torch.autograd.grad(loss, _params(module), allow_unused=True)))
    for got, want in zip(results[1][:3], results[0][:3]):
        _check_same(got, want, mask)
    for g, r in zip(results[1][3], results[0][3]):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layout", ["rows", "shared"])
def test_forward_without_entropy_keeps_logprobs_and_values(tiny, layout):
    model, tok = tiny
    module = PolicyAndValue(model, value_head=torch.nn.Linear(model.config.hidden_size, 1), group_rows=2)
    collate = collate_rollout if layout == "rows" else collate_rollout_shared
    batch = collate(PROMPTS, _responses(tok.eos_token_id), tok.pad_token_id)
    with torch.no_grad():
        want = module(batch, 0.7)  # logprobs, entropy, values (6,5) each
        got = module(batch, 0.7, with_entropy=False)
    assert want[1] is not None and got[1] is None
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[2], want[2])


def test_one_token_responses_need_no_reply_pass(tiny):
    model, tok = tiny
    prompts, responses = [[1, 40]] * 2 + [[1, 41, 42]] * 2, [[tok.eos_token_id]] * 4
    with torch.no_grad():
        want = PolicyAndValue(model)(collate_rollout(prompts, responses, tok.pad_token_id), 1.0)[0]  # (4,1)
        got = PolicyAndValue(model)(collate_rollout_shared(prompts, responses, tok.pad_token_id), 1.0)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_lora_reference_and_reward_model_scores_equal_the_row_layout(tiny, tiny_model_dir):
    from tether.models.lora import apply_lora
    from tether.models.spec import ModelConfig

    model, tok = tiny
    policy = apply_lora(copy.deepcopy(model), ModelConfig(name=str(tiny_model_dir), use_lora=True, lora_r=4))
    for name, p in policy.named_parameters():
        if "lora_B" in name:  # B = 0 at init would hide the adapters: give them weight
            torch.nn.init.normal_(p, std=0.2)
    module = PolicyAndValue(policy, group_rows=4)
    rm = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=4).eval()
    eos = tok.eos_token_id
    responses = [finished_reply(r, eos) for r in _responses(eos)]  # none cut: the RM reads each batch
    rows = collate_rollout(PROMPTS, responses, tok.pad_token_id)
    shared = collate_rollout_shared(PROMPTS, responses, tok.pad_token_id)
    with torch.no_grad():
        ref_rows, ref_shared = (reference_forward(module, None, b, 1.0) for b in (rows, shared))  # (6,5)
        policy_rows = module(rows, 1.0)[0]
        scores = [rm_scores(rm, None, b, _rollout(tok, responses), list(range(6)), 4)
                  for b in (rows, shared)]  # (6,)
    _check_same(ref_shared, ref_rows, rows["response_mask"])
    assert not torch.allclose(ref_rows, policy_rows)  # the adapters were off for the reference
    torch.testing.assert_close(scores[1], scores[0], atol=1e-5, rtol=1e-5)


def test_reward_model_reads_a_cut_row_with_eos_appended_in_both_layouts(tiny, tiny_model_dir):
    """Row 4 was cut at max_new_tokens: the RM reads it with EOS appended, as it read every reply in training
    (the missing-EOS penalty charges the cut later); microbatches without a cut row are scored as collated."""
    _, tok = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    rm = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=6).eval()
    responses = _responses(eos)
    rollout = _rollout(tok, responses)
    assert rollout.has_eos.tolist() == [True, True, True, True, False, True]
    want = torch.tensor(score_sequences(rm, PROMPTS, [finished_reply(r, eos) for r in responses], pad))
    with torch.no_grad():
        for collate in (collate_rollout, collate_rollout_shared):
            got = rm_scores(rm, None, collate(PROMPTS, responses, pad), rollout, list(range(6)), 4)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        finished = [0, 1, 2, 3, 5]
        batch = collate_rollout([PROMPTS[i] for i in finished], [responses[i] for i in finished], pad)
        got = rm_scores(rm, None, batch, rollout, finished)
        raw = rm(*(collate_rollout(PROMPTS, responses, pad)[k] for k in ("input_ids", "attention_mask",
                                                                          "position_ids")))  # (6,) cut row as is
    torch.testing.assert_close(got, want[finished], atol=1e-5, rtol=1e-5)
    assert abs(float(raw[4] - want[4])) > 1e-4  # read at its last generated token, the score would differ


def test_plan_keeps_each_prompts_samples_together():
    prompts = [[1, 2], [1, 2], [3], [3], [4, 5, 6], [4, 5, 6]]
    lengths = [9, 1, 2, 3, 1, 1]
    # sort keys (prompt + longest sample): [1, 2] → 11, [3] → 4, [4, 5, 6] → 4 (tie: first row decides)
    assert plan_prompt_microbatches(prompts, lengths, 4) == [[2, 3, 4, 5], [0, 1]]
    assert plan_prompt_microbatches(prompts, lengths, 2) == [[2, 3], [4, 5], [0, 1]]
