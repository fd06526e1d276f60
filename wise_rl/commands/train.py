"""``wise-rl sft CONFIG.yaml [--key value …]`` and ``wise-rl grpo CONFIG.yaml [--key value …]``: train from a recipe.

The same entry points as ``accelerate launch recipes/sft.py --config CONFIG.yaml`` (``recipes/grpo.py``) and
``python -m wise_rl.scripts.sft --config CONFIG.yaml`` (``.grpo``): :func:`wise_rl.scripts.sft.cli` /
:func:`wise_rl.scripts.grpo.cli`, in one process. The overrides are the recipe's own options (TRL argument
names), e.g. ``--max_steps 20 --output_dir runs/x``.
"""

from __future__ import annotations

import argparse
import importlib


def add_arguments(parser) -> None:
    parser.add_argument("config", help="the YAML recipe (e.g. recipes/tiny/sft.yaml, recipes/tiny/grpo.yaml)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="recipe options that override the YAML, e.g. --max_steps 20 (see the YAML's keys)")


def run(args) -> int:
    script = importlib.import_module(f"wise_rl.scripts.{args.verb}")
    script.cli(["--config", args.config, *args.overrides])
    return 0
