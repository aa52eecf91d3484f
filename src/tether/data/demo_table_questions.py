"""Demo-task question families with one or two questions per row of a `demo_tables` table: capitals,
elements, antonyms, plurals, definitions and counting (the record and helpers are in `demo_questions`).
"""

from __future__ import annotations

import random

from tether.data.demo_questions import _cap, _num_aliases, _number_distractors, _q
from tether.data.demo_tables import (
    ANTONYMS,
    CAPITALS,
    CONTAINER_FACTS,
    COUNT_FACTS,
    ELEMENT_NAME_ALIASES,
    ELEMENTS,
    GLOSSARY,
    PLURALS,
    VOCABULARIES,
)


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
