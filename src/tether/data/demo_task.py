"""The embedded demo task: short questions answered from the notes in the prompt, with checkable answers
(docs/demo-task.md).

`make_demo_task(seed)` builds, from the tables in `demo_tables` and nothing downloaded, 2,700 distinct
prompts in ten families, puts two notes before each question (its own fact and another question's,
`_with_notes`), and splits them by prompt into four disjoint sets:

| split | rows | what it is for |
|---|---|---|
| `sft` | 1,000 | demonstrations: correct answers, a quarter concise, three quarters padded (as human demonstrators write) |
| `preference` | 800 | pairs: chosen = correct (mostly concise); rejected = padded / hedging / wrong / repetition / verbose / missing_end / longer / off_question |
| `rl_prompts` | 600 | prompts for PPO / best-of-N rollouts |
| `eval_prompts` | 300 | held out, 30 per family; no prompt text is shared with any training split |

Every prompt's `meta` is what `tether.data.gold_judge.gold_score` needs:
`id`, `family`, `kind` ("number" | "text" | "yesno"), `answer` (canonical), `aliases` (accepted forms,
the answer included), `given` (values/names the question itself states; a reply may repeat them),
`distractors` (plausible wrong answers), `vocab` (name of a closed set in `VOCABULARIES` whose other
members count as wrong answers, or null), `statement` (the one-sentence answer with `{answer}` in it;
for yes/no a dict {"yes": ..., "no": ...}) and `explain` (a short true supporting sentence).
Everything is pure Python and deterministic in the seed.

The question families are in `demo_questions` (sampled up to a quota) and `demo_table_questions` (one or
two per table row), the replies (`statement`, `concise_answer`, `padded_answer`, `longer_answer`, `corrupt`,
`REJECTED_STYLES`) in `demo_replies`; this module draws the pool, splits it and pairs the replies.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tether.data.demo_questions import _arithmetic, _cap, _ordering, _unit_conversion, _yes_no

# The replies live in demo_replies.py; they are importable from here too (`tether.data.demo_task.corrupt`).
from tether.data.demo_replies import (
    OFF_QUESTION_REPLIES,  # noqa: F401  (re-exported)
    REJECTED_STYLES,
    _off_question_is_wrong,
    _short,
    _wrong_value,
    concise_answer,
    corrupt,
    longer_answer,
    padded_answer,
    statement,
)
from tether.data.demo_table_questions import _antonyms, _capitals, _counting, _definitions, _elements, _plurals
from tether.data.records import FeedbackRow, PreferencePair, PromptRow, SFTExample, prompt_text, user_prompt
from tether.errors import DataError

FAMILIES: tuple[str, ...] = (
    "arithmetic",
    "unit_conversion",
    "capitals",
    "elements",
    "antonyms",
    "plurals",
    "definitions",
    "counting",
    "ordering",
    "yes_no",
)
# Prompts per family (sum = 2,700 = 1,000 + 800 + 600 + 300).
FAMILY_QUOTAS: dict[str, int] = {
    "arithmetic": 640,
    "unit_conversion": 420,
    "capitals": 224,
    "elements": 90,
    "antonyms": 88,
    "plurals": 67,
    "definitions": 65,
    "counting": 63,
    "ordering": 250,
    "yes_no": 793,
}
SPLIT_SIZES: dict[str, int] = {"sft": 1000, "preference": 800, "rl_prompts": 600, "eval_prompts": 300}
EVAL_PER_FAMILY = 30

SYSTEM_PROMPT = "You are a helpful assistant."
"""Every demo prompt's system turn. Without one, SmolLM2's chat template inserts its own default
("You are a helpful AI assistant named SmolLM, trained by Hugging Face"): 39 prompt tokens on average against
29 with this one, and the prompt is most of each training sequence. Greedy on 100 held-out prompts the base
model scores about the same with it (docs/demo-task.md, "Prompt format")."""
TASK_VERSION = 5
"""Bumped when the task's rows change for the same seed (2: the system turn above; 3: the off-question preference
pairs, `_pair`; 4: the notes in each prompt, `_with_notes`, and three padded demonstrations in four,
`SFT_PADDED_SHARE`; 5: a yes/no question's other note is never its own, which version 4 allowed in 4 of 2,700
prompts); the pipeline regenerates a data dir written by another version."""
SFT_PADDED_SHARE = 0.75
"""The share of SFT demonstrations that are padded (correct, wrapped in chat). Most people who write
demonstrations write the chatty kind, so the SFT policy learns to pad its answers; that is the habit the
preference stages must remove (docs/demo-task.md, "Why most SFT demonstrations are padded")."""


# --------------------------------------------------------------------------------------------------
# The question pool: each family's questions, shuffled and cut to its quota.
# --------------------------------------------------------------------------------------------------


def _question_pool(rng: random.Random) -> dict[str, list[dict]]:
    builders: dict[str, Callable[[], list[dict]]] = {
        "arithmetic": lambda: _arithmetic(rng, FAMILY_QUOTAS["arithmetic"]),
        "unit_conversion": lambda: _unit_conversion(rng, FAMILY_QUOTAS["unit_conversion"]),
        "capitals": lambda: _capitals(rng),
        "elements": lambda: _elements(rng),
        "antonyms": lambda: _antonyms(rng),
        "plurals": lambda: _plurals(rng),
        "definitions": lambda: _definitions(rng),
        "counting": lambda: _counting(rng),
        "ordering": lambda: _ordering(rng, FAMILY_QUOTAS["ordering"]),
        "yes_no": lambda: _yes_no(rng, FAMILY_QUOTAS["yes_no"] + 60),
    }
    pool: dict[str, list[dict]] = {}
    for fam in FAMILIES:
        qs = builders[fam]()
        rng.shuffle(qs)
        if len(qs) < FAMILY_QUOTAS[fam]:
            raise DataError(
                f"demo task: family {fam} has {len(qs)} questions, fewer than its quota {FAMILY_QUOTAS[fam]}"
            )
        pool[fam] = qs[: FAMILY_QUOTAS[fam]]
    return pool


# --------------------------------------------------------------------------------------------------
# The task.
# --------------------------------------------------------------------------------------------------


@dataclass
class DemoTask:
    """The four splits of the demo task (see the module docstring) and the seed that made them."""

    seed: int
    sft: list[SFTExample] = field(default_factory=list)
    preference: list[PreferencePair] = field(default_factory=list)
    rl_prompts: list[PromptRow] = field(default_factory=list)
    eval_prompts: list[PromptRow] = field(default_factory=list)

    def feedback(self) -> list[FeedbackRow]:
        """Unpaired binary feedback for KTO: each pair's chosen (desirable) and rejected (undesirable)."""
        return list(iter_feedback(self.preference))

    def manifest(self) -> dict[str, Any]:
        splits = {
            "sft": self.sft,
            "preference": self.preference,
            "rl_prompts": self.rl_prompts,
            "eval_prompts": self.eval_prompts,
        }
        return {
            "task": "demo",
            "version": TASK_VERSION,
            "seed": self.seed,
            "counts": {k: len(v) for k, v in splits.items()} | {"feedback": 2 * len(self.preference)},
            "families": {
                k: dict(sorted(Counter(r.meta["family"] for r in v).items())) for k, v in splits.items()
            },
            "sft_styles": dict(sorted(Counter(r.meta["style"] for r in self.sft).items())),
            "rejected_styles": dict(
                sorted(Counter(r.meta["rejected_style"] for r in self.preference).items())
            ),
            "distinct_prompts": len({prompt_text(r.prompt) for v in splits.values() for r in v}),
        }

    def write(self, out_dir: str | Path) -> dict[str, Any]:
        """Write sft/preference/rl_prompts/eval_prompts/feedback .jsonl and manifest.json; returns the manifest."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "sft.jsonl": self.sft,
            "preference.jsonl": self.preference,
            "rl_prompts.jsonl": self.rl_prompts,
            "eval_prompts.jsonl": self.eval_prompts,
            "feedback.jsonl": self.feedback(),
        }
        for name, rows in files.items():
            with open(out / name, "w", encoding="utf-8", newline="\n") as fh:
                fh.writelines(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in rows)
        manifest = self.manifest()
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return manifest


def iter_feedback(pairs: list[PreferencePair]):
    """KTO rows from preference pairs: chosen -> label True, rejected -> label False."""
    for p in pairs:
        yield FeedbackRow(p.prompt, p.chosen, True, dict(p.meta) | {"feedback": "chosen"})
        yield FeedbackRow(p.prompt, p.rejected, False, dict(p.meta) | {"feedback": "rejected"})


def _pair(meta: dict[str, Any], rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    r = rng.random()
    if r >= 0.75:
        # Correctness beats length: a correct but padded/longer answer is preferred to a concise wrong one.
        # Without these pairs, "shorter wins" explains every templated pair and a reward model learns length.
        chosen = padded_answer(meta, rng) if r < 0.875 else longer_answer(meta, rng)
        rejected = statement(meta, _wrong_value(meta, rng))
        return chosen, rejected, {"pair_type": "correct_over_short_wrong", "rejected_style": "wrong"}
    if r < 0.15:
        pair_type, style = "both_correct", "longer"
        rejected = corrupt(meta, "longer", rng)
    elif r < 0.30:
        pair_type, style = "both_concise", "wrong"
        rejected = (
            _short(meta, _wrong_value(meta, rng))
            if rng.random() < 0.5
            else statement(meta, _wrong_value(meta, rng))
        )
    elif r < 0.40 and _off_question_is_wrong(meta):
        # A bare yes/no to a question that asked for a value or a name (OFF_QUESTION_REPLIES): PPO's exploit.
        pair_type, style = "off_question", "off_question"
        rejected = corrupt(meta, style, rng)
    else:
        style = rng.choice(REJECTED_STYLES)
        pair_type = "both_correct" if style == "padded" else "quality"
        rejected = corrupt(meta, style, rng)
    return concise_answer(meta, rng), rejected, {"pair_type": pair_type, "rejected_style": style}


def _fact(meta: dict[str, Any]) -> str:
    """The question's answer as a sentence of notes: the statement ("The capital of Fiji is Suva."), or for a
    yes/no question the true claim without its yes or no ("143 is not a prime number.")."""
    text = statement(meta)
    return _cap(text.split(", ", 1)[1]) if meta["kind"] == "yesno" else text


def _words(text: str) -> str:
    """The text's words and numbers ("7.5" and "5th" are one each), space-separated with a space at each end,
    for whole-word containment tests: `_words("Lima") in _words("The capital of Peru is Lima.")`."""
    return " " + " ".join(re.findall(r"\d+(?:\.\d+)?\w*|\w+", text)) + " "


def _with_notes(qs: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Each question with notes before it: its own fact and the fact of another question of the same family
    in the same split, in random order ("Notes: The capital of Peru is Lima. The capital of Fiji is Suva."
    then the question). The other fact's answer joins the question's distractors, so a reply that reads the
    wrong note is a wrong answer."""
    facts_of = [_fact(q["meta"]) for q in qs]
    fact_words = [_words(f) for f in facts_of]
    answer_words = [_words(q["meta"]["answer"]) for q in qs]
    by_family: dict[str, list[int]] = {}
    for i, q in enumerate(qs):
        by_family.setdefault(q["meta"]["family"], []).append(i)

    def unrelated(i: int, j: int) -> bool:
        """Another question whose note does not answer this one's, nor this note that one's (yes/no notes
        never state the yes or no)."""
        return i != j and (qs[i]["meta"]["kind"] == "yesno" or not (answer_words[i] in fact_words[j]
                                                                    or answer_words[j] in fact_words[i]))

    out = []
    for i, q in enumerate(qs):
        meta, fact = q["meta"], facts_of[i]
        others = [j for j in by_family[meta["family"]] if unrelated(i, j)]
        j = rng.choice(others or [k for k in range(len(qs)) if unrelated(i, k)])
        other = qs[j]["meta"]
        facts = [fact, facts_of[j]]
        rng.shuffle(facts)
        distractors = list(meta["distractors"])
        if meta["kind"] != "yesno" and other["answer"] not in distractors + meta["aliases"]:
            distractors.append(other["answer"])
        text = f"Notes: {' '.join(facts)}\n{q['text']}"
        out.append({"text": text, "meta": meta | {"distractors": distractors, "notes": facts}})
    return out


def make_demo_task(seed: int = 0) -> DemoTask:
    """Build the demo task deterministically from `seed` (see the module docstring for the splits)."""
    rng = random.Random(seed)
    pool = _question_pool(rng)
    eval_qs, rest = [], []
    for fam in FAMILIES:
        eval_qs += pool[fam][:EVAL_PER_FAMILY]
        rest += pool[fam][EVAL_PER_FAMILY:]
    rng.shuffle(rest)
    n_sft, n_pref = SPLIT_SIZES["sft"], SPLIT_SIZES["preference"]
    sft_qs, pref_qs, rl_qs = rest[:n_sft], rest[n_sft : n_sft + n_pref], rest[n_sft + n_pref :]
    sft_qs, pref_qs, rl_qs, eval_qs = (_with_notes(qs, rng) for qs in (sft_qs, pref_qs, rl_qs, eval_qs))

    texts = {
        name: {q["text"] for q in qs}
        for name, qs in (("sft", sft_qs), ("preference", pref_qs), ("rl", rl_qs), ("eval", eval_qs))
    }
    n_all = sum(len(qs) for qs in (sft_qs, pref_qs, rl_qs, eval_qs))
    if len(set().union(*texts.values())) != n_all:
        raise DataError("demo task: a prompt text occurs twice (within or across splits)")
    if texts["eval"] & (texts["sft"] | texts["preference"] | texts["rl"]):
        raise DataError("demo task: an eval prompt also occurs in a training split")

    def prompt(q: dict[str, Any]):
        return user_prompt(q["text"], system=SYSTEM_PROMPT)

    task = DemoTask(seed=seed)
    for q in sft_qs:
        padded = rng.random() < SFT_PADDED_SHARE
        completion = padded_answer(q["meta"], rng) if padded else concise_answer(q["meta"], rng)
        task.sft.append(
            SFTExample(
                prompt(q), completion, q["meta"] | {"style": "padded" if padded else "concise"}
            )
        )
    for q in pref_qs:
        chosen, rejected, info = _pair(q["meta"], rng)
        task.preference.append(
            PreferencePair(prompt(q), chosen, rejected, None, q["meta"] | info)
        )
    task.rl_prompts = [PromptRow(prompt(q), dict(q["meta"])) for q in rl_qs]
    task.eval_prompts = [PromptRow(prompt(q), dict(q["meta"])) for q in eval_qs]
    return task
