"""Pre-training the ShapeWorld base model (``wise-rl pretrain-base``): grounding (query → ``<answer>{json}</answer>``,
no rationale), from random init or continuing a model (``init``), optionally next to scene descriptions, target
naming and several prompt wordings (rows: :mod:`wise_rl.testbed.pretrain.rows`), after an optional vision stage
(:mod:`wise_rl.testbed.pretrain.vision_stage`), with optional terms on where it looks and what it says at the vision tokens
(:mod:`wise_rl.testbed.pretrain.attention_supervision`, :mod:`wise_rl.testbed.shapeworld.cell_words`). WISE starts from an
instruction-tuned VLM that already grounds; none can be downloaded here, so the demo starts from this base. Why each
option exists, with measurements: ``docs/testbed.md``.

Training path: ``transformers.Trainer`` fed by TRL's ``DataCollatorForVisionLanguageModeling`` (prompt and
completion tokenised separately, then concatenated, so the boundary is the one greedy generation sees; loss on
completion tokens only); :func:`make_trainer` says why not ``trl.SFTTrainer``. Throughput on the card::

    data_samples_per_s  = samples / data_prep_s                       (rendering + processor + collate)
    train_samples_per_s = samples / (train_wall_s − data_prep_s)      (forward + backward + AdamW step)
    samples_per_s       = samples / train_wall_s                      (end to end; also per CPU-second: *_per_cpu_s)

Learning rate (one ``LambdaLR`` over ``torch.optim.AdamW``), ``r = min_lr_ratio``::

    lr(step) = lr · (step + 1) / warmup_steps                          while step < warmup_steps
    lr(step) = lr · (r + (1 − r) · ½ · (1 + cos(π · p)))                 afterwards
    p        = max(step / max_steps, training_seconds / (60 · minutes))   (whichever budget is set)

so ``--minutes`` anneals over wall time and stops when spent; curve evaluations (``--curve-every`` minutes on
``--curve-n`` scenes) are not counted as training time. Held-out evaluation on ``eval_n`` scenes of the ``test``
split (:mod:`wise_rl.testbed.pretrain.perception`): ``box_acc50`` / ``box_mean_iou`` (box IoU, as the baselines), the eval
path's ``gIoU`` / ``cIoU`` / ``acc50`` (mask IoU of the box-decoded answer, LISA protocol), ``format_valid``, the
``random_shape`` / ``centre_box`` baselines and, with ``name_share``, ``naming``. Output: safetensors + processor
files, ``card.json``, ``model_card.md`` (:mod:`wise_rl.testbed.pretrain.base_card`). A bad config raises ``ConfigError``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wise_rl.metrics import box_scores
from wise_rl.testbed.pretrain.base_card import CARD_JSON, CARD_MD, EVAL_DIR, model_card_markdown
from wise_rl.testbed.pretrain.config import PretrainConfig
from wise_rl.testbed.pretrain.perception import (
    family_box_scores,
    name_eval,
    naming_rows,
    quick_eval,
    vision_probe,
)
from wise_rl.testbed.pretrain.rows import (
    DESCRIBE_PROMPT,
    NAME_PROMPT,
    PROMPT,
    DataTimer,
    TimedCollator,
    TrainClock,
    parse_family_weights,
    parse_prompt_mix,
    stream_rows,
)
from wise_rl.training.precision import machine_info, resolve_bf16

logger = logging.getLogger(__name__)

# Trainer log entries kept in the card's loss_history (the supervision terms: attention_supervision, cell_words).
_LOGGED = ("loss", "learning_rate", "mean_token_accuracy", "attn_loss", "word_loss", "word_attn_loss")

# Files of build_tiny_model's folder that belong to the processor (copied as built, so loaders read them as-is).
_MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json"}


def lr_lambda(config: PretrainConfig, clock: TrainClock):
    """The multiplier of the base lr at ``step`` (see the module docstring for the formula)."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = 0.0
        if config.max_steps:
            progress = max(progress, step / config.max_steps)
        if config.minutes:
            progress = max(progress, clock.seconds() / (60.0 * config.minutes))
        progress = min(1.0, progress)
        r = config.min_lr_ratio
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_trainer(model, processor, train_dataset, config: PretrainConfig, output_dir, timer: DataTimer | None = None,
                 clock: TrainClock | None = None, callbacks=None):
    """The ``transformers.Trainer`` of pre-training, fed by TRL's VLM collator on prompt–completion rows (the
    collator ``trl.SFTTrainer`` uses: prompt and completion tokenised separately, completion-only labels), with
    the model's own token-mean cross-entropy, AdamW (no weight decay on biases, norms and embeddings) and the warmup
    + cosine :func:`lr_lambda`; no checkpoints, no activation checkpointing.

    Why not ``SFTTrainer`` itself: TRL 1.16 always patches a fused, chunked LM head that also computes entropy and
    top-1 for every position, about half of each step on a CPU for the same loss (``docs/testbed.md``).
    ``train_dataset``: a ``datasets`` Dataset or
    IterableDataset of :func:`pretrain_row` rows."""
    import torch
    from transformers import Trainer, TrainingArguments
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    timer = timer if timer is not None else DataTimer()
    clock = clock if clock is not None else TrainClock()
    collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    trainer_class = Trainer
    if config.attention_weight or config.cell_words:
        from wise_rl.testbed.pretrain.attention_supervision import (
            CellsCollator,
            supervised_trainer_class,
            use_eager_attention,
        )
        from wise_rl.testbed.pretrain.vision_stage import cell_px

        if config.attention_weight or config.word_attention_weight:
            use_eager_attention(model)
        grid = config.image_size // cell_px(processor)
        collator = CellsCollator(collator, grid * grid, words=config.cell_words)
        trainer_class = supervised_trainer_class(config.attention_weight, word_weight=config.cell_word_weight,
                                                 word_attention_weight=config.word_attention_weight)
    collator = TimedCollator(collator, timer)
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.max_steps or 10**9,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,  # the collator needs image / prompt / completion
        dataloader_num_workers=0,
        # Accelerate's batch dispatching (its default for iterable datasets) slices every tensor to the batch
        # size along dim 0, which cuts Qwen2.5-VL's flattened pixel_values (SFTTrainer turns it off too).
        accelerator_config={"dispatch_batches": False},
        seed=config.seed,
        bf16=resolve_bf16(config.bf16)[0],
        use_cpu=not torch.cuda.is_available(),
        # Under a time budget max_steps is a placeholder (10**9), so the Trainer's step bar would be meaningless:
        # the callback shows a bar over the minutes instead.
        disable_tqdm=not config.progress or config.max_steps is None,
    )
    groups = []
    merger_scale = config.vision_lr_scale if config.merger_lr_scale is None else config.merger_lr_scale

    def part(name: str) -> str:
        name = f".{name}"
        return "language" if ".visual." not in name else ("merger" if ".visual.merger." in name else "tower")

    for which, lr in (("language", config.lr), ("tower", config.lr * config.vision_lr_scale),
                      ("merger", config.lr * merger_scale)):
        named = [(n, p) for n, p in model.named_parameters() if part(n) == which]
        if which != "language" and lr == 0:  # a frozen tower: no gradients, no optimizer state
            for _, p in named:
                p.requires_grad_(False)
            continue
        decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
        groups += [{"params": decay, "weight_decay": config.weight_decay, "lr": lr},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, clock))
    trainer = trainer_class(model=model, args=args, train_dataset=train_dataset, processing_class=processor,
                      data_collator=collator, optimizers=(optimizer, scheduler), callbacks=callbacks)
    if config.max_steps is None:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the minutes bar shows the loss; no line per logging step
    return trainer


PARTIAL_JSON = "partial.json"  # written next to the weights saved at each curve point; removed by the final save


def _trainer_callback(config: PretrainConfig, clock: TrainClock, timer: DataTimer, processor, curve_rows,
                      init: Path | None = None):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class PretrainCallback(TrainerCallback):
        """Records the loss curve, runs curve evaluations, saves the weights at each of them (an interrupted run
        keeps a loadable model in ``out`` with ``partial.json``), shows a bar over the time budget and stops when
        it is spent."""

        def __init__(self):
            self.history: list[dict[str, Any]] = []
            self.curve: list[dict[str, Any]] = []
            self._next_curve = config.curve_every
            self.last_step_samples = 0
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if config.progress and config.max_steps is None:
                self.bar = tqdm(total=round(60 * config.minutes), unit="s", desc="pretrain-base (time budget)")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.history.append({"step": state.global_step, "minutes": round(clock.seconds() / 60, 3),
                                     "cpu_minutes": round(clock.cpu_seconds() / 60, 3),
                                     "samples": state.global_step * config.batch_size,
                                     **{k: logs[k] for k in _LOGGED if k in logs}})
                if self.bar is not None:
                    self.bar.set_postfix(step=state.global_step, loss=f"{logs['loss']:.3f}", refresh=False)

        def _save_partial(self, model, point):
            out = Path(config.out)
            _save_model(model, init, out)
            (out / PARTIAL_JSON).write_text(json.dumps({"note": "interrupted or still running: weights of the last "
                                                        "curve point, no card yet", "config": asdict(config),
                                                        **point}, indent=2), encoding="utf-8")

        def on_step_end(self, args, state, control, model=None, **kwargs):
            minutes = clock.seconds() / 60
            if self._next_curve is not None and curve_rows and minutes >= self._next_curve:
                t0, c0 = time.perf_counter(), time.process_time()
                scores = quick_eval(model, processor, curve_rows, config.eval_batch_size, config.max_new_tokens)
                clock.paused += time.perf_counter() - t0
                clock.cpu_paused += time.process_time() - c0
                point = {"step": state.global_step, "minutes": round(minutes, 3),
                         "cpu_minutes": round(clock.cpu_seconds() / 60, 3),
                         "samples": state.global_step * config.batch_size, **scores}
                self.curve.append(point)
                logger.info("curve: %s", point)
                if config.progress:
                    print(f"[pretrain] {json.dumps(point)}", file=sys.stderr, flush=True)
                self._save_partial(model, point)
                self._next_curve += config.curve_every
            if self.bar is not None:
                self.bar.update(max(0, min(self.bar.total, round(clock.seconds())) - self.bar.n))
            if config.minutes is not None and minutes >= config.minutes:
                control.should_training_stop = True
            return control

    return PretrainCallback()


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------
def _copy_processor_files(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        # An --init folder's own run files stay behind: a continued run's folder must not carry a card that is
        # not its own (until the end, or for good if interrupted).
        if f.is_file() and f.name not in _MODEL_FILES | {CARD_JSON, CARD_MD, PARTIAL_JSON}:
            shutil.copy2(f, dst / f.name)


def _save_model(model, init: Path | None, out: Path) -> None:
    """Weights (safetensors) + the init folder's processor files: a folder every loader reads, with its
    ``wise_rl.json`` saying how to prompt it (``answer-only``: the base answers with the answer block alone)."""
    from wise_rl.models import info as model_info

    model.save_pretrained(out, safe_serialization=True)
    if init is not None:
        _copy_processor_files(init, out)
    model_info.write(out, model_info.training_record([PROMPT], "pretrain-base"))


def run_vision_stage(model, processor, config: PretrainConfig, output_dir) -> dict[str, Any]:
    """The vision stage (:mod:`wise_rl.testbed.pretrain.vision_stage`) on ``model`` in place; returns its record for the card:
    steps, samples, wall time, loss curve and the heads' held-out accuracy per shape."""
    from wise_rl.testbed.pretrain.vision_stage import VisionStageConfig, head_accuracy, train_vision

    vcfg = VisionStageConfig(steps=config.vision_steps, batch_size=config.vision_batch_size, lr=config.vision_lr,
                             keep_weight=config.vision_keep, seed=config.seed, image_size=config.image_size, progress=config.progress)
    result = train_vision(model, processor, vcfg, output_dir, bf16=resolve_bf16(config.bf16)[0])
    heads = result.pop("heads")
    return {"stage": "vision", **result,
            "head_accuracy": head_accuracy(heads, processor, config.seed, n=200, image_size=config.image_size)}


def _set_up(config: PretrainConfig) -> Path:
    """Checks the config, sets torch's threads, the seed and logs the precision; returns the output folder."""
    import torch
    import transformers

    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    elif not torch.cuda.is_available():
        # One thread: this model's matrices are too small for intra-op parallelism to pay, and under other load
        # OpenMP's waiting threads slow a step down several times (docs/testbed.md, "Base model").
        torch.set_num_threads(1)
    logger.warning("precision: %s", resolve_bf16(config.bf16)[1])
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    transformers.set_seed(config.seed)
    return out


def _train_grounding(model, processor, config: PretrainConfig, tmp: Path, timer: DataTimer, clock: TrainClock,
                     callback) -> tuple[Any, dict[str, Any]]:
    """The grounding stage on the stream of fresh scenes; returns the trained model and the stage's record."""
    from datasets import IterableDataset

    from wise_rl.testbed.pretrain.vision_stage import cell_px

    family_weights = parse_family_weights(config.family_weights)
    gen_kwargs = {"seed": config.seed, "image_size": config.image_size, "chunk": config.chunk, "timer": timer,
                  "describe_share": config.describe_share, "start": config.stream_start,
                  "prompt_mix": parse_prompt_mix(config.prompt_mix), "family_weights": family_weights,
                  "name_share": config.name_share, "named_box_share": config.named_box_share,
                  "described_box_share": config.described_box_share, "reasoned_box_share": config.reasoned_box_share,
                  "cell": cell_px(processor) if config.attention_weight or config.cell_words else None,
                  "cell_words": config.cell_words}
    train_ds = IterableDataset.from_generator(stream_rows, gen_kwargs=gen_kwargs)
    trainer = make_trainer(model, processor, train_ds, config, output_dir=tmp / "trainer", timer=timer, clock=clock,
                           callbacks=[callback])
    # Start the clocks after construction (nothing before the first step is training).
    timer.__init__()
    clock.__init__()
    trainer.train()
    steps = trainer.state.global_step
    record = {"stage": "grounding", "steps": steps, "samples": steps * config.batch_size,
              "train_s": round(clock.seconds(), 1), "vision_lr_scale": config.vision_lr_scale,
              "merger_lr_scale": config.merger_lr_scale, "attention_weight": config.attention_weight,
              "cell_word_weight": config.cell_word_weight, "word_attention_weight": config.word_attention_weight,
              "family_weights": family_weights, "named_box_share": config.named_box_share,
              "described_box_share": config.described_box_share, "reasoned_box_share": config.reasoned_box_share}
    return trainer.model, record


def _evaluate(config: PretrainConfig, out: Path, test) -> dict[str, Any]:
    """Held-out evaluation through the project's eval path, on the saved folder (as every user will load it): the
    answer-only prompt, the other trained wordings, naming, the baselines and the vision probe; ``eval_s`` in s."""
    import torch

    from wise_rl.evaluate import EvalConfig, HFGenerator, read_samples, run_eval
    from wise_rl.models import load_model, load_processor
    from wise_rl.testbed.shapeworld import centre_box_baseline, random_shape_baseline

    result: dict[str, Any] = {"eval_metrics": {}, "box": {}, "baselines": {}, "examples": [], "by_prompt": {},
                              "naming": None, "by_family": {}, "probe": None, "eval_s": 0.0}
    t0 = time.perf_counter()
    if config.eval_n:
        eval_ds = test.select(range(config.eval_n))
        eval_proc, eval_model = load_processor(out), load_model(out, dtype=torch.float32).eval()
        eval_dir = out / EVAL_DIR
        if eval_dir.exists():
            shutil.rmtree(eval_dir)
        ecfg = EvalConfig(model=str(out), dataset=f"shapeworld:test(seed={config.seed},n={config.eval_n})",
                          split="test", prompt=PROMPT, batch_size=config.eval_batch_size,
                          max_new_tokens=config.max_new_tokens, model_size=config.image_size)
        gen = HFGenerator(eval_model, eval_proc, PROMPT, config.max_new_tokens)
        result["eval_metrics"] = run_eval(ecfg, eval_dir, generator=gen, tokenizer=eval_proc.tokenizer,
                                          dataset=eval_ds, progress=config.progress)
        records = {r["id"]: r for r in read_samples(eval_dir / "samples.jsonl")}
        ids = [str(i) for i in eval_ds["id"]]
        answers = [records[i].get("answer") for i in ids]
        eval_rows = [eval_ds[k] for k in range(len(eval_ds))]
        result["box"] = box_scores(answers, list(eval_ds["gt_bbox"]))
        result["by_family"] = family_box_scores(answers, eval_rows, seed=config.seed)
        # The other wordings the run trained on: the same scenes, the answer block scored the same way.
        result["by_prompt"] = {name: quick_eval(eval_model, eval_proc, eval_rows, config.eval_batch_size,
                                                config.max_new_tokens, prompt=name)
                               for name in parse_prompt_mix(config.prompt_mix) if name != PROMPT}
        if config.name_share:
            result["naming"] = name_eval(eval_model, eval_proc,
                                         naming_rows(config.seed, config.eval_n, config.image_size),
                                         config.eval_batch_size)
        result["baselines"] = {"random_shape": random_shape_baseline(eval_ds, seed=config.seed),
                               "centre_box": centre_box_baseline(eval_ds)}
        result["examples"] = [{"query": eval_ds[k]["query"], "gt_bbox": [round(v, 1) for v in eval_ds[k]["gt_bbox"]],
                               "completion": records[ids[k]]["completion"]} for k in range(min(3, len(ids)))]
    if config.probe_n:
        probe_model = load_model(out, dtype=torch.float32).eval()
        result["probe"] = vision_probe(probe_model, load_processor(out),
                                       naming_rows(config.seed, config.probe_n, config.image_size))
    result["eval_s"] = time.perf_counter() - t0
    return result


def _lineage(config: PretrainConfig, stages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The commands that made the ``--init`` model, and every stage that made this one, each with the command that
    ran it and its machine (a continued run is re-created by its init's commands first, then its own)."""
    init_card_path = Path(config.init) / CARD_JSON if config.init else None
    lineage, earlier_stages = [], []
    if init_card_path is not None and init_card_path.is_file():
        init_card = json.loads(init_card_path.read_text(encoding="utf-8"))
        lineage = [*init_card.get("lineage", []), init_card["command"]]
        earlier_stages = [{"command": init_card["command"], "machine": init_card.get("machine"), **st}
                          for st in init_card.get("stages", [])]
    return lineage, [*earlier_stages, *({"command": config.command(), "machine": machine_info(), **st}
                                        for st in stages)]


def _throughput(samples: int, timer: DataTimer, train_s: float, train_cpu_s: float) -> dict[str, Any]:
    """The card's throughput (formulas: the module docstring); ``None`` where a denominator is 0."""
    data_s, data_cpu_s = timer.seconds, timer.cpu_seconds
    return {
        "samples_per_s": samples / train_s if train_s else None,
        "train_samples_per_s": samples / (train_s - data_s) if train_s > data_s else None,
        "data_samples_per_s": timer.collated / data_s if data_s else None,
        "render_samples_per_s": timer.rendered / timer.render_seconds if timer.render_seconds else None,
        "data_share": data_s / train_s if train_s else None,
        "train_cpu_s": round(train_cpu_s, 1),
        "data_cpu_s": round(data_cpu_s, 1),
        "train_samples_per_cpu_s": samples / (train_cpu_s - data_cpu_s) if train_cpu_s > data_cpu_s else None,
        "data_samples_per_cpu_s": timer.collated / data_cpu_s if data_cpu_s else None,
    }


def _card(config: PretrainConfig, run: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    """``card.json``: the config, the command lines, the machine, times, throughput and the held-out results.
    ``run``: ``n_params``, ``stages``, ``steps``, ``train_s``, ``throughput``, ``history``, ``curve``, ``wall_s``."""
    import transformers
    import trl

    lineage, stages = _lineage(config, run["stages"])
    losses = [h["loss"] for h in run["history"]]
    m, box = ev["eval_metrics"], ev["box"]
    return {
        "command": config.command(), "lineage": lineage,
        "config": {k: v for k, v in asdict(config).items() if k != "progress"},
        "seed": config.seed, "preset": config.preset if not config.init else None, "init": config.init,
        "parameters": run["n_params"], "prompt": PROMPT,
        "target": "<answer>{json}</answer> (formats.build_target mode 'answer')",
        "describe_share": config.describe_share, "prompt_mix": parse_prompt_mix(config.prompt_mix),
        "family_weights": parse_family_weights(config.family_weights),
        "describe_prompt": DESCRIBE_PROMPT if config.describe_share else None, "name_share": config.name_share,
        "named_box_share": config.named_box_share, "described_box_share": config.described_box_share,
        "reasoned_box_share": config.reasoned_box_share,
        "name_prompt": NAME_PROMPT if config.name_share else None, "machine": machine_info(),
        "versions": {"transformers": transformers.__version__, "trl": trl.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "wall_s": round(run["wall_s"], 1),
        "train_s": round(run["train_s"], 1), "eval_s": round(ev["eval_s"], 1), "steps": run["steps"],
        "samples_seen": run["steps"] * config.batch_size, "throughput": run["throughput"],
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "loss_history": run["history"], "curve": run["curve"],
        "metrics": {"n": box.get("n", 0), "box_acc50": box.get("box_acc50"), "box_mean_iou": box.get("box_mean_iou"),
                    "gIoU": m.get("gIoU"), "cIoU": m.get("cIoU"), "acc50": m.get("acc50"),
                    "format_valid": m.get("format_valid"), "completion_tokens_mean": m.get("completion_tokens_mean"),
                    "latency_s_mean": m.get("latency_mean_s"), "failures": m.get("failures")},
        "metrics_by_prompt": ev["by_prompt"], "metrics_by_family": ev["by_family"], "stages": stages,
        "vision_probe": ev["probe"], "naming": ev["naming"], "baselines": ev["baselines"],
        "examples": ev["examples"],
    }


def _holding_out(func):
    """Run ``func(config)`` holding ``config.out`` (:func:`wise_rl.outdir.hold_folder`): one writer per folder."""
    import functools

    @functools.wraps(func)
    def wrapper(config, *args, **kwargs):
        from wise_rl.outdir import hold_folder

        with hold_folder(config.out, "wise-rl pretrain-base"):
            return func(config, *args, **kwargs)

    return wrapper


@_holding_out
def pretrain(config: PretrainConfig) -> dict[str, Any]:
    """Train (vision stage, then grounding), save (safetensors + processor), evaluate on held-out scenes and write
    ``model_card.md`` + ``card.json`` into ``config.out``; returns the card. A bad config raises ``ValueError``."""
    import torch

    from wise_rl.models import count_parameters, load_model, load_processor
    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model
    from wise_rl.testbed.shapeworld import generate_dataset

    out = _set_up(config)
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wise-rl-pretrain-") as tmp:
        init = Path(config.init) if config.init else build_tiny_model(
            Path(tmp) / "init", preset=config.preset, seed=config.seed, image_size=config.image_size)
        processor = load_processor(init)
        model = load_model(init, dtype=torch.float32)
        n_params = count_parameters(model)
        # Held-out rows: the test split of the same seed (disjoint from the training stream).
        n_held = max(config.eval_n, config.curve_n if config.curve_every else 0)
        test = generate_dataset(0, n_held, seed=config.seed, image_size=config.image_size, progress=False)["test"]
        curve_rows = [test[i] for i in range(min(config.curve_n, len(test)))] if config.curve_every else []
        stages: list[dict[str, Any]] = []
        if config.vision_steps:
            stages.append(run_vision_stage(model, processor, config, Path(tmp) / "vision"))
        timer, clock = DataTimer(), TrainClock()
        callback = _trainer_callback(config, clock, timer, processor, curve_rows, init=init)
        if config.grounding:
            model, record = _train_grounding(model, processor, config, Path(tmp), timer, clock, callback)
            stages.append(record)
        steps = stages[-1]["steps"] if config.grounding else 0
        train_s, train_cpu_s = clock.seconds(), clock.cpu_seconds()
        for p in model.parameters():  # a frozen tower is saved and reloaded like every other weight
            p.requires_grad_(True)
        _save_model(model, init, out)
        (out / PARTIAL_JSON).unlink(missing_ok=True)
    ev = _evaluate(config, out, test)
    run = {"n_params": n_params, "stages": stages, "steps": steps, "train_s": train_s,
           "throughput": _throughput(steps * config.batch_size, timer, train_s, train_cpu_s),
           "history": callback.history, "curve": callback.curve, "wall_s": time.perf_counter() - wall0}
    card = _card(config, run, ev)
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / CARD_MD).write_text(model_card_markdown(card), encoding="utf-8")
    return card
