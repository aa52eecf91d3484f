"""LoRA through peft. With adapters, the reference policy is the base with adapters disabled."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

from tether.models.spec import ModelConfig


def apply_lora(model, cfg: ModelConfig):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def is_peft(model) -> bool:
    while hasattr(model, "module"):
        model = model.module
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def adapters_disabled(model):
    """Context in which a LoRA model computes the frozen base (the reference); no-op otherwise."""
    while hasattr(model, "module"):
        model = model.module
    return model.disable_adapter() if is_peft(model) else nullcontext()


def merged_for_saving(model):
    """A plain transformers model to save: LoRA merged into a copy of the weights, else the model."""
    while hasattr(model, "module"):
        model = model.module
    if is_peft(model):
        import copy

        return copy.deepcopy(model).merge_and_unload()
    return model


@contextmanager
def eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
