"""Shared fixtures: the real-data folder (skips where absent) and tiny offline models."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real human data); tests that need it skip with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repo in CI and dev machines)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 random Llama with a ChatML byte-level BPE tokenizer, built offline."""
    from tether.models.tiny import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, tokenizer) loaded through tether's own loaders, in eval mode."""
    from tether.models.loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir), tokenizer).eval()
    return model, tokenizer


@pytest.fixture
def one_thread():
    """Run the test on one torch thread (tiny models are faster so, and not slowed by jobs spinning on the cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


QUESTIONS = [("What is 12 plus 7?", "19."), ("Capital of France?", "Paris."), ("Opposite of hot?", "Cold."),
             ("Convert 3 km to meters.", "3000 m."), ("Is 7 prime?", "Yes."), ("What is 2 plus 2?", "4."),
             ("Capital of Spain?", "Madrid."), ("Opposite of up?", "Down.")]


def _write_sft_file(path: Path, n: int = 48) -> Path:
    import json

    with path.open("w") as f:
        for i in range(n):
            q, a = QUESTIONS[i % len(QUESTIONS)]
            f.write(json.dumps({"prompt": [{"role": "user", "content": q}], "completion": a,
                                "meta": {"id": i}}) + "\n")
    return path



@pytest.fixture
def sft_file():
    """Writer of a small SFT jsonl in tether's own format: sft_file(path, n=48) -> path."""
    return _write_sft_file
