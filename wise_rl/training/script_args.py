"""The recipes' own options, read by ``TrlParser`` next to TRL's ``SFTConfig`` / ``GRPOConfig`` / ``RLOOConfig`` and
``ModelConfig``: YAML keys and ``--flags`` are these field names (TRL's spellings are aliases, see
:mod:`wise_rl.training.recipe_args`). No imports of the training stack, so parsing and ``--help`` stay light."""

from __future__ import annotations

from dataclasses import dataclass, field

from rewards import WISE_REWARDS  # the WISE reward set, defined once (the recipes' default reward_funcs)

SFT_TARGET_MODES = ("wise", "verbose", "concise", "answer")
LORA_TARGETS = ("language_model", "all")
# The default prompt for each SFT target mode: the prompt must ask for what the target contains.
DEFAULT_SFT_PROMPT = {"wise": "wise-train", "verbose": "verbose", "concise": "wise", "answer": "answer-only"}



@dataclass
class WiseScriptArguments:
    """Options shared by both recipes. YAML keys are these field names."""

    dataset: str | None = field(
        default=None,
        metadata={"help": "Training data: anything wise_rl.data.loaders.load_source reads (hub name, save_to_disk "
                  "folder, parquet/jsonl, LISA folder) or 'shapeworld' to generate ShapeWorld scenes on the fly. "
                  "TRL's name dataset_name works too."},
    )
    dataset_split: str | None = field(
        default="train", metadata={"help": "Split of a DatasetDict source (TRL's name: dataset_train_split)."}
    )
    dataset_config: str | None = field(
        default=None,
        metadata={"help": "TRL's hub dataset configuration name. Not supported by the loaders: point dataset at the "
                  "configuration's files or a save_to_disk folder instead (a value here is an error)."},
    )
    dataset_test_split: str = field(
        default="test",
        metadata={"help": "TRL's evaluation split; the recipes do not evaluate during training (use wise-rl eval), "
                  "so it is accepted and unused."},
    )
    dataset_limit: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    dataset_columns: dict | str | None = field(
        default=None,
        metadata={"help": "Your own data: which of your columns is which, a YAML mapping {query: problem, bbox: box} "
                  "or query=problem,bbox=box on the command line (names: image, query, bbox, points, mask, "
                  "polygons, id, detailed, concise; options bbox_format, units; docs/data.md)."},
    )
    model_size: int | None = field(
        default=None,
        metadata={"help": "Side of the square model frame: None = 840 for raw sources, the rows' own size for rows "
                  "already in the sample schema (ShapeWorld renders at 112)."},
    )
    frame: str | None = field(
        default=None,
        metadata={"help": "Coordinate frame of the rows' ground truth, i.e. the frame the model learns to answer in: "
                  "rel1000 (relative [0, 1000]) or absS (pixels of an S×S image, e.g. abs840). None = the model "
                  "family's native frame (rel1000 for Qwen2-VL, Qwen3-VL, Qwen3.5; Qwen2.5-VL: the rows' own "
                  "square, 840 for raw sources). Recorded in the output's wise_rl.json."},
    )
    skip_invalid: bool = field(
        default=False, metadata={"help": "Skip (and count) invalid rows instead of raising DataError."}
    )
    shapeworld_rows: int = field(default=256, metadata={"help": "Rows generated when dataset is 'shapeworld'."})
    shapeworld_seed: int = field(default=0, metadata={"help": "Seed of the generated ShapeWorld scenes."})
    shapeworld_image_size: int = field(default=112, metadata={"help": "Side of generated ShapeWorld images."})
    prompt_template: str | None = field(
        default=None,
        metadata={"help": "Prompt template (wise_rl.formats): wise-train, wise, wise-s, verbose, answer-only. "
                  "Default: wise-train for GRPO; the template matching target_mode for SFT. SFT also takes a "
                  "comma-separated list (e.g. 'wise-train,wise-s'): rows cycle through the templates, all with "
                  "the same target, so a small model learns the format under every prompt it will be asked with."},
    )
    image_min_pixels: int | None = field(default=None, metadata={"help": "Processor min_pixels (bounds image tokens)."})
    image_max_pixels: int | None = field(default=None, metadata={"help": "Processor max_pixels (bounds image tokens)."})
    lora_target: str = field(
        default="language_model",
        metadata={"help": "LoRA targets when use_peft and lora_target_modules is unset: 'language_model' (attention "
                  "+ MLP of the language model) or 'all' (also the vision tower)."},
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={"help": "Full fine-tuning only trains the language model (and lm head): the vision tower and its "
                  "merger keep the weights they came with, so the grounding learnt before survives a short, "
                  "high-lr stage (common in Qwen2.5-VL fine-tuning; LoRA on 'language_model' does the same)."},
    )
    resume: bool = field(
        default=True,
        metadata={"help": "Continue from the last complete checkpoint in output_dir when one exists "
                  "(resume_from_checkpoint PATH picks one explicitly)."},
    )
    sample_log_every: int = field(
        default=0,
        metadata={"help": "Every N optimizer steps write sample completions to output_dir/samples.jsonl and the log "
                  "(SFT: greedy generations on fixed training prompts; GRPO: completions with their rewards, from "
                  "TRL's log_completions parquet files, without TRL's console table). 0 = off."},
    )
    sample_log_count: int = field(default=2, metadata={"help": "How many samples to log each time."})


@dataclass
class SFTScriptArguments(WiseScriptArguments):
    target_mode: str = field(
        default="wise",
        metadata={"help": "SFT target: 'wise' (<think>concise</think><answer>…</answer><d_think>detailed</d_think>), "
                  "'verbose' (<think>detailed</think><answer>…</answer>, the CoT baseline), 'concise' "
                  "(<think>concise</think><answer>…</answer>, under the wise / wise-s prompts) or 'answer'."},
    )
    grounding_share: float = field(
        default=0.0,
        metadata={"help": "Share of the rows (evenly spread) that keep the base's grounding task: the "
                  "'answer-only' prompt with the answer block alone as target, next to the rationale rows, so a "
                  "short SFT on rationales does not overwrite how the base grounds. 0 = rationale rows only."},
    )


@dataclass
class GRPOScriptArguments(WiseScriptArguments):
    algorithm: str = field(
        default="grpo", metadata={"help": "'grpo' (trl.GRPOTrainer, any loss_type) or 'rloo' (trl.RLOOTrainer)."}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: list(WISE_REWARDS),
        metadata={"help": "Reward names from the rewards registry or dotted import paths (module.function). "
                  "Weights: reward_weights (TRL option), one per function."},
    )
    reward_options: dict | str | None = field(
        default=None,
        metadata={"help": "Options per reward: a mapping name → keyword arguments of its factory (YAML mapping or "
                  "a JSON string on the command line)."},
    )
