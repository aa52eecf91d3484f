"""`tether eval compare`: two policies on one prompt set, a win rate under a judge, and the health metrics
of each (docs/evaluation.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tether.errors import TetherError


def eval_compare_cmd(a: str = typer.Option(..., help="Policy A: model dir, embedded name or HF id."),
                     b: str = typer.Option(..., help="Policy B (the baseline)."),
                     prompts: Path = typer.Option(..., help="Prompt file (demo-task meta enables gold metrics)."),
                     judge: str = typer.Option("gold", help="gold | rm | a labels file of rows {prompt, choice: "
                                                            "a|b|tie} (from --export-pairs)."),
                     reward_model: Path | None = typer.Option(None, help="Reward model dir: the rm judge and the "
                                                                         "proxy reward of both policies."),
                     reference: str | None = typer.Option(None, help="Reference policy: KL of A and B to it, on "
                                                                     "their own temperature-1 samples."),
                     rm_pairs: Path | None = typer.Option(None, help="Preference file: also report the reward "
                                                                     "model's accuracy on it."),
                     out: Path = typer.Option(Path("compare.json"), help="Output JSON (+ _samples.jsonl)."),
                     export_pairs: Path | None = typer.Option(None, help="Write A/B responses for annotators "
                                                                         "(add 'choice' and pass as --judge)."),
                     samples: int = typer.Option(4, help="Temperature-1 samples per prompt for self-similarity "
                                                         "and KL (0 = none)."),
                     limit: int = typer.Option(0, help="Use the first N prompts (0 = all)."),
                     max_new_tokens: int = typer.Option(64),
                     seed: int = typer.Option(0)) -> None:
    """Compare policy A with policy B: win rate (ties half, 95% CI), gold/proxy reward, KL, length, EOS, diversity."""
    if judge not in ("gold", "rm") and not Path(judge).is_file():
        raise TetherError(f"--judge: {judge!r} is not 'gold', 'rm' or an existing labels file")
    if (judge == "rm" or rm_pairs) and reward_model is None:
        raise TetherError(f"{'--judge rm' if judge == 'rm' else '--rm-pairs'} needs --reward-model DIR")
    if reward_model is not None and not reward_model.is_dir():
        raise TetherError(f"--reward-model {reward_model}: no such directory")
    if reference and samples < 1:
        raise TetherError("--reference needs --samples >= 1 (KL is measured on the policies' own samples)")
    from rich.console import Console
    from rich.table import Table

    from tether.data.validate import load_records
    from tether.eval import comparison as cmp
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer

    rows, _ = load_records(prompts, "prompt")
    rows = rows[:limit] if limit else rows
    if judge == "gold" and not cmp.has_gold_meta(rows):
        raise TetherError(f"{prompts}: --judge gold needs demo-task prompts (meta with 'answer'); "
                          "use --judge rm or a labels file")
    tokenizer = load_tokenizer(a)
    models = {"a": freeze(load_causal_lm(a, tokenizer)), "b": freeze(load_causal_lm(b, tokenizer))}
    outputs = {side: cmp.collect_outputs(spec, models[side], tokenizer, rows, samples, max_new_tokens, seed,
                                         show_progress=True) for side, spec in (("a", a), ("b", b))}
    if export_pairs:
        n = cmp.export_pairs(export_pairs, rows, [g.text for g in outputs["a"].greedy],
                             [g.text for g in outputs["b"].greedy])
        typer.echo(f"wrote {n} A/B pairs for annotators to {export_pairs}")
    kl = None
    if reference:
        from tether.eval.evaluate import kl_of_generations

        ref = freeze(load_causal_lm(reference, tokenizer))
        kl = {side: kl_of_generations(models[side], ref, tokenizer, [g for s in outputs[side].samples for g in s])
              for side in ("a", "b")}
    rm = rm_tokenizer = None
    if reward_model is not None:
        from tether.models.scalar_head import ScalarHeadModel

        rm = freeze(ScalarHeadModel.from_pretrained(reward_model))
        rm_tokenizer = load_tokenizer(str(reward_model))
    report = cmp.compare_policies(rows, outputs["a"], outputs["b"], judge, policy_tokenizer=tokenizer,
                                  reward_model=rm, rm_tokenizer=rm_tokenizer, kl=kl)
    if rm_pairs:
        from tether.eval.reward_eval import evaluate_reward_model

        pairs, _ = load_records(rm_pairs, "preference")
        rm_report = evaluate_reward_model(rm, rm_tokenizer, pairs, max_length=512)
        report["reward_model"] = {k: v for k, v in rm_report.items() if k != "reliability"}
    report["settings"] = {"a": a, "b": b, "prompts": str(prompts), "reward_model": str(reward_model or ""),
                          "reference": reference, "samples_per_prompt": samples, "max_new_tokens": max_new_tokens,
                          "seed": seed}
    cmp.write_comparison(out, report, rows, outputs["a"], outputs["b"])

    table = Table(title=f"A vs B on {len(rows)} prompts")
    for col in ("metric", "A", "B"):
        table.add_column(col)
    for row in cmp.format_comparison(report):
        table.add_row(*row)
    Console().print(table)
    w = report["win_rate"]
    extra = f"; {w['unlabelled']} prompts unlabelled" if w["unlabelled"] else ""
    typer.echo(f"win rate A vs B ({report['judge']}): {w['a_vs_b']:.1%} (95% CI {w['ci_low']:.1%}–{w['ci_high']:.1%}; "
               f"{w['wins']}W/{w['ties']}T/{w['losses']}L of {w['n']}{extra})")
    if "reward_model" in report:
        r = report["reward_model"]
        typer.echo(f"reward model on {r['n_pairs']} pairs of {rm_pairs}: accuracy {r['accuracy']:.1%}, "
                   f"ECE {r['ece']:.3f}")
    typer.echo(f"wrote {out} ({json.dumps(report['a_minus_b'])} = A − B)")
