"""The demo task: deterministic, big enough, split by prompt with no train/eval leakage, valid rows."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import fields

import pytest

from tether.data.demo_task import (
    EVAL_PER_FAMILY,
    FAMILIES,
    OFF_QUESTION_REPLIES,
    REJECTED_STYLES,
    SFT_PADDED_SHARE,
    SPLIT_SIZES,
    SYSTEM_PROMPT,
    TASK_VERSION,
    _fact,
    _words,
    concise_answer,
    corrupt,
    make_demo_task,
    statement,
)
from tether.data.gold_judge import FILLER_PHRASES, HEDGE_PHRASES, gold_score
from tether.data.records import FeedbackRow, PreferencePair, PromptRow, SFTExample, prompt_text

FILES = ["sft.jsonl", "preference.jsonl", "rl_prompts.jsonl", "eval_prompts.jsonl", "feedback.jsonl"]


@pytest.fixture(scope="module")
def task():
    return make_demo_task(seed=0)


def _texts(rows):
    return [prompt_text(r.prompt) for r in rows]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_demo_task(seed=0).write(a)
    make_demo_task(seed=0).write(b)
    make_demo_task(seed=1).write(c)
    for name in [*FILES, "manifest.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in FILES:
        assert (a / name).read_bytes() != (c / name).read_bytes(), name


def test_counts_families_and_distinct_prompts(task):
    assert len(task.sft) == SPLIT_SIZES["sft"] == 1000
    assert len(task.preference) == SPLIT_SIZES["preference"] == 800
    assert len(task.rl_prompts) == SPLIT_SIZES["rl_prompts"] == 600
    assert len(task.eval_prompts) == SPLIT_SIZES["eval_prompts"] == 300
    everything = (
        _texts(task.sft) + _texts(task.preference) + _texts(task.rl_prompts) + _texts(task.eval_prompts)
    )
    assert len(set(everything)) == len(everything) >= 2000
    fams = Counter(r.meta["family"] for r in task.eval_prompts)
    assert len(FAMILIES) >= 6 and set(fams) == set(FAMILIES)
    assert all(n == EVAL_PER_FAMILY for n in fams.values())  # eval balanced across families
    for rows in (task.sft, task.preference, task.rl_prompts):
        assert {r.meta["family"] for r in rows} == set(FAMILIES)


def test_no_prompt_shared_between_training_and_eval(task):
    train = set(_texts(task.sft)) | set(_texts(task.preference)) | set(_texts(task.rl_prompts))
    assert not train & set(_texts(task.eval_prompts))
    assert not set(_texts(task.sft)) & set(_texts(task.preference))
    assert not set(_texts(task.rl_prompts)) & (set(_texts(task.sft)) | set(_texts(task.preference)))
    ids = [
        r.meta["id"] for rows in (task.sft, task.preference, task.rl_prompts, task.eval_prompts) for r in rows
    ]
    assert len(set(ids)) == len(ids)


def test_files_hold_exactly_the_record_fields_and_manifest_counts(tmp_path, task):
    manifest = task.write(tmp_path)
    kinds = {
        "sft.jsonl": SFTExample,
        "preference.jsonl": PreferencePair,
        "rl_prompts.jsonl": PromptRow,
        "eval_prompts.jsonl": PromptRow,
        "feedback.jsonl": FeedbackRow,
    }
    for name, cls in kinds.items():
        lines = (tmp_path / name).read_text(encoding="utf-8").splitlines()
        assert len(lines) == manifest["counts"][name.removesuffix(".jsonl")]
        for line in lines:
            row = json.loads(line)
            assert list(row) == [f.name for f in fields(cls)]
            # a system turn (so the chat template adds no default of its own), then the question
            assert row["prompt"] == [{"role": "system", "content": SYSTEM_PROMPT},
                                     {"role": "user", "content": row["prompt"][1]["content"]}]
            assert {"family", "answer", "aliases", "id"} <= set(row["meta"])
            assert row["meta"]["answer"] in row["meta"]["aliases"]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["seed"] == 0 and on_disk["distinct_prompts"] == 2700
    assert on_disk["version"] == TASK_VERSION
    assert sum(on_disk["families"]["sft"].values()) == 1000
    assert on_disk["families"]["eval_prompts"] == {f: EVAL_PER_FAMILY for f in sorted(FAMILIES)}


def test_every_prompt_carries_its_fact_and_one_other_whose_answer_is_wrong(task):
    rows = task.sft + task.preference + task.rl_prompts + task.eval_prompts
    for row in rows:
        meta, text = row.meta, prompt_text(row.prompt)
        notes, question = text.split("\n", 1)
        assert notes == "Notes: " + " ".join(meta["notes"])
        assert len(meta["notes"]) == 2 and question and "Notes" not in question
        assert meta["notes"][0] != meta["notes"][1], text  # the other note is another question's
        assert _fact(meta) in meta["notes"], text
        if meta["kind"] != "yesno":  # exactly one note answers the question
            assert sum(gold_score(meta, n).correct for n in meta["notes"]) == 1, text
    # Reading the other note is a wrong answer: the answer it states is among the question's distractors.
    non_yesno = [r for r in task.eval_prompts if r.meta["kind"] != "yesno"]
    for row in non_yesno:
        meta = row.meta
        other = next(n for n in meta["notes"] if not gold_score(meta, n).correct)
        misread = [d for d in meta["distractors"] if _words(d) in _words(other)]
        assert misread, (other, meta["distractors"])
        assert gold_score(meta, statement(meta, misread[0])).total == -1.0, (other, misread)
    assert len(non_yesno) == 270


def test_notes_by_hand():
    prime = {"kind": "yesno", "answer": "no",
             "statement": {"yes": "Yes, 143 is a prime number.", "no": "No, 143 is not a prime number."}}
    assert _fact(prime) == "143 is not a prime number."
    assert _fact({"kind": "text", "answer": "Suva", "statement": "The capital of Fiji is {answer}."}) == (
        "The capital of Fiji is Suva.")
    assert _words("12") not in _words("The 12th month is December.")
    assert _words("5") not in _words("7500 milliliters is 7.5 liters.")
    assert _words("7.5") in _words("7500 milliliters is 7.5 liters.")
    assert _words("Buenos Aires") in _words("The capital of Argentina is Buenos Aires.")


def test_sft_is_a_mix_of_concise_and_padded(task):
    styles = Counter(r.meta["style"] for r in task.sft)
    assert set(styles) == {"concise", "padded"}
    assert abs(styles["padded"] / len(task.sft) - SFT_PADDED_SHARE) <= 0.05
    padded = [r.completion for r in task.sft if r.meta["style"] == "padded"]
    concise = [r.completion for r in task.sft if r.meta["style"] == "concise"]
    assert sum(len(c.split()) for c in padded) / len(padded) > 2.5 * sum(
        len(c.split()) for c in concise
    ) / len(concise)


def test_preference_styles_and_pair_types(task):
    styles = Counter(p.meta["rejected_style"] for p in task.preference)
    assert set(styles) == set(REJECTED_STYLES) | {"longer", "off_question"}
    types = Counter(p.meta["pair_type"] for p in task.preference)
    assert set(types) == {"quality", "both_correct", "both_concise", "correct_over_short_wrong", "off_question"}
    # PPO's exploit as a negative: a bare yes/no, only to questions that are not yes/no, judged wrong
    off = [p for p in task.preference if p.meta["pair_type"] == "off_question"]
    assert len(off) >= 0.05 * len(task.preference)
    for p in off:
        assert p.meta["kind"] != "yesno" and p.rejected in OFF_QUESTION_REPLIES
        g = gold_score(p.meta, p.rejected)
        assert (g.unlisted_answer, g.total) == (True, -1.0)
    for p in task.preference:
        assert p.chosen != p.rejected
        if p.meta["pair_type"] == "both_concise":
            assert len(p.rejected.split()) <= 12
    # length must not explain the preferences: a good share of pairs prefer the LONGER (correct) answer
    longer_chosen = sum(len(p.chosen.split()) > len(p.rejected.split()) for p in task.preference)
    assert longer_chosen / len(task.preference) > 0.2
    for p in task.preference:
        if p.meta["pair_type"] == "correct_over_short_wrong":
            assert gold_score(p.meta, p.chosen).correct and not gold_score(p.meta, p.rejected).correct
            assert len(p.chosen.split()) > len(p.rejected.split())


def test_corrupt_styles_have_their_defect(task):
    rng = random.Random(0)
    for row in task.eval_prompts:
        meta = row.meta
        assert gold_score(meta, concise_answer(meta, rng)).correct
        assert not gold_score(meta, corrupt(meta, "wrong", rng)).correct
        hedged = corrupt(meta, "hedging", rng).lower()
        assert any(h in hedged for h in HEDGE_PHRASES)
        padded = corrupt(meta, "padded", rng).lower()
        assert any(f in padded for f in FILLER_PHRASES)
        rep = corrupt(meta, "repetition", rng)
        assert gold_score(meta, rep).repetition >= 0.5
        cut = corrupt(meta, "missing_end", rng)
        assert not cut.rstrip().endswith((".", "!", "?"))
        assert len(corrupt(meta, "verbose", rng).split()) > 40
    yes_no = next(r.meta for r in task.eval_prompts if r.meta["kind"] == "yesno")
    with pytest.raises(ValueError, match="off_question needs"):
        corrupt(yes_no, "off_question", rng)
    with pytest.raises(ValueError, match="unknown rejected style"):
        corrupt(task.eval_prompts[0].meta, "sarcastic", rng)


def test_feedback_rows_label_chosen_and_rejected(task):
    fb = task.feedback()
    assert len(fb) == 2 * len(task.preference)
    assert [r.label for r in fb[:4]] == [True, False, True, False]
    assert fb[0].completion == task.preference[0].chosen and fb[1].completion == task.preference[0].rejected
