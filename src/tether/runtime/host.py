"""What machine a timing was measured on, and how fast its matrix multiplies ran at the time.

A wall time means little without its machine: the same demo stage (SFT, byte-identical model) has taken 451 s
and 821 s on "the 2-core dev CPU", which was a CPU with AMX on some days and an AVX2 EPYC on others. So every
pipeline stage saves the host it ran on beside its seconds (`pipeline._settle`), the summary and the report
carry the host of the run and a fresh fp32 matmul rate, and the benchmarks write both into their results.

    host_info()                 -> {"cpu": "AMD EPYC", "cpu_isa": "AVX2", "cpus": 2, "gpus": [], ...}
    host_label(host_info(), 1)  -> "AMD EPYC (AVX2), 2 CPUs, 1 thread"
    matmul_gflops()             -> 95.2   (fp32, this process's threads; ~0.3 s)
"""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

from tether.runtime.workers import cpu_threads

CPUINFO = Path("/proc/cpuinfo")
MATRIX_FLAGS = ("amx_bf16", "avx512_bf16")
"""cpuinfo flags of bf16 matrix units, which change what bf16 is worth here (docs/ppo.md, "bf16 on this CPU")."""


def parse_cpuinfo(text: str) -> tuple[str | None, set[str]]:
    """(model name, flags) of the first processor in a /proc/cpuinfo text; (None, set()) where it has neither."""
    model, flags = None, set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def host_info() -> dict:
    """The CPU model, the vector instruction set torch dispatches to, bf16 matrix units, the CPUs this process may
    use, the GPUs, and the versions that set the speed."""
    import torch
    import transformers

    try:
        model, flags = parse_cpuinfo(CPUINFO.read_text())
    except OSError:  # not Linux
        model, flags = None, set()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"cpu": model or platform.processor() or platform.machine() or "unknown",
            "cpu_isa": torch.backends.cpu.get_cpu_capability(),
            "bf16_matrix_units": sorted(flags & set(MATRIX_FLAGS)),
            "cpus": cpu_threads(), "gpus": gpus, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def host_label(info: dict, threads: int | None = None) -> str:
    """One line for a log or a table: "AMD EPYC (AVX2), 2 CPUs[, 1 thread][, GPU: name ×k]"; "+AMX" where it has AMX."""
    isa = (info.get("cpu_isa") or "?") + ("+AMX" if "amx_bf16" in info.get("bf16_matrix_units", []) else "")
    parts = [f"{info.get('cpu', 'unknown')} ({isa})", f"{info.get('cpus', '?')} CPUs"]
    if threads is not None:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    gpus = info.get("gpus") or []
    if gpus:
        parts.append(f"GPU: {gpus[0]}" + (f" ×{len(gpus)}" if len(gpus) > 1 else ""))
    return ", ".join(parts)


def matmul_gflops(n: int = 1024, seconds: float = 0.3) -> float:
    """fp32 GFLOP/s of an n×n matmul on this process's intra-op threads, timed for about `seconds` after one
    warm-up: how fast the CPU runs right now (another tenant, a throttled core and a different CPU all show)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    count, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or count < 2:
        a @ b
        count += 1
    return 2 * n**3 * count / elapsed / 1e9


def timed_elsewhere(summary: dict) -> dict[str, str]:
    """The stages of a pipeline summary whose seconds were measured on another host than the run's (reused from an
    earlier run elsewhere): {stage: its host, or "an unrecorded host"}. {} for a summary without hosts."""
    if not isinstance(summary.get("host"), dict):
        return {}
    here = host_label(summary["host"])
    hosts = summary.get("timing_hosts") or {}
    return {key.removesuffix("_s"): hosts.get(key) or "an unrecorded host" for key in summary.get("timings", {})
            if any(_THREADS.sub("", part) != here for part in (hosts.get(key) or "?").split("; "))}  # labels: "A; B"


_THREADS = re.compile(r", \d+ threads?\b")
"""The thread count in a stage's label (`host_label(info, threads)`): the same host ran it with other threads."""
