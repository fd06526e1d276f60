"""``wise-rl pretrain-base``: train the ShapeWorld base model (grounding only, no rationale) from random init, then
evaluate it on held-out scenes and write ``model_card.md`` + ``card.json`` next to the weights.

    wise-rl pretrain-base --out runs/base --max-steps 200 --preset tiny
    wise-rl pretrain-base --out runs/base2 --init runs/base --minutes 10 --name-share 0.2
    wise-rl pretrain-base --out runs/base --score-perception

The options are the fields of :class:`wise_rl.testbed.pretrain.config.PretrainConfig` (read by
``transformers.HfArgumentParser``, as the recipes' are) plus this verb's own :class:`PretrainCommand`;
``wise-rl pretrain-base --help`` lists them. A bad value is one line, before any work.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass
class PretrainCommand:
    """What the verb does with the config: train (default) or score an existing model's perception."""

    score_perception: bool = field(default=False, metadata={
        "help": "no training: score what the model in --out sees (naming the queried shape on --eval-n held-out "
                "scenes, default the card's; a linear probe of colour and kind on its vision tokens) and add it to "
                "its card"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """For the top-level parser only: ``main`` hands this verb's command line, ``--help`` included, to
    :func:`run_argv` (the options are the dataclasses', listed by ``wise-rl pretrain-base --help``)."""
    parser.add_argument("options", nargs=argparse.REMAINDER, help="PretrainConfig's fields, e.g. --out DIR "
                        "--max-steps N (see wise-rl pretrain-base --help)")


def parse(argv: list[str]):
    """``(PretrainConfig, PretrainCommand)`` from a command line; argparse exits with one line on a bad value.
    ``eval_n`` left unset is ``None`` with ``--score-perception`` (the card's), else the config's default."""
    from transformers import HfArgumentParser

    from wise_rl.testbed.pretrain.config import PretrainConfig

    parser = HfArgumentParser((PretrainConfig, PretrainCommand), prog="wise-rl pretrain-base",
                              description=__doc__.split("\n\n")[0])
    parser.set_defaults(eval_n=None)  # unset: the default run's, or with --score-perception the card's
    config, command, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:  # argparse's one line and exit status 2, as every other verb
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    config.progress = not command.quiet
    if config.eval_n is None and not command.score_perception:
        config.eval_n = PretrainConfig.eval_n
    return config, command


def run_argv(argv: list[str]) -> int:
    import json

    config, command = parse(argv)
    if command.score_perception:
        from wise_rl.testbed.pretrain.perception import score_perception

        try:
            scores = score_perception(config.out, eval_n=config.eval_n, batch_size=config.eval_batch_size,
                                      probe_n=config.probe_n)
        except FileNotFoundError as exc:
            raise SystemExit(f"wise-rl pretrain-base --score-perception: {exc}") from None
        scores["naming"] = {k: v for k, v in scores["naming"].items() if k != "examples"}
        print(json.dumps(scores, indent=2))
        return 0
    try:
        config.validate()
    except ValueError as exc:
        raise SystemExit(f"wise-rl pretrain-base: {exc}") from None
    from wise_rl.testbed.pretrain.base_card import CARD_MD
    from wise_rl.testbed.pretrain.run import pretrain

    card = pretrain(config)
    print(json.dumps({"out": config.out, "steps": card["steps"], "vision_probe": card["vision_probe"],
                      "metrics_by_family": card["metrics_by_family"], "samples_seen": card["samples_seen"],
                      "train_s": card["train_s"], "throughput": card["throughput"], "metrics": card["metrics"],
                      "baselines": card["baselines"]}, indent=2))
    print(f"card: {config.out}/{CARD_MD}")
    return 0


def run(args: argparse.Namespace) -> int:
    """``main()`` reaches :func:`run_argv` directly; this serves callers holding parsed arguments."""
    return run_argv(list(args.options))
