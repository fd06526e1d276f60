"""``wise-rl pretrain-base``: train the ShapeWorld base model (grounding only, no rationale) from random init, then
evaluate it on held-out scenes and write ``model_card.md`` + ``card.json`` next to the weights."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wise_rl.testbed.fixtures.tiny_model import PRESETS
    from wise_rl.testbed.pretrain.config import PretrainConfig

    d = PretrainConfig(out="")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the model, processor and card")
    budget = parser.add_argument_group("budget (at least one; both: whichever is reached first)")
    budget.add_argument("--minutes", type=float, default=None, help="training wall-time budget in minutes "
                        "(the cosine schedule anneals over it; curve evaluations do not count)")
    budget.add_argument("--max-steps", type=int, default=None, help="number of optimizer steps")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=d.preset, help=f"model size (default {d.preset})")
    parser.add_argument("--init", default=None, metavar="DIR",
                        help="continue from this model folder instead of a random-weight preset")
    parser.add_argument("--describe-share", type=float, default=d.describe_share, metavar="P",
                        help="share of training scenes that ask for a scene description (plain text, no query) "
                        "instead of a box, so the model keeps writing (default 0)")
    parser.add_argument("--name-share", type=float, default=d.name_share, metavar="P",
                        help="share of training scenes that ask to name the queried shape in words ('the red "
                        "pentagon at the bottom') instead of boxing it (default 0)")
    parser.add_argument("--named-box-share", type=float, default=d.named_box_share, metavar="P",
                        help="share of grounding rows whose answer block follows the target named in words ('the "
                        "red pentagon at the bottom <answer>…</answer>'), so the model grounds after text it wrote, "
                        "as after a rationale (default 0)")
    parser.add_argument("--described-box-share", type=float, default=d.described_box_share, metavar="P",
                        help="share of the named rows that lead with the scene description too, so the model grounds "
                        "after a long text, as after a verbose rationale (default 0)")
    parser.add_argument("--reasoned-box-share", type=float, default=d.reasoned_box_share, metavar="P",
                        help="share of the described rows that lead with the whole detailed rationale instead (the "
                        "query restated, the scene, the evidence, the target named last), so the model can reason in "
                        "words before it answers, as a real VLM can before any SFT (default 0)")
    parser.add_argument("--prompt-mix", default=None, metavar="NAME:W,…",
                        help="prompt templates that word the grounding questions, with weights, e.g. "
                        "'answer-only:0.4,wise:0.15,wise-s:0.15,verbose:0.15,wise-train:0.15'; the target stays the "
                        "answer block alone (default: answer-only)")
    parser.add_argument("--family-weights", default=None, metavar="FAMILY:W,…",
                        help="tilt the query families of the training stream, e.g. 'attribute:2,odd_one_out:2' (a "
                        "family left out weighs 1; held-out scenes stay untilted; default: all alike)")
    parser.add_argument("--stream-start", type=int, default=d.stream_start, metavar="I",
                        help="index of the first training scene in the stream (continuing a run: past its "
                        "samples_seen, so no scene repeats; default 0)")
    vision = parser.add_argument_group("vision stage (before grounding; wise_rl.testbed.pretrain.vision_stage)")
    vision.add_argument("--vision-steps", type=int, default=d.vision_steps, metavar="N",
                        help="steps of dense per-token colour/kind/box supervision of the vision tower before the "
                        "grounding stage (default 0: none)")
    vision.add_argument("--vision-batch-size", type=int, default=d.vision_batch_size,
                        help=f"default {d.vision_batch_size}")
    vision.add_argument("--vision-lr", type=float, default=d.vision_lr, help=f"default {d.vision_lr}")
    vision.add_argument("--vision-keep", type=float, default=d.vision_keep, metavar="W",
                        help="weight of keeping the --init tower's features (relative squared error) next to the "
                        "dense heads, so a base that already grounds keeps what its language model reads (default 0)")
    vision.add_argument("--vision-lr-scale", type=float, default=d.vision_lr_scale, metavar="X",
                        help="grounding stage: the vision tower trains at lr × X (0 freezes it; default 1)")
    vision.add_argument("--merger-lr-scale", type=float, default=None, metavar="X",
                        help="grounding stage: the merger (the projector into the language model) trains at lr × X, "
                        "so the language model can learn to read a frozen tower (default: as --vision-lr-scale)")
    parser.add_argument("--attention-weight", type=float, default=d.attention_weight, metavar="λ",
                        help="grounding stage: weight of attention supervision, which steers one head per layer to "
                        "the queried shape's cells (wise_rl.testbed.pretrain.attention_supervision; default 0: none)")
    parser.add_argument("--cell-word-weight", type=float, default=d.cell_word_weight, metavar="μ",
                        help="grounding stage: weight of the words at the vision tokens, which asks the language "
                        "model for the colour and kind word of each cell's shape after every layer "
                        "(wise_rl.testbed.shapeworld.cell_words; default 0: none)")
    parser.add_argument("--word-attention-weight", type=float, default=d.word_attention_weight, metavar="ν",
                        help="grounding stage: weight of word-region attention, which steers a head at every colour "
                        "or kind word of the text to the cells that show it, so ' purple' looks up the purple shapes "
                        "(wise_rl.testbed.pretrain.attention_supervision; default 0: none)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of weights, scenes and test split (default 0)")
    parser.add_argument("--image-size", type=int, default=d.image_size,
                        help=f"ShapeWorld image side, a multiple of 28 (default {d.image_size})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    parser.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio,
                        help=f"final lr / peak lr of the cosine (default {d.min_lr_ratio})")
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help=f"default {d.warmup_steps}")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    parser.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help=f"default {d.max_grad_norm}")
    parser.add_argument("--chunk", type=int, default=d.chunk, help=f"scenes rendered at a time (default {d.chunk})")
    parser.add_argument("--eval-n", type=int, default=None,
                        help=f"held-out test scenes for the final evaluation, 0 to skip (default {d.eval_n}; with "
                        "--score-perception: the card's)")
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, help=f"default {d.eval_batch_size}")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help=f"default {d.max_new_tokens}")
    parser.add_argument("--curve-every", type=float, default=None, metavar="MIN",
                        help="evaluate on --curve-n held-out scenes every MIN training minutes (learning curve)")
    parser.add_argument("--curve-n", type=int, default=d.curve_n, help=f"default {d.curve_n}")
    parser.add_argument("--logging-steps", type=int, default=d.logging_steps, help=f"default {d.logging_steps}")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on CPU: faster for this model size, "
                        "see wise_rl.testbed.pretrain.run)")
    parser.add_argument("--bf16", choices=("true", "false"), default=None,
                        help="mixed precision (default: fp32 on a CPU, bf16 on a GPU; see wise_rl.training.precision)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--score-perception", action="store_true",
                        help="no training: score what the model in --out sees (naming the queried shape on --eval-n "
                        "held-out scenes, default the card's; a linear probe of colour and kind on its vision "
                        "tokens) and add it to its card")
    parser.add_argument("--probe-n", type=int, default=d.probe_n, metavar="N",
                        help="held-out scenes of the vision probe written into the card (also with "
                        f"--score-perception; 0: no probe, keep the card's; default {d.probe_n})")


def run(args: argparse.Namespace) -> int:
    import json

    from wise_rl.testbed.pretrain.base_card import CARD_MD
    from wise_rl.testbed.pretrain.perception import score_perception
    from wise_rl.testbed.pretrain.run import PretrainConfig, pretrain

    if args.score_perception:
        try:
            scores = score_perception(args.out, eval_n=args.eval_n, batch_size=args.eval_batch_size,
                                      probe_n=args.probe_n)
        except FileNotFoundError as exc:
            raise SystemExit(f"wise-rl pretrain-base --score-perception: {exc}") from None
        scores["naming"] = {k: v for k, v in scores["naming"].items() if k != "examples"}
        print(json.dumps(scores, indent=2))
        return 0
    config = PretrainConfig(
        out=args.out, preset=args.preset, seed=args.seed, image_size=args.image_size, minutes=args.minutes,
        max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
        chunk=args.chunk, eval_n=PretrainConfig.eval_n if args.eval_n is None else args.eval_n,
        eval_batch_size=args.eval_batch_size,
        max_new_tokens=args.max_new_tokens, curve_every=args.curve_every, curve_n=args.curve_n,
        logging_steps=args.logging_steps, threads=args.threads, init=args.init, progress=not args.quiet,
        describe_share=args.describe_share, stream_start=args.stream_start, prompt_mix=args.prompt_mix,
        family_weights=args.family_weights,
        name_share=args.name_share, named_box_share=args.named_box_share,
        described_box_share=args.described_box_share, reasoned_box_share=args.reasoned_box_share,
        vision_steps=args.vision_steps, vision_batch_size=args.vision_batch_size,
        vision_lr=args.vision_lr, vision_keep=args.vision_keep, vision_lr_scale=args.vision_lr_scale,
        merger_lr_scale=args.merger_lr_scale, attention_weight=args.attention_weight,
        cell_word_weight=args.cell_word_weight, word_attention_weight=args.word_attention_weight, probe_n=args.probe_n,
        bf16=None if args.bf16 is None else args.bf16 == "true",
    )
    try:
        config.validate()
    except ValueError as exc:
        raise SystemExit(f"wise-rl pretrain-base: {exc}") from None
    card = pretrain(config)
    print(json.dumps({"out": args.out, "steps": card["steps"], "vision_probe": card["vision_probe"],
                      "metrics_by_family": card["metrics_by_family"], "samples_seen": card["samples_seen"],
                      "train_s": card["train_s"], "throughput": card["throughput"], "metrics": card["metrics"],
                      "baselines": card["baselines"]}, indent=2))
    print(f"card: {args.out}/{CARD_MD}")
    return 0
