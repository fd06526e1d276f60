"""``wise-rl tiny-model``: build a random-weight Qwen2.5-VL (``tiny`` for tests, ``small`` for the demo) with the
offline tokenizer and save it, with its processor, to ``--out``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wise_rl.testbed.fixtures.tiny_model import PRESETS

    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write the model and processor to")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                        help="model size: tiny (tests) or small (demo); default tiny")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--image-size", type=int, default=112,
                        help="square image side the processor keeps unresized, a multiple of 28 (default 112)")


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from wise_rl.models import count_parameters, weight_bytes
    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model

    path = build_tiny_model(args.out, preset=args.preset, seed=args.seed, image_size=args.image_size)
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        n_params = count_parameters(AutoModelForImageTextToText.from_config(config))
    size = weight_bytes(path)
    print(f"path: {path}")
    print(f"preset: {args.preset}  seed: {args.seed}  image size: {args.image_size}")
    print(f"parameters: {n_params:,}")
    print(f"weights: {size:,} bytes ({size / 1e6:.2f} MB, safetensors)")
    return 0
