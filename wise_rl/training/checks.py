"""Every recipe option checked *before* any model or dataset is loaded: :func:`validate_sft_args`,
:func:`validate_grpo_args` (both run :func:`_validate_common`). A bad value raises :class:`ConfigError` naming the
option and what is accepted; a risky one (checkpoints inside a reused GRPO generation batch, ``max_length`` with
image tokens, ``trust_remote_code``) logs a warning.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from pathlib import Path

from wise_rl import formats
from wise_rl.errors import ConfigError
from wise_rl.training.recipe_args import ALGORITHMS
from wise_rl.training.rewards import _reward_spec, reward_options
from wise_rl.training.script_args import (
    DEFAULT_SFT_PROMPT,
    LORA_TARGETS,
    SFT_TARGET_MODES,
    GRPOScriptArguments,
    SFTScriptArguments,
    WiseScriptArguments,
)

logger = logging.getLogger(__name__)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # invalid repo id etc.
        return False


def _validate_common(script_args: WiseScriptArguments, training_args, model_args) -> None:
    if not script_args.dataset:
        raise ConfigError("dataset: missing; give a source load_source reads (folder, file, hub name) or 'shapeworld'")
    if script_args.dataset_config is not None:
        raise ConfigError(f"dataset_config: {script_args.dataset_config!r}: hub dataset configurations are not "
                          "supported; point dataset at that configuration's parquet/jsonl files or a save_to_disk folder")
    ds = script_args.dataset
    if ds != "shapeworld" and not Path(ds).exists():
        looks_local = ds.startswith((".", "/", "~")) or ds.endswith((".parquet", ".jsonl", ".json", ".arrow"))
        if looks_local or ds.count("/") != 1:
            raise ConfigError(f"dataset: {ds!r} is not an existing path, a hub name (owner/name) or 'shapeworld'")
    if script_args.dataset_limit is not None and script_args.dataset_limit <= 0:
        raise ConfigError(f"dataset_limit: must be a positive number of rows, got {script_args.dataset_limit}")
    if script_args.shapeworld_rows <= 0:
        raise ConfigError(f"shapeworld_rows: must be positive, got {script_args.shapeworld_rows}")
    if script_args.model_size is not None and script_args.model_size <= 0:
        raise ConfigError(f"model_size: must be positive, got {script_args.model_size}")
    if getattr(script_args, "frame", None) is not None:
        from wise_rl.frames import Frame

        Frame.parse(script_args.frame)  # ConfigError naming the accepted names

    for template in prompt_templates(script_args.prompt_template):
        if template not in formats.PROMPT_SPECS:
            raise ConfigError(
                f"prompt_template: {template!r} is unknown; known: {', '.join(formats.available_prompts())}"
            )
    lo, hi = script_args.image_min_pixels, script_args.image_max_pixels
    for name, value in (("image_min_pixels", lo), ("image_max_pixels", hi)):
        if value is not None and value <= 0:
            raise ConfigError(f"{name}: must be positive, got {value}")
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"image_min_pixels ({lo}) is larger than image_max_pixels ({hi})")

    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path: missing; give a hub id or a local model folder")
    path = model_args.model_name_or_path
    if not Path(path).exists():
        looks_local = path.startswith((".", "/", "~")) or path.count("/") != 1
        if looks_local or (_offline() and not _hub_cached(path)):
            raise ConfigError(
                f"model_name_or_path: {path!r} does not exist"
                + (" and is not in the hub cache (HF_HUB_OFFLINE=1)" if _offline() and not looks_local else "")
                + f" (a random-weight test model is built only on request: `wise-rl tiny-model --out {path}`)"
            )
    if Path(path).is_file():
        raise ConfigError(f"model_name_or_path: {path!r} is a file; give a model folder or a hub id")

    out = Path(training_args.output_dir or ".")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir: {str(out)!r} is an existing file; give a folder")
    if not training_args.learning_rate > 0:  # also catches NaN
        raise ConfigError(f"learning_rate: must be > 0, got {training_args.learning_rate}")

    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    if quantized and not model_args.use_peft:
        raise ConfigError(
            "load_in_4bit/load_in_8bit: a quantized base cannot be fine-tuned in full; set use_peft: true (QLoRA)"
        )
    if script_args.lora_target not in LORA_TARGETS:
        raise ConfigError(f"lora_target: {script_args.lora_target!r} unknown; expected one of {', '.join(LORA_TARGETS)}")
    if script_args.freeze_vision_tower and model_args.use_peft and script_args.lora_target == "all":
        raise ConfigError("freeze_vision_tower: true contradicts use_peft with lora_target: all (LoRA on the vision "
                          "tower); choose one")
    if model_args.use_peft and model_args.lora_r <= 0:
        raise ConfigError(f"lora_r: must be positive, got {model_args.lora_r}")
    if model_args.dtype not in (None, "auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype: {model_args.dtype!r} unknown; expected auto, float32, bfloat16 or float16")
    if training_args.trust_remote_code:
        logger.warning("trust_remote_code is on: the model folder may run arbitrary code")
    if script_args.sample_log_every < 0 or script_args.sample_log_count < 0:
        raise ConfigError("sample_log_every / sample_log_count: must be ≥ 0")

    _check_resume_and_report_to(training_args)


def _check_resume_and_report_to(training_args) -> None:
    ckpt = training_args.resume_from_checkpoint
    if ckpt not in (None, "", "true", "True", "false", "False") and not Path(ckpt).is_dir():
        raise ConfigError(f"resume_from_checkpoint: {ckpt!r} is not a checkpoint folder")
    _check_report_to(training_args.report_to)


# report_to integration → the module it needs (transformers' names); the ones not listed are not checked
REPORT_TO_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",),
                     "mlflow": ("mlflow",), "comet_ml": ("comet_ml",), "clearml": ("clearml",),
                     "swanlab": ("swanlab",), "neptune": ("neptune",), "dvclive": ("dvclive",)}


def _check_report_to(report_to) -> None:
    """A ``report_to`` integration whose package is not installed: :class:`ConfigError` now, not TRL's traceback
    when the trainer is built."""
    import importlib.util

    for name in [report_to] if isinstance(report_to, str) else list(report_to or []):
        modules = REPORT_TO_MODULES.get(name)
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(f"report_to: {name!r} is not installed (pip install {modules[0]}); use report_to: "
                              "tensorboard (installed with wise_rl) or none")


def warn_prompt_wording(model_path, templates: list[str]) -> str | None:
    """Warn (and return the message) when the training prompt is in another wording (compact / official) than the
    one the base model's ``wise_rl.json`` records, as ``wise-rl eval`` and ``infer`` do; None when they agree, the
    model has no record, or either side has no wording (``answer-only``)."""
    from wise_rl.models import info as model_info

    if not model_path or not Path(str(model_path)).is_dir():
        return None
    record = model_info.read(model_path)
    if not record:
        return None
    recorded = {s for s in map(model_info.prompt_style, record.get("prompt_templates", [])) if s is not None}
    ours = {s for s in map(model_info.prompt_style, templates) if s is not None}
    if not recorded or not ours or recorded == ours:
        return None
    message = (f"prompt_template {', '.join(templates)} is in the {'/'.join(sorted(ours))} wording, but "
               f"{model_path} was trained on the {'/'.join(sorted(recorded))} one ({', '.join(record['prompt_templates'])}); "
               "its rewards may start at 0. Set prompt_template to the wording the model learnt")
    logger.warning("%s", message)
    return message


def prompt_templates(value: str | None) -> list[str]:
    """Template names from a ``prompt_template`` value: one name or a comma-separated list (None → [])."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def sft_prompt_template(script_args: SFTScriptArguments) -> str:
    return script_args.prompt_template or DEFAULT_SFT_PROMPT[script_args.target_mode]


def validate_sft_args(script_args: SFTScriptArguments, training_args, model_args) -> None:
    """Check every SFT option; raise :class:`ConfigError` on the first bad one."""
    if script_args.target_mode not in SFT_TARGET_MODES:
        raise ConfigError(
            f"target_mode: {script_args.target_mode!r} unknown; expected one of {', '.join(SFT_TARGET_MODES)}"
        )
    _validate_common(script_args, training_args, model_args)
    for template in prompt_templates(sft_prompt_template(script_args)):
        asks_for = formats.PROMPT_SPECS[template]["target_mode"]
        if not formats.prompt_fits_target(template, script_args.target_mode):
            raise ConfigError(
                f"prompt_template {template!r} asks for a {asks_for!r} completion but target_mode is "
                f"{script_args.target_mode!r}; use prompt_template {DEFAULT_SFT_PROMPT[script_args.target_mode]!r}"
            )
    warn_prompt_wording(model_args.model_name_or_path, prompt_templates(sft_prompt_template(script_args)))
    if training_args.max_length is not None:
        logger.warning(
            "max_length=%s: truncation that cuts image tokens raises inside the model; max_length: null is safer "
            "for VLM SFT", training_args.max_length,
        )
    if getattr(training_args, "packing", False):
        raise ConfigError("packing: not supported for vision-language SFT; set packing: false")


def validate_grpo_args(script_args: GRPOScriptArguments, training_args, model_args) -> None:
    """Check every GRPO/RLOO option; raise :class:`ConfigError` on the first bad one."""
    if script_args.algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm: {script_args.algorithm!r} unknown; expected one of {', '.join(ALGORITHMS)}")
    expected = "GRPOConfig" if script_args.algorithm == "grpo" else "RLOOConfig"
    if type(training_args).__name__ != expected:
        raise ConfigError(f"algorithm {script_args.algorithm!r} needs a {expected}, got {type(training_args).__name__}")
    _validate_common(script_args, training_args, model_args)
    template = script_args.prompt_template or "wise-train"
    if "," in template:
        raise ConfigError(f"prompt_template: GRPO takes one template, got {template!r}")
    warn_prompt_wording(model_args.model_name_or_path, [template])
    if formats.PROMPT_SPECS[template]["layout"] == "answer-only":
        logger.warning("prompt_template %r asks for no rationale: format/self_distillation rewards will be 0", template)

    names = script_args.reward_funcs
    if not names:
        raise ConfigError("reward_funcs: empty; name at least one reward (e.g. format, bbox_iou)")
    known = _known_rewards()
    for i, name in enumerate(names):
        if "." in name or ":" in name:
            _import_dotted(_reward_spec(name).replace(":", "."), f"reward_funcs[{i}]")
        elif name not in known:
            raise ConfigError(f"reward_funcs[{i}]: {name!r} is not a known reward; known: {', '.join(sorted(known))} "
                              "(or a dotted path module.function)")
    if len(set(names)) != len(names):
        raise ConfigError(f"reward_funcs: {names} lists a reward twice (their log keys would collide)")
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(names):
        raise ConfigError(
            f"reward_weights: {len(weights)} weights {list(weights)} for {len(names)} reward_funcs {names}; "
            "give one weight per function"
        )
    options = reward_options(script_args)
    for key, value in options.items():
        if key not in names:
            raise ConfigError(f"reward_options: {key!r} is not one of reward_funcs {names}")
        if not isinstance(value, dict):
            raise ConfigError(f"reward_options.{key}: must be a mapping of keyword arguments, got {value!r}")

    if training_args.remove_unused_columns:
        raise ConfigError("remove_unused_columns: must be false for GRPO/RLOO (ground-truth columns feed the rewards)")
    if training_args.num_generations is not None and training_args.num_generations < 2:
        raise ConfigError(f"num_generations: needs ≥ 2 for group-relative advantages, got {training_args.num_generations}")
    gbs = training_args.generation_batch_size
    if gbs is not None and training_args.num_generations and gbs % training_args.num_generations:
        raise ConfigError(
            f"generation_batch_size ({gbs}) is not divisible by num_generations ({training_args.num_generations})"
        )
    if (training_args.max_completion_length or 0) <= 0:
        raise ConfigError(f"max_completion_length: must be positive, got {training_args.max_completion_length}")
    if training_args.temperature <= 0:
        raise ConfigError(f"temperature: must be > 0 for sampling rollouts, got {training_args.temperature}")
    if getattr(training_args, "beta", 0.0) < 0:
        raise ConfigError(f"beta: the KL coefficient must be ≥ 0, got {training_args.beta}")
    if model_args.load_in_4bit and training_args.use_vllm:
        raise ConfigError("use_vllm: vLLM rollouts do not work with a 4-bit base + LoRA (trl#3654); set use_vllm: false")
    _warn_checkpoints_inside_rollouts(training_args)


def _warn_checkpoints_inside_rollouts(training_args) -> None:
    """TRL keeps a generation batch in memory while it is reused (``steps_per_generation`` micro-batches ×
    ``num_iterations``) and does not checkpoint it: a run resumed from a checkpoint inside such a cycle generates
    new rollouts, so it no longer matches an uninterrupted run. Warn unless every checkpoint ends a cycle."""
    save_steps = training_args.save_steps
    strategy = getattr(training_args.save_strategy, "value", training_args.save_strategy)
    if strategy != "steps" or not save_steps or save_steps < 1:
        return
    cycle = (getattr(training_args, "steps_per_generation", None) or training_args.gradient_accumulation_steps) * (
        getattr(training_args, "num_iterations", 1) or 1)
    micro = int(save_steps) * training_args.gradient_accumulation_steps
    if micro % cycle:
        logger.warning(
            "save_steps %s ends checkpoints inside a reused generation batch (every %d micro-batches: "
            "steps_per_generation × num_iterations); a run resumed from one regenerates that batch and differs from "
            "an uninterrupted run. A save_steps multiple of %d keeps resumes exact.", save_steps, cycle,
            cycle // math.gcd(cycle, training_args.gradient_accumulation_steps))


def _known_rewards() -> set[str]:
    from rewards import available_rewards

    return set(available_rewards())


def _import_dotted(path: str, where: str):
    module_path, _, attr = path.rpartition(".")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import module {module_path!r} ({exc})") from exc
    if not hasattr(module, attr):
        raise ConfigError(f"{where}: module {module_path!r} has no attribute {attr!r}")
    return getattr(module, attr)
