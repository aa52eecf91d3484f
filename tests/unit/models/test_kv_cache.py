"""ReservedCache holds exactly what DynamicCache holds, writes in place while it has room, and decodes bit-equal."""

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tether.models.kv_cache import ReservedCache, ReservedLayer


def _kv(b: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, n, 4, generator=g), torch.randn(b, 2, n, 3, generator=g)  # (B,H,n,D), Dv differs


def _same(layer: ReservedLayer, ref: DynamicLayer) -> None:
    assert layer.get_seq_length() == ref.get_seq_length()
    assert torch.equal(layer.keys, ref.keys) and torch.equal(layer.values, ref.values)


def test_layer_follows_dynamic_layer_through_updates_selects_crops_and_repeats():
    layer, ref = ReservedLayer(reserve=3), DynamicLayer()
    keys, values = layer.update(*_kv(2, 5, 0))  # prefill: 5 positions, room for 3 more
    ref.update(*_kv(2, 5, 0))
    assert keys.shape == (2, 2, 5, 4) and values.shape == (2, 2, 5, 3)
    _same(layer, ref)
    for step in range(6):  # the 4th one-token update runs out of room: reallocation keeps the contents
        out = layer.update(*_kv(2, 1, 10 + step))
        expected = ref.update(*_kv(2, 1, 10 + step))
        assert torch.equal(out[0], expected[0]) and torch.equal(out[1], expected[1])
        _same(layer, ref)
    assert layer.get_seq_length() == 11
    rows = torch.tensor([1, 1, 0])  # repeated and reordered rows, as for k samples of one prompt
    layer.batch_select_indices(rows)
    ref.batch_select_indices(rows)
    _same(layer, ref)
    layer.update(*_kv(3, 1, 20))
    ref.update(*_kv(3, 1, 20))
    _same(layer, ref)
    layer.crop(-4)
    ref.crop(-4)
    _same(layer, ref)
    assert layer.get_seq_length() == 8
    layer.batch_repeat_interleave(2)
    ref.batch_repeat_interleave(2)
    _same(layer, ref)
    layer.update(*_kv(6, 2, 30))  # after a crop the next update writes over the removed positions
    ref.update(*_kv(6, 2, 30))
    _same(layer, ref)


def test_update_writes_in_place_while_there_is_room():
    layer = ReservedLayer(reserve=4)
    layer.update(*_kv(2, 3, 0))
    storage = layer.keys.untyped_storage().data_ptr()
    for step in range(4):
        layer.update(*_kv(2, 1, step))
        assert layer.keys.untyped_storage().data_ptr() == storage  # no copy of the cache
    layer.update(*_kv(2, 1, 9))  # the room is spent: a new buffer
    assert layer.keys.untyped_storage().data_ptr() != storage
    assert layer.get_seq_length() == 8


def test_reset_empties_the_layer():
    layer = ReservedLayer(reserve=2)
    layer.update(*_kv(1, 3, 0))
    layer.reset()
    assert layer.get_seq_length() == 0
    layer.update(*_kv(1, 2, 1))
    assert torch.equal(layer.keys, _kv(1, 2, 1)[0])


def test_model_decodes_bit_equal_to_dynamic_cache(tiny):
    """Prefill of left-padded prompts, decode steps past the reserved room, and rows dropped mid-way: the
    logits are identical to DynamicCache's at every step."""
    model, _ = tiny
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12], [0, 13, 14, 15, 16]])
    mask = (ids != 0).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    caches = [DynamicCache(), ReservedCache(reserve=2)]
    with torch.no_grad():
        logits = [model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=c, use_cache=True).logits
                  for c in caches]
        assert isinstance(caches[1], DynamicCache)
        assert torch.equal(logits[0], logits[1])
        token = logits[0][:, -1].argmax(-1)
        for step in range(5):
            if step == 3:  # row 1 leaves the batch
                keep = torch.tensor([0, 2])
                token, mask = token[keep], mask[keep]
                for c in caches:
                    c.batch_select_indices(keep)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            logits = [model(input_ids=token[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                            cache=c, use_cache=True).logits for c in caches]
            assert torch.equal(logits[0], logits[1])
            token = logits[0][:, -1].argmax(-1)
        assert caches[0].get_seq_length() == caches[1].get_seq_length() == 10
