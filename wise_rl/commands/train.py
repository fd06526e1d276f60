"""``wise-rl sft`` and ``wise-rl grpo``: train from a YAML recipe, with the recipes' own arguments.

    wise-rl sft --config recipes/tiny/sft.yaml
    wise-rl sft --config recipes/tiny/sft.yaml --max_steps 20 --output_dir runs/x
    wise-rl grpo --config recipes/tiny/grpo.yaml
    wise-rl grpo --config recipes/tiny/grpo.yaml --algorithm rloo --threads 1

The same entry points as ``accelerate launch recipes/sft.py --config CONFIG.yaml`` (``recipes/grpo.py``), ``trl
sft --config CONFIG.yaml`` and ``python -m wise_rl.scripts.sft --config CONFIG.yaml`` (``.grpo``):
:func:`wise_rl.scripts.sft.cli` / :func:`wise_rl.scripts.grpo.cli`, in one process, with the same arguments.
``wise-rl sft CONFIG.yaml …`` (the file first, without ``--config``) is accepted too. The overrides are the
recipe's own options (TRL argument names), e.g. ``--max_steps 20 --output_dir runs/x``; ``--threads N`` sets the CPU
threads (:mod:`wise_rl.threads`). A mistake is one line ``…: error: …`` (the script's prefix).
"""

from __future__ import annotations

import argparse
import importlib


def add_arguments(parser) -> None:
    """For ``--help`` only: the arguments themselves are the recipe's (:func:`run_argv` passes them through)."""
    verb = parser.prog.split()[-1]
    parser.add_argument("--config", metavar="FILE", help=f"the YAML recipe (e.g. recipes/tiny/{verb}.yaml)")
    parser.add_argument("--threads", metavar="N", help="torch CPU threads (default: what fits the machine and the "
                                                       "model; also WISE_RL_THREADS)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="recipe options that override the YAML, e.g. --max_steps 20 (TRL's names; see the "
                             "YAML's keys)")


def recipe_argv(argv: list[str]) -> list[str]:
    """The recipe command line: ``CONFIG.yaml …`` (a file first, the verbs' earlier form) becomes ``--config
    CONFIG.yaml …``; anything else passes unchanged."""
    if argv and not argv[0].startswith("-"):
        return ["--config", argv[0], *argv[1:]]
    return list(argv)


def run_argv(verb: str, argv: list[str]) -> int:
    """Run ``wise_rl.scripts.<verb>.cli`` on the recipe command line ``argv`` (its ``prog``, when it takes one, is
    ``wise-rl VERB``); a user mistake prints one line and returns 2."""
    import inspect

    script = importlib.import_module(f"wise_rl.scripts.{verb}")
    if "prog" in inspect.signature(script.cli).parameters:  # the script's own cli: one path for every launcher
        return script.cli(recipe_argv(argv), prog=f"wise-rl {verb}")
    return script.cli(recipe_argv(argv))


def run(args) -> int:
    """``main()`` reaches :func:`run_argv` directly; this serves callers holding parsed arguments."""
    argv = (["--config", args.config] if args.config else []) + (["--threads", args.threads] if args.threads else [])
    return run_argv(args.verb, [*argv, *args.overrides])
