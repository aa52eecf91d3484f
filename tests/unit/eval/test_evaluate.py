import pytest
import torch

from tether.data.records import PromptRow
from tether.eval.evaluate import kl_to_reference

ROWS = [PromptRow([{"role": "user", "content": q}]) for q in ("What is 2 plus 2?", "Capital of France?", "Hi")] * 4


def test_kl_of_a_policy_to_itself_is_zero(tiny):
    model, tok = tiny
    out = kl_to_reference(model, model, tok, ROWS, max_new_tokens=8)
    assert out["kl"] == pytest.approx(0.0, abs=1e-5) and out["n"] == len(ROWS)


def test_kl_to_a_different_reference_is_positive_on_average(tiny, tiny_model_dir):
    from tether.models.loading import load_causal_lm

    model, tok = tiny
    other = load_causal_lm(str(tiny_model_dir), tok).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = kl_to_reference(model, other, tok, ROWS * 4, max_new_tokens=8)
    assert out["kl"] > 0.1  # a sequence KL between clearly different policies; the k1 mean is positive
