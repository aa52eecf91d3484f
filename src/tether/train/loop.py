"""Plumbing every training stage shares, as small functions (no base class, no hooks).

A stage's `train(cfg)` reads top to bottom: build the accelerator, load data and models, then for each
optimizer step: take this process's slice of the global batch, run microbatches with gradient
accumulation, clip, step, log, evaluate, checkpoint. The global batch is fixed by config
(`train.batch_size` examples), independent of the number of processes; microbatches per process
follow from it, so 1 and N processes follow the same loss curve.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from tether.errors import ConfigError, TrainingError
from tether.ops import exact_div
from tether.runtime.checkpoint import disk_guard


@dataclass
class TrainConfig:
    seed: int = 0
    """Seed for data order, initialisation of new heads and sampling."""
    deterministic: bool = False
    """torch's deterministic algorithms (`torch.use_deterministic_algorithms`): bit-identical reruns on more than one
    CPU thread, where runs otherwise part in the last digits (docs/ppo.md, "Reproducibility")."""
    learning_rate: float = 2e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and norms)."""
    adam_epsilon: float = 1e-8
    """AdamW epsilon."""
    lr_scheduler_type: Literal["constant", "linear", "cosine"] = "cosine"
    """Learning-rate schedule after warmup."""
    warmup_ratio: float = 0.05
    """Fraction of max_steps spent warming the learning rate up linearly from 0."""
    max_steps: int = 100
    """Optimizer steps to train for."""
    batch_size: int = 16
    """Global batch: examples per optimizer step, summed over processes and accumulation."""
    micro_batch_size: int = 8
    """Examples per forward pass in each process (gradient accumulation makes up the rest)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    logging_steps: int = 5
    """Log training metrics every N steps."""
    eval_steps: int = 50
    """Evaluate on the held-out set every N steps (0 disables; the end of training always evaluates)."""
    save_steps: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints."""
    resume: bool = True
    """Resume from the latest checkpoint in output_dir if there is one."""
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Trackers besides metrics.jsonl: tensorboard, wandb, trackio, mlflow (accelerate trackers)."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast precision (GPU); keep `no` on CPU."""
    forward_group_rows: int | None = None
    """Pairwise stages (reward model, DPO family) and PPO's shared-prompt microbatches: replies (or
    prompt+reply rows) per forward inside a microbatch, grouped by length and each group cut to its longest,
    so a short reply does not pay for a long one's padding; same results. 0: the whole microbatch in one
    forward. None: 4 on CPU (on the demo's pairs 1.2–1.5× faster forward+backward than one forward:
    benchmarks/length_groups.py), 0 on GPUs, where one large forward is the faster one."""
    share_prompts: bool = True
    """Pairwise stages: forward each pair's prompt once and continue both replies from its KV cache
    (`models.shared_prompt`; same results, fewer tokens: forward+backward 1.15× faster than the row layout on
    the demo's DPO pairs, benchmarks/length_groups.py, and 1.18–1.26× at 8 pairs × 256 tokens, dpo_step.py).
    PPO with k > 1 samples per prompt: each microbatch holds whole prompts' samples and forwards each prompt
    once (benchmarks/ppo_layouts.py). false: one forward per prompt+reply row, for a model whose forward takes
    no KV cache."""

    def validate(self) -> None:
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(f"train.batch_size ({self.batch_size}) must be a multiple of "
                              f"train.micro_batch_size ({self.micro_batch_size})")
        if self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1, got {self.max_steps}")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        if self.forward_group_rows is not None and self.forward_group_rows < 0:
            raise ConfigError(f"train.forward_group_rows must be >= 0, got {self.forward_group_rows}")

    def group_rows(self, device: torch.device) -> int:
        """`forward_group_rows` resolved for `device` (0: one forward per microbatch)."""
        if self.forward_group_rows is not None:
            return self.forward_group_rows
        return 4 if device.type == "cpu" else 0


def make_accelerator(cfg: TrainConfig, output_dir: Path):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    trackers = [t for t in cfg.report_to if t and t != "none"]
    # cpu=True on machines without CUDA: that is what makes accelerate use gloo across processes
    # started by torchrun / `accelerate launch --multi_gpu` (its `--cpu` launcher needs MPI for >1 process).
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        # Our schedules count optimizer steps of the *global* batch; accelerate would otherwise step
        # the scheduler once per process per step.
        step_scheduler_with_optimizer=False,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    return accelerator


def init_trackers(accelerator, name: str, config: dict) -> None:
    if accelerator.log_with:
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in _flatten(config).items()}
        accelerator.init_trackers(name, config=flat)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def accumulation_steps(cfg: TrainConfig, world_size: int) -> int:
    """Microbatches per process per optimizer step (raises if the global batch does not split evenly)."""
    per_process = exact_div(cfg.batch_size, world_size, "train.batch_size / number of processes")
    return exact_div(per_process, cfg.micro_batch_size, "per-process batch / train.micro_batch_size")


def length_grouped_microbatches(indices: list[int], n_micro: int, length) -> list[list[int]]:
    """Split this process's share of a step into `n_micro` equal microbatches of similar lengths.

    The step's examples (and so its token-mean loss and gradient) are unchanged; sorting by length
    only reduces the padding each forward pays for.
    """
    ordered = sorted(indices, key=length)
    size = len(ordered) // n_micro
    return [ordered[k * size : (k + 1) * size] for k in range(n_micro)]


def plan_microbatches(lengths: list[int], micro_batch_size: int) -> list[list[int]]:
    """Rows sorted by length, cut into microbatches of `micro_batch_size` (less padding per forward)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]


def plan_prompt_microbatches(prompt_ids: list[list[int]], lengths: list[int],
                             micro_batch_size: int) -> list[list[int]]:
    """Rows kept together by prompt (its k samples side by side), the prompts sorted by prompt + longest
    response length, cut into microbatches of `micro_batch_size`: for the shared-prompt layout, where a
    microbatch forwards each of its prompts once."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompt_ids):
        groups.setdefault(tuple(p), []).append(i)
    ordered = sorted(groups.values(), key=lambda rows: (len(prompt_ids[rows[0]]) + max(lengths[i] for i in rows),
                                                        rows[0]))
    order = [i for rows in ordered for i in rows]
    return [order[i : i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]


def build_optimizer(model, cfg: TrainConfig, eps: float | None = None, scaled: list | None = None,
                    lr_scale: float = 1.0):
    """AdamW over trainable parameters; no weight decay on biases and norm weights. The parameters in `scaled`
    (e.g. a fresh score head) learn at `lr_scale` × the learning rate, in groups of their own that the schedule
    scales like the others.

    The fused kernel where every parameter is on a CPU or CUDA device (the model may move from CPU to CUDA in
    `accelerator.prepare`; both have it): one pass per tensor instead of a dozen elementwise ops. On the 2-core
    dev CPU, a step over the 269M trainable parameters of SmolLM2-135M policy + separate critic took 0.13 s fused
    and 0.77 s with torch's CPU default (a for-loop), where the whole PPO update of 8 rows takes ~9 s.
    """
    special = {id(p) for p in scaled or ()}
    groups = []
    for is_scaled, lr in ((False, cfg.learning_rate), (True, cfg.learning_rate * lr_scale)):
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad and (id(p) in special) == is_scaled:
                (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        if not is_scaled or decay or no_decay:
            groups += [{"params": decay, "weight_decay": cfg.weight_decay, "lr": lr},
                       {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, eps=cfg.adam_epsilon if eps is None else eps,
                             fused=fused or None)


def build_scheduler(optimizer, cfg: TrainConfig):
    warmup = int(cfg.warmup_ratio * cfg.max_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, cfg.max_steps - warmup)
        if cfg.lr_scheduler_type == "linear":
            return max(0.0, 1.0 - progress)
        if cfg.lr_scheduler_type == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def global_sum(accelerator, value: float) -> float:
    """Sum a python number over processes."""
    if accelerator.num_processes == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="sum").item())


def check_finite(step: int, **quantities: float) -> None:
    """Stop the run naming the step and the first non-finite quantity."""
    for name, value in quantities.items():
        if not math.isfinite(value):
            raise TrainingError(f"step {step}: {name} is {value}; stopping (the last good checkpoint is kept)")


def clip_and_step(accelerator, model, optimizer, scheduler, max_grad_norm: float) -> float:
    """Clip gradients (0 = no clip), step optimizer and scheduler (None: no schedule step), zero grads; return the
    pre-clip norm."""
    if max_grad_norm > 0:
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    else:
        grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
        grad_norm = torch.stack(grads).norm() if grads else torch.tensor(0.0)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


class StepStats:
    """A step's stats accumulated over microbatches and processes.

    The loss of a microbatch is already normalised by the *global* count (so gradients are right), so
    the step loss is the plain sum of microbatch losses; every other stat is a mean over its microbatch
    and is weighted by the microbatch size.
    """

    def __init__(self, loss_name: str):
        self.loss_name = loss_name
        self.loss = 0.0
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, loss: torch.Tensor, stats: dict, n: int) -> None:
        self.loss += float(loss.detach())
        self.count += n
        for name, value in stats.items():
            if name != self.loss_name:
                self.sums[name] = self.sums.get(name, 0.0) + float(value) * n

    def reduce(self, accelerator) -> dict[str, float]:
        count = global_sum(accelerator, self.count)
        out = {name: global_sum(accelerator, v) / count for name, v in self.sums.items()}
        out[self.loss_name] = global_sum(accelerator, self.loss)
        return out


class StepTimer:
    """Wall time and token throughput per logging window."""

    def __init__(self):
        self.start = time.perf_counter()
        self.tokens = 0

    def lap(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {"perf/tokens_per_s": self.tokens / elapsed, "perf/seconds": elapsed}
        self.start, self.tokens = time.perf_counter(), 0
        return out


def progress(accelerator, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not accelerator.is_main_process, dynamic_ncols=True)


@dataclass
class Prepared:
    """What `prepare_training` returns: wrapped model/optimizer/schedule, the step to start at, the metrics sink,
    and the resumed checkpoint's trainer state (empty on a fresh start)."""

    model: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    start_step: int
    metrics: object
    state: dict = field(default_factory=dict)


def prepare_training(accelerator, model, cfg: TrainConfig, out: Path, stage: str, config_dict: dict,
                     scaled: list | None = None, lr_scale: float = 1.0) -> Prepared:
    """AdamW + schedule, accelerate wrapping, resume from the latest checkpoint (if `cfg.resume`), metrics sinks.
    `scaled`, `lr_scale`: parameters with their own learning rate (`build_optimizer`).

    The data order is a function of (seed, step), so a checkpoint's step plus the accelerate state
    (model, optimizer, scheduler, RNG) is all a resumed run needs to continue the same trajectory.
    """
    from tether.runtime.checkpoint import latest_checkpoint, load_checkpoint
    from tether.runtime.metrics import MetricsLogger

    optimizer = build_optimizer(model, cfg, scaled=scaled, lr_scale=lr_scale)
    scheduler = build_scheduler(optimizer, cfg)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state, checkpoint = {}, latest_checkpoint(out) if cfg.resume else None
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        accelerator.print(f"{stage}: resumed from {checkpoint} (step {state['step']})")
    start_step = state.get("step", 0)
    metrics = MetricsLogger(accelerator, out / "metrics.jsonl", resume_step=start_step if checkpoint else None)
    init_trackers(accelerator, stage, config_dict)
    return Prepared(model, optimizer, scheduler, start_step, metrics, state)


def save_model(accelerator, model, tokenizer, out_dir: Path) -> None:
    """save_pretrained the (LoRA-merged) model and the tokenizer; main process only."""
    from tether.models.lora import merged_for_saving

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        with disk_guard(out_dir, "the trained model"):
            merged_for_saving(accelerator.unwrap_model(model)).save_pretrained(out_dir, safe_serialization=True)
            tokenizer.save_pretrained(out_dir)
    accelerator.wait_for_everyone()
