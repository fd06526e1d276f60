"""The ``wise-rl`` command line: one thin subcommand module per verb in ``wise_rl/commands/``.

Subcommand modules are imported only when used, so ``wise-rl --help`` stays fast and a broken optional
dependency of one verb does not take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module under wise_rl.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tiny-model": ("tiny_model", "build a random-weight Qwen2.5-VL (tiny|small) with an offline tokenizer"),
    "synth": ("synth", "generate the ShapeWorld reasoning-segmentation dataset"),
    "build-sft": ("build_sft", "build SFT data: extractive concise rationales or self-exploration"),
    "pretrain-base": ("pretrain_base", "train the ShapeWorld base model (grounding, no rationale)"),
    "sft": ("train", "SFT warm-start from a YAML recipe (as recipes/sft.py)"),
    "grpo": ("train", "GRPO / RLOO with the WISE rewards from a YAML recipe (as recipes/grpo.py)"),
    "export": ("export", "merge a LoRA adapter into its base model"),
    "eval": ("eval", "generate and score a model on a dataset (WISE / WISE-S / verbose)"),
    "score": ("score", "score existing completions against a dataset, no model needed"),
    "infer": ("infer", "answer one image + query and save an overlay"),
    "rewards": ("rewards", "list the reward functions GRPO recipes can name (reward_funcs) and their options"),
    "report": ("report", "plots and a markdown summary of training and eval runs"),
    "bench": ("bench", "benchmarks: rewards, generation, GRPO step"),
    "demo": ("demo", "the end-to-end WISE demo on ShapeWorld"),
}


def _load(verb: str):
    module_name, _ = COMMANDS[verb]
    return importlib.import_module(f"wise_rl.commands.{module_name}")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wise-rl",
        description="WISE on TRL: learn thick, use thin. Run `wise-rl VERB --help` for a verb's options.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == verb:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(verb)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    result = _load(args.verb).run(args)
    return int(result or 0)


# Errors that name what the user got wrong (a missing folder, a wrong config value, a bad row): printed as one line
# by the console script instead of a traceback; WISE_RL_TRACEBACK=1 shows the traceback. main() lets them propagate
# (tests and callers catch them by type).
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """USER_ERRORS plus the project's own user-facing errors (:class:`wise_rl.errors.WiseRLError`)."""
    from wise_rl.errors import WiseRLError

    return (*USER_ERRORS, WiseRLError)


def entry() -> int:
    """The ``wise-rl`` console script: :func:`main` with user errors printed as ``wise-rl VERB: error: …``."""
    import os

    argv = sys.argv[1:]
    try:
        return main(argv)
    except Exception as exc:
        if not isinstance(exc, _user_error_types()) or os.environ.get("WISE_RL_TRACEBACK"):
            raise
        verb = argv[0] if argv and argv[0] in COMMANDS else ""
        print(f"wise-rl{' ' + verb if verb else ''}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(entry())
