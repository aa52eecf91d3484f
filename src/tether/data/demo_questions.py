"""Demo-task questions: the record each question is (`_q`), the helpers shared by the question and reply
modules, and the families that draw questions at random until their quota is met (arithmetic,
unit_conversion, ordering, yes_no). The families with one or two questions per table row are in
`demo_table_questions`; `demo_task` builds the pool from both (see its docstring for the meta keys).
"""

from __future__ import annotations

import random
from typing import Any

from tether.data.demo_tables import CAPITALS, DAYS, ELEMENTS, MONTHS, ORDINALS, UNITS


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
