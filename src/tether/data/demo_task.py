"""The embedded demo task: short factual questions with checkable answers (docs/demo-task.md).

`make_demo_task(seed)` builds, from tables this module owns and nothing downloaded, 2,700 distinct
prompts in ten families and splits them by prompt into four disjoint sets:

| split | rows | what it is for |
|---|---|---|
| `sft` | 1,000 | demonstrations: correct answers, half concise, half padded (as human demonstrators write) |
| `preference` | 800 | pairs: chosen = concise and correct; rejected = padded / hedging / wrong / repetition / verbose / missing_end / longer |
| `rl_prompts` | 600 | prompts for PPO / best-of-N rollouts |
| `eval_prompts` | 300 | held out, 30 per family; no prompt text is shared with any training split |

Every prompt's `meta` is what `tether.data.gold_judge.gold_score` needs:
`id`, `family`, `kind` ("number" | "text" | "yesno"), `answer` (canonical), `aliases` (accepted forms,
the answer included), `given` (values/names the question itself states; a reply may repeat them),
`distractors` (plausible wrong answers), `vocab` (name of a closed set in `VOCABULARIES` whose other
members count as wrong answers, or null), `statement` (the one-sentence answer with `{answer}` in it;
for yes/no a dict {"yes": ..., "no": ...}) and `explain` (a short true supporting sentence).
Everything is pure Python and deterministic in the seed.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tether.data.demo_tables import (
    ANTONYMS,
    ASIDES,
    CAPITALS,
    CLOSERS,
    CONTAINER_FACTS,
    COUNT_FACTS,
    DAYS,
    ELEMENT_NAME_ALIASES,
    ELEMENTS,
    GLOSSARY,
    MONTHS,
    OPENERS,
    ORDINALS,
    PLURALS,
    UNITS,
    VERBOSE_FLUFF,
    VOCABULARIES,
)
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
TASK_VERSION = 2
"""Bumped when the task's rows change for the same seed (2: the system turn above); the pipeline regenerates
a data dir written by another version."""

REJECTED_STYLES: tuple[str, ...] = ("padded", "hedging", "wrong", "repetition", "verbose", "missing_end")
"""What `corrupt` can produce; preference pairs also use "longer" (correct, no filler, just more words)."""


# --------------------------------------------------------------------------------------------------
# Questions.
# --------------------------------------------------------------------------------------------------


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _num_aliases(x: float) -> list[str]:
    s = _fmt_num(x)
    out = [s]
    if float(x).is_integer() and abs(x) >= 1000:
        out.append(f"{int(x):,}")
    return out


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _q(
    family: str,
    key: str,
    text: str,
    kind: str,
    answer: str,
    aliases: list[str],
    statement: Any,
    explain: str,
    given: list[str],
    distractors: list[str],
    vocab: str | None = None,
) -> dict[str, Any]:
    """One question: the prompt text and the meta the judge and the generators need."""
    al = [answer] + [a for a in aliases if a != answer]
    return {
        "text": text,
        "meta": {
            "id": f"{family}/{key}",
            "family": family,
            "kind": kind,
            "answer": answer,
            "aliases": al,
            "given": given,
            "distractors": distractors,
            "vocab": vocab,
            "statement": statement,
            "explain": explain,
        },
    }


def _number_distractors(
    answer: float, given: list[str], rng: random.Random, deltas=(-10, -2, -1, 1, 2, 10)
) -> list[str]:
    blocked = {float(g) for g in given} | {float(answer)}
    out: list[str] = []
    for d in rng.sample(list(deltas), len(deltas)):
        w = answer + d
        if w > 0 and w not in blocked and _fmt_num(w) not in out:
            out.append(_fmt_num(w))
        if len(out) == 2:
            break
    return out


def _arithmetic(rng: random.Random, n: int) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        op = rng.choices(["+", "-", "*"], weights=[4, 3, 3])[0]
        if op == "+":
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            ans = a + b
        elif op == "-":
            a = rng.randint(10, 99)
            b = rng.randint(1, a - 1)
            ans = a - b
        else:
            a, b = rng.randint(2, 12), rng.randint(2, 25)
            ans = a * b
        if (op, a, b) in seen:
            continue
        seen.add((op, a, b))
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        sym = {"+": "+", "-": "-", "*": "×"}[op]
        text = rng.choice(
            [
                f"What is {a} {sym} {b}?",
                f"What is {a} {word} {b}?",
                f"Calculate {a} {sym} {b}.",
                f"Compute {a} {word} {b}.",
                f"How much is {a} {word} {b}?",
            ]
        )
        explain = {
            "+": f"Adding {b} to {a} gives {ans}.",
            "-": f"Taking {b} away from {a} leaves {ans}.",
            "*": f"Multiplying {a} by {b} gives {ans}.",
        }[op]
        given = [str(a), str(b)]
        out.append(
            _q(
                "arithmetic",
                f"{a}{op}{b}",
                text,
                "number",
                str(ans),
                [],
                f"{a} {sym} {b} = {{answer}}.",
                explain,
                given,
                _number_distractors(ans, given, rng),
            )
        )
    return out


def _unit_conversion(rng: random.Random, n: int) -> list[dict]:
    out, seen = [], set()
    while len(out) < n:
        i = rng.randrange(len(UNITS))
        fs, fp, _, tp, f = UNITS[i]
        reverse = rng.random() < 0.35
        v = rng.choice([rng.randint(2, 30), rng.randint(2, 30), rng.randint(2, 9) + 0.5])
        if (i, reverse, v) in seen:
            continue
        seen.add((i, reverse, v))
        if not reverse:  # v from-units -> to-units
            q_val, ans, q_unit, a_unit = v, v * f, fp, tp
            explain = f"Each {fs} is {_fmt_num(f)} {tp}, so multiply {_fmt_num(v)} by {_fmt_num(f)}."
        else:  # v*f to-units -> from-units
            q_val, ans, q_unit, a_unit = v * f, v, tp, fp
            explain = (
                f"There are {_fmt_num(f)} {tp} in each {fs}, so divide {_fmt_num(q_val)} by {_fmt_num(f)}."
            )
        qv = _fmt_num(q_val)
        shown = rng.choice(_num_aliases(q_val))
        text = rng.choice(
            [
                f"How many {a_unit} are in {shown} {q_unit}?",
                f"Convert {shown} {q_unit} to {a_unit}.",
                f"How many {a_unit} is {shown} {q_unit}?",
                f"What is {shown} {q_unit} in {a_unit}?",
            ]
        )
        given = [qv, "1", _fmt_num(f)]
        out.append(
            _q(
                "unit_conversion",
                f"{qv}{q_unit}->{a_unit}",
                text,
                "number",
                _fmt_num(ans),
                _num_aliases(ans),
                f"{shown} {q_unit} is {{answer}} {a_unit}.",
                explain,
                given,
                _number_distractors(ans, given, rng, deltas=(ans * 9, -ans * 0.9, f, -1, 1, 10)),
            )
        )
    return out


def _capitals(rng: random.Random) -> list[dict]:
    out = []
    caps = VOCABULARIES["capitals"]
    countries = VOCABULARIES["countries"]
    for country, (capital, cap_al, ctry_al) in CAPITALS.items():
        bare = country.removeprefix("the ")
        wrong = [c for c in rng.sample(caps, 3) if c != capital][:2]
        text = rng.choice(
            [
                f"What is the capital of {country}?",
                f"What is the capital city of {country}?",
                f"Name the capital of {country}.",
                f"Which city is the capital of {country}?",
            ]
        )
        out.append(
            _q(
                "capitals",
                f"capital-of-{bare}",
                text,
                "text",
                capital,
                list(cap_al),
                f"The capital of {country} is {{answer}}.",
                f"{capital} is where the national government of {country} sits.",
                [bare, *list(ctry_al)],
                wrong,
                "capitals",
            )
        )
        wrong = [c for c in rng.sample(countries, 3) if c != bare][:2]
        text = rng.choice(
            [
                f"{capital} is the capital of which country?",
                f"Which country has {capital} as its capital?",
                f"Of which country is {capital} the capital?",
            ]
        )
        out.append(
            _q(
                "capitals",
                f"country-of-{capital}",
                text,
                "text",
                bare,
                list(ctry_al),
                f"{capital} is the capital of {{answer}}.",
                f"The national government of {country} sits in {capital}.",
                [capital, *list(cap_al)],
                wrong,
                "countries",
            )
        )
    return out


def _elements(rng: random.Random) -> list[dict]:
    out = []
    names = list(ELEMENTS)
    for name, sym in ELEMENTS.items():
        al = list(ELEMENT_NAME_ALIASES.get(name, ()))
        others = [ELEMENTS[o] for o in rng.sample(names, 3) if o != name][:2]
        text = rng.choice(
            [
                f"What is the chemical symbol for {name}?",
                f"What is the symbol of the element {name}?",
                f"Which chemical symbol stands for {name}?",
            ]
        )
        out.append(
            _q(
                "elements",
                f"symbol-of-{name}",
                text,
                "text",
                sym,
                [],
                f"The chemical symbol for {name} is {{answer}}.",
                f"That is the symbol used for {name} on the periodic table.",
                [name, *al],
                others,
                "elements",
            )
        )
        others = [o for o in rng.sample(names, 3) if o != name][:2]
        text = rng.choice(
            [
                f"Which element has the chemical symbol {sym}?",
                f"What element does the symbol {sym} stand for?",
                f"Name the element with the symbol {sym}.",
            ]
        )
        out.append(
            _q(
                "elements",
                f"element-of-{sym}",
                text,
                "text",
                name,
                al,
                f"The element with the symbol {sym} is {{answer}}.",
                f"On the periodic table, {name} is written as {sym}.",
                [sym],
                others,
                "elements",
            )
        )
    return out


def _antonyms(rng: random.Random) -> list[dict]:
    out = []
    for word, opp, wrong in ANTONYMS:
        text = rng.choice(
            [
                f"What is the opposite of {word}?",
                f'What is the opposite of "{word}"?',
                f"Give the opposite of the word {word}.",
                f"What word means the opposite of {word}?",
            ]
        )
        out.append(
            _q(
                "antonyms",
                word,
                text,
                "text",
                opp[0],
                list(opp[1:]),
                f"The opposite of {word} is {{answer}}.",
                f"{_cap(word)} and {opp[0]} have opposite meanings.",
                [word],
                [wrong],
            )
        )
    return out


def _plurals(rng: random.Random) -> list[dict]:
    out = []
    for word, pl, wrong in PLURALS:
        text = rng.choice(
            [
                f"What is the plural of {word}?",
                f'What is the plural form of "{word}"?',
                f"How do you write {word} in the plural?",
                f"What is the plural of the word {word}?",
            ]
        )
        out.append(
            _q(
                "plurals",
                word,
                text,
                "text",
                pl[0],
                list(pl[1:]),
                f"The plural of {word} is {{answer}}.",
                f"You say {pl[0]} when you talk about more than a single {word}."
                if pl[0] != word
                else f"The word {word} stays the same in the plural.",
                [word],
                [wrong],
            )
        )
    return out


def _definitions(rng: random.Random) -> list[dict]:
    out = []
    for desc, art, ans, al, wrong in GLOSSARY:
        text = rng.choice(
            [f"What do you call {desc}?", f"What is the word for {desc}?", f"What is {desc} called?"]
        )
        a = f"{art} " if art else ""
        out.append(
            _q(
                "definitions",
                ans + "/" + desc.split()[-1],
                text,
                "text",
                ans,
                list(al),
                f"{_cap(desc)} is called {a}{{answer}}.",
                f"That is the usual word for {desc}.",
                [],
                [wrong],
            )
        )
    return out


def _counting(rng: random.Random) -> list[dict]:
    out = []
    for subj, subj_pl, thing, n in COUNT_FACTS:
        text = rng.choice(
            [
                f"How many {thing} does {subj} have?",
                f"How many {thing} do {subj_pl} have?",
                f"Tell me how many {thing} {subj} has.",
            ]
        )
        out.append(
            _q(
                "counting",
                f"{thing}-of-{subj}",
                text,
                "number",
                str(n),
                [],
                f"{_cap(subj)} has {{answer}} {thing}.",
                f"You can count them on any picture of {subj}.",
                [],
                _number_distractors(n, [], rng, (-2, -1, 1, 2)),
            )
        )
    for thing, container, n in CONTAINER_FACTS:
        text = rng.choice(
            [
                f"How many {thing} are in {container}?",
                f"How many {thing} are there in {container}?",
                f"Tell me how many {thing} there are in {container}.",
            ]
        )
        out.append(
            _q(
                "counting",
                f"{thing}-in-{container}",
                text,
                "number",
                str(n),
                _num_aliases(n),
                f"There are {{answer}} {thing} in {container}.",
                "This is a standard fact worth knowing.",
                [],
                _number_distractors(n, [], rng, (-2, -1, 1, 2, 10)),
            )
        )
    return out


def _ordering(rng: random.Random, n: int) -> list[dict]:
    out = []
    for seq, kind in ((DAYS, "day"), (MONTHS, "month")):
        for i, x in enumerate(seq):
            nxt, prv = seq[(i + 1) % len(seq)], seq[i - 1]
            text = rng.choice(
                [
                    f"What {kind} comes after {x}?",
                    f"Which {kind} follows {x}?",
                    f"What is the {kind} after {x}?",
                ]
            )
            out.append(
                _q(
                    "ordering",
                    f"{kind}-after-{x}",
                    text,
                    "text",
                    nxt,
                    [],
                    f"The {kind} after {x} is {{answer}}.",
                    f"The {kind}s always come in the same order.",
                    [x],
                    [seq[(i + 2) % len(seq)]],
                    "calendar",
                )
            )
            text = rng.choice(
                [
                    f"What {kind} comes before {x}?",
                    f"Which {kind} comes just before {x}?",
                    f"What is the {kind} before {x}?",
                ]
            )
            out.append(
                _q(
                    "ordering",
                    f"{kind}-before-{x}",
                    text,
                    "text",
                    prv,
                    [],
                    f"The {kind} before {x} is {{answer}}.",
                    f"The {kind}s always come in the same order.",
                    [x],
                    [seq[i - 2]],
                    "calendar",
                )
            )
    for i, m in enumerate(MONTHS):
        text = rng.choice(
            [
                f"What is the {ORDINALS[i]} month of the year?",
                f"Which month is the {ORDINALS[i]} month of the year?",
            ]
        )
        out.append(
            _q(
                "ordering",
                f"month-{i + 1}",
                text,
                "text",
                m,
                [],
                f"The {ORDINALS[i]} month of the year is {{answer}}.",
                "The months always come in the same order.",
                [],
                [MONTHS[(i + 1) % 12]],
                "calendar",
            )
        )
    seen = set()
    while len(out) < n:
        sub = rng.choice(["after", "before", "between"])
        k = rng.randint(2, 999)
        if (sub, k) in seen:
            continue
        seen.add((sub, k))
        if sub == "after":
            text = rng.choice([f"What number comes after {k}?", f"What is the next number after {k}?"])
            ans, st, given = k + 1, f"The number after {k} is {{answer}}.", [str(k)]
        elif sub == "before":
            text = rng.choice([f"What number comes before {k}?", f"What number comes just before {k}?"])
            ans, st, given = k - 1, f"The number before {k} is {{answer}}.", [str(k)]
        else:
            text = rng.choice(
                [
                    f"What number is between {k - 1} and {k + 1}?",
                    f"Which number comes between {k - 1} and {k + 1}?",
                ]
            )
            ans, st, given = (
                k,
                f"The number between {k - 1} and {k + 1} is {{answer}}.",
                [str(k - 1), str(k + 1)],
            )
        out.append(
            _q(
                "ordering",
                f"number-{sub}-{k}",
                text,
                "number",
                str(ans),
                [],
                st,
                "Whole numbers go up in steps of a single unit.",
                given,
                _number_distractors(ans, given, rng, (-2, 2, 10, -10)),
            )
        )
    return out


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def _yes_no(rng: random.Random, n: int) -> list[dict]:
    out: list[dict] = []

    def add(key: str, text: str, truth: bool, yes: str, no: str, explain: str) -> None:
        out.append(
            _q(
                "yes_no",
                key,
                text,
                "yesno",
                "yes" if truth else "no",
                [],
                {"yes": yes, "no": no},
                explain,
                [],
                [],
            )
        )

    for k in range(2, 200):
        p = _is_prime(k)
        d = next((d for d in range(2, k) if k % d == 0), None)
        text = rng.choice([f"Is {k} a prime number?", f"Is {k} prime?", f"Is the number {k} prime?"])
        add(
            f"prime-{k}",
            text,
            p,
            f"Yes, {k} is a prime number.",
            f"No, {k} is not a prime number.",
            f"{k} can be divided evenly only by itself and 1." if p else f"{k} can be divided evenly by {d}.",
        )
    for k in rng.sample(range(2, 1000), 150):
        parity = rng.choice(["even", "odd"])
        truth = (k % 2 == 0) == (parity == "even")
        add(
            f"{parity}-{k}",
            rng.choice([f"Is {k} an {parity} number?", f"Is {k} {parity}?"]),
            truth,
            f"Yes, {k} is an {parity} number.",
            f"No, {k} is not an {parity} number.",
            f"{k} is {'even' if k % 2 == 0 else 'odd'}.",
        )
    countries = list(CAPITALS)
    for country in countries:
        capital = CAPITALS[country][0]
        bare = country.removeprefix("the ")
        add(
            f"capital-{bare}-{capital}",
            f"Is {capital} the capital of {country}?",
            True,
            f"Yes, {capital} is the capital of {country}.",
            f"No, {capital} is not the capital of {country}.",
            f"{capital} is where the national government of {country} sits.",
        )
        other = rng.choice([c for c in countries if c != country])
        oc = CAPITALS[other][0]
        add(
            f"capital-{bare}-{oc}",
            f"Is {oc} the capital of {country}?",
            False,
            f"Yes, {oc} is the capital of {country}.",
            f"No, {oc} is not the capital of {country}.",
            f"The capital of {country} is {capital}.",
        )
    names = list(ELEMENTS)
    for name, sym in ELEMENTS.items():
        osym = ELEMENTS[rng.choice([o for o in names if o != name])]
        for s in (sym, osym):
            add(
                f"symbol-{name}-{s}",
                f"Is {s} the chemical symbol for {name}?",
                s == sym,
                f"Yes, {s} is the chemical symbol for {name}.",
                f"No, {s} is not the chemical symbol for {name}.",
                f"The chemical symbol for {name} is {sym}.",
            )
    seen = set()
    while len(out) < n:
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        rel = rng.choice(["greater", "less"])
        if a == b or (a, b, rel) in seen:
            continue
        seen.add((a, b, rel))
        truth = a > b if rel == "greater" else a < b
        add(
            f"{a}-{rel}-{b}",
            f"Is {a} {rel} than {b}?",
            truth,
            f"Yes, {a} is {rel} than {b}.",
            f"No, {a} is not {rel} than {b}.",
            f"{a} is {'greater' if a > b else 'less'} than {b}.",
        )
    return out


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
# Replies: correct demonstrations and the rejected styles.
# --------------------------------------------------------------------------------------------------


def statement(meta: dict[str, Any], value: str | None = None) -> str:
    """The one-sentence answer, with `value` (default: the correct answer) in it."""
    value = meta["answer"] if value is None else value
    st = meta["statement"]
    if isinstance(st, dict):
        return st[value]
    return _cap(st.format(answer=value))


def _wrong_value(meta: dict[str, Any], rng: random.Random) -> str:
    if meta["kind"] == "yesno":
        return "no" if meta["answer"] == "yes" else "yes"
    if meta["distractors"]:
        return rng.choice(meta["distractors"])
    vocab = [v for v in VOCABULARIES.get(meta.get("vocab") or "", ()) if v not in meta["aliases"]]
    return rng.choice(vocab)


def _short(meta: dict[str, Any], value: str) -> str:
    return f"{_cap(value) if meta['kind'] != 'number' else value}."


def concise_answer(meta: dict[str, Any], rng: random.Random) -> str:
    """A short, direct, correct reply ("Paris." / "The capital of France is Paris.")."""
    ans = meta["answer"]
    if meta["kind"] == "number":
        ans = rng.choice(meta["aliases"][:2] if len(meta["aliases"]) > 1 else [ans])
    forms = [_short(meta, ans), statement(meta, ans if meta["kind"] != "yesno" else None)]
    if meta["kind"] == "yesno":
        forms.append("Yes, it is." if ans == "yes" else "No, it isn't.")
    else:
        forms.append(f"The answer is {ans}.")
    return rng.choices(forms, weights=[3, 5, 2])[0]


def padded_answer(meta: dict[str, Any], rng: random.Random) -> str:
    """A correct reply wrapped in chatty padding: opener, the answer, extra sentences, a closing line."""
    parts = []
    has_opener = rng.random() < 0.75
    if has_opener:
        parts.append(rng.choice(OPENERS))
    parts.append(statement(meta))
    parts.append(meta["explain"])
    if rng.random() < 0.5:
        parts.append(rng.choice(ASIDES))
    if not has_opener or rng.random() < 0.7:
        parts.append(rng.choice(CLOSERS))
    return " ".join(parts)


def longer_answer(meta: dict[str, Any], rng: random.Random) -> str:
    """Correct, no filler phrases, but more words than the question needs."""
    return " ".join([statement(meta), meta["explain"], rng.choice(ASIDES)])


def corrupt(prompt_meta: dict[str, Any], style: str, rng: random.Random) -> str:
    """A dispreferred reply in one of `REJECTED_STYLES` (or "longer") for the question in `prompt_meta`."""
    meta = prompt_meta
    ans = meta["answer"]
    if style == "padded":
        return padded_answer(meta, rng)
    if style == "longer":
        return longer_answer(meta, rng)
    if style == "wrong":
        w = _wrong_value(meta, rng)
        return rng.choice(
            [statement(meta, w), _short(meta, w), statement(meta, w) + " " + rng.choice(ASIDES)]
        )
    if style == "hedging":
        if meta["kind"] == "yesno":
            options = [
                f"I think the answer is probably {ans}, but I'm not sure.",
                f"Hmm, maybe {ans}? I'm not certain about this one.",
                f"If I remember correctly, {statement(meta)[0].lower() + statement(meta)[1:]} But I could be wrong.",
                "It could be yes or it could be no. I'm not sure.",
            ]
        else:
            w = _wrong_value(meta, rng)
            options = [
                f"I think it might be {ans}, but I'm not sure.",
                f"If I remember correctly, {statement(meta)[0].lower() + statement(meta)[1:]} But I could be wrong.",
                f"Perhaps {ans}? I'm not completely certain.",
                f"It could be {ans}, or maybe {w}. I'm not sure.",
                f"I believe it's probably {w}, but I'm not certain.",
            ]
        return rng.choice(options)
    if style == "repetition":
        base = rng.choice([statement(meta), f"The answer is {ans}.", _short(meta, ans)])
        return " ".join([base] * rng.randint(3, 5))
    if style == "verbose":
        fluff = rng.sample(VERBOSE_FLUFF, 3)
        st = statement(meta)
        return " ".join(
            [fluff[0], fluff[1], st, meta["explain"], fluff[2], "In summary, " + st[0].lower() + st[1:]]
        )
    if style == "missing_end":
        text = rng.choice([padded_answer(meta, rng), corrupt(meta, "verbose", rng), longer_answer(meta, rng)])
        words = text.split(" ")
        cuts = [k for k in range(3, len(words)) if not words[k - 1].endswith((".", "!", "?"))]
        k = rng.choice(cuts)
        return " ".join(words[:k]).rstrip(",;:")
    raise ValueError(f"unknown rejected style {style!r}; expected one of {(*REJECTED_STYLES, 'longer')}")


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
    else:
        style = rng.choice(REJECTED_STYLES)
        pair_type = "both_correct" if style == "padded" else "quality"
        rejected = corrupt(meta, style, rng)
    return concise_answer(meta, rng), rejected, {"pair_type": pair_type, "rejected_style": style}


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
        padded = rng.random() < 0.5
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
