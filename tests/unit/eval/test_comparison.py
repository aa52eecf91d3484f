"""`tether.eval.comparison`: judges (gold, reward model, human labels file), per-policy metrics, the report."""

from __future__ import annotations

import json
import re

import pytest

from tether.data.records import PromptRow
from tether.errors import DataError
from tether.eval.comparison import (
    PolicyOutputs,
    collect_outputs,
    compare_policies,
    export_pairs,
    format_comparison,
    judge_outcomes,
    read_labels,
    response_metrics,
    write_comparison,
)
from tether.sampling.generate import Generation

ROWS = [PromptRow([{"role": "user", "content": q}], meta={"kind": "number", "answer": a, "given": g})
        for q, a, g in (("What is 2 plus 2?", "4", ["2"]), ("What is 3 plus 4?", "7", ["3", "4"]),
                        ("What is 5 plus 1?", "6", ["5", "1"]))]


def g(text: str, truncated: bool = False, n_tokens: int = 3) -> Generation:
    return Generation([1], [9] * n_tokens, text, truncated)


A = PolicyOutputs("A", [g("4."), g("7."), g("6.")], [[g("4."), g("4.")], [g("7."), g("It is 7.")], [g("6."), g("6.")]])
B = PolicyOutputs("B", [g("4."), g("8."), g("I think it might be 6 or so and", truncated=True, n_tokens=9)],
                  [[g("4."), g("5.")], [g("8."), g("9.")], [g("6."), g("1.")]])


def test_gold_judge_outcomes_and_report():
    outcomes, _ = judge_outcomes("gold", ROWS, A, B)
    assert outcomes == [0, 1, 1]  # same answer; right vs wrong; concise vs hedged + truncated (still right)
    report = compare_policies(ROWS, A, B, "gold")
    w = report["win_rate"]
    assert w["a_vs_b"] == pytest.approx(2.5 / 3) and (w["wins"], w["ties"], w["losses"]) == (2, 1, 0)
    a, b = report["policies"]["a"], report["policies"]["b"]
    assert a["gold_mean"] == 1.0 and a["correct_rate"] == 1.0 and b["correct_rate"] == pytest.approx(2 / 3)
    assert a["eos_rate"] == 1.0 and b["eos_rate"] == pytest.approx(2 / 3)
    assert a["mean_tokens"] == 3 and b["mean_tokens"] == pytest.approx(5.0)
    # A's samples: identical, {4.}/{It, is, 7., It is, is 7.} share 7. → 1/5, identical → mean (1 + 0.2 + 1)/3
    assert a["self_similarity"] == pytest.approx((1 + 1 / 5 + 1) / 3)
    assert b["self_similarity"] == 0.0
    assert report["a_minus_b"]["gold_mean"] == pytest.approx(a["gold_mean"] - b["gold_mean"])
    assert "proxy_mean" not in a  # no reward model: no proxy column
    labels = [r[0] for r in format_comparison(report)]
    assert "gold score" in labels and "proxy reward (RM)" not in labels


def test_response_metrics_without_samples():
    m = response_metrics(PolicyOutputs("x", [g("a b"), g("a b")], [[], []]))
    assert m["self_similarity"] is None and m["cross_similarity"] == 1.0 and m["distinct_2"] == 0.5


def test_labels_file_judge_ties_half_and_unlabelled_counted(tmp_path):
    export = tmp_path / "pairs.jsonl"
    assert export_pairs(export, ROWS, [x.text for x in A.greedy], [x.text for x in B.greedy]) == 3
    exported = [json.loads(line) for line in export.read_text().splitlines()]
    labels = tmp_path / "labels.jsonl"
    exported[0]["choice"], exported[1]["choice"] = "tie", "a"
    labels.write_text(json.dumps(exported[0]) + "\n" + json.dumps(exported[1]) + "\n")
    outcomes, seen = judge_outcomes(str(labels), ROWS, A, B)
    assert outcomes == [0, 1] and seen["unlabelled"] == 1
    report = compare_policies(ROWS, A, B, str(labels))
    assert report["win_rate"]["a_vs_b"] == pytest.approx(0.75) and report["win_rate"]["unlabelled"] == 1
    assert report["judge"] == f"labels:{labels}"


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": "What is 2 plus 2?", "choice": "maybe"}, "labels.jsonl:2: choice must be"),
    ({"prompt": "Unknown?", "choice": "a"}, "labels.jsonl:2: prompt 'Unknown?' is not among"),
    ({"choice": "a"}, "labels.jsonl:2: a label row needs 'prompt'"),
    ({"prompt": "What is 2 plus 2?", "choice": "a"}, "labels.jsonl:2: prompt 'What is 2 plus 2?' labelled twice"),
    ({"prompt": "What is 3 plus 4?", "choice": "a", "response_b": "9."}, "labels.jsonl:2: response_b differs"),
])
def test_bad_label_rows_name_file_and_line(tmp_path, row, message):
    labels = tmp_path / "labels.jsonl"
    first = {"prompt": [{"role": "user", "content": "What is 2 plus 2?"}], "choice": "b"}  # messages work too
    labels.write_text(json.dumps(first) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=re.escape(message)):
        read_labels(labels, ROWS, [x.text for x in A.greedy], [x.text for x in B.greedy])


def test_unknown_judge_and_gold_without_meta_are_errors():
    with pytest.raises(DataError, match="not 'gold', 'rm' or an existing labels file"):
        judge_outcomes("nope.jsonl", ROWS, A, B)
    plain = [PromptRow(r.prompt) for r in ROWS]
    with pytest.raises(DataError, match="demo-task prompts"):
        judge_outcomes("gold", plain, A, B)
    with pytest.raises(DataError, match="needs --reward-model"):
        judge_outcomes("rm", ROWS, A, B)


def test_rm_judge_proxy_and_kl_on_a_tiny_model(tiny, tiny_model_dir, tmp_path):
    from tether.data.tokenization import finished_reply
    from tether.eval.evaluate import kl_of_generations
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import score_sequences

    model, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=2))
    a = collect_outputs("a", model, tok, ROWS, samples_per_prompt=2, max_new_tokens=5, seed=0)
    b = collect_outputs("b", model, tok, ROWS, samples_per_prompt=2, max_new_tokens=5, seed=1)
    assert a.greedy[0].text == b.greedy[0].text  # greedy is seed-independent
    kl = {"a": kl_of_generations(model, model, tok, [x for s in a.samples for x in s]),
          "b": kl_of_generations(model, model, tok, [x for s in b.samples for x in s])}
    report = compare_policies(ROWS, a, b, "rm", policy_tokenizer=tok, reward_model=rm, rm_tokenizer=tok, kl=kl)
    assert report["win_rate"]["ties"] == 3  # same greedy responses → equal RM scores → all ties
    assert any(x.truncated for x in a.greedy)  # 5 tokens: a cut reply is read with EOS appended
    expected = score_sequences(rm, [x.prompt_ids for x in a.greedy],
                               [finished_reply(x.response_ids, tok.eos_token_id) for x in a.greedy], tok.pad_token_id)
    assert report["policies"]["a"]["proxy_scores"] == pytest.approx(expected)
    assert report["policies"]["a"]["kl"]["kl"] == pytest.approx(0.0, abs=1e-5)
    out = write_comparison(tmp_path / "cmp.json", report, ROWS, a, b)
    saved = json.loads(out.read_text())
    assert "proxy_scores" not in saved["policies"]["a"] and saved["policies"]["a"]["proxy_mean"] == pytest.approx(
        sum(expected) / 3)
    lines = [json.loads(x) for x in (tmp_path / "cmp_samples.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["a"]["proxy"] == pytest.approx(expected[0]) and "gold" in lines[0]["b"]


def test_attach_proxy_scores_a_policy_evals_texts_with_the_reward_model(tiny, tiny_model_dir):
    from tether.data.tokenization import encode_prompt, encode_response
    from tether.eval.comparison import attach_proxy
    from tether.eval.evaluate import evaluate_generations
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import score_sequences

    _, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=3))
    ev = evaluate_generations("b", ROWS, B.greedy)  # the third response is truncated: read with EOS appended too
    mean = attach_proxy(ev, ROWS, rm, tok)
    expected = [score_sequences(rm, [encode_prompt(tok, r.prompt)],
                                [encode_response(tok, g.text)], tok.pad_token_id)[0]
                for r, g in zip(ROWS, B.greedy)]
    assert mean == pytest.approx(sum(expected) / 3) and ev.summary()["proxy_mean"] == mean
    with pytest.raises(ValueError, match="not evaluated on these prompts"):
        attach_proxy(ev, ROWS[::-1], rm, tok)
