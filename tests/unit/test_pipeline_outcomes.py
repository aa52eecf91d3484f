"""A stage reused from an earlier run reports the seconds and label counts it had when it ran, not the ~0 s of
this run: `pipeline._settle` saves them beside each output and reads them back on reuse (None where an output
was made before outcomes were saved)."""

from __future__ import annotations

import json

from tether.pipeline import _settle, write_templated_sample


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


def test_a_finished_stage_loses_its_resume_checkpoints_only_when_asked(tmp_path):
    out = tmp_path / "sft"
    ckpt = out / "checkpoints" / "step-4"
    ckpt.mkdir(parents=True)
    (ckpt / "optimizer.bin").write_bytes(b"x")
    (out / "model.safetensors").write_bytes(b"w")
    _settle("sft_s", out, 0.0, [], {}, prune_checkpoints=True)
    assert ckpt.is_dir()  # not finished (no result.json): the checkpoint is what resumes it
    (out / "result.json").write_text("{}")
    _settle("sft_s", out, 0.0, [], {}, prune_checkpoints=False)
    assert ckpt.is_dir()
    _settle("sft_s", out, 0.0, [], {}, prune_checkpoints=True)
    assert not (out / "checkpoints").exists() and (out / "model.safetensors").read_bytes() == b"w"


def test_the_templated_sample_is_seeded_in_file_order_and_byte_identical(tmp_path):
    source, dest = tmp_path / "preference.jsonl", tmp_path / "rm_templated.jsonl"
    lines = [json.dumps({"i": i}) + "\n" for i in range(10)]
    source.write_text("".join(lines))
    assert write_templated_sample(source, dest, 4, seed=3) == dest
    kept = dest.read_text().splitlines(keepends=True)
    order = [json.loads(line)["i"] for line in kept]
    assert len(kept) == 4 and order == sorted(set(order)) and all(line in lines for line in kept)
    first = dest.read_bytes()
    write_templated_sample(source, dest, 4, seed=3)
    assert dest.read_bytes() == first  # the same seed, the same rows
    write_templated_sample(source, dest, 4, seed=4)
    assert dest.read_bytes() != first  # another seed, other rows (4 of 10: 210 draws)
    write_templated_sample(source, dest, 0, seed=3)
    assert dest.read_text() == ""
    write_templated_sample(source, dest, 50, seed=3)
    assert dest.read_text() == source.read_text()  # more than there are: all of them
