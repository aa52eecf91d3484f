import pytest

from tether.errors import ModelLoadError
from tether.models.embedded import EMBEDDED_MODELS, tether_home
from tether.models.loading import ensure_pad_token, load_tokenizer, resolve_model_path


def test_unreachable_hub_gives_one_line_pointing_to_local_or_embedded(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache: nothing to fall back on
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer("some-org/some-model-that-is-not-cached")
    msg = str(err.value)
    assert "\n" not in msg
    assert "some-org/some-model-that-is-not-cached" in msg
    assert "local model dir" in msg and "smollm2-135m-instruct" in msg


def test_resolve_local_dir_and_errors(tiny_model_dir, tmp_path):
    assert resolve_model_path(str(tiny_model_dir)) == str(tiny_model_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a model dir"):
        resolve_model_path(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="no such model dir"):
        resolve_model_path(str(tmp_path / "missing"))


def test_tether_home_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    assert tether_home() == tmp_path
    assert "smollm2-135m-instruct" in EMBEDDED_MODELS


def test_pad_token_made_distinct_from_eos(tiny):
    _, tok = tiny
    tok = tok.__class__.from_pretrained(tok.name_or_path) if tok.name_or_path else tok
    tok.pad_token = tok.eos_token  # what SmolLM2 ships
    ensure_pad_token(tok)
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.pad_token == "<|endoftext|>"
