"""Stage records: a finished output is reused only when it was made from the same config and inputs."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from tether.runtime.provenance import (
    StageRecord,
    changed_fields,
    input_fingerprint,
    same_record,
    stage_inputs,
    weights_fingerprint,
)


@dataclass
class _Train:
    steps: int = 3


@dataclass
class _Cfg:
    lr: float = 1e-5
    train: _Train = field(default_factory=_Train)


def _model_dir(path, payload: bytes = b"w"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(payload)
    return path


def test_fingerprints_of_files_dirs_and_names(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"a": 1}\n')
    assert input_fingerprint(f) == hashlib.sha256(b'{"a": 1}\n').hexdigest()
    os.utime(f, (1, 1))  # a touch does not change a file's fingerprint
    assert input_fingerprint(f) == hashlib.sha256(b'{"a": 1}\n').hexdigest()
    d = _model_dir(tmp_path / "rm", b"abc")
    (d / "config.json").write_text("{}")  # only the weights count
    st = (d / "model.safetensors").stat()
    sha = hashlib.sha256(b"abc").hexdigest()
    assert input_fingerprint(d) == weights_fingerprint(str(d)) == [["model.safetensors", 3, st.st_mtime_ns, sha]]
    assert input_fingerprint("smollm2-135m-instruct") == ["smollm2-135m-instruct"]


def test_weights_are_hashed_once_per_write_and_a_copy_is_the_same_model(tmp_path):
    import shutil

    d = _model_dir(tmp_path / "rm", b"abc")
    first = weights_fingerprint(str(d))
    cache = json.loads((d / ".weights_sha256.json").read_text())
    assert cache["model.safetensors"]["sha256"] == first[0][3]
    cache["model.safetensors"]["sha256"] = "from-the-cache"  # an unchanged file is not hashed again
    (d / ".weights_sha256.json").write_text(json.dumps(cache))
    assert weights_fingerprint(str(d))[0][3] == "from-the-cache"
    (d / "model.safetensors").write_bytes(b"abd")  # rewritten (same size): hashed again
    os.utime(d / "model.safetensors", ns=(1, 1))
    assert weights_fingerprint(str(d))[0][3] == hashlib.sha256(b"abd").hexdigest()
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)  # copied, new mtime: a new entry, the same model
    os.utime(copy / "model.safetensors", ns=(2, 2))
    a, b = weights_fingerprint(str(d)), weights_fingerprint(str(copy))
    assert a != b and same_record(a, b)
    (copy / "model.safetensors").write_bytes(b"xyz")
    assert not same_record(a, weights_fingerprint(str(copy)))


def test_records_written_before_hashes_still_match_the_untouched_weights(tmp_path):
    d = _model_dir(tmp_path / "rm", b"abc")
    legacy = [entry[:3] for entry in weights_fingerprint(str(d))]  # [name, size, mtime_ns]
    assert same_record({"inputs": {"rm": legacy}}, {"inputs": {"rm": weights_fingerprint(str(d))}})
    (d / "model.safetensors").write_bytes(b"xyz")  # retrained, same size: the old record does not match it
    os.utime(d / "model.safetensors", ns=(5, 5))
    assert changed_fields({"inputs": {"rm": legacy}}, {"inputs": {"rm": weights_fingerprint(str(d))}}) == \
        ["inputs.rm"]


def test_record_round_trips_through_json_and_names_what_changed(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text("x\n")
    rec = stage_inputs(_Cfg(), pairs=f)
    assert rec == json.loads(json.dumps(rec))
    assert rec["config"] == {"lr": 1e-5, "train": {"steps": 3}}
    f.write_text("y\n")
    new = stage_inputs(_Cfg(lr=2e-5), pairs=f)
    assert changed_fields(rec, new) == ["config.lr", "inputs.pairs"]
    assert changed_fields(rec, stage_inputs(_Cfg(train=_Train(4)), pairs=tmp_path / "pairs.jsonl")) == \
        ["config.train", "inputs.pairs"]
    assert changed_fields(new, new) == []


def test_run_dir_missing_then_fresh_then_stale(tmp_path):
    out = tmp_path / "ppo"
    rm = _model_dir(tmp_path / "rm", b"v1")
    first = stage_inputs({"beta": 0.05}, rm=rm)
    rec = StageRecord(out)
    assert rec.check(first) == "missing"
    rec.write(first)  # written before the stage runs: an interrupted run is recognised
    assert (out / "stage_inputs.json").is_file() and StageRecord(out).check(first) == "missing"
    (out / "result.json").write_text("{}")
    assert StageRecord(out).check(first) == "fresh"
    # The reward model is retrained: the finished run is stale and moved aside, checkpoints and all.
    (out / "checkpoints").mkdir()
    _model_dir(rm, b"v2-longer")
    rec = StageRecord(out)
    assert rec.check(stage_inputs({"beta": 0.05}, rm=rm)) == "stale"
    assert rec.changed == ["inputs.rm"]
    assert not out.exists() and (tmp_path / "ppo.stale" / "result.json").is_file()
    assert (tmp_path / "ppo.stale" / "checkpoints").is_dir()
    # A second stale output replaces the first one's slot.
    rec.write(first)
    (out / "result.json").write_text('{"second": true}')
    assert StageRecord(out).check(stage_inputs({"beta": 0.1}, rm=rm)) == "stale"
    assert json.loads((tmp_path / "ppo.stale" / "result.json").read_text()) == {"second": True}


def test_outputs_without_a_record_are_adopted_once(tmp_path):
    out = tmp_path / "sft"
    out.mkdir()
    (out / "result.json").write_text("{}")
    record = stage_inputs({"steps": 60})
    assert StageRecord(out).check(record) == "adopted"
    assert json.loads((out / "stage_inputs.json").read_text()) == record
    assert StageRecord(out).check(record) == "fresh"
    assert StageRecord(out).check(stage_inputs({"steps": 61})) == "stale"


def test_single_file_output(tmp_path):
    out = tmp_path / "data" / "eval_pairs.jsonl"
    record = stage_inputs({"seed": 2})
    rec = StageRecord(out, done_marker=None)
    assert rec.path == tmp_path / "data" / "eval_pairs.jsonl.inputs.json"
    assert rec.check(record) == "missing"
    rec.write(record)
    out.write_text("pairs\n")
    assert StageRecord(out, done_marker=None).check(record) == "fresh"
    rec = StageRecord(out, done_marker=None)
    assert rec.check(stage_inputs({"seed": 3})) == "stale" and rec.changed == ["config.seed"]
    assert not out.exists() and not rec.path.exists()
    assert (tmp_path / "data" / "eval_pairs.jsonl.stale").read_text() == "pairs\n"


def test_paths_under_the_run_dir_are_relative(tmp_path):
    a = stage_inputs({"model": "runs/demo/sft", "out": "runs/demo", "other": "runs/demo2/x",
                      "elsewhere": "/data/runs/demo/x"}, root="runs/demo")
    assert a["config"] == {"model": "<run>/sft", "out": "<run>", "other": "runs/demo2/x",
                           "elsewhere": "/data/runs/demo/x"}
    assert a == stage_inputs({"model": "elsewhere/v1/sft", "out": "elsewhere/v1", "other": "runs/demo2/x",
                              "elsewhere": "/data/runs/demo/x"}, root="elsewhere/v1")


def test_a_copied_input_keeps_the_output_fresh_and_the_record_is_updated(tmp_path):
    import shutil

    rm = _model_dir(tmp_path / "rm", b"v1")
    out = tmp_path / "ppo"
    StageRecord(out).write(stage_inputs({"beta": 0.05}, rm=rm))
    (out / "result.json").write_text("{}")
    shutil.rmtree(rm)
    _model_dir(rm, b"v1")  # the same weights written again (as `cp -r` of a run does): new mtime
    os.utime(rm / "model.safetensors", ns=(7, 7))
    now = stage_inputs({"beta": 0.05}, rm=rm)
    assert StageRecord(out).check(now) == "fresh"
    assert json.loads((out / "stage_inputs.json").read_text()) == now


def test_a_config_field_added_after_the_output_was_made_is_not_a_change():
    old = {"config": {"lr": 1e-5, "train": {"steps": 3}}, "inputs": {}}
    grown = {"config": {"lr": 1e-5, "train": {"steps": 3, "forward_group_rows": None}, "packing": False},
             "inputs": {}}
    assert changed_fields(old, grown) == []
    assert changed_fields(grown, old) == ["config.packing", "config.train"]  # a field removed is a change
    assert changed_fields(old, {**grown, "config": {**grown["config"], "lr": 2e-5}}) == ["config.lr"]
    assert changed_fields({"inputs": {"a": "x"}}, {"inputs": {"a": "x", "b": "y"}}) == ["inputs.b"]  # inputs: all


def test_outcome_is_kept_while_the_output_is_reused_and_goes_when_it_is_made_again(tmp_path):
    rm = _model_dir(tmp_path / "rm", b"v1")
    out = tmp_path / "ppo"
    record = stage_inputs({"beta": 0.05}, rm=rm)
    assert StageRecord(out).reuse(record, log=lambda _: None) is False
    (out / "result.json").write_text("{}")
    StageRecord(out).save_outcome({"seconds": 623.5})
    assert (out / "stage_outcome.json").is_file()
    # reused: fresh, and a refreshed fingerprint (copied inputs) keeps the outcome too
    os.utime(rm / "model.safetensors", ns=(9, 9))
    rec = StageRecord(out)
    assert rec.reuse(stage_inputs({"beta": 0.05}, rm=rm), log=lambda _: None) is True
    assert rec.load_outcome() == {"seconds": 623.5}
    # interrupted before result.json: the stage runs again and the old outcome no longer applies
    (out / "result.json").unlink()
    rec = StageRecord(out)
    assert rec.reuse(stage_inputs({"beta": 0.05}, rm=rm), log=lambda _: None) is False
    assert rec.load_outcome() == {}
    # stale: the outcome leaves with the output it belongs to
    (out / "result.json").write_text("{}")
    rec.save_outcome({"seconds": 1.0})
    assert StageRecord(out).reuse(stage_inputs({"beta": 0.1}, rm=rm), log=lambda _: None) is False
    assert json.loads((tmp_path / "ppo.stale" / "stage_outcome.json").read_text()) == {"seconds": 1.0}
    assert StageRecord(out).load_outcome() == {}


def test_outcome_of_a_single_file_output_sits_beside_it(tmp_path):
    out = tmp_path / "eval_pairs.jsonl"
    rec = StageRecord(out, done_marker=None)
    assert rec.outcome_path == tmp_path / "eval_pairs.jsonl.outcome.json"
    rec.write(stage_inputs({"seed": 2}))
    out.write_text("pairs\n")
    rec.save_outcome({"seconds": 95.0, "labels": {"pairs": 240}})
    assert StageRecord(out, done_marker=None).load_outcome()["labels"] == {"pairs": 240}
    rec.outcome_path.write_text("{not json")
    assert StageRecord(out, done_marker=None).load_outcome() == {}
    rec.save_outcome({"seconds": 95.0})
    assert StageRecord(out, done_marker=None).check(stage_inputs({"seed": 3})) == "stale"
    assert not rec.outcome_path.exists()
