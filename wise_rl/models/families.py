"""What differs between the model families wise_rl trains: one :class:`Family` record each, detected from
``config.json``.

+--------------+-------------------------------+-----------+-------------+---------------------------+
| family       | model class                   | px/token  | native frame| training chat template    |
+==============+===============================+===========+=============+===========================+
| qwen2_vl     | Qwen2VLForConditionalGeneration | 28      | rel1000     | qwen2_5_vl.jinja          |
| qwen2_5_vl   | Qwen2_5_VLForConditionalGeneration | 28   | absS (840)  | qwen2_5_vl.jinja          |
| qwen3_vl     | Qwen3VLForConditionalGeneration | 32      | rel1000     | qwen3_vl.jinja            |
| qwen3_vl_moe | Qwen3VLMoeForConditionalGeneration | 32   | rel1000     | qwen3_vl.jinja            |
| qwen3_5      | Qwen3_5ForConditionalGeneration | 32      | rel1000     | qwen3_vl.jinja            |
| qwen3_5_moe  | Qwen3_5MoeForConditionalGeneration | 32   | rel1000     | qwen3_vl.jinja            |
+--------------+-------------------------------+-----------+-------------+---------------------------+

px/token = patch size × spatial merge (a visual token covers a (patch·merge)² square). The native frame is the
coordinate convention of the family's grounding pre-training: Qwen2.5-VL answers in absolute pixels of the image it
is shown (WISE and Seg-Zero: a square 840 image; ``absS`` keeps the rows' own S), the others in relative [0, 1000]
integers. The chat templates are TRL's (``trl/chat_templates/``; Qwen2-VL's is the Qwen2.5-VL one). Qwen3.5 trains
with the Qwen3-VL template (the same special tokens): its own templates (``qwen3_5_think``/``_nothink``) move a
leading ``<think>…</think>`` of the assistant turn into a reformatted reasoning block and pre-fill the generation
prompt with one, which would rewrite the WISE target ``<think>…</think><answer>…</answer><d_think>…</d_think>``; the
Qwen3-VL template renders it verbatim. The recipes put the family's template on the processor
(``wise_rl.training.build_processor``) and save it with the trained model. LoRA targets: a regex over the
language model's linear layers (MoE experts are fused parameters, not ``Linear``: attention only there; Qwen3.5's
gated-delta-net layers add their ``linear_attn`` projections). The vision tower is ``model.visual`` in every family.

:func:`detect_family` reads ``model_type`` from a checkpoint folder's ``config.json``; anything else raises a
one-line :class:`wise_rl.errors.ConfigError` naming the supported families.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from wise_rl.errors import ConfigError
from wise_rl.frames import Frame

_ATTN = r"self_attn\.(q|k|v|o)_proj"
_MLP = r"mlp\.(gate|up|down)_proj"
_LINEAR_ATTN = r"linear_attn\.(in_proj_qkvz|in_proj_ba|in_proj_qkv|in_proj_z|in_proj_b|in_proj_a|out_proj)"


def _layers(*parts: str) -> str:
    return r".*language_model\.layers\.\d+\.(" + "|".join(parts) + ")"


@dataclass(frozen=True)
class Family:
    """One model family: classes, visual token geometry, native frame, template, LoRA and freezing names."""

    name: str
    model_types: tuple[str, ...]  # config.json model_type values
    model_class: str  # transformers class name
    processor_class: str  # the stock processor class (image-only subclass without torchvision)
    patch_size: int
    merge_size: int
    native_frame: str  # "abs" (absolute pixels of the rows' square image: absS) or "rel1000"
    chat_template_file: str  # in trl/chat_templates/
    lora_regex: str  # linear layers of the language model
    vision_modules: tuple[str, ...] = ("visual",)
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @property
    def px_per_token(self) -> int:
        """Side in pixels of the square one visual token covers (patch × merge)."""
        return self.patch_size * self.merge_size

    def visual_tokens(self, width: int, height: int) -> int:
        """Visual tokens for a ``width×height`` image with the processor's rounding of each side to a multiple of
        ``px_per_token`` (no min/max pixel bound applied): ``round(W/f) · round(H/f)``."""
        f = self.px_per_token
        return max(1, round(width / f)) * max(1, round(height / f))

    def frame(self, model_size: int | None = None) -> Frame | None:
        """The native frame: ``rel1000``, or for absolute families ``abs{model_size}`` (None without a size: the
        rows keep their own square side, 840 for raw sources)."""
        if self.native_frame == "rel1000":
            return Frame.parse("rel1000")
        return None if model_size is None else Frame(int(model_size))

    def chat_template(self) -> str:
        """The family's training chat template text (TRL's file)."""
        import trl

        return (Path(trl.__file__).parent / "chat_templates" / self.chat_template_file).read_text(encoding="utf-8")


_QWEN3_MEAN_STD = dict(image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("qwen2_vl", ("qwen2_vl",), "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", 14, 2, "rel1000",
           "qwen2_5_vl.jinja", _layers(_ATTN, _MLP)),
    Family("qwen2_5_vl", ("qwen2_5_vl",), "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", 14, 2, "abs",
           "qwen2_5_vl.jinja", _layers(_ATTN, _MLP)),
    Family("qwen3_vl", ("qwen3_vl",), "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", 16, 2, "rel1000",
           "qwen3_vl.jinja", _layers(_ATTN, _MLP), **_QWEN3_MEAN_STD),
    Family("qwen3_vl_moe", ("qwen3_vl_moe",), "Qwen3VLMoeForConditionalGeneration", "Qwen3VLProcessor", 16, 2,
           "rel1000", "qwen3_vl.jinja", _layers(_ATTN), **_QWEN3_MEAN_STD),
    Family("qwen3_5", ("qwen3_5",), "Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor", 16, 2, "rel1000",
           "qwen3_vl.jinja", _layers(_ATTN, _LINEAR_ATTN, _MLP), **_QWEN3_MEAN_STD),
    Family("qwen3_5_moe", ("qwen3_5_moe",), "Qwen3_5MoeForConditionalGeneration", "Qwen3VLProcessor", 16, 2,
           "rel1000", "qwen3_vl.jinja", _layers(_ATTN, _LINEAR_ATTN, r"mlp\.shared_expert\.(gate|up|down)_proj"),
           **_QWEN3_MEAN_STD),
)}
PROCESSOR_CLASSES = tuple(sorted({f.processor_class for f in FAMILIES.values()}))


def family_named(name: str) -> Family:
    """The family called ``name``; an unknown name raises :class:`ConfigError` listing the supported ones."""
    if name not in FAMILIES:
        raise ConfigError(f"model family {name!r} is not supported; supported: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_model_type(model_type: str, where: str = "config.json") -> Family:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise ConfigError(f"{where}: model_type {model_type!r} is not a supported family; supported: "
                      f"{', '.join(FAMILIES)}")


def detect_family(path) -> Family:
    """The family of the checkpoint folder ``path`` from its ``config.json`` ``model_type``. A folder without a
    readable ``config.json`` or another model type raises one-line :class:`ConfigError`."""
    config = Path(path) / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        raise ConfigError(f"{config}: no config.json; expected a checkpoint folder of one of: "
                          f"{', '.join(FAMILIES)}") from None
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"{config}: not a readable JSON config ({exc})") from None
    return family_of_model_type(str(model_type), str(config))


def try_detect_family(path) -> Family | None:
    """:func:`detect_family` for a local folder, None for a hub id or a folder without ``config.json``."""
    if not (Path(str(path)) / "config.json").is_file():
        return None
    return detect_family(path)


def native_frame(path, model_size: int | None = None) -> Frame | None:
    """The frame a model folder answers in natively (:meth:`Family.frame`); None when the family is absolute
    and no ``model_size`` is given, or the folder is not local."""
    family = try_detect_family(path)
    return None if family is None else family.frame(model_size)
