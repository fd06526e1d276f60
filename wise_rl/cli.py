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
    "tiny-model": ("tiny_model", "build a random-weight model of a supported family (tiny|small) with an offline tokenizer"),
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


# verbs that run a model on the CPU: they take --threads and set torch's threads (wise_rl.threads) before running
THREAD_VERBS = ("eval", "infer", "score", "build-sft", "export")
# verbs whose arguments are a recipe's (TRL's) command line: passed through to the recipe's own parser
RECIPE_VERBS = ("sft", "grpo")
# verbs whose options are a dataclass's, read by transformers.HfArgumentParser in the verb's run_argv (--help too)
DATACLASS_VERBS = ("pretrain-base",)


def _load(verb: str):
    module_name, _ = COMMANDS[verb]
    return importlib.import_module(f"wise_rl.commands.{module_name}")


def _examples(verb: str, module) -> str | None:
    """The ``wise-rl VERB …`` lines of the verb module's docstring (its examples), for the verb's ``--help``."""
    lines, continued = [], False
    for line in (module.__doc__ or "").splitlines():
        text = line.strip()
        if continued or text.startswith(f"wise-rl {verb} ") or text == f"wise-rl {verb}":
            lines.append(("      " if continued else "  ") + text)
            continued = text.endswith("\\")
        else:
            continued = False
    return "examples:\n" + "\n".join(lines) if lines else None


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``verb``'s module is imported (its arguments, its examples as the epilog). The
    verb's own parser is ``parser.verb_parsers[verb]``."""
    parser = argparse.ArgumentParser(
        prog="wise-rl",
        description="WISE on TRL: learn thick, use thin. Run `wise-rl VERB --help` for a verb's options.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    parser.verb_parsers = {}
    for name, (_, help_text) in COMMANDS.items():
        if name == verb:
            module = _load(name)
            p = sub.add_parser(name, help=help_text, description=help_text, epilog=_examples(name, module),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
            module.add_arguments(p)
            if name in THREAD_VERBS:
                p.add_argument("--threads", default=None, metavar="N",
                               help="torch CPU threads (default: what fits the machine and the model; also "
                                    "WISE_RL_THREADS); recorded in metrics.json")
        else:
            p = sub.add_parser(name, help=help_text, description=help_text)
        parser.verb_parsers[name] = p
    return parser


def _closest_flag(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """`` (did you mean --dataset?)`` for the first unknown ``--flag`` close to one of ``parser``'s, else ``""``."""
    import difflib

    known = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    for token in extra:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1, cutoff=0.75)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = argv[0] if argv and argv[0] in COMMANDS else None
    if verb in RECIPE_VERBS and not {"-h", "--help"} & set(argv[1:]):
        return int(_load(verb).run_argv(verb, argv[1:]) or 0)
    if verb in DATACLASS_VERBS:
        return int(_load(verb).run_argv(argv[1:]) or 0)
    parser = build_parser(verb)
    args, extra = parser.parse_known_args(argv)
    if extra:  # a typo in a verb's flag: that verb's usage, not the top-level one, and the closest flag
        owner = parser.verb_parsers[args.verb] if args.verb else parser
        owner.error(f"unrecognized arguments: {' '.join(extra)}{_closest_flag(owner, extra)}")
    if args.verb is None:
        parser.print_help()
        return 0
    if args.verb in THREAD_VERBS:
        from wise_rl.threads import apply_threads

        apply_threads(args.threads, getattr(args, "model", None) or getattr(args, "tokenizer", None))
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
