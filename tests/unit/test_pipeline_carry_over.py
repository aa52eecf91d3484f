"""A stage reused from an earlier run reports the seconds and label counts it had when it ran, not the ~0 s of
this run: `pipeline._settle` saves them beside each output and reads them back on reuse; `pipeline._carry_over`
fills what is still unknown (outputs made before outcomes were saved) from the previous summary."""

from __future__ import annotations

import json

from tether.pipeline import _carry_over, _settle


def test_a_stage_that_ran_saves_its_seconds_and_a_reused_one_reads_them_back(tmp_path):
    out = tmp_path / "rm"
    out.mkdir()
    timings: dict = {}
    _settle("rm_s", out, t0=0.0, reused=[], timings=timings)  # t0 = 0: seconds since the clock's origin
    ran = timings["rm_s"]
    assert ran > 0 and json.loads((out / "stage_outcome.json").read_text()) == {"seconds": ran}
    again: dict = {}
    assert _settle("rm_s", out, t0=1e12, reused=["rm_s"], timings=again) == {"seconds": ran}
    assert again == {"rm_s": ran}
    # a file output with extra counts; a reused output that never saved an outcome is unknown
    pairs = tmp_path / "eval_pairs.jsonl"
    _settle("label:eval_pairs.jsonl", pairs, 0.0, [], {}, is_file=True, extra={"labels": {"pairs": 240}})
    assert json.loads((tmp_path / "eval_pairs.jsonl.outcome.json").read_text())["labels"] == {"pairs": 240}
    unknown: dict = {}
    assert _settle("sft_s", tmp_path / "sft", 0.0, ["sft_s"], unknown) == {} and unknown == {"sft_s": None}


def test_unknown_reused_figures_come_from_the_previous_summary(tmp_path):
    path = tmp_path / "summary.json"
    labelling = {"onpolicy_pairs.jsonl": {"pairs": 436}, "eval_pairs.jsonl": {"pairs": 240}}
    path.write_text(json.dumps({"timings": {"sft_s": 413.0, "rm_s": 798.0, "ipo_s": None}, "labelling": labelling}))
    now = {"sft_s": None, "rm_s": 700.0, "ipo_s": 452.0, "eval_s": 557.0}
    timings, labels = _carry_over(path, ["sft_s", "rm_s", "label:onpolicy_pairs.jsonl"], now,
                                  {"onpolicy_pairs.jsonl": None, "eval_pairs.jsonl": {"pairs": 241}})
    # sft_s was unknown: the summary's; rm_s was read from its saved outcome: kept
    assert timings == {"sft_s": 413.0, "rm_s": 700.0, "ipo_s": 452.0, "eval_s": 557.0}
    assert labels == {"onpolicy_pairs.jsonl": {"pairs": 436}, "eval_pairs.jsonl": {"pairs": 241}}


def test_unknown_when_there_is_no_readable_previous_summary(tmp_path):
    now = {"sft_s": None, "eval_s": 5.0}
    assert _carry_over(tmp_path / "missing.json", ["sft_s"], now, {}) == ({"sft_s": None, "eval_s": 5.0}, {})
    bad = tmp_path / "summary.json"
    bad.write_text("{not json")
    assert _carry_over(bad, ["sft_s"], now, {})[0] == {"sft_s": None, "eval_s": 5.0}
