"""Record helpers: interleaving rows by a meta field so that every prefix spans the groups."""

from __future__ import annotations

from tether.data.records import PromptRow, interleave_by, user_prompt


def _rows(families: list[str | None]) -> list[PromptRow]:
    return [PromptRow(user_prompt(f"q{i}"), meta={} if f is None else {"family": f}) for i, f in enumerate(families)]


def test_interleave_by_family_round_robin_in_first_seen_order():
    rows = _rows(["a", "a", "a", "b", "b", "c"])
    out = [r.prompt[-1]["content"] for r in interleave_by(rows)]
    assert out == ["q0", "q3", "q5", "q1", "q4", "q2"]  # a b c, a b, a
    assert sorted(out) == sorted(r.prompt[-1]["content"] for r in rows)  # a permutation: nothing lost


def test_rows_without_the_field_keep_their_order_and_empty_input_is_empty():
    rows = _rows([None, None, None])
    assert interleave_by(rows) == rows
    assert interleave_by([]) == []
