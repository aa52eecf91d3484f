"""The demo pipeline on the embedded default: data → SFT → on-policy labelling → reward model → PPO →
direct preference optimisation (DPO by default; any of the family) → evaluation → best-of-N → report.

Each stage's output is reused when it is complete (its `result.json` / output file exists) and was made from
the same inputs: the stage's resolved config and the files and models it reads are recorded next to it
(`runtime.provenance.StageRecord`), so re-running resumes instead of redoing finished work, and a stage whose
inputs changed (a retrained reward model under a finished PPO run or best-of-N selection, relabelled pairs
under a finished DPO run) is moved aside to `<dir>.stale` and run again. Each policy's evaluation is cached
by its weights' fingerprint (`eval.policy_cache`). A stage that runs saves its seconds (and label counts) beside
its output (`stage_outcome.json`, `<file>.outcome.json`), which a later run that reuses it reports.

With `workers` > 1 (auto on a CPU-only machine) the stages after SFT and the evaluation's generation run first in
worker processes, side by side where their inputs allow (`pipeline_workers`, `runtime.workers`); the serial pass
after them finds every stage finished and assembles the evaluation, summary and report.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tether.data.demo_task import TASK_VERSION, make_demo_task
from tether.data.records import interleave_by
from tether.data.validate import load_records
from tether.errors import ConfigError
from tether.pipeline_tasks import best_of_n_task, label_on_policy, train_task
from tether.runtime.config import load_config
from tether.runtime.provenance import StageRecord, stage_inputs


def default_config_dir() -> Path:
    """$TETHER_CONFIG_DIR, else ./configs/demo, else the repo's configs/demo next to the package source."""
    if os.environ.get("TETHER_CONFIG_DIR"):
        return Path(os.environ["TETHER_CONFIG_DIR"])
    local = Path("configs/demo")
    return local if local.is_dir() else Path(__file__).resolve().parents[2] / "configs" / "demo"


STAGES = ("data", "sft", "label", "rm", "ppo", "preference", "eval", "bon", "report")
"""The demo's stages in order; `DemoOptions.skip` may name ppo, preference and bon."""
OPTIONAL_STAGES = ("ppo", "preference", "bon")


@dataclass
class DemoOptions:
    name: str = "demo"
    """Run name: everything goes to runs/<name>/."""
    runs_dir: str = "runs"
    """Parent of run dirs."""
    seed: int = 0
    """Seed of the demo task and every stage."""
    quick: bool = False
    """Fewer steps and prompts: every stage runs, no quality bars (smoke runs)."""
    label_prompts: int = 300
    """Preference prompts whose SFT samples are labelled by the gold judge (on-policy RM training pairs)."""
    eval_label_prompts: int = 150
    """Held-out eval prompts whose SFT samples make the RM's held-out pairs."""
    samples_per_prompt: int = 4
    """Responses sampled per prompt for labelling."""
    rm_templated_pairs: int = 200
    """Templated pairs (a seeded sample of the demo task's 800, `data/rm_templated.jsonl`) in the reward model's
    training mix; the rest is the on-policy pairs. The templated pairs teach style (concise over padded) but
    they are not what the policy writes: on one clone (docs/reward-model.md) all 800 gave 68.9 % held-out
    accuracy, 200 gave 72.7 %, none 74.4 % (and a stronger pull towards short replies, corr(score, length)
    -0.81 with more on-policy pairs). 0: on-policy pairs only. DPO trains on all of them."""
    preference_losses: list[str] = field(default_factory=lambda: ["dpo"])
    """Direct preference losses trained from the SFT policy and evaluated (any of dpo, ipo, kto, orpo, simpo)."""
    eval_prompts: int = 300
    """Held-out prompts every policy is evaluated on (greedy, gold judge); the first ones of eval_prompts.jsonl
    (all 300 of the demo task by default: the PPO bar asks for >= 200 prompts, or 2 samples per prompt)."""
    eval_samples: int = 1
    """Responses per prompt of the sampled evaluation: SFT and each trained policy sampled at `eval_temperature`
    on the eval prompts, win rates vs SFT's samples (the i-th sample meets the i-th; prompts are the CI's units)
    and best-of-N vs SFT's samples. 0: greedy evaluation only."""
    eval_temperature: float = 1.0
    """Sampling temperature of the sampled evaluation (PPO's rollout temperature: the policy PPO optimised)."""
    sampled_prompts: int = 100
    """Prompts of the sampled evaluation: the first ones of the evaluated prompts (a prefix spans the ten
    families). With 100 (one sample each) the sampled part of the demo's evaluation, with the reward model's
    held-out pairs after it, took 132 s against 284 s on all 300 (fresh clones at 5a26362 and 388b66d, 2-core
    CPU), and each trained policy's KL to SFT is still measured on 100 of its own samples; the greedy evaluation
    keeps all `eval_prompts`."""
    kl_prompts: int = 50
    """Held-out prompts on which each trained policy's KL to the SFT policy is estimated on a separate draw of
    its own samples — only without a temperature-1 sampled evaluation; with one (the default) the KL is measured
    on those eval_samples × sampled_prompts samples."""
    bon_n: int = 16
    """N of the best-of-N stage."""
    bon_prompts: int = 50
    """Held-out prompts best-of-N is evaluated on (the first ones of the eval set)."""
    bon_kl_coef: float = 0.0
    """β of a regularised best-of-N pick: argmax of RM score + β·log π_SFT(y|x) (docs/best-of-n.md); 0 = plain."""
    bon_temperature: float = 0.5
    """Temperature best-of-N samples its N candidates at. At 1 the analytic KL log N − (N−1)/N is to the SFT policy
    itself; at another it is to the tempered policy, and the KL to SFT is estimated as that plus the mean
    log π_T − log π of the picks (docs/best-of-n.md, "At another temperature"). 0.5: of 1, 0.7 and 0.5 the best
    on 100 RL-training prompts (67.0 % against 61.5 % at 1), and on the demo's 50 held-out prompts 76.0 % against
    68.0 % (docs/best-of-n.md, "Temperature 0.5 in the demo")."""
    skip: list[str] = field(default_factory=list)
    """Optional stages not to run: any of ppo, preference, bon."""
    keep_checkpoints: bool = False
    """Keep a training stage's resume checkpoints (weights + optimizer state, ~1.6 GB per stage on the embedded
    model) once the stage has finished. They only serve to resume an interrupted stage, and a finished one is
    reused from its saved model, so by default they are deleted (the demo run dir: 2.1 GB instead of ~7.4).
    true: keep them, e.g. to evaluate PPO's with `tether experiment overoptimization --ppo_runs`."""
    config_dir: str = field(default_factory=lambda: str(default_config_dir()))
    """Where the stage YAML configs live (see `default_config_dir`)."""
    workers: int = 0
    """Processes the stages after SFT run in, side by side where their inputs allow (`runtime.workers`): DPO and
    the evaluations beside the reward model and PPO. Each gets CPUs // workers intra-op threads. 1: one stage
    after another in this process, on all threads. 0 (auto): 2 on a CPU-only machine with 2 or more CPUs, else
    1. On the 2-core CPU two one-thread processes do 1.42x the decode and 1.13x the training work of one
    two-thread process; the demo's stages after SFT took 39:28 in two workers against 46:50 one after another
    on the same hour, 1.19x (docs/architecture.md)."""

    def resolved_workers(self) -> int:
        """`workers`, with 0 resolved (auto)."""
        if self.workers:
            return self.workers
        import torch

        from tether.runtime.workers import cpu_threads

        return 2 if not torch.cuda.is_available() and cpu_threads() >= 2 else 1

    @property
    def kl_from_samples(self) -> bool:
        """KL to SFT measured on the temperature-1 sampled evaluation (else on a draw of `kl_prompts` prompts)."""
        return bool(self.eval_samples) and self.eval_temperature == 1.0

    def validate(self) -> None:
        from tether.losses.preference import PREFERENCE_LOSSES

        unknown = sorted(set(self.skip) - set(OPTIONAL_STAGES))
        if unknown:
            raise ConfigError(f"skip: unknown stage {', '.join(unknown)}; optional: {', '.join(OPTIONAL_STAGES)}")
        unknown = [x for x in self.preference_losses if x not in PREFERENCE_LOSSES]
        if unknown:
            raise ConfigError(f"preference_losses: unknown loss {', '.join(unknown)}; "
                              f"available: {', '.join(PREFERENCE_LOSSES)}")
        for name in ("label_prompts", "eval_label_prompts", "eval_prompts", "sampled_prompts", "kl_prompts", "bon_n",
                     "bon_prompts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0: auto), got {self.workers}")
        if not (math.isfinite(self.bon_kl_coef) and self.bon_kl_coef >= 0):
            raise ConfigError(f"bon_kl_coef must be a finite number >= 0, got {self.bon_kl_coef}")
        if not (math.isfinite(self.bon_temperature) and self.bon_temperature > 0):
            raise ConfigError(f"bon_temperature must be a finite number > 0, got {self.bon_temperature}")
        if self.rm_templated_pairs < 0:
            raise ConfigError(f"rm_templated_pairs must be >= 0, got {self.rm_templated_pairs}")
        if self.samples_per_prompt < 2:
            raise ConfigError(f"samples_per_prompt must be >= 2 (pairs are made from one prompt's samples), "
                              f"got {self.samples_per_prompt}")
        if self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be >= 0, got {self.eval_samples}")
        if self.eval_temperature <= 0:
            raise ConfigError(f"eval_temperature must be > 0, got {self.eval_temperature}")
        used = {"kl_prompts": not self.kl_from_samples, "bon_prompts": "bon" not in self.skip,
                "sampled_prompts": bool(self.eval_samples)}
        for name in (n for n, is_used in used.items() if is_used):  # the first prompts of the evaluation set
            if getattr(self, name) > self.eval_prompts:
                raise ConfigError(f"{name} ({getattr(self, name)}) must be <= eval_prompts ({self.eval_prompts}): "
                                  f"it takes the first of the evaluated prompts")
        missing = [f"{stage}.yaml" for stage in ("sft", "rm", "ppo")
                   if not (Path(self.config_dir) / f"{stage}.yaml").is_file()]
        if missing:
            raise ConfigError(f"config_dir: {self.config_dir} has no {', '.join(missing)} (a relative path is read "
                              f"from the current directory)")


# `--quick`: every stage runs on a few small batches (a smoke run of the whole pipeline, no quality bars).
# Sized so the demo finishes in about 5 minutes on a 2-core CPU (one step of the 135M model over 16
# sequences takes ~15-30 s there), so batches are 4-8 rows and responses 32 tokens.
QUICK_OVERRIDES = {
    "sft": ["--train.max_steps", "2", "--train.batch_size", "8", "--train.micro_batch_size", "8",
            "--train.eval_steps", "0", "--train.save_steps", "0", "--data.max_eval_examples", "8"],
    "rm": ["--train.max_steps", "2", "--train.batch_size", "4", "--train.micro_batch_size", "4",
           "--train.eval_steps", "0", "--train.save_steps", "0", "--data.max_eval_pairs", "8",
           "--data.max_norm_examples", "8"],
    "ppo": ["--train.max_steps", "1", "--rollout.prompts_per_step", "2", "--rollout.samples_per_prompt", "4",
            "--rollout.max_new_tokens", "32", "--train.batch_size", "8", "--ppo.num_epochs", "1",
            "--train.save_steps", "0", "--ppo.sample_table_steps", "0"],
    "preference": ["--train.max_steps", "2", "--train.batch_size", "4", "--train.micro_batch_size", "4",
                   "--data.max_eval_pairs", "4"],
}
QUICK_SIZES = {"label_prompts": (8, 8), "label_tokens": 32, "eval_prompts": 8, "kl_prompts": 4, "eval_tokens": 32,
               "bon": (4, 4)}
"""Prompts sampled for on-policy labels (train, held-out) and their response tokens; prompts evaluated (greedy,
and sampled for KL) and their response tokens; best-of-N (N, prompts)."""


def write_templated_sample(source: Path, dest: Path, n: int, seed: int) -> Path:
    """`n` rows of `source` drawn without replacement (seeded), in file order, written to `dest` byte for byte
    (rewritten only when they differ); all of them when `n` is at least the file's row count."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = sorted(random.Random(seed).sample(range(len(lines)), n)) if n < len(lines) else range(len(lines))
    text = "".join(lines[i] for i in keep)
    if not dest.exists() or dest.read_text(encoding="utf-8") != text:
        dest.write_text(text, encoding="utf-8")
    return dest


def demo_data_record(seed: int) -> dict:
    """The data stage's record: the seed, and the task's version as a top-level entry. (As a config field it
    would not count: a config field an old record lacks is taken as added since, with unchanged behaviour, so a
    version-1 data dir, recorded with the seed alone, would be reused.)"""
    return {**stage_inputs({"seed": seed}), "task_version": TASK_VERSION}


def _reusable(output: Path, record: dict, log, *, is_file: bool = False) -> bool:
    """`StageRecord.reuse` of a stage's run dir (finished when it holds result.json) or single output file."""
    return StageRecord(output, done_marker=None if is_file else "result.json").reuse(record, log)


@dataclass
class _Stage:
    """One stage after SFT: what it writes, what it is made from, how it runs."""

    key: str
    """Its timing key ("rm_s", "dpo_s", "label:<file>")."""
    progress: str
    """Its entry in STAGES (the progress line)."""
    output: Path
    """Its run dir (finished when it holds result.json) or, with is_file, its single output file."""
    record: Callable[[], dict]
    """Its provenance record (`stage_inputs`), computed once its inputs exist."""
    task: Callable[[], dict | None]
    """Runs it (picklable, for a worker); returns extra outcome fields (label counts) or None."""
    message: str
    """What running it does."""
    reuse_message: str
    needs: tuple[str, ...] = ()
    """Keys of the stages (and evaluations) whose outputs it reads."""
    is_file: bool = False


class _Progress:
    """One line per stage: `[k/N] stage: message (elapsed)`; each stage's own progress bar shows its ETA."""

    def __init__(self, log):
        self.log, self.t0 = log, time.perf_counter()

    def __call__(self, stage: str, message: str) -> None:
        k = STAGES.index(stage) + 1
        elapsed = time.perf_counter() - self.t0
        self.log(f"[{k}/{len(STAGES)}] {stage}: {message}  (pipeline elapsed {elapsed / 60:.1f} min)")


def _settle(key: str, output: Path, t0: float, reused: list[str], timings: dict, hosts: dict, host: str, *,
            is_file: bool = False, extra: dict | None = None, prune_checkpoints: bool = False) -> dict:
    """Put a stage's seconds in `timings[key]`, the host they were measured on in `hosts[key]`, and return its
    outcome. A stage that ran saves its seconds, `host` (`runtime.host.host_label`, with its threads) and `extra`
    (e.g. label counts) beside its output (`StageRecord.save_outcome`); a reused one took no time in this run, so
    it reports what it took when it ran, and where, read back from there (None where no outcome was saved, or it
    predates hosts). `prune_checkpoints`: the stage has finished, so its resume checkpoints are deleted."""
    record = StageRecord(output, done_marker=None if is_file else "result.json")
    if prune_checkpoints and record.done():
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
    if key in reused:
        outcome = record.load_outcome()
    else:
        outcome = {"seconds": time.perf_counter() - t0, "host": host, **(extra or {})}
        record.save_outcome(outcome)
    timings[key], hosts[key] = outcome.get("seconds"), outcome.get("host")
    return outcome


def run_demo(opts: DemoOptions, log=print) -> dict:
    import torch

    from tether.eval.bon_policy import rejudge_best_of_n
    from tether.eval.evaluate import ScoredSample, align_to, compare, summarise, write_eval
    from tether.eval.policy_cache import evaluate_cached
    from tether.eval.report import write_report as write_run_report
    from tether.eval.reward_eval import HELD_OUT_SCORES, evaluate_reward_model, write_report
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel
    from tether.runtime.host import host_info, host_label, matmul_gflops
    from tether.train import dpo, ppo, reward, sft

    opts.validate()
    run = Path(opts.runs_dir) / opts.name
    here = host_info() | {"matmul_gflops": round(matmul_gflops(), 1)}
    log(f"host: {host_label(here)}; fp32 matmul {here['matmul_gflops']:.0f} GFLOP/s now (stage times depend on both)")
    host = host_label(here, torch.get_num_threads())  # where a stage run in this process is timed
    timings: dict[str, float] = {}
    hosts: dict[str, str | None] = {}  # timing key -> the host (and threads) its seconds were measured on
    reused: list[str] = []  # timing keys of stages reused from an earlier run (their time is carried over below)
    quick = opts.quick
    stage = _Progress(log)

    # 1. Demo task data (deterministic in the seed).
    t0 = time.perf_counter()
    data_dir = run / "data"
    if StageRecord(data_dir, done_marker="manifest.json").reuse(demo_data_record(opts.seed), log):
        stage("data", f"reusing {data_dir}")
        reused.append("data_s")
    else:
        stage("data", f"generating the demo task into {data_dir}")
        make_demo_task(seed=opts.seed).write(data_dir)
    _settle("data_s", data_dir, t0, reused, timings, hosts, host)

    # 2. SFT.
    t0 = time.perf_counter()
    sft_dir = run / "sft"
    overrides = ["--output_dir", str(sft_dir), "--data.train_file", str(data_dir / "sft.jsonl"),
                 "--train.seed", str(opts.seed)]
    if quick:
        overrides += QUICK_OVERRIDES["sft"]
    sft_cfg = load_config(sft.SFTConfig, str(Path(opts.config_dir) / "sft.yaml"), overrides)
    if _reusable(sft_dir, stage_inputs(sft_cfg, root=run, data=data_dir / "sft.jsonl"), log):
        stage("sft", f"reusing the finished run in {sft_dir}")
        reused.append("sft_s")
    else:
        stage("sft", f"{sft_cfg.train.max_steps} steps × {sft_cfg.train.batch_size} examples → {sft_dir}")
        sft.train(sft_cfg)
    _settle("sft_s", sft_dir, t0, reused, timings, hosts, host, prune_checkpoints=not opts.keep_checkpoints)

    # 3-6 and 8. The stages after SFT (`_Stage`s in pipeline order): on-policy labelling (SFT samples labelled by
    #    the gold judge, on train and held-out prompts), the reward model, PPO, the direct preference losses and
    #    best-of-N. With more than one worker they run first in worker processes, side by side where their inputs
    #    allow, with the evaluation's generation (`pipeline_workers`); the serial pass below then finds them finished.
    n_train, n_eval = QUICK_SIZES["label_prompts"] if quick else (opts.label_prompts, opts.eval_label_prompts)
    pref_prompts = [r for r in _as_prompts(load_records(data_dir / "preference.jsonl", "preference")[0])]
    eval_rows = interleave_by(load_records(data_dir / "eval_prompts.jsonl", "prompt")[0])  # prefixes span families
    for name, wanted, have in (("label_prompts", n_train, len(pref_prompts)),
                               ("eval_label_prompts", n_eval, len(eval_rows)),
                               ("eval_prompts", QUICK_SIZES["eval_prompts"] if quick else opts.eval_prompts,
                                len(eval_rows))):
        if wanted > have:
            raise ConfigError(f"{name}: {wanted} asked, the demo task has {have} ({data_dir})")
    pref_prompts = pref_prompts[:n_train]
    label_tokens = QUICK_SIZES["label_tokens"] if quick else 64
    stages: list[_Stage] = []
    for fname, rows, seed, source in (("onpolicy_pairs.jsonl", pref_prompts, opts.seed + 1, "preference.jsonl"),
                                      ("eval_pairs.jsonl", eval_rows[:n_eval], opts.seed + 2, "eval_prompts.jsonl")):
        record = partial(stage_inputs, {"prompts": len(rows), "samples_per_prompt": opts.samples_per_prompt,
                                        "seed": seed, "max_new_tokens": label_tokens},
                         root=run, policy=sft_dir, prompts=data_dir / source)
        stages.append(_Stage(
            f"label:{fname}", "label", data_dir / fname, record,
            partial(label_on_policy, sft_dir, rows, data_dir / fname, opts.samples_per_prompt, seed,
                    max_new_tokens=label_tokens),
            f"sampling {opts.samples_per_prompt} SFT responses for {len(rows)} prompts, gold-judge pairs",
            f"reusing {data_dir / fname}", is_file=True))
    label_keys = tuple(st.key for st in stages)

    rm_dir = run / "rm"  # from the SFT backbone, on templated + on-policy pairs; held out: eval-prompt pairs
    templated = write_templated_sample(data_dir / "preference.jsonl", data_dir / "rm_templated.jsonl",
                                       opts.rm_templated_pairs, opts.seed + 3)
    overrides = ["--output_dir", str(rm_dir), "--model.name", str(sft_dir), "--train.seed", str(opts.seed),
                 "--data.train_files", f"[{f'{templated}, ' if opts.rm_templated_pairs else ''}"
                                       f"{data_dir / 'onpolicy_pairs.jsonl'}]",
                 "--data.eval_file", str(data_dir / "eval_pairs.jsonl"),
                 "--data.norm_file", str(data_dir / "sft.jsonl")]
    if quick:
        overrides += QUICK_OVERRIDES["rm"]
    rm_cfg = load_config(reward.RMConfig, str(Path(opts.config_dir) / "rm.yaml"), overrides)
    stages.append(_Stage(
        "rm_s", "rm", rm_dir,
        partial(stage_inputs, rm_cfg, root=run, policy=sft_dir, templated=templated,
                onpolicy=data_dir / "onpolicy_pairs.jsonl", held_out=data_dir / "eval_pairs.jsonl",
                norm=data_dir / "sft.jsonl"),
        partial(train_task, reward.train, rm_cfg),
        f"{rm_cfg.train.max_steps} steps × {rm_cfg.train.batch_size} pairs → {rm_dir}",
        f"reusing the finished run in {rm_dir}", needs=label_keys))

    ppo_dir = run / "ppo"  # from the SFT policy against the reward model, KL-tethered to the SFT policy
    if "ppo" not in opts.skip:
        overrides = ["--output_dir", str(ppo_dir), "--model.name", str(sft_dir), "--reward_model", str(rm_dir),
                     "--data.prompts_file", str(data_dir / "rl_prompts.jsonl"), "--train.seed", str(opts.seed)]
        if quick:
            overrides += QUICK_OVERRIDES["ppo"]
        ppo_cfg = load_config(ppo.PPOConfig, str(Path(opts.config_dir) / "ppo.yaml"), overrides)
        stages.append(_Stage(
            "ppo_s", "ppo", ppo_dir,
            partial(stage_inputs, ppo_cfg, root=run, policy=sft_dir, rm=rm_dir, prompts=data_dir / "rl_prompts.jsonl"),
            partial(train_task, ppo.train, ppo_cfg),
            f"{ppo_cfg.train.max_steps} iterations × {ppo_cfg.rollout.prompts_per_step} prompts × "
            f"{ppo_cfg.rollout.samples_per_prompt} samples ({ppo_cfg.advantage_estimator}) → {ppo_dir}",
            f"reusing the finished run in {ppo_dir}", needs=("rm_s",)))

    pref_runs = {}  # direct preference optimisation from the SFT policy, on the same templated + on-policy pairs
    for loss in () if "preference" in opts.skip else opts.preference_losses:
        out = run / f"dpo-{loss}"
        overrides = ["--output_dir", str(out), "--loss", loss, "--model.name", str(sft_dir), "--train.seed",
                     str(opts.seed), "--data.train_files",
                     f"[{data_dir / 'preference.jsonl'}, {data_dir / 'onpolicy_pairs.jsonl'}]"]
        if quick:
            overrides += QUICK_OVERRIDES["preference"]
        dpo_cfg = load_config(dpo.DPOConfig, str(_preference_config(Path(opts.config_dir), loss)), overrides)
        stages.append(_Stage(
            f"{loss}_s", "preference", out,
            partial(stage_inputs, dpo_cfg, root=run, policy=sft_dir, templated=data_dir / "preference.jsonl",
                    onpolicy=data_dir / "onpolicy_pairs.jsonl"),
            partial(train_task, dpo.train, dpo_cfg),
            f"{loss}: {dpo_cfg.train.max_steps} steps × {dpo_cfg.train.batch_size} → {out}",
            f"{loss}: reusing the finished run in {out}", needs=("label:onpolicy_pairs.jsonl",)))
        pref_runs[loss] = out

    rows = eval_rows[: QUICK_SIZES["eval_prompts"] if quick else opts.eval_prompts]
    bon_n, bon_prompts = QUICK_SIZES["bon"] if quick else (opts.bon_n, opts.bon_prompts)
    # best-of-N from the SFT policy under the reward model; a regularised pick (bon_kl_coef) or another temperature
    # than 1 gets a dir of its own
    bon_name = (f"bon{bon_n}" + (f"-kl{opts.bon_kl_coef:g}" if opts.bon_kl_coef else "")
                + (f"-t{opts.bon_temperature:g}" if opts.bon_temperature != 1 else ""))
    bon_dir = run / ("bon-" + bon_name[3:])
    if "bon" not in opts.skip:
        stages.append(_Stage(
            "bon_s", "bon", bon_dir,
            partial(stage_inputs, {"n": bon_n, "prompts": bon_prompts, "seed": opts.seed,
                                   "kl_coef": opts.bon_kl_coef, "temperature": opts.bon_temperature}, root=run,
                    policy=sft_dir, rm=rm_dir, prompts=data_dir / "eval_prompts.jsonl"),
            partial(best_of_n_task, sft_dir, rm_dir, rows[:bon_prompts], bon_n, bon_dir, run, opts.seed, bon_name,
                    opts.bon_kl_coef, opts.bon_temperature),
            f"best-of-{bon_n} on {bon_prompts} held-out prompts → {bon_dir}", f"reusing {bon_dir}",
            needs=("rm_s", "eval:sft")))

    # The evaluation's work: every policy greedy on held-out prompts, then SFT and each trained policy sampled.
    kl_rows = [] if opts.kl_from_samples else rows[: QUICK_SIZES["kl_prompts"] if quick else opts.kl_prompts]
    trained = ({"ppo": ppo_dir} if "ppo" not in opts.skip else {}) | {loss: out for loss, out in pref_runs.items()}
    sampled_rows = rows[: opts.sampled_prompts]  # the sampled evaluation: the first of the evaluated prompts
    policies = {"base": sft_cfg.model.name, "sft": str(sft_dir)} | {k: str(v) for k, v in trained.items()}
    eval_tokens = QUICK_SIZES["eval_tokens"] if quick else 64
    evaluations = [(name, rows, kl_rows, 0) for name in policies]
    if opts.eval_samples:
        evaluations += [(name, sampled_rows, [], opts.eval_samples) for name in ["sft", *trained]]

    workers = opts.resolved_workers()
    ran: dict = {}  # key -> JobResult of what the workers made in this run
    if workers > 1:
        from tether.pipeline_workers import worker_jobs
        from tether.runtime.workers import cpu_threads, run_jobs

        threads = max(1, cpu_threads() // workers)
        log(f"      stages after SFT: {workers} worker processes × {threads} threads; their logs in {run / 'logs'}")
        ran = run_jobs(worker_jobs(stages, evaluations, policies, stage, log, run=run, sft_dir=sft_dir, rm_dir=rm_dir,
                                    tokenizer=(sft_cfg.model.name, sft_cfg.model.max_length), seed=opts.seed,
                                    max_new_tokens=eval_tokens, temperature=opts.eval_temperature),
                       workers, threads, log)
        for st in stages:
            if st.key in ran:
                StageRecord(st.output, done_marker=None if st.is_file else "result.json").save_outcome(
                    {"seconds": ran[st.key].seconds, "host": host_label(here, threads), **(ran[st.key].value or {})})

    label_times: dict[str, float] = {}
    label_hosts: dict[str, str | None] = {}

    def settle(st: _Stage) -> dict:
        """Run `st` (or reuse it: finished earlier, or by a worker just now) and record its seconds."""
        t0, extra, done_by = time.perf_counter(), None, reused
        if st.key in ran:
            stage(st.progress, f"{st.message.split(' → ')[0]}: done by a worker ({ran[st.key].seconds:.0f} s)")
            done_by = [st.key]  # its outcome is read back from where it was saved above; not "reused"
        elif _reusable(st.output, st.record(), log, is_file=st.is_file):
            stage(st.progress, st.reuse_message)
            reused.append(st.key)
        else:
            stage(st.progress, st.message)
            extra = st.task()
        return _settle(st.key, st.output, t0, done_by, label_times if st.is_file else timings,
                       label_hosts if st.is_file else hosts, host, is_file=st.is_file, extra=extra,
                       prune_checkpoints=not st.is_file and not opts.keep_checkpoints)

    by_key = {st.key: st for st in stages}
    label_stats = {key.split(":", 1)[1]: settle(by_key[key]).get("labels") for key in label_keys}
    if all(key in reused for key in label_keys):
        reused.append("label_s")
    timings["label_s"] = None if None in label_times.values() else sum(label_times.values())
    hosts["label_s"] = None if None in label_hosts.values() else "; ".join(sorted(set(label_hosts.values()))) or None
    for st in stages:
        if st.key not in label_keys and st.key != "bon_s":
            settle(st)

    # 7. Evaluate on held-out prompts (greedy, gold judge; proxy = RM score): base vs SFT, each trained policy
    #    vs SFT with its KL to SFT on its own samples; the RM on held-out on-policy pairs. Then the sampled
    #    evaluation: SFT and each trained policy, K samples per prompt at temperature T. Each policy's
    #    evaluation is saved in eval/policy-<name>[-sampled].json and reused (made by the workers, when any).
    t0 = time.perf_counter()
    kl_where = (f"on the {opts.eval_samples} × {len(sampled_rows)} sampled responses" if opts.kl_from_samples
                else f"on {len(kl_rows)} prompts")
    stage("eval", f"{2 + len(trained)} policies on {len(rows)} held-out prompts (greedy, gold judge); "
                  f"KL to SFT {kl_where}; RM on held-out pairs")
    tokenizer = load_tokenizer(sft_cfg.model.name, sft_cfg.model.max_length)
    sft_model = freeze(load_causal_lm(str(sft_dir), tokenizer))
    rm = freeze(ScalarHeadModel.from_pretrained(rm_dir))
    rm_tokenizer = load_tokenizer(str(rm_dir))
    evals, kl = {}, {}
    sampled: dict = {}
    for name, eval_on, kl_on, k in evaluations:
        if k and not sampled:
            stage("eval", f"sampled: SFT and {len(trained)} trained policies, {k} sample{'s' * (k != 1)} per prompt "
                          f"at temperature {opts.eval_temperature} on {len(sampled_rows)} prompts")
        result, kl_value = evaluate_cached(run, name, policies[name], eval_on, kl_on, tokenizer, sft_model, rm,
                                           rm_tokenizer, seed=opts.seed, log=log, max_new_tokens=eval_tokens,
                                           rm_spec=str(rm_dir), samples_per_prompt=k,
                                           temperature=opts.eval_temperature)
        (sampled if k else evals)[name] = result
        if kl_value is not None:
            kl[name] = kl_value
    comparisons = {"sft_vs_base": compare(evals["sft"], evals["base"])}
    comparisons |= {f"{name}_vs_sft": compare(evals[name], evals["sft"]) for name in trained}
    write_eval(run / "eval" / "policies.json", list(evals.values()), comparisons)
    sampled_cmp: dict = {}
    if sampled:
        sampled_cmp = {f"{name}_vs_sft": compare(sampled[name], sampled["sft"]) for name in trained}
        write_eval(run / "eval" / "sampled.json", list(sampled.values()), sampled_cmp)
    held_out, _ = load_records(data_dir / "eval_pairs.jsonl", "preference")
    rm_report = evaluate_reward_model(rm, rm_tokenizer, held_out, rm_cfg.model.max_length, by=("family", "correctness"),
                                      scores_file=rm_dir / HELD_OUT_SCORES)  # the RM stage's scores of these pairs
    write_report(run / "eval" / "rm.json", rm_report)
    del sft_model, rm
    timings["eval_s"] = time.perf_counter() - t0 + sum(r.seconds for key, r in ran.items() if key.startswith("eval:"))
    hosts["eval_s"] = host_label(here)  # in this run, here (in the workers as well as this process)

    # 8. Best-of-N from the SFT policy under the reward model, compared with SFT's greedy responses and (with the
    #    sampled evaluation) with SFT's temperature-T samples.
    bon = None
    if "bon" not in opts.skip:
        settle(by_key["bon_s"])
        bon = rejudge_best_of_n(bon_dir, log)
        if sampled:
            bon_eval = summarise(bon_name, [ScoredSample(**json.loads(line)[bon_name]) for line in
                                                 (bon_dir / "eval_samples.jsonl").read_text().splitlines()])
            bon["vs_sft_sampled"] = compare(*align_to(bon_eval, sampled["sft"]))  # on the prompts both cover
            if bon_prompts > len(sampled_rows):
                log(f"      best-of-{bon_n} vs SFT's samples: on the {len(sampled_rows)} of its {bon_prompts} prompts "
                    "that the sampled evaluation covers (sampled_prompts)")

    train_seconds = {name: json.loads((out / "result.json").read_text()).get("train_seconds")
                     for name, out in trained.items()}
    summary = {"policies": {e.name: e.summary() for e in evals.values()}, "comparisons": comparisons,
               "sampled": None if not sampled else {
                   "samples_per_prompt": opts.eval_samples, "temperature": opts.eval_temperature,
                   "prompts": len(sampled_rows),
                   "policies": {e.name: e.summary() for e in sampled.values()},
                   "comparisons": sampled_cmp},
               "kl_to_sft": kl, "train_seconds": train_seconds,
               "best_of_n": None if bon is None else {k: bon.get(k) for k in ("name", "n", "kl_coef", "temperature",
                                                                            "kl_analytic", "kl_to_policy",
                                                                            "proxy_before",
                                                                            "proxy_after", "gold_before", "gold_after",
                                                                            "vs_baseline", "vs_sft_sampled")},
               "reward_model": {k: v for k, v in rm_report.items() if k != "reliability"},
               "labelling": label_stats, "timings": timings, "workers": workers, "host": here,
               "timing_hosts": {k: hosts.get(k) for k in timings},
               "reused": [k[:-2] for k in reused if k.endswith("_s")]}
    (run / "summary.json").write_text(json.dumps(summary, indent=2))

    # 9. Report: runs/<name>/report.html (+ report.json).
    _, html = write_run_report(run)
    stage("report", f"{html}")
    return summary


def _preference_config(config_dir: Path, loss: str) -> Path:
    """configs/demo/<loss>.yaml when the loss has its own settings (β, γ, learning rate), else dpo.yaml."""
    own = config_dir / f"{loss}.yaml"
    return own if own.is_file() else config_dir / "dpo.yaml"


def _as_prompts(pairs):
    """Distinct prompts of preference pairs, in first-seen order, with their meta."""
    from tether.data.records import PromptRow

    seen, rows = set(), []
    for p in pairs:
        key = json.dumps(p.prompt)
        if key not in seen:
            seen.add(key)
            rows.append(PromptRow(p.prompt, {k: v for k, v in p.meta.items() if k != "source"}))
    return rows
