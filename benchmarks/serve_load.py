"""Serving load test (loopback only): batched serving vs one request at a time, on the embedded model.

    .venv/bin/python benchmarks/serve_load.py [--requests 200] [--concurrency 16] [--max-tokens 32]
                                              [--model smollm2-135m-instruct] [--modes batched,single]

For each mode it starts `tether serve` as a subprocess on 127.0.0.1 — `batched` with --max-batch-size 32,
`single` with --max-batch-size 1 (the worker runs one request per generate call) — sends one warm-up request,
then the same `--requests` chat completions (demo-task held-out prompts, temperature 0.7, top_p 0.95,
max_tokens `--max-tokens`) from `--concurrency` client threads, and stops the server. Reports per mode:
5xx count, other errors, requests/s, generated tokens/s (from each response's usage.completion_tokens),
p50/p99 latency (client side), and the mean requests per model batch (from the server's /metrics); then
the batched/single throughput ratio. The request timeout is raised to 1800 s so a slow, shared CPU shows
up as latency rather than as 504s. On a CPU shared with other jobs, `--torch-threads 1` avoids thread
oversubscription, and `--single-requests` shortens the slow baseline (its rate is what is compared).
Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from common import write_result

from tether.data.demo_task import make_demo_task

ROOT = Path(__file__).resolve().parents[1]
MODES = {"batched": 32, "single": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def start_server(model: str, max_batch_size: int, torch_threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli.main", "serve", "--policy", model, "--port", str(port),
                             "--max-batch-size", str(max_batch_size), "--request-timeout", "1800",
                             "--max-queue", "1024", "--torch-threads", str(torch_threads), "--log-level", "warning"],
                            cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} during startup")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the server did not come up within 5 minutes")


def one_request(client: httpx.Client, url: str, messages, max_tokens: int) -> tuple[int, float, int]:
    """(status, seconds, completion tokens); status 0 for a transport error."""
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0.7, "top_p": 0.95}
    start = time.perf_counter()
    try:
        response = client.post(f"{url}/v1/chat/completions", json=body, timeout=3600)
    except httpx.TransportError:
        return 0, time.perf_counter() - start, 0
    seconds = time.perf_counter() - start
    tokens = response.json()["usage"]["completion_tokens"] if response.status_code == 200 else 0
    return response.status_code, seconds, tokens


def mean_batch_requests(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    total = re.search(r'^tether_batch_requests_sum\{kind="generate"\} (\S+)$', text, re.MULTILINE)
    count = re.search(r'^tether_batch_requests_count\{kind="generate"\} (\S+)$', text, re.MULTILINE)
    return float(total.group(1)) / float(count.group(1)) if total and count else float("nan")


def run_mode(name: str, model: str, prompts: list, concurrency: int, max_tokens: int, torch_threads: int) -> dict:
    proc, url = start_server(model, MODES[name], torch_threads)
    try:
        with httpx.Client(limits=httpx.Limits(max_connections=concurrency + 4)) as client:
            one_request(client, url, prompts[0], max_tokens)  # warm-up, not counted
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                results = list(pool.map(lambda m: one_request(client, url, m, max_tokens), prompts))
            wall = time.perf_counter() - start
        batch = mean_batch_requests(url)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    ok = [r for r in results if r[0] == 200]
    latencies = [r[1] for r in ok]
    return {
        "mode": name, "max_batch_size": MODES[name], "requests": len(results), "ok": len(ok),
        "5xx": sum(1 for r in results if r[0] >= 500),
        "other_errors": sum(1 for r in results if r[0] != 200 and r[0] < 500),
        "wall_s": round(wall, 2), "requests_per_s": round(len(ok) / wall, 3),
        "tokens_per_s": round(sum(r[2] for r in ok) / wall, 2), "completion_tokens": sum(r[2] for r in ok),
        "p50_latency_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_latency_s": round(percentile(latencies, 99), 3) if latencies else None,
        "mean_requests_per_batch": round(batch, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--modes", default="batched,single", help="comma-separated: batched, single")
    parser.add_argument("--single-requests", type=int, default=0,
                        help="Requests for the single mode (0 = --requests); its rate is compared, not its total.")
    parser.add_argument("--torch-threads", type=int, default=0, help="Passed to tether serve (0 = torch's default).")
    args = parser.parse_args()
    rows = make_demo_task(seed=0).eval_prompts
    results = {}
    for name in args.modes.split(","):
        n = args.single_requests if name == "single" and args.single_requests else args.requests
        prompts = [rows[i % len(rows)].prompt for i in range(n)]
        results[name] = run_mode(name, args.model, prompts, args.concurrency, args.max_tokens, args.torch_threads)
        r = results[name]
        print(f"{name:8s} (max batch {r['max_batch_size']:2d}): {r['ok']}/{r['requests']} ok, 5xx {r['5xx']}, "
              f"other errors {r['other_errors']}, {r['requests_per_s']:.2f} req/s, {r['tokens_per_s']:.1f} tok/s, "
              f"p50 {r['p50_latency_s']:.2f} s, p99 {r['p99_latency_s']:.2f} s, "
              f"{r['mean_requests_per_batch']:.1f} requests/batch, wall {r['wall_s']:.1f} s", flush=True)
    summary = {"settings": vars(args), "results": results}
    if "batched" in results and "single" in results:
        speedup = results["batched"]["requests_per_s"] / results["single"]["requests_per_s"]
        summary["speedup_requests_per_s"] = round(speedup, 2)
        print(f"speed-up of batched over one-at-a-time: {speedup:.2f}x requests/s, "
              f"{results['batched']['tokens_per_s'] / results['single']['tokens_per_s']:.2f}x tokens/s")
    print(f"wrote {write_result('serve_load', summary)}")


if __name__ == "__main__":
    main()
