"""The tiny-model kit: random-weight Qwen2.5-VL presets, built and saved offline for tests and the ShapeWorld demo.

:func:`build_tiny_model` trains the offline tokenizer (:mod:`wise_rl.testbed.tokenizer`), builds a
``Qwen2_5_VLForConditionalGeneration`` from a preset (:data:`PRESETS`) and saves model + processor (safetensors) to
a folder that ``AutoModelForImageTextToText.from_pretrained`` and :func:`wise_rl.models.load_processor` reload.
Input and output embeddings are tied.

- ``tiny``: text hidden 16, 2 layers, 4 heads, 2 KV heads (head_dim 4, ``mrope_section`` [0, 1, 1]), vision hidden
  16, depth 2. For tests: build + save + reload in about a second.
- ``small``: the demo model. Text hidden 128, 3 layers, 4 heads, 2 KV heads (head_dim 32, ``mrope_section``
  [4, 6, 6], ``rope_theta`` 1e4), MLP 256; vision hidden 64, depth 3, 4 heads, MLP 128. Every Linear has
  in-features divisible by 64 and out-features by 32, so bitsandbytes' CPU nf4 inference kernel accepts it.

Token budget: a square ``image_size``² image (112 by default, a multiple of 28) is not resized; it is cut into
(image_size / 14)² patches and merged 2×2: tokens = (image_size / 28)² (112 → 64 patches → 16 image tokens).
Why the presets are shaped so, with sizes and timings: ``docs/testbed.md``, section "The tiny-model presets".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from wise_rl.models import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, chat_template, image_only_processor_class
from wise_rl.testbed.tokenizer import train_tokenizer


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of a random-weight Qwen2.5-VL. ``mrope_section`` (temporal, height, width) sums to head_dim / 2."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    mrope_section: tuple[int, int, int]
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    fullatt_block_indexes: tuple[int, ...]
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    window_size: int = 112
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 4096
    vocab_size: int = 3072  # upper bound for the BPE trainer; the corpus yields 2,209 tokens with the specials
    description: str = ""

    def __post_init__(self):
        head_dim, rest = divmod(self.text_hidden, self.text_heads)
        if rest:
            raise ValueError(f"text_hidden {self.text_hidden} is not divisible by text_heads {self.text_heads}")
        if sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
        if self.text_heads % self.text_kv_heads:
            raise ValueError("text_heads must be a multiple of text_kv_heads")
        if self.vision_hidden % self.vision_heads:
            raise ValueError("vision_hidden must be divisible by vision_heads")
        if any(not 0 <= i < self.vision_depth for i in self.fullatt_block_indexes):
            raise ValueError(f"fullatt_block_indexes {self.fullatt_block_indexes} must be < depth {self.vision_depth}")


PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        text_hidden=16, text_layers=2, text_heads=4, text_kv_heads=2, text_intermediate=32,
        mrope_section=(0, 1, 1),
        vision_hidden=16, vision_depth=2, vision_heads=2, vision_intermediate=32, fullatt_block_indexes=(1,),
        description="test model: builds, saves and reloads in about a second",
    ),
    "small": ModelPreset(
        text_hidden=128, text_layers=3, text_heads=4, text_kv_heads=2, text_intermediate=256,
        mrope_section=(4, 6, 6),
        vision_hidden=64, vision_depth=3, vision_heads=4, vision_intermediate=128, fullatt_block_indexes=(2,),
        description="demo model: learns to localise shapes in 112 px ShapeWorld scenes",
    ),
}


def preset_config(preset: str | ModelPreset, tokenizer):
    """A ``Qwen2_5_VLConfig`` for ``preset`` whose vocabulary and special token ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    p = PRESETS[preset] if isinstance(preset, str) else preset
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": p.text_hidden,
        "intermediate_size": p.text_intermediate,
        "num_hidden_layers": p.text_layers,
        "num_attention_heads": p.text_heads,
        "num_key_value_heads": p.text_kv_heads,
        "max_position_embeddings": p.max_position_embeddings,
        "max_window_layers": p.text_layers,
        "rope_parameters": {"rope_type": "default", "rope_theta": p.rope_theta, "mrope_section": list(p.mrope_section)},
        "bos_token_id": ids[PAD_TOKEN],
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
        "tie_word_embeddings": p.tie_word_embeddings,
        "sliding_window": None,
        "use_sliding_window": False,
    }
    vision_config = {
        "depth": p.vision_depth,
        "hidden_size": p.vision_hidden,
        "intermediate_size": p.vision_intermediate,
        "num_heads": p.vision_heads,
        "patch_size": p.patch_size,
        "spatial_merge_size": p.spatial_merge_size,
        "temporal_patch_size": p.temporal_patch_size,
        "window_size": p.window_size,
        "out_hidden_size": p.text_hidden,
        "fullatt_block_indexes": list(p.fullatt_block_indexes),
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=p.tie_word_embeddings,
    )



def build_tiny_model(out_dir, preset: str = "tiny", seed: int = 0, image_size: int = 112) -> Path:
    """Build a random-weight Qwen2.5-VL + processor from ``preset`` and save both (safetensors) in ``out_dir``.

    The image processor's ``min_pixels = max_pixels = image_size²`` so an ``image_size``² image (a multiple of 28)
    is not resized: it gives (image_size/14)² patches and (image_size/28)² image tokens (112 → 64 → 16). The config's
    token ids and the generation config (eos ``<|im_end|>``, pad/bos ``<|endoftext|>``) match the tokenizer.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    factor = p.patch_size * p.spatial_merge_size
    if image_size <= 0 or image_size % factor:
        raise ValueError(f"image_size must be a positive multiple of {factor} (patch × merge), got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(p.vocab_size, seed=0)
    config = preset_config(p, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out, safe_serialization=True)

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=image_size * image_size, max_pixels=image_size * image_size,
        patch_size=p.patch_size, temporal_patch_size=p.temporal_patch_size, merge_size=p.spatial_merge_size,
    )
    processor = image_only_processor_class("Qwen2_5_VLProcessor")(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template()
    )
    processor.save_pretrained(out)
    # Name the image processor as the stock (torchvision-agnostic) type, as real checkpoints do.
    pp = out / "preprocessor_config.json"
    if pp.is_file():
        data = json.loads(pp.read_text(encoding="utf-8"))
        data["image_processor_type"] = "Qwen2VLImageProcessor"
        data["processor_class"] = "Qwen2_5_VLProcessor"
        pp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out

