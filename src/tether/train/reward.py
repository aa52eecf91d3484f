"""Stage 2 of RLHF: a Bradley–Terry reward model learned from preference pairs.

    tether rm --config configs/demo/rm.yaml [--train.max_steps 40 ...]

P(chosen ≻ rejected) = σ(r(x, y_c) − r(x, y_r)); loss −log σ(r_c − r_r − m) averaged over the pairs
of the global batch. Chosen and rejected go through one batched forward (2B rows). The score is read
at the last real token of each sequence (its EOS), located from the attention mask, never by
searching for a pad id. After training, a bias shift makes the mean score of reference responses
(demonstrations from `data.norm_file`) zero, so PPO sees rewards centred on what the SFT policy writes.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from tether.data.collators import collate_pair_batch, collate_pair_groups, forwarded_tokens
from tether.data.tokenization import EncodedPair, encode_pairs, encode_sft_examples, group_pairs, split_by_prompt
from tether.data.validate import load_many, load_records
from tether.errors import ConfigError
from tether.eval.metrics import reward_model_report
from tether.eval.reward_eval import HELD_OUT_SCORES, save_held_out_scores
from tether.losses.reward import bradley_terry_loss
from tether.models.loading import load_tokenizer
from tether.models.scalar_head import ScalarHeadModel, apply_lora_to_scalar
from tether.models.scoring import score_pairs, score_sequences
from tether.models.spec import ModelConfig
from tether.ops import map_length_groups
from tether.runtime.checkpoint import disk_guard, save_checkpoint
from tether.runtime.config import save_config, to_dict
from tether.runtime.seeding import global_batch_indices, rank_slice, seed_everything
from tether.train.loop import (
    StepStats,
    StepTimer,
    TrainConfig,
    accumulation_steps,
    check_finite,
    clip_and_step,
    length_grouped_microbatches,
    make_accelerator,
    prepare_training,
    progress,
)

RESULT_FILE = "result.json"


@dataclass
class RMDataConfig:
    train_files: list[str] = field(default_factory=lambda: ["runs/demo/data/preference.jsonl"])
    """Preference files (TRL prompt/chosen/rejected, HH, OASST, tether jsonl, ...); concatenated."""
    eval_file: str | None = None
    """Held-out pairs for accuracy/calibration; if unset, `eval_fraction` of the training pairs (by prompt)."""
    eval_fraction: float = 0.1
    """Fraction of training prompts held out when eval_file is unset (all pairs of a prompt go together)."""
    format: Literal["auto", "tether", "trl", "messages", "hh", "oasst", "gsm8k"] = "auto"
    """Row format (auto-detected from the columns by default)."""
    drop_bad_rows: bool = False
    """Drop malformed/identical/empty/over-long pairs (counted and reported) instead of refusing the data."""
    max_train_pairs: int = 0
    """Use at most this many training pairs (0 = all), taken in a seeded random order."""
    max_eval_pairs: int = 512
    """Cap on held-out pairs scored at each evaluation."""
    norm_file: str | None = "runs/demo/data/sft.jsonl"
    """Reference (prompt, response) demonstrations whose mean score is shifted to 0 after training (unset: no shift)."""
    max_norm_examples: int = 256
    """Demonstrations scored for the normalisation shift."""


@dataclass
class RMConfig:
    output_dir: str = "runs/demo/rm"
    """Run dir: the reward model (transformers dir + score head), config.yaml, metrics.jsonl, checkpoints/."""
    pooling: Literal["last", "mean"] = "last"
    """Where the score is read: the last real token (EOS), or the mean over real tokens."""
    use_margin: bool = False
    """Use each pair's `margin` field in the loss: −log σ(r_c − r_r − margin)."""
    center_coef: float = 0.0
    """Weight of the centring penalty (r_c + r_r)² that keeps scores near 0 (0 = off)."""
    head_lr_multiplier: float = 1.0
    """The score head learns at `train.learning_rate` × this. Under Adam every weight moves about lr per step, so
    at the backbone's 1e-5 a fresh head barely turns in a few dozen steps and the backbone bends to a random
    direction instead; a larger rate lets the head find the features the backbone already has."""
    group_by_prompt: bool = False
    """Train on prompts instead of pairs: a step takes `train.batch_size` prompts with every pair of each, and
    scores each distinct reply once (K replies of a prompt give up to K(K−1)/2 pairs for K forwards); the loss
    is the mean over the step's pairs. `train.batch_size` and `micro_batch_size` then count prompts."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="runs/demo/sft"))
    """Backbone to start from (the SFT model by default); its LM head is replaced by a fresh scalar head."""
    data: RMDataConfig = field(default_factory=RMDataConfig)
    """Preference data."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(learning_rate=1e-5, batch_size=16,
                                                                   micro_batch_size=4))
    """Optimisation and loop settings (batch sizes count pairs, or prompts with `group_by_prompt`)."""

    def validate(self) -> None:
        if not 0.0 <= self.data.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction must be in [0, 1), got {self.data.eval_fraction}")
        if self.head_lr_multiplier <= 0:
            raise ConfigError(f"head_lr_multiplier must be > 0, got {self.head_lr_multiplier}")
        if not self.data.train_files:
            raise ConfigError("data.train_files is empty")


@dataclass
class RMResult:
    output_dir: Path
    steps: int
    eval: dict
    bias_shift: float


def _load_pairs(cfg: RMConfig, tokenizer) -> tuple[list[EncodedPair], list[EncodedPair], dict[str, int]]:
    """Training and held-out pairs, and what was dropped: {"bad_rows": n, "over_long": m}."""
    records, dropped = load_many(cfg.data.train_files, "preference", cfg.data.format, cfg.data.drop_bad_rows)
    pairs, over_long = encode_pairs(tokenizer, records, cfg.model.max_length, cfg.data.drop_bad_rows)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    if cfg.data.eval_file:
        eval_records, n_bad = load_many([cfg.data.eval_file], "preference", cfg.data.format, cfg.data.drop_bad_rows)
        eval_pairs, n_long = encode_pairs(tokenizer, eval_records, cfg.model.max_length, cfg.data.drop_bad_rows)
        dropped += n_bad
        over_long += n_long
    else:
        pairs, eval_pairs = split_by_prompt(pairs, cfg.data.eval_fraction, gen)
    if cfg.data.max_train_pairs and len(pairs) > cfg.data.max_train_pairs:
        keep = torch.randperm(len(pairs), generator=gen)[: cfg.data.max_train_pairs].tolist()
        pairs = [pairs[i] for i in sorted(keep)]
    return pairs, eval_pairs[: cfg.data.max_eval_pairs], {"bad_rows": dropped, "over_long": over_long}


def _score_pairs(model, batch: dict, device, group_rows: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen (P,) and rejected (P,) scores of the P pairs of a batch: `collate_pair_prompts`' (each prompt forwarded
    once, the replies continuing from its cache: `models.shared_prompt`) or `collate_pairs`' (2B rows;
    `ops.map_length_groups`); or of a `collate_pair_groups` batch (each distinct reply scored once, the pairs
    picked by `chosen_index`/`rejected_index`). Replies (rows) in one forward, or in forwards of `group_rows`
    of similar length."""
    if "reply_ids" in batch:
        rows = {k: batch[k].to(device) for k in ("prompt_ids", "prompt_mask", "reply_ids", "reply_mask", "source")}
        scores = model(shared=rows, group_rows=group_rows)  # (N,): one per reply row (2B for pairs)
    else:
        rows = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")}

        def score(b: dict) -> torch.Tensor:
            return model(b["input_ids"], b["attention_mask"], b["position_ids"])  # (n,)

        scores = map_length_groups(score, rows, group_rows)[0] if group_rows else score(rows)  # (N,)
    if "chosen_index" in batch:
        return scores[batch["chosen_index"].to(device)], scores[batch["rejected_index"].to(device)]
    n = scores.shape[0] // 2
    return scores[:n], scores[n:]


def score_eval_pairs(accelerator, model, pairs: list[EncodedPair], batch_size: int,
                     pad_id: int) -> tuple[list[float], list[float]]:
    """Chosen and rejected scores of every pair, sharded over processes and gathered in input order."""
    mine = pairs[accelerator.process_index :: accelerator.num_processes]
    chosen, rejected = score_pairs(model, mine, pad_id, batch_size)
    world = accelerator.num_processes
    if world > 1:
        from accelerate.utils import gather_object

        parts_c, parts_r = gather_object([chosen]), gather_object([rejected])  # one list per process
        # process r scored pairs r, r+W, r+2W, ...: interleave back into input order
        chosen = [parts_c[r][i] for i in range(len(parts_c[0])) for r in range(world) if i < len(parts_c[r])]
        rejected = [parts_r[r][i] for i in range(len(parts_r[0])) for r in range(world) if i < len(parts_r[r])]
    return chosen, rejected


def pair_metrics(pairs: list[EncodedPair], chosen: list[float], rejected: list[float]) -> dict[str, float]:
    """Held-out accuracy, margin, calibration and length correlation, as `eval/...` metrics."""
    report = reward_model_report(chosen, rejected, [len(p.chosen_ids) for p in pairs],
                                 [len(p.rejected_ids) for p in pairs])
    return {"eval/accuracy": report["accuracy"], "eval/margin": report["margin"], "eval/ece": report["ece"],
            "eval/chosen_score": report["chosen_scores"]["mean"],
            "eval/rejected_score": report["rejected_scores"]["mean"], "eval/length_corr": report["length_corr"]}


def mean_reference_score(model, tokenizer, cfg: RMConfig) -> float:
    """Mean score of reference demonstrations (for the bias shift), before any shift."""
    records, _ = load_records(cfg.data.norm_file, "sft", "auto", drop_bad=True)
    examples, _ = encode_sft_examples(tokenizer, records[: cfg.data.max_norm_examples], cfg.model.max_length,
                                      drop_long=True)
    scores = score_sequences(model, [e.prompt_ids for e in examples], [e.response_ids for e in examples],
                             tokenizer.pad_token_id, cfg.train.micro_batch_size * 2)
    return sum(scores) / max(len(scores), 1)


def train(cfg: RMConfig, interrupt_at_step: int | None = None) -> RMResult:
    """Train the reward model to `cfg.train.max_steps` (resuming if a checkpoint exists)."""
    out = Path(cfg.output_dir)
    tcfg = cfg.train
    accelerator = make_accelerator(tcfg, out)
    seed_everything(tcfg.seed, tcfg.deterministic)
    n_micro = accumulation_steps(tcfg, accelerator.num_processes)

    # 1. Data: validated pairs → token ids; held-out pairs are from prompts never trained on.
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.max_length)
    train_pairs, eval_pairs, dropped = _load_pairs(cfg, tokenizer)
    items = group_pairs(train_pairs) if cfg.group_by_prompt else train_pairs  # what a step draws from
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / HELD_OUT_SCORES).unlink(missing_ok=True)  # a previous run's scores never outlive its weights
        save_config(cfg, out / "config.yaml")
        accelerator.print(f"rm: {len(train_pairs)} training pairs, {len(eval_pairs)} held-out pairs; dropped "
                          f"{dropped['bad_rows']} bad rows and {dropped['over_long']} pairs over "
                          f"{cfg.model.max_length} tokens"
                          + (f"; {len(items)} prompts (steps draw prompts)" if cfg.group_by_prompt else ""))

    # 2. Model: backbone from the SFT policy + a fresh scalar head (+ LoRA).
    model = ScalarHeadModel.from_pretrained_lm(cfg.model.name, tokenizer, pooling=cfg.pooling,
                                               dtype=cfg.model.dtype, seed=tcfg.seed)
    if cfg.model.use_lora:
        model = apply_lora_to_scalar(model, cfg.model)
    model.train()
    # 3. Optimizer, schedule, accelerate wrapping; resume from the latest checkpoint if there is one.
    run = prepare_training(accelerator, model, tcfg, out, "rm", to_dict(cfg), scaled=list(model.head.parameters()),
                           lr_scale=cfg.head_lr_multiplier)
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    start_step, metrics = run.start_step, run.metrics

    # 4. Loop: each optimizer step sees `batch_size` pairs (or prompts with all their pairs) in total over
    #    processes and microbatches; the loss is the mean over the step's pairs.
    timer, window, eval_metrics = StepTimer(), [], {}
    group_rows = tcfg.group_rows(accelerator.device)
    bar = progress(accelerator, tcfg.max_steps, start_step, "rm")
    for step in range(start_step, tcfg.max_steps):
        global_indices = global_batch_indices(len(items), tcfg.batch_size, step, tcfg.seed)
        num_pairs = sum(len(items[i].pairs) for i in global_indices) if cfg.group_by_prompt else tcfg.batch_size
        indices = rank_slice(global_indices, accelerator.process_index, accelerator.num_processes)
        collate = collate_pair_groups if cfg.group_by_prompt else collate_pair_batch
        micro = [collate([items[i] for i in chunk], tokenizer.pad_token_id, tcfg.share_prompts)
                 for chunk in length_grouped_microbatches(indices, n_micro, lambda i: len(items[i]))]
        acc = StepStats("loss/reward")
        for k, batch in enumerate(micro):
            sync = nullcontext() if k == n_micro - 1 else accelerator.no_sync(model)
            with sync:
                chosen, rejected = _score_pairs(model, batch, accelerator.device, group_rows)  # (b,), (b,)
                margin = batch["margin"].to(accelerator.device) if cfg.use_margin else None
                loss, stats = bradley_terry_loss(chosen, rejected, margin=margin, num_pairs=num_pairs,
                                                 center_coef=cfg.center_coef)
                accelerator.backward(loss * accelerator.num_processes)  # DDP averages over processes
            acc.add(loss, stats, len(chosen))
            timer.tokens += forwarded_tokens(batch)
        grad_norm = clip_and_step(accelerator, model, optimizer, scheduler, tcfg.max_grad_norm)
        step_stats = acc.reduce(accelerator)
        check_finite(step + 1, **{"loss/reward": step_stats["loss/reward"], "train/grad_norm": grad_norm})
        window.append(step_stats)
        bar.update(1)
        bar.set_postfix(loss=f"{step_stats['loss/reward']:.3f}", acc=f"{step_stats.get('reward/accuracy', 0):.2f}")

        done = step + 1
        if done % tcfg.logging_steps == 0 or done == tcfg.max_steps:
            mean = {name: sum(s[name] for s in window) / len(window) for name in window[0]}
            metrics.log({**mean, "train/grad_norm": grad_norm, "train/lr": scheduler.get_last_lr()[0],
                         **timer.lap()}, step=done)
            window = []
        if eval_pairs and ((tcfg.eval_steps and done % tcfg.eval_steps == 0) or done == tcfg.max_steps):
            eval_scores = score_eval_pairs(accelerator, model, eval_pairs, tcfg.micro_batch_size,
                                           tokenizer.pad_token_id)
            eval_metrics = pair_metrics(eval_pairs, *eval_scores)
            metrics.log(eval_metrics, step=done)
        if (tcfg.save_steps and done % tcfg.save_steps == 0) or done == tcfg.max_steps or done == interrupt_at_step:
            save_checkpoint(accelerator, out, done, {}, keep=tcfg.save_total_limit)
        if done == interrupt_at_step:
            bar.close()
            accelerator.end_training()
            return RMResult(out, done, eval_metrics, 0.0)
    bar.close()

    # 5. Normalise (mean reference score → 0), save as a transformers dir + score head, and the final held-out
    #    scores (shifted) so that the pipeline's evaluation reads them instead of scoring the same pairs again.
    unwrapped = accelerator.unwrap_model(model)
    shift = mean_reference_score(model, tokenizer, cfg) if cfg.data.norm_file else 0.0
    if eval_pairs and eval_metrics:  # scored at the last step, before the shift
        eval_scores = tuple([s - shift for s in side] for side in eval_scores)
    unwrapped.bias_shift.fill_(shift)
    if eval_pairs and not eval_metrics:
        eval_scores = score_eval_pairs(accelerator, model, eval_pairs, tcfg.micro_batch_size, tokenizer.pad_token_id)
        eval_metrics = pair_metrics(eval_pairs, *eval_scores)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with disk_guard(out, "the reward model"):
            unwrapped.save_pretrained(out)
            tokenizer.save_pretrained(out)
        (out / RESULT_FILE).write_text(json.dumps(
            {"steps": tcfg.max_steps, "bias_shift": shift, "train_pairs": len(train_pairs),
             "eval_pairs": len(eval_pairs), "dropped": dropped, "num_processes": accelerator.num_processes,
             **eval_metrics}, indent=2))
        if eval_pairs:
            save_held_out_scores(out / HELD_OUT_SCORES, eval_pairs, *eval_scores)
    accelerator.end_training()
    return RMResult(out, tcfg.max_steps, eval_metrics, shift)
