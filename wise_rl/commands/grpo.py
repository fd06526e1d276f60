"""``wise-rl grpo CONFIG.yaml [--key value …]``: GRPO / RLOO with the WISE rewards.

The same entry point as ``accelerate launch recipes/grpo.py --config CONFIG.yaml`` and
``python -m wise_rl.scripts.grpo --config CONFIG.yaml`` (:func:`wise_rl.scripts.grpo.cli`), in one process; the
overrides are the recipe's own options (TRL argument names), e.g. ``--max_steps 20 --output_dir runs/x``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser) -> None:
    parser.add_argument("config", help="the YAML recipe (e.g. recipes/tiny/grpo.yaml)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="recipe options that override the YAML, e.g. --max_steps 20 (see the YAML's keys)")


def run(args) -> int:
    from wise_rl.scripts.grpo import cli

    cli(["--config", args.config, *args.overrides])
    return 0
