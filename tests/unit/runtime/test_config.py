"""The typed config system: docs from field docstrings, YAML + CLI overrides, one-line errors, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from tether.errors import ConfigError
from tether.runtime.config import HelpRow, config_help, field_docs, load_config, save_config, to_dict


@dataclass
class ModelConfig:
    name: str = "tiny-llama"
    """Model id or local path."""
    revision: str | None = None
    """Hub revision; null for the default branch."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of the weights."""


@dataclass
class TrainConfig:
    learning_rate: float = 1e-5
    """Peak learning rate of AdamW."""
    batch_size: int = 8
    """Sequences per optimizer step, over all processes."""
    micro_batch_size: int = 4
    """Sequences per forward/backward pass."""
    packing: bool = False
    """Pack several short examples into one sequence."""
    max_steps: int | None = None
    """Stop after this many optimizer steps; null runs the full epochs."""
    eval_splits: list[str] = field(default_factory=lambda: ["test"])
    """Dataset splits to evaluate on."""

    def validate(self) -> None:
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"train.batch_size ({self.batch_size}) must be a multiple of "
                f"train.micro_batch_size ({self.micro_batch_size})"
            )


@dataclass
class LoraConfig:
    r: int = 8
    """Rank of the adapters."""


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    lora: LoraConfig | None = None
    """LoRA adapters; null trains all weights."""
    seed: int = 0
    """Random seed."""


@dataclass
class NeedsName:
    name: str
    """Run name (required)."""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(*args) -> str:
    """The message of the ConfigError that load_config(*args) raises; it must be one line."""
    with pytest.raises(ConfigError) as info:
        load_config(*args)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# -- docs ---------------------------------------------------------------------------------------------


def test_field_docs_are_read_from_the_string_under_each_field():
    docs = field_docs(TrainConfig)
    assert docs["learning_rate"] == "Peak learning rate of AdamW."
    assert docs["max_steps"] == "Stop after this many optimizer steps; null runs the full epochs."
    assert list(docs) == [
        "learning_rate",
        "batch_size",
        "micro_batch_size",
        "packing",
        "max_steps",
        "eval_splits",
    ]
    assert field_docs(SFTConfig)["lora"] == "LoRA adapters; null trains all weights."


def test_config_help_lists_dotted_leaves_with_type_default_and_doc():
    rows = {row.name: row for row in config_help(SFTConfig)}
    assert rows["train.learning_rate"] == HelpRow(
        "train.learning_rate", "float", "1e-05", "Peak learning rate of AdamW."
    )
    assert rows["train.max_steps"].type == "int | None"
    assert rows["train.max_steps"].default == "null"
    assert rows["train.packing"].default == "false"
    assert rows["train.eval_splits"] == HelpRow(
        "train.eval_splits", "list[str]", "[test]", "Dataset splits to evaluate on."
    )
    assert rows["model.dtype"].type == "'float32' | 'bfloat16'"
    assert rows["lora.r"].default == "8"  # an optional section still lists its fields
    assert "model" not in rows and "train" not in rows
    assert config_help(NeedsName) == [HelpRow("name", "str", "(required)", "Run name (required).")]


# -- loading ------------------------------------------------------------------------------------------


def test_no_file_and_no_overrides_gives_the_defaults():
    assert load_config(SFTConfig, None, []) == SFTConfig()


def test_yaml_values_are_loaded_and_ints_widen_to_float(tmp_path):
    path = write(
        tmp_path,
        "model:\n  name: my/model\n  dtype: bfloat16\ntrain:\n  learning_rate: 1\n  packing: yes\n"
        "  eval_splits: [dev, test]\nseed: 3\n",
    )
    cfg = load_config(SFTConfig, path, [])
    assert cfg.model == ModelConfig(name="my/model", revision=None, dtype="bfloat16")
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.packing is True
    assert cfg.train.eval_splits == ["dev", "test"]
    assert cfg.train.batch_size == 8  # untouched fields keep their defaults
    assert cfg.seed == 3


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # PyYAML reads `1e-4` as the string "1e-4"; a float field takes it as 0.0001
    cfg = load_config(SFTConfig, write(tmp_path, "train:\n  learning_rate: 1e-4\n"), [])
    assert cfg.train.learning_rate == 1e-4


def test_overrides_take_precedence_over_yaml(tmp_path):
    path = write(tmp_path, "train:\n  learning_rate: 0.5\n  batch_size: 16\nmodel:\n  name: from-yaml\n")
    cfg = load_config(
        SFTConfig,
        path,
        ["--train.learning_rate", "1e-4", "--model.name", "x", "--train.packing=true", "--seed=7"],
    )
    assert cfg.train.learning_rate == 1e-4
    assert cfg.model.name == "x"
    assert cfg.train.packing is True
    assert cfg.train.batch_size == 16  # from YAML, not overridden
    assert cfg.seed == 7


def test_override_forms():
    cfg = load_config(
        SFTConfig,
        None,
        [
            "--train.packing",  # bare flag on a bool
            "--train.micro-batch-size",  # dashes read as underscores
            "2",
            "--train.eval_splits",
            "dev,test",
            "--model.revision",
            "v1.0",
            "--train.max_steps",
            "100",
        ],
    )
    assert cfg.train.packing is True
    assert cfg.train.micro_batch_size == 2
    assert cfg.train.eval_splits == ["dev", "test"]
    assert cfg.model.revision == "v1.0"
    assert cfg.train.max_steps == 100
    assert load_config(SFTConfig, None, ["--train.eval_splits", "[a, 'b']"]).train.eval_splits == ["a", "b"]
    assert load_config(SFTConfig, None, ["--train.eval_splits="]).train.eval_splits == []
    assert load_config(SFTConfig, None, ["--model.name", "null"]).model.name == "null"  # a str stays a str


def test_optional_fields_take_null(tmp_path):
    path = write(tmp_path, "model:\n  revision: main\ntrain:\n  max_steps: 5\n")
    cfg = load_config(SFTConfig, path, ["--model.revision", "null", "--train.max_steps", "None"])
    assert cfg.model.revision is None
    assert cfg.train.max_steps is None
    assert (
        load_config(SFTConfig, write(tmp_path, "train:\n  max_steps: null\n", "b.yaml"), []).train.max_steps
        is None
    )


def test_optional_section(tmp_path):
    assert load_config(SFTConfig, None, []).lora is None
    assert load_config(SFTConfig, None, ["--lora.r", "16"]).lora == LoraConfig(r=16)
    assert load_config(SFTConfig, write(tmp_path, "lora: {}\n"), []).lora == LoraConfig()
    assert (
        load_config(SFTConfig, write(tmp_path, "lora:\n  r: 4\n", "b.yaml"), ["--lora", "null"]).lora is None
    )
    assert load_config(
        SFTConfig, write(tmp_path, "lora: null\n", "c.yaml"), ["--lora.r=2"]
    ).lora == LoraConfig(2)


def test_literal_accepts_only_its_choices(tmp_path):
    assert load_config(SFTConfig, None, ["--model.dtype", "bfloat16"]).model.dtype == "bfloat16"
    message = config_error(SFTConfig, write(tmp_path, "model:\n  dtype: float16\n"), [])
    assert message == "{}: field 'model.dtype' must be one of 'float32', 'bfloat16'; got 'float16'".format(
        tmp_path / "config.yaml"
    )
    assert "must be one of 'float32', 'bfloat16'" in config_error(SFTConfig, None, ["--model.dtype", "fp16"])


# -- errors -------------------------------------------------------------------------------------------


def test_unknown_yaml_field_suggests_the_closest_name(tmp_path):
    path = write(tmp_path, "train:\n  lerning_rate: 1.0e-4\n")
    message = config_error(SFTConfig, path, [])
    assert message == f"{path}: unknown field 'train.lerning_rate' (did you mean 'train.learning_rate'?)"


def test_unknown_override_suggests_the_closest_name():
    message = config_error(SFTConfig, None, ["--train.lerning_rate", "1e-4"])
    assert message == "command line: unknown field 'train.lerning_rate' (did you mean 'train.learning_rate'?)"
    assert "did you mean 'train.learning_rate'?" in config_error(
        SFTConfig, None, ["--trian.learning_rate", "1"]
    )
    assert "did you mean 'train.learning_rate'?" in config_error(SFTConfig, None, ["--learning_rate", "1"])
    far = config_error(SFTConfig, None, ["--train.zzz", "1"])
    assert far.startswith("command line: unknown field 'train.zzz' (known here: learning_rate, batch_size")


def test_type_mismatch_names_file_field_and_expected_type(tmp_path):
    path = write(tmp_path, 'train:\n  batch_size: "eight"\n')
    assert config_error(SFTConfig, path, []) == f"{path}: field 'train.batch_size' expects int, got 'eight'"
    path = write(tmp_path, "train:\n  batch_size: 8.0\n", "b.yaml")
    assert config_error(SFTConfig, path, []) == f"{path}: field 'train.batch_size' expects int, got float 8.0"
    path = write(tmp_path, "train:\n  packing: 1\n", "c.yaml")
    assert config_error(SFTConfig, path, []) == f"{path}: field 'train.packing' expects bool, got int 1"
    path = write(tmp_path, "model:\n  name: null\n", "d.yaml")
    assert config_error(SFTConfig, path, []) == f"{path}: field 'model.name' expects str, got NoneType None"
    path = write(tmp_path, "train:\n  eval_splits: [dev, 3]\n", "e.yaml")
    assert config_error(SFTConfig, path, []) == f"{path}: field 'train.eval_splits[1]' expects str, got int 3"
    path = write(tmp_path, "train:\n  learning_rate: fast\n", "f.yaml")
    assert (
        config_error(SFTConfig, path, []) == f"{path}: field 'train.learning_rate' expects float, got 'fast'"
    )


def test_type_mismatch_from_the_command_line():
    assert (
        config_error(SFTConfig, None, ["--train.batch_size", "1e3"])
        == "command line: field 'train.batch_size' expects int, got '1e3'"
    )
    assert (
        config_error(SFTConfig, None, ["--train.packing", "maybe"])
        == "command line: field 'train.packing' expects bool, got 'maybe'"
    )
    assert config_error(SFTConfig, None, ["--train.max_steps", "many"]).endswith(
        "expects int | None, got 'many'"
    )
    assert "needs a value" in config_error(SFTConfig, None, ["--train.batch_size"])
    assert "is a section" in config_error(SFTConfig, None, ["--train", "x"])
    assert "'seed' is a field, not a section" in config_error(SFTConfig, None, ["--seed.x", "1"])
    assert "expected an option" in config_error(SFTConfig, None, ["train.batch_size", "4"])


def test_structural_yaml_errors(tmp_path):
    path = write(tmp_path, "train: 5\n")
    assert config_error(SFTConfig, path, []) == (
        f"{path}: 'train' is a section (TrainConfig) and needs a mapping of its fields, got int 5"
    )
    path = write(tmp_path, "- a\n- b\n", "list.yaml")
    assert config_error(SFTConfig, path, []) == f"{path}: the top level must be a mapping of fields, got list"
    path = write(tmp_path, "train:\n  batch_size: 4\n  batch_size: 8\n", "dup.yaml")
    assert config_error(SFTConfig, path, []) == f"{path}:3:3: invalid YAML: duplicate key 'batch_size'"
    path = write(tmp_path, "train:\n  batch_size: [4\n", "syntax.yaml")
    assert config_error(SFTConfig, path, []).startswith(f"{path}:3:")
    missing = tmp_path / "nope.yaml"
    assert config_error(SFTConfig, missing, []) == f"{missing}: no such config file"
    assert load_config(SFTConfig, write(tmp_path, "", "empty.yaml"), []) == SFTConfig()


def test_validate_runs_after_loading_and_names_the_file(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: 6\n")
    assert config_error(SFTConfig, path, []) == (
        f"{path}: train.batch_size (6) must be a multiple of train.micro_batch_size (4)"
    )
    assert load_config(SFTConfig, path, ["--train.micro_batch_size", "3"]).train.batch_size == 6
    assert config_error(SFTConfig, None, ["--train.batch_size", "5"]).startswith(
        "config: train.batch_size (5)"
    )


def test_missing_required_field():
    assert config_error(NeedsName, None, []) == "config: missing required field 'name' (str)"
    assert load_config(NeedsName, None, ["--name", "run1"]).name == "run1"


# -- saving -------------------------------------------------------------------------------------------


def test_save_config_round_trips_and_carries_the_docs(tmp_path):
    cfg = load_config(
        SFTConfig,
        None,
        [
            "--model.name",
            "org/model: v2 # not a comment",
            "--train.learning_rate",
            "3e-7",
            "--train.eval_splits",
            "a,b c,",
            "--lora.r",
            "4",
            "--train.max_steps",
            "10",
        ],
    )
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(SFTConfig, path, []) == cfg
    text = path.read_text()
    assert "# Peak learning rate of AdamW.\n  learning_rate: 3.0e-07\n" in text
    assert "eval_splits: [a, b c, '']" in text
    assert to_dict(cfg)["train"]["eval_splits"] == ["a", "b c", ""]
    assert to_dict(cfg)["lora"] == {"r": 4}
    default_path = save_config(SFTConfig(), tmp_path / "defaults.yaml")
    assert load_config(SFTConfig, default_path, []) == SFTConfig()
    assert "lora: null" in default_path.read_text()


def test_yaml_anchors_and_merge_keys_are_not_duplicates(tmp_path):
    path = write(
        tmp_path, "model: &m {name: base, revision: v1}\nlora: {r: 2}\ntrain: {learning_rate: 0.1}\n"
    )
    assert load_config(SFTConfig, path, []).model.revision == "v1"
    path = write(tmp_path, "base: &m {name: base, revision: v1}\n", "anchor.yaml")
    assert "unknown field 'base'" in config_error(SFTConfig, path, [])
    path = write(tmp_path, "model:\n  <<: {name: base, revision: v1}\n  revision: v2\n", "merge.yaml")
    assert load_config(SFTConfig, path, []).model == ModelConfig(name="base", revision="v2")


def test_multiline_string_round_trips(tmp_path):
    cfg = SFTConfig(model=ModelConfig(name="line one\nline two: #x", revision="yes"))
    assert load_config(SFTConfig, save_config(cfg, tmp_path / "c.yaml"), []) == cfg
