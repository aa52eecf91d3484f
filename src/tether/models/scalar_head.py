"""Scalar-head models (reward and value): a decoder backbone without its LM head + a linear head to 1.

    score = head(pool(backbone(input_ids).last_hidden_state)) − bias_shift

- The backbone is ``AutoModel`` (for Llama/SmolLM2: ``LlamaModel``, the causal LM minus ``lm_head``); loading
  a causal-LM dir with it drops the LM head weights. Saved dirs are normal transformers model dirs
  (``architectures: [LlamaModel]``) plus ``score_head.safetensors`` and ``tether_head.json``.
- Pooling ``last`` reads the hidden state at each row's last real token, found from the attention mask
  (never by searching for a pad or EOS id), so it is right for left, right or both-sided padding. For an
  RM the sequence ends with EOS, so that is the EOS position. ``mean`` averages the real tokens' states.
- The head is float32 whatever the backbone's dtype (the pooled state is upcast), so scores are float32.
- ``bias_shift`` is a float32 buffer subtracted from every score: the reward stage sets it to the mean raw
  score of reference responses so that their mean score is 0 (PPO's rewards then start centred).
- Dropout is off in the backbone (a value/reward model must be deterministic). With LoRA
  (``apply_lora_to_scalar``), peft's own ``lora_dropout`` follows the config (default 0).
- ``forward(..., per_token=True)`` returns the head at every position ``(B,T)`` (a value model's values), or
  on a shared-prompt batch at the state before each reply token ``(N,R)``; it goes through ``forward`` so
  DDP/FSDP wrappers see a normal call.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch

from tether.data.collators import position_ids_from_mask
from tether.errors import ModelLoadError
from tether.models.loading import disable_dropout, load_pretrained
from tether.models.lora import is_peft, merged_for_saving
from tether.models.shared_prompt import shared_prompt_hidden, shared_prompt_per_token
from tether.models.spec import ModelConfig
from tether.ops import masked_sum

__all__ = ["HEAD_CONFIG_FILE", "HEAD_WEIGHTS_FILE", "ScalarHeadModel", "apply_lora_to_scalar"]

HEAD_WEIGHTS_FILE = "score_head.safetensors"
HEAD_CONFIG_FILE = "tether_head.json"
POOLINGS = ("last", "mean")

Pooling = Literal["last", "mean"]


class ScalarHeadModel(torch.nn.Module):
    """A decoder backbone + ``head: Linear(hidden, 1)``; ``forward`` returns one float32 score per row."""

    def __init__(self, backbone, pooling: Pooling = "last", head: torch.nn.Linear | None = None,
                 bias_shift: float = 0.0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        hidden = backbone.config.hidden_size
        if head is None:
            head = torch.nn.Linear(hidden, 1, dtype=torch.float32)
            torch.nn.init.normal_(head.weight, std=1.0 / math.sqrt(hidden + 1))
            torch.nn.init.zeros_(head.bias)
        self.head = head
        self.register_buffer("bias_shift", torch.tensor(float(bias_shift), dtype=torch.float32))
        _disable_all_dropout(backbone)

    @property
    def config(self):
        """The backbone's transformers config (``hidden_size``, ``model_type``, ...)."""
        return self.backbone.config

    def set_bias_shift(self, value: float) -> None:
        """Set the absolute shift subtracted from scores (to centre: add the mean of the current scores)."""
        self.bias_shift.fill_(float(value))

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.backbone.gradient_checkpointing_enable(**kwargs)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, per_token: bool = False,
                shared: dict[str, torch.Tensor] | None = None, group_rows: int = 0) -> torch.Tensor:
        """Scores ``(B,)`` float32 (or ``(B,T)`` head outputs at every position with ``per_token``).

        input_ids, attention_mask: ``(B,T)``, attention_mask 1 = real token, any padding side; position_ids
        default to counting real tokens only (``position_ids_from_mask``). Every row needs a real token.
        Or ``shared``: a shared-prompt batch (`collate_prompt_replies`), one score per reply row, each prompt
        forwarded once and the replies in groups of `group_rows` of similar length (`models.shared_prompt`; the
        scores of the rows prompt+reply); with ``per_token``, ``(N,R)`` head outputs at the state before each
        reply token (the row layout's ``[:, P-1 : P-1+R]``). One call either way, so DDP sees one forward.
        """
        if shared is not None:
            if per_token:  # (N,R): the head at the state before each reply token (a value model's V_t)
                def head(_, hidden, rows):  # (g,w,H) → (g,w)
                    return (self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float() - self.bias_shift,)

                return shared_prompt_per_token(self.backbone, shared, head, logits=False, hidden=True,
                                               group_rows=group_rows)[0]
            pooled = shared_prompt_hidden(self.backbone, shared, self.pooling, group_rows)  # (N,H)
            return self.head(pooled.to(self.head.weight.dtype)).squeeze(-1).float() - self.bias_shift  # (N,)
        if position_ids is None:
            position_ids = position_ids_from_mask(attention_mask)  # (B,T)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False)
        hidden = out.last_hidden_state  # (B,T,H)
        dtype = self.head.weight.dtype
        if per_token:
            return self.head(hidden.to(dtype)).squeeze(-1).float() - self.bias_shift  # (B,T)
        real = attention_mask.bool()  # (B,T)
        if self.pooling == "last":
            positions = torch.arange(real.shape[1], device=real.device).expand_as(real)  # (B,T)
            last = torch.where(real, positions, -1).max(dim=-1).values  # (B,) index of the last real token
            if bool((last < 0).any()):
                raise ValueError("a row of attention_mask has no real token; cannot score an empty sequence")
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B,H)
        else:
            counts = real.sum(dim=-1, keepdim=True)  # (B,1)
            if bool((counts == 0).any()):
                raise ValueError("a row of attention_mask has no real token; cannot score an empty sequence")
            pooled = masked_sum(hidden.to(dtype), real[..., None], dim=1) / counts  # (B,H)
        return self.head(pooled.to(dtype)).squeeze(-1).float() - self.bias_shift  # (B,)

    @classmethod
    def from_pretrained_lm(cls, spec: str, tokenizer=None, pooling: Pooling = "last", dtype: str = "float32",
                           seed: int = 0) -> ScalarHeadModel:
        """A fresh scalar head on the decoder of a causal LM (embedded name, local dir or hub id).

        The head is drawn from N(0, 1/(hidden+1)) with a generator seeded by ``seed`` (bias 0), so it does
        not depend on, or disturb, the global RNG. With ``tokenizer``, embeddings grow to its vocabulary and
        the config's pad id follows it (as ``load_causal_lm`` does).
        """
        from transformers import AutoModel

        backbone = load_pretrained(AutoModel, spec, tokenizer, dtype)
        hidden = backbone.config.hidden_size
        head = torch.nn.Linear(hidden, 1, dtype=torch.float32)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            torch.nn.init.normal_(head.weight, std=1.0 / math.sqrt(hidden + 1), generator=generator)
            torch.nn.init.zeros_(head.bias)
        return cls(backbone, pooling=pooling, head=head)

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: str = "float32") -> ScalarHeadModel:
        """Load a dir written by ``save_pretrained`` (backbone + head + pooling + bias_shift)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        directory = Path(directory)
        for name in (HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE):
            if not (directory / name).is_file():
                raise ModelLoadError(f"{directory}: not a scalar-head (reward/value) model dir (no {name})")
        try:
            meta = json.loads((directory / HEAD_CONFIG_FILE).read_text())
            pooling, bias_shift, hidden = meta["pooling"], float(meta["bias_shift"]), int(meta["hidden_size"])
        except (ValueError, KeyError, TypeError) as err:
            raise ModelLoadError(f"{directory / HEAD_CONFIG_FILE}: unreadable head config ({err!r})") from None
        if pooling not in POOLINGS:
            raise ModelLoadError(f"{directory / HEAD_CONFIG_FILE}: pooling must be one of {POOLINGS}, "
                                 f"got {pooling!r}")
        backbone = load_pretrained(AutoModel, str(directory), dtype=dtype)
        if backbone.config.hidden_size != hidden:
            raise ModelLoadError(f"{directory}: head hidden_size {hidden} != backbone hidden_size "
                                 f"{backbone.config.hidden_size}")
        weights = load_file(str(directory / HEAD_WEIGHTS_FILE))
        head = torch.nn.Linear(hidden, 1, dtype=torch.float32)
        try:
            head.load_state_dict({k: v.float() for k, v in weights.items()})
        except RuntimeError as err:
            raise ModelLoadError(f"{directory / HEAD_WEIGHTS_FILE}: bad head weights "
                                 f"({str(err).splitlines()[0]})") from None
        return cls(backbone, pooling=pooling, head=head, bias_shift=bias_shift)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a normal transformers model dir for the backbone + the head files; returns the dir.

        A LoRA-wrapped backbone is saved with its adapters merged into a copy of the weights (the live
        model keeps its adapters), so the dir loads without peft. The caller saves the tokenizer.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        backbone = merged_for_saving(self.backbone)
        backbone.save_pretrained(directory)
        head_state = {k: v.detach().float().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(head_state, str(directory / HEAD_WEIGHTS_FILE))
        meta = {"pooling": self.pooling, "bias_shift": float(self.bias_shift), "hidden_size":
                backbone.config.hidden_size, "base_model_type": backbone.config.model_type}
        (directory / HEAD_CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory


def _disable_all_dropout(backbone) -> None:
    """``disable_dropout`` + the attention modules' own copies of the rate.

    Llama-style attention copies ``config.attention_dropout`` into ``self.attention_dropout`` at build time
    and uses that copy in training mode, so zeroing the config alone leaves attention dropout on.
    """
    disable_dropout(backbone)
    for module in backbone.modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def apply_lora_to_scalar(model: ScalarHeadModel, cfg: ModelConfig) -> ScalarHeadModel:
    """Wrap ``model.backbone`` with LoRA adapters (peft, FEATURE_EXTRACTION); the head stays trainable.

    Only adapter and head parameters are left trainable. Returns ``model`` (changed in place).
    ``save_pretrained`` merges the adapters into a saved copy.
    """
    from peft import LoraConfig, get_peft_model

    if is_peft(model.backbone):
        raise ValueError("the backbone already has LoRA adapters")
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), task_type="FEATURE_EXTRACTION")
    model.backbone = get_peft_model(model.backbone, lora)
    model.head.requires_grad_(True)
    return model
