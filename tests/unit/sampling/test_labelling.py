import json

import pytest
import torch

from tether.data.records import PromptRow
from tether.errors import DataError
from tether.sampling.generate import Generation
from tether.sampling.labelling import export_candidates, pairs_from_choices, pairs_from_scores, penalise_truncated


def gen(text: str) -> Generation:
    return Generation([1], [5, 2], text, truncated=False)


ROWS = [PromptRow([{"role": "user", "content": "Q?"}], meta={"id": "q"})]


def test_every_untied_pair_better_one_chosen_ties_and_duplicates_counted():
    cands = [[gen("A"), gen("B"), gen("C"), gen("A"), gen("B")]]
    scores = [[1.0, 0.2, 0.2, 1.0, 0.2]]
    pairs, stats = pairs_from_scores(ROWS, cands, scores, "gold")
    # distinct texts A, B, C (the second A and B are dropped): (A,B) A>B, (A,C) A>C, (B,C) tie
    assert stats.ties_dropped == 1 and stats.duplicates_dropped == 2
    assert sorted((p.chosen, p.rejected) for p in pairs) == [("A", "B"), ("A", "C")]
    assert all(p.meta["chosen_score"] > p.meta["rejected_score"] for p in pairs)
    assert stats.pairs == 2 and stats.candidates == 5


def test_cap_keeps_the_widest_gap_first():
    cands = [[gen("A"), gen("B"), gen("C")]]
    pairs, _ = pairs_from_scores(ROWS, cands, [[0.5, 1.0, -1.0]], "rm", max_pairs_per_prompt=1)
    assert [(p.chosen, p.rejected) for p in pairs] == [("B", "C")]


def test_human_choices_round_trip_and_errors(tmp_path):
    cands = [[gen("A"), gen("B"), gen("C"), gen("B")]]  # the repeated B adds no pair to annotate
    cand_file = tmp_path / "cands.jsonl"
    assert export_candidates(cand_file, ROWS, cands) == 3
    ids = [json.loads(line)["id"] for line in cand_file.read_text().splitlines()]
    choices = tmp_path / "choices.jsonl"
    choices.write_text(json.dumps({"id": ids[0], "choice": "b"}) + "\n"
                       + json.dumps({"id": ids[1], "choice": "tie"}) + "\n")
    pairs, stats = pairs_from_choices(cand_file, choices)
    assert [(p.chosen, p.rejected) for p in pairs] == [("B", "A")]
    assert stats.ties_dropped == 1 and stats.extra["unlabelled_candidates"] == 1
    choices.write_text(json.dumps({"id": ids[0], "choice": "maybe"}) + "\n")
    with pytest.raises(DataError, match=r"choices.jsonl:1: choice must be"):
        pairs_from_choices(cand_file, choices)
    choices.write_text(json.dumps({"id": ids[0], "choice": "a"}) + "\n"
                       + json.dumps({"id": "nope", "choice": "a"}) + "\n")
    with pytest.raises(DataError, match=r"choices.jsonl:2: unknown"):
        pairs_from_choices(cand_file, choices)


def test_rm_labeller_scores_with_a_frozen_model_and_changes_nothing(tiny_model_dir, tiny):
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel
    from tether.sampling.labelling import reward_model_scores

    _, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok))
    before = {k: v.clone() for k, v in rm.state_dict().items()}
    cands = [[Generation([1, 40], [50, tok.eos_token_id], "x", False),
              Generation([1, 40], [51, tok.eos_token_id], "y", False)]]
    scores = reward_model_scores(rm, tok, [PromptRow([{"role": "user", "content": "q"}])], cands, tok)
    assert len(scores[0]) == 2 and scores[0][0] != scores[0][1]
    assert not rm.training and not any(p.requires_grad for p in rm.parameters())
    assert all(torch.equal(before[k], v) for k, v in rm.state_dict().items())


def test_rm_labeller_reads_a_cut_candidate_with_eos_appended(tiny_model_dir, tiny):
    """The RM trained on replies ending in EOS reads a candidate cut at max_new_tokens the same way: its score
    is the one of its tokens plus EOS, the score of the same reply that did end with EOS."""
    from tether.data.tokenization import encode_prompt, encode_response
    from tether.models.loading import freeze
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import score_sequences
    from tether.sampling.labelling import reward_model_scores

    _, tok = tiny
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=5))
    row = PromptRow([{"role": "user", "content": "q"}])
    prompt = encode_prompt(tok, row.prompt)
    cut_ids = tok("ab cd", add_special_tokens=False)["input_ids"]
    cands = [[Generation(prompt, cut_ids, "ab cd", True),
              Generation(prompt, [*cut_ids, tok.eos_token_id], "ab cd", False)]]
    (scores,) = reward_model_scores(rm, tok, [row], cands, tok)
    want = score_sequences(rm, [prompt], [encode_response(tok, "ab cd")], tok.pad_token_id)[0]
    raw = score_sequences(rm, [prompt], [cut_ids], tok.pad_token_id)[0]
    assert scores == pytest.approx([want, want], abs=1e-5)
    assert abs(raw - want) > 1e-4  # read at the cut token instead, the score would differ


def test_penalise_truncated_by_hand():
    cut, done = Generation([1], [5, 6], "a b", True), Generation([1], [5, 2], "a.", False)
    scores = penalise_truncated([[1.5, 0.9], [0.2, -0.3]], [[cut, done], [done, cut]], 1.0)
    assert scores == [[pytest.approx(0.5), 0.9], [0.2, pytest.approx(-1.3)]]
    assert penalise_truncated([[1.5, 0.9]], [[cut, done]], 0.0) == [[1.5, 0.9]]
