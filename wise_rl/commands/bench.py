"""``wise-rl bench NAME``: run a benchmark and record it in ``docs/benchmarks.md``.

- ``rewards``: the WISE reward stack vs the official-style implementation on a GRPO batch;
- ``generation``: WISE-S vs verbose generation on the same model and samples (tokens and latency ratios);
- ``grpo-step``: s/step of ``recipes/grpo.py``'s trainer vs a plain ``trl.GRPOTrainer`` (ratio);
- ``precision``: s/step of the SFT recipe in fp32 vs bf16 autocast on this machine (ratio, CPU model and flags).
"""

from __future__ import annotations

import argparse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--out", default=None, help="markdown file to update instead of docs/benchmarks.md")
    p.add_argument("--quiet", action="store_true", help="no progress bars (generation, grpo-step)")


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
    _common(p)

    g = sub.add_parser(
        "generation",
        help="WISE-S vs verbose generation on the same model and samples (think/completion tokens, latency)",
        description="Generate with the verbose and the wise-s prompt on the same model and samples through the "
        "eval path (greedy, stopped at </answer>) and report think tokens, completion tokens, latency and the "
        "verbose / wise-s ratios. Without --model, a tiny model SFT-trained on ShapeWorld to emit both formats is "
        "built (minutes on a CPU; cached in --work-dir).",
    )
    g.add_argument("--model", default=None, help="model folder (default: build the offline bench model)")
    g.add_argument("--dataset", default=None, help="eval source as for `wise-rl eval` (default: ShapeWorld test)")
    g.add_argument("--split", default=None, help="split of --dataset")
    g.add_argument("--n", type=int, default=32, help="samples (default 32)")
    g.add_argument("--batch-size", type=int, default=8, help="generation batch size (default 8)")
    g.add_argument("--max-new-tokens", type=int, default=256, help="generation cap (default 256)")
    g.add_argument("--work-dir", default=None,
                   help="where the offline bench model is built / reused (default runs/bench/generation-model)")
    g.add_argument("--train-steps", type=int, default=None, help="SFT steps of the offline bench model")
    g.add_argument("--train-scenes", type=int, default=None, help="ShapeWorld scenes of the offline bench model")
    g.add_argument("--train-init", default=None, metavar="DIR",
                   help="start the offline bench model from this model folder (e.g. wise_rl/assets/shapeworld-base) "
                   "instead of a random tiny model")
    g.add_argument("--train-lr", type=float, default=None, help="SFT learning rate of the offline bench model")
    g.add_argument("--prompt-style", choices=("official", "compact"), default=None,
                   help="wording of the verbose / wise-s prompts (training and generation; default official)")
    g.add_argument("--json", default=None, help="also write the full result (per-sample records) to this file")
    _common(g)

    s = sub.add_parser(
        "grpo-step",
        help="s/step of recipes/grpo.py's trainer vs a plain trl.GRPOTrainer on the same model, data, settings",
    )
    s.add_argument("--steps", type=int, default=12, help="timed steps per variant, warm-ups excluded (default 12)")
    s.add_argument("--rounds", type=int, default=4,
                   help="rounds; each builds fresh trainers and drops its first step (default 4)")
    s.add_argument("--config", default=None, help="recipe YAML (default recipes/tiny/grpo.yaml)")
    s.add_argument("--model", default=None, help="model folder (default: a random-weight tiny preset)")
    s.add_argument("--max-completion-length", type=int, default=None, help="override the config's value")
    s.add_argument("--work-dir", default=None, help="trainer output folders (default: a temporary folder)")
    s.add_argument("--no-registry-variant", action="store_true",
                   help="skip the plain trainer + registry rewards variant")
    s.add_argument("--json", default=None, help="also write the full result (every step time) to this file")
    _common(s)

    pr = sub.add_parser("precision", help="s/step of the SFT recipe in fp32 vs bf16 autocast on this machine")
    pr.add_argument("--steps", type=int, default=3, help="timed steps per round and precision (default 3)")
    pr.add_argument("--rounds", type=int, default=2, help="rounds, order flipped each round (default 2)")
    pr.add_argument("--config", default=None, help="SFT recipe YAML (default recipes/demo/sft_verbose.yaml)")
    pr.add_argument("--model", default=None, help="model folder (default the shipped ShapeWorld base)")
    pr.add_argument("--dataset", default=None, help="training data (default 64 ShapeWorld scenes built here)")
    _common(pr)


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def run(args: argparse.Namespace) -> int:
    import json
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from wise_rl.testbed.bench import BENCHES, GRPO_VARIANTS, format_result

    write = False if args.no_write else (args.out or True)
    if args.bench == "rewards":
        _positive(args, "repeats")
        result = BENCHES["rewards"](
            device=args.device, repeats=args.repeats, n_prompts=args.prompts, n_samples=args.samples,
            seed=args.seed, threads=args.threads, write=write,
        )
    elif args.bench == "generation":
        _positive(args, "n", "batch_size", "max_new_tokens", "train_steps", "train_scenes")
        options = {k: v for k, v in (("steps", args.train_steps), ("scenes", args.train_scenes),
                                     ("init", args.train_init), ("lr", args.train_lr),
                                     ("prompt_style", args.prompt_style)) if v is not None}
        result = BENCHES["generation"](
            model=args.model, dataset=args.dataset, split=args.split, n=args.n, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, work_dir=args.work_dir, threads=args.threads,
            model_options=options or None, write=write, prompt_style=args.prompt_style, progress=not args.quiet,
        )
    elif args.bench == "grpo-step":
        _positive(args, "steps", "rounds", "max_completion_length")
        variants = tuple(v for v in GRPO_VARIANTS if not (args.no_registry_variant and v == "plain-registry"))
        result = BENCHES["grpo-step"](
            steps=args.steps, rounds=args.rounds, config=args.config, model=args.model, work_dir=args.work_dir,
            variants=variants, threads=args.threads, max_completion_length=args.max_completion_length,
            write=write, progress=not args.quiet,
        )
    elif args.bench == "precision":
        _positive(args, "steps", "rounds")
        result = BENCHES["precision"](steps=args.steps, rounds=args.rounds, config=args.config, model=args.model,
                                      dataset=args.dataset, threads=args.threads, write=write)
    else:  # pragma: no cover - argparse rejects unknown names
        raise SystemExit(f"unknown benchmark {args.bench!r}; known: {', '.join(BENCHES)}")
    if getattr(args, "json", None):
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, default=str)
    print(format_result(result))
    return 0
