import copy

import pytest
import torch

from tether.data.tokenization import encode_prompt
from tether.sampling.generate import SamplingConfig, cut_at_eos, filter_logits, generate, generate_tokens, next_tokens


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


def _hf_new_tokens(model, tok, ids: list[int], eos_id: int, **kw) -> list[int]:
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=eos_id, **kw)
    return cut_at_eos(out[0, x.shape[1]:].tolist(), eos_id)[0]


@pytest.fixture(scope="module")
def varied(tiny):
    """The tiny model with its weights shaken (std 0.3): the random tiny model repeats one token forever, this
    one writes varied replies, so different rows meet a chosen token at different steps."""
    model, tok = tiny
    varied = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in varied.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return varied, tok


def test_rows_leave_the_batch_at_eos_and_the_rest_continue_exactly(varied):
    """Pick as "EOS" a token the first prompt emits mid-reply: rows that meet it leave the batch at different
    steps (their cache rows are dropped) while the others go on; every reply must equal its own single-prompt
    `model.generate`, and the replies without it run to max_new_tokens."""
    model, tok = varied
    texts = ["What is 12 plus 7?", "Capital?", "The opposite of hot?", "Name a colour.", "Count to three."]
    ids = [encode_prompt(tok, [{"role": "user", "content": t}]) for t in texts]
    cfg = SamplingConfig(do_sample=False, max_new_tokens=10)
    free = generate_tokens(model, ids, cfg, tok.pad_token_id, eos_id=-1)  # no EOS: every row runs 10 tokens
    assert [len(t) for t in free] == [10] * len(texts)
    eos = free[0][2]
    cut = [cut_at_eos(t, eos)[0] for t in free]
    assert len({len(t) for t in cut}) >= 3, "the chosen EOS must end the rows at different steps"
    assert any(len(t) == 10 for t in cut), "and leave some rows running to the end"
    got = generate_tokens(model, ids, cfg, tok.pad_token_id, eos_id=eos)
    assert got == [_hf_new_tokens(model, tok, p, eos, max_new_tokens=10) for p in ids]
    assert got == cut


def test_min_new_tokens_holds_eos_back(varied):
    model, tok = varied
    ids = [encode_prompt(tok, [{"role": "user", "content": "What is 12 plus 7?"}])]
    free = generate_tokens(model, ids, SamplingConfig(do_sample=False, max_new_tokens=8), tok.pad_token_id, -1)[0]
    eos = free[1]
    cfg = SamplingConfig(do_sample=False, max_new_tokens=8, min_new_tokens=4)
    got = generate_tokens(model, ids, cfg, tok.pad_token_id, eos)[0]
    assert eos not in got[:4]
    assert got == _hf_new_tokens(model, tok, ids[0], eos, max_new_tokens=8, min_new_tokens=4)


def test_filter_logits_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    inf = float("-inf")
    assert filter_logits(logits, top_k=2).isinf().tolist() == [[False, False, True, True]]
    # top_p 0.7: 0.5 alone is short of it, 0.5 + 0.3 reaches it -> keep two
    assert filter_logits(logits, top_p=0.7).isinf().tolist() == [[False, False, True, True]]
    assert filter_logits(logits, top_p=0.85).isinf().tolist() == [[False, False, False, True]]
    assert filter_logits(logits, top_p=0.01).isinf().tolist() == [[False, True, True, True]]
    assert filter_logits(logits)[0].tolist() == logits[0].tolist()
    assert filter_logits(logits, top_k=3, top_p=0.6)[0, 2].item() == inf


def test_filter_logits_matches_hf_warpers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g) * 3
    for k, p in [(5, 1.0), (0, 0.9), (0, 0.3), (10, 0.8), (50, 0.95)]:
        expected = logits.clone()
        if k:
            expected = TopKLogitsWarper(k)(None, expected)
        if p < 1:
            expected = TopPLogitsWarper(p)(None, expected)
        assert torch.equal(filter_logits(logits, k, p).isinf(), expected.isinf()), (k, p)


def test_sampled_tokens_follow_the_tempered_filtered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]]).repeat(20_000, 1)
    torch.manual_seed(0)
    cfg = SamplingConfig(temperature=0.5, top_k=3)
    drawn = next_tokens(logits, cfg)
    freq = torch.bincount(drawn, minlength=5).float() / len(drawn)
    expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / 0.5, -1)
    assert freq[3:].sum() == 0
    assert torch.allclose(freq[:3], expected, atol=0.015)
    assert torch.equal(next_tokens(logits[:2], SamplingConfig(do_sample=False)), torch.tensor([0, 0]))


def test_repeated_prompts_share_one_prefill_and_match_separate_calls(varied):
    """k samples of a prompt are prefilled once and the cache rows copied: greedy replies equal those of a batch
    without repeats, and sampled rows of the same prompt still differ from each other."""
    model, tok = varied
    a, b = (encode_prompt(tok, [{"role": "user", "content": t}]) for t in ("What is 12 plus 7?", "Capital?"))
    cfg = SamplingConfig(do_sample=False, max_new_tokens=6)
    once = generate_tokens(model, [a, b], cfg, tok.pad_token_id, tok.eos_token_id)
    repeated = generate_tokens(model, [a, a, b, a, b], cfg, tok.pad_token_id, tok.eos_token_id)
    assert repeated == [once[0], once[0], once[1], once[0], once[1]]
    torch.manual_seed(0)
    sampled = generate_tokens(model, [a] * 4, SamplingConfig(max_new_tokens=6), tok.pad_token_id, tok.eos_token_id)
    assert len({tuple(t) for t in sampled}) > 1


def test_sample_categorical_inverse_cdf_by_hand():
    from tether.sampling.generate import sample_categorical

    def draw(weights, u, block):
        return sample_categorical(torch.tensor([weights]), block=block, u=torch.tensor([u], dtype=torch.float64)).item()

    # cumulative mass 0.125 | 0.125 | 0.5 | 1 (exact in binary): token i is drawn for u in [cdf[i-1], cdf[i]),
    # token 1 never
    us = (0.0, 0.1249, 0.125, 0.4999, 0.5, 0.99)
    for block in (1, 2, 3, 4, 256):  # 3 and 256 pad the row with zero-weight tokens
        assert [draw([0.125, 0.0, 0.375, 0.5], u, block) for u in us] == [0, 0, 2, 2, 3, 3]
        assert draw([1.0, 0.0, 3.0, 4.0], 0.125, block) == 2  # weights need not sum to 1
    assert draw([0.0, 0.0, 0.5, 0.5], 0.0, 2) == 2  # a zero-mass first block is skipped
    last = torch.nextafter(torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)).item()
    assert draw([0.5, 0.5, 0.0, 0.0], last, 2) == 1  # u just below 1 never lands on the zero-weight tail


def test_sample_categorical_keeps_tiny_probabilities():
    """A token of probability 1e-9 after half the mass: a float32 running sum over the row would round it away
    (0.5 + 1e-9 == 0.5 in float32); the two-level float64 sum keeps its interval."""
    from tether.sampling.generate import sample_categorical

    probs = torch.zeros(1, 512)
    probs[0, 0], probs[0, 300], probs[0, 301] = 0.5, 1e-9, 0.5 - 1e-9
    assert probs[0, :301].cumsum(0)[-1].item() == 0.5  # float32: the token's mass is gone
    hits = [sample_categorical(probs, u=torch.tensor([u], dtype=torch.float64)).item()
            for u in (0.5 - 1e-12, 0.5 + 5e-10, 0.5 + 2e-9)]
    assert hits == [0, 300, 301]


def test_sample_categorical_frequencies_and_bad_rows():
    from tether.sampling.generate import sample_categorical

    g = torch.Generator().manual_seed(1)
    weights = torch.zeros(700)
    where = torch.randperm(700, generator=g)[:10]
    weights[where] = torch.rand(10, generator=g) + 0.05
    torch.manual_seed(0)
    drawn = sample_categorical(weights.repeat(100_000, 1))  # 700 = 2 full blocks of 256 + a padded one
    freq = torch.bincount(drawn, minlength=700).float() / len(drawn)
    assert set(drawn.unique().tolist()) <= set(where.tolist())  # zero-weight tokens (and the padding) never drawn
    assert torch.allclose(freq[where], weights[where] / weights.sum(), atol=0.005)
    with pytest.raises(ValueError, match="NaN"):
        sample_categorical(torch.tensor([[0.5, float("nan")]]))
    with pytest.raises(ValueError, match="all zero"):
        sample_categorical(torch.zeros(1, 4))


@pytest.mark.parametrize("leave_at", [1, 8, 10**9])
def test_finished_rows_carried_along_change_no_reply(varied, monkeypatch, leave_at):
    """Finished rows stay in the batch until they are 1/LEAVE_AT of the rows still writing (LEAVE_AT 1: as many
    as the rest; 10**9: each leaves at its EOS): their tokens are ignored, and every reply is still its own
    single-prompt `model.generate`'s."""
    import tether.sampling.generate as gen_module

    model, tok = varied
    texts = ["What is 12 plus 7?", "Capital?", "The opposite of hot?", "Name a colour.", "Count to three."]
    ids = [encode_prompt(tok, [{"role": "user", "content": t}]) for t in texts]
    cfg = SamplingConfig(do_sample=False, max_new_tokens=10)
    eos = generate_tokens(model, ids, cfg, tok.pad_token_id, eos_id=-1)[0][2]
    monkeypatch.setattr(gen_module, "LEAVE_AT", leave_at)
    rows_per_step: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: rows_per_step.append(kw["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        got = generate_tokens(model, ids, cfg, tok.pad_token_id, eos_id=eos)
    finally:
        hook.remove()
    assert got == [_hf_new_tokens(model, tok, p, eos, max_new_tokens=10) for p in ids]
    writing = [sum(len(t) > step for t in got) for step in range(1, len(rows_per_step))]  # rows still writing
    carried = [rows - live for rows, live in zip(rows_per_step[1:], writing)]  # finished rows forwarded anyway
    assert min(carried) >= 0
    assert (max(carried) > 0) == (leave_at == 1)  # 5 rows: at 1/8 one finished row already leaves


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.7, 5)])
def test_generation_logprobs_are_the_samplers(varied, monkeypatch, temperature, top_k):
    """`generate(..., logprobs=True)`: each response token's log-probability under the distribution it was drawn
    from (log_softmax of the tempered, filtered logits of that decode step); at T = 1 unfiltered, that is the
    policy's own log π of the token, as a full forward computes it."""
    import tether.sampling.generate as gen
    from tether.models.scoring import response_logprobs

    model, tok = varied
    steps: list[tuple[list[int], list[float]]] = []
    real = gen.next_tokens

    def recording(logits, cfg):
        token = real(logits, cfg)
        lp = torch.log_softmax(gen.filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p), -1)
        steps.append((token.tolist(), lp.gather(-1, token[:, None]).squeeze(-1).tolist()))
        return token

    monkeypatch.setattr(gen, "next_tokens", recording)
    monkeypatch.setattr(gen, "LEAVE_AT", 10**9)  # a finished row leaves at once: step s holds the rows still writing
    prompts = [[{"role": "user", "content": t}] for t in ("What is 12 plus 7?", "Capital?", "Hi")]
    cfg = SamplingConfig(max_new_tokens=8, temperature=temperature, top_k=top_k)
    gens = generate(model, tok, prompts, cfg, seed=2, logprobs=True)
    assert [len(g.logprobs) for g in gens] == [len(g.response_ids) for g in gens]
    order = sorted(range(3), key=lambda i: len(gens[i].prompt_ids))  # one call of 3 rows, sorted by prompt length
    by_row: dict[int, list[float]] = {}
    for s, (tokens, lps) in enumerate(steps):
        live = [i for i in order if len(gens[i].response_ids) > s]
        assert tokens == [gens[i].response_ids[s] for i in live]
        for i, lp in zip(live, lps):
            by_row.setdefault(i, []).append(lp)
    assert [by_row[i] for i in range(3)] == [g.logprobs for g in gens]
    if temperature == 1.0 and not top_k:
        total, _ = response_logprobs(model, [g.prompt_ids for g in gens], [g.response_ids for g in gens],
                                     tok.pad_token_id)
        assert [sum(g.logprobs) for g in gens] == pytest.approx(list(total), abs=1e-4)
    plain = generate(model, tok, prompts, cfg, seed=2)
    assert [g.response_ids for g in plain] == [g.response_ids for g in gens] and plain[0].logprobs is None
