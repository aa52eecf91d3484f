"""A finished best-of-N run brought up to date with the current gold judge, without sampling again."""

from __future__ import annotations

import json

import pytest

from tether.data.records import PromptRow
from tether.eval.bon_policy import rejudge_best_of_n, run_best_of_n
from tether.sampling.generate import SamplingConfig

ROWS = [PromptRow([{"role": "user", "content": q}], meta={"family": "arithmetic", "kind": "number", "answer": a,
                                                           "given": g})
        for q, a, g in (("What is 2 plus 2?", "4", ["2"]), ("What is 3 plus 4?", "7", ["3", "4"]))]


def _close(a, b) -> bool:
    """Equal up to float rounding, through nested dicts and lists (tuples read back from JSON as lists)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_close, a, b))
    return a == pytest.approx(b, abs=1e-12)


def _stale(out, gold=0.123):
    """Rewrite the run's stored gold verdicts as an older judge might have given them."""
    lines = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    for d in lines:
        for c in d["candidates"]:
            c["gold"] = gold
    (out / "candidates.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    samples = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    for d in samples:
        for name in ("baseline", "bon4"):
            d[name]["gold"] = gold
    (out / "eval_samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in samples))
    summary = json.loads((out / "result.json").read_text())
    (out / "result.json").write_text(json.dumps(summary | {"gold_after": gold, "gold_before": gold}))
    return summary


def _rm_run(tiny_model_dir, tiny, tmp_path, kl_coef: float = 0.0):
    """Best-of-4 of the tiny model under a saved tiny reward model into tmp_path/bon: (out dir, summary)."""
    from tether.models.scalar_head import ScalarHeadModel

    _, tok = tiny
    rm_dir = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=1).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(rm_dir)
    out = tmp_path / "bon"
    return out, run_best_of_n(str(tiny_model_dir), str(rm_dir), ROWS, 4, out, seed=2, name="bon4", kl_coef=kl_coef,
                              log=lambda *_: None,
                              sampling=SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=6))


def test_rejudge_restores_every_gold_figure_and_keeps_the_selection(tiny_model_dir, tiny, tmp_path):
    out, fresh = _rm_run(tiny_model_dir, tiny, tmp_path)
    chosen = [json.loads(line)["chosen"] for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert rejudge_best_of_n(out) == json.loads((out / "result.json").read_text())  # nothing to change
    _stale(out)
    lines = []
    again = rejudge_best_of_n(out, log=lines.append)
    assert "candidates scored differently" in lines[0]
    for key in ("gold_before", "gold_after", "curve_gold", "eval", "baseline_eval", "vs_baseline", "proxy_after"):
        assert _close(again[key], fresh[key]), key
    assert [json.loads(line)["chosen"] for line in (out / "candidates.jsonl").read_text().splitlines()] == chosen
    assert _close(json.loads((out / "result.json").read_text()), again)  # the files are rewritten
    assert _close(rejudge_best_of_n(out, log=lines.append), again) and len(lines) == 1


def test_a_run_selected_by_the_gold_judge_is_not_rejudged_but_flagged(tiny_model_dir, tmp_path):
    out = tmp_path / "bon"
    run_best_of_n(str(tiny_model_dir), None, ROWS, 4, out, scorer="gold", seed=2, name="bon4", log=lambda *_: None,
                  sampling=SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=6))
    stale = _stale(out)
    lines = []
    kept = rejudge_best_of_n(out, log=lines.append)
    assert kept["gold_after"] == 0.123 and kept["eval"] == stale["eval"]
    assert lines and lines[0].startswith("WARNING:") and "re-run it" in lines[0]


def test_rejudge_of_a_regularised_run_selects_as_its_pick_did(tiny_model_dir, tiny, tmp_path):
    """The gold best-of-k curve is rebuilt under score + β·log π(y|x), the selection the run made, not the RM's."""
    out, fresh = _rm_run(tiny_model_dir, tiny, tmp_path, kl_coef=1e3)
    assert fresh["kl_coef"] == 1e3
    from tether.sampling.best_of_n import gold_summary

    lines = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    by_rm = gold_summary([[c["score"] for c in d["candidates"]] for d in lines],
                         [[c["gold"] for c in d["candidates"]] for d in lines], [d["chosen"] for d in lines])
    assert not _close(by_rm["curve_gold"], fresh["curve_gold"])  # the two selections differ here: the test can fail
    _stale(out)
    again = rejudge_best_of_n(out, log=lambda *_: None)
    for key in ("gold_before", "gold_after", "curve_gold", "vs_baseline"):
        assert _close(again[key], fresh[key]), key
