"""Direct preference optimisation family: DPO, IPO, KTO, ORPO, SimPO.

    tether dpo --loss dpo --config configs/demo/dpo.yaml [--beta 0.1 ...]

The optimal KL-regularised policy satisfies r(x, y) = β log π(y|x)/π_ref(y|x) + β log Z(x); put into
the Bradley–Terry likelihood, Z cancels and the policy is trained directly on preference pairs.
Each loss is a pure function in `tether.losses.preference` (registry `PREFERENCE_LOSSES`).

Reference log-probabilities: with full fine-tuning they are computed ONCE, with the initial weights,
for exactly the examples this run will visit (the data order is a pure function of seed and step),
cached to `ref_logps.pt`, and never recomputed — no second model copy in memory. With LoRA the
reference is the base model with adapters disabled. ORPO and SimPO need no reference at all.
Chosen and rejected go through one batched forward (2B rows). KTO trains on its examples alone; their
mismatched completions only set z0, once per step over the global batch, without gradients.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from tether.data.collators import collate_pair_batch, forwarded_tokens, select_replies
from tether.data.records import FeedbackRow, PreferencePair
from tether.data.tokenization import EncodedPair, encode_pairs, split_by_prompt
from tether.data.validate import load_many
from tether.errors import ConfigError
from tether.losses.preference import PREFERENCE_LOSSES, kto_kl_estimate
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.models.logprobs import sequence_logprobs
from tether.models.lora import adapters_disabled, apply_lora, eval_mode
from tether.models.shared_prompt import shared_prompt_logprobs
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
    save_model,
)

RESULT_FILE = "result.json"
REF_CACHE = "ref_logps.pt"


@dataclass
class DPODataConfig:
    train_files: list[str] = field(default_factory=lambda: ["runs/demo/data/preference.jsonl"])
    """Preference pair files (any supported format), concatenated. KTO splits each pair into a desirable and
    an undesirable row, or reads unpaired rows {prompt, completion, label} when `kto_unpaired_file` is set."""
    kto_unpaired_file: str | None = None
    """KTO only: unpaired binary feedback rows instead of splitting train_files' pairs."""
    eval_fraction: float = 0.05
    """Fraction of prompts held out for the eval metrics (all their pairs)."""
    format: Literal["auto", "tether", "trl", "messages", "hh", "oasst", "gsm8k"] = "auto"
    """Row format (auto-detected by default)."""
    drop_bad_rows: bool = False
    """Drop malformed/identical/empty/over-long rows (counted) instead of refusing the dataset."""
    max_eval_pairs: int = 128
    """Cap on held-out pairs scored at each evaluation."""


@dataclass
class DPOConfig:
    output_dir: str = "runs/demo/dpo"
    """Run dir: the policy (save_pretrained), config.yaml, metrics.jsonl, checkpoints/, ref_logps.pt."""
    loss: Literal["dpo", "ipo", "kto", "orpo", "simpo"] = "dpo"
    """Which objective (see docs/dpo.md for when to use which)."""
    beta: float = 0.1
    """β: strength of the implicit KL tether (DPO/IPO/KTO), the odds-ratio weight (ORPO), the reward scale (SimPO)."""
    label_smoothing: float = 0.0
    """Conservative DPO / SimPO: assumed probability that a label is flipped."""
    simpo_gamma: float = 0.5
    """SimPO target reward margin γ."""
    kto_desirable_weight: float = 1.0
    """KTO weight of desirable examples."""
    kto_undesirable_weight: float = 1.0
    """KTO weight of undesirable examples."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="runs/demo/sft"))
    """Policy to start from (the SFT model); with full fine-tuning it is also the reference."""
    data: DPODataConfig = field(default_factory=DPODataConfig)
    """Preference data."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(learning_rate=5e-7, batch_size=16,
                                                                   micro_batch_size=8))
    """Optimisation and loop settings (batch sizes count pairs; for KTO, rows)."""

    def validate(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")


@dataclass
class DPOResult:
    output_dir: Path
    steps: int
    eval: dict


# --- data ------------------------------------------------------------------------------------------

def _kto_rows_as_pairs(rows: list[FeedbackRow], tokenizer, max_length: int, drop_long: bool) -> list[EncodedPair]:
    """Unpaired rows in the pair container: the completion in `chosen_ids`; `margin` holds the label (1/0);
    the mismatched completion (for KTO's reference-point KL) is the next row's, in `rejected_ids`."""
    pairs = [PreferencePair(r.prompt, r.completion, rows[(i + 1) % len(rows)].completion,
                            margin=1.0 if r.label else 0.0, meta=r.meta) for i, r in enumerate(rows)]
    encoded, _ = encode_pairs(tokenizer, pairs, max_length, drop_long)
    return encoded


def load_examples(cfg: DPOConfig, tokenizer) -> tuple[list[EncodedPair], list[EncodedPair]]:
    spec = PREFERENCE_LOSSES[cfg.loss]
    if spec.data == "unpaired" and cfg.data.kto_unpaired_file:
        rows, _ = load_many([cfg.data.kto_unpaired_file], "feedback", cfg.data.format, cfg.data.drop_bad_rows)
        examples = _kto_rows_as_pairs(rows, tokenizer, cfg.model.max_length, cfg.data.drop_bad_rows)
    else:
        records, _ = load_many(cfg.data.train_files, "preference", cfg.data.format, cfg.data.drop_bad_rows)
        if spec.data == "unpaired":  # split each pair into a desirable and an undesirable row
            rows = [FeedbackRow(p.prompt, text, label, p.meta) for p in records
                    for text, label in ((p.chosen, True), (p.rejected, False))]
            examples = _kto_rows_as_pairs(rows, tokenizer, cfg.model.max_length, cfg.data.drop_bad_rows)
        else:
            examples, _ = encode_pairs(tokenizer, records, cfg.model.max_length, cfg.data.drop_bad_rows)
    train, held_out = split_by_prompt(examples, cfg.data.eval_fraction,
                                      torch.Generator().manual_seed(cfg.train.seed))
    return train, held_out[: cfg.data.max_eval_pairs]


# --- log-probabilities -----------------------------------------------------------------------------

def pair_logps(model, batch: dict, device, group_rows: int = 0,
               sides: tuple[str, ...] = ("chosen", "rejected")) -> dict[str, torch.Tensor]:
    """Summed and mean response logprobs of chosen (first half) and rejected (second half) rows: one forward,
    or forwards of `group_rows` rows of similar length (same values, less padding). `batch` is
    `collate_pair_prompts`' (the prompts forwarded once, then the replies in length groups continuing from
    their prompt's cache: `models.shared_prompt`) or `collate_pairs`' (one row per prompt+reply;
    `ops.map_length_groups`). `sides` picks the halves to score:
    KTO trains on the chosen rows only (its rejected rows are the mismatched completions, scored without
    gradients for z0)."""
    shared = "reply_ids" in batch
    n = (batch["reply_ids"] if shared else batch["input_ids"]).shape[0] // 2
    keep = torch.cat([torch.arange(n) + (0 if side == "chosen" else n) for side in sides])  # (S·B,)
    if shared:
        rows = {k: v.to(device) for k, v in select_replies(batch, keep).items()}
        total, count = shared_prompt_logprobs(model, rows, group_rows=group_rows)  # (S·B,), (S·B,)
    else:
        width = int(batch["attention_mask"][keep].sum(dim=-1).max())  # right-padded: cut the other half's padding
        rows = {k: batch[k][keep, :width].to(device)
                for k in ("input_ids", "attention_mask", "position_ids", "response_mask")}
        if group_rows:
            total, count = map_length_groups(lambda b: sequence_logprobs(model, b), rows, group_rows)  # (S·B,) ×2
        else:
            total, count = sequence_logprobs(model, rows)  # (S·B,), (S·B,)
    mean = total / count.clamp(min=1)  # (S·B,)
    out = {}
    for j, side in enumerate(sides):
        out[side], out[f"{side}_mean"] = total[j * n : (j + 1) * n], mean[j * n : (j + 1) * n]
    return out


@torch.no_grad()
def reference_logps(model, examples: list[EncodedPair], indices: list[int], batch_size: int, pad_id: int,
                    device, use_lora: bool, group_rows: int = 0, share_prompts: bool = True) -> dict[int, torch.Tensor]:
    """Reference logprobs (chosen, rejected, chosen_mean, rejected_mean) of the given examples, computed once."""
    out: dict[int, torch.Tensor] = {}
    with eval_mode(model), (adapters_disabled(model) if use_lora else nullcontext()):
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            lp = pair_logps(model, collate_pair_batch([examples[i] for i in idx], pad_id, share_prompts), device,
                            group_rows)
            stacked = torch.stack([lp["chosen"], lp["rejected"], lp["chosen_mean"], lp["rejected_mean"]], -1)  # (b,4)
            for i, row in zip(idx, stacked.cpu()):
                out[i] = row
    return out


# --- losses: one adapter per registry entry, no if/elif over names ---------------------------------

def _pair_inputs(policy: dict, ref: torch.Tensor | None) -> dict:
    ref = ref if ref is not None else torch.zeros(policy["chosen"].shape[0], 4)
    x = {"ref_chosen_logps": ref[:, 0], "ref_rejected_logps": ref[:, 1],
         "ref_chosen_logps_mean": ref[:, 2], "ref_rejected_logps_mean": ref[:, 3]}
    for side in ("chosen", "rejected"):  # KTO's policy has only the chosen side
        if side in policy:
            x[f"policy_{side}_logps"], x[f"policy_{side}_logps_mean"] = policy[side], policy[f"{side}_mean"]
    return x


LOSS_CALLS = {
    "dpo": lambda x, cfg, n: PREFERENCE_LOSSES["dpo"].fn(
        x["policy_chosen_logps"], x["policy_rejected_logps"], x["ref_chosen_logps"], x["ref_rejected_logps"],
        beta=cfg.beta, label_smoothing=cfg.label_smoothing, num_pairs=n),
    "ipo": lambda x, cfg, n: PREFERENCE_LOSSES["ipo"].fn(  # IPO on length-averaged logprobs
        x["policy_chosen_logps_mean"], x["policy_rejected_logps_mean"], x["ref_chosen_logps_mean"],
        x["ref_rejected_logps_mean"], beta=cfg.beta, num_pairs=n),
    "orpo": lambda x, cfg, n: PREFERENCE_LOSSES["orpo"].fn(  # SFT term: the chosen reply's token-mean NLL
        x["policy_chosen_logps_mean"], x["policy_rejected_logps_mean"], beta=cfg.beta, num_pairs=n),
    "simpo": lambda x, cfg, n: PREFERENCE_LOSSES["simpo"].fn(
        x["policy_chosen_logps_mean"], x["policy_rejected_logps_mean"], beta=cfg.beta, gamma=cfg.simpo_gamma,
        label_smoothing=cfg.label_smoothing, num_pairs=n),
    # KTO: `chosen` rows are the examples, `rejected` rows the mismatched completions for the KL estimate.
    "kto": lambda x, cfg, n: PREFERENCE_LOSSES["kto"].fn(
        x["policy_chosen_logps"], x["ref_chosen_logps"], x["labels"],
        kl_estimate=x["kl_estimate"], beta=cfg.beta, desirable_weight=cfg.kto_desirable_weight,
        undesirable_weight=cfg.kto_undesirable_weight, num_examples=n),
}


def policy_sides(cfg: DPOConfig) -> tuple[str, ...]:
    """The halves of each batch the policy is trained on: KTO's rejected rows only feed z0."""
    return ("chosen",) if PREFERENCE_LOSSES[cfg.loss].data == "unpaired" else ("chosen", "rejected")


@torch.no_grad()
def kto_reference_point(model, examples: list[EncodedPair], chunks: list[list[int]], refs: list[torch.Tensor],
                        pad_id: int, device, group_rows: int = 0, gather=lambda t: t,
                        share_prompts: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO's z0 for one optimizer step (Ethayarajh et al. 2024, §4): the policy's log π/π_ref of the mismatched
    completions of every example in `chunks`, gathered over processes by `gather` (so every process, and a
    1-process run, uses the same z0 for the whole global batch), averaged and clamped at 0. No gradients: the
    paper does not back-propagate through z0, and the mismatched rows never enter the training forward.
    `refs[k]`: the reference rows ``(b,4)`` of chunk k (column 1: the mismatched completions), the same the
    training microbatches use.

    Returns ``(z0, mean)``: z0 ≥ 0 and the mean before the clamp (logged as `kto/mismatched_logratio`)."""
    policy, ref = [], []
    for idx, chunk_ref in zip(chunks, refs):
        batch = collate_pair_batch([examples[i] for i in idx], pad_id, share_prompts)
        policy.append(pair_logps(model, batch, device, group_rows, sides=("rejected",))["rejected"])  # (b,)
        ref.append(chunk_ref[:, 1].to(device))  # (b,)
    policy, ref = gather(torch.cat(policy)), gather(torch.cat(ref))  # (M,), (M,) over processes
    return kto_kl_estimate(policy, ref), (policy - ref).mean()


def compute_loss(cfg: DPOConfig, policy: dict, ref: torch.Tensor | None, batch: dict, n_global: int,
                 kto_point: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The configured loss and its stats, plus `policy/logratio`: the mean sequence log π/π_ref on the data
    (the implicit reward / β; how far the policy has moved from the reference on these examples).
    KTO needs `kto_point` = `kto_reference_point(...)` of the step's global batch."""
    x = _pair_inputs(policy, ref)
    extra = {}
    if PREFERENCE_LOSSES[cfg.loss].data == "unpaired":  # KTO: labels from the rows, z0 from the caller
        if kto_point is None:
            raise ValueError("KTO needs kto_point: z0 of the step's mismatched completions (kto_reference_point)")
        x["labels"] = batch["margin"].to(policy["chosen"].device) > 0.5
        x["kl_estimate"], extra["kto/mismatched_logratio"] = kto_point  # the clamped z0, and the mean before it
    loss, stats = LOSS_CALLS[cfg.loss](x, cfg, n_global)
    stats = {**stats, **extra}
    if ref is not None:
        logratio = torch.cat([policy[side] - x[f"ref_{side}_logps"] for side in policy_sides(cfg)])
        stats = {**stats, "policy/logratio": logratio.detach().mean()}
    return loss, stats


# --- training --------------------------------------------------------------------------------------

def train(cfg: DPOConfig, interrupt_at_step: int | None = None) -> DPOResult:
    """Train the policy with the configured preference loss (resuming if a checkpoint exists)."""
    started = time.perf_counter()
    out = Path(cfg.output_dir)
    tcfg = cfg.train
    spec = PREFERENCE_LOSSES[cfg.loss]
    accelerator = make_accelerator(tcfg, out)
    seed_everything(tcfg.seed, tcfg.deterministic)
    n_micro = accumulation_steps(tcfg, accelerator.num_processes)

    # 1. Data: pairs (or KTO rows) → token ids; held-out prompts never trained on.
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.max_length)
    train_examples, eval_examples = load_examples(cfg, tokenizer)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        accelerator.print(f"{cfg.loss}: {len(train_examples)} training and {len(eval_examples)} held-out examples")

    # 2. Policy (+ LoRA). Without LoRA the initial policy is the reference: its logprobs are cached first.
    model = load_causal_lm(cfg.model.name, tokenizer, cfg.model.dtype)
    if cfg.model.use_lora:
        model = apply_lora(model, cfg.model)
    steps_indices = [global_batch_indices(len(train_examples), tcfg.batch_size, s, tcfg.seed)
                     for s in range(tcfg.max_steps)]
    ref_cache: dict[int, torch.Tensor] = {}
    eval_ref: dict[int, torch.Tensor] = {}
    group_rows, share = tcfg.group_rows(accelerator.device), tcfg.share_prompts
    if spec.needs_reference and not cfg.model.use_lora:
        cache_path = out / REF_CACHE
        if cache_path.is_file():
            saved = torch.load(cache_path)
            ref_cache, eval_ref = saved["train"], saved["eval"]
        else:
            visited = sorted({i for idx in steps_indices for i in idx})
            accelerator.print(f"{cfg.loss}: caching reference logprobs of {len(visited)} + {len(eval_examples)} "
                              "examples")
            visited.sort(key=lambda i: len(train_examples[i]))  # similar lengths batched together
            ref_cache = reference_logps(model, train_examples, visited, tcfg.micro_batch_size * 2,
                                        tokenizer.pad_token_id, accelerator.device, False, group_rows, share)
            eval_ref = reference_logps(model, eval_examples, list(range(len(eval_examples))),
                                       tcfg.micro_batch_size * 2, tokenizer.pad_token_id, accelerator.device, False,
                                       group_rows, share)
            if accelerator.is_main_process:
                with disk_guard(out, "the reference log-probability cache", cleanup=cache_path):
                    torch.save({"train": ref_cache, "eval": eval_ref}, cache_path)
    model.train()

    # 3. Optimizer, schedule, accelerate wrapping; resume from the latest checkpoint if there is one.
    run = prepare_training(accelerator, model, tcfg, out, cfg.loss, to_dict(cfg))
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    start_step, metrics = run.start_step, run.metrics

    def ref_for(examples, cache, idx) -> torch.Tensor | None:
        if not spec.needs_reference:
            return None
        if cfg.model.use_lora:  # the base with adapters off is the reference, computed on the fly
            return torch.stack(list(reference_logps(model, examples, idx, len(idx), tokenizer.pad_token_id,
                                                    accelerator.device, True, group_rows, share).values()))
        return torch.stack([cache[i] for i in idx])

    # 4. Loop: each optimizer step sees `batch_size` examples in total over processes and microbatches.
    timer, window, eval_metrics = StepTimer(), [], {}
    sides = policy_sides(cfg)  # the halves of each batch the policy trains on
    bar = progress(accelerator, tcfg.max_steps, start_step, cfg.loss)
    for step in range(start_step, tcfg.max_steps):
        indices = rank_slice(steps_indices[step], accelerator.process_index, accelerator.num_processes)
        acc = StepStats(f"loss/{cfg.loss}")
        chunks = length_grouped_microbatches(indices, n_micro, lambda i: len(train_examples[i]))
        refs = [ref_for(train_examples, ref_cache, idx) for idx in chunks]  # (b,4) each, or None; once per step
        kto_point = None  # KTO: z0 over the whole global batch, before any update of this step
        if spec.data == "unpaired":
            kto_point = kto_reference_point(model, train_examples, chunks, refs, tokenizer.pad_token_id,
                                            accelerator.device, group_rows, accelerator.gather, share)
        for k, (idx, ref) in enumerate(zip(chunks, refs)):
            batch = collate_pair_batch([train_examples[i] for i in idx], tokenizer.pad_token_id, share)
            sync = nullcontext() if k == n_micro - 1 else accelerator.no_sync(model)
            with sync:
                policy = pair_logps(model, batch, accelerator.device, group_rows, sides)
                loss, stats = compute_loss(cfg, policy, None if ref is None else ref.to(accelerator.device), batch,
                                           tcfg.batch_size, kto_point)
                accelerator.backward(loss * accelerator.num_processes)  # DDP averages over processes
            acc.add(loss, stats, len(idx))
            timer.tokens += forwarded_tokens(batch) * len(sides) // 2  # the rows trained on (KTO: about half)
        grad_norm = clip_and_step(accelerator, model, optimizer, scheduler, tcfg.max_grad_norm)
        step_stats = acc.reduce(accelerator)
        check_finite(step + 1, **{f"loss/{cfg.loss}": step_stats[f"loss/{cfg.loss}"], "train/grad_norm": grad_norm})
        window.append(step_stats)
        bar.update(1)
        bar.set_postfix(loss=f"{step_stats[f'loss/{cfg.loss}']:.3f}")

        done = step + 1
        if done % tcfg.logging_steps == 0 or done == tcfg.max_steps:
            mean = {name: sum(s[name] for s in window) / len(window) for name in window[0]}
            metrics.log({**mean, "train/grad_norm": grad_norm, "train/lr": scheduler.get_last_lr()[0],
                         **timer.lap()}, step=done)
            window = []
        if eval_examples and ((tcfg.eval_steps and done % tcfg.eval_steps == 0) or done == tcfg.max_steps):
            eval_metrics = evaluate(cfg, accelerator, model, eval_examples, eval_ref, tokenizer.pad_token_id, ref_for,
                                    group_rows, share)
            metrics.log(eval_metrics, step=done)
        if (tcfg.save_steps and done % tcfg.save_steps == 0) or done == tcfg.max_steps or done == interrupt_at_step:
            save_checkpoint(accelerator, out, done, {}, keep=tcfg.save_total_limit)
        if done == interrupt_at_step:
            bar.close()
            accelerator.end_training()
            return DPOResult(out, done, eval_metrics)
    bar.close()

    # 5. Save the policy as a plain transformers dir (LoRA merged) and a completion record.
    save_model(accelerator, model, tokenizer, out)
    if accelerator.is_main_process:
        (out / RESULT_FILE).write_text(json.dumps(
            {"loss": cfg.loss, "steps": tcfg.max_steps, "train_examples": len(train_examples),
             "num_processes": accelerator.num_processes, "train_seconds": round(time.perf_counter() - started, 1),
             **eval_metrics}, indent=2))
    accelerator.end_training()
    return DPOResult(out, tcfg.max_steps, eval_metrics)


@torch.no_grad()
def evaluate(cfg: DPOConfig, accelerator, model, examples, eval_ref, pad_id: int, ref_for,
             group_rows: int = 0, share_prompts: bool = True) -> dict[str, float]:
    """The loss and its stats on held-out examples (this process computes all of them)."""
    sums: dict[str, float] = {}
    size = cfg.train.micro_batch_size
    chunks = [list(range(start, min(start + size, len(examples)))) for start in range(0, len(examples), size)]
    with eval_mode(model):
        refs = [ref_for(examples, eval_ref, idx) for idx in chunks]  # (b,4) each, or None
        kto_point = None  # KTO: z0 over all held-out examples
        if PREFERENCE_LOSSES[cfg.loss].data == "unpaired":
            kto_point = kto_reference_point(model, examples, chunks, refs, pad_id, accelerator.device, group_rows,
                                            share_prompts=share_prompts)
        for idx, ref in zip(chunks, refs):
            batch = collate_pair_batch([examples[i] for i in idx], pad_id, share_prompts)
            policy = pair_logps(model, batch, accelerator.device, group_rows, policy_sides(cfg))
            _, stats = compute_loss(cfg, policy, None if ref is None else ref.to(accelerator.device), batch, len(idx),
                                    kto_point)
            for name, value in stats.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(idx)
    return {"eval/loss" if name.startswith("loss/") else f"eval/{name.split('/', 1)[-1]}": v / len(examples)
            for name, v in sums.items()}
