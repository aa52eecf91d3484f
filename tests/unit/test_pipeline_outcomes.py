"""A stage reused from an earlier run reports the seconds, host and label counts it had when it ran, not the ~0 s
of this run: `pipeline._settle` saves them beside each output and reads them back on reuse (None where an output
was made before outcomes were saved)."""

from __future__ import annotations

import json

from tether.pipeline import _settle, write_templated_sample


def test_a_stage_that_ran_saves_its_seconds_and_host_and_a_reused_one_reads_them_back(tmp_path):
    out = tmp_path / "rm"
    out.mkdir()
    timings: dict = {}
    hosts: dict = {}
    _settle("rm_s", out, 0.0, [], timings, hosts, "CPU A (AVX2), 2 CPUs, 1 thread")  # t0 = 0: the clock's origin
    ran = timings["rm_s"]
    saved = {"seconds": ran, "host": "CPU A (AVX2), 2 CPUs, 1 thread"}
    assert ran > 0 and json.loads((out / "stage_outcome.json").read_text()) == saved
    assert hosts == {"rm_s": "CPU A (AVX2), 2 CPUs, 1 thread"}
    again: dict = {}
    again_hosts: dict = {}
    # reused on another host: the seconds and the host are the run's that made it, not this one's
    assert _settle("rm_s", out, 1e12, ["rm_s"], again, again_hosts, "CPU B (AVX512), 8 CPUs, 8 threads") == saved
    assert again == {"rm_s": ran} and again_hosts == {"rm_s": "CPU A (AVX2), 2 CPUs, 1 thread"}
    # a file output with extra counts; a reused output that never saved an outcome is unknown
    pairs = tmp_path / "eval_pairs.jsonl"
    _settle("label:eval_pairs.jsonl", pairs, 0.0, [], {}, {}, "h", is_file=True, extra={"labels": {"pairs": 240}})
    assert json.loads((tmp_path / "eval_pairs.jsonl.outcome.json").read_text())["labels"] == {"pairs": 240}
    unknown: dict = {}
    unknown_hosts: dict = {}
    assert _settle("sft_s", tmp_path / "sft", 0.0, ["sft_s"], unknown, unknown_hosts, "h") == {}
    assert unknown == {"sft_s": None} and unknown_hosts == {"sft_s": None}


def test_a_finished_stage_loses_its_resume_checkpoints_only_when_asked(tmp_path):
    out = tmp_path / "sft"
    ckpt = out / "checkpoints" / "step-4"
    ckpt.mkdir(parents=True)
    (ckpt / "optimizer.bin").write_bytes(b"x")
    (out / "model.safetensors").write_bytes(b"w")
    _settle("sft_s", out, 0.0, [], {}, {}, "h", prune_checkpoints=True)
    assert ckpt.is_dir()  # not finished (no result.json): the checkpoint is what resumes it
    (out / "result.json").write_text("{}")
    _settle("sft_s", out, 0.0, [], {}, {}, "h", prune_checkpoints=False)
    assert ckpt.is_dir()
    _settle("sft_s", out, 0.0, [], {}, {}, "h", prune_checkpoints=True)
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
