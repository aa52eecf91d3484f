from collections import Counter

from tether.runtime.seeding import global_batch_indices, rank_slice


def test_global_batches_cover_each_epoch_exactly_once():
    n, bs = 10, 4
    stream = [i for step in range(5) for i in global_batch_indices(n, bs, step, seed=1)]  # 20 = 2 epochs
    assert Counter(stream[:10]) == Counter(range(10))
    assert Counter(stream[10:]) == Counter(range(10))
    assert stream[:10] != stream[10:]  # a new permutation per epoch


def test_batches_are_a_pure_function_of_seed_and_step():
    assert global_batch_indices(50, 8, 3, seed=7) == global_batch_indices(50, 8, 3, seed=7)
    assert global_batch_indices(50, 8, 3, seed=7) != global_batch_indices(50, 8, 3, seed=8)


def test_rank_slices_partition_the_global_batch():
    batch = list(range(8))
    assert rank_slice(batch, 0, 2) + rank_slice(batch, 1, 2) == batch
    assert rank_slice(batch, 0, 1) == batch


def test_length_grouped_microbatches_keep_the_step_and_group_lengths():
    from tether.train.loop import length_grouped_microbatches

    lengths = {0: 5, 1: 90, 2: 7, 3: 80, 4: 6, 5: 85}
    chunks = length_grouped_microbatches([0, 1, 2, 3, 4, 5], 2, lengths.__getitem__)
    assert chunks == [[0, 4, 2], [3, 5, 1]]
    assert sorted(i for c in chunks for i in c) == [0, 1, 2, 3, 4, 5]


def test_seed_everything_sets_torch_deterministic_algorithms_both_ways():
    import torch

    from tether.runtime.seeding import seed_everything

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        seed_everything(3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # an op without one warns, never fails a run
        a = torch.rand(3)
        seed_everything(3)  # a later stage in the same process gets its own setting, not the last stage's
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.equal(torch.rand(3), a)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
