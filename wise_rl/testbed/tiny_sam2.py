"""A random-weight SAM2 for tests: the ``sam2`` mask decoder's code path without a download.

:func:`build_tiny_sam2` saves a Hiera-hidden-12 ``Sam2Model`` with a square input of ``image_size`` px (a multiple
of 32, ``ValueError`` otherwise) to a folder that ``Sam2Model.from_pretrained`` and
:class:`wise_rl.masks.Sam2Decoder` load like a real checkpoint. Its masks are meaningless; its shapes are real.
"""

from __future__ import annotations

import os
from pathlib import Path


def build_tiny_sam2(out_dir: str | os.PathLike, seed: int = 0, image_size: int = 128) -> Path:
    """Save a random-weight SAM2 (Hiera hidden 12, input ``image_size``, default 128) for tests; no download.

    The folder loads with ``Sam2Model.from_pretrained`` and :class:`Sam2Decoder` like a real checkpoint.
    """
    import torch
    from transformers import Sam2Config, Sam2Model

    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
    hidden, fpn = 12, 32
    dims = [hidden, hidden * 2, hidden * 4, hidden * 8]
    s = image_size // 4  # after the stride-4 patch embedding
    config = Sam2Config(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": hidden,
                "image_size": [image_size, image_size],
                "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": dims,
                "num_attention_heads_per_stage": [1, 1, 1, 1],
                "window_size_per_stage": [4, 4, 4, 2],
                "global_attention_blocks": [3],
                "window_positional_embedding_background_size": [2, 2],
            },
            "backbone_channel_list": dims[::-1],
            "backbone_feature_sizes": [[s, s], [s // 2, s // 2], [s // 4, s // 4]],
            "fpn_hidden_size": fpn,
        },
        prompt_encoder_config={"hidden_size": fpn, "image_size": image_size, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": fpn, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32,
        },
    )
    torch.manual_seed(seed)
    model = Sam2Model(config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    return out
