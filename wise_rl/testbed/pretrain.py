"""Pre-training the ShapeWorld base model: grounding (query → ``<answer>{json}</answer>``, no rationale), from random
init or continuing a model (``init``), optionally next to scene descriptions and under several prompt wordings.

WISE starts from an instruction-tuned VLM that already grounds objects; none can be downloaded here, so the demo
starts from a small base model that this module trains (``wise-rl pretrain-base``).

Training path (no custom loop): ``transformers.Trainer`` fed by TRL's VLM collator (see :func:`make_trainer` for
why not ``trl.SFTTrainer`` itself) on prompt–completion rows, exactly the rows
:func:`wise_rl.training.sft_rows` builds with ``prompt_template="answer-only"`` and ``target_mode="answer"``::

    prompt     = [{"role": "user", "content": formats.render_prompt("answer-only", query)}]
    completion = [{"role": "assistant", "content": formats.build_target("", answer, "", mode="answer")}]

TRL's ``DataCollatorForVisionLanguageModeling`` applies the chat template and tokenises prompt (with the image) and
completion SEPARATELY, then concatenates them, so the token boundary at the start of the completion is the one
greedy generation sees after ``apply_chat_template(add_generation_prompt=True)``. The loss is on completion tokens
only (``<answer>…</answer><|im_end|>\\n``).

What else the base learns, and why (measured 2026-11-27, ``small`` preset, 2-core CPU). A base trained on the
``answer-only`` prompt alone (1) gives every other token almost no probability, so the demo's SFT starts at a loss
of 10–11 per token and spends its steps re-learning to write, and (2) grounds under that one wording only: under the
official WISE prompts (127–153 tokens against 26) it babbles, and an SFT of 300 steps that made the three-stage
format 100 % valid still answered every scene with the same box. Two options fix that without teaching any
rationale:

- ``describe_share``: that share of the scenes becomes :data:`DESCRIBE_PROMPT` → the scene description
  (:func:`wise_rl.data.shapeworld.describe_scene`: the shapes, each one's place, width and corners; no query, so no
  reasoning), as an instruction-tuned VLM can caption;
- ``prompt_mix``: the grounding questions are worded by several of the project's templates, always with the answer
  block alone as the target, as an instruction-tuned VLM follows many phrasings of one request;
- ``name_share``: that share of the scenes becomes :data:`NAME_PROMPT` → the queried shape named in words ('the
  red pentagon at the bottom', :func:`wise_rl.data.shapeworld.name_shape`): grounding answered in words instead of
  a box. Without it, the SFT's concise rationale (which names the target) collapsed to one string for every scene
  ('the red pentagon is not red' on 52 of 100) and the answer after it lost the grounding (acc@0.5 3 %).

Which wordings a small model can ground under (held-out box acc@0.5 on 64 scenes under each wording, after 6–7.5
minutes continuing the 70-minute base with 20 % descriptions and 60 % of the questions in the other wordings,
2026-11-27):

==========================================================  ===========  =====================================
wordings trained next to ``answer-only``                    answer-only  the others
==========================================================  ===========  =====================================
official ``wise`` / ``wise-s`` / ``verbose`` / ``wise-train``  31 %      2 % (``wise-s``), 3 % (``verbose``)
short, question first, instructions after it                34 %         2 % (``wise-s``) to 20 % (``verbose``)
``*-compact``: short instruction + the answer-only prompt    33 %        33 % to 39 % (all four)
==========================================================  ===========  =====================================

The distance between the question and the answer is what matters to a 3-layer model, hence the ``*-compact``
templates of :mod:`wise_rl.formats` and the demo's ``prompt_style: compact``.

What the base sees, and why the rationale arms of the demo stay below it (measured 2026-11-28 with ``wise-rl
pretrain-base --out DIR --score-perception``: naming on 300 held-out scenes, the probe on 2,204 shapes). The
shipped base's box acc@0.5 (42 %) is barely above boxing a random shape of the scene (34 %): it finds shapes, by
their place on the position-bearing background, but rarely the queried one. It does not see colour or kind:

======================================================  ================  ===================  ==================
                                                        100-minute base   shipped (+70 min,    chance
                                                                          35 % naming rows)
======================================================  ================  ===================  ==================
names the target's colour and kind (:func:`name_eval`)  6 %               17 %                 36 % (random shape)
names some shape of the scene                           13 %              23 %                 10 % (blind guess)
linear probe of colour on the shape's vision token      44 %              40 %                 18 % (majority)
linear probe of kind on the shape's vision token        42 %              44 %                 22 % (majority)
======================================================  ================  ===================  ==================

(:func:`vision_probe`; the same probe on the cell's mean RGB reads colour 57 % of the time.) Seventy more minutes
with a third of the rows asking for the name raised naming but not the probe: the language model learns to repeat
the kind the question names; the vision tower does not learn colour. Every rationale names shapes, and the SFT
teaches the answer to follow the rationale, so both rationale arms land on the wrong shape. A base that can reach
the demo's accuracy targets needs a vision tower that tells colour and kind apart: more training than a CPU session
gives, or a larger image (more tokens per shape).

Data: an endless stream of fresh scenes (:func:`wise_rl.data.shapeworld.iter_samples`, stream disjoint from the
train/test splits) rendered ``chunk`` scenes at a time; image processing and tokenisation happen in the collator.
Both are timed (``data_prep_s``) apart from the rest of the step, so the card reports

    data_samples_per_s  = samples / data_prep_s                       (rendering + processor + collate)
    train_samples_per_s = samples / (train_wall_s − data_prep_s)      (forward + backward + AdamW step)
    samples_per_s       = samples / train_wall_s                      (end to end)

and the same per CPU-second of process time (``*_per_cpu_s``; all threads), which other load on a shared machine
does not inflate.

Learning-rate schedule (one ``LambdaLR`` over ``torch.optim.AdamW``): linear warmup over ``warmup_steps`` steps,
then cosine from ``lr`` down to ``min_lr_ratio · lr`` over the progress ``p ∈ [0, 1]``::

    lr(step) = lr · (step + 1) / warmup_steps                                     while step < warmup_steps
    lr(step) = lr · (r + (1 − r) · ½ · (1 + cos(π · p)))                            afterwards, r = min_lr_ratio
    p        = max(step / max_steps, training_seconds / (60 · minutes))              (whichever budget is set)

so a time budget (``--minutes``) anneals over wall time and stops when it is spent. Curve evaluations (``--curve-
every`` minutes on ``--curve-n`` held-out scenes) are not counted in the training time.

Held-out evaluation (the project's eval path, :func:`wise_rl.evaluate.run_eval` with an
:class:`~wise_rl.evaluate.HFGenerator`, greedy, stopped at ``</answer>``) on ``eval_n`` scenes of the ShapeWorld
``test`` split of the same seed. Reported next to each other:

- ``box_acc50`` = share of samples with box IoU(predicted bbox, gt bbox) > 0.5 on the queried target and
  ``box_mean_iou``: the same box IoU the random-shape and centre-box baselines use (pixel-inclusive, WISE reward);
- ``gIoU`` / ``cIoU`` / ``acc50`` of the eval path (mask IoU of the box-decoded prediction against the shape's mask,
  LISA protocol: a perfect box scores π/4 on a circle and about ½ on a triangle there), ``format_valid``;
- ``random_shape`` and ``centre_box`` baselines (:mod:`wise_rl.data.shapeworld`);
- with ``name_share``: ``naming`` (:func:`name_eval`) on the same scenes. ``--score-perception`` adds it and the
  vision probe to the card of an existing base.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wise_rl import formats
from wise_rl.metrics import box_scores
from wise_rl.precision import resolve_bf16

logger = logging.getLogger(__name__)

PROMPT = "answer-only"
TARGET_MODE = "answer"
# The scene-description task (``--describe-share``): no query, so nothing to reason about; only what is in the image.
DESCRIBE_PROMPT = "Describe the shapes in the image."
# The naming task (``--name-share``): the queried shape in words ('the red pentagon at the bottom'), no box.
NAME_PROMPT = "Which shape is '{question}'? Name it."
CARD_JSON, CARD_MD, EVAL_DIR = "card.json", "model_card.md", "eval"
# Files of build_tiny_model's folder that belong to the processor (copied as built, so loaders read them as-is).
_MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json"}


@dataclass
class PretrainConfig:
    """Settings of one pre-training run (``wise-rl pretrain-base``). Exactly one of ``minutes`` / ``max_steps``
    bounds the run (both: whichever is reached first)."""

    out: str
    preset: str = "small"
    seed: int = 0
    image_size: int = 112
    minutes: float | None = None
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    chunk: int = 256
    eval_n: int = 200
    eval_batch_size: int = 32
    max_new_tokens: int = 64
    curve_every: float | None = None  # minutes of training between curve evaluations (None: no curve evals)
    curve_n: int = 64
    logging_steps: int = 10
    threads: int | None = None
    init: str | None = None  # start from this model folder instead of a random-weight preset
    describe_share: float = 0.0  # share of rows that ask for a scene description instead of a box (see the docstring)
    stream_start: int = 0  # index of the first scene of the training stream (a continued run starts past the first)
    name_share: float = 0.0  # share of rows that ask to name the queried shape in words (see the docstring)
    prompt_mix: str | None = None  # "name:weight,…" templates that word the grounding questions (default answer-only)
    vision_steps: int = 0  # steps of the vision stage before grounding (0: none; see wise_rl.testbed.vision_stage)
    vision_batch_size: int = 64
    vision_lr: float = 2e-3
    vision_keep: float = 0.0  # vision stage: weight of keeping the init tower's features (see wise_rl.testbed.vision_stage)
    vision_lr_scale: float = 1.0  # grounding stage: the vision tower's lr = lr × this (0 freezes it)
    probe_n: int = 700  # held-out scenes of the vision probe written into the card (0: no probe)
    bf16: bool | None = None  # None: wise_rl.precision.resolve_bf16 (fp32 on a CPU, bf16 on a GPU)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grounding(self) -> bool:
        """Whether the run has a grounding stage (a budget in minutes or steps)."""
        return self.minutes is not None or self.max_steps is not None

    def validate(self) -> None:
        if not self.grounding and not self.vision_steps:
            raise ValueError("pretrain-base needs a budget: --minutes M or --max-steps N (grounding), and/or "
                             "--vision-steps N (vision stage)")
        if self.vision_steps < 0 or self.vision_batch_size < 1 or not self.vision_lr > 0:
            raise ValueError(f"--vision-steps must be >= 0, --vision-batch-size >= 1 and --vision-lr > 0, got "
                             f"{self.vision_steps}, {self.vision_batch_size}, {self.vision_lr}")
        if self.vision_keep < 0:
            raise ValueError(f"--vision-keep must be >= 0, got {self.vision_keep}")
        if self.vision_lr_scale < 0:
            raise ValueError(f"--vision-lr-scale must be >= 0 (0 freezes the tower), got {self.vision_lr_scale}")
        if self.probe_n < 0:
            raise ValueError(f"--probe-n must be >= 0, got {self.probe_n}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"--minutes must be > 0, got {self.minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")
        for name in ("batch_size", "chunk", "eval_batch_size", "max_new_tokens", "logging_steps", "curve_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_n < 0:
            raise ValueError(f"--eval-n must be >= 0, got {self.eval_n}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        parse_prompt_mix(self.prompt_mix)
        if self.stream_start < 0:
            raise ValueError(f"--stream-start must be >= 0, got {self.stream_start}")
        if not 0 <= self.describe_share < 1:
            raise ValueError(f"--describe-share must be in [0, 1), got {self.describe_share}")
        if not 0 <= self.name_share < 1 or self.describe_share + self.name_share >= 1:
            raise ValueError(f"--name-share must be in [0, 1) and leave grounding rows next to --describe-share, got "
                             f"{self.name_share} + {self.describe_share}")
        if self.curve_every is not None and self.curve_every <= 0:
            raise ValueError(f"--curve-every must be > 0 minutes, got {self.curve_every}")

    def command(self) -> str:
        """The ``wise-rl pretrain-base`` command line that reproduces this run."""
        defaults = PretrainConfig(out=self.out)
        parts = ["wise-rl", "pretrain-base", "--out", str(self.out)]
        for name in ("preset", "seed", "image_size", "minutes", "max_steps", "batch_size", "lr", "min_lr_ratio",
                     "warmup_steps", "weight_decay", "max_grad_norm", "chunk", "eval_n", "eval_batch_size",
                     "max_new_tokens", "curve_every", "curve_n", "logging_steps", "threads", "init", "describe_share",
                     "stream_start", "prompt_mix", "name_share", "vision_steps", "vision_batch_size", "vision_lr",
                     "vision_keep", "vision_lr_scale", "probe_n", "bf16"):
            value = getattr(self, name)
            if value is not None and (value != getattr(defaults, name) or name in ("seed", "minutes", "max_steps")):
                parts += [f"--{name.replace('_', '-')}", str(value)]
        return " ".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# Rows and timing
# ----------------------------------------------------------------------------------------------------------------
def pretrain_row(sample: dict[str, Any], prompt: str = PROMPT) -> dict[str, Any]:
    """The SFT row of one sample, as ``training.sft_rows(ds, "answer-only", "answer")`` builds it, plus the image:
    ``{"image", "prompt": [user turn], "completion": [assistant turn]}``; ``prompt`` words the question with
    another of the project's templates (the target stays the answer block alone)."""
    target = formats.build_target("", formats.answer_dict(sample["gt_bbox"], sample["gt_points"]), "",
                                  TARGET_MODE)
    return {
        "image": sample["image"],
        "prompt": [{"role": "user", "content": formats.render_prompt(prompt, sample["query"])}],
        "completion": [{"role": "assistant", "content": target}],
    }


class DataTimer:
    """Accumulates the seconds spent preparing data (rendering + collating) and the samples prepared."""

    def __init__(self):
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # process CPU time (all threads), robust to other load on a shared machine
        self.render_seconds = 0.0
        self.rendered = 0
        self.collated = 0


def describe_row(sample: dict[str, Any]) -> dict[str, Any]:
    """The scene-description row of one sample (``iter_samples(..., describe=True)``): :data:`DESCRIBE_PROMPT` →
    the plain description text, no tags, no query."""
    if "description" not in sample:
        raise KeyError("describe_row needs a sample with 'description' (iter_samples(..., describe=True))")
    return {
        "image": sample["image"],
        "prompt": [{"role": "user", "content": DESCRIBE_PROMPT}],
        "completion": [{"role": "assistant", "content": sample["description"]}],
    }


def parse_prompt_mix(text: str | None) -> dict[str, float]:
    """``"answer-only:0.4,wise:0.15"`` → ``{"answer-only": 0.4, "wise": 0.15}`` (weights, normalised when drawn);
    a name without ``:w`` weighs 1. Names must be templates of :mod:`wise_rl.formats`."""
    if not text:
        return {PROMPT: 1.0}
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in formats.available_prompts():
            raise ValueError(f"--prompt-mix: unknown prompt template {name!r} in {text!r}; known: "
                             f"{', '.join(formats.available_prompts())}")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"--prompt-mix: weight of {name!r} is not a number: {weight!r}") from None
        if not w > 0:
            raise ValueError(f"--prompt-mix: weight of {name!r} must be > 0, got {w}")
        mix[name] = mix.get(name, 0.0) + w
    return mix


def name_prompt_text(query: str) -> str:
    """:data:`NAME_PROMPT` with the question."""
    return NAME_PROMPT.format(question=formats.normalise_question(query))


def name_row(sample: dict[str, Any]) -> dict[str, Any]:
    """The naming row of one sample (``iter_samples(..., describe=True)``): :data:`NAME_PROMPT` with the query →
    the target named in words (:func:`wise_rl.data.shapeworld.name_shape`), no tags, no box."""
    if "target_name" not in sample:
        raise KeyError("name_row needs a sample with 'target_name' (iter_samples(..., describe=True))")
    return {
        "image": sample["image"],
        "prompt": [{"role": "user",
                    "content": name_prompt_text(sample["query"])}],
        "completion": [{"role": "assistant", "content": sample["target_name"]}],
    }


def stream_rows(seed: int, image_size: int, chunk: int, timer: DataTimer | None = None,
                start: int = 0, describe_share: float = 0.0,
                prompt_mix: dict[str, float] | None = None, name_share: float = 0.0) -> Iterator[dict[str, Any]]:
    """Endless SFT rows of fresh scenes, rendered ``chunk`` at a time (``timer`` gets the rendering seconds): each
    scene becomes a :func:`describe_row` with probability ``describe_share``, a :func:`name_row` with probability
    ``name_share`` (one seeded draw), else a
    :func:`pretrain_row` whose question is worded by a template drawn from ``prompt_mix`` (name → weight;
    default: ``answer-only`` alone)."""
    import numpy as np

    from wise_rl.testbed.shapeworld import iter_samples

    samples = iter_samples(seed, image_size=image_size, start=start, mask_format="numpy",
                           describe=describe_share > 0 or name_share > 0)
    draws = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7, start)))
    mix = prompt_mix or {PROMPT: 1.0}
    names, weights = list(mix), np.asarray(list(mix.values()), dtype=float)
    cdf = np.cumsum(weights / weights.sum())

    def row(sample):
        u = draws.random() if describe_share or name_share else 1.0
        if u < describe_share:
            return describe_row(sample)
        if u < describe_share + name_share:
            return name_row(sample)
        if len(names) == 1:
            return pretrain_row(sample, names[0])
        return pretrain_row(sample, names[min(int(np.searchsorted(cdf, draws.random(), side="right")),
                                              len(names) - 1)])

    while True:
        t0, c0 = time.perf_counter(), time.process_time()
        rows = [row(next(samples)) for _ in range(chunk)]
        if timer is not None:
            dt = time.perf_counter() - t0
            timer.seconds += dt
            timer.cpu_seconds += time.process_time() - c0
            timer.render_seconds += dt
            timer.rendered += len(rows)
        yield from rows


class TimedCollator:
    """Wraps a collator and adds its seconds and batch sizes to a :class:`DataTimer`."""

    def __init__(self, collator, timer: DataTimer):
        self.collator, self.timer = collator, timer

    def __call__(self, examples):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = self.collator(examples)
        self.timer.seconds += time.perf_counter() - t0
        self.timer.cpu_seconds += time.process_time() - c0
        self.timer.collated += len(examples)
        return batch


class TrainClock:
    """Training wall time with pauses (curve evaluations are not training time)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.paused = 0.0
        self.cpu_paused = 0.0

    def cpu_seconds(self) -> float:
        return time.process_time() - self.cpu_start - self.cpu_paused

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused


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


# ----------------------------------------------------------------------------------------------------------------
# Box-level scoring (comparable to the shapeworld baselines)
# ----------------------------------------------------------------------------------------------------------------
def quick_eval(model, processor, rows: list[dict[str, Any]], batch_size: int = 32,
               max_new_tokens: int = 64, prompt: str = PROMPT) -> dict[str, float]:
    """Greedy generation (the eval path's :class:`HFGenerator`, question worded by ``prompt``) on ``rows``:
    box_acc50, box_mean_iou and format_valid (share whose completion is exactly one valid answer block, the
    pre-training target whatever the wording)."""
    from wise_rl.evaluate import HFGenerator
    from wise_rl.models import eval_mode

    gen = HFGenerator(model, processor, prompt, max_new_tokens=max_new_tokens)
    answers, valid = [], 0
    with eval_mode(model):
        for s in range(0, len(rows), batch_size):
            batch = rows[s : s + batch_size]
            outs = gen([r["image"] for r in batch], [r["query"] for r in batch])
            for o in outs:
                parsed = formats.parse_for_prompt(o.completion, PROMPT)
                answers.append(parsed.answer)
                valid += bool(parsed.ok)
    out = box_scores(answers, [r["gt_bbox"] for r in rows])
    out["format_valid"] = valid / len(rows) if rows else 0.0
    return out


def named_shape(text: str) -> str:
    """The shape a naming answer names: its first three words, lower-cased ('the red pentagon at the top' →
    'the red pentagon')."""
    return " ".join(text.lower().split()[:3])


def name_generator(model, processor, max_new_tokens: int = 16):
    """The eval path's :class:`~wise_rl.evaluate.HFGenerator` asking :data:`NAME_PROMPT` (greedy, ends at eos)."""
    from wise_rl.evaluate import HFGenerator, chat_messages

    class NameGenerator(HFGenerator):
        def prompt_texts(self, queries):
            return [self.processor.apply_chat_template(chat_messages(name_prompt_text(q)),
                                                       add_generation_prompt=True, tokenize=False)
                    for q in queries]

    return NameGenerator(model, processor, PROMPT, max_new_tokens=max_new_tokens, stop=None)


def name_eval(model, processor, rows: list[dict[str, Any]], batch_size: int = 32,
              max_new_tokens: int = 16, generator=None) -> dict[str, Any]:
    """Greedy answers to :data:`NAME_PROMPT` on ``rows`` (:func:`~wise_rl.data.shapeworld.described_sample_at`
    rows): what the model sees, in words, which is what every rationale is made of.

    name_acc       = share whose answer names the target's colour and kind ('the red pentagon …')
    name_in_scene  = share whose answer names a colour + kind present in the scene (any shape)
    random_shape   = expected name_acc of naming a random shape of the scene: mean over rows of
                     (shapes with the target's colour and kind) / (number of shapes)
    random_guess   = expected name_in_scene of a blind guess (a uniformly random colour and kind): mean over rows
                     of (distinct colour + kind pairs in the scene) / (colours × kinds)

    ``generator(images, queries)`` → completions defaults to :func:`name_generator`.
    """
    if not rows:
        raise ValueError("name_eval: no rows")
    from wise_rl.models import eval_mode
    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    gen = generator or name_generator(model, processor, max_new_tokens)
    right = in_scene = 0
    chance = guess = 0.0
    examples = []
    with eval_mode(model):
        for s in range(0, len(rows), batch_size):
            batch = rows[s : s + batch_size]
            for row, out in zip(batch, gen([r["image"] for r in batch], [r["query"] for r in batch]), strict=True):
                said = named_shape(out.completion)
                target = named_shape(row["target_name"])
                names = [f"the {n}" for n in row["shape_names"]]
                right += said == target
                in_scene += said in names
                chance += names.count(target) / len(names)
                guess += len(set(names)) / (len(COLOURS) * len(KINDS))
                if len(examples) < 3:
                    examples.append({"query": row["query"], "target": row["target_name"],
                                     "answer": out.completion.strip()})
    n = len(rows)
    return {"n": n, "name_acc": right / n, "name_in_scene": in_scene / n, "random_shape": chance / n,
            "random_guess": guess / n, "examples": examples}


def naming_rows(seed: int, n: int, image_size: int = 112) -> list[dict[str, Any]]:
    """The first ``n`` scenes of the held-out test split (seed ``seed``) with their words, for :func:`name_eval`."""
    from wise_rl.testbed.shapeworld import described_sample_at

    return [described_sample_at(seed, "test", i, image_size) for i in range(n)]


def vision_probe(model, processor, rows: list[dict[str, Any]], train_share: float = 0.7) -> dict[str, Any]:
    """Does the vision tower see colour and kind? A linear probe on what the language model receives.

    For each shape of each row (:func:`naming_rows` rows), the merged vision token whose cell holds the shape's
    centre (cells of ``patch_size · merge_size`` pixels, row-major, as the processor orders them) is a feature
    vector; a multinomial logistic regression (scikit-learn, ``max_iter`` 3000) is fitted on the first
    ``train_share`` of the shapes and scored on the rest:

    colour_acc / kind_acc   = accuracy of the probe on the vision token (chance: colour_majority / kind_majority,
                              the most frequent class's share of the scored shapes)
    cell_rgb_colour_acc     = the same probe on the mean RGB of the cell's pixels: what a tower that only kept
                              the cell's average colour would give
    """
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from wise_rl.models import eval_mode
    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    ip = processor.image_processor
    cell = ip.patch_size * ip.merge_size
    feats, rgb, colour, kind = [], [], [], []
    with eval_mode(model):
        for row in rows:
            enc = ip(images=[row["image"]], return_tensors="pt")
            with torch.no_grad():
                out = model.model.get_image_features(enc["pixel_values"].to(model.device),
                                                     enc["image_grid_thw"].to(model.device))
            emb = getattr(out, "pooler_output", None)
            emb = out[0] if emb is None else emb
            emb = emb[0] if isinstance(emb, (list, tuple)) else emb
            emb = emb.reshape(-1, emb.shape[-1]).float().cpu().numpy()
            width = row["image"].size[0] // cell
            pixels = np.asarray(row["image"], dtype=np.float32) / 255.0
            for box, name in zip(row["shape_boxes"], row["shape_names"], strict=True):
                cx, cy = int((box[0] + box[2]) / 2) // cell, int((box[1] + box[3]) / 2) // cell
                feats.append(emb[cy * width + cx])
                rgb.append(pixels[cy * cell:(cy + 1) * cell, cx * cell:(cx + 1) * cell].reshape(-1, 3).mean(0))
                c, k = name.split()
                colour.append(list(COLOURS).index(c))
                kind.append(KINDS.index(k))
    n = len(feats)
    split = int(train_share * n)
    if split < 10 or n - split < 10:
        raise ValueError(f"vision_probe: {n} shapes are too few for a {train_share:.0%} split; use more rows")
    feats, rgb, colour, kind = map(np.asarray, (feats, rgb, colour, kind))

    def score(x, y):
        return float(LogisticRegression(max_iter=3000).fit(x[:split], y[:split]).score(x[split:], y[split:]))

    def majority(y):
        return float(np.bincount(y[split:]).max() / (n - split))

    return {"n_shapes": n, "n_scored": n - split, "colour_acc": score(feats, colour), "kind_acc": score(feats, kind),
            "colour_majority": majority(colour), "kind_majority": majority(kind),
            "cell_rgb_colour_acc": score(rgb, colour)}


def score_perception(out, eval_n: int | None = None, batch_size: int = 32, probe_n: int = 700) -> dict[str, Any]:
    """What the model in ``out`` sees: :func:`name_eval` on ``eval_n`` held-out scenes (default: its card's) and
    :func:`vision_probe` on ``probe_n`` of them, written into its ``card.json`` (``naming``, ``vision_probe``) and
    ``model_card.md``; returns both. For bases trained before the card carried them."""
    import torch

    from wise_rl.models import load_model, load_processor

    out = Path(out)
    card_path = out / CARD_JSON
    if not card_path.is_file():
        raise FileNotFoundError(f"{card_path}: no card; score_perception updates the card of a pretrain-base folder")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    cfg = card.get("config", {})
    n = eval_n or cfg.get("eval_n") or 300
    seed, size = card.get("seed", 0), cfg.get("image_size", 112)
    model, processor = load_model(out, dtype=torch.float32).eval(), load_processor(out)
    rows = naming_rows(seed, max(n, probe_n), size)
    card["naming"] = name_eval(model, processor, rows[:n], batch_size)
    if probe_n:  # 0 skips the probe and keeps the card's earlier one
        card["vision_probe"] = vision_probe(model, processor, rows[:probe_n])
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / CARD_MD).write_text(model_card_markdown(card), encoding="utf-8")
    return {"naming": card["naming"], "vision_probe": card.get("vision_probe")}


def make_trainer(model, processor, train_dataset, config: PretrainConfig, output_dir, timer: DataTimer | None = None,
                 clock: TrainClock | None = None, callbacks=None):
    """The ``transformers.Trainer`` of pre-training, fed by TRL's VLM collator on prompt–completion rows (the
    collator ``trl.SFTTrainer`` uses: prompt and completion tokenised separately, completion-only labels), with
    the model's own token-mean cross-entropy, AdamW (no weight decay on biases, norms and embeddings) and the warmup
    + cosine :func:`lr_lambda`; no checkpoints, no activation checkpointing.

    Why not ``SFTTrainer`` itself: TRL 1.16 always patches a fused, chunked LM head that also computes entropy and
    top-1 for every position; on a CPU with this small vocabulary that took about half of each step (profiled
    2026-11-25: 0.5 of 0.97 s per batch of 16), for the same loss. ``train_dataset``: a ``datasets`` Dataset or
    IterableDataset of :func:`pretrain_row` rows."""
    import torch
    from transformers import Trainer, TrainingArguments
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    timer = timer if timer is not None else DataTimer()
    clock = clock if clock is not None else TrainClock()
    collator = TimedCollator(DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True),
                             timer)
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
    for is_vision, lr in ((False, config.lr), (True, config.lr * config.vision_lr_scale)):
        named = [(n, p) for n, p in model.named_parameters() if (".visual." in f".{n}") == is_vision]
        if is_vision and lr == 0:  # a frozen tower: no gradients, no optimizer state
            for _, p in named:
                p.requires_grad_(False)
            continue
        decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
        groups += [{"params": decay, "weight_decay": config.weight_decay, "lr": lr},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, clock))
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, processing_class=processor,
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
                                     **{k: logs[k] for k in ("loss", "learning_rate", "mean_token_accuracy")
                                        if k in logs}})
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
def machine_info() -> dict[str, Any]:
    import torch

    from wise_rl.precision import cpu_has_native_bf16, cpu_model

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def _copy_processor_files(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        # An --init folder's own run files stay behind: a continued run's folder must not carry a card that is
        # not its own (until the end, or for good if interrupted).
        if f.is_file() and f.name not in _MODEL_FILES | {CARD_JSON, CARD_MD, PARTIAL_JSON}:
            shutil.copy2(f, dst / f.name)


def _save_model(model, init: Path | None, out: Path) -> None:
    """Weights (safetensors) + the init folder's processor files: a folder every loader reads."""
    model.save_pretrained(out, safe_serialization=True)
    if init is not None:
        _copy_processor_files(init, out)


def run_vision_stage(model, processor, config: PretrainConfig, output_dir) -> dict[str, Any]:
    """The vision stage (:mod:`wise_rl.testbed.vision_stage`) on ``model`` in place; returns its record for the card:
    steps, samples, wall time, loss curve and the heads' held-out accuracy per shape."""
    from wise_rl.testbed.vision_stage import VisionStageConfig, head_accuracy, train_vision

    vcfg = VisionStageConfig(steps=config.vision_steps, batch_size=config.vision_batch_size, lr=config.vision_lr,
                             keep_weight=config.vision_keep, seed=config.seed, image_size=config.image_size, progress=config.progress)
    result = train_vision(model, processor, vcfg, output_dir, bf16=resolve_bf16(config.bf16)[0])
    heads = result.pop("heads")
    return {"stage": "vision", **result,
            "head_accuracy": head_accuracy(heads, processor, config.seed, n=200, image_size=config.image_size)}


def family_box_scores(answers: list[dict[str, Any] | None], rows: list[dict[str, Any]], seed: int = 0) -> dict:
    """Box acc@0.5 per query family next to the random-shape baseline of the same rows:
    ``{family: {"n", "box_acc50", "random_shape_acc50"}}`` (ShapeWorld rows: ``family``, ``gt_bbox``,
    ``shape_boxes``)."""
    from wise_rl.testbed.shapeworld import random_shape_baseline

    out: dict[str, dict[str, Any]] = {}
    for family in sorted({r["family"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["family"] == family]
        sub = [rows[i] for i in idx]
        box = box_scores([answers[i] for i in idx], [r["gt_bbox"] for r in sub])
        out[family] = {"n": len(idx), "box_acc50": box["box_acc50"],
                       "random_shape_acc50": random_shape_baseline(sub, seed=seed)["acc@0.5"]}
    return out


def pretrain(config: PretrainConfig) -> dict[str, Any]:
    """Train, save (safetensors + processor), evaluate and write ``model_card.md`` + ``card.json`` into
    ``config.out``; returns the card."""
    import torch
    import transformers
    import trl
    from datasets import IterableDataset

    from wise_rl.models import count_parameters, load_model, load_processor
    from wise_rl.testbed.tiny_model import build_tiny_model

    config.validate()
    prompt_mix = parse_prompt_mix(config.prompt_mix)
    if config.threads:
        torch.set_num_threads(config.threads)
    elif not torch.cuda.is_available():
        # One thread: this model's matrices are too small for intra-op parallelism to pay, and with any other load
        # on the cores OpenMP's waiting threads made a step 7x slower (10 steps: 7 s on 1 thread, 49 s on 2,
        # shared 2-core machine, 2026-11-25).
        torch.set_num_threads(1)
    logger.warning("precision: %s", resolve_bf16(config.bf16)[1])
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    transformers.set_seed(config.seed)
    wall0 = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="wise-rl-pretrain-") as tmp:
        init = Path(config.init) if config.init else build_tiny_model(Path(tmp) / "init", preset=config.preset,
                                                                          seed=config.seed,
                                                                          image_size=config.image_size)
        processor = load_processor(init)
        model = load_model(init, dtype=torch.float32)
        n_params = count_parameters(model)

        # Held-out rows: the test split of the same seed (disjoint from the training stream).
        from wise_rl.testbed.shapeworld import centre_box_baseline, generate_dataset, random_shape_baseline

        n_held = max(config.eval_n, config.curve_n if config.curve_every else 0)
        test = generate_dataset(0, n_held, seed=config.seed, image_size=config.image_size, progress=False)["test"]
        curve_rows = [test[i] for i in range(min(config.curve_n, len(test)))] if config.curve_every else []

        stages: list[dict[str, Any]] = []
        if config.vision_steps:
            stages.append(run_vision_stage(model, processor, config, Path(tmp) / "vision"))

        timer, clock = DataTimer(), TrainClock()
        callback = _trainer_callback(config, clock, timer, processor, curve_rows, init=init)
        steps = 0
        if config.grounding:
            train_ds = IterableDataset.from_generator(
                stream_rows, gen_kwargs={"seed": config.seed, "image_size": config.image_size, "chunk": config.chunk,
                                         "timer": timer, "describe_share": config.describe_share,
                                         "start": config.stream_start,
                                         "prompt_mix": prompt_mix,
                                         "name_share": config.name_share})
            trainer = make_trainer(model, processor, train_ds, config, output_dir=Path(tmp) / "trainer",
                                   timer=timer, clock=clock, callbacks=[callback])
            # Start the clocks after construction (nothing before the first step is training).
            timer.__init__()
            clock.__init__()
            trainer.train()
            model = trainer.model
            steps = trainer.state.global_step
            stages.append({"stage": "grounding", "steps": steps, "samples": steps * config.batch_size,
                           "train_s": round(clock.seconds(), 1), "vision_lr_scale": config.vision_lr_scale})
        train_s, train_cpu_s = clock.seconds(), clock.cpu_seconds()
        samples = steps * config.batch_size

        for p in model.parameters():  # a frozen tower is saved and reloaded like every other weight
            p.requires_grad_(True)
        _save_model(model, init, out)
        (out / PARTIAL_JSON).unlink(missing_ok=True)

    # Held-out evaluation through the project's eval path, on the saved folder (as every user will load it).
    eval_metrics, box = {}, {}
    eval_s = 0.0
    if config.eval_n:
        from wise_rl.evaluate import EvalConfig, HFGenerator, read_samples, run_eval

        t0 = time.perf_counter()
        eval_ds = test.select(range(config.eval_n))
        eval_proc = load_processor(out)
        eval_model = load_model(out, dtype=torch.float32).eval()
        eval_dir = out / EVAL_DIR
        if eval_dir.exists():
            shutil.rmtree(eval_dir)
        ecfg = EvalConfig(model=str(out), dataset=f"shapeworld:test(seed={config.seed},n={config.eval_n})",
                          split="test", prompt=PROMPT, batch_size=config.eval_batch_size,
                          max_new_tokens=config.max_new_tokens, model_size=config.image_size)
        gen = HFGenerator(eval_model, eval_proc, PROMPT, config.max_new_tokens)
        eval_metrics = run_eval(ecfg, eval_dir, generator=gen, tokenizer=eval_proc.tokenizer, dataset=eval_ds,
                                progress=config.progress)
        records = {r["id"]: r for r in read_samples(eval_dir / "samples.jsonl")}
        ids = [str(i) for i in eval_ds["id"]]
        answers = [records[i].get("answer") for i in ids]
        box = box_scores(answers, list(eval_ds["gt_bbox"]))
        by_family = family_box_scores(answers, [eval_ds[k] for k in range(len(eval_ds))], seed=config.seed)
        # The other wordings the run trained on: the same scenes, the answer block scored the same way.
        eval_rows = [eval_ds[k] for k in range(len(eval_ds))]
        by_prompt = {name: quick_eval(eval_model, eval_proc, eval_rows, config.eval_batch_size,
                                      config.max_new_tokens, prompt=name)
                     for name in prompt_mix if name != PROMPT}
        naming = (name_eval(eval_model, eval_proc, naming_rows(config.seed, config.eval_n, config.image_size),
                            config.eval_batch_size) if config.name_share else None)
        eval_s = time.perf_counter() - t0
        baselines = {"random_shape": random_shape_baseline(eval_ds, seed=config.seed),
                     "centre_box": centre_box_baseline(eval_ds)}
        examples = [{"query": eval_ds[k]["query"], "gt_bbox": [round(v, 1) for v in eval_ds[k]["gt_bbox"]],
                     "completion": records[ids[k]]["completion"]} for k in range(min(3, len(ids)))]
    else:
        baselines, examples, by_prompt, naming, by_family = {}, [], {}, None, {}
    probe = None
    if config.probe_n:
        t0 = time.perf_counter()
        probe_model = load_model(out, dtype=torch.float32).eval()
        probe = vision_probe(probe_model, load_processor(out),
                             naming_rows(config.seed, config.probe_n, config.image_size))
        eval_s += time.perf_counter() - t0

    losses = [h["loss"] for h in callback.history]
    data_s, data_cpu_s = timer.seconds, timer.cpu_seconds
    # A continued run (--init) is re-created by its init's commands first, then its own.
    init_card_path = Path(config.init) / CARD_JSON if config.init else None
    lineage, earlier_stages = [], []
    if init_card_path is not None and init_card_path.is_file():
        init_card = json.loads(init_card_path.read_text(encoding="utf-8"))
        lineage = [*init_card.get("lineage", []), init_card["command"]]
        # every stage that made this model, each with the command that ran it (and where: the card's machine)
        earlier_stages = [{"command": init_card["command"], "machine": init_card.get("machine"), **st}
                          for st in init_card.get("stages", [])]
    stages = [*earlier_stages, *({"command": config.command(), "machine": machine_info(), **st} for st in stages)]
    card = {
        "command": config.command(),
        "lineage": lineage,
        "config": {k: v for k, v in asdict(config).items() if k not in ("extra", "progress")} | config.extra,
        "seed": config.seed,
        "preset": config.preset if not config.init else None,
        "init": config.init,
        "parameters": n_params,
        "prompt": PROMPT,
        "target": "<answer>{json}</answer> (formats.build_target mode 'answer')",
        "describe_share": config.describe_share,
        "prompt_mix": prompt_mix,
        "describe_prompt": DESCRIBE_PROMPT if config.describe_share else None,
        "name_share": config.name_share,
        "name_prompt": NAME_PROMPT if config.name_share else None,
        "machine": machine_info(),
        "versions": {"transformers": transformers.__version__, "trl": trl.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wall_s": round(time.perf_counter() - wall0, 1),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "steps": steps,
        "samples_seen": samples,
        "throughput": {
            "samples_per_s": samples / train_s if train_s else None,
            "train_samples_per_s": samples / (train_s - data_s) if train_s > data_s else None,
            "data_samples_per_s": timer.collated / data_s if data_s else None,
            "render_samples_per_s": timer.rendered / timer.render_seconds if timer.render_seconds else None,
            "data_share": data_s / train_s if train_s else None,
            "train_cpu_s": round(train_cpu_s, 1),
            "data_cpu_s": round(data_cpu_s, 1),
            "train_samples_per_cpu_s": samples / (train_cpu_s - data_cpu_s) if train_cpu_s > data_cpu_s else None,
            "data_samples_per_cpu_s": timer.collated / data_cpu_s if data_cpu_s else None,
        },
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_history": callback.history,
        "curve": callback.curve,
        "metrics": {
            "n": box.get("n", 0),
            "box_acc50": box.get("box_acc50"),
            "box_mean_iou": box.get("box_mean_iou"),
            "gIoU": eval_metrics.get("gIoU"),
            "cIoU": eval_metrics.get("cIoU"),
            "acc50": eval_metrics.get("acc50"),
            "format_valid": eval_metrics.get("format_valid"),
            "completion_tokens_mean": eval_metrics.get("completion_tokens_mean"),
            "latency_s_mean": eval_metrics.get("latency_mean_s"),
            "failures": eval_metrics.get("failures"),
        },
        "metrics_by_prompt": by_prompt,
        "metrics_by_family": by_family,
        "stages": stages,
        "vision_probe": probe,
        "naming": naming,
        "baselines": baselines,
        "examples": examples,
    }
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / CARD_MD).write_text(model_card_markdown(card), encoding="utf-8")
    return card


def _f(v, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f} %" if pct else (f"{v:.3f}" if isinstance(v, float) else str(v))


def model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable card of a pre-training run."""
    m, b, t, mach = card["metrics"], card.get("baselines") or {}, card["throughput"], card["machine"]
    rs, cb = b.get("random_shape", {}), b.get("centre_box", {})
    share = card.get("describe_share") or 0.0
    lineage = card.get("lineage") or []
    task = ("ShapeWorld grounding: the `answer-only` prompt → `<answer>{json}</answer>` (no rationale)")
    mix = card.get("prompt_mix") or {PROMPT: 1.0}
    if set(mix) != {PROMPT}:
        total = sum(mix.values())
        task += (" with the question worded by these prompt templates (share of the grounding scenes): "
                 + ", ".join(f"`{k}` {100 * w / total:.0f} %" for k, w in mix.items())
                 + "; the target is always the answer block alone")
    if share:
        task += (f", and on {100 * share:g} % of the scenes the prompt '{card['describe_prompt']}' → a plain scene "
                 "description (the shapes, then each one's place, width and corners; no query, no reasoning) so that "
                 "the model keeps writing text")
    if card.get("name_share"):
        task += (f", and on {100 * card['name_share']:g} % the prompt \"{card['name_prompt']}\" → the queried shape "
                 "named in words (e.g. 'the red pentagon at the bottom'; no box, no reasoning)")
    start = (f"continued from `{card['init']}`" if card.get("init") else "trained from random initialisation")
    lines = [
        "# ShapeWorld base model",
        "",
        f"A `{card['preset'] or 'small'}` Qwen2.5-VL ({card['parameters']:,} parameters) {start} on {task}, with "
        "`transformers.Trainer` + TRL's VLM collator on prompt–completion rows (completion-only loss), fresh scenes "
        "every step.",
        "",
        "Re-create it with" + (" these commands, in order (each continues from the previous one's output):"
                               if lineage else ":"),
        "",
        "```",
        *lineage,
        card["command"],
        "```",
        *(["", card["note"]] if card.get("note") else []),
        "",
        f"- date: {card['date']}; seed {card['seed']}",
        f"- machine: {mach.get('cpu_model', mach['processor'])}, {mach['platform']}, {mach['cpu_count']} CPUs, torch threads {mach['torch_threads']}, "
        f"torch {mach['torch']}, GPU {mach['cuda'] or 'none'}",
        f"- wall time {card['wall_s']} s (training {card['train_s']} s, evaluation {card['eval_s']} s); "
        f"{card['steps']} steps, {card['samples_seen']:,} samples seen",
        f"- throughput: {_f(t['samples_per_s'])} samples/s end to end; training step {_f(t['train_samples_per_s'])} "
        f"samples/s; data preparation {_f(t['data_samples_per_s'])} samples/s (rendering alone "
        f"{_f(t['render_samples_per_s'])}), {_f(t['data_share'], pct=True)} of the training time",
        f"- per CPU-second (process time, all threads; robust to other load on a shared machine): training step "
        f"{_f(t.get('train_samples_per_cpu_s'))} samples, data preparation {_f(t.get('data_samples_per_cpu_s'))} "
        f"samples ({t.get('train_cpu_s')} CPU-s in training)",
        f"- loss {_f(card['loss_first'])} → {_f(card['loss_last'])} (completion tokens, mean per token)",
        "",
        f"## Held-out metrics ({m['n']} scenes of the ShapeWorld test split, greedy, stop at `</answer>`)",
        "",
        "| | acc@0.5 (box IoU) | mean box IoU |",
        "| --- | --- | --- |",
        f"| this model | {_f(m['box_acc50'], pct=True)} | {_f(m['box_mean_iou'])} |",
        f"| random shape of the scene | {_f(rs.get('acc@0.5'), pct=True)} | {_f(rs.get('mean_iou'))} |",
        f"| centre box | {_f(cb.get('acc@0.5'), pct=True)} | {_f(cb.get('mean_iou'))} |",
        "",
        f"Eval path (`wise_rl.evaluate`, box mask decoder vs the shape's mask, LISA protocol): gIoU "
        f"{_f(m['gIoU'], pct=True)}, cIoU {_f(m['cIoU'], pct=True)}, acc@0.5 {_f(m['acc50'], pct=True)}, "
        f"format valid {_f(m['format_valid'], pct=True)}. A perfect box scores about ½ (triangle) to π/4 (circle) "
        "mask IoU, so the box columns above are the ones to compare with the baselines.",
    ]
    if card.get("metrics_by_prompt"):
        lines += ["", "The same scenes with the question in the other trained wordings (the answer block scored "
                  "the same way):", "", "| prompt | acc@0.5 (box IoU) | mean box IoU | answer block valid |",
                  "| --- | --- | --- | --- |"]
        for name, s in card["metrics_by_prompt"].items():
            lines.append(f"| `{name}` | {_f(s['box_acc50'], pct=True)} | {_f(s['box_mean_iou'])} | "
                         f"{_f(s['format_valid'], pct=True)} |")
    if card.get("naming"):
        nm = card["naming"]
        lines += ["", f"Naming ({nm['n']} of the same scenes, \"{NAME_PROMPT}\", greedy): the answer names the "
                  f"target's colour and kind in {_f(nm['name_acc'], pct=True)} of the scenes (a random shape of the "
                  f"scene: {_f(nm['random_shape'], pct=True)}), and some shape of the scene in "
                  f"{_f(nm['name_in_scene'], pct=True)} (a blind guess of colour and kind: "
                  f"{_f(nm.get('random_guess'), pct=True)}). Rationales are made of these words: a model that cannot "
                  "name what it sees writes rationales that name the wrong shape."]
    if card.get("vision_probe"):
        vp = card["vision_probe"]
        lines += ["", f"Vision probe ({vp['n_scored']} of {vp['n_shapes']} shapes scored; a linear probe on the "
                  "vision token that holds each shape's centre, `pretrain.vision_probe`): colour "
                  f"{_f(vp['colour_acc'], pct=True)} (most frequent colour {_f(vp['colour_majority'], pct=True)}; "
                  f"the same probe on the cell's mean RGB {_f(vp['cell_rgb_colour_acc'], pct=True)}), kind "
                  f"{_f(vp['kind_acc'], pct=True)} (most frequent kind {_f(vp['kind_majority'], pct=True)})."]
    if card.get("metrics_by_family"):
        lines += ["", "Box acc@0.5 per query family (same scenes) beside boxing a random shape of the scene:", "",
                  "| family | n | this model | random shape |", "| --- | --- | --- | --- |"]
        for family, f in card["metrics_by_family"].items():
            lines.append(f"| {family} | {f['n']} | {_f(f['box_acc50'], pct=True)} | "
                         f"{_f(f['random_shape_acc50'], pct=True)} |")
    if card.get("stages"):
        lines += ["", "## Stages", "", "| stage | steps | samples | wall s | notes |", "| --- | --- | --- | --- | --- |"]
        for st in card["stages"]:
            if st["stage"] == "vision":
                ha = st.get("head_accuracy") or {}
                note = (f"dense per-token colour/kind/box heads; held-out head accuracy colour "
                        f"{_f(ha.get('colour_acc'), pct=True)}, kind {_f(ha.get('kind_acc'), pct=True)}")
            else:
                note = ("vision tower frozen" if not st.get("vision_lr_scale") else
                        f"vision tower lr × {st.get('vision_lr_scale')}")
            lines.append(f"| {st['stage']} | {st['steps']} | {st['samples']:,} | {st['train_s']} | {note} |")
    if card.get("curve"):
        lines += ["", "## Learning curve (held-out curve set)", "", "| minutes | steps | samples | acc@0.5 (box) |"
                  " mean box IoU | format valid |", "| --- | --- | --- | --- | --- | --- |"]
        for c in card["curve"]:
            lines.append(f"| {c['minutes']:.2f} | {c['step']} | {c['samples']:,} | {_f(c['box_acc50'], pct=True)} "
                         f"| {_f(c['box_mean_iou'])} | {_f(c['format_valid'], pct=True)} |")
    if card.get("examples"):
        lines += ["", "## Examples", ""]
        for e in card["examples"]:
            lines.append(f"- '{e['query']}' (gt {e['gt_bbox']}) → `{e['completion']}`")
    return "\n".join(lines) + "\n"
