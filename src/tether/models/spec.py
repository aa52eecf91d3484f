"""The `model:` config section shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tether.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"
    """Model to start from: an embedded name (`tether models list`), a local model dir, or an HF hub id."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """Weights/compute dtype. fp32 on CPU (no bf16 units); `auto` = bf16 where the GPU supports it."""
    max_length: int = 512
    """Longest prompt+response in tokens; longer rows are an error unless the data section drops them."""
    use_lora: bool = False
    """Train LoRA adapters instead of all weights (peft); the frozen base doubles as the reference model."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = lora_alpha / lora_r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input (0 keeps RLHF logprobs deterministic)."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"])
    """Module names that get adapters."""

    def validate(self) -> None:
        if self.max_length < 8:
            raise ConfigError(f"model.max_length must be >= 8, got {self.max_length}")
        if self.use_lora and self.lora_r < 1:
            raise ConfigError(f"model.lora_r must be >= 1, got {self.lora_r}")
