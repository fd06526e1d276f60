"""Everything the training recipes (``recipes/sft.py``, ``recipes/grpo.py``) need, so that the scripts stay thin.

The recipes follow open-r1: ``TrlParser`` reads a YAML file (``--config FILE``) plus command-line overrides into
three dataclasses — this module's script arguments, TRL's ``SFTConfig`` / ``GRPOConfig`` / ``RLOOConfig`` and TRL's
``ModelConfig`` — then data → model → trainer → ``train()`` → save.

Data (see docs/ARCHITECTURE.md)::

    load_source(...) rows in the sample schema
      ├─ sft_rows:  {"image", "prompt": [user turn], "completion": [assistant turn]}   (completion-only loss)
      └─ grpo_rows: {"image", "prompt": [user turn], gt_* …}                           (gt columns reach rewards)

The prompt and the completion are separate columns, so TRL tokenises them separately, exactly as generation sees
the prompt: tokenising ``prompt + target`` as one string would change the BPE split at the boundary.
Messages carry string content; TRL's ``prepare_multimodal_messages`` puts the image placeholder before the text of
the user turn, and reads the single ``image`` column as ``images=[image]``.

Model: always given to TRL as a *path* with ``model_init_kwargs`` (dtype, attention) so that 4-bit QLoRA works (an
instantiated model ignores a quantization config) and ZeRO-3 partitions at load time. The processor
comes from :func:`wise_rl.models.load_processor` (works without torchvision).

Every configuration value is checked by :func:`validate_sft_args` / :func:`validate_grpo_args` *before* any model or
dataset is loaded; a bad value raises :class:`ConfigError` naming the option and what is accepted.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from wise_rl import checkpoints, formats
from wise_rl.errors import ConfigError  # re-exported: callers catch training.ConfigError
from wise_rl.recipe_args import (  # noqa: F401  (re-exported: recipes, demo, bench and tests call training.parse_*)
    ALGORITHMS,
    PRESETS_DIR,
    RECIPES_DIR,
    load_config,
    parse_grpo_args,
    parse_sft_args,
    run_from_command_line,
)
from wise_rl.script_args import (  # noqa: F401  (re-exported: callers use training.SFTScriptArguments etc.)
    DEFAULT_SFT_PROMPT,
    LORA_TARGETS,
    SFT_TARGET_MODES,
    WISE_REWARDS,
    GRPOScriptArguments,
    SFTScriptArguments,
    WiseScriptArguments,
)

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------------------------
# Parsing (TRL's aliases, presets, unknown keys) lives in wise_rl.recipe_args; re-exported from this module.




# ----------------------------------------------------------------------------------------------------------------
# Validation (before anything heavy is loaded)
# ----------------------------------------------------------------------------------------------------------------
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
    if not Path(path).exists() and script_args.tiny_model_preset is None:
        looks_local = path.startswith((".", "/", "~")) or path.count("/") != 1
        if looks_local or (_offline() and not _hub_cached(path)):
            raise ConfigError(
                f"model_name_or_path: {path!r} does not exist"
                + (" and is not in the hub cache (HF_HUB_OFFLINE=1)" if _offline() and not looks_local else "")
                + f" (a random-weight test model is built only on request: `wise-rl tiny-model --out {path}`, "
                "or --tiny_model_preset tiny)"
            )
    if Path(path).is_file():
        raise ConfigError(f"model_name_or_path: {path!r} is a file; give a model folder or a hub id")

    out = Path(training_args.output_dir or ".")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir: {str(out)!r} is an existing file; give a folder")
    if not training_args.learning_rate > 0:  # also catches NaN
        raise ConfigError(f"learning_rate: must be > 0, got {training_args.learning_rate}")
    if script_args.tiny_model_preset is not None:
        from wise_rl.testbed.tiny_model import PRESETS

        if script_args.tiny_model_preset not in PRESETS:
            raise ConfigError(f"tiny_model_preset: {script_args.tiny_model_preset!r} unknown; known: {', '.join(PRESETS)}")

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

    ckpt = training_args.resume_from_checkpoint
    if ckpt not in (None, "", "true", "True", "false", "False") and not Path(ckpt).is_dir():
        raise ConfigError(f"resume_from_checkpoint: {ckpt!r} is not a checkpoint folder")


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
        if asks_for != script_args.target_mode:
            raise ConfigError(
                f"prompt_template {template!r} asks for a {asks_for!r} completion but target_mode is "
                f"{script_args.target_mode!r}; use prompt_template {DEFAULT_SFT_PROMPT[script_args.target_mode]!r}"
            )
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


def reward_options(script_args: GRPOScriptArguments) -> dict[str, dict]:
    """``reward_options`` as a mapping (a JSON string from the command line is decoded)."""
    opts = script_args.reward_options
    if opts is None or opts == "":
        return {}
    if isinstance(opts, str):
        try:
            opts = json.loads(opts)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"reward_options: not valid JSON ({exc}): {opts!r}") from exc
    if not isinstance(opts, dict):
        raise ConfigError(f"reward_options: must be a mapping name → options, got {type(opts).__name__}")
    return opts


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


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------
def load_training_dataset(script_args: WiseScriptArguments):
    """The training rows in the sample schema (``datasets.Dataset``)."""
    spec = script_args.dataset
    if spec == "shapeworld":
        from wise_rl.testbed.shapeworld import generate_dataset

        dd = generate_dataset(
            n_train=script_args.shapeworld_rows, n_test=0, seed=script_args.shapeworld_seed,
            image_size=script_args.shapeworld_image_size,
        )
        ds = dd["train"]
        if script_args.dataset_limit is not None:
            ds = ds.select(range(min(script_args.dataset_limit, len(ds))))
        return ds
    from wise_rl.data.loaders import load_source

    ds = load_source(
        spec, split=script_args.dataset_split, model_size=script_args.model_size,
        skip_invalid=script_args.skip_invalid, limit=script_args.dataset_limit,
        lisa_texts="all",  # LISA folders: every text is a training query (evaluation keeps the first)
    )
    if len(ds) == 0:
        raise ConfigError(f"dataset: {spec!r} (split {script_args.dataset_split!r}) has no rows")
    return ds


def _user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def is_grounding_row(index: int, share: float) -> bool:
    """Row ``index`` is a grounding row when the running count ``floor((index + 1) · share)`` steps up there: the
    share is met on every prefix of the rows, not only on average."""
    return int((index + 1) * share) > int(index * share)


def sft_rows(dataset, prompt_template: str, target_mode: str = "wise", grounding_share: float = 0.0):
    """SFT rows ``{"image", "prompt": [user turn], "completion": [assistant turn]}`` from sample-schema rows.

    The target is ``formats.build_target(concise, answer_dict(gt_bbox, gt_points), detailed, target_mode)``.
    A row without the rationale the mode needs (``concise`` and ``detailed`` for ``wise``, ``detailed`` for
    ``verbose``) raises a ``ValueError`` naming its id: build rationales first with ``wise-rl build-sft``.
    ``prompt_template`` may be a comma-separated list: row ``i`` gets template ``i mod len(list)``.
    ``grounding_share`` of the rows (:func:`is_grounding_row`) get the ``answer-only`` prompt and the answer block
    alone instead. Rows without ``gt_bbox`` (LISA's no-object samples) have nothing to answer: skipped, with a
    logged count.
    """
    if not 0 <= grounding_share < 1:
        raise ValueError(f"grounding_share must be in [0, 1), got {grounding_share}")
    if target_mode not in SFT_TARGET_MODES:
        raise ValueError(f"target_mode {target_mode!r} unknown; expected one of {', '.join(SFT_TARGET_MODES)}")
    templates = prompt_templates(prompt_template)
    if not templates:
        raise ValueError("prompt_template is empty")
    for template in templates:
        formats.render_prompt(template, "probe")  # unknown template → ValueError now, not inside map
    needed = {"wise": ("concise", "detailed"), "verbose": ("detailed",), "answer": ()}[target_mode]
    missing_cols = [c for c in ("query", "gt_bbox", "gt_points", *needed) if c not in dataset.column_names]
    if missing_cols:
        raise ValueError(f"SFT data lacks column(s) {missing_cols} needed for target_mode {target_mode!r}")

    def convert(index, row_id, query, bbox, points, concise=None, detailed=None):
        for name, value in (("concise", concise), ("detailed", detailed)):
            if name in needed and not (value or "").strip():
                raise ValueError(
                    f"SFT row {row_id!r}: empty {name!r} rationale (target_mode {target_mode!r}); "
                    "build rationales with `wise-rl build-sft` first"
                )
        answer = formats.answer_dict(bbox, points)
        if is_grounding_row(index, grounding_share):
            return {"prompt": _user_turn(formats.render_prompt("answer-only", query)),
                    "completion": [{"role": "assistant", "content": formats.build_target("", answer, "", "answer")}]}
        target = formats.build_target(concise or "", answer, detailed or "", target_mode)
        return {
            "prompt": _user_turn(formats.render_prompt(templates[index % len(templates)], query)),
            "completion": [{"role": "assistant", "content": target}],
        }

    inputs = ["id", "query", "gt_bbox", "gt_points", "concise", "detailed"]
    inputs = [c for c in inputs if c in dataset.column_names]
    if "id" not in inputs:
        dataset = dataset.add_column("id", [str(i) for i in range(len(dataset))])
        inputs.insert(0, "id")

    def fn(*cols):
        *cols, index = cols
        kw = dict(zip(inputs, cols))
        return convert(index, kw["id"], kw["query"], kw["gt_bbox"], kw["gt_points"], kw.get("concise"), kw.get("detailed"))

    no_object = [i for i, box in enumerate(dataset["gt_bbox"]) if box is None]
    if no_object:  # LISA's no-object samples: an empty target, nothing to answer — a counted skip
        logger.warning("SFT: skipping %d of %d rows without gt_bbox (no-object samples: empty target)",
                       len(no_object), len(dataset))
        dataset = dataset.select(sorted(set(range(len(dataset))) - set(no_object)))
    drop = [c for c in dataset.column_names if c != "image"]
    return dataset.map(fn, input_columns=inputs, remove_columns=drop, with_indices=True, desc="SFT rows")


def grpo_rows(dataset, prompt_template: str = "wise-train"):
    """GRPO/RLOO rows: every sample-schema column kept (``image`` plus ``gt_*`` for the rewards) and a
    conversational ``prompt`` (the user turn; TRL inserts the image placeholder before its text)."""
    formats.render_prompt(prompt_template, "probe")
    if "query" not in dataset.column_names or "image" not in dataset.column_names:
        raise ValueError(f"GRPO data needs 'query' and 'image' columns, has {dataset.column_names}")
    drop = ["prompt"] if "prompt" in dataset.column_names else []
    return dataset.map(
        lambda q: {"prompt": _user_turn(formats.render_prompt(prompt_template, q))},
        input_columns=["query"], remove_columns=drop, desc="GRPO rows",
    )


# ----------------------------------------------------------------------------------------------------------------
# Model, processor, PEFT, quantization
# ----------------------------------------------------------------------------------------------------------------
def ensure_model(script_args: WiseScriptArguments, model_args) -> str:
    """The model path; builds a random-weight preset there first when ``tiny_model_preset`` asks for it."""
    path = model_args.model_name_or_path
    if script_args.tiny_model_preset and not (Path(path) / "config.json").is_file():
        from accelerate import PartialState

        from wise_rl.testbed.tiny_model import build_tiny_model

        with PartialState().main_process_first():
            if not (Path(path) / "config.json").is_file():
                logger.warning("tiny_model_preset: building a random-weight %r model in %s",
                               script_args.tiny_model_preset, path)
                build_tiny_model(path, preset=script_args.tiny_model_preset, seed=0,
                                 image_size=script_args.shapeworld_image_size)
    return path


def build_processor(script_args: WiseScriptArguments, model_args):
    from wise_rl.models import load_processor

    return load_processor(
        model_args.model_name_or_path, min_pixels=script_args.image_min_pixels,
        max_pixels=script_args.image_max_pixels,
    )


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

    cfg = lora_config(r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout,
                      target=script_args.lora_target)
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


def maybe_init_cpu_deepspeed() -> None:
    """DeepSpeed on CPU (``DS_ACCELERATOR=cpu``): start the gloo process group before the trainer is built
    (ZeRO-3 with a reference model, ``beta > 0``, otherwise hangs or fails)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return
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


# ----------------------------------------------------------------------------------------------------------------
# Rewards
# ----------------------------------------------------------------------------------------------------------------
def _reward_spec(name: str) -> str:
    """A dotted ``module.function`` becomes the registry's ``module:function`` form; names pass through."""
    if "." in name and ":" not in name:
        module, _, attr = name.rpartition(".")
        return f"{module}:{attr}"
    return name


def build_reward_funcs(script_args: GRPOScriptArguments, tokenizer=None, layout: str = "three-stage") -> list:
    """The reward callables in ``reward_funcs`` order, built by ``rewards.get_reward(name, **reward_options[name])``
    (registry names, or dotted paths ``module.function`` / ``module:function``). Rewards that accept a
    ``tokenizer`` option (self_distillation, brevity, …) get the policy's tokenizer unless the options name one.

    The first function is wrapped by :func:`with_length_diagnostics`, which logs completion-part lengths."""
    from rewards import get_reward

    if os.getcwd() not in sys.path:  # dotted paths relative to the launch folder, as TRL's scripts allow
        sys.path.insert(0, os.getcwd())
    options = reward_options(script_args)
    funcs = []
    for i, name in enumerate(script_args.reward_funcs):
        opts = dict(options.get(name, {}))
        spec = _reward_spec(name)
        try:
            if tokenizer is not None and "tokenizer" not in opts:
                try:
                    func = get_reward(spec, tokenizer=tokenizer, **opts)
                except TypeError as exc:  # this reward takes no tokenizer option
                    if "tokenizer" not in str(exc):
                        raise
                    func = get_reward(spec, **opts)
            else:
                func = get_reward(spec, **opts)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"reward_funcs[{i}] {name!r} (options {opts}): {exc}") from exc
        funcs.append(func)
    if funcs:
        funcs[0] = with_length_diagnostics(funcs[0], tokenizer, layout)
    return funcs


def check_reward_columns(reward_funcs: list, dataset, source: str = "the training data") -> None:
    """Refuse, before training, a reward whose ground-truth column is absent from ``dataset`` or None in every row:
    it would return None for every sample and the run would log ``rewards/NAME/mean: None`` to its end (e.g.
    ``mask_iou``, or a ``mask_iou`` gate, on refCOCOg_2k_840, which has no masks). Raises :class:`ConfigError`
    naming the reward and the column. Rewards without ``required_columns()`` (plain functions) are not checked."""
    for i, func in enumerate(reward_funcs):
        reward = getattr(func, "__wrapped__", func)
        needs = getattr(reward, "required_columns", None)
        for column in needs() if callable(needs) else ():
            if column not in dataset.column_names:
                why = "has no such column"
            elif dataset.with_format("arrow")[column].null_count == len(dataset):
                why = f"has it None in all {len(dataset)} rows"
            else:
                continue
            name = getattr(reward, "name", getattr(reward, "__name__", str(reward)))
            raise ConfigError(f"reward_funcs[{i}] {name!r} needs column {column!r}, but {source} {why}: the reward "
                              "would be None for every sample. Drop it, choose a gate the data supports "
                              "(reward_options, e.g. gate: bbox_iou) or use data with that column")


def completion_lengths(completion, tokenizer=None, layout: str = "three-stage") -> dict[str, int]:
    """Lengths of a completion's parts: ``think`` (the <think> content: concise for WISE), ``d_think`` and ``answer``
    in tokens (``tokenizer``) or whitespace words (no tokenizer). Unparseable parts count 0."""
    parsed = formats.parse_completion(completion, "three-stage" if layout == "three-stage" else "think-answer")
    text = formats.completion_text(completion)
    if parsed.concise is None:  # format failed: locate the think block loosely
        i, j = text.find(formats.THINK_OPEN), text.find(formats.THINK_CLOSE)
        think = text[i + len(formats.THINK_OPEN): j] if 0 <= i < j else ""
    else:
        think = parsed.concise

    def count(s: str | None) -> int:
        if not s:
            return 0
        if tokenizer is None:
            return len(s.split())
        return len(tokenizer(s, add_special_tokens=False)["input_ids"])

    return {"think": count(think), "d_think": count(parsed.detailed), "answer": count(parsed.answer_text)}


def with_length_diagnostics(func, tokenizer=None, layout: str = "three-stage"):
    """Wrap a reward function so that each call also logs, through TRL's ``log_metric``, the mean think / d_think /
    answer lengths of the batch (``completions/think_tokens`` …). The reward values are unchanged."""

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        log_metric = kwargs.get("log_metric")
        completions = kwargs.get("completions")
        if log_metric is not None and completions:
            lengths = [completion_lengths(c, tokenizer, layout) for c in completions]
            for part in ("think", "d_think", "answer"):
                log_metric(f"completions/{part}_tokens", sum(d[part] for d in lengths) / len(lengths))
        return func(*args, **kwargs)

    wrapped.__name__ = getattr(func, "__name__", type(func).__name__)
    return wrapped


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and resume (the checks themselves live in wise_rl.checkpoints)
# ----------------------------------------------------------------------------------------------------------------
def _truthy(value) -> bool:
    return value in ("true", "True", True)


def resolve_resume(script_args: WiseScriptArguments, training_args) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` (a folder, or ``true`` = last in output_dir), else
    the last complete checkpoint in output_dir when ``resume`` (the default), else None (fresh start).

    Incomplete checkpoints in output_dir are moved to ``output_dir/incomplete/`` (main process only); an explicit
    folder that is not complete is a :class:`ConfigError` saying why."""
    from accelerate import PartialState

    requested = training_args.resume_from_checkpoint
    if requested in ("false", "False", False):
        return None
    state = PartialState()
    if requested not in (None, "", "true", "True", True):
        problem = checkpoints.checkpoint_problem(requested)
        if problem:
            raise ConfigError(f"resume_from_checkpoint: {requested} is not a complete checkpoint ({problem})")
        return str(requested)
    if _truthy(requested) or script_args.resume:
        with state.main_process_first():  # only the main process moves incomplete folders
            last = checkpoints.last_complete_checkpoint(training_args.output_dir, quarantine=state.is_main_process)
        if last is None and _truthy(requested):
            raise ConfigError(f"resume_from_checkpoint: true, but {training_args.output_dir} has no complete checkpoint")
        if last is not None:
            logger.info("resuming from %s", last)
        return last
    return None


def finished_summary(script_args: WiseScriptArguments, training_args) -> dict[str, Any] | None:
    """When ``output_dir`` holds a run that already trained as far as this configuration asks (its ``DONE``
    marker), the summary of that run (``finished: True``) for the recipe to return without loading anything; None
    otherwise. A larger ``max_steps`` (or more epochs) resumes and extends it; ``--resume false`` starts over."""
    if not script_args.resume or training_args.resume_from_checkpoint in ("false", "False", False):
        return None
    if training_args.resume_from_checkpoint not in (None, "", "true", "True", True):
        return None  # an explicit checkpoint: the user asks to train from it
    done = checkpoints.finished_run(training_args.output_dir, training_args.max_steps, training_args.num_train_epochs)
    if done is None:
        return None
    logger.warning("%s already holds a finished run (step %d): nothing to do. Raise max_steps to extend it, or pass "
                   "--resume false to start over (its checkpoints are kept aside).", training_args.output_dir,
                   done["global_step"])
    return {"global_step": done["global_step"], "resumed_from": None, "finished": True}


# Re-exported for callers of the earlier API.
TRAINER_STATE = checkpoints.TRAINER_STATE
is_complete_checkpoint = checkpoints.is_complete_checkpoint
last_complete_checkpoint = checkpoints.last_complete_checkpoint


# ----------------------------------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------------------------------
def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class SampleCompletionsCallback(_trainer_callback_base()):
    """Every ``every`` optimizer steps, generate greedily for ``rows`` (fixed training prompts) and append
    ``{"step", "id", "prompt", "target", "completion"}`` lines to ``output_dir/samples.jsonl``; also logs them.

    All processes generate (ZeRO-3 needs every rank inside ``generate``); the main process writes.
    """

    def __init__(self, processor, rows: list[dict], every: int, max_new_tokens: int = 128):
        self.processor, self.rows, self.every, self.max_new_tokens = processor, rows, every, max_new_tokens

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every <= 0 or not self.rows or state.global_step % self.every or model is None:
            return
        import torch
        from trl.data_utils import prepare_multimodal_messages

        from wise_rl.models import eval_mode

        records = []
        with eval_mode(model):
            for row in self.rows:
                messages = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
                text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                enc = self.processor(text=[text], images=[row["image"]], return_tensors="pt")
                enc = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in enc.items()}
                with torch.no_grad():
                    out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
                completion = self.processor.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                records.append({"step": state.global_step, "id": row.get("id"),
                                "target": formats.completion_text(row.get("completion")), "completion": completion})
        if state.is_world_process_zero:
            path = Path(args.output_dir) / "samples.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                for rec in records:
                    f.write(json.dumps(rec) + "\n")
            for rec in records:
                logger.info("step %d sample %s: %s", rec["step"], rec["id"], " ".join(rec["completion"].split())[:200])


def sample_rows(dataset, count: int) -> list[dict]:
    """The first ``count`` rows as plain dicts (for :class:`SampleCompletionsCallback`)."""
    rows = []
    for i in range(min(count, len(dataset))):
        row = dict(dataset[i])
        row.setdefault("id", str(i))
        rows.append(row)
    return rows


def configure_logging(training_args) -> None:
    """Python / transformers / datasets log levels from ``log_level`` (main process) like open-r1.

    The recipe's own news (what is trained, trainable parameters, resuming from …, model saved to …) is INFO from
    this project's loggers: at the default ``log_level: passive`` the main process shows it and the libraries stay
    at their default (warnings); other processes show warnings only, so each line appears once."""
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    level = training_args.get_process_log_level()
    own = level
    if training_args.log_level == "passive" and training_args.should_log:
        own = logging.INFO
    for name in ("wise_rl", "recipes", "rewards"):
        logging.getLogger(name).setLevel(own)
    logger.setLevel(own)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    # Deprecation notices raised from inside the libraries' training step (TRL asks for a renamed attribute at every
    # step): shown once, not once per step.
    warnings.filterwarnings("once", category=FutureWarning, module=r"(transformers|trl|accelerate|peft)\.")


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
    """Parameter counts and quantization of the model a trainer holds (logged by the recipes)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    quantized = "4bit" if getattr(model, "is_loaded_in_4bit", False) else (
        "8bit" if getattr(model, "is_loaded_in_8bit", False) else None)
    return {"trainable_params": trainable, "total_params": total, "quantized": quantized,
            "peft": hasattr(model, "peft_config")}


def save_final(trainer, processor, output_dir) -> None:
    """Save the final model (adapter when PEFT) + processor into ``output_dir``, then the ``DONE`` marker (written
    last: its presence means the files beside it are the final model of its step)."""
    trainer.save_model(output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(output_dir)
        checkpoints.write_done(output_dir, trainer.state.global_step, trainer.state.max_steps,
                               trainer.args.num_train_epochs)
    trainer.accelerator.wait_for_everyone()


def _at_end(checkpoint: str, training_args) -> bool:
    """The checkpoint already reached this configuration's last step (a run killed after its final save)."""
    state = json.loads((Path(checkpoint) / checkpoints.TRAINER_STATE).read_text(encoding="utf-8"))
    return checkpoints.reached_end(int(state["global_step"]), state, training_args.max_steps,
                                   training_args.num_train_epochs)


def _restore_final_checkpoint(trainer, checkpoint: str) -> dict[str, Any]:
    """Load the weights and state of a checkpoint that already reached the last step, without training (resuming
    it through ``trainer.train`` would run one step past ``max_steps``)."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / checkpoints.TRAINER_STATE))
    logger.info("%s is the last step (%d): saving it as the final model without training", checkpoint,
                trainer.state.global_step)
    return {}


def train_and_save(trainer, processor, script_args: WiseScriptArguments, training_args, train_rows) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint when there is one), save metrics, state and the final model.

    Crash safety (docs/ARCHITECTURE.md, "Runs that crash"): resumed weights are the checkpoint's
    (:func:`wise_rl.checkpoints.restore_weights_on_resume`); a checkpoint that already reached the last step is
    saved as the final model without training; ``--resume false`` in a used folder moves the earlier run's
    checkpoints aside; a full disk raises :class:`wise_rl.outdir.DiskFullError` naming output_dir.

    Returns the run's summary: ``global_step``, ``resumed_from``, the model description and the train metrics.
    """
    from wise_rl.outdir import disk_full_errors

    model_info = describe_model(trainer.model)
    logger.info("model: %s", model_info)
    checkpoints.restore_weights_on_resume(trainer)
    checkpoint = resolve_resume(script_args, training_args)
    if checkpoint is None and (not script_args.resume or training_args.resume_from_checkpoint in ("false", "False")):
        if trainer.accelerator.is_main_process:
            checkpoints.set_aside_previous_run(training_args.output_dir)
        trainer.accelerator.wait_for_everyone()
    with disk_full_errors(training_args.output_dir, "saving a checkpoint"):
        if checkpoint is not None and _at_end(checkpoint, training_args):
            metrics = _restore_final_checkpoint(trainer, checkpoint)
        else:
            metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    metrics["train_samples"] = len(train_rows)
    with disk_full_errors(training_args.output_dir, "saving the final model"):
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        save_final(trainer, processor, training_args.output_dir)
    logger.info("model saved to %s", training_args.output_dir)
    if hasattr(trainer, "end"):
        trainer.end()
    return {"global_step": trainer.state.global_step, "resumed_from": checkpoint, **model_info, **metrics}
