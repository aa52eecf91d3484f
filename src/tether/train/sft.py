"""Stage 1 of RLHF: supervised fine-tuning on demonstrations.

    tether sft --config configs/demo/sft.yaml [--train.learning_rate 2e-5 ...]
    accelerate launch --num_processes 2 --cpu -m tether.cli.main sft --config ...

The loss is the token-mean negative log-likelihood of response tokens only (prompt tokens are
context, not targets), normalised by the number of response tokens in the whole global batch, so
the loss and its gradient do not depend on how the batch is split into microbatches or processes.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from tether.data.collators import collate_packed, collate_sft, pack_examples
from tether.data.tokenization import EncodedExample, encode_sft_examples
from tether.data.validate import load_records
from tether.errors import ConfigError
from tether.losses.sft import sft_loss
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.models.logprobs import target_logits
from tether.models.lora import apply_lora, eval_mode
from tether.models.spec import ModelConfig
from tether.runtime.checkpoint import save_checkpoint
from tether.runtime.config import save_config, to_dict
from tether.runtime.seeding import global_batch_indices, rank_slice, seed_everything
from tether.train.loop import (
    StepTimer,
    TrainConfig,
    accumulation_steps,
    check_finite,
    clip_and_step,
    global_sum,
    length_grouped_microbatches,
    make_accelerator,
    prepare_training,
    progress,
    save_model,
)

RESULT_FILE = "result.json"


@dataclass
class SFTDataConfig:
    train_file: str = "runs/demo/data/sft.jsonl"
    """Demonstrations: jsonl/json/parquet/csv/HF dataset dir in a supported format."""
    eval_file: str | None = None
    """Held-out demonstrations for the eval loss; if unset, `eval_fraction` of train_file is held out."""
    eval_fraction: float = 0.05
    """Fraction of train_file held out for the eval loss when eval_file is unset."""
    format: Literal["auto", "tether", "trl", "messages", "hh", "oasst", "gsm8k"] = "auto"
    """Row format (auto-detected from the columns by default)."""
    drop_bad_rows: bool = False
    """Drop malformed or over-long rows (counted and reported) instead of refusing the dataset."""
    max_eval_examples: int = 256
    """Cap on held-out examples scored at each evaluation."""


@dataclass
class SFTConfig:
    output_dir: str = "runs/demo/sft"
    """Run dir: the fine-tuned model (save_pretrained), config.yaml, metrics.jsonl, checkpoints/."""
    packing: bool = False
    """Pack several examples per row (attention stays within each example) to cut padding."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model to fine-tune."""
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    """Training and held-out data."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation and loop settings."""

    def validate(self) -> None:
        if not 0.0 <= self.data.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction must be in [0, 1), got {self.data.eval_fraction}")


@dataclass
class SFTResult:
    output_dir: Path
    steps: int
    train_loss: float
    eval_loss: float | None
    dropped_rows: int


def _load_data(cfg: SFTConfig, tokenizer) -> tuple[list[EncodedExample], list[EncodedExample], int]:
    train_records, report = load_records(cfg.data.train_file, "sft", cfg.data.format, drop_bad=cfg.data.drop_bad_rows)
    dropped = report.n_dropped
    if cfg.data.eval_file:
        eval_records, eval_report = load_records(cfg.data.eval_file, "sft", cfg.data.format,
                                                 drop_bad=cfg.data.drop_bad_rows)
        dropped += eval_report.n_dropped
    else:  # deterministic hold-out
        perm = torch.randperm(len(train_records), generator=torch.Generator().manual_seed(cfg.train.seed)).tolist()
        n_eval = int(len(train_records) * cfg.data.eval_fraction)
        eval_records = [train_records[i] for i in perm[:n_eval]]
        train_records = [train_records[i] for i in sorted(perm[n_eval:])]
    train_enc, n_long = encode_sft_examples(tokenizer, train_records, cfg.model.max_length, cfg.data.drop_bad_rows)
    eval_enc, n_long_eval = encode_sft_examples(tokenizer, eval_records[: cfg.data.max_eval_examples],
                                                cfg.model.max_length, cfg.data.drop_bad_rows)
    return train_enc, eval_enc, dropped + n_long + n_long_eval


def _collate(examples: list[EncodedExample], cfg: SFTConfig, pad_id: int) -> dict:
    if cfg.packing:
        return collate_packed(pack_examples(examples, cfg.model.max_length), pad_id)
    return collate_sft(examples, pad_id)


def _microbatch_nll(model, batch: dict, device, num_tokens: float) -> tuple[torch.Tensor, int]:
    """Summed response NLL / num_tokens for one microbatch, and its number of target tokens."""
    input_ids = batch["input_ids"].to(device)  # (b,T)
    attention_mask = batch["attention_mask"].to(device) if batch["attention_mask"] is not None else None
    loss_mask = batch["loss_mask"].to(device)  # (b,T)
    logits, labels, mask, _ = target_logits(model, input_ids, attention_mask, batch["position_ids"].to(device),
                                            loss_mask)  # (b,T',V), (b,T'), (b,T')
    loss, _ = sft_loss(logits, labels, mask, num_tokens=num_tokens)
    return loss, int(mask.sum())


@torch.no_grad()
def evaluate_loss(accelerator, model, examples: list[EncodedExample], cfg: SFTConfig, pad_id: int) -> float:
    """Token-mean response NLL over the held-out examples (sharded over processes)."""
    mine = examples[accelerator.process_index :: accelerator.num_processes]
    nll_sum, n_tokens = 0.0, 0
    with eval_mode(model):
        for i in range(0, len(mine), cfg.train.micro_batch_size):
            loss, n = _microbatch_nll(model, _collate(mine[i : i + cfg.train.micro_batch_size], cfg, pad_id),
                                      accelerator.device, num_tokens=1.0)
            nll_sum, n_tokens = nll_sum + float(loss), n_tokens + n
    return global_sum(accelerator, nll_sum) / max(global_sum(accelerator, n_tokens), 1.0)


def train(cfg: SFTConfig, interrupt_at_step: int | None = None) -> SFTResult:
    """Run SFT to `cfg.train.max_steps` (resuming if a checkpoint exists).

    `interrupt_at_step` stops early after checkpointing that step, as a crash would (used by the
    resume tests).
    """
    out = Path(cfg.output_dir)
    tcfg = cfg.train
    accelerator = make_accelerator(tcfg, out)
    seed_everything(tcfg.seed, tcfg.deterministic)
    n_micro = accumulation_steps(tcfg, accelerator.num_processes)

    # 1. Data: validated records → token ids (prompt rendered with the chat template).
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.max_length)
    train_examples, eval_examples, dropped = _load_data(cfg, tokenizer)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        if dropped:
            accelerator.print(f"sft: dropped {dropped} bad or over-long rows (data.drop_bad_rows=true)")

    # 2. Model (+ LoRA).
    model = load_causal_lm(cfg.model.name, tokenizer, cfg.model.dtype)
    if cfg.model.use_lora:
        model = apply_lora(model, cfg.model)
    model.train()
    # 3. Optimizer, schedule, accelerate wrapping; resume from the latest checkpoint if there is one.
    run = prepare_training(accelerator, model, tcfg, out, "sft", to_dict(cfg))
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    start_step, metrics = run.start_step, run.metrics

    # 4. Loop: each optimizer step sees `batch_size` examples in total over processes and microbatches.
    timer, window_loss, eval_loss, train_loss = StepTimer(), [], None, float("nan")
    bar = progress(accelerator, tcfg.max_steps, start_step, "sft")
    for step in range(start_step, tcfg.max_steps):
        indices = rank_slice(global_batch_indices(len(train_examples), tcfg.batch_size, step, tcfg.seed),
                             accelerator.process_index, accelerator.num_processes)
        micro = [_collate([train_examples[i] for i in chunk], cfg, tokenizer.pad_token_id)
                 for chunk in length_grouped_microbatches(indices, n_micro, lambda i: len(train_examples[i]))]
        num_tokens = global_sum(accelerator, sum(int(b["loss_mask"][:, 1:].sum()) for b in micro))
        step_loss = 0.0
        for k, batch in enumerate(micro):
            sync = nullcontext() if k == n_micro - 1 else accelerator.no_sync(model)
            with sync:
                loss, _n = _microbatch_nll(model, batch, accelerator.device, num_tokens)
                # DDP averages gradients over processes; the loss is already a global token mean.
                accelerator.backward(loss * accelerator.num_processes)
            step_loss += float(loss.detach())
            timer.tokens += int(batch["input_ids"].numel())
        grad_norm = clip_and_step(accelerator, model, optimizer, scheduler, tcfg.max_grad_norm)
        train_loss = global_sum(accelerator, step_loss)
        check_finite(step + 1, **{"loss/sft": train_loss, "train/grad_norm": grad_norm})
        window_loss.append(train_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}")

        done = step + 1
        if done % tcfg.logging_steps == 0 or done == tcfg.max_steps:
            metrics.log({"loss/sft": sum(window_loss) / len(window_loss), "train/grad_norm": grad_norm,
                         "train/lr": scheduler.get_last_lr()[0], "train/tokens": num_tokens,
                         **timer.lap()}, step=done)
            window_loss = []
        if eval_examples and ((tcfg.eval_steps and done % tcfg.eval_steps == 0) or done == tcfg.max_steps):
            eval_loss = evaluate_loss(accelerator, model, eval_examples, cfg, tokenizer.pad_token_id)
            metrics.log({"eval/loss": eval_loss}, step=done)
        if (tcfg.save_steps and done % tcfg.save_steps == 0) or done == tcfg.max_steps or done == interrupt_at_step:
            save_checkpoint(accelerator, out, done, {"train_loss": train_loss}, keep=tcfg.save_total_limit)
        if done == interrupt_at_step:
            bar.close()
            accelerator.end_training()
            return SFTResult(out, done, train_loss, eval_loss, dropped)
    bar.close()

    # 5. Save the model as a plain transformers dir (LoRA merged) and a completion record.
    save_model(accelerator, model, tokenizer, out)
    if eval_examples and eval_loss is None:
        eval_loss = evaluate_loss(accelerator, model, eval_examples, cfg, tokenizer.pad_token_id)
    result = SFTResult(out, tcfg.max_steps, train_loss, eval_loss, dropped)
    if accelerator.is_main_process:
        (out / RESULT_FILE).write_text(json.dumps(
            {"steps": result.steps, "train_loss": result.train_loss, "eval_loss": result.eval_loss,
             "dropped_rows": dropped, "train_examples": len(train_examples),
             "num_processes": accelerator.num_processes}, indent=2))
    accelerator.end_training()
    return result
