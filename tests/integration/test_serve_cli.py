"""`tether serve` through a subprocess, as a user runs it: loopback by default, one-line errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from tether.models.loading import load_tokenizer
from tether.models.scalar_head import ScalarHeadModel


@pytest.fixture(scope="module")
def rm_dir(tiny_model_dir, tmp_path_factory):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    out = tmp_path_factory.mktemp("tiny-rm")
    ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tokenizer, seed=1).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_on_loopback_by_default(tiny_model_dir, rm_dir):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli.main", "serve", "--policy", str(tiny_model_dir),
                             "--reward-model", str(rm_dir), "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    health = None
    try:
        for _ in range(600):
            if proc.poll() is not None:
                break
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        assert health["model"] == tiny_model_dir.name and health["reward_model"] == rm_dir.name
        out = httpx.post(f"http://127.0.0.1:{port}/generate", json={"prompt": "hi", "num_return_sequences": 2,
                                                                    "max_new_tokens": 4}, timeout=60).json()
        assert out["best"] == out["responses"][out["best_index"]]
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--reward-model", "{tmp}/nope"], "error: --reward-model {tmp}/nope: no such dir"),
    (["--port", "0"], "error: --port must be in 1..65535, got 0"),
])
def test_cli_bad_arguments_are_one_line(tiny_model_dir, tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "tether.cli.main", "serve", "--policy", str(tiny_model_dir), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [message.format(tmp=tmp_path)]
