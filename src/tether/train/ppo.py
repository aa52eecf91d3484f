"""Stage 3 of RLHF: PPO against a reward model, with a KL tether to the reference policy.

    tether ppo --config configs/demo/ppo.yaml [--ppo.kl_coef 0.05 --advantage_estimator rloo ...]
    accelerate launch --multi_gpu --num_processes 2 -m tether.cli.main ppo --config ...   (CPU: gloo)

Objective (Ziegler et al. 2019 eq. 2; Stiennon et al. 2020 eq. 1; Ouyang et al. 2022 eq. 2):

    maximise  E_{x~D, y~π_θ(·|x)} [ r(x, y) ]  −  β · KL( π_θ(·|x) ‖ π_ref(·|x) )

with r the reward model's score (or the demo task's gold judge), π_ref the SFT policy, β = `ppo.kl_coef`.
Each iteration (`train.max_steps` of them) runs the numbered steps that docs/ppo.md mirrors:
(1) sample prompts, (2) generate, (3) truncate at EOS, (4) score, (5) logprobs / reference logprobs /
values, (6) KL-shaped per-token rewards, (7) advantages, (8) K epochs of clipped minibatch updates,
(9) KL controller update, (10) log and checkpoint. The math lives in `tether.rl` and `tether.losses.ppo`.

Determinism and scale-out: the rollout is one global batch of N = prompts_per_step × samples_per_prompt
rows. Generation runs in seeded chunks (seed, step, chunk) split over processes; the samples are then
shared, so every process holds the whole rollout. The rows are cut once into length-grouped microbatches;
steps 4–5 run each microbatch on one process and the results are summed over processes; steps 6–7 run
on the global batch everywhere (advantages are whitened over the global batch); step 8 shuffles the
microbatches into minibatches and each process takes its share of every minibatch. So 1 and N processes
follow the same trajectory, a resumed run continues the same trajectory, and on the first minibatch the
forward is the one that produced the old logprobs (same rows, same padding): the ratio is exactly 1.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from tether.data.collators import collate_rollout, collate_rollout_shared
from tether.data.gold_judge import gold_reward
from tether.data.records import PromptRow
from tether.data.tokenization import encode_prompt, encode_response, finished_reply
from tether.data.validate import load_records
from tether.errors import ConfigError, DataError
from tether.losses.ppo import clipped_policy_loss, clipped_value_loss
from tether.models.loading import freeze, load_causal_lm, load_tokenizer
from tether.models.lora import adapters_disabled, apply_lora
from tether.models.scalar_head import HEAD_CONFIG_FILE, ScalarHeadModel, apply_lora_to_scalar
from tether.models.scoring import score_sequences
from tether.models.shared_prompt import shared_prompt_per_token
from tether.ops import entropy_from_logits, exact_div, gather_logprobs, masked_sum, masked_whiten
from tether.rl.advantages import SEQUENCE_ADVANTAGES, gae, whiten_advantages
from tether.rl.kl import AdaptiveKLController, FixedKLController, per_token_kl
from tether.rl.rewards import apply_missing_eos_penalty, shaped_rewards, truncate_at_eos
from tether.runtime.checkpoint import save_checkpoint
from tether.runtime.config import save_config, to_dict
from tether.runtime.seeding import global_batch_indices, rank_slice, seed_everything
from tether.sampling.generate import SamplingConfig, generate
from tether.train.loop import (
    StepStats,
    check_finite,
    clip_and_step,
    global_sum,
    make_accelerator,
    plan_microbatches,
    plan_prompt_microbatches,
    prepare_training,
    progress,
    save_model,
)

# The configs live in ppo_config.py; they are importable from here too (`tether.train.ppo.PPOConfig`).
from tether.train.ppo_config import PPOConfig, PPODataConfig, PPOHParams, RolloutConfig  # noqa: F401
from tether.train.ppo_monitor import (
    check_finite_tensors,
    report_kl_health,
    rollout_metrics,
    trainable_norm,
    write_samples,
)

RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.jsonl"
RewardFn = Callable[[list[PromptRow], list[str], list[bool]], list[float]]
"""A custom reward: (prompt rows, response texts, truncated flags) -> one score per response."""


@dataclass
class PPOResult:
    output_dir: Path
    steps: int
    metrics: dict
    """The last logged iteration's metrics."""
    critic: str
    """What served as the value model: 'separate', 'shared' or 'none' (rloo/grpo)."""


# --- models ----------------------------------------------------------------------------------------

class PolicyAndValue(torch.nn.Module):
    """The trained models in one module, so one optimizer, one DDP wrapper and one checkpoint hold them.

    `forward` goes through the policy's own forward (and the critic's), so DDP and PEFT wrappers see a
    normal call. The policy's LM head runs only at the positions that predict response tokens (the R + 1 last
    columns of a row; in the shared-prompt layout each prompt's last position and the responses).
    """

    def __init__(self, policy, critic: ScalarHeadModel | None = None, value_head: torch.nn.Linear | None = None,
                 group_rows: int = 0):
        super().__init__()
        self.policy, self.critic, self.value_head = policy, critic, value_head
        self.group_rows = group_rows  # shared-prompt batches: responses per forward (train.forward_group_rows)

    @property
    def has_values(self) -> bool:
        return self.critic is not None or self.value_head is not None

    def forward(self, batch: dict, temperature: float, entropy_grad: bool = False, with_values: bool = True,
                with_entropy: bool = True):
        """Per response token: logprobs (B,R) of logits / temperature, entropy (B,R) or None (when not
        `with_entropy`: the reference pass and updates without an entropy bonus skip its full-vocabulary
        softmax), values (B,R) or None (also when not `with_values`: the reference pass needs no critic).
        `batch` is a `collate_rollout` microbatch, or a `collate_rollout_shared` one (each prompt forwarded
        once for its k samples)."""
        shared_values = with_values and self.value_head is not None

        def per_token(logits, hidden, ids):  # (b,w,V), (b,w,H) or None, (b,w) → tuple of (b,w)
            logits = logits.float()
            if temperature != 1.0:  # a (b,w,V) copy: only when it changes anything
                logits = logits / temperature
            out = [gather_logprobs(logits, ids)]
            if with_entropy:
                with nullcontext() if entropy_grad else torch.no_grad():
                    out.append(entropy_from_logits(logits))
            if shared_values:
                out.append(self.value_head(hidden.float()).squeeze(-1))
            return tuple(out)

        def length_group(logits, hidden, rows):  # one group of responses of the shared-prompt layout
            return per_token(logits, hidden, batch["reply_ids"][rows, : logits.shape[1]])

        shared = "reply_ids" in batch
        if shared:  # each prompt once; the responses continue from its KV cache in length groups
            out = shared_prompt_per_token(self.policy, batch, length_group, hidden=shared_values,
                                          group_rows=self.group_rows)
        else:  # the LM head only at the R + 1 positions that predict response tokens
            p_width, r_width = int(batch["prompt_width"]), batch["response_ids"].shape[1]
            lm = self.policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             position_ids=batch["position_ids"], use_cache=False, logits_to_keep=r_width + 1,
                             output_hidden_states=shared_values)
            hidden = lm.hidden_states[-1][:, p_width - 1 : p_width - 1 + r_width] if shared_values else None
            out = per_token(lm.logits[:, :-1], hidden, batch["response_ids"])  # column t predicts token t
        logprobs, entropy = out[0], out[1] if with_entropy else None
        values = out[-1] if shared_values else None
        if with_values and self.critic is not None:
            values = (self.critic(shared=batch, per_token=True, group_rows=self.group_rows) if shared else
                      self.critic(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                  per_token=True)[:, p_width - 1 : p_width - 1 + r_width])  # (B,R)
        return logprobs, entropy, values


def load_models(cfg: PPOConfig, tokenizer, reward_fn: RewardFn | None, reference=None, reward_model=None):
    """Policy (+ LoRA), reference, value model, reward model (`reference`/`reward_model` given: used as they are).
    Dropout is off in all of them."""
    if reward_fn is None and reward_model is None and cfg.reward == "rm" and not Path(cfg.reward_model).is_dir():
        raise ConfigError(f"reward_model: {cfg.reward_model} is not a reward model dir; train one with `tether rm "
                          "--config configs/demo/rm.yaml`, or use the gold judge (--reward gold)")
    policy = load_causal_lm(cfg.model.name, tokenizer, cfg.model.dtype)
    if cfg.model.use_lora and reference is not None:
        raise ConfigError("model.use_lora: the reference is the base with adapters disabled; pass no reference")
    if not cfg.model.use_lora and reference is None:
        reference = freeze(copy.deepcopy(policy))  # the initial policy, frozen
    if cfg.model.use_lora:
        policy = apply_lora(policy, cfg.model)
    critic = value_head = None
    if cfg.advantage_estimator == "gae" and cfg.critic == "separate":
        spec = cfg.value_model or cfg.reward_model
        is_scalar = (Path(spec) / HEAD_CONFIG_FILE).is_file()
        critic = (ScalarHeadModel.from_pretrained(spec, cfg.model.dtype) if is_scalar
                  else ScalarHeadModel.from_pretrained_lm(spec, tokenizer, dtype=cfg.model.dtype, seed=cfg.train.seed))
        if critic.backbone.get_input_embeddings().weight.shape[0] < len(tokenizer):
            raise ConfigError(f"value_model {spec}: its vocabulary is smaller than the policy's; the value model "
                              "must share the policy's tokenizer")
        if cfg.model.use_lora:
            critic = apply_lora_to_scalar(critic, cfg.model)
    elif cfg.advantage_estimator == "gae":
        value_head = torch.nn.Linear(policy.config.hidden_size, 1, dtype=torch.float32)
        torch.nn.init.zeros_(value_head.weight)  # values start at 0; the head learns from the first rollout
        torch.nn.init.zeros_(value_head.bias)
    reward_tokenizer = None
    if reward_fn is not None or cfg.reward == "gold":
        reward_model = None
    elif reward_model is None:
        reward_model = freeze(ScalarHeadModel.from_pretrained(cfg.reward_model, cfg.model.dtype))
        rm_tok = load_tokenizer(cfg.reward_model)
        reward_tokenizer = None if rm_tok.get_vocab() == tokenizer.get_vocab() else rm_tok  # None: same ids
    model = PolicyAndValue(policy, critic, value_head)
    model.train()  # dropout is 0 everywhere, so train and eval mode compute the same
    return model, reference, reward_model, reward_tokenizer


def reference_forward(model: PolicyAndValue, reference, batch: dict, temperature: float) -> torch.Tensor:
    """(B,R) reference logprobs: the frozen copy, or the LoRA policy with its adapters disabled."""
    if reference is None:
        with adapters_disabled(model.policy):
            return model(batch, temperature, with_values=False, with_entropy=False)[0]
    return PolicyAndValue(reference, group_rows=model.group_rows)(batch, temperature, with_entropy=False)[0]


def policy_from_checkpoint(cfg: PPOConfig, checkpoint: Path, tokenizer):
    """The policy a PPO checkpoint holds (LoRA merged, frozen), to evaluate a run along its trajectory.

    `cfg` is the run's config (its config.yaml): it rebuilds the module the checkpoint was saved from. No
    reward model is loaded. A file that does not match the module is a ConfigError naming it."""
    from safetensors.torch import load_model

    from tether.models.lora import merged_for_saving

    model, _, _, _ = load_models(cfg, tokenizer, reward_fn=lambda rows, texts, cut: [])  # no RM needed
    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"{checkpoint}: no model.safetensors; not a PPO checkpoint dir")
    try:
        load_model(model, str(path), strict=True)  # tied weights (the LM head) are restored from their twin
    except RuntimeError as err:
        raise ConfigError(f"{path}: does not match the module built from the run's config ({err})") from None
    return freeze(merged_for_saving(model.policy))


# --- data ------------------------------------------------------------------------------------------

def load_prompts(cfg: PPOConfig, tokenizer) -> tuple[list[PromptRow], list[list[int]]]:
    rows, _ = load_records(cfg.data.prompts_file, "prompt", cfg.data.format, drop_bad=cfg.data.drop_bad_rows)
    encoded = [encode_prompt(tokenizer, r.prompt) for r in rows]
    budget = cfg.model.max_length - cfg.rollout.max_new_tokens
    too_long = [i for i, ids in enumerate(encoded) if len(ids) > budget]
    if too_long and not cfg.data.drop_bad_rows:
        first = rows[too_long[0]]
        raise DataError(f"{first.meta.get('source', cfg.data.prompts_file)}: {len(too_long)} prompts longer than "
                        f"model.max_length − rollout.max_new_tokens = {budget} tokens; raise model.max_length or "
                        "pass --data.drop_bad_rows true")
    dropped = set(too_long)
    keep = [i for i in range(len(rows)) if i not in dropped]
    rows, encoded = [rows[i] for i in keep], [encoded[i] for i in keep]
    if cfg.reward == "gold" and not all("family" in r.meta for r in rows):
        raise ConfigError(f"reward: gold needs demo-task prompts (rows with meta.family); {cfg.data.prompts_file} "
                          "has rows without it")
    return rows, encoded


# --- rollout: steps (2)–(5) ------------------------------------------------------------------------

@dataclass
class Rollout:
    """One iteration's global batch of N rows; every process holds all of it from step (5) on."""

    rows: list[PromptRow]
    prompt_ids: list[list[int]]
    texts: list[str]
    response_ids: torch.Tensor  # (N,R) cut after the first EOS, pad after it
    response_mask: torch.Tensor  # (N,R) True at real tokens (EOS included)
    has_eos: torch.Tensor  # (N,)
    microbatches: list[list[int]]  # fixed length-grouped row groups used by steps (5) and (8)
    batches: dict[int, dict]  # collated microbatches, by index (all of them)
    pad_id: int
    eos_id: int
    raw_score: torch.Tensor | None = None  # (N,) reward before the missing-EOS penalty
    old_logprobs: torch.Tensor | None = None  # (N,R) rollout policy, logits / temperature
    ref_logprobs: torch.Tensor | None = None  # (N,R) reference, logits / temperature
    values: torch.Tensor | None = None  # (N,R) V_t of the state before token t (None without a critic)
    entropy: torch.Tensor | None = None  # (N,R) rollout policy entropy


def generate_rollout(accelerator, policy, tokenizer, rows: list[PromptRow], cfg: PPOConfig, step: int) -> list:
    """(2) Sample one response per row: generate calls of `generation_batch_size` rows, call c seeded by
    (seed, step, c), this process running calls rank, rank + W, ...; the samples are then shared."""
    r = cfg.rollout
    sampling = SamplingConfig(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_k=r.top_k,
                              top_p=r.top_p, do_sample=True, batch_size=r.generation_batch_size,
                              min_new_tokens=r.min_new_tokens)
    calls = list(range(0, len(rows), r.generation_batch_size))
    mine = []
    for c in calls[accelerator.process_index :: accelerator.num_processes]:
        chunk = rows[c : c + r.generation_batch_size]
        seed = (cfg.train.seed * 100_003 + step) * 1_009 + c // r.generation_batch_size
        gens = generate(policy, tokenizer, [row.prompt for row in chunk], sampling, seed=seed)
        mine += [(c + i, g.prompt_ids, g.response_ids, g.text) for i, g in enumerate(gens)]
    from accelerate.utils import gather_object

    return sorted(gather_object(mine) if accelerator.num_processes > 1 else mine)


@torch.no_grad()
def score_and_evaluate(accelerator, model: PolicyAndValue, reference, reward_model, reward_tokenizer,
                       reward_fn: RewardFn | None, rollout: Rollout, cfg: PPOConfig) -> None:
    """(4) scores and (5) logprobs / reference logprobs / values / entropy of every row.

    Microbatch m runs on process m mod W; each process fills its rows of zero tensors and a sum over
    processes gives everyone the whole rollout (x + 0 is exact, so nothing is rounded).
    """
    n, width = rollout.response_ids.shape
    temperature = cfg.rollout.temperature
    out = torch.zeros(4, n, width)  # old_logprobs, ref_logprobs, values, entropy
    score = torch.zeros(n)  # (N,)
    truncated = (~rollout.has_eos).tolist()
    if reward_fn is not None or cfg.reward == "gold":
        fn = reward_fn or gold_reward
        score = torch.tensor(fn(rollout.rows, rollout.texts, truncated), dtype=torch.float32)  # (N,) every process
    device = accelerator.device
    for m in range(accelerator.process_index, len(rollout.microbatches), accelerator.num_processes):
        idx = rollout.microbatches[m]
        batch = {k: v.to(device) for k, v in rollout.batches[m].items()}
        r_width = batch["response_ids"].shape[1]
        logprobs, entropy, values = model(batch, temperature)  # (b,R) each
        out[0, idx, :r_width] = logprobs.cpu()
        out[1, idx, :r_width] = reference_forward(model, reference, batch, temperature).cpu()
        out[3, idx, :r_width] = entropy.cpu()
        if values is not None:
            out[2, idx, :r_width] = values.float().cpu()
        if reward_model is not None:
            score[idx] = rm_scores(reward_model, reward_tokenizer, batch, rollout, idx, model.group_rows)
    if accelerator.num_processes > 1:
        out = accelerator.reduce(out.to(device), reduction="sum").cpu()
        if reward_model is not None:
            score = accelerator.reduce(score.to(device), reduction="sum").cpu()
    rollout.old_logprobs, rollout.ref_logprobs, rollout.entropy = out[0], out[1], out[3]
    rollout.values = out[2] if model.has_values else None
    rollout.raw_score = score


def rm_scores(reward_model, reward_tokenizer, batch: dict, rollout: Rollout, idx: list[int],
              group_rows: int = 0) -> torch.Tensor:
    """(b,) reward-model scores of a microbatch, each read at the response's EOS. A row cut at max_new_tokens is
    read with EOS appended, as the RM was trained (`data.tokenization.finished_reply`); the missing-EOS penalty
    charges the cut afterwards, in step (4)."""
    if reward_tokenizer is None and bool(rollout.has_eos[idx].all()):  # the policy's own ids, as collated
        if "reply_ids" in batch:  # each prompt once for its samples
            return reward_model(shared=batch, group_rows=group_rows).float().cpu()
        return reward_model(batch["input_ids"], batch["attention_mask"], batch["position_ids"]).float().cpu()
    if reward_tokenizer is None:  # a row was cut: the policy's own ids, EOS appended where it is missing
        prompts = [rollout.prompt_ids[i] for i in idx]
        responses = [finished_reply(rollout.response_ids[i][rollout.response_mask[i]].tolist(), rollout.eos_id)
                     for i in idx]
        pad_id = rollout.pad_id
    else:  # another tokenizer: re-tokenise the text (encode_response appends the EOS)
        prompts = [encode_prompt(reward_tokenizer, rollout.rows[i].prompt) for i in idx]
        responses = [encode_response(reward_tokenizer, rollout.texts[i]) for i in idx]
        pad_id = reward_tokenizer.pad_token_id
    return torch.tensor(score_sequences(reward_model, prompts, responses, pad_id, group_rows or len(idx)))


# --- advantages: step (7), one adapter per estimator ----------------------------------------------

def _gae_advantages(rewards, values, mask, cfg: PPOConfig):
    return gae(rewards, values, mask, cfg.ppo.gamma, cfg.ppo.gae_lambda)  # (N,R), (N,R)


def _sequence_advantages(name: str):
    def estimate(rewards, values, mask, cfg: PPOConfig):
        returns = masked_sum(rewards, mask, dim=1)  # (N,) score − β·Σ KL_t per response
        per_sequence = SEQUENCE_ADVANTAGES[name](returns, cfg.rollout.samples_per_prompt)  # (N,)
        advantages = torch.where(mask, per_sequence.unsqueeze(1), torch.zeros(()))  # (N,R) same for every token
        return advantages, None
    return estimate


ADVANTAGE_ESTIMATORS = {"gae": _gae_advantages, "rloo": _sequence_advantages("rloo"),
                        "grpo": _sequence_advantages("grpo")}


# --- updates: step (8) -----------------------------------------------------------------------------

def ppo_updates(accelerator, model, optimizer, rollout: Rollout, advantages, returns, cfg: PPOConfig, step: int,
                policy_weight: float) -> dict[str, float]:
    """K epochs; in each, the microbatches are shuffled (seeded by seed, step, epoch) and grouped into minibatches
    of train.batch_size rows; each minibatch is one optimizer step, its loss the token mean over the minibatch."""
    tcfg, hp, world = cfg.train, cfg.ppo, accelerator.num_processes
    micro_per_mini = exact_div(tcfg.batch_size, tcfg.micro_batch_size, "train.batch_size / train.micro_batch_size")
    exact_div(micro_per_mini, world, "microbatches per minibatch / number of processes")
    mask = rollout.response_mask
    history, first_ratio_dev, stopped = [], 0.0, False
    for epoch in range(hp.num_epochs):
        gen = torch.Generator().manual_seed((tcfg.seed * 100_003 + step) * 1_009 + 500 + epoch)
        order = torch.randperm(len(rollout.microbatches), generator=gen).tolist()
        for start in range(0, len(order), micro_per_mini):
            minibatch = order[start : start + micro_per_mini]
            rows = [i for m in minibatch for i in rollout.microbatches[m]]
            num_tokens = mask[rows].sum().clamp(min=1).to(accelerator.device)  # () real tokens of the minibatch
            stats, ratio_max = StepStats("loss/total"), 0.0
            losses = {"loss/policy": 0.0, "loss/value": 0.0} if model_has_values(model) else {"loss/policy": 0.0}
            mine = rank_slice(minibatch, accelerator.process_index, world)
            for k, m in enumerate(mine):
                idx = rollout.microbatches[m]
                batch = {key: v.to(accelerator.device) for key, v in rollout.batches[m].items()}
                r_width = batch["response_ids"].shape[1]
                old, adv, mb_mask = (t[idx, :r_width].to(accelerator.device)
                                     for t in (rollout.old_logprobs, advantages, mask))  # (b,R) each
                with nullcontext() if k == len(mine) - 1 else accelerator.no_sync(model):
                    logprobs, entropy, values = model(batch, cfg.rollout.temperature, entropy_grad=True,
                                                      with_entropy=hp.ent_coef > 0)  # entropy: bonus only
                    pg_loss, step_stats = clipped_policy_loss(logprobs, old, adv, mb_mask, hp.clip_range, num_tokens)
                    loss = policy_weight * pg_loss
                    if hp.ent_coef > 0:
                        loss = loss - hp.ent_coef * masked_sum(entropy, mb_mask) / num_tokens
                    if values is not None:
                        old_values, target = (t[idx, :r_width].to(accelerator.device)
                                              for t in (rollout.values, returns))  # (b,R) each
                        vf_loss, vf_stats = clipped_value_loss(values, old_values, target, mb_mask,
                                                               hp.value_clip_range, num_tokens)
                        loss = loss + hp.vf_coef * vf_loss
                        step_stats.update(vf_stats)
                        losses["loss/value"] += float(vf_loss.detach())
                    accelerator.backward(loss * world)  # DDP averages gradients over processes
                losses["loss/policy"] += float(pg_loss.detach())
                ratio_max = max(ratio_max, float(step_stats.pop("policy/ratio_max")))
                stats.add(loss, {name: v for name, v in step_stats.items() if not name.startswith("loss/")},
                          int(mb_mask.sum()))  # token-weighted means
                if epoch == 0 and start == 0:  # before any update: the ratio must be exactly 1
                    dev = torch.where(mb_mask, (logprobs.detach() - old).exp() - 1, torch.zeros((), device=old.device))
                    first_ratio_dev = max(first_ratio_dev, float(dev.abs().max()))
            grad_norm = clip_and_step(accelerator, model, optimizer, None, tcfg.max_grad_norm)
            reduced = stats.reduce(accelerator)
            reduced.update({name: global_sum(accelerator, v) for name, v in losses.items()})
            check_finite(step, **{name: reduced[name] for name in ("loss/total", *losses)},
                         **{"train/grad_norm": grad_norm})
            reduced["train/grad_norm"] = grad_norm
            reduced["policy/ratio_max"] = _global_max(accelerator, ratio_max)
            history.append(reduced)
            if hp.target_kl is not None and reduced["policy/approx_kl"] > hp.target_kl:
                stopped = True
                break
        if stopped:
            break
    out = {name: sum(h[name] for h in history) / len(history) for name in history[0]}
    out["policy/ratio_max"] = max(h["policy/ratio_max"] for h in history)
    out["policy/ratio_dev_first"] = _global_max(accelerator, first_ratio_dev)
    out["train/updates"] = float(len(history))
    return out


def model_has_values(model) -> bool:
    while hasattr(model, "module"):
        model = model.module
    return model.has_values


def _global_max(accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="max").item())


# --- training --------------------------------------------------------------------------------------

def train(cfg: PPOConfig, *, reward_fn: RewardFn | None = None, reference=None, reward_model=None,
          interrupt_at_step: int | None = None) -> PPOResult:
    """Run PPO (resuming from the latest checkpoint in output_dir if there is one).

    Objects passed in replace what `cfg` would load: `reward_fn` the configured reward (any function of the
    prompt rows, texts and truncation flags), `reference` the frozen initial policy (full fine-tuning only),
    `reward_model` a scalar-head model sharing the policy's tokenizer. `interrupt_at_step` checkpoints and
    returns after that iteration (tests of resume).
    """
    started = time.perf_counter()
    out, tcfg, hp = Path(cfg.output_dir), cfg.train, cfg.ppo
    accelerator = make_accelerator(tcfg, out)
    seed_everything(tcfg.seed, tcfg.deterministic)
    k = cfg.rollout.samples_per_prompt
    n_rows = cfg.rollout.prompts_per_step * k
    exact_div(n_rows, tcfg.micro_batch_size, "rollout rows / train.micro_batch_size")
    exact_div(exact_div(tcfg.batch_size, tcfg.micro_batch_size, "train.batch_size / train.micro_batch_size"),
              accelerator.num_processes, "microbatches per minibatch / number of processes")

    tokenizer = load_tokenizer(cfg.model.name, cfg.model.max_length)
    prompts, _ = load_prompts(cfg, tokenizer)
    model, reference, reward_model, reward_tokenizer = load_models(cfg, tokenizer, reward_fn, reference, reward_model)
    critic = "separate" if model.critic is not None else "shared" if model.value_head is not None else "none"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        accelerator.print(f"ppo ({cfg.advantage_estimator}, reward {'custom' if reward_fn else cfg.reward}, value "
                          f"model {critic}): {len(prompts)} prompts, {n_rows} rows per rollout, "
                          f"{accelerator.num_processes} process(es)")

    run = prepare_training(accelerator, model, tcfg, out, "ppo", to_dict(cfg))  # moves the trained models
    reference, reward_model = (m.to(accelerator.device) if m is not None else None for m in (reference, reward_model))
    model, optimizer, scheduler, start_step, metrics = (run.model, run.optimizer, run.scheduler, run.start_step,
                                                        run.metrics)
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.group_rows = tcfg.group_rows(accelerator.device)  # shared-prompt microbatches: replies per forward
    controller = (AdaptiveKLController(hp.kl_coef, hp.kl_target, hp.kl_horizon) if hp.adaptive_kl
                  else FixedKLController(hp.kl_coef))
    if "kl_controller" in run.state:
        controller.load_state_dict(run.state["kl_controller"])
    if accelerator.is_main_process:  # keep the samples of the iterations the checkpoint covers
        kept = [line for line in (out / SAMPLES_FILE).read_text().splitlines()
                if json.loads(line)["step"] <= start_step] if (out / SAMPLES_FILE).is_file() else []
        (out / SAMPLES_FILE).write_text("".join(line + "\n" for line in kept))

    window, last, health = [], {}, None
    bar = progress(accelerator, tcfg.max_steps, start_step, "ppo")
    for step in range(start_step, tcfg.max_steps):
        it, beta, t0 = step + 1, controller.value, time.perf_counter()
        # (1) Sample prompts: a pure function of (seed, step); each prompt k times, consecutive rows.
        prompt_index = global_batch_indices(len(prompts), cfg.rollout.prompts_per_step, step, tcfg.seed)
        rows = [prompts[i] for i in prompt_index for _ in range(k)]

        # (2) Generate with the current policy: batched, KV cache, per-sequence EOS stop, T / top-k / top-p.
        samples = generate_rollout(accelerator, unwrapped.policy, tokenizer, rows, cfg, step)
        t_gen = time.perf_counter()

        # (3) Truncate after the first EOS (pad after it); rows without EOS are flagged for the penalty.
        width = max(1, max(len(s[2]) for s in samples))
        padded = torch.full((n_rows, width), tokenizer.pad_token_id, dtype=torch.long)  # (N,R)
        for i, (_, _, response, _) in enumerate(samples):
            padded[i, : len(response)] = torch.tensor(response, dtype=torch.long)
        response_ids, response_mask, has_eos = truncate_at_eos(padded, tokenizer.eos_token_id, tokenizer.pad_token_id)
        prompt_ids = [s[1] for s in samples]
        lengths = response_mask.sum(1).tolist()
        # k samples per prompt: each microbatch forwards each of its prompts once (train.share_prompts).
        share = tcfg.share_prompts and k > 1 and min(lengths) > 0
        micro = (plan_prompt_microbatches(prompt_ids, lengths, tcfg.micro_batch_size) if share else
                 plan_microbatches([len(p) + n for p, n in zip(prompt_ids, lengths)], tcfg.micro_batch_size))
        collate = collate_rollout_shared if share else collate_rollout
        batches = {m: collate([prompt_ids[i] for i in idx], [response_ids[i, : lengths[i]].tolist() for i in idx],
                              tokenizer.pad_token_id) for m, idx in enumerate(micro)}
        rollout = Rollout(rows, prompt_ids, [s[3] for s in samples], response_ids, response_mask, has_eos, micro,
                          batches, tokenizer.pad_token_id, tokenizer.eos_token_id)

        # (4) Score (reward model at the EOS, appended to a cut row; gold judge or custom) and
        # (5) logprobs under the rollout policy and the reference (logits / T), values under the critic.
        score_and_evaluate(accelerator, unwrapped, reference, reward_model, reward_tokenizer, reward_fn, rollout, cfg)
        check_finite_tensors(it, response_mask, **{"reward/score": rollout.raw_score,
                                                   "policy/logprobs": rollout.old_logprobs,
                                                   "reference/logprobs": rollout.ref_logprobs,
                                                   "value/values": rollout.values})
        score = apply_missing_eos_penalty(rollout.raw_score, has_eos, hp.missing_eos_penalty)  # (N,)
        t_score = time.perf_counter()

        # (6) Per-token rewards: −β·KL_t at every token, the score added at the last one; optional whitening.
        kl = per_token_kl(rollout.old_logprobs, rollout.ref_logprobs, response_mask, hp.kl_estimator)  # (N,R)
        rewards = shaped_rewards(score, kl, response_mask, beta)  # (N,R)
        if hp.whiten_rewards:
            rewards = masked_whiten(rewards, response_mask, shift_mean=False)  # (N,R)
        kl_sequence = float(masked_sum(kl, response_mask, dim=1).mean())
        health = report_kl_health(accelerator, it, kl_sequence, health, hp.stop_on_catastrophic_kl)

        # (7) Advantages (and returns for the value model), whitened over the global rollout.
        advantages, returns = ADVANTAGE_ESTIMATORS[cfg.advantage_estimator](
            rewards, rollout.values, response_mask, cfg)  # (N,R), (N,R) or None
        if hp.whiten_advantages:
            advantages = whiten_advantages(advantages, response_mask)  # (N,R)
        check_finite_tensors(it, response_mask, **{"reward/shaped": rewards, "advantages": advantages})

        # (8) K epochs of shuffled minibatch updates: clipped policy loss (+ clipped value loss), grad clipping,
        # optional early stop on approx_kl. During critic warm-up only the value model learns.
        warmup = step < hp.critic_warmup_steps
        update = ppo_updates(accelerator, model, optimizer, rollout, advantages, returns, cfg, it,
                             policy_weight=0.0 if warmup else 1.0)
        scheduler.step()
        t_train = time.perf_counter()

        # (9) KL controller: adaptive β moves towards the target KL (Ziegler et al. 2019); fixed β stays.
        controller.update(kl_sequence, n_rows)

        # (10) Log and checkpoint.
        check_finite(it, **{"train/param_norm": trainable_norm(model)})
        step_metrics = {**rollout_metrics(rollout, score, kl, rewards, advantages, returns, beta), **update,
                        "kl/health": health.verdict, "train/lr": scheduler.get_last_lr()[0],
                        "train/critic_warmup": float(warmup), "gen/tokens_per_s": sum(lengths) / (t_gen - t0),
                        "time/generate": t_gen - t0, "time/score": t_score - t_gen, "time/train": t_train - t_score,
                        "perf/seconds": time.perf_counter() - t0}
        window.append(step_metrics)
        if it % tcfg.logging_steps == 0 or it == tcfg.max_steps:
            last = {name: (sum(w[name] for w in window) / len(window) if isinstance(value, float) else value)
                    for name, value in window[-1].items()}
            metrics.log(last, step=it)
            window = []
        if hp.sample_table_steps and (it % hp.sample_table_steps == 0 or it == 1) and accelerator.is_main_process:
            write_samples(out / SAMPLES_FILE, it, rollout, score, kl)
        bar.update(1)
        bar.set_postfix(score=f"{step_metrics['reward/score']:.3f}", kl=f"{kl_sequence:.2f}")
        if (tcfg.save_steps and it % tcfg.save_steps == 0) or it == tcfg.max_steps or it == interrupt_at_step:
            save_checkpoint(accelerator, out, it, {"kl_controller": controller.state_dict()},
                            keep=tcfg.save_total_limit)
        if it == interrupt_at_step:
            bar.close()
            accelerator.end_training()
            return PPOResult(out, it, last, critic)
    bar.close()

    save_model(accelerator, unwrapped.policy, tokenizer, out)
    if accelerator.is_main_process:
        (out / RESULT_FILE).write_text(json.dumps(
            {"advantage_estimator": cfg.advantage_estimator, "reward": "custom" if reward_fn else cfg.reward,
             "critic": critic, "steps": tcfg.max_steps, "num_processes": accelerator.num_processes,
             "train_seconds": round(time.perf_counter() - started, 1), "final_kl_coef": controller.value,
             **{name: v for name, v in last.items()}}, indent=2))
    accelerator.end_training()
    return PPOResult(out, tcfg.max_steps, last, critic)
