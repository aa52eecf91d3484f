"""ScalarHeadModel: scores read at the right token whatever the padding, save/load, dropout, grads, LoRA."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tether.errors import ModelLoadError
from tether.losses.reward import bradley_terry_loss
from tether.models.loading import load_tokenizer
from tether.models.scalar_head import (
    HEAD_CONFIG_FILE,
    HEAD_WEIGHTS_FILE,
    ScalarHeadModel,
    apply_lora_to_scalar,
)
from tether.models.spec import ModelConfig

ATOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def sequences(tokenizer):
    """Three rows of different lengths ending in EOS; row 1 holds the pad id and row 2 EOS as real tokens."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    return [[1, 40, 41, 42, 50, eos], [1, 43, pad, 52, eos], [1, 44, eos, 45, 46, 47, 53, eos]]


def make(tiny_model_dir, tokenizer, pooling="last", seed=0) -> ScalarHeadModel:
    return ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tokenizer, pooling=pooling, seed=seed).eval()


def pad_batch(rows: list[list[int]], pad_id: int, left: list[int], right: list[int]) -> tuple[torch.Tensor, ...]:
    """Each row with `left[i]` pads before and `right[i]` pads after; all rows the same width."""
    width = max(lp + len(r) + rt for r, lp, rt in zip(rows, left, right))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B,T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B,T)
    for i, (row, lp) in enumerate(zip(rows, left)):
        ids[i, lp : lp + len(row)] = torch.tensor(row)
        mask[i, lp : lp + len(row)] = 1
    return ids, mask


def score_alone(model, row: list[int]) -> torch.Tensor:
    ids = torch.tensor([row])  # (1,T)
    with torch.no_grad():
        return model(ids, torch.ones_like(ids))[0]


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_changes_no_score(tiny_model_dir, tokenizer, sequences, pooling):
    model = make(tiny_model_dir, tokenizer, pooling)
    alone = torch.stack([score_alone(model, row) for row in sequences])  # (3,)
    layouts = {"left": ([4, 5, 2], [0, 0, 0]), "right": ([0, 0, 0], [3, 6, 1]), "both": ([2, 0, 5], [4, 3, 1])}
    for pad_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, 40):  # pads that equal real tokens too
        for name, (left, right) in layouts.items():
            ids, mask = pad_batch(sequences, pad_id, left, right)
            with torch.no_grad():
                scores = model(ids, mask)  # (3,)
            assert scores.dtype == torch.float32 and scores.shape == (3,)
            torch.testing.assert_close(scores, alone, atol=ATOL, rtol=0, msg=f"{pooling}/{name}/pad={pad_id}")
    assert alone.std() > 1e-3  # the rows really score differently, so a wrong row/position would show


def _plain_hidden(tiny_model_dir, row: list[int]) -> torch.Tensor:
    """Last hidden states (T,H) from a plain transformers causal LM's decoder, no tether code involved."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    with torch.no_grad():
        return lm.model(input_ids=torch.tensor([row])).last_hidden_state[0].double()  # (T,H)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_matches_plain_backbone_forward(tiny_model_dir, tokenizer, sequences, pooling):
    model = make(tiny_model_dir, tokenizer, pooling)
    w, b = model.head.weight[0].double(), model.head.bias[0].double()
    ids, mask = pad_batch(sequences, tokenizer.pad_token_id, [3, 0, 1], [0, 2, 0])  # mixed padding
    with torch.no_grad():
        scores = model(ids, mask).double()  # (3,)
    for i, row in enumerate(sequences):
        hidden = _plain_hidden(tiny_model_dir, row)  # (T,H)
        pooled = hidden[-1] if pooling == "last" else hidden.mean(0)  # (H,)
        assert abs(scores[i].item() - (pooled @ w + b).item()) < ATOL


def test_pad_equal_to_eos_tokenizer_changes_nothing(tiny_model_dir, tokenizer, sequences):
    """A model built with a tokenizer whose pad == EOS scores the same: the last token comes from the mask."""
    model = make(tiny_model_dir, tokenizer)
    eos_pad_tok = copy.deepcopy(tokenizer)
    eos_pad_tok.pad_token = eos_pad_tok.eos_token
    assert eos_pad_tok.pad_token_id == eos_pad_tok.eos_token_id
    eos_model = make(tiny_model_dir, eos_pad_tok)
    assert eos_model.config.pad_token_id == tokenizer.eos_token_id
    ids_distinct, mask = pad_batch(sequences, tokenizer.pad_token_id, [0, 0, 0], [3, 4, 0])
    ids_eos, mask_eos = pad_batch(sequences, eos_pad_tok.pad_token_id, [0, 0, 0], [3, 4, 0])
    with torch.no_grad():
        torch.testing.assert_close(eos_model(ids_eos, mask_eos), model(ids_distinct, mask), atol=ATOL, rtol=0)


def test_bias_shift_subtracts(tiny_model_dir, tokenizer, sequences):
    model = make(tiny_model_dir, tokenizer)
    ids, mask = pad_batch(sequences, tokenizer.pad_token_id, [0, 0, 0], [2, 3, 0])
    with torch.no_grad():
        raw = model(ids, mask)
        model.set_bias_shift(1.5)
        shifted = model(ids, mask)
        per_token = model(ids, mask, per_token=True)  # (B,T)
    torch.testing.assert_close(shifted, raw - 1.5, atol=1e-6, rtol=0)
    # per-token outputs read at each row's last real token are the (shifted) scores
    last = torch.tensor([len(r) - 1 for r in sequences])
    torch.testing.assert_close(per_token[torch.arange(3), last], shifted, atol=1e-6, rtol=0)
    # centring: shift by the current mean score → the mean becomes 0
    model.set_bias_shift(float(model.bias_shift) + float(shifted.mean()))
    with torch.no_grad():
        assert abs(model(ids, mask).mean().item()) < 1e-6


def test_head_init_is_seeded(tiny_model_dir, tokenizer):
    a, b, c = (make(tiny_model_dir, tokenizer, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, c.head.weight)
    assert torch.all(a.head.bias == 0)
    assert a.head.weight.dtype == torch.float32


def test_save_load_round_trip(tiny_model_dir, tokenizer, sequences, tmp_path):
    model = make(tiny_model_dir, tokenizer, pooling="mean", seed=3)
    model.set_bias_shift(0.25)
    out = model.save_pretrained(tmp_path / "rm")
    assert (out / HEAD_WEIGHTS_FILE).is_file() and (out / "config.json").is_file()
    meta = json.loads((out / HEAD_CONFIG_FILE).read_text())
    assert meta == {"pooling": "mean", "bias_shift": 0.25, "hidden_size": 32, "base_model_type": "llama"}
    loaded = ScalarHeadModel.from_pretrained(out).eval()
    assert loaded.pooling == "mean" and float(loaded.bias_shift) == 0.25
    ids, mask = pad_batch(sequences, tokenizer.pad_token_id, [1, 0, 0], [0, 3, 0])
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask), model(ids, mask))
    # the dir is a normal transformers model dir
    from transformers import AutoModel

    assert type(AutoModel.from_pretrained(out)).__name__ == "LlamaModel"


def test_load_errors_are_one_line(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError) as err:
        ScalarHeadModel.from_pretrained(tiny_model_dir)  # a causal LM dir has no head files
    assert HEAD_WEIGHTS_FILE in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelLoadError, match=r"no such model dir|not a"):
        ScalarHeadModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match="pooling"):
        ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), pooling="first")


def test_dropout_is_off_even_when_config_sets_it(tiny_model_dir, tokenizer, sequences, tmp_path):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    lm.config.attention_dropout = 0.5
    lm.save_pretrained(tmp_path / "dropout-lm")
    model = ScalarHeadModel.from_pretrained_lm(str(tmp_path / "dropout-lm"), tokenizer).train()
    assert model.config.attention_dropout == 0.0
    for module in model.modules():
        assert not isinstance(module, torch.nn.Dropout) or module.p == 0.0
        assert getattr(module, "attention_dropout", 0.0) == 0.0
    ids, mask = pad_batch(sequences, tokenizer.pad_token_id, [0, 0, 0], [2, 3, 0])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), model(ids, mask), atol=0, rtol=0)  # train mode, deterministic


def _pair_loss(model, tokenizer, sequences) -> torch.Tensor:
    ids, mask = pad_batch(sequences[:2], tokenizer.pad_token_id, [0, 0], [0, 1])
    scores = model(ids, mask)  # (2,)
    return bradley_terry_loss(scores[:1], scores[1:])[0]


def test_gradients_reach_head_and_backbone(tiny_model_dir, tokenizer, sequences):
    model = make(tiny_model_dir, tokenizer).train()
    assert all(p.requires_grad for p in model.parameters())
    _pair_loss(model, tokenizer, sequences).backward()
    assert model.head.weight.grad.abs().sum() > 0
    grads = {n: p.grad for n, p in model.backbone.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["layers.0.self_attn.q_proj.weight"].abs().sum() > 0
    assert grads["embed_tokens.weight"].abs().sum() > 0


def test_lora_trains_only_adapters_and_head(tiny_model_dir, tokenizer, sequences, tmp_path):
    model = make(tiny_model_dir, tokenizer)
    cfg = ModelConfig(use_lora=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    apply_lora_to_scalar(model, cfg).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    assert all(n.startswith("head.") or "lora_" in n for n in trainable)
    assert any("lora_B" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    _pair_loss(model, tokenizer, sequences).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed) and "head.weight" in changed

    # save merges the adapters: the dir loads without peft and scores like the live LoRA model
    model.eval()
    ids, mask = pad_batch(sequences, tokenizer.pad_token_id, [0, 2, 0], [1, 0, 0])
    with torch.no_grad():
        live = model(ids, mask)
    loaded = ScalarHeadModel.from_pretrained(model.save_pretrained(tmp_path / "lora-rm")).eval()
    assert not any("lora_" in n for n, _ in loaded.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask), live, atol=ATOL, rtol=0)
        torch.testing.assert_close(model(ids, mask), live, atol=0, rtol=0)  # live model keeps its adapters


def test_default_position_ids_count_real_tokens(tiny_model_dir, tokenizer, sequences):
    """RoPE hides a position offset, so check what reaches the backbone (absolute-position models care)."""
    model = make(tiny_model_dir, tokenizer)
    seen = {}
    handle = model.backbone.register_forward_pre_hook(lambda mod, args, kwargs: seen.update(kwargs),
                                                      with_kwargs=True)
    ids, mask = pad_batch(sequences[:2], tokenizer.pad_token_id, [2, 0], [0, 3])
    try:
        with torch.no_grad():
            model(ids, mask)
    finally:
        handle.remove()
    expected = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 4, 4, 4]])
    assert torch.equal(seen["position_ids"], expected)
