"""``wise-rl report RUN_DIR... [--out DIR]``: PNG plots and report.md from training logs and eval metrics."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="training output folders (trainer_state.json) and/or eval folders (metrics.json)")
    parser.add_argument("--out", default=None, help="output folder (default: FIRST_RUN_DIR/report)")


def run(args: argparse.Namespace) -> int:
    from wise_rl.report import build_report

    result = build_report(args.runs, args.out)
    print(f"{result['training']} training run(s), {result['evals']} eval run(s)")
    for fig in result["figures"]:
        print(f"figure: {fig}")
    print(f"summary: {result['report']}")
    return 0
