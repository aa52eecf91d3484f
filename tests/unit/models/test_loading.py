import pytest

from tether.errors import ModelLoadError
from tether.models.embedded import EMBEDDED_MODELS, tether_home
from tether.models.loading import ensure_pad_token, load_tokenizer, resolve_model_path


def _no_proxy(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_an_uncached_model_offline_is_one_line_at_once(monkeypatch):
    # HF_HUB_OFFLINE set after huggingface_hub was imported (which reads it once): read at the call, so the error
    # comes at once instead of after transformers' ~50 s of retries
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer("some-org/some-model-that-is-not-cached")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("some-org/some-model-that-is-not-cached: not in the local Hugging Face cache, and "
                          "HF_HUB_OFFLINE is set")
    assert "local model dir" in msg and "smollm2-135m-instruct" in msg


def test_an_uncached_model_with_the_hub_unreachable_is_one_line_naming_the_endpoint(monkeypatch):
    import socket

    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as read at import, which may have been offline
    _no_proxy(monkeypatch)
    with socket.socket() as closed:  # a port that was just free: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelLoadError, match=rf"some-org/absent: not in the local Hugging Face cache, and the hub "
                                             rf"\(http://127.0.0.1:{port}\) is unreachable: use a local model dir"):
        resolve_model_path("some-org/absent")


def test_the_reachability_probe_connects_and_trusts_a_proxy(monkeypatch):
    import socket

    from tether.models.loading import _reachable

    _no_proxy(monkeypatch)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _reachable(f"http://127.0.0.1:{port}")
    assert not _reachable(f"http://127.0.0.1:{port}")  # closed now
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert _reachable(f"http://127.0.0.1:{port}")  # through a proxy: not checkable here, left to transformers


def test_the_reachability_probe_does_not_wait_on_a_resolver_that_hangs(monkeypatch):
    # getaddrinfo takes no timeout: a DNS server that never answers would block the probe for a minute or more
    import socket
    import threading

    from tether.models import loading

    _no_proxy(monkeypatch)
    release = threading.Event()
    asked, finished = [], []

    def hanging_getaddrinfo(host, port, *args, **kwargs):
        asked.append((host, port))
        release.wait(60)
        finished.append(True)
        raise socket.gaierror("released by the test")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    try:
        assert not loading._reachable("https://hub.example", timeout=0.2)
        assert asked == [("hub.example", 443)]
        assert not finished  # the probe returned while the lookup was still blocked
    finally:
        release.set()


def test_the_reachability_probe_tries_every_resolved_address(monkeypatch):
    # a host that resolves to a dead address first (an IPv6 one without a route, say) and a live one second
    import socket

    from tether.models import loading

    _no_proxy(monkeypatch)
    with socket.socket() as server, socket.socket() as dead:
        server.bind(("127.0.0.1", 0))
        server.listen()
        dead.bind(("127.0.0.1", 0))
        dead_port, live_port = dead.getsockname()[1], server.getsockname()[1]
        dead.close()  # nothing listens there now
        addresses = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))
                     for port in (dead_port, live_port)]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses)
        assert loading._reachable("https://hub.example")
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses[:1])
        assert not loading._reachable("https://hub.example")


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
