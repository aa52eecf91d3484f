"""Shared pieces of the benchmarks: synthetic pairs and a step timer for TRL trainers."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from tether.data.tokenization import EncodedPair

RESULTS = Path(__file__).parent / "results"


def make_pairs(n: int, seq_len: int, seed: int = 0) -> list[EncodedPair]:
    """`n` pairs whose chosen and rejected sequences are each exactly `seq_len` tokens (half prompt, half
    response; random ids — the cost of a step depends on shapes only)."""
    g = torch.Generator().manual_seed(seed)
    half = seq_len // 2
    return [EncodedPair(torch.randint(100, 40000, (half,), generator=g).tolist(),
                        torch.randint(100, 40000, (seq_len - half,), generator=g).tolist(),
                        torch.randint(100, 40000, (seq_len - half,), generator=g).tolist()) for _ in range(n)]


def mean_after_warmup(times: list[float]) -> float:
    """Mean of the step times after the first (warm-up) step."""
    return sum(times[1:]) / (len(times) - 1)


def trl_step_timer(times: list[float]):
    """A transformers TrainerCallback appending each optimizer step's wall time to `times`."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    return StepTimer()


def write_result(name: str, result: dict) -> Path:
    """Write results/<name>.json with the host it ran on and that host's fp32 matmul rate right after the work
    (`tether.runtime.host`): the seconds compare only across one host."""
    from tether.runtime.host import host_info, matmul_gflops

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({**result, "host": host_info() | {"matmul_gflops": round(matmul_gflops(), 1)}},
                              indent=2))
    return out


@torch.no_grad()
def decode_step_ms(model, rows: int, make_cache=None, prompt_len: int = 40, steps: int = 12,
                   summary=statistics.median) -> float:
    """Wall time of one KV-cached decode step (one new token for each of `rows` rows) after a `prompt_len`-token
    prefill, in ms: `summary` (median by default) of `steps` steps, the first two dropped. `make_cache(steps)`
    builds the cache (default: transformers' DynamicCache)."""
    from transformers import DynamicCache

    cache = make_cache(steps) if make_cache else DynamicCache()
    model(input_ids=torch.randint(100, 1000, (rows, prompt_len)), cache=cache, use_cache=True, logits_to_keep=1)
    token, mask, times = torch.randint(100, 1000, (rows, 1)), torch.ones(rows, prompt_len, dtype=torch.long), []
    for _ in range(steps):
        mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
        t0 = time.perf_counter()
        model(input_ids=token, attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1, cache=cache,
              use_cache=True, logits_to_keep=1)
        times.append(time.perf_counter() - t0)
    return round(1000 * summary(times[2:]), 1)
