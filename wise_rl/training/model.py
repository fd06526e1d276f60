"""Model side of the recipes: the model path (:func:`ensure_model`), processor, quantization, LoRA,
``model_init_kwargs``, DeepSpeed on CPU, freezing the vision tower, the parameter counts logged.

The model is always given to TRL as a *path* with ``model_init_kwargs`` (dtype, attention) so that 4-bit QLoRA works
(an instantiated model ignores a quantization config) and ZeRO-3 partitions at load time. The processor comes from
:func:`wise_rl.models.load_processor` (works without torchvision).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from wise_rl.errors import ConfigError
from wise_rl.training.script_args import WiseScriptArguments

logger = logging.getLogger(__name__)


def ensure_model(script_args: WiseScriptArguments, model_args) -> str:
    """The model path (a hub id or a folder; :func:`wise_rl.training.checks.validate_sft_args` has checked it). A
    random-weight test model is built as a separate step: ``wise-rl tiny-model --out DIR``."""
    return model_args.model_name_or_path


def build_processor(script_args: WiseScriptArguments, model_args):
    """The model's processor with the family's training chat template (:mod:`wise_rl.models.families`), which
    renders the WISE completion verbatim; it is saved with the trained model, so eval prompts as training did."""
    from wise_rl.models import load_processor
    from wise_rl.models.families import try_detect_family

    processor = load_processor(
        model_args.model_name_or_path, min_pixels=script_args.image_min_pixels,
        max_pixels=script_args.image_max_pixels,
    )
    family = try_detect_family(model_args.model_name_or_path)
    if family is not None and family.name != "qwen2_5_vl":  # Qwen2.5-VL: the folder's (official) template
        template = family.chat_template()
        if processor.chat_template != template:
            logger.info("chat template: %s's training template (%s)", family.name, family.chat_template_file)
        processor.chat_template = processor.tokenizer.chat_template = template
    return processor


def quantization_config(model_args):
    """bitsandbytes config from ``load_in_4bit`` (``bnb_4bit_quant_type`` nf4|fp4) or ``load_in_8bit``; None off."""
    from wise_rl.models import quantization_config as qc

    dtype = None if model_args.dtype in (None, "auto") else model_args.dtype
    if model_args.load_in_4bit:
        return qc(model_args.bnb_4bit_quant_type, dtype)
    if model_args.load_in_8bit:
        return qc("int8", dtype)
    return None


def peft_config(script_args: WiseScriptArguments, model_args):
    """A LoRA config when ``use_peft``: explicit ``lora_target_modules`` win (``trl.get_peft_config``), otherwise
    :func:`wise_rl.models.lora_config` with ``lora_target`` (language model only by default)."""
    if not model_args.use_peft:
        return None
    if model_args.lora_target_modules:
        from trl import get_peft_config

        return get_peft_config(model_args)
    from wise_rl.models import lora_config
    from wise_rl.models.families import try_detect_family

    cfg = lora_config(r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout,
                      target=script_args.lora_target, family=try_detect_family(model_args.model_name_or_path))
    cfg.use_rslora, cfg.use_dora = model_args.use_rslora, model_args.use_dora
    if model_args.lora_modules_to_save:
        cfg.modules_to_save = model_args.lora_modules_to_save
    return cfg


def model_init_kwargs(training_args, model_args) -> dict[str, Any]:
    """``model_init_kwargs`` for TRL (the model is passed as a path): dtype, attention, revision, remote code off;
    4-/8-bit models on GPU are placed whole on this process's device (``{"": local_process_index}``)."""
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype or "float32",
        "trust_remote_code": bool(training_args.trust_remote_code),
    }
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.load_in_4bit or model_args.load_in_8bit:
        import torch

        if torch.cuda.is_available():
            from accelerate import PartialState

            kwargs["device_map"] = {"": PartialState().local_process_index}
    kwargs.update(training_args.model_init_kwargs or {})
    return kwargs


def router_logits_off_in_generation(model) -> None:
    """MoE models (Qwen3-VL MoE, Qwen3.5 MoE): ``output_router_logits`` off in the config. An SFT run saves it on
    (TRL's SFT adds the load-balancing loss), and generation with it on fails in transformers 5.25 (the router
    logits of the new token are matched against the whole attention mask); GRPO/RLOO ask for router logits
    explicitly in the loss forward, so the auxiliary loss is kept. No-op for dense models."""
    text_config = model.config.get_text_config()
    if getattr(text_config, "output_router_logits", False):
        text_config.output_router_logits = False


def maybe_init_cpu_deepspeed() -> None:
    """DeepSpeed on CPU (``DS_ACCELERATOR=cpu``): start the gloo process group before the trainer is built
    (ZeRO-3 with a reference model, ``beta > 0``, otherwise hangs or fails)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return
    if os.environ.get("RANK", "0") == "0":  # the engine build at the first step is silent for up to minutes
        logger.info("DeepSpeed: the engine is built when training starts (a first launch also compiles its ops): "
                    "up to a few minutes without output before the first step")
    if os.environ.get("DS_ACCELERATOR") != "cpu":
        return
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        import deepspeed

        cache = Path(os.environ.get("TORCH_EXTENSIONS_DIR", Path.home() / ".cache" / "torch_extensions"))
        if not any(cache.glob("**/cpu_adam*")):  # nothing built yet: the next minutes are a compiler, not a hang
            logger.info("DeepSpeed on CPU: the first launch compiles DeepSpeed's CPU ops (2-3 minutes on a small "
                        "machine, no output meanwhile); the build is cached in %s for later launches", cache)

        deepspeed.init_distributed(dist_backend="gloo")


VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")  # Qwen2(.5)-VL, LLaVA-likes, Idefics/SigLIP-likes


def freeze_vision_tower(model) -> int:
    """Turn off gradients of the model's vision tower (the outermost module named as in ``VISION_TOWER_NAMES``,
    merger included); returns the number of parameters frozen. Call it before ``trainer.train()``: the Trainer
    builds its optimizer from the parameters that still require grad."""
    towers = [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in VISION_TOWER_NAMES]
    if not towers:
        raise ConfigError(f"freeze_vision_tower: no submodule named {' / '.join(VISION_TOWER_NAMES)} in "
                          f"{type(model).__name__}")
    _, tower = min(towers, key=lambda nm: nm[0].count("."))
    frozen = 0
    for p in tower.parameters():
        if p.requires_grad:
            p.requires_grad_(False)
            frozen += p.numel()
    logger.info("froze the vision tower: %d parameters", frozen)
    return frozen


def apply_freezing(model, script_args: WiseScriptArguments) -> None:
    """The recipes' freezing options (``freeze_vision_tower``)."""
    if script_args.freeze_vision_tower:
        freeze_vision_tower(model)


def describe_model(model) -> dict[str, Any]:
    """Parameter counts and quantization of the model a trainer holds (logged by the recipes). Under DeepSpeed
    ZeRO-3 a process holds an empty placeholder per parameter (``numel() == 0``) and its full size in ``ds_numel``:
    the counts are the real ones, not 0."""

    def size(p) -> int:
        return int(getattr(p, "ds_numel", 0) or p.numel())

    trainable = sum(size(p) for p in model.parameters() if p.requires_grad)
    total = sum(size(p) for p in model.parameters())
    quantized = "4bit" if getattr(model, "is_loaded_in_4bit", False) else (
        "8bit" if getattr(model, "is_loaded_in_8bit", False) else None)
    return {"trainable_params": trainable, "total_params": total, "quantized": quantized,
            "peft": hasattr(model, "peft_config")}
