"""``wise-rl infer``: answer one image + query, print the concise rationale and the answer, save an overlay.

    wise-rl infer --model DIR --image photo.jpg --query "the cup nearest the laptop" --out overlay.png \
        [--gt-bbox X1 Y1 X2 Y2 | --gt-mask mask.png]

The overlay is enlarged (nearest) so small images stay readable, the prediction is cyan (a colour no ShapeWorld
shape has), and a known ground truth is drawn in a panel beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wise_rl import formats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--image", required=True, help="image file")
    parser.add_argument("--query", required=True, help="what to find")
    parser.add_argument("--prompt", default=None, choices=sorted(formats.PROMPT_SPECS),
                        help="prompt template (default: the one the model's wise_rl.json records for infer, else "
                             "wise-s)")
    parser.add_argument("--mask-decoder", default="box", choices=("box", "sam2"))
    parser.add_argument("--sam2", default=None, help="SAM2 model folder for --mask-decoder sam2")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--model-size", type=int, default=None,
                        help="square of an absolute frame the model answers in (same as --frame absS)")
    parser.add_argument("--frame", default=None,
                        help="frame the model answers in: rel1000 or absS (e.g. abs840); default: the model's "
                             "wise_rl.json, else its family's native frame")
    parser.add_argument("--out", required=True, help="overlay PNG to write")
    parser.add_argument("--gt-bbox", type=float, nargs=4, default=None, metavar=("X1", "Y1", "X2", "Y2"),
                        help="ground-truth box in the image's pixels: drawn in a panel beside the prediction")
    parser.add_argument("--gt-mask", default=None, metavar="PNG",
                        help="ground-truth mask (non-zero pixels = target), the image's size: drawn beside it")
    parser.add_argument("--min-side", type=int, default=448,
                        help="enlarge the overlay (nearest, integer factor) until its shorter side is at least "
                             "this many px (default 448; 1 = the image's own size)")


def infer(model_dir, image_path, query: str, prompt: str = "wise-s", mask_decoder: str = "box", sam2=None,
          max_new_tokens: int = 1024, model_size: int | None = None, model=None, processor=None,
          frame=None) -> dict:
    """Generate for one image and decode the mask on the original image. ``frame`` (or ``model_size`` S, meaning
    ``absS``): the frame the model answers in, default :func:`wise_rl.models.info.resolve_frame`. Returns a dict
    with ``completion``, ``concise``, ``answer`` (model frame), ``frame`` (its name), ``answer_original``, ``failure``, ``mask`` (H×W or None), ``image``
    (original, RGB), ``completion_tokens`` and ``latency_s``."""
    from wise_rl import evaluate, frames
    from wise_rl.data.images import load_image
    from wise_rl.models import info, load_model, load_processor

    processor = processor or load_processor(model_dir)
    model = model or load_model(model_dir).eval()
    size = info.resolve_frame(model_dir, frame or model_size, evaluate.processor_model_size(processor))
    original = load_image(image_path)
    generator = evaluate.HFGenerator(model, processor, prompt, max_new_tokens)
    gen = generator([frames.image_to_model(original, size)], [query])[0]
    parsed = formats.parse_for_prompt(gen.completion, prompt)
    result = {"completion": gen.completion, "concise": parsed.concise if parsed.concise is not None
              else evaluate.think_text(gen.completion), "answer": parsed.answer, "answer_original": None,
              "failure": parsed.failure, "format_ok": parsed.format_ok, "mask": None, "image": original,
              "completion_tokens": gen.completion_tokens, "latency_s": gen.latency_s, "frame": str(size)}
    if parsed.answer is not None:
        answer = frames.answer_to_original(parsed.answer, original.size, size)
        result["answer_original"] = answer
        result["mask"] = evaluate.make_decoder(mask_decoder, sam2).decode(original, answer)
        result["failure"] = None
    return result


def run(args: argparse.Namespace) -> int:
    from wise_rl.evaluate.overlay import render_result
    from wise_rl.models import info as model_info
    from wise_rl.models.folder_check import check_model_folder

    if args.gt_mask and not Path(args.gt_mask).is_file():
        raise FileNotFoundError(f"--gt-mask {args.gt_mask}: no such file")
    if not Path(args.image).is_file():
        raise FileNotFoundError(f"--image {args.image}: no such file")
    check_model_folder(args.model, "--model")  # a corrupt folder is one line naming the file
    prompt = model_info.prompt_for_command(args.model, args.prompt, "infer")
    result = infer(args.model, args.image, args.query, prompt=prompt, mask_decoder=args.mask_decoder,
                   sam2=args.sam2, max_new_tokens=args.max_new_tokens, model_size=args.model_size,
                   frame=args.frame)
    print(f"concise: {result['concise']}")
    if result["answer"] is None:
        print(f"answer: none (the completion did not parse: {result['failure']})")
        print(f"completion: {result['completion']!r}")
    else:
        print(f"answer (model frame {result['frame']}): {json.dumps(result['answer'])}")
        print(f"answer (original frame): {json.dumps({k: [round(v, 1) for v in vs] for k, vs in result['answer_original'].items()})}")
    a = result["answer_original"]
    gt_mask = None
    if args.gt_mask:
        import numpy as np
        from PIL import Image

        gt_mask = (np.asarray(Image.open(args.gt_mask).convert("L")) > 0).astype(np.uint8)
    overlay = render_result(result["image"], mask=result["mask"], bbox=a["bbox"] if a else None,
                            points=[a["points_1"], a["points_2"]] if a else None, gt_mask=gt_mask,
                            gt_bbox=args.gt_bbox, min_side=args.min_side)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay.save(out)
    from wise_rl.threads import threads_record

    machine = threads_record()  # the setting the latency was measured under
    print(f"overlay: {out} ({result['completion_tokens']} tokens, {result['latency_s']:.3f} s with "
          f"{machine['threads']} thread(s), {machine['cpu_model']})")
    return 0
