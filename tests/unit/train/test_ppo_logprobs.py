"""The PPO forward's temperature-scaled logprobs equal the sampler's: log_softmax of the scores `generate`
sampled from (after its logits processors), at the sampled tokens, for every real response token."""

from __future__ import annotations

import pytest
import torch

from tether.data.collators import collate_prompts, collate_rollout
from tether.data.records import user_prompt
from tether.data.tokenization import encode_prompt
from tether.rl.rewards import truncate_at_eos
from tether.train.ppo import PolicyAndValue


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_forward_logprobs_equal_the_samplers(tiny, temperature):
    model, tok = tiny
    prompts = [encode_prompt(tok, user_prompt(q)) for q in ("What is 12 plus 7?", "Capital of France?", "Hi")]
    batch = collate_prompts(prompts, tok.pad_token_id)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**batch, do_sample=True, temperature=temperature, top_k=None, top_p=None,
                             max_new_tokens=10, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             output_scores=True, return_dict_in_generate=True)
    new = out.sequences[:, batch["input_ids"].shape[1]:]  # (B,R)
    scores = torch.stack(out.scores, dim=1).float()  # (B,R,V) what the sampler drew from
    sampler = torch.log_softmax(scores, -1).gather(-1, new.unsqueeze(-1)).squeeze(-1)  # (B,R)
    response_ids, mask, _ = truncate_at_eos(new, tok.eos_token_id, tok.pad_token_id)
    responses = [row[m].tolist() for row, m in zip(response_ids, mask)]
    with torch.no_grad():
        logprobs, _, _ = PolicyAndValue(model)(collate_rollout(prompts, responses, tok.pad_token_id), temperature)
    r = logprobs.shape[1]
    torch.testing.assert_close(logprobs[mask[:, :r]], sampler[:, :r][mask[:, :r]], atol=1e-5, rtol=1e-5)


def test_rollout_sampling_applies_no_hidden_top_k(tiny):
    """tether's generate passes top_k=0 as 'off': no default top-k of the model's generation config may cut the
    distribution the PPO logprobs assume (the logits processors of a sampling call are listed)."""
    model, tok = tiny
    from tether.sampling.generate import SamplingConfig, generate

    captured = {}
    original = model._get_logits_processor

    def spy(*args, **kwargs):
        processors = original(*args, **kwargs)
        captured["names"] = [type(p).__name__ for p in processors]
        return processors

    model._get_logits_processor = spy
    try:
        generate(model, tok, [user_prompt("Hi")], SamplingConfig(max_new_tokens=2, temperature=0.7))
    finally:
        del model._get_logits_processor
    assert not any("TopK" in n or "TopP" in n for n in captured["names"]), captured["names"]
