"""A full disk while saving gives a one-line error naming the directory, never a traceback, and never costs the last
complete checkpoint."""

from __future__ import annotations

import errno
from collections import namedtuple
from pathlib import Path

import pytest

import tether.cli.main as cli
from tether.errors import OutputError
from tether.runtime import checkpoint
from tether.runtime.checkpoint import disk_guard, latest_checkpoint, out_of_space, save_checkpoint

Usage = namedtuple("Usage", "total used free")


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - free, free))


class _Accelerator:
    """The part of accelerate.Accelerator that save_checkpoint uses; `fail` makes save_state write half a file
    and raise it, as torch's writer does on a full disk."""

    is_main_process = True

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail

    def wait_for_everyone(self) -> None:
        pass

    def save_state(self, path: str, safe_serialization: bool = True) -> None:
        (Path(path) / "optimizer.bin").write_bytes(b"x" * 100)
        if self.fail is not None:
            raise self.fail


def test_out_of_space_reads_errno_messages_and_free_space(tmp_path, monkeypatch):
    _free(monkeypatch, 10 * 2**30)
    assert out_of_space(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    assert out_of_space(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
                        tmp_path)
    try:  # an ENOSPC further down the chain
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as chained:
        assert out_of_space(chained, tmp_path)
    torch_style = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert not out_of_space(torch_style, tmp_path)  # plenty of space: some other failure
    assert not out_of_space(OSError(errno.EACCES, "Permission denied"), tmp_path)
    _free(monkeypatch, 1024)
    assert out_of_space(torch_style, tmp_path)  # the disk is full: the write failed for that


def test_full_disk_checkpoint_keeps_the_last_complete_one(tmp_path, monkeypatch):
    save_checkpoint(_Accelerator(), tmp_path, 1, {"kl": 0.1}, keep=1)
    _free(monkeypatch, 0)
    with pytest.raises(OutputError) as err:
        save_checkpoint(_Accelerator(RuntimeError("unexpected pos 576 vs 534")), tmp_path, 2, {}, keep=1)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "checkpoints") in message and "no space left" in message and "step-2" in message
    assert not (tmp_path / "checkpoints" / "step-2.tmp").exists()  # the partial save is removed
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-1"
    assert (tmp_path / "checkpoints" / "step-1" / "optimizer.bin").read_bytes() == b"x" * 100


def test_other_save_errors_pass_through(tmp_path, monkeypatch):
    _free(monkeypatch, 10 * 2**30)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint(_Accelerator(RuntimeError("unexpected pos 576 vs 534")), tmp_path, 1, {})


def test_guard_removes_a_partial_file(tmp_path, monkeypatch):
    _free(monkeypatch, 10 * 2**30)
    partial = tmp_path / "ref_logps.pt"
    with pytest.raises(OutputError, match="ref cache"):
        with disk_guard(tmp_path, "the ref cache", cleanup=partial):
            partial.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not partial.exists()


def test_cli_prints_one_line_for_an_unguarded_full_disk_write(monkeypatch, capsys):
    def app():
        raise OSError(errno.ENOSPC, "No space left on device", "runs/demo/ppo/metrics.jsonl")

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: runs/demo/ppo/metrics.jsonl: No space left on device; free some space or write "
                   "elsewhere\n")


def test_cli_keeps_the_traceback_of_other_os_errors(monkeypatch):
    def app():
        raise OSError(errno.EACCES, "Permission denied", "x")

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(PermissionError):
        cli.main()


def test_free_space_is_read_on_the_nearest_existing_directory(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: asked.append(Path(path)) or Usage(3, 2, 1))
    assert checkpoint._free_bytes(tmp_path / "not" / "yet") == 1
    assert asked == [tmp_path]


def test_embedded_conversion_guards_the_writes_not_the_load(monkeypatch, tmp_path):
    """A full disk while saving the converted model is one OutputError naming the model cache; a load that fails
    (even with an ENOSPC-looking error, on a nearly full disk) is passed through, not called a full disk."""
    import transformers

    from tether.models import embedded

    _free(monkeypatch, 2**20)  # 1 MiB free: out_of_space would accept torch's errno-less failure here

    class _Saver:
        config = object()  # no quantization_config to clear

        def save_pretrained(self, out_dir):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _Saver())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: _Saver())
    with pytest.raises(OutputError, match=rf"^{tmp_path}: no space left on the device while writing the converted m"):
        embedded._convert_gguf(tmp_path / "m.gguf", tmp_path / "staged", tmp_path, "the converted m")

    def failing_load(*args, **kwargs):
        raise RuntimeError("unexpected pos 4096 vs 1024")  # what torch says without an errno

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", failing_load)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        embedded._convert_gguf(tmp_path / "m.gguf", tmp_path / "staged", tmp_path, "the converted m")
