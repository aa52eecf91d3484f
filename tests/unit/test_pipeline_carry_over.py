"""`pipeline._carry_over`: a stage reused from an earlier run reports the seconds and label counts it had when
it ran (read from the previous summary), not the ~0 s of this run."""

from __future__ import annotations

import json

from tether.pipeline import _carry_over


def test_reused_stages_take_the_previous_figures(tmp_path):
    path = tmp_path / "summary.json"
    labelling = {"onpolicy_pairs.jsonl": {"pairs": 436}, "eval_pairs.jsonl": {"pairs": 240}}
    path.write_text(json.dumps({"timings": {"sft_s": 413.0, "rm_s": 798.0, "ipo_s": None}, "labelling": labelling}))
    now = {"sft_s": 0.01, "rm_s": 0.02, "ipo_s": 452.0, "eval_s": 557.0}
    timings, labels = _carry_over(path, ["sft_s", "rm_s", "label:onpolicy_pairs.jsonl"], now,
                                  {"eval_pairs.jsonl": {"pairs": 241}})
    assert timings == {"sft_s": 413.0, "rm_s": 798.0, "ipo_s": 452.0, "eval_s": 557.0}
    # the reused file's counts come from before; the relabelled file keeps this run's
    assert labels == {"onpolicy_pairs.jsonl": {"pairs": 436}, "eval_pairs.jsonl": {"pairs": 241}}


def test_unknown_when_there_is_no_readable_previous_summary(tmp_path):
    now = {"sft_s": 0.01, "eval_s": 5.0}
    assert _carry_over(tmp_path / "missing.json", ["sft_s"], now, {}) == ({"sft_s": None, "eval_s": 5.0}, {})
    bad = tmp_path / "summary.json"
    bad.write_text("{not json")
    assert _carry_over(bad, ["sft_s"], now, {})[0] == {"sft_s": None, "eval_s": 5.0}
