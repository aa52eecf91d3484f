"""The PPO stage's configuration: data, rollout sampling, PPO hyperparameters and their validation.

`tether config ppo` lists every field with its docstring; `tether.train.ppo` runs the loop they configure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tether.errors import ConfigError
from tether.models.spec import ModelConfig
from tether.train.loop import TrainConfig


@dataclass
class PPODataConfig:
    prompts_file: str = "runs/demo/data/rl_prompts.jsonl"
    """Prompts to roll out on (prompt-only rows; demo-task rows carry the meta the gold judge needs)."""
    format: Literal["auto", "tether", "trl", "messages", "hh", "oasst", "gsm8k"] = "auto"
    """Row format (auto-detected by default)."""
    drop_bad_rows: bool = False
    """Drop malformed or over-long prompts (counted) instead of refusing the file."""


@dataclass
class RolloutConfig:
    prompts_per_step: int = 8
    """Prompts sampled per PPO iteration (global, over all processes)."""
    samples_per_prompt: int = 4
    """k responses per prompt; the rollout has prompts_per_step × k rows (RLOO/GRPO need k ≥ 2)."""
    max_new_tokens: int = 64
    """Longest response; one without EOS by then is truncated and gets ppo.missing_eos_penalty."""
    min_new_tokens: int = 0
    """EOS is not sampled before this many tokens (0 = off; benchmarks/ppo_step.py fixes the length with it)."""
    temperature: float = 1.0
    """Sampling temperature; logprobs of the policy and the reference are computed from logits / temperature."""
    top_k: int = 0
    """Sample from the k most likely tokens (0 = off). Off by default: logprobs ignore the cut, so KL is biased."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off; same caveat as top_k)."""
    generation_batch_size: int = 32
    """Rows per generate call; call c of step s is seeded by (seed, s, c), so rollouts do not depend on the
    number of processes."""


@dataclass
class PPOHParams:
    kl_coef: float = 0.05
    """β: weight of the per-token KL penalty −β·KL_t in the reward (the initial β when adaptive_kl)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    """Per-token KL estimator in the reward: k1 = log π − log π_ref (unbiased), k2, k3 (unbiased, ≥ 0)."""
    adaptive_kl: bool = False
    """Adapt β towards kl_target (Ziegler et al. 2019) instead of keeping it fixed."""
    kl_target: float = 6.0
    """Target mean sequence KL (nats) of the adaptive controller."""
    kl_horizon: float = 10000.0
    """Adaptive controller horizon in samples (how slowly β moves)."""
    gamma: float = 1.0
    """γ: discount over response tokens (1: the reward at the end counts fully for every token)."""
    gae_lambda: float = 0.95
    """λ of GAE: 1 = Monte Carlo returns, 0 = one-step TD."""
    clip_range: float = 0.2
    """ε of the clipped policy loss: the ratio π_θ/π_old is clipped to [1 − ε, 1 + ε]."""
    value_clip_range: float = 0.2
    """ε of the clipped value loss, in reward units."""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss (GAE only)."""
    ent_coef: float = 0.0
    """Weight of an entropy bonus (0 = off; entropy is logged either way)."""
    num_epochs: int = 4
    """K: passes over each rollout, each in shuffled minibatches of train.batch_size rows."""
    whiten_rewards: bool = False
    """Rescale the shaped per-token rewards of each rollout to unit variance (mean kept) before advantages."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0, variance 1 over the global rollout."""
    missing_eos_penalty: float | None = 1.0
    """Subtracted from the score of responses that hit max_new_tokens without EOS (null: no penalty)."""
    target_kl: float | None = None
    """Stop this rollout's updates early once a minibatch's approx_kl (π_old ‖ π_θ) exceeds this (null: never)."""
    critic_warmup_steps: int = 0
    """Iterations at the start that train only the value model (against value lag; GAE only)."""
    stop_on_catastrophic_kl: bool = True
    """Stop the run when the rollout KL exceeds 20 nats (the KL health rule); false: only warn."""
    sample_table_steps: int = 10
    """Print a table of samples and append the rollout to samples.jsonl every N iterations (0 = never)."""


@dataclass
class PPOConfig:
    output_dir: str = "runs/demo/ppo"
    """Run dir: the policy (save_pretrained), config.yaml, metrics.jsonl, samples.jsonl, checkpoints/."""
    advantage_estimator: Literal["gae", "rloo", "grpo"] = "gae"
    """gae: PPO with a value model; rloo: leave-one-out baseline; grpo: group-normalised (no value model)."""
    reward: Literal["rm", "gold"] = "rm"
    """Reward: the learned reward model, or the demo task's gold judge (experiments, sanity checks)."""
    reward_model: str = "runs/demo/rm"
    """Reward model dir (from `tether rm`); used when reward is rm, and as the default value-model init."""
    critic: Literal["separate", "shared"] = "separate"
    """GAE's value model: a separate scalar-head model, or a value head on the policy's backbone."""
    value_model: str | None = None
    """Init of the separate value model: a reward/value model dir (default: reward_model), or a causal LM
    dir/name (its decoder gets a fresh head)."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="runs/demo/sft"))
    """The policy to start from (the SFT model); it is also the reference (a frozen copy, or with LoRA the
    base with adapters disabled)."""
    data: PPODataConfig = field(default_factory=PPODataConfig)
    """Prompts."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Sampling of the rollouts."""
    ppo: PPOHParams = field(default_factory=PPOHParams)
    """PPO hyperparameters."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        learning_rate=1e-5, adam_epsilon=1e-5, lr_scheduler_type="constant", warmup_ratio=0.0, max_steps=20,
        batch_size=8, micro_batch_size=4, logging_steps=1))
    """Loop settings. In PPO: max_steps = iterations (rollouts), the schedule steps once per iteration;
    batch_size = rows per minibatch (one optimizer step); micro_batch_size = rows per forward."""

    def validate(self) -> None:
        r, p = self.rollout, self.ppo
        if r.prompts_per_step < 1 or r.samples_per_prompt < 1:
            raise ConfigError("rollout.prompts_per_step and rollout.samples_per_prompt must be >= 1")
        rows = r.prompts_per_step * r.samples_per_prompt
        if rows % self.train.batch_size:
            raise ConfigError(f"train.batch_size ({self.train.batch_size}) must divide the rollout's rows "
                              f"(rollout.prompts_per_step × rollout.samples_per_prompt = {rows})")
        if self.advantage_estimator != "gae" and r.samples_per_prompt < 2:
            raise ConfigError(f"rollout.samples_per_prompt must be >= 2 for {self.advantage_estimator} "
                              f"(its baseline comes from the other samples of the prompt), got {r.samples_per_prompt}")
        if self.advantage_estimator != "gae" and p.critic_warmup_steps:
            raise ConfigError(f"ppo.critic_warmup_steps needs a value model; {self.advantage_estimator} has none")
        if r.max_new_tokens < 1 or r.generation_batch_size < 1:
            raise ConfigError("rollout.max_new_tokens and rollout.generation_batch_size must be >= 1")
        if not 0 <= r.min_new_tokens <= r.max_new_tokens:
            raise ConfigError(f"rollout.min_new_tokens must be in [0, max_new_tokens], got {r.min_new_tokens}")
        if r.temperature <= 0:
            raise ConfigError(f"rollout.temperature must be > 0, got {r.temperature}")
        if not 0 < r.top_p <= 1 or r.top_k < 0:
            raise ConfigError(f"rollout.top_p must be in (0, 1] and rollout.top_k >= 0, got {r.top_p}, {r.top_k}")
        if self.model.lora_dropout:
            raise ConfigError("model.lora_dropout must be 0 for PPO: dropout makes rollout and update logprobs differ")
        if p.kl_coef < 0 or (p.adaptive_kl and p.kl_coef == 0):
            raise ConfigError(f"ppo.kl_coef must be >= 0 (> 0 with adaptive_kl), got {p.kl_coef}")
        if not (0 <= p.gamma <= 1 and 0 <= p.gae_lambda <= 1):
            raise ConfigError(f"ppo.gamma and ppo.gae_lambda must be in [0, 1], got {p.gamma}, {p.gae_lambda}")
        if p.clip_range <= 0 or p.value_clip_range <= 0:
            raise ConfigError("ppo.clip_range and ppo.value_clip_range must be > 0")
        if p.num_epochs < 1:
            raise ConfigError(f"ppo.num_epochs must be >= 1, got {p.num_epochs}")
        if p.missing_eos_penalty is not None and p.missing_eos_penalty < 0:
            raise ConfigError(f"ppo.missing_eos_penalty must be >= 0 (it is subtracted), got {p.missing_eos_penalty}")
        if p.adaptive_kl and (p.kl_target <= 0 or p.kl_horizon <= 0):
            raise ConfigError("ppo.kl_target and ppo.kl_horizon must be > 0")
