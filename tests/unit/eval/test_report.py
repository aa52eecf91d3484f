"""The run report from a synthetic run dir (hand-made JSON files): its data, its HTML, and its rendering in
headless Chromium (skipped where Chromium is absent)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from synthetic_run import make_run
from tether.errors import DataError
from tether.eval.report import collect, write_report


def test_collect_builds_every_section(tmp_path):
    report = collect(make_run(tmp_path))
    rows = {p["name"]: p for p in report["policies"]}
    assert list(rows) == ["base", "sft", "dpo", "bon16"]
    assert rows["dpo"]["kind"] == "dpo family" and rows["bon16"]["kind"] == "best-of-n"
    assert rows["dpo"]["kl"]["value"] == 3.1 and rows["dpo"]["kl_verdict"] == "healthy"
    assert rows["bon16"]["kl"]["value"] == 1.835 and rows["bon16"]["kl_verdict"] == "moving"
    assert rows["bon16"]["win_vs_sft"]["win_rate"] == 0.8 and rows["bon16"]["win_vs_sft"]["baseline"] == "sft (greedy)"
    assert rows["bon16"]["proxy_mean"] == 1.4 and rows["bon16"]["gold_mean"] == 0.6
    assert rows["sft"]["win_vs_sft"] is None
    base = rows["base"]["win_vs_sft"]  # from sft_vs_base (0.75, CI 0.55–0.95, 3W/0T/1L) seen from base's side
    assert base["win_rate"] == pytest.approx(0.25) and (base["wins"], base["losses"]) == (1, 3)
    assert (base["ci_low"], base["ci_high"]) == (pytest.approx(0.05), pytest.approx(0.45))
    assert [k["policy"] for k in report["kl_health"]] == ["dpo", "bon16"]
    ppo = report["ppo"]
    assert ppo["present"] and ppo["steps"] == 10
    assert ppo["series"]["kl"]["key"] == "kl/sequence" and ppo["series"]["beta"]["values"] == [0.05] * 10
    assert ppo["series"]["gold"]["values"][-1] == pytest.approx(0.5)
    assert report["reward_model"]["accuracy"] == 0.925
    assert report["reward_model"]["by"]["correctness"]["right over wrong"] == {"n": 30, "accuracy": 0.9}
    assert report["reward_model"]["training_accuracy"]["values"] == pytest.approx([0.7, 0.8, 0.9])
    samples = report["samples"]
    assert samples["policies"] == ["base", "sft", "dpo", "bon16"]  # bon's 'baseline' column is not repeated
    assert samples["rows"][1]["responses"]["bon16"]["response"] == "best Capital of France?"


def test_without_ppo_the_section_says_so_and_html_escapes(tmp_path):
    run = make_run(tmp_path, ppo=False)
    json_path, html_path = write_report(run)
    report = json.loads(json_path.read_text())
    assert not report["ppo"]["present"] and "no PPO run" in report["ppo"]["reason"]
    page = html_path.read_text()
    assert 'id="ppo-absent"' in page.replace("'", '"') and "no PPO run" in page
    assert "&lt;b&gt;What is 2 plus 2?&lt;/b&gt;" in page and "<b>What is 2 plus 2?</b></td>" in page
    assert "ppo_curves" not in report["plots"] and {"rm_reliability", "gold_vs_kl"} <= set(report["plots"])
    assert "<td>right over wrong</td><td>30</td><td>90.0%</td>" in page  # the RM's accuracy per kind of pair
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(report["plots"])


def test_malformed_inputs_are_one_line_errors(tmp_path):
    run = make_run(tmp_path)
    (run / "ppo" / "metrics.jsonl").write_text('{"step": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"ppo/metrics.jsonl:2: not valid JSON"):
        collect(run)
    (run / "ppo" / "metrics.jsonl").unlink()
    (run / "eval" / "rm.json").write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(DataError, match=r"rm.json: missing field 'reliability'"):
        collect(run)
    with pytest.raises(DataError, match="no such run directory"):
        collect(tmp_path / "nope")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-probe', JSON.stringify({
    widths: imgs.map(function (i) { return i.complete ? i.naturalWidth : -1; }),
    ids: imgs.map(function (i) { return i.id; }),
    tableRows: document.querySelectorAll('#policy-table tr').length }));
});
</script></body>"""


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed "
                    "(apt-get install -y chromium); the report's browser rendering check needs it")
def test_report_renders_in_headless_chromium_with_table_and_plots(tmp_path):
    _, html_path = write_report(make_run(tmp_path))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    # 1. Screenshot of the real page (no script added).
    shot = tmp_path / "report.png"
    proc = subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1280,2400",
                           html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))  # (H, W, C)
    assert pixels.shape[1] == 1280 and float(pixels.std()) > 0.05  # not a blank page
    # 2. The same page plus a probe script: after load, did every <img> decode (naturalWidth > 0)?
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", PROBE))
    proc = subprocess.run([_chromium(), *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert found, proc.stdout[:500]
    probe_data = json.loads(found.group(1).replace("&quot;", '"'))
    assert set(probe_data["ids"]) == {"plot-gold_vs_kl", "plot-ppo_curves", "plot-rm_reliability", "plot-rm_accuracy"}
    assert all(w > 0 for w in probe_data["widths"]), probe_data
    assert probe_data["tableRows"] == 1 + 4  # header + base, sft, dpo, bon16


def test_ppo_row_takes_its_kl_from_the_evaluation_else_from_the_last_rollout(tmp_path):
    run = make_run(tmp_path)
    policies = json.loads((run / "eval" / "policies.json").read_text())
    policies["policies"]["ppo"] = dict(policies["policies"]["dpo"], name="ppo")
    (run / "eval" / "policies.json").write_text(json.dumps(policies))
    (run / "ppo" / "result.json").write_text(json.dumps({"steps": 10, "kl/sequence": 12.5}))
    row = next(p for p in collect(run)["policies"] if p["name"] == "ppo")
    assert row["kind"] == "ppo" and row["kl"]["value"] == 12.5 and row["kl_verdict"] == "drifting"
    summary = json.loads((run / "summary.json").read_text())
    summary["kl_to_sft"]["ppo"] = {"kl": 4.0, "kl_ci_low": 3.0, "kl_ci_high": 5.0}
    (run / "summary.json").write_text(json.dumps(summary))
    row = next(p for p in collect(run)["policies"] if p["name"] == "ppo")
    assert row["kl"]["value"] == 4.0 and row["kl_verdict"] == "healthy"  # the held-out measurement wins


def test_a_tempered_best_of_n_row_reports_the_kl_to_the_policy_itself(tmp_path):
    run = make_run(tmp_path)
    result = json.loads((run / "bon-16" / "result.json").read_text())
    (run / "bon-16" / "result.json").write_text(json.dumps(result | {"temperature": 0.7, "tempered_shift": 0.4,
                                                                     "kl_to_policy": 2.235}))
    row = next(p for p in collect(run)["policies"] if p["name"] == "bon16")
    assert row["kl"]["value"] == 2.235 and "T 0.7" in row["kl"]["how"]


def test_a_regularised_best_of_n_gets_its_own_row_and_a_stale_run_none(tmp_path):
    run = make_run(tmp_path)
    result = json.loads((run / "bon-16" / "result.json").read_text())
    shutil.copytree(run / "bon-16", run / "bon-16.stale")  # what a re-run moved aside: never reported
    (run / "bon-16.stale" / "result.json").write_text(json.dumps(result | {"kl_analytic": 9.9}))
    shutil.copytree(run / "bon-16", run / "bon-16-kl0.1")
    (run / "bon-16-kl0.1" / "result.json").write_text(json.dumps(result | {"name": "bon16-kl0.1", "kl_coef": 0.1}))
    rows = {p["name"]: p for p in collect(run)["policies"]}
    assert rows["bon16"]["kl"]["value"] == 1.835 and "log π" not in rows["bon16"]["kl"]["how"]
    assert rows["bon16-kl0.1"]["kind"] == "best-of-n" and "score + 0.1·log π(y|x)" in rows["bon16-kl0.1"]["kl"]["how"]


def test_finished_experiments_get_a_section_with_table_findings_and_plots(tmp_path):
    run = make_run(tmp_path)
    ex = run / "experiments" / "kl-sweep"
    ex.mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    (ex / "kl_sweep.png").write_bytes(png)
    (ex / "result.json").write_text(json.dumps({
        "experiment": "kl-sweep", "title": "KL sweep <β>", "command": "tether experiment kl-sweep",
        "wall_seconds": 12.0, "table": [{"β": "0.02", "gold": 0.25}], "findings": ["KL to SFT falls as β rises: yes"],
        "figures": ["kl_sweep.png"]}))
    json_path, html_path = write_report(run)
    (section,) = json.loads(json_path.read_text())["experiments"]
    assert section["table"] == [{"β": "0.02", "gold": 0.25}] and section["figures"] == [str(ex / "kl_sweep.png")]
    page = html_path.read_text()
    assert "KL sweep &lt;β&gt;" in page and "KL to SFT falls as β rises: yes" in page and "(12 s)" in page
    assert "<td class='num'>0.250</td>" in page
    import base64

    assert base64.b64encode(png).decode("ascii") in page
    (ex / "result.json").write_text(json.dumps({"title": "no name"}))
    with pytest.raises(DataError, match="not an experiment result"):
        collect(run)


def test_sampled_evaluation_gets_its_own_table(tmp_path):
    run = make_run(tmp_path)
    assert collect(run)["sampled"] is None  # a run without eval/sampled.json
    policies = {"sft": {"n": 8, "gold_mean": -0.4, "gold_ci": [-0.6, -0.2], "correct_rate": 0.25},
                "ppo": {"n": 8, "gold_mean": -0.1, "gold_ci": [-0.3, 0.1], "correct_rate": 0.375}}
    cmp = {"win_rate": 0.6875, "ci_low": 0.5, "ci_high": 0.875, "wins": 4, "ties": 3, "losses": 1}
    (run / "eval" / "sampled.json").write_text(json.dumps({"policies": policies, "comparisons": {"ppo_vs_sft": cmp}}))
    summary = json.loads((run / "summary.json").read_text())
    summary["sampled"] = {"samples_per_prompt": 2, "temperature": 1.0}
    summary["best_of_n"] = {"n": 16, "vs_sft_sampled": dict(cmp, win_rate=0.75, win_rate_ceiling=0.8125)}
    (run / "summary.json").write_text(json.dumps(summary))
    sampled = collect(run)["sampled"]
    assert (sampled["samples_per_prompt"], sampled["temperature"]) == (2, 1.0)
    rows = {p["name"]: p for p in sampled["policies"]}
    assert list(rows) == ["sft", "ppo", "bon16"] and rows["sft"]["win_vs_sft"] is None
    assert rows["ppo"]["win_vs_sft"]["win_rate"] == 0.6875 and rows["bon16"]["win_vs_sft"]["win_rate"] == 0.75
    _, html_path = write_report(run)
    page = html_path.read_text()
    table = page[page.index('id="sampled-table"'):]
    assert "68.8% (50%–88%) <small>4W/3T/1L vs sft</small>" in table
    assert "75.0% (50%–88%) <small>4W/3T/1L vs sft samples; at most 81% possible</small>" in table
    (run / "eval" / "sampled.json").write_text(json.dumps({"policies": []}))
    with pytest.raises(DataError, match=r"sampled.json: 'policies' must be an object"):
        collect(run)


def test_timings_name_the_host_each_stage_was_measured_on(tmp_path):
    run = make_run(tmp_path)
    assert collect(run)["timings"] is None  # a summary without timings: no section
    summary = json.loads((run / "summary.json").read_text())
    here = {"cpu": "AMD EPYC", "cpu_isa": "AVX2", "bf16_matrix_units": [], "cpus": 2, "gpus": [], "matmul_gflops": 95.0}
    summary |= {"host": here, "workers": 2, "reused": ["sft"],
                "timings": {"sft_s": 451.2, "rm_s": 300.4, "eval_s": None},
                "timing_hosts": {"sft_s": "Xeon (AVX512+AMX), 2 CPUs, 2 threads",
                                 "rm_s": "AMD EPYC (AVX2), 2 CPUs, 1 thread", "eval_s": "AMD EPYC (AVX2), 2 CPUs"}}
    (run / "summary.json").write_text(json.dumps(summary))
    json_path, html_path = write_report(run)
    timings = json.loads(json_path.read_text())["timings"]
    assert timings["host"] == "AMD EPYC (AVX2), 2 CPUs" and timings["matmul_gflops"] == 95.0
    assert [(s["stage"], s["seconds"], s["reused"], s["elsewhere"]) for s in timings["stages"]] == [
        ("sft", 451.2, True, True), ("rm", 300.4, False, False), ("eval", None, False, False)]
    page = html_path.read_text()
    assert "This run's host: AMD EPYC (AVX2), 2 CPUs; fp32 matmul 95 GFLOP/s at the start." in page
    assert "<tr><td>sft (reused from an earlier run, another host)</td><td>451</td>" \
           "<td>Xeon (AVX512+AMX), 2 CPUs, 2 threads</td></tr>" in page
    assert "<tr><td>eval</td><td>—</td>" in page and "so their seconds overlap" in page
    summary["timing_hosts"] = ["Xeon"]
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DataError, match=r"summary.json: 'timing_hosts' must be an object of stage hosts"):
        collect(run)
    summary["timings"] = [451.2]
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DataError, match=r"summary.json: 'timings' must be an object of stage seconds"):
        collect(run)
