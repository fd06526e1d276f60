"""``wise-rl score``: score existing completions (``{"id": …, "completion": …}`` per line), no model needed.

    wise-rl score --dataset Ricky06662/ReasonSeg_val --predictions preds.jsonl --out metrics.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from wise_rl import formats
from wise_rl.commands import PROTOCOLS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="any source wise_rl.data.loaders.load_source accepts")
    parser.add_argument("--split", default=None, help="split of the source (default: 'test' if present)")
    parser.add_argument("--columns", default=None, metavar="NAME=COLUMN,...",
                        help="your own data: which of your columns is which, e.g. query=problem,bbox=box "
                             "(names: image, query, bbox, points, mask, polygons, id, detailed, concise; options "
                             "bbox_format=xyxy|xywh, units=pixels|norm1|norm1000; docs/data.md)")
    parser.add_argument("--predictions", required=True, help="JSONL file: one {\"id\", \"completion\"} per line")
    parser.add_argument("--out", required=True, help="metrics.json to write (per-sample records go beside it)")
    parser.add_argument("--frame", default=None,
                        help="frame of the predicted coordinates: rel1000 (relative [0, 1000]: Qwen2-VL, Qwen3-VL, "
                             "Qwen3.5), absS or a size S (pixels of an S×S image: Qwen2.5-VL at 840), 'original' "
                             "(already original pixels) or 'model' (each row's own frame). Default: the frame of "
                             "the --tokenizer model (its wise_rl.json, else its family's), else 'model'")
    parser.add_argument("--lisa-texts", default="first", choices=("first", "all"),
                        help="LISA folders: 'first' (default, LISA's evaluation: one sample per image, its first "
                             "text, id = image name) or 'all' (one sample per text, ids NAME#k)")
    parser.add_argument("--mask-decoder", default="box", choices=("box", "sam2"))
    parser.add_argument("--sam2", default=None, help="SAM2 model folder for --mask-decoder sam2")
    parser.add_argument("--protocol", default="lisa", choices=PROTOCOLS)
    parser.add_argument("--prompt", default="wise", choices=sorted(formats.PROMPT_SPECS),
                        help="layout the completions follow (default: wise = <think>…</think><answer>…</answer>)")
    parser.add_argument("--strict-format", action="store_true",
                        help="count a completion that misses the prompt's layout as failed even if its answer parses")
    parser.add_argument("--tokenizer", default=None,
                        help="model folder whose tokenizer counts think tokens and whose frame the predictions "
                             "are in (optional)")
    parser.add_argument("--limit", type=int, default=None, help="first N samples of the source only")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _model_frame(model_dir) -> str:
    """The frame a model answers in when it says so (``wise_rl.json``) or its family is relative; else 'model'
    (an absolute family answers in the rows' own square)."""
    from wise_rl.models import info
    from wise_rl.models.families import try_detect_family

    record = info.read(model_dir) or {}
    family = try_detect_family(model_dir)
    if record.get("frame") or (family is not None and family.native_frame != "abs"):
        return str(info.resolve_frame(model_dir))
    return "model"


def run(args: argparse.Namespace) -> int:
    from wise_rl import evaluate
    from wise_rl.data.columns import parse_columns
    from wise_rl.data.loaders import load_source

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    frame = evaluate.parse_frame(args.frame if args.frame or not args.tokenizer else _model_frame(args.tokenizer))
    dataset = load_source(args.dataset, split=args.split, with_original_mask=True, limit=args.limit,
                          lisa_texts=args.lisa_texts, columns=parse_columns(args.columns, "--columns"))
    tokenizer = None
    if args.tokenizer:
        from wise_rl.models import load_processor
        from wise_rl.models.folder_check import check_model_folder

        check_model_folder(args.tokenizer, "--tokenizer", weights=False)
        tokenizer = load_processor(args.tokenizer).tokenizer
    result, records = evaluate.score_predictions(
        dataset, args.predictions, prompt=args.prompt, mask_decoder=args.mask_decoder, sam2=args.sam2,
        frame=frame, protocol=args.protocol, tokenizer=tokenizer, strict_format=args.strict_format,
        progress=not args.quiet, dataset_name=str(args.dataset),
    )
    result["settings"]["lisa_texts"] = args.lisa_texts
    result["settings"]["columns"] = args.columns
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=evaluate._json_default) + "\n", encoding="utf-8")
    samples = out.with_name(out.stem + ".samples.jsonl")
    with open(samples, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(evaluate.dumps(rec) + "\n")
    print(evaluate.format_table(result, title=f"{args.predictions} on {args.dataset} → {out}"))
    if result["unknown_ids"]:
        print(f"prediction ids not in the dataset ({len(result['unknown_ids'])}): {result['unknown_ids'][:10]}")
    if result["missing_ids"]:
        print(f"dataset ids without a prediction ({len(result['missing_ids'])}): {result['missing_ids'][:10]}")
    return 0
