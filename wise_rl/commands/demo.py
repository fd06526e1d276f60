"""``wise-rl demo``: WISE end to end on ShapeWorld — from the shipped base model, a verbose-CoT arm and a WISE arm
(SFT → GRPO) trained through the real recipes with the same budget, evaluated with the verbose and the WISE / WISE-S
prompts (``--long``: also the concise-only and no-self-distillation ablations), then ``OUT/report.md``,
``OUT/report.json`` and PNG plots. Re-running the same command resumes (finished stages
are skipped). See :mod:`wise_rl.testbed.demo`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder (default runs/demo)")
    parser.add_argument("--base", default=None, metavar="DIR",
                        help="base model folder (default: the embedded wise_rl/assets/shapeworld-base)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--long", action="store_true",
                      help="the bigger profile meant to meet the targets (recipes/demo/profile_long.yaml)")
    size.add_argument("--smoke", action="store_true",
                      help="tiny sizes, seconds; for tests (recipes/demo/profile_smoke.yaml)")
    size.add_argument("--profile", default=None, metavar="NAME|FILE",
                      help="a profile name in recipes/demo/ (default, long, smoke) or a YAML file")
    parser.add_argument("--sequential", action="store_true",
                        help="train the two arms one after the other (default: as the profile says)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from wise_rl.testbed.demo import DemoError, run_demo
    from wise_rl.testbed.demo.report import summary_table

    profile = args.profile or ("long" if args.long else "smoke" if args.smoke else "default")
    try:
        report = run_demo(out=args.out, base=args.base, profile=profile, progress=not args.quiet,
                          parallel=False if args.sequential else None)
    except DemoError as exc:
        raise SystemExit(f"wise-rl demo: {exc}") from None
    print(summary_table(report))
    print(f"report: {args.out}/report.md  ({report['wall_s']:.0f} s)")
    return 0
