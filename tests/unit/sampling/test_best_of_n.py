"""Best-of-N: the analytic KL against a Monte-Carlo estimate, selection, the best-of-k estimator, and the
stage on a tiny model (gold and reward-model scorers, the SFT export, evaluation as a policy)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from tether.data.records import PromptRow
from tether.sampling.best_of_n import (
    BestOfN,
    best_of_k_curve,
    best_of_n,
    best_of_n_kl,
    expected_best_of_k,
    samples_the_policy,
    select_best,
    to_sft_examples,
    write_best_of_n,
)
from tether.sampling.generate import Generation, SamplingConfig


def test_best_of_n_kl_by_hand():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5, abs=1e-15)  # 0.19315
    assert best_of_n_kl(16) == pytest.approx(2.772588722239781 - 0.9375, abs=1e-15)  # 1.83509
    with pytest.raises(ValueError, match="positive integer"):
        best_of_n_kl(0)
    with pytest.raises(ValueError, match="positive integer"):
        best_of_n_kl(2.5)


def _exact_discrete_bon_kl(m: int, n: int) -> float:
    """KL(best-of-n ‖ uniform over m ranked categories): P(max = k) = (k/m)^n − ((k−1)/m)^n."""
    k = np.arange(1, m + 1)
    p = (k / m) ** n - ((k - 1) / m) ** n
    p = p[p > 0]
    return float(np.sum(p * np.log(p * m)))


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_best_of_n_kl_matches_a_monte_carlo_estimate_on_a_toy_categorical_policy(n):
    # Base policy: uniform over M = 1000 categories; reward = category index (all distinct, so ties between
    # the N draws only come from drawing the same category twice). Draw S sets of N samples, keep the max,
    # and compare the empirical distribution of the kept sample with the base: plug-in KL(p̂_bon ‖ uniform).
    m, s = 1000, 200_000
    rng = np.random.default_rng(n)
    kept = rng.integers(0, m, size=(s, n)).max(axis=1)  # (S,) best of each N-set
    p_hat = np.bincount(kept, minlength=m) / s  # (M,)
    nz = p_hat > 0
    kl_mc = float(np.sum(p_hat[nz] * np.log(p_hat[nz] * m)))
    # Tolerance 0.01, from three sources computed for this toy: (1) discreteness — the exact KL of the induced
    # distribution differs from log N − (N−1)/N by < 1e-3 at M = 1000 (asserted below; 2e-4 at N = 64); (2) the
    # plug-in estimator's upward bias ≈ (support − 1)/(2S) ≤ 999/400000 = 0.0025; (3) Monte-Carlo noise, sd ≈
    # 0.002 (measured over seeds). 0.01 > 0.001 + 0.0025 + 3·0.002; a wrong formula (e.g. log N) is off by ≥ 0.5.
    assert abs(_exact_discrete_bon_kl(m, n) - best_of_n_kl(n)) < 1e-3
    assert kl_mc == pytest.approx(best_of_n_kl(n), abs=0.01)


def test_with_ties_the_formula_is_an_upper_bound():
    # 3 categories: with N = 16 draws the max is almost always the top category, so the true KL approaches
    # log 3 (= 1.0986) while the formula says 1.835: ties make it an overestimate, never an underestimate.
    for n in (2, 4, 16):
        assert _exact_discrete_bon_kl(3, n) < best_of_n_kl(n) - 0.03
    assert _exact_discrete_bon_kl(3, 16) < math.log(3)


def test_select_best_first_of_equals_and_ignores_nan():
    assert select_best([0.1, 0.7, 0.3]) == 1
    assert select_best([0.5, 0.9, 0.9]) == 1  # first of equal scores
    assert select_best([float("nan"), -3.0, -4.0]) == 1
    assert select_best([float("nan"), float("nan")]) == 0
    with pytest.raises(ValueError):
        select_best([])


def test_expected_best_of_k_by_hand_and_by_enumerating_subsets():
    scores, values = [1.0, 3.0, 2.0], [10.0, 30.0, 20.0]
    assert expected_best_of_k(scores, values, 1) == pytest.approx(20.0)  # mean
    assert expected_best_of_k(scores, values, 3) == pytest.approx(30.0)  # the top-scored one
    # k = 2: subsets {0,1} → 30, {0,2} → 20, {1,2} → 30: mean 80/3
    assert expected_best_of_k(scores, values, 2) == pytest.approx(80 / 3)
    rng = np.random.default_rng(0)
    sc, va = rng.normal(size=7).tolist(), rng.normal(size=7).tolist()
    for k in range(1, 8):
        subsets = list(itertools.combinations(range(7), k))
        brute = sum(va[max(sub, key=lambda i: sc[i])] for sub in subsets) / len(subsets)
        assert expected_best_of_k(sc, va, k) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError, match="k must be"):
        expected_best_of_k(scores, values, 4)


def test_best_of_k_curve_default_ks_and_values():
    curve = best_of_k_curve([[1.0, 3.0, 2.0, 0.0]], [[10.0, 30.0, 20.0, 0.0]])
    assert [c["n"] for c in curve] == [1, 2, 4]
    assert curve[0]["value"] == pytest.approx(15.0) and curve[-1]["value"] == pytest.approx(30.0)
    assert [c["kl"] for c in curve] == [best_of_n_kl(1), best_of_n_kl(2), best_of_n_kl(4)]


def _gen(text: str, truncated: bool = False) -> Generation:
    return Generation([1, 2], [5, 6] if truncated else [5, 0], text, truncated)


ROW = PromptRow([{"role": "user", "content": "What is 2 plus 2?"}],
                meta={"kind": "number", "answer": "4", "given": ["2"], "family": "arithmetic", "source": "p.jsonl:3"})


def _result(texts, scores, truncated=None, gold=None) -> BestOfN:
    truncated = truncated or [False] * len(texts)
    cands = [[_gen(t, tr) for t, tr in zip(texts, truncated)]]
    return BestOfN([ROW], cands, [scores], [select_best(scores)], "rm", gold)


def test_summary_proxy_and_gold_before_after():
    res = _result(["5.", "4.", "It is 4."], [0.0, 2.0, 1.0], gold=[[-1.0, 1.0, 1.0]])
    s = res.summary()
    assert s["n"] == 3 and s["kl_analytic"] == pytest.approx(math.log(3) - 2 / 3)
    assert s["proxy_before"] == pytest.approx(1.0) and s["proxy_after"] == 2.0
    assert s["gold_before"] == pytest.approx(1 / 3) and s["gold_after"] == 1.0
    assert [g.text for g in res.chosen_generations()] == ["4."]


def test_sft_export_drops_truncated_and_low_scores_and_round_trips(tmp_path):
    from tether.data.validate import load_records

    res = _result(["4 and then", "4."], [2.0, 1.0], truncated=[True, False])
    examples, dropped = to_sft_examples(res)
    assert examples == [] and dropped["truncated"] == 1  # the chosen one (score 2) was cut: not a demonstration
    assert len(to_sft_examples(res, keep_truncated=True)[0]) == 1
    res = _result(["5.", "4."], [0.0, 1.0])
    assert to_sft_examples(res, min_score=1.5)[1]["below_min_score"] == 1
    summary = write_best_of_n(tmp_path / "bon", res)
    records, _ = load_records(tmp_path / "bon" / "sft.jsonl", "sft")
    assert [(r.prompt, r.completion) for r in records] == [(ROW.prompt, "4.")]
    assert records[0].meta["best_of_n"] == 2 and records[0].meta["prompt_source"] == "p.jsonl:3"
    cand = json.loads((tmp_path / "bon" / "candidates.jsonl").read_text())
    assert cand["chosen"] == 1 and [c["score"] for c in cand["candidates"]] == [0.0, 1.0]
    assert json.loads((tmp_path / "bon" / "result.json").read_text())["sft_examples"] == summary["sft_examples"] == 1


def test_the_exported_sft_file_trains_with_tether_sft(tmp_path, tiny_model_dir):
    from tether.runtime.config import load_config
    from tether.train.sft import SFTConfig, train

    rows = [PromptRow([{"role": "user", "content": f"What is {i} plus 1?"}]) for i in range(4)]
    cands = [[_gen(f"{i + 1}."), _gen("no idea")] for i in range(4)]
    res = BestOfN(rows, cands, [[1.0, 0.0]] * 4, [0] * 4, "rm")
    write_best_of_n(tmp_path / "bon", res)
    overrides = ["--model.name", str(tiny_model_dir), "--data.train_file", str(tmp_path / "bon" / "sft.jsonl"),
                 "--output_dir", str(tmp_path / "rft"), "--data.eval_fraction", "0", "--train.max_steps", "1",
                 "--train.batch_size", "4", "--train.micro_batch_size", "4", "--train.save_steps", "0",
                 "--train.eval_steps", "0", "--train.report_to", "[]"]
    cfg = load_config(SFTConfig, None, overrides)
    result = train(cfg)
    assert result.steps == 1 and math.isfinite(result.train_loss)


DEMO_ROWS = [PromptRow([{"role": "user", "content": q}], meta={"kind": "number", "answer": a, "given": g})
             for q, a, g in (("What is 2 plus 2?", "4", ["2"]), ("What is 3 plus 4?", "7", ["3", "4"]),
                             ("What is 5 plus 1?", "6", ["5", "1"]))]


def test_gold_best_of_n_on_a_tiny_policy_picks_each_prompts_top_gold_candidate(tiny):
    model, tok = tiny
    sampling = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=6)
    res = best_of_n(model, tok, DEMO_ROWS, 4, sampling, scorer="gold", seed=3)
    assert res.n == 4 and len(res.candidates) == 3
    assert res.gold is not None and res.scores == res.gold
    for sc, i in zip(res.scores, res.chosen):
        assert sc[i] == max(sc)
    assert res.summary()["gold_after"] >= res.summary()["gold_before"]
    again = best_of_n(model, tok, DEMO_ROWS, 4, sampling, scorer="gold", seed=3)
    assert [[g.text for g in c] for c in again.candidates] == [[g.text for g in c] for c in res.candidates]


def test_rm_best_of_n_selects_by_the_reward_models_scores(tiny, tiny_model_dir):
    from tether.data.tokenization import finished_reply
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import score_sequences

    model, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=1))
    sampling = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=6)
    res = best_of_n(model, tok, DEMO_ROWS, 4, sampling, scorer="rm", reward_model=rm, seed=5,
                    missing_eos_penalty=0.0)
    flat = [g for gens in res.candidates for g in gens]
    finished = [finished_reply(g.response_ids, tok.eos_token_id) for g in flat]  # a cut one read at an EOS
    scores = score_sequences(rm, [g.prompt_ids for g in flat], finished, tok.pad_token_id)
    expected = [scores[i * 4 : (i + 1) * 4] for i in range(len(res.candidates))]
    assert np.allclose(res.scores, expected, atol=1e-6)
    assert res.chosen == [int(np.argmax(s)) for s in expected]
    penalised = best_of_n(model, tok, DEMO_ROWS, 4, sampling, scorer="rm", reward_model=rm, seed=5,
                          missing_eos_penalty=100.0)
    for gens, sc, raw in zip(penalised.candidates, penalised.scores, expected):
        assert sc == pytest.approx([r - (100.0 if g.truncated else 0.0) for g, r in zip(gens, raw)])
    assert any(g.truncated for gens in penalised.candidates for g in gens)  # the penalty was exercised


def test_best_of_n_is_evaluable_as_a_policy_and_comparable(tiny):
    from tether.eval.evaluate import compare, evaluate_generations, evaluate_policy

    model, tok = tiny
    res = best_of_n(model, tok, DEMO_ROWS, 4, SamplingConfig(do_sample=True, max_new_tokens=6), scorer="gold")
    bon = evaluate_generations("bon4", DEMO_ROWS, res.chosen_generations())
    assert bon.gold_mean == pytest.approx(res.summary()["gold_after"])
    greedy = evaluate_policy("sft", model, tok, DEMO_ROWS, SamplingConfig(do_sample=False, max_new_tokens=6),
                             show_progress=False)
    c = compare(bon, greedy)
    assert c["wins"] + c["ties"] + c["losses"] == 3


def test_best_of_n_rejects_bad_arguments(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="needs a reward_model"):
        best_of_n(model, tok, DEMO_ROWS, 2, scorer="rm")
    with pytest.raises(ValueError, match="do_sample"):
        best_of_n(model, tok, DEMO_ROWS, 2, SamplingConfig(do_sample=False), scorer="gold")
    from tether.errors import DataError

    with pytest.raises(DataError, match="demo-task prompts"):
        best_of_n(model, tok, [PromptRow([{"role": "user", "content": "Hi"}])], 2, scorer="gold")


def test_samples_the_policy_only_at_temperature_one_without_filters():
    assert samples_the_policy(SamplingConfig(temperature=1.0))
    for cfg in (SamplingConfig(temperature=0.7), SamplingConfig(top_k=5), SamplingConfig(top_p=0.9),
                SamplingConfig(min_new_tokens=2)):
        assert not samples_the_policy(cfg)


def test_tempered_best_of_one_estimates_the_exact_kl_of_the_tempered_first_token(tiny):
    """Best-of-1 at T 0.1 is π_T itself: the analytic term is 0 and kl_to_policy must estimate KL(π_T ‖ π). With
    one new token that KL is exact from the logits: Σ_v p_T(v) (log p_T(v) − log p(v)) per prompt. (The tiny
    model's logits are nearly flat, so a low T is what makes the KL large against the Monte-Carlo error.)"""
    import torch

    from tether.data.tokenization import encode_prompt

    model, tok = tiny
    copies = 200
    rows = [r for r in DEMO_ROWS for _ in range(copies)]
    sampling = SamplingConfig(do_sample=True, temperature=0.1, max_new_tokens=1)
    res = best_of_n(model, tok, rows, 1, sampling, scorer="gold", seed=0)
    s = res.summary()
    assert s["kl_analytic"] == 0.0 and s["kl_to_policy"] == pytest.approx(s["tempered_shift"])
    exact = []
    for row in DEMO_ROWS:
        ids = torch.tensor([encode_prompt(tok, row.prompt)])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1].double()  # (V,)
        logp, logp_t = logits.log_softmax(-1), (logits / 0.1).log_softmax(-1)  # (V,) each
        exact.append(float((logp_t.exp() * (logp_t - logp)).sum()))
    lo, hi = s["kl_to_policy_ci"]
    se = (hi - lo) / (2 * 1.96)  # the estimate's standard error
    assert abs(s["kl_to_policy"] - sum(exact) / len(exact)) < 4 * se
    assert 4 * se < 0.5 * s["kl_to_policy"]  # a tolerance small against the KL: the check can fail


def test_tempered_shift_is_sampler_logprob_less_the_policys_and_absent_at_temperature_one(tiny):
    from tether.models.scoring import response_logprobs

    model, tok = tiny
    res = best_of_n(model, tok, DEMO_ROWS, 4, SamplingConfig(do_sample=True, temperature=0.7, max_new_tokens=6),
                    scorer="gold", seed=3)
    picks = res.chosen_generations()
    logp, _ = response_logprobs(model, [g.prompt_ids for g in picks], [g.response_ids for g in picks],
                                tok.pad_token_id)
    assert res.tempered_shift == pytest.approx([sum(g.logprobs) - lp for g, lp in zip(picks, logp)], abs=1e-4)
    assert res.summary()["kl_to_policy"] == pytest.approx(res.kl + sum(res.tempered_shift) / 3)
    plain = best_of_n(model, tok, DEMO_ROWS, 4, SamplingConfig(do_sample=True, max_new_tokens=6), scorer="gold")
    assert plain.tempered_shift is None and "kl_to_policy" not in plain.summary()
    assert all(g.logprobs is None for gens in plain.candidates for g in gens)  # T 1: no sampler logprobs kept


def test_regularised_selection_by_hand():
    """score + β·log π: at β 0.1 the likelier second candidate (0.9 − 0.2 = 0.7) beats the first (1.0 − 1.0 = 0);
    the reported proxy stays the reward model's score, and the best-of-k curve selects as the pick does."""
    cands = [[_gen("It is 4, I think, yes."), _gen("4.")]]
    plain = BestOfN([ROW], cands, [[1.0, 0.9]], [0], "rm", gold=[[0.0, 1.0]])
    reg = BestOfN([ROW], cands, [[1.0, 0.9]], [], "rm", gold=[[0.0, 1.0]], kl_coef=0.1,
                  policy_logprobs=[[-10.0, -2.0]])
    assert reg.selection_scores() == [[pytest.approx(0.0), pytest.approx(0.7)]]
    assert plain.selection_scores() == plain.scores
    with pytest.raises(ValueError, match="needs each candidate's log π"):
        BestOfN([ROW], cands, [[1.0, 0.9]], [0], "rm", kl_coef=0.1).selection_scores()
    reg.chosen = [select_best(s) for s in reg.selection_scores()]
    assert reg.chosen == [1]
    s = reg.summary()
    assert s["proxy_after"] == 0.9 and s["proxy_before"] == pytest.approx(0.95) and s["kl_coef"] == 0.1
    assert s["policy_logprob_before"] == -6.0 and s["policy_logprob_after"] == -2.0
    assert s["curve_proxy"][-1]["value"] == pytest.approx(0.9)  # best of 2 under the regularised selection
    assert s["curve_gold"][-1]["value"] == 1.0 and plain.summary()["curve_gold"][-1]["value"] == 0.0
    assert s["kl_analytic"] == plain.summary()["kl_analytic"]  # a deterministic score: the same bound


def test_regularised_best_of_n_reads_log_pi_from_the_sampler_at_temperature_one(tiny, tiny_model_dir):
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import response_logprobs

    model, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=1))
    sampling = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=6)
    kw = dict(scorer="rm", reward_model=rm, seed=5, missing_eos_penalty=0.0)
    plain = best_of_n(model, tok, DEMO_ROWS, 4, sampling, **kw)
    reg = best_of_n(model, tok, DEMO_ROWS, 4, sampling, kl_coef=0.5, **kw)
    assert [[g.text for g in c] for c in reg.candidates] == [[g.text for g in c] for c in plain.candidates]
    assert reg.scores == plain.scores and plain.policy_logprobs is None and reg.tempered_shift is None
    flat = [g for gens in reg.candidates for g in gens]
    logp, _ = response_logprobs(model, [g.prompt_ids for g in flat], [g.response_ids for g in flat], tok.pad_token_id)
    assert np.allclose(reg.policy_logprobs, np.reshape(logp, (3, 4)), atol=1e-4)  # the sampler's are log π at T 1
    assert reg.chosen == [int(np.argmax(np.add(s, 0.5 * np.array(lp))))
                          for s, lp in zip(reg.scores, reg.policy_logprobs)]
    mode = best_of_n(model, tok, DEMO_ROWS, 4, sampling, kl_coef=1e4, **kw)  # β → ∞: the policy's likeliest
    assert mode.chosen == [int(np.argmax(lp)) for lp in mode.policy_logprobs]
    assert mode.chosen != plain.chosen  # the regulariser changed at least one pick: the test can fail


def test_regularised_best_of_n_at_another_temperature_forwards_the_policy(tiny, tiny_model_dir):
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import response_logprobs

    model, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=1))
    res = best_of_n(model, tok, DEMO_ROWS, 4, SamplingConfig(do_sample=True, temperature=0.7, max_new_tokens=6),
                    scorer="rm", reward_model=rm, seed=3, kl_coef=0.5)
    flat = [g for gens in res.candidates for g in gens]
    logp, _ = response_logprobs(model, [g.prompt_ids for g in flat], [g.response_ids for g in flat], tok.pad_token_id)
    assert np.allclose(res.policy_logprobs, np.reshape(logp, (3, 4)), atol=1e-4)  # π at T 1, not the sampler's
    assert not np.allclose([math.fsum(g.logprobs) for g in flat], logp, atol=1e-2)
    picks = res.chosen_generations()
    assert res.tempered_shift == pytest.approx(
        [math.fsum(g.logprobs) - lp[i] for g, lp, i in zip(picks, res.policy_logprobs, res.chosen)], abs=1e-6)


def test_regularised_best_of_n_rejects_bad_coefficients(tiny, tiny_model_dir):
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel

    model, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=1))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="kl_coef must be"):
            best_of_n(model, tok, DEMO_ROWS, 2, scorer="rm", reward_model=rm, kl_coef=bad)
    with pytest.raises(ValueError, match="gold scorer"):
        best_of_n(model, tok, DEMO_ROWS, 2, scorer="gold", kl_coef=0.1)


def test_regularised_run_writes_each_candidates_log_pi(tmp_path):
    reg = BestOfN([ROW], [[_gen("It is 4, I think."), _gen("4.")]], [[1.0, 0.9]], [1], "rm", kl_coef=0.1,
                  policy_logprobs=[[-10.0, -2.0]])
    summary = write_best_of_n(tmp_path / "bon", reg)
    cand = json.loads((tmp_path / "bon" / "candidates.jsonl").read_text())
    assert [c["policy_logprob"] for c in cand["candidates"]] == [-10.0, -2.0] and cand["chosen"] == 1
    assert summary["kl_coef"] == 0.1 and summary["policy_logprob_after"] == -2.0
