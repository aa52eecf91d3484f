"""`runtime.host`: the machine a timing was measured on — the CPU model and flags read from /proc/cpuinfo, the
one-line label every stage saves beside its seconds, and which stages of a summary were timed elsewhere."""

from __future__ import annotations

import math

import torch

from tether.runtime import host
from tether.runtime.host import host_info, host_label, matmul_gflops, parse_cpuinfo, timed_elsewhere

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile
bogomips\t: 4000.00

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""


def test_parse_cpuinfo_reads_the_first_processors_model_and_flags():
    model, flags = parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    assert parse_cpuinfo("") == (None, set())
    assert parse_cpuinfo("model name\t:\nno colon here\n") == (None, set())  # an empty name is no name


def test_host_info_reads_cpuinfo_and_falls_back_where_there_is_none(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text(CPUINFO)
    monkeypatch.setattr(host, "CPUINFO", fake)
    info = host_info()
    assert info["cpu"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["bf16_matrix_units"] == ["amx_bf16", "avx512_bf16"]
    assert info["cpu_isa"] == torch.backends.cpu.get_cpu_capability() and info["torch"] == torch.__version__
    assert info["cpus"] >= 1 and isinstance(info["gpus"], list)
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "absent")
    info = host_info()
    assert info["cpu"] and info["bf16_matrix_units"] == []  # platform's name, or "unknown"


def test_host_label_names_the_cpu_its_isa_amx_threads_and_gpus():
    epyc = {"cpu": "AMD EPYC", "cpu_isa": "AVX2", "bf16_matrix_units": [], "cpus": 2, "gpus": []}
    assert host_label(epyc) == "AMD EPYC (AVX2), 2 CPUs"
    assert host_label(epyc, 1) == "AMD EPYC (AVX2), 2 CPUs, 1 thread"
    xeon = {"cpu": "Xeon", "cpu_isa": "AVX512", "bf16_matrix_units": ["amx_bf16", "avx512_bf16"], "cpus": 8,
            "gpus": ["NVIDIA H100", "NVIDIA H100"]}
    assert host_label(xeon, 8) == "Xeon (AVX512+AMX), 8 CPUs, 8 threads, GPU: NVIDIA H100 ×2"
    assert host_label(dict(xeon, gpus=["NVIDIA H100"], bf16_matrix_units=["avx512_bf16"])) == \
        "Xeon (AVX512), 8 CPUs, GPU: NVIDIA H100"


def test_timed_elsewhere_names_the_stages_measured_on_another_host():
    here = {"cpu": "AMD EPYC", "cpu_isa": "AVX2", "bf16_matrix_units": [], "cpus": 2, "gpus": []}
    summary = {"host": here,
               "timings": {"sft_s": 451.0, "rm_s": 300.0, "label_s": 200.0, "ppo_s": 500.0, "eval_s": 90.0},
               "timing_hosts": {"sft_s": "Xeon (AVX512+AMX), 2 CPUs, 2 threads",  # reused from a run elsewhere
                                "rm_s": "AMD EPYC (AVX2), 2 CPUs, 1 thread",  # here, in a worker
                                "label_s": "AMD EPYC (AVX2), 2 CPUs, 1 thread; Xeon (AVX512+AMX), 2 CPUs, 1 thread",
                                "ppo_s": None,  # made before hosts were recorded
                                "eval_s": "AMD EPYC (AVX2), 2 CPUs"}}
    assert timed_elsewhere(summary) == {
        "sft": "Xeon (AVX512+AMX), 2 CPUs, 2 threads",
        "label": "AMD EPYC (AVX2), 2 CPUs, 1 thread; Xeon (AVX512+AMX), 2 CPUs, 1 thread",
        "ppo": "an unrecorded host"}
    assert timed_elsewhere({"timings": summary["timings"]}) == {}  # a summary from before hosts: nothing to say
    # a GPU host: the thread count sits before the GPU in a stage's label; other CPU counts are other hosts
    gpu = dict(here, gpus=["NVIDIA H100"])
    assert timed_elsewhere({"host": gpu, "timings": {"sft_s": 1.0, "rm_s": 1.0, "ppo_s": 1.0},
                            "timing_hosts": {"sft_s": "AMD EPYC (AVX2), 2 CPUs, 2 threads, GPU: NVIDIA H100",
                                             "rm_s": "AMD EPYC (AVX2), 24 CPUs, 2 threads, GPU: NVIDIA H100",
                                             "ppo_s": "AMD EPYC (AVX2), 2 CPUs, 2 threads"}}) == {
        "rm": "AMD EPYC (AVX2), 24 CPUs, 2 threads, GPU: NVIDIA H100", "ppo": "AMD EPYC (AVX2), 2 CPUs, 2 threads"}


def test_matmul_gflops_is_a_finite_positive_rate():
    rate = matmul_gflops(n=64, seconds=0.01)
    assert math.isfinite(rate) and rate > 0
