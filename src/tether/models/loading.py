"""Resolve a model spec (embedded name, local dir, HF id) and load a policy and its tokenizer.

Tokenizer conventions tether relies on everywhere:
- `pad_token` is distinct from `eos_token` (SmolLM2 ships pad == eos == <|im_end|>; we use its
  <|endoftext|> token as pad, so a sequence's end is never found by searching for pad);
- `padding_side` is set per use (left for generation prompts, right for training batches) by the
  collators, never assumed;
- `model_max_length` is set from the config, not trusted (SmolLM2 reports 1e30).
"""

from __future__ import annotations

import os
from pathlib import Path

from tether.errors import ModelLoadError
from tether.models.embedded import EMBEDDED_MODELS, fetch_embedded

_PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "[PAD]", "<unk>")


def resolve_model_path(spec: str) -> str:
    """Embedded name → its cached dir (fetched on first use); local dir → itself; else an HF id."""
    if spec in EMBEDDED_MODELS:
        return str(fetch_embedded(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{spec}: not a model dir (no config.json)")
        return str(path)
    if spec.startswith((".", "/", "~")) or (os.sep in spec and spec.count("/") > 1):
        raise ModelLoadError(f"{spec}: no such model dir")
    # A hub id: transformers resolves it from the local HF cache or the hub. Where it is not cached and the hub
    # cannot be reached, say so now: transformers would retry for ~50 s (5 retries with backoff, for the config
    # and again for the tokenizer), printing a warning for each, before failing.
    if not _in_hub_cache(spec):
        if _hub_offline():
            raise ModelLoadError(f"{spec}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: "
                                 f"{_USE_LOCAL}")
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        if not _reachable(endpoint):
            raise ModelLoadError(f"{spec}: not in the local Hugging Face cache, and the hub ({endpoint}) is "
                                 f"unreachable: {_USE_LOCAL}")
    return spec


_USE_LOCAL = f"use a local model dir or an embedded model ({', '.join(EMBEDDED_MODELS)})"
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the HF cache transformers reads holds `repo_id`'s config.json (then it loads without the hub)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id: let transformers name what is wrong
        return True


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether `url`'s host resolves and accepts a TCP connection, both within `timeout` s. Behind a proxy (a
    *_PROXY variable) the host is reached through it, which this cannot check: True."""
    import socket
    import time
    from urllib.parse import urlparse

    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True
    parsed = urlparse(url)
    if not parsed.hostname:
        return True  # not a URL this can probe: leave it to transformers
    deadline = time.monotonic() + timeout
    addresses = _resolve(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), timeout) or []
    for i, (family, kind, proto, _, address) in enumerate(addresses):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left / (len(addresses) - i))  # an address that drops packets leaves time for the next
                sock.connect(address)
                return True
        except OSError:
            continue
    return False


def _resolve(host: str, port: int, timeout: float) -> list | None:
    """`socket.getaddrinfo` bounded by `timeout` s (it takes no timeout, and a resolver that gets no answer can
    block for a minute or more): the addresses, or None when it failed or is still waiting. A lookup still waiting
    is left to finish in its daemon thread."""
    import socket
    import threading

    found: dict[str, list] = {}

    def lookup() -> None:
        try:
            found["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            pass

    thread = threading.Thread(target=lookup, name="tether-hub-lookup", daemon=True)
    thread.start()
    thread.join(timeout)
    return found.get("addresses")


def _hub_error(spec: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load '{spec}' from the Hugging Face hub ({type(err).__name__}); the hub may be "
        f"unreachable: {_USE_LOCAL}"
    )


def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token distinct from EOS, reusing an existing special token."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    for candidate in _PAD_CANDIDATES:
        if candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            return
    tokenizer.add_special_tokens({"pad_token": "<|tether_pad|>"})  # caller must resize embeddings


def load_tokenizer(spec: str, max_length: int | None = None):
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise _hub_error(spec, err) from None
    ensure_pad_token(tokenizer)
    if max_length is not None:
        tokenizer.model_max_length = max_length
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"{spec}: tokenizer has no chat template; tether formats prompts as chats")
    return tokenizer


def torch_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def disable_dropout(model) -> None:
    """Set every dropout probability to 0 (RLHF stages need deterministic logprobs)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        # e.g. Llama attention copies config.attention_dropout into a float attribute at build time
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    for attr in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, attr) and isinstance(getattr(model.config, attr), float):
            setattr(model.config, attr, 0.0)


def load_pretrained(auto_class, spec: str, tokenizer=None, dtype: str = "float32"):
    """`auto_class.from_pretrained` on a resolved spec, matched to `tokenizer` (vocab size, pad id).

    A hub that can't be reached becomes a one-line ModelLoadError naming the alternatives.
    """
    path = resolve_model_path(spec)
    try:
        model = auto_class.from_pretrained(path, dtype=torch_dtype(dtype))
    except OSError as err:
        raise _hub_error(spec, err) from None
    if tokenizer is not None:
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_causal_lm(spec: str, tokenizer=None, dtype: str = "float32", dropout: bool = False):
    """Load a causal LM for training or generation, matched to `tokenizer` (pad id, vocab size)."""
    from transformers import AutoModelForCausalLM

    model = load_pretrained(AutoModelForCausalLM, spec, tokenizer, dtype)
    if tokenizer is not None:
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id
    if not dropout:
        disable_dropout(model)
    return model


def freeze(model):
    """Eval mode and no gradients: for models that only score or serve as a reference (RM, reference policy)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
