"""The PPO forward's temperature-scaled logprobs equal the sampler's: log_softmax of the tempered, filtered logits
tether's decode loop drew from, at the drawn tokens, for every response token."""

from __future__ import annotations

import pytest
import torch

from tether.data.collators import collate_rollout
from tether.data.records import user_prompt
from tether.data.tokenization import encode_prompt
from tether.train.ppo import PolicyAndValue


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_forward_logprobs_equal_the_samplers(tiny, temperature, monkeypatch):
    """Every decode step's logits and drawn tokens are recorded; the sampler's logprob of a token is
    log_softmax(filtered logits / T) there, and the PPO forward must give the same for every response token."""
    import tether.sampling.generate as gen

    model, tok = tiny
    prompts = [encode_prompt(tok, user_prompt(q)) for q in ("What is 12 plus 7?", "Capital of France?", "Hi")]
    steps = []

    def recording(logits, cfg):
        token = real(logits, cfg)
        steps.append(torch.log_softmax(gen.filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p), -1)
                     .gather(-1, token[:, None]).squeeze(-1))
        return token

    real = gen.next_tokens
    monkeypatch.setattr(gen, "next_tokens", recording)
    torch.manual_seed(0)
    cfg = gen.SamplingConfig(max_new_tokens=10, temperature=temperature)
    new = gen.generate_tokens(model, prompts, cfg, tok.pad_token_id, eos_id=-1)  # no row leaves: steps are (B,)
    sampler = torch.stack(steps, dim=1)  # (B,R)
    with torch.no_grad():
        logprobs, _, _ = PolicyAndValue(model)(collate_rollout(prompts, new, tok.pad_token_id), temperature)
    torch.testing.assert_close(logprobs, sampler, atol=1e-5, rtol=1e-5)


def test_rollout_sampling_applies_no_hidden_top_k(tiny):
    """tether's sampler reads top_k/top_p from its SamplingConfig only (0 / 1 = off): a top-k in the model's
    generation config must not cut the distribution the PPO logprobs assume."""
    model, tok = tiny
    from tether.sampling.generate import SamplingConfig, generate

    old = model.generation_config.top_k
    model.generation_config.top_k = 1
    try:
        gens = generate(model, tok, [user_prompt("Hi")] * 32, SamplingConfig(max_new_tokens=1, temperature=1.0))
    finally:
        model.generation_config.top_k = old
    assert len({g.response_ids[0] for g in gens}) > 1
