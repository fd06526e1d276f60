"""``wise-rl tiny-model``: build a random-weight model of a supported family (``--family``, default qwen2_5_vl;
``tiny`` for tests, ``small`` for the demo) with the offline tokenizer and the family's chat template, and save it,
with its processor, to ``--out`` in the layout of a hub download."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wise_rl.testbed.fixtures.tiny_model import FAMILY_NAMES, PRESETS

    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write the model and processor to")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                        help="model size: tiny (tests) or small (demo); default tiny")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--family", choices=FAMILY_NAMES, default="qwen2_5_vl",
                        help="model family (config shaped like the real one; default qwen2_5_vl)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square image side the processor keeps unresized, a multiple of patch × merge "
                             "(28 or 32; default 112 or 128)")


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from wise_rl.models import count_parameters, weight_bytes
    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model

    path = build_tiny_model(args.out, preset=args.preset, seed=args.seed, image_size=args.image_size,
                            family=args.family)
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        n_params = count_parameters(AutoModelForImageTextToText.from_config(config))
    size = weight_bytes(path)
    print(f"path: {path}")
    from wise_rl.models.families import detect_family

    family = detect_family(path)
    print(f"family: {family.name} ({family.model_class}, native frame {family.native_frame}, "
          f"{family.px_per_token} px per visual token)")
    print(f"preset: {args.preset}  seed: {args.seed}  image size: {args.image_size or 'default'}")
    print(f"parameters: {n_params:,}")
    print(f"weights: {size:,} bytes ({size / 1e6:.2f} MB, safetensors)")
    return 0
