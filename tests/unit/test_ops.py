"""tether.ops against arithmetic written out here (float64) and against plain Python loops."""

from __future__ import annotations

import math

import pytest
import torch

from tether.ops import (
    entropy_from_logits,
    exact_div,
    first_true_index,
    gather_logprobs,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
)

F64 = torch.float64


def close(actual: torch.Tensor, expected, tol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=tol, atol=tol)


X = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 6.0, -50.0, -50.0]], dtype=F64)
MASK = torch.tensor([[True, True, True, False], [True, True, False, False]])


def test_masked_sum_and_mean_by_hand():
    close(masked_sum(X, MASK), 1 + 2 + 3 + 4 + 6)
    close(masked_sum(X, MASK, dim=1), [6.0, 10.0])
    close(masked_mean(X, MASK), 16 / 5)
    close(masked_mean(X, MASK, dim=1), [2.0, 5.0])
    col_means = masked_mean(X, MASK, dim=0)
    close(col_means[:3], [2.5, 4.0, 3.0])
    assert torch.isnan(col_means[3])  # a column with nothing kept has no mean


def test_masked_ops_ignore_nan_and_inf_in_padding():
    x = torch.tensor([1.0, 3.0, float("nan"), float("-inf")], dtype=F64)
    mask = torch.tensor([True, True, False, False])
    close(masked_sum(x, mask), 4.0)
    close(masked_mean(x, mask), 2.0)
    close(masked_var(x, mask), 2.0)  # ((1-2)^2 + (3-2)^2) / (2-1)
    close(masked_whiten(x, mask), [-1 / math.sqrt(2 + 1e-8), 1 / math.sqrt(2 + 1e-8), 0.0, 0.0])


def test_masked_var_by_hand():
    # kept values 1,2,3,4,6: mean 3.2, squared deviations 4.84+1.44+0.04+0.64+7.84 = 14.8
    close(masked_var(X, MASK), 14.8 / 4)
    close(masked_var(X, MASK, unbiased=False), 14.8 / 5)


def test_masked_var_refuses_too_few_entries():
    one = torch.tensor([[True, False, False, False], [False] * 4])
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(X, one)
    close(masked_var(X, one, unbiased=False), 0.0)
    with pytest.raises(ValueError, match="at least 1"):
        masked_var(X, torch.zeros_like(MASK), unbiased=False)


def test_masked_whiten_by_hand_and_padding_stays_zero():
    std = math.sqrt(14.8 / 4 + 1e-8)
    kept = [1.0, 2.0, 3.0, 4.0, 6.0]
    out = masked_whiten(X, MASK)
    close(out[MASK], [(v - 3.2) / std for v in kept])
    close(out[~MASK], [0.0, 0.0, 0.0])
    unshifted = masked_whiten(X, MASK, shift_mean=False)
    close(unshifted[MASK], [(v - 3.2) / std + 3.2 for v in kept])
    close(unshifted[~MASK], [0.0, 0.0, 0.0])
    # whitened kept entries: mean 0, unbiased variance 1 (up to eps)
    close(masked_mean(out, MASK), 0.0)
    close(masked_var(out, MASK), 1.0, tol=1e-8)


def test_masked_ops_match_plain_loops():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=gen, dtype=F64)
    mask = torch.rand(5, 7, generator=gen) > 0.4
    kept = [x[i, j].item() for i in range(5) for j in range(7) if mask[i, j]]
    mean = sum(kept) / len(kept)
    var = sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)
    close(masked_sum(x, mask), sum(kept))
    close(masked_mean(x, mask), mean)
    close(masked_var(x, mask), var)
    row_means = [
        sum(x[i, j].item() for j in range(7) if mask[i, j]) / max(1, int(mask[i].sum())) for i in range(5)
    ]
    close(masked_mean(x, mask, dim=1)[mask.any(1)], [m for m, any_ in zip(row_means, mask.any(1)) if any_])
    whitened = masked_whiten(x, mask)
    for i in range(5):
        for j in range(7):
            expected = (x[i, j].item() - mean) / math.sqrt(var + 1e-8) if mask[i, j] else 0.0
            assert abs(whitened[i, j].item() - expected) < 1e-12


def test_gather_logprobs_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]], dtype=F64)  # (2,4)
    labels = torch.tensor([2, 3])
    lse = math.log(math.e + math.e**2 + math.e**3 + math.e**4)
    close(gather_logprobs(logits, labels), [-math.log(4), 4 - lse])
    # temperature 2 divides the logits first: row 2 becomes 0.5, 1, 1.5, 2
    lse_t = math.log(sum(math.exp(v / 2) for v in (1, 2, 3, 4)))
    close(gather_logprobs(logits, labels, temperature=2.0), [-math.log(4), 2 - lse_t])


def test_gather_logprobs_matches_plain_loop_for_any_leading_shape():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 11, generator=gen, dtype=F64) * 3  # (B,T,V)
    labels = torch.randint(0, 11, (2, 3), generator=gen)  # (B,T)
    for temperature in (1.0, 0.7):
        out = gather_logprobs(logits, labels, temperature=temperature)
        assert out.shape == (2, 3)
        for b in range(2):
            for t in range(3):
                row = [v / temperature for v in logits[b, t].tolist()]
                log_z = math.log(sum(math.exp(v) for v in row))
                assert abs(out[b, t].item() - (row[labels[b, t]] - log_z)) < 1e-12
    flat = gather_logprobs(logits.reshape(6, 11), labels.reshape(6))  # (N,V) / (N,) form
    close(flat, gather_logprobs(logits, labels).reshape(6))


def test_gather_logprobs_low_precision_upcasts_to_float32():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 5, 50, generator=gen)  # (B,T,V)
    labels = torch.randint(0, 50, (3, 5), generator=gen)
    out = gather_logprobs(logits.bfloat16(), labels)
    assert out.dtype == torch.float32
    expected = torch.log_softmax(logits.bfloat16().float(), -1).gather(-1, labels[..., None]).squeeze(-1)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_gather_logprobs_rejects_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        gather_logprobs(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), temperature=0.0)
    with pytest.raises(ValueError, match="disagree"):
        gather_logprobs(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


def test_gather_logprobs_gradient_is_softmax_minus_onehot():
    logits = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64, requires_grad=True)
    gather_logprobs(logits, torch.tensor([0])).sum().backward()
    probs = torch.softmax(logits.detach(), -1)
    close(logits.grad, torch.tensor([[1.0, 0.0, 0.0]], dtype=F64) - probs)


def test_entropy_from_logits_by_hand():
    logits = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1e9, -1e9], [math.log(3), 0.0, -1e9, -1e9]], dtype=F64
    )
    # uniform over 4 -> log 4; uniform over 2 -> log 2; p = (3/4, 1/4) -> -(3/4 log 3/4 + 1/4 log 1/4)
    expected = [math.log(4), math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    close(entropy_from_logits(logits), expected)
    assert entropy_from_logits(logits.bfloat16()).dtype == torch.float32


def test_first_true_index():
    flags = torch.tensor([[False, True, True], [False, False, False], [True, False, True]])
    assert first_true_index(flags).tolist() == [1, 3, 0]
    assert first_true_index(flags, dim=0).tolist() == [2, 0, 0]
    ids = torch.tensor([[5, 2, 9, 2], [7, 7, 7, 7]])
    assert first_true_index(ids == 2).tolist() == [1, 4]


def test_exact_div():
    assert exact_div(12, 4, "batch") == 3
    with pytest.raises(ValueError, match=r"train.batch_size: 10 is not divisible by 4"):
        exact_div(10, 4, "train.batch_size")
    with pytest.raises(ValueError, match="not divisible by 0"):
        exact_div(10, 0, "x")


def test_map_length_groups_equals_one_call_in_order_with_gradients():
    from tether.ops import map_length_groups

    torch.manual_seed(0)
    lengths = [3, 7, 2, 7, 5]
    mask = torch.zeros(5, 8, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    x = torch.randn(5, 8)
    w = torch.randn(8, requires_grad=True)
    widths: list[int] = []

    def fn(b):  # per row: a masked sum that depends on w, and the row's real length
        widths.append(b["x"].shape[1])
        return (b["x"] * w[: b["x"].shape[1]] * b["attention_mask"]).sum(-1), b["attention_mask"].sum(-1)

    whole, _ = fn({"x": x, "attention_mask": mask})
    (g_whole,) = torch.autograd.grad(whole.square().sum(), w)
    widths.clear()
    grouped, n_grouped = map_length_groups(fn, {"x": x, "attention_mask": mask}, group_size=2)
    (g_grouped,) = torch.autograd.grad(grouped.square().sum(), w)
    assert widths == [7, 5, 2]  # longest first: rows {1, 3}, then {4, 0}, then {2}, each cut to its longest
    assert torch.allclose(grouped, whole) and n_grouped.tolist() == lengths  # original order
    assert torch.allclose(g_grouped, g_whole)
    left = mask.flip(-1)
    with pytest.raises(ValueError, match="right-padded"):
        map_length_groups(fn, {"x": x, "attention_mask": left}, group_size=2)
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        map_length_groups(fn, {"x": x, "attention_mask": mask}, group_size=0)
