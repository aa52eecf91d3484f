import torch

from tether.data.tokenization import encode_prompt
from tether.sampling.generate import SamplingConfig, cut_at_eos, generate


def test_cut_at_eos():
    assert cut_at_eos([5, 6, 2, 7, 2], eos_id=2) == ([5, 6, 2], False)
    assert cut_at_eos([5, 6, 7], eos_id=2) == ([5, 6, 7], True)


def test_greedy_batched_generation_matches_model_generate(tiny):
    model, tok = tiny
    prompts = [[{"role": "user", "content": "What is 12 plus 7?"}],
               [{"role": "user", "content": "Capital?"}],
               [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The opposite of hot?"}]]
    cfg = SamplingConfig(do_sample=False, max_new_tokens=12, batch_size=3)
    gens = generate(model, tok, prompts, cfg)
    for prompt, gen in zip(prompts, gens):
        ids = torch.tensor([encode_prompt(tok, prompt)])
        with torch.no_grad():
            ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        expected, truncated = cut_at_eos(ref[0, ids.shape[1]:].tolist(), tok.eos_token_id)
        assert gen.response_ids == expected
        assert gen.truncated == truncated
        assert gen.prompt_ids == ids[0].tolist()


def test_sampling_is_seeded(tiny):
    model, tok = tiny
    prompts = [[{"role": "user", "content": "Hi"}]] * 4
    cfg = SamplingConfig(do_sample=True, max_new_tokens=8, batch_size=4)
    a = [g.response_ids for g in generate(model, tok, prompts, cfg, seed=3)]
    b = [g.response_ids for g in generate(model, tok, prompts, cfg, seed=3)]
    c = [g.response_ids for g in generate(model, tok, prompts, cfg, seed=4)]
    assert a == b
    assert a != c
