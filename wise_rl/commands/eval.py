"""``wise-rl eval``: generate with a model on a dataset and score it (or ``--merge`` shard folders).

    wise-rl eval --model DIR --dataset SRC --prompt wise --out runs/eval-wise [--compare runs/eval-verbose]
    wise-rl eval --model DIR --dataset SRC --prompt wise --out runs/s0 --shard 0/2   # and 1/2 elsewhere
    wise-rl eval --merge runs/s0 runs/s1 --out runs/eval-wise
    wise-rl eval --model DIR --dataset mydata.jsonl --columns query=problem,bbox=box --out runs/eval-mine
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from wise_rl import formats
from wise_rl.commands import PROTOCOLS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model folder (a supported family's checkpoint or wise-rl tiny-model output)")
    parser.add_argument("--dataset", help="any source wise_rl.data.loaders.load_source accepts")
    parser.add_argument("--split", default=None, help="split of the source (default: 'test' if present)")
    parser.add_argument("--columns", default=None, metavar="NAME=COLUMN,...",
                        help="your own data: which of your columns is which, e.g. query=problem,bbox=box "
                             "(names: image, query, bbox, points, mask, polygons, id, detailed, concise; options "
                             "bbox_format=xyxy|xywh, units=pixels|norm1|norm1000; docs/data.md)")
    parser.add_argument("--prompt", default=None, choices=sorted(formats.PROMPT_SPECS),
                        help="prompt template; wise/wise-s/verbose stop generation at </answer> (default: the one "
                             "the model's wise_rl.json records for eval, else wise)")
    parser.add_argument("--mask-decoder", default="box", choices=("box", "sam2"),
                        help="how an answer becomes a mask (default: box)")
    parser.add_argument("--sam2", default=None, help="SAM2 model folder for --mask-decoder sam2")
    parser.add_argument("--out", required=True, help="output folder: run.json, samples.jsonl, metrics.json")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--limit", type=int, default=None, help="first N samples of the source only")
    parser.add_argument("--shard", default=None, help="i/n: evaluate the i-th of n contiguous shards")
    parser.add_argument("--protocol", default="lisa", choices=PROTOCOLS,
                        help="metric protocol of metrics.json (the other is reported beside it)")
    parser.add_argument("--strict-format", action="store_true",
                        help="count a completion that misses the prompt's layout as failed even if its answer "
                             "parses")
    parser.add_argument("--lisa-texts", default="first", choices=("first", "all"),
                        help="LISA folders: 'first' (default, LISA's evaluation: one sample per image, its first "
                             "text, id = image name) or 'all' (one sample per text, ids NAME#k)")
    parser.add_argument("--model-size", type=int, default=None,
                        help="square of an absolute frame the model answers in (same as --frame absS)")
    parser.add_argument("--frame", default=None,
                        help="frame the model answers in: rel1000 or absS (e.g. abs840); default: the model's "
                             "wise_rl.json, else its family's native frame")
    parser.add_argument("--compare", default=None, metavar="OTHER_OUTDIR",
                        help="print this run against another eval folder (ratios and deltas)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="OUTDIR",
                        help="merge these shard folders into --out instead of evaluating")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _precheck(args: argparse.Namespace, prompt: str) -> None:
    """Every mistake that can be seen from the arguments, before a model or dataset is loaded (UsageError)."""
    import json

    from wise_rl.data.columns import parse_columns
    from wise_rl.errors import UsageError
    from wise_rl.evaluate import RUN_FILE, parse_shard

    parse_columns(args.columns, "--columns")  # a ConfigError naming the entry, before anything loads
    try:
        parse_shard(args.shard)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.mask_decoder == "sam2" and not args.sam2:
        raise UsageError("--mask-decoder sam2 needs --sam2 DIR (a SAM2 model folder)")
    for flag, value in (("--model", args.model), ("--dataset", args.dataset)):
        looks_local = value.startswith((".", "/", "~")) or value.count("/") != 1
        if looks_local and not Path(value).expanduser().exists():
            if flag == "--model":  # the wording of wise_rl.models.load_model, which would say it later
                raise UsageError(f"model folder '{value}' does not exist")
            raise UsageError(f"{flag} {value}: no such file or folder")
    run_file = Path(args.out) / RUN_FILE
    if run_file.is_file():  # resuming: the folder must hold this same run
        old = json.loads(run_file.read_text(encoding="utf-8"))
        new = {"model": args.model, "dataset": args.dataset, "split": args.split, "prompt": prompt,
               "mask_decoder": args.mask_decoder, "sam2": args.sam2, "max_new_tokens": args.max_new_tokens,
               "limit": args.limit, "shard": args.shard, "strict_format": args.strict_format,
               "columns": args.columns}
        if old.get("model_weights") is not None:  # the model is identified by its weights (evaluate.run_eval)
            new.pop("model")
        for key, value in new.items():
            if key in old and old[key] != value:
                raise UsageError(f"--out {args.out} holds a run with {key}={old[key]!r}, but this run has "
                                 f"{key}={value!r}; use another --out folder (or delete the old one)")


def run(args: argparse.Namespace) -> int:
    from wise_rl import evaluate
    from wise_rl.models import info as model_info

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.compare and not (Path(args.compare) / "metrics.json").is_file():
        from wise_rl.errors import UsageError

        raise UsageError(f"--compare {args.compare}: no metrics.json there (give a finished eval output folder)")
    if args.merge:
        result = evaluate.merge_runs(args.merge, args.out, protocol=args.protocol)
        title = f"merged {len(args.merge)} folders → {args.out}"
    else:
        missing = [flag for flag, value in (("--model", args.model), ("--dataset", args.dataset)) if not value]
        if missing:
            raise SystemExit(f"wise-rl eval: {' and '.join(missing)} required (or use --merge)")
        from wise_rl.models.folder_check import check_model_folder

        prompt = model_info.prompt_for_command(args.model, args.prompt, "eval")
        _precheck(args, prompt)
        check_model_folder(args.model, "--model")  # a corrupt folder is one line naming the file, before loading
        config = evaluate.EvalConfig(
            model=args.model, dataset=args.dataset, split=args.split, prompt=prompt,
            mask_decoder=args.mask_decoder, sam2=args.sam2, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, limit=args.limit, shard=args.shard, protocol=args.protocol,
            strict_format=args.strict_format, model_size=args.model_size, lisa_texts=args.lisa_texts,
            columns=args.columns, frame=args.frame,
        )
        result = evaluate.run_eval(config, args.out, progress=not args.quiet)
        title = f"{prompt} on {args.dataset} → {args.out}"
    print(evaluate.format_table(result, title=title))
    if args.compare:
        other = evaluate.load_metrics(args.compare)
        print()
        print(evaluate.compare_table(result, other, this_name=Path(args.out).name,
                                     other_name=Path(args.compare).name))
    return 0
