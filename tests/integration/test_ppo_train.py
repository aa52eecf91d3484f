"""PPO on a tiny offline model: the ratio is exactly 1 before the first update and KL starts at 0; resume and
2 processes reproduce the uninterrupted single-process trajectory; NaN stops the run naming the step and the
quantity and keeps the last good checkpoint; RLOO/GRPO load no value model; reference and reward model stay
bit-identical while the policy changes; forwarding each prompt once for its samples follows the row layout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ppo_assets import curves, make_assets, ppo_cfg
from tether.train.ppo import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def assets(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    return make_assets(tiny_model_dir, tmp_path_factory.mktemp("ppo-assets"))


def test_first_minibatch_ratio_is_exactly_one_and_kl_starts_at_zero(assets, tmp_path):
    result = train(ppo_cfg(assets, tmp_path / "run", "--train.max_steps", "2"))
    log = curves(tmp_path / "run")
    assert [m["step"] for m in log] == [1, 2] and result.critic == "separate"
    assert all(m["policy/ratio_dev_first"] == 0.0 for m in log)  # old logprobs = the update's forward, bitwise
    assert log[0]["kl/sequence"] == 0.0 and log[0]["kl/health"] == "barely-changed"  # policy == reference
    assert log[1]["kl/sequence"] != 0.0  # the policy moved
    for name in ("reward/score", "reward/gold", "kl/per_token", "kl/beta", "policy/entropy", "policy/approx_kl",
                 "policy/clipfrac", "value/error", "value/explained_variance", "gen/response_len", "gen/eos_rate",
                 "gen/distinct_2", "loss/policy", "loss/value", "train/grad_norm"):
        assert all(math.isfinite(m[name]) for m in log), name
    assert (tmp_path / "run" / "result.json").is_file() and (tmp_path / "run" / "model.safetensors").is_file()


def test_resume_two_plus_two_equals_four(assets, tmp_path):
    tables = ("--ppo.sample_table_steps", "1")
    train(ppo_cfg(assets, tmp_path / "straight", *tables))
    train(ppo_cfg(assets, tmp_path / "resumed", *tables), interrupt_at_step=2)
    assert [m["step"] for m in curves(tmp_path / "resumed")] == [1, 2]
    with (tmp_path / "resumed" / "samples.jsonl").open("a") as f:  # a crash after step 3's samples, before its
        f.write('{"step": 3, "prompt": "lost", "response": "lost"}\n')  # checkpoint: resume drops them
    train(ppo_cfg(assets, tmp_path / "resumed", *tables))
    straight, resumed = curves(tmp_path / "straight"), curves(tmp_path / "resumed")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    assert resumed == straight  # every metric of every iteration, bit for bit
    samples = [(tmp_path / run / "samples.jsonl").read_text() for run in ("straight", "resumed")]
    assert samples[0] == samples[1] and samples[0].count("\n") == 4 * 8  # 4 rollouts of 8 rows, same samples


def test_deterministic_setting_reaches_torch_and_a_later_stage_resets_it(assets, tmp_path, monkeypatch):
    import tether.train.ppo as ppo_module

    seen = []
    real = ppo_module.seed_everything
    monkeypatch.setattr(ppo_module, "seed_everything", lambda seed, det: (seen.append(det), real(seed, det)))
    try:
        train(ppo_cfg(assets, tmp_path / "det", "--train.max_steps", "2", "--train.deterministic", "true"))
        assert seen == [True] and torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    train(ppo_cfg(assets, tmp_path / "plain", "--train.max_steps", "2"))
    assert seen == [True, False] and not torch.are_deterministic_algorithms_enabled()
    assert [m["step"] for m in curves(tmp_path / "det")] == [1, 2]


def test_adaptive_controller_state_survives_resume(assets, tmp_path):
    extra = ("--ppo.adaptive_kl", "true", "--ppo.kl_target", "0.01", "--ppo.kl_horizon", "50",
             "--rollout.temperature", "0.7")
    train(ppo_cfg(assets, tmp_path / "straight", *extra, "--train.max_steps", "3"))
    train(ppo_cfg(assets, tmp_path / "resumed", *extra, "--train.max_steps", "3"), interrupt_at_step=2)
    train(ppo_cfg(assets, tmp_path / "resumed", *extra, "--train.max_steps", "3"))
    betas = [m["kl/beta"] for m in curves(tmp_path / "straight")]
    assert betas[0] == 0.05 and betas[1] != betas[0]  # β moved after the first rollout
    assert [m["kl/beta"] for m in curves(tmp_path / "resumed")] == betas


def test_nan_reward_stops_naming_step_and_quantity_and_keeps_last_checkpoint(assets, tmp_path):
    from tether.errors import TrainingError
    from tether.train.ppo import gold_reward

    calls = []

    def reward_fn(rows, texts, truncated):
        calls.append(1)
        scores = gold_reward(rows, texts, truncated)
        return [float("nan"), *scores[1:]] if len(calls) == 3 else scores

    cfg = ppo_cfg(assets, tmp_path / "nan", "--train.save_steps", "1", "--train.save_total_limit", "5")
    with pytest.raises(TrainingError, match=r"^step 3: reward/score is nan; stopping \(the last good checkpoint"):
        train(cfg, reward_fn=reward_fn)
    saved = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir())
    assert saved == ["step-1", "step-2"]  # the last good checkpoint is kept, nothing after it
    assert not (tmp_path / "nan" / "result.json").exists()


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_critic_free_estimators_load_no_value_model(assets, tmp_path, estimator):
    from safetensors.torch import load_file

    result = train(ppo_cfg(assets, tmp_path / estimator, "--advantage_estimator", estimator, "--reward", "gold",
                           "--value_model", str(tmp_path / "does-not-exist"), "--train.max_steps", "2"))
    assert result.critic == "none"
    log = curves(tmp_path / estimator)
    assert not any(k.startswith("value/") or k == "loss/value" for m in log for k in m)
    assert log[0]["reward/score"] == pytest.approx(log[0]["reward/gold"], abs=1e-6)  # the gold judge is the reward
    weights = load_file(str(tmp_path / estimator / "checkpoints" / "step-2" / "model.safetensors"))
    assert weights and all(name.startswith("policy.") for name in weights)  # no critic, no value head


def test_reference_and_reward_model_unchanged_policy_changed(assets, tmp_path):
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    tok = load_tokenizer(str(assets["model"]))
    reference = freeze(load_causal_lm(str(assets["model"]), tok))
    reward_model = freeze(ScalarHeadModel.from_pretrained(assets["rm"]))
    before = {name: {k: v.clone() for k, v in m.state_dict().items()}
              for name, m in (("reference", reference), ("reward_model", reward_model))}
    train(ppo_cfg(assets, tmp_path / "run", "--train.max_steps", "2"), reference=reference, reward_model=reward_model)
    for name, m in (("reference", reference), ("reward_model", reward_model)):
        after = m.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before[name].items()), f"{name} changed"
    trained = load_causal_lm(str(tmp_path / "run"), tok).state_dict()
    changed = [k for k, v in before["reference"].items() if not torch.equal(trained[k], v)]
    assert len(changed) == len(before["reference"])  # every policy weight moved


def test_lora_reference_is_the_base_with_adapters_off(assets, tmp_path):
    train(ppo_cfg(assets, tmp_path / "lora", "--model.use_lora", "true", "--model.lora_r", "4",
                  "--critic", "shared", "--train.max_steps", "2"))
    log = curves(tmp_path / "lora")
    assert log[0]["kl/sequence"] == 0.0  # LoRA B = 0 at init: policy == base, bit for bit
    assert all(m["policy/ratio_dev_first"] == 0.0 for m in log)
    assert log[1]["kl/sequence"] != 0.0 and math.isfinite(log[1]["value/error"])


@pytest.mark.parametrize("overrides, field", [
    (("--advantage_estimator", "rloo", "--rollout.samples_per_prompt", "1", "--train.batch_size", "4"),
     "rollout.samples_per_prompt"),
    (("--train.batch_size", "3", "--train.micro_batch_size", "1"), "train.batch_size"),
    (("--model.use_lora", "true", "--model.lora_dropout", "0.1"), "model.lora_dropout"),
    (("--rollout.temperature", "0"), "rollout.temperature"),
    (("--advantage_estimator", "grpo", "--ppo.critic_warmup_steps", "2"), "ppo.critic_warmup_steps"),
])
def test_bad_config_is_one_line_naming_the_field(assets, tmp_path, overrides, field):
    from tether.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        ppo_cfg(assets, tmp_path / "bad", *overrides)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_shared_prompt_layout_follows_the_row_layout(assets, tmp_path, monkeypatch):
    """train.share_prompts (each prompt forwarded once for its 2 samples) against one row per sample: with the
    whole rollout in one microbatch the two differ only in float rounding, iteration after iteration."""
    import tether.train.ppo as ppo

    layouts = []
    for name in ("collate_rollout", "collate_rollout_shared"):
        real = getattr(ppo, name)
        monkeypatch.setattr(ppo, name, lambda *a, _real=real, _name=name: layouts.append(_name) or _real(*a))
    one_batch = ("--train.batch_size", "8", "--train.micro_batch_size", "8", "--train.max_steps", "3")
    train(ppo_cfg(assets, tmp_path / "shared", *one_batch))
    assert set(layouts) == {"collate_rollout_shared"}
    train(ppo_cfg(assets, tmp_path / "rows", *one_batch, "--train.share_prompts", "false"))
    assert set(layouts[3:]) == {"collate_rollout"}
    shared, rows = curves(tmp_path / "shared"), curves(tmp_path / "rows")
    assert [m["step"] for m in shared] == [1, 2, 3] and shared[2]["kl/sequence"] != 0.0
    for got, want in zip(shared, rows):
        assert got.keys() == want.keys()
        for name, value in want.items():
            # a token's ratio (or value) on a clip boundary may fall either side under rounding: one token of 64
            tolerance = {"abs": 1 / 64 + 1e-6} if name.endswith("clipfrac") else {"rel": 1e-4, "abs": 1e-5}
            assert got[name] == (pytest.approx(value, **tolerance) if isinstance(value, float) else value), name
