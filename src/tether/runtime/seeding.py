"""Seeding and the deterministic data order every stage uses."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; and switch torch's deterministic algorithms on or off (process-wide, so a stage
    run after another in one process gets its own setting). On the 2-core CPU two PPO runs of the demo config on two
    threads part at the first iteration's updates (the 7th digit of approx_kl) without them and come out
    byte-identical with them, with no cost that showed in that one pair of runs (docs/ppo.md). `warn_only` keeps an
    op that has no deterministic implementation (some CUDA kernels) running, with a warning, instead of failing."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def global_batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of optimizer step `step` (0-based): a pure function of (seed, step).

    The stream is one seeded permutation per epoch, concatenated; step s takes positions
    [s·B, (s+1)·B). Because nothing depends on iterator state, resume needs only the step number, and
    every process computes the same global batch before taking its own slice.
    """
    out: list[int] = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, n_examples)
        perm = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = min(batch_size - len(out), n_examples - offset)
        out.extend(perm[offset : offset + take].tolist())
        position += take
    return out


def rank_slice(items: list, rank: int, world_size: int) -> list:
    """This process's contiguous share of a global batch (len divisible by world_size)."""
    per_rank = len(items) // world_size
    return items[rank * per_rank : (rank + 1) * per_rank]
