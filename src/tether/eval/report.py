"""The run report: `runs/<name>/report.json` + a self-contained `report.html` (plots embedded as base64 PNG, drawn by
`eval/report_plots.py`).

    tether report runs/demo

Built only from files a run already wrote (no model is loaded):

| section | read from |
|---|---|
| policy table: gold, win rate vs SFT, proxy reward, KL, length, diversity | `eval/policies.json` (or `summary.json`), |
|   | `summary.json` `kl_to_sft`, `bon*/result.json`, `ppo*/result.json` |
| PPO curves: reward, KL, β, response length per step | `ppo*/metrics.jsonl` (keys: `PPO_SERIES`) |
| reward model: held-out accuracy, ECE, reliability diagram, accuracy curve | `eval/rm.json`, `rm/metrics.jsonl` |
| KL health verdict per policy | the policy table's KL (`tether.rl.kl.kl_health`, the rule PPO logs) |
| gold score vs KL (best-of-N curve and every policy) | the policy table, `bon*/result.json` `curve_gold` |
| sample responses side by side | `eval/policies_samples.jsonl`, `bon*/eval_samples.jsonl` |
| sampled evaluation: K samples per prompt at temperature T, win rate vs SFT's samples | `eval/sampled.json`, |
|   | `summary.json` `sampled` (K, T) and `best_of_n.vs_sft_sampled` |

A section whose inputs are absent says so instead of failing; a file that exists but is malformed is a
DataError naming it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from tether.errors import DataError
from tether.rl.kl import kl_health
from tether.runtime.host import host_label, timed_elsewhere
from tether.runtime.provenance import is_moved_aside

DPO_FAMILY = ("dpo", "ipo", "kto", "orpo", "simpo")

PPO_SERIES: dict[str, tuple[str, ...]] = {
    "reward": ("reward/score", "objective/scores", "reward/mean"),
    "gold": ("reward/gold",),
    "kl": ("kl/sequence", "objective/kl", "policy/kl"),
    "beta": ("kl/beta", "reward/kl_coef", "objective/kl_coef", "kl_coef"),
    "length": ("gen/response_len", "gen/response_length"),
}
"""PPO metrics.jsonl keys plotted, first present wins: RM reward (with the gold reward, when the demo judge was
logged, on the same axes), sequence KL to the reference, β (kl_coef), response length. tether's PPO logs the
first key of each; the others read runs of other trainers."""

KL_SCALE = ("Rule of thumb for the sequence KL(π ‖ π_ref) in nats (tether.rl.kl.kl_health, also logged by PPO): "
            "< 1 barely changed; 1–2 moving; 2–6 healthy; 6–10 high (watch the gold score); 10–20 drifting (the "
            "proxy is likely being hacked); > 20 catastrophic; < −1 means sampler and trainer logprobs disagree.")

SAMPLE_PROMPTS = 8
"""Prompts shown in the side-by-side samples section."""


# ---------------------------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object")
        rows.append(row)
    return rows


def _kind(name: str) -> str:
    low = name.lower()
    if low in ("base", "sft"):
        return low
    if low.startswith("ppo"):
        return "ppo"
    if low.startswith(("bon", "best")):
        return "best-of-n"
    if low.split("-")[0] in DPO_FAMILY:
        return "dpo family"
    return "other"


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _policy_row(name: str, summary: dict) -> dict:
    row = {"name": name, "kind": _kind(name)}
    for key in ("n", "gold_mean", "gold_ci", "correct_rate", "eos_rate", "mean_tokens", "distinct_1", "distinct_2",
                "repetition", "proxy_mean"):
        if key in summary:
            row[key] = summary[key]
    return row


def _win_vs_sft(name: str, comparisons: dict) -> dict | None:
    """`<name>_vs_sft`, or `sft_vs_<name>` seen from the other side (rate 1 − r, interval mirrored)."""
    if name == "sft":
        return None
    c = comparisons.get(f"{name}_vs_sft")
    if c:
        return dict(c, baseline="sft")
    c = comparisons.get(f"sft_vs_{name}")
    if c:
        return {"win_rate": 1 - c["win_rate"], "ci_low": 1 - c["ci_high"], "ci_high": 1 - c["ci_low"],
                "wins": c["losses"], "ties": c["ties"], "losses": c["wins"], "baseline": "sft"}
    return None


def _series(rows: list[dict], keys: tuple[str, ...]) -> dict | None:
    for key in keys:
        points = [(r["step"], _finite(r[key])) for r in rows if key in r and "step" in r]
        points = [(s, v) for s, v in points if v is not None]
        if points:
            return {"key": key, "steps": [s for s, _ in points], "values": [v for _, v in points]}
    return None


def _ppo_section(run: Path) -> dict:
    files = sorted(p for p in run.glob("ppo*/metrics.jsonl") if not is_moved_aside(p.parent))
    if not files:
        return {"present": False, "reason": f"no PPO run in {run} (no ppo*/metrics.jsonl): nothing to plot"}
    path = files[0]
    rows = _read_jsonl(path)
    series = {name: _series(rows, keys) for name, keys in PPO_SERIES.items()}
    if not any(series.values()):
        return {"present": False, "reason": f"{path} holds none of the PPO keys "
                f"{', '.join(k for keys in PPO_SERIES.values() for k in keys)}"}
    return {"present": True, "metrics_file": str(path), "steps": max((r.get("step", 0) for r in rows), default=0),
            "series": series}


def _rm_section(run: Path) -> dict:
    path = run / "eval" / "rm.json"
    if not path.is_file():
        return {"present": False, "reason": f"no reward-model evaluation ({path} is absent)"}
    rm = _read_json(path)
    for key in ("accuracy", "reliability"):
        if key not in rm:
            raise DataError(f"{path}: missing field '{key}' (expected the output of `tether eval rm --out`)")
    section = {"present": True, "file": str(path),
               **{k: rm.get(k) for k in ("n_pairs", "accuracy", "margin", "ece", "length_corr", "rm_prefers_longer",
                                         "labels_prefer_longer", "reliability", "by")}}
    metrics = run / "rm" / "metrics.jsonl"
    if metrics.is_file():
        section["training_accuracy"] = _series(_read_jsonl(metrics), ("eval/accuracy",))
    return section


def _bon_runs(run: Path) -> list[tuple[Path, dict]]:
    """Every best-of-N run dir's result, except those a re-run moved aside (`<dir>.stale`)."""
    return [(p.parent, _read_json(p)) for p in sorted(run.glob("bon*/result.json")) if not is_moved_aside(p.parent)]


def collect(run_dir: Path) -> dict:
    """Everything the report shows, as plain JSON-ready data (no plots)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"{run}: no such run directory")
    summary_path, policies_path = run / "summary.json", run / "eval" / "policies.json"
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    evaluated = _read_json(policies_path) if policies_path.is_file() else summary
    if not isinstance(evaluated, dict) or not isinstance(evaluated.get("policies", {}), dict):
        raise DataError(f"{policies_path if policies_path.is_file() else summary_path}: 'policies' must be an object")
    comparisons = {**summary.get("comparisons", {}), **evaluated.get("comparisons", {})}
    kl_to_sft = summary.get("kl_to_sft", {})
    notes: list[str] = []

    policies: dict[str, dict] = {}
    for name, s in evaluated.get("policies", {}).items():
        row = _policy_row(name, s)
        row["win_vs_sft"] = _win_vs_sft(name, comparisons)
        if name in kl_to_sft:
            row["kl"] = {"value": kl_to_sft[name].get("kl"), "ci": [kl_to_sft[name].get("kl_ci_low"),
                                                                   kl_to_sft[name].get("kl_ci_high")],
                         "how": "measured (k1, own samples) to SFT"}
        policies[name] = row
    for ppo_result in sorted(run.glob("ppo*/result.json")):
        res = _read_json(ppo_result)
        name = ppo_result.parent.name
        kl = _finite(res.get("kl/sequence")) if isinstance(res, dict) else None
        if name in policies and "kl" not in policies[name] and kl is not None:
            policies[name]["kl"] = {"value": kl, "how": "last PPO rollout (kl/sequence)"}
    bon_curves = []
    for bon_dir, res in _bon_runs(run):
        if not isinstance(res, dict) or "n" not in res or "kl_analytic" not in res:
            raise DataError(f"{bon_dir / 'result.json'}: not a best-of-N result (needs 'n' and 'kl_analytic')")
        name = res.get("name") or bon_dir.name
        row = policies.get(name) or _policy_row(name, res.get("eval", {}))
        row["kind"] = "best-of-n"
        if row.get("proxy_mean") is None and res.get("scorer") == "rm":
            row["proxy_mean"] = res.get("proxy_after")
        row["kl"] = ({"value": res["kl_to_policy"], "how": f"analytic log N − (N−1)/N, N = {res['n']}, to the "
                      f"policy at T {res.get('temperature')}, plus E[log π_T − log π] on the picks"}
                     if _finite(res.get("kl_to_policy")) is not None else
                     {"value": res["kl_analytic"], "how": f"analytic log N − (N−1)/N, N = {res['n']}"})
        if res.get("kl_coef"):
            row["kl"]["how"] += (f"; the pick maximises score + {res['kl_coef']:g}·log π(y|x), for which the figure "
                                 "is still an upper bound")
        if row.get("win_vs_sft") is None and res.get("vs_baseline"):
            base = res.get("baseline_spec") or res.get("baseline") or "baseline"
            label = "sft" if Path(str(base)).name == "sft" or base == "sft" else str(base)
            row["win_vs_sft"] = dict(res["vs_baseline"], baseline=f"{label} (greedy)")
        policies[name] = row
        if res.get("curve_gold"):
            bon_curves.append({"name": name, "points": res["curve_gold"]})
    if not policies:
        notes.append(f"no evaluated policies in {run} (eval/policies.json, summary.json or bon*/result.json)")

    health = []
    for name, row in policies.items():
        kl = _finite((row.get("kl") or {}).get("value"))
        if kl is not None:
            verdict = kl_health(kl)
            row["kl_verdict"] = verdict.verdict
            health.append({"policy": name, "kl": kl, "verdict": verdict.verdict, "explanation": verdict.message,
                           "warn": verdict.warn, "how": row["kl"]["how"]})

    return {"run": run.name, "run_dir": str(run), "policies": list(policies.values()), "kl_health": health,
            "sampled": _sampled_section(run, summary), "bon_curves": bon_curves, "ppo": _ppo_section(run),
            "reward_model": _rm_section(run), "samples": _samples(run), "experiments": _experiments(run),
            "timings": _timings_section(summary_path, summary), "notes": notes}


def _timings_section(path: Path, summary: dict) -> dict | None:
    """Each stage's seconds and the host they were measured on (`summary.json` `timings`, `timing_hosts`, `host`);
    None when the summary has no timings."""
    timings = summary.get("timings")
    if timings is None:
        return None
    if not isinstance(timings, dict):
        raise DataError(f"{path}: 'timings' must be an object of stage seconds")
    host = summary.get("host") if isinstance(summary.get("host"), dict) else None
    hosts, reused = summary.get("timing_hosts") or {}, set(summary.get("reused", []))
    if not isinstance(hosts, dict):
        raise DataError(f"{path}: 'timing_hosts' must be an object of stage hosts")
    elsewhere = timed_elsewhere(summary)
    stages = [{"stage": key.removesuffix("_s"), "seconds": _finite(seconds), "host": hosts.get(key),
               "reused": key.removesuffix("_s") in reused, "elsewhere": key.removesuffix("_s") in elsewhere}
              for key, seconds in timings.items()]
    return {"host": host_label(host) if host else None, "matmul_gflops": (host or {}).get("matmul_gflops"),
            "workers": summary.get("workers", 1), "stages": stages}


def _sampled_section(run: Path, summary: dict) -> dict | None:
    """The sampled evaluation (eval/sampled.json): each policy's row with its win rate vs SFT's samples, and
    best-of-N's pick against SFT's samples; None when the run has none."""
    path = run / "eval" / "sampled.json"
    if not path.is_file():
        return None
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("policies"), dict):
        raise DataError(f"{path}: 'policies' must be an object")
    settings = summary.get("sampled") or {}
    rows = []
    for name, s in data["policies"].items():
        row = _policy_row(name, s)
        row["win_vs_sft"] = _win_vs_sft(name, data.get("comparisons", {}))
        rows.append(row)
    bon = summary.get("best_of_n") or {}
    if bon.get("vs_sft_sampled"):
        rows.append({"name": bon.get("name") or f"bon{bon.get('n')}", "kind": "best-of-n",
                     "win_vs_sft": dict(bon["vs_sft_sampled"], baseline="sft samples")})
    return {"samples_per_prompt": settings.get("samples_per_prompt"), "temperature": settings.get("temperature"),
            "prompts": settings.get("prompts"), "policies": rows}


def _experiments(run: Path) -> list[dict]:
    """Each finished `tether experiment` under <run>/experiments/: title, command, table, findings, plot files."""
    found = []
    for path in sorted(run.glob("experiments/*/result.json")):
        res = _read_json(path)
        if not isinstance(res, dict) or "experiment" not in res:
            raise DataError(f"{path}: not an experiment result (needs 'experiment')")
        found.append({"name": res["experiment"], "title": res.get("title", res["experiment"]),
                      "command": res.get("command"), "wall_seconds": res.get("wall_seconds"),
                      "table": res.get("table", []), "findings": res.get("findings", []),
                      "figures": [str(path.parent / f) for f in res.get("figures", [])]})
    return found


def _samples(run: Path) -> dict:
    """The first SAMPLE_PROMPTS prompts with every policy's response (and gold score) side by side."""
    by_prompt: dict[str, dict[str, dict]] = {}
    order: list[str] = []
    sources = [run / "eval" / "policies_samples.jsonl"]
    sources += [bon_dir / "eval_samples.jsonl" for bon_dir, _ in _bon_runs(run)]
    for i, path in enumerate(sources):
        if not path.is_file():
            continue
        bon_name = None if i == 0 else path.parent.name
        for row in _read_jsonl(path):
            prompt = row.get("prompt")
            if not isinstance(prompt, str):
                raise DataError(f"{path}: every row needs a 'prompt' string")
            if prompt not in by_prompt:
                if len(order) >= SAMPLE_PROMPTS:
                    continue
                by_prompt[prompt] = {}
                order.append(prompt)
            for name, s in row.items():
                if name == "prompt" or not isinstance(s, dict):
                    continue
                if bon_name is not None and name == "baseline":
                    continue  # the baseline's greedy responses are already shown under its own name
                by_prompt[prompt].setdefault(name, {"response": s.get("response", ""), "gold": s.get("gold")})
    names: list[str] = []
    for p in order:
        names += [n for n in by_prompt[p] if n not in names]
    return {"policies": names, "rows": [{"prompt": p, "responses": by_prompt[p]} for p in order]}


# ---------------------------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #666; font-style: italic; }
.verdict-healthy { color: #1a7f37; font-weight: bold; } .verdict-catastrophic, .verdict-drifting, .verdict-negative {
  color: #c62828; font-weight: bold; } .verdict-high { color: #b26a00; font-weight: bold; }
img.plot { max-width: 100%; border: 1px solid #eee; }
td.resp { max-width: 260px; white-space: pre-wrap; font-size: 0.85em; }
"""


def _f(x: Any, spec: str = ".3f") -> str:
    v = _finite(x)
    return "—" if v is None else format(v, spec)


def _img(figures: dict[str, str], name: str, alt: str) -> str:
    return f'<img class="plot" id="plot-{name}" alt="{html.escape(alt)}" src="data:image/png;base64,{figures[name]}">'


def _gold_cell(p: dict) -> str:
    ci = p.get("gold_ci") or [None, None]
    return "—" if _finite(p.get("gold_mean")) is None else f"{_f(p['gold_mean'])} ({_f(ci[0])}, {_f(ci[1])})"


def _win_cell(w: dict | None) -> str:
    if not w:
        return "—"
    vs = html.escape(str(w.get("baseline", "sft")))
    right = (f"; right {w['correct_gained']} gained / {w['correct_lost']} lost" if "correct_gained" in w else "")
    if "win_rate_ceiling" in w:  # where the baseline is already at the top score, the best possible is a tie
        right += f"; at most {_f(w['win_rate_ceiling'], '.0%')} possible"
    return (f"{_f(w['win_rate'], '.1%')} ({_f(w['ci_low'], '.0%')}–{_f(w['ci_high'], '.0%')}) "
            f"<small>{w['wins']}W/{w['ties']}T/{w['losses']}L vs {vs}{right}</small>")


def _sampled_table(sampled: dict) -> str:
    head = ("policy", "kind", "gold score (95% CI)", "correct", "win rate vs SFT's samples (95% CI, by prompt)",
            "proxy reward (RM)", "tokens", "EOS rate")
    out = ['<table id="sampled-table"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for p in sampled["policies"]:
        cells = [html.escape(p["name"]), p["kind"], _gold_cell(p), _f(p.get("correct_rate"), ".1%"),
                 _win_cell(p.get("win_vs_sft")), _f(p.get("proxy_mean")), _f(p.get("mean_tokens"), ".1f"),
                 _f(p.get("eos_rate"), ".1%")]
        out.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i > 1 else f"<td>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _policy_table(report: dict) -> str:
    head = ("policy", "kind", "gold score (95% CI)", "correct", "win rate vs SFT (95% CI)", "proxy reward (RM)",
            "KL", "KL verdict", "tokens", "EOS rate", "distinct-1", "distinct-2", "repetition")
    out = ['<table id="policy-table"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for p in report["policies"]:
        gold, win = _gold_cell(p), _win_cell(p.get("win_vs_sft"))
        kl = p.get("kl") or {}
        kl_cell = f"{_f(kl.get('value'))} <small>{html.escape(kl.get('how', ''))}</small>" if kl else "—"
        verdict = p.get("kl_verdict")
        verdict_cell = f'<span class="verdict-{verdict.replace(" ", "-")}">{verdict}</span>' if verdict else "—"
        cells = [html.escape(p["name"]), p["kind"], gold, _f(p.get("correct_rate"), ".1%"), win,
                 _f(p.get("proxy_mean")), kl_cell, verdict_cell, _f(p.get("mean_tokens"), ".1f"),
                 _f(p.get("eos_rate"), ".1%"), _f(p.get("distinct_1")), _f(p.get("distinct_2")),
                 _f(p.get("repetition"))]
        out.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i > 1 else f"<td>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(report: dict, figures: dict[str, str]) -> str:
    """The report page: one self-contained HTML document (inline CSS, plots as data: URIs, no scripts)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>tether report: {e(report['run'])}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>tether run report: {e(report['run'])}</h1>",
             f"<p class='note'>Built from the files in {e(report['run_dir'])} by <code>tether report</code>. Gold "
             "scores are the demo task's programmatic judge on held-out prompts (greedy decoding); win rates count "
             "ties as half, with a Wilson 95% interval. Metric definitions: docs/evaluation.md.</p>"]
    for note in report["notes"]:
        parts.append(f"<p class='note'>{e(note)}</p>")
    parts.append("<h2 id='policies'>Policies</h2>")
    parts.append(_policy_table(report) if report["policies"] else "<p class='note'>No evaluated policies.</p>")
    if "gold_vs_kl" in figures:
        parts.append(_img(figures, "gold_vs_kl", "gold score vs KL"))
    sampled = report.get("sampled")
    if sampled:
        parts.append("<h2 id='sampled'>Sampled evaluation</h2>")
        k = sampled["samples_per_prompt"]
        parts.append(f"<p class='note'>Each policy sampled {e(str(k))} response{'s' * (k != 1)} per "
                     f"prompt at temperature {e(str(sampled['temperature']))} on "
                     f"{'the first ' + e(str(sampled['prompts'])) + ' of ' if sampled.get('prompts') else ''}the same "
                     "held-out prompts; the i-th "
                     "sample of a policy meets the i-th of SFT, and the interval treats prompts as the units. "
                     "Best-of-N's pick meets each of SFT's samples. This is the policy PPO optimised (its rollout "
                     "temperature); the table above compares greedy answers, SFT's best single answer.</p>")
        parts.append(_sampled_table(sampled))

    parts.append("<h2 id='kl-health'>KL health</h2>")
    if report["kl_health"]:
        parts.append("<table><tr><th>policy</th><th>KL (nats)</th><th>verdict</th><th>meaning</th></tr>")
        for k in report["kl_health"]:
            parts.append(f"<tr><td>{e(k['policy'])}</td><td class='num'>{k['kl']:.3f}</td>"
                         f"<td><span class='verdict-{k['verdict'].replace(' ', '-')}'>{e(k['verdict'])}</span></td>"
                         f"<td>{e(k['explanation'])} <small>({e(k['how'])})</small></td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p class='note'>No policy has a KL measurement.</p>")
    parts.append(f"<p class='note'>{e(KL_SCALE)}</p>")

    parts.append("<h2 id='ppo'>PPO training</h2>")
    ppo = report["ppo"]
    if ppo["present"]:
        parts.append(f"<p>{ppo['steps']} steps, from {e(ppo['metrics_file'])}.</p>")
        parts.append(_img(figures, "ppo_curves", "PPO training curves: reward, KL, beta, length"))
    else:
        parts.append(f"<p class='note' id='ppo-absent'>{e(ppo['reason'])}.</p>")

    parts.append("<h2 id='reward-model'>Reward model</h2>")
    rm = report["reward_model"]
    if rm["present"]:
        longer = ""
        if rm.get("rm_prefers_longer") is not None:
            longer = (f"; prefers the longer response {_f(rm['rm_prefers_longer'], '.1%')} of the time "
                      f"(labels: {_f(rm['labels_prefer_longer'], '.1%')})")
        parts.append(f"<p>Held-out accuracy <b>{_f(rm['accuracy'], '.1%')}</b> on {rm.get('n_pairs')} pairs, mean "
                     f"margin {_f(rm.get('margin'))}, ECE {_f(rm.get('ece'))}, corr(score, length) "
                     f"{_f(rm.get('length_corr'))}{longer}.</p>")
        for key, groups in (rm.get("by") or {}).items():
            cells = "".join(f"<tr><td>{e(g)}</td><td>{d['n']}</td><td>{_f(d['accuracy'], '.1%')}</td></tr>"
                            for g, d in groups.items())
            parts.append(f"<table class='rm-by'><tr><th>{e(key)}</th><th>pairs</th><th>accuracy</th></tr>"
                         f"{cells}</table>")
        parts.append(_img(figures, "rm_reliability", "reward model reliability diagram"))
        if "rm_accuracy" in figures:
            parts.append(_img(figures, "rm_accuracy", "reward model accuracy during training"))
    else:
        parts.append(f"<p class='note'>{e(rm['reason'])}.</p>")

    if report.get("experiments"):
        parts.append("<h2 id='experiments'>Experiments</h2>")
        for ex in report["experiments"]:
            parts.append(f"<h3 id='experiment-{e(ex['name'])}'>{e(ex['title'])}</h3>")
            if ex.get("command"):
                wall = f" ({ex['wall_seconds']:.0f} s)" if isinstance(ex.get("wall_seconds"), int | float) else ""
                parts.append(f"<p><code>{e(ex['command'])}</code>{wall}</p>")
            if ex["table"]:
                cols = list(ex["table"][0])
                parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
                for row in ex["table"]:
                    parts.append("<tr>" + "".join(
                        f"<td class='num'>{_f(row.get(c))}</td>" if isinstance(row.get(c), float)
                        else f"<td>{e(str(row.get(c, '')))}</td>" for c in cols) + "</tr>")
                parts.append("</table>")
            if ex["findings"]:
                parts.append("<ul>" + "".join(f"<li>{e(f)}</li>" for f in ex["findings"]) + "</ul>")
            for fig in ex["figures"]:
                if Path(fig).is_file():
                    data = base64.b64encode(Path(fig).read_bytes()).decode("ascii")
                    parts.append(f"<img class='plot' src='data:image/png;base64,{data}' alt='{e(Path(fig).name)}'>")

    timings = report.get("timings")
    if timings:
        parts.append("<h2 id='timings'>Where the time went</h2>")
        gflops = _finite(timings.get("matmul_gflops"))
        rate = f"; fp32 matmul {gflops:.0f} GFLOP/s at the start" if gflops else ""
        overlap = (f" After SFT the stages ran in {timings['workers']} worker processes side by side, so their seconds "
                   "overlap." if (timings.get("workers") or 1) > 1 else "")
        parts.append(f"<p class='note'>This run's host: {e(timings['host'] or 'not recorded')}{rate}. A stage's time "
                     f"depends on the CPU it ran on: compare times only across one host.{overlap}</p>")
        parts.append("<table id='timings-table'><tr><th>stage</th><th>seconds</th><th>measured on</th></tr>")
        for row in timings["stages"]:
            mark = "" if not row["reused"] else " (reused from an earlier run" + (
                ", another host)" if row["elsewhere"] else ")")
            parts.append(f"<tr><td>{e(row['stage'])}{e(mark)}</td><td>{_f(row['seconds'], '.0f')}</td>"
                         f"<td>{e(row['host'] or 'not recorded')}</td></tr>")
        parts.append("</table>")

    parts.append("<h2 id='samples'>Sample responses</h2>")
    samples = report["samples"]
    if samples["rows"]:
        parts.append("<table id='samples-table'><tr><th>prompt</th>" +
                     "".join(f"<th>{e(n)}</th>" for n in samples["policies"]) + "</tr>")
        for row in samples["rows"]:
            cells = []
            for n in samples["policies"]:
                r = row["responses"].get(n)
                cells.append(f"<td class='resp'>{e(r['response'])}<br><small>gold {_f(r.get('gold'), '+.2f')}"
                             "</small></td>" if r else "<td>—</td>")
            parts.append(f"<tr><td class='resp'><b>{e(row['prompt'])}</b></td>{''.join(cells)}</tr>")
        parts.append("</table>")
    else:
        parts.append("<p class='note'>No sample responses in this run.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Build and write report.json and report.html (into `run_dir` unless `out_dir`); returns both paths."""
    from tether.eval.report_plots import make_figures

    report = collect(run_dir)
    figures = make_figures(report)
    report["plots"] = sorted(figures)
    out = Path(out_dir) if out_dir else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=True))
    html_path.write_text(render_html(report, figures))
    return json_path, html_path
