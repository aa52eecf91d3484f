"""The on-disk evaluation cache: reused for the same prompts, budget and weights; redone when any changes."""

from __future__ import annotations

import os
import shutil

import pytest

from tether.data.records import PromptRow
from tether.eval.policy_cache import evaluate_cached, load_eval, policy_fingerprint

ROWS = [PromptRow([{"role": "user", "content": q}], meta={"kind": "number", "answer": a, "given": []})
        for q, a in (("What is 2 plus 2?", "4"), ("What is 3 plus 4?", "7"))]


@pytest.fixture
def policy_dir(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "policy")


def test_reused_for_same_prompts_and_weights_redone_when_either_changes(tiny, policy_dir, tmp_path):
    model, tok = tiny
    run, lines = tmp_path / "run", []

    def evaluate(rows, max_new_tokens=64):
        return evaluate_cached(run, "dpo", str(policy_dir), rows, ROWS[:1], tok, model, None, None,
                               max_new_tokens=max_new_tokens, log=lines.append)

    first, kl = evaluate(ROWS)
    assert lines == [f"      dpo: evaluating {policy_dir}"] and kl is not None
    key = load_eval(run / "eval" / "policy-dpo.json")[3]
    assert key == {"policy": policy_fingerprint(str(policy_dir)), "max_new_tokens": 64, "rm": None}
    again, kl_again = evaluate(ROWS)
    assert lines[-1] == f"      dpo: reusing {run / 'eval' / 'policy-dpo.json'}"
    assert [s.response for s in again.samples] == [s.response for s in first.samples] and kl_again["kl"] == kl["kl"]
    evaluate(ROWS[:1])  # other prompts
    assert lines[-1].endswith("evaluating " + str(policy_dir))
    weights = next(policy_dir.glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes: the same policy
    evaluate(ROWS[:1])
    assert lines[-1].startswith("      dpo: reusing")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # retrained in place: the last weight's lowest byte differs
    weights.write_bytes(bytes(data))
    evaluate(ROWS[:1])
    assert lines[-1].endswith("evaluating " + str(policy_dir))
    evaluate(ROWS[:1])
    assert lines[-1].startswith("      dpo: reusing")
    evaluate(ROWS[:1], max_new_tokens=8)  # another response budget
    assert lines[-1].endswith("evaluating " + str(policy_dir))
    evaluate_cached(run, "dpo", str(policy_dir), ROWS[:1], ROWS[:1], tok, model, None, None, max_new_tokens=8,
                    rm_spec=str(tmp_path), log=lines.append)  # a reward model named: same responses
    assert lines[-2:] == [f"      dpo: reusing {run / 'eval' / 'policy-dpo.json'}",
                          "      dpo: no proxy score yet; none"]
    assert load_eval(run / "eval" / "policy-dpo.json")[3]["rm"] == policy_fingerprint(str(tmp_path))


def test_a_retrained_reward_model_rescores_the_cached_responses(tiny, tiny_model_dir, policy_dir, tmp_path):
    from tether.models.scalar_head import ScalarHeadModel

    model, tok = tiny
    run, lines = tmp_path / "run", []
    rm_dir = tmp_path / "rm"
    scores = []
    for seed in (1, 2):  # the RM retrained in place
        rm = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=seed).eval()
        rm.save_pretrained(rm_dir)
        evaluation, _ = evaluate_cached(run, "sft", str(policy_dir), ROWS, [], tok, model, rm, tok, max_new_tokens=4,
                                        rm_spec=str(rm_dir), log=lines.append)
        scores.append(evaluation.proxy_mean)
    assert lines[-2:] == [f"      sft: reusing {run / 'eval' / 'policy-sft.json'}",
                          "      sft: the reward model changed; proxy score recomputed"]
    assert scores[0] != scores[1]
    assert load_eval(run / "eval" / "policy-sft.json")[0].proxy_mean == scores[1]


def test_responses_made_without_a_reward_model_get_their_proxy_score_later(tiny, policy_dir, tmp_path):
    """What the pipeline's workers do: generate before the RM exists (rm None), the RM's score added on reuse."""
    from tether.eval.policy_cache import has_cached_generation
    from tether.models.scalar_head import ScalarHeadModel

    model, tok = tiny
    run, lines = tmp_path / "run", []
    assert not has_cached_generation(run, "base", str(policy_dir), ROWS, [], max_new_tokens=4)
    first, _ = evaluate_cached(run, "base", str(policy_dir), ROWS, [], tok, model, None, None, max_new_tokens=4,
                               log=lines.append)
    assert first.proxy_mean is None and load_eval(run / "eval" / "policy-base.json")[3]["rm"] is None
    assert has_cached_generation(run, "base", str(policy_dir), ROWS, [], max_new_tokens=4)
    assert not has_cached_generation(run, "base", str(policy_dir), ROWS[:1], [], max_new_tokens=4)
    assert not has_cached_generation(run, "base", str(policy_dir), ROWS, [], max_new_tokens=4, samples_per_prompt=2)
    rm_dir = tmp_path / "rm"
    ScalarHeadModel.from_pretrained_lm(str(policy_dir), tok, seed=1).save_pretrained(rm_dir)
    rm = ScalarHeadModel.from_pretrained(rm_dir).eval()
    again, _ = evaluate_cached(run, "base", str(policy_dir), ROWS, [], tok, model, rm, tok, max_new_tokens=4,
                               rm_spec=str(rm_dir), log=lines.append)
    assert lines[-2:] == [f"      base: reusing {run / 'eval' / 'policy-base.json'}",
                          "      base: no proxy score yet; added"]
    assert [s.response for s in again.samples] == [s.response for s in first.samples]
    saved = load_eval(run / "eval" / "policy-base.json")
    assert saved[0].proxy_mean == again.proxy_mean is not None and saved[3]["rm"] == policy_fingerprint(str(rm_dir))


def test_fingerprint_of_a_name_is_the_name(tmp_path):
    assert policy_fingerprint("smollm2-135m-instruct") == ["smollm2-135m-instruct"]
    assert policy_fingerprint(str(tmp_path)) == []  # a dir without weights


def test_a_reused_evaluation_is_scored_by_the_current_judge(tiny, policy_dir, tmp_path):
    import json

    model, tok = tiny
    run, lines = tmp_path / "run", []
    first, _ = evaluate_cached(run, "sft", str(policy_dir), ROWS, [], tok, model, None, None, max_new_tokens=4,
                               log=lines.append)
    cache = run / "eval" / "policy-sft.json"
    d = json.loads(cache.read_text())
    d["samples"][0]["gold"] = 0.123  # a verdict the current judge does not give
    cache.write_text(json.dumps(d))
    again, _ = evaluate_cached(run, "sft", str(policy_dir), ROWS, [], tok, model, None, None, max_new_tokens=4,
                               log=lines.append)
    assert lines[-1] == "      sft: 1 of 2 cached responses scored differently by the current gold judge; updated"
    assert [s.gold for s in again.samples] == [s.gold for s in first.samples]
    assert load_eval(cache)[0].samples[0].gold == first.samples[0].gold  # the cache is rewritten


def test_sampled_evaluation_measures_the_kl_on_its_own_samples(tiny, policy_dir, tmp_path):
    import json

    from tether.eval.evaluate import kl_of_generations
    from tether.eval.policy_cache import SAMPLED_EVAL_SEED_OFFSET
    from tether.sampling.generate import SamplingConfig, generate

    model, tok = tiny
    run, lines = tmp_path / "run", []

    def sampled(name, temperature=1.0):
        return evaluate_cached(run, name, str(policy_dir), ROWS, ROWS[:1], tok, model, None, None, max_new_tokens=6,
                               log=lines.append, samples_per_prompt=3, temperature=temperature)

    evaluation, kl = sampled("dpo")
    assert evaluation.n == 6 and kl["n"] == 6  # every sample, not the one kl_rows prompt
    rows = [r for r in ROWS for _ in range(3)]
    gens = generate(model, tok, [r.prompt for r in rows], SamplingConfig(do_sample=True, temperature=1.0,
                    max_new_tokens=6, batch_size=32), seed=SAMPLED_EVAL_SEED_OFFSET, show_progress=False,
                    logprobs=True)
    assert [g.text for g in gens] == [s.response for s in evaluation.samples]  # the same draw
    assert kl == kl_of_generations(model, model, tok, gens, sampler_logprobs=True)  # log π from the sampler
    assert kl["kl"] == pytest.approx(kl_of_generations(model, model, tok, gens)["kl"], abs=1e-5)  # or a forward
    assert abs(kl["kl"]) < 1e-5  # the policy is its own reference here
    assert sampled("sft")[1] is None and sampled("dpo", temperature=0.7)[1] is None  # not a trained policy at T 1
    cache = run / "eval" / "policy-dpo-sampled.json"
    d = json.loads(cache.read_text())  # written at T 0.7: no KL
    assert d["kl_to_sft"] is None
    sampled("dpo")  # back at T 1, by an older tether without the KL: evaluated again to measure it
    assert lines[-1] == f"      dpo: evaluating {policy_dir}"
    assert sampled("dpo")[1] == kl and lines[-1].startswith("      dpo: reusing")


def test_kl_interval_of_several_samples_per_prompt_is_by_prompt(tiny):
    from tether.eval.evaluate import kl_of_generations
    from tether.eval.metrics import mean_ci
    from tether.sampling.generate import SamplingConfig, generate

    model, tok = tiny
    other = type(model)(model.config)  # a different random reference: per-sample values differ
    rows = [r for r in ROWS for _ in range(2)]
    gens = generate(model, tok, [r.prompt for r in rows], SamplingConfig(do_sample=True, max_new_tokens=5), seed=3,
                    show_progress=False)
    both = kl_of_generations(model, other, tok, gens)
    per_sample = [kl_of_generations(model, other, tok, [g])["kl"] for g in gens]
    assert both["kl"] == pytest.approx(sum(per_sample) / 4, abs=1e-5)

    def plain_logprob(m, g) -> float:  # one unpadded forward, log-softmax, gather the response tokens
        import torch

        ids = torch.tensor([g.prompt_ids + g.response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(m(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        return float(logp[torch.arange(len(targets)), targets][len(g.prompt_ids) - 1 :].sum())

    for g, value in zip(gens, per_sample):
        assert value == pytest.approx(plain_logprob(model, g) - plain_logprob(other, g), abs=1e-4)
    means = [(per_sample[0] + per_sample[1]) / 2, (per_sample[2] + per_sample[3]) / 2]
    _, lo, hi = mean_ci(means)
    assert (both["kl_ci_low"], both["kl_ci_high"]) == (pytest.approx(lo, abs=1e-5), pytest.approx(hi, abs=1e-5))
    assert both["n"] == 4
