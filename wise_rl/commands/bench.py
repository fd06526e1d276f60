"""``wise-rl bench NAME``: run a benchmark (``rewards`` for now) and record it in ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    p = sub.add_parser(
        "rewards",
        help="time the WISE reward stack against the official-style implementation on a GRPO batch",
    )
    p.add_argument("--device", default=None, help="embedding-model device (default: cuda if available, else cpu)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported (default 5)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per batch (default 8)")
    p.add_argument("--samples", type=int, default=8, help="samples per prompt (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--out", default=None, help="markdown file to update instead of docs/benchmarks.md")


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from wise_rl.bench import BENCHES, format_result

    if args.bench == "rewards":
        if args.repeats < 1:
            raise SystemExit("--repeats must be at least 1")
        write = False if args.no_write else (args.out or True)
        result = BENCHES["rewards"](
            device=args.device, repeats=args.repeats, n_prompts=args.prompts, n_samples=args.samples,
            seed=args.seed, threads=args.threads, write=write,
        )
    else:  # pragma: no cover - argparse rejects unknown names
        raise SystemExit(f"unknown benchmark {args.bench!r}; known: {', '.join(BENCHES)}")
    print(format_result(result))
    return 0
