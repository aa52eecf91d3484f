import pytest
import torch

from tether.data.records import PromptRow
from tether.eval.evaluate import kl_to_reference

ROWS = [PromptRow([{"role": "user", "content": q}]) for q in ("What is 2 plus 2?", "Capital of France?", "Hi")] * 4


def test_kl_of_a_policy_to_itself_is_zero(tiny):
    model, tok = tiny
    out = kl_to_reference(model, model, tok, ROWS, max_new_tokens=8)
    assert out["kl"] == pytest.approx(0.0, abs=1e-5) and out["n"] == len(ROWS)


def test_kl_to_a_different_reference_is_positive_on_average(tiny, tiny_model_dir):
    from tether.models.loading import load_causal_lm

    model, tok = tiny
    other = load_causal_lm(str(tiny_model_dir), tok).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = kl_to_reference(model, other, tok, ROWS * 4, max_new_tokens=8)
    assert out["kl"] > 0.1  # a sequence KL between clearly different policies; the k1 mean is positive


def _sample(prompt: str, gold: float):
    from tether.eval.evaluate import ScoredSample

    return ScoredSample(prompt, "f", "r", gold, gold > 0, False, 3)


def test_compare_one_response_per_prompt_uses_the_wilson_interval():
    from tether.eval.evaluate import compare, summarise
    from tether.eval.metrics import win_rate

    a = summarise("a", [_sample(p, g) for p, g in zip("pqrs", (1.0, 1.0, 0.5, -1.0))])
    b = summarise("b", [_sample(p, g) for p, g in zip("pqrs", (0.5, 1.0, 0.5, 1.0))])
    c = compare(a, b)  # win, tie, tie, loss
    w = win_rate([1, 0, 0, -1])
    assert (c["win_rate"], c["ci_low"], c["ci_high"]) == (0.5, w.lo, w.hi)


def test_compare_k_samples_per_prompt_pairs_them_in_order_and_clusters_by_prompt():
    from tether.eval.evaluate import compare, summarise

    # prompts p, q, r with 2 samples each; outcomes win, tie | win, loss | win, win (hand: rate 4.5/6 = 0.75;
    # cluster sums 1.5, 1, 2 -> Var = 3/2 · (0² + 0.5² + 0.5²) / 36; half-width 1.96·0.1443 = 0.2829)
    a = summarise("a", [_sample(p, g) for p, g in zip("ppqqrr", (1.0, 0.5, 1.0, -1.0, 1.0, 0.5))])
    b = summarise("b", [_sample(p, g) for p, g in zip("ppqqrr", (0.5, 0.5, 0.5, 1.0, -1.0, -1.0))])
    c = compare(a, b)
    assert (c["wins"], c["ties"], c["losses"]) == (4, 1, 1)
    assert (c["correct_gained"], c["correct_lost"]) == (2, 1)  # _sample marks gold > 0 as right
    assert c["win_rate"] == pytest.approx(0.75)
    assert c["ci_low"] == pytest.approx(0.75 - 0.28290, abs=1e-4) and c["ci_high"] == 1.0
    assert c["win_rate_ceiling"] == pytest.approx(5.5 / 6)  # b is at the top score (1.0) in 1 of 6 samples
    assert compare(b, a)["win_rate_ceiling"] == pytest.approx(4.5 / 6)  # a is at 1.0 in 3 of 6 samples


def test_compare_refuses_different_prompts():
    from tether.eval.evaluate import compare, summarise

    a = summarise("a", [_sample("p", 1.0), _sample("q", 1.0)])
    b = summarise("b", [_sample("p", 1.0), _sample("r", 1.0)])
    with pytest.raises(ValueError, match="different prompts"):
        compare(a, b)


def test_evaluate_policy_samples_k_responses_per_prompt_prompt_major(tiny):
    from tether.data.records import prompt_text
    from tether.eval.evaluate import evaluate_policy
    from tether.sampling.generate import SamplingConfig

    model, tok = tiny
    rows = [PromptRow([{"role": "user", "content": q}], {"answer": "4", "kind": "number", "aliases": ["4"],
                                                          "given": [], "distractors": [], "family": "arithmetic",
                                                          "statement": "2 + 2 = {answer}."})
            for q in ("What is 2 plus 2?", "Two plus two?")]
    sampled = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=6)
    e = evaluate_policy("p", model, tok, rows, sampled, show_progress=False, samples_per_prompt=3)
    assert [s.prompt for s in e.samples] == [prompt_text(r.prompt) for r in rows for _ in range(3)]
    assert e.n == 6
    with pytest.raises(ValueError, match="needs >= 1, and sampling"):
        evaluate_policy("p", model, tok, rows, SamplingConfig(do_sample=False), samples_per_prompt=2)


def test_align_to_repeats_the_single_response_for_each_sample_of_shared_prompts():
    from tether.eval.evaluate import align_to, compare, summarise

    bon = summarise("bon", [_sample("p", 1.0), _sample("q", -1.0)])
    sft = summarise("sft", [_sample(p, g) for p, g in zip("ppqqrr", (1.0, -1.0, -1.0, 0.5, 1.0, 1.0))])
    a, b = align_to(bon, sft)
    assert [s.prompt for s in a.samples] == [s.prompt for s in b.samples] == list("ppqq")
    assert [s.gold for s in a.samples] == [1.0, 1.0, -1.0, -1.0]
    c = compare(a, b)  # tie, win | tie, loss
    assert (c["wins"], c["ties"], c["losses"], c["win_rate"]) == (1, 2, 1, 0.5)
    # the single evaluation covers a prompt the samples do not (best-of-N beyond the sampled prompts): left out
    wider = summarise("bon", [_sample("p", 1.0), _sample("q", -1.0), _sample("s", 1.0)])
    a2, b2 = align_to(wider, summarise("sft", sft.samples[:4]))
    assert [s.prompt for s in a2.samples] == [s.prompt for s in b2.samples] == list("ppqq")
    with pytest.raises(ValueError, match="share no prompt"):
        align_to(summarise("x", [_sample("z", 1.0)]), sft)


CAPITAL_META = {"family": "capitals", "kind": "text", "answer": "Paris", "aliases": ["Paris"], "given": ["France"],
                "distractors": ["Lyon"], "vocab": "capitals", "statement": "The capital of France is {answer}."}


def test_rejudge_rescores_stored_responses_and_keeps_the_proxy():
    from tether.eval.evaluate import ScoredSample, rejudge, summarise

    rows = [PromptRow([{"role": "user", "content": "Capital of France?"}], meta=CAPITAL_META)] * 2
    # scored as an older judge did: the unlisted "Parisopolis" as no answer (-0.5)
    stale = summarise("p", [ScoredSample("Capital of France?", "capitals", "Paris.", 1.0, True, False, 3),
                            ScoredSample("Capital of France?", "capitals", "The capital of France is Parisopolis.",
                                         -0.5, False, False, 9)])
    stale.proxy_mean = 0.25
    fresh, changed = rejudge(stale, rows)
    assert changed == 1 and [s.gold for s in fresh.samples] == [1.0, -1.0]
    assert fresh.gold_mean == 0.0 and fresh.proxy_mean == 0.25 and fresh.correct_rate == 0.5
    same, none = rejudge(fresh, rows)
    assert none == 0 and same is fresh
    with pytest.raises(ValueError, match="do not match"):
        rejudge(fresh, rows[:1])


def test_kl_from_sampler_logprobs_needs_them(tiny):
    from tether.eval.evaluate import kl_of_generations
    from tether.sampling.generate import SamplingConfig, generate

    model, tok = tiny
    gens = generate(model, tok, [r.prompt for r in ROWS[:3]], SamplingConfig(max_new_tokens=4), seed=1)
    with pytest.raises(ValueError, match="logprobs=True"):
        kl_of_generations(model, model, tok, gens, sampler_logprobs=True)
