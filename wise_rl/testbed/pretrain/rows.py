"""The rows of ShapeWorld base pre-training: grounding, scene descriptions and target naming, streamed.

- :func:`pretrain_row`: one sample → ``{"image", "prompt": [user turn], "completion": [assistant turn]}``, the row
  :func:`wise_rl.training.sft_rows` builds with ``prompt_template="answer-only"``, ``target_mode="answer"``::

      prompt     = [{"role": "user", "content": formats.render_prompt(prompt, query)}]
      completion = [{"role": "assistant", "content": formats.build_target("", answer, "", mode="answer")}]

  (``prompt`` another of the project's templates for ``prompt_mix``; the target is always the answer block alone);
- :func:`describe_row`: :data:`DESCRIBE_PROMPT` → :func:`wise_rl.testbed.shapeworld.queries.describe_scene` (no query);
- :func:`name_row`: :data:`NAME_PROMPT` → the queried shape in words (:func:`wise_rl.testbed.shapeworld.queries.name_shape`);
- :func:`stream_rows`: an endless stream of fresh scenes (:func:`wise_rl.testbed.shapeworld.iter_samples`, disjoint
  from the train/test splits), rendered ``chunk`` at a time, the rendering timed into a :class:`DataTimer`;
- :class:`DataTimer`, :class:`TimedCollator`, :class:`TrainClock`: the data and training clocks of the card's
  throughput figures;
- :func:`parse_prompt_mix`: ``"name:weight,…"`` → ``{template: weight}``; an unknown template or a negative weight
  raises ``ValueError``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from wise_rl import formats

PROMPT = "answer-only"
TARGET_MODE = "answer"
# The scene-description task (``--describe-share``): no query, so nothing to reason about; only what is in the image.
DESCRIBE_PROMPT = "Describe the shapes in the image."
# The naming task (``--name-share``): the queried shape in words ('the red pentagon at the bottom'), no box.
NAME_PROMPT = "Which shape is '{question}'? Name it."


def pretrain_row(sample: dict[str, Any], prompt: str = PROMPT, named: bool = False,
                 described: bool = False, reasoned: bool = False) -> dict[str, Any]:
    """The SFT row of one sample, as ``training.sft_rows(ds, "answer-only", "answer")`` builds it, plus the image:
    ``{"image", "prompt": [user turn], "completion": [assistant turn]}``; ``prompt`` words the question with
    another of the project's templates (the target stays the answer block alone). ``named``: the answer block
    follows the target named in words (``target_name``, e.g. 'the red pentagon at the bottom <answer>…</answer>'),
    so the model also grounds after text it wrote itself, as the answer of a rationale format does; ``described``
    puts the scene description (``description``) before the name, so it grounds after a long text too, as after a
    verbose rationale; ``reasoned`` puts the whole detailed rationale (``detailed``: the query restated, the scene,
    the evidence, the target named last) before the answer block instead, so the model can reason in words before
    it answers."""
    target = formats.build_target("", formats.answer_dict(sample["gt_bbox"], sample["gt_points"]), "",
                                  TARGET_MODE)
    if reasoned:
        target = f"{sample['detailed']} {target}"
    elif named:
        target = f"{sample['target_name']} {target}"
        if described:
            target = f"{sample['description']} {target}"
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


def parse_weights(text: str, known, flag: str, noun: str) -> dict[str, float]:
    """``"a:0.4,b:0.15"`` → ``{"a": 0.4, "b": 0.15}`` (weights, normalised when drawn); a name without ``:w``
    weighs 1. A name outside ``known`` (a ``noun``), or a weight that is not a number > 0, raises ``ValueError``
    naming ``flag``."""
    known = list(known)
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in known:
            raise ValueError(f"{flag}: unknown {noun} {name!r} in {text!r}; known: {', '.join(known)}")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"{flag}: weight of {name!r} is not a number: {weight!r}") from None
        if not w > 0:
            raise ValueError(f"{flag}: weight of {name!r} must be > 0, got {w}")
        mix[name] = mix.get(name, 0.0) + w
    return mix


def parse_prompt_mix(text: str | None) -> dict[str, float]:
    """``"answer-only:0.4,wise:0.15"`` → ``{"answer-only": 0.4, "wise": 0.15}`` (:func:`parse_weights`); names
    must be templates of :mod:`wise_rl.formats`; none → ``answer-only`` alone."""
    return parse_weights(text, formats.available_prompts(), "--prompt-mix", "prompt template") if text else {PROMPT: 1.0}


def parse_family_weights(text: str | None) -> dict[str, float] | None:
    """``"attribute:2,odd_one_out:2"`` → the query families' draw weights (:func:`parse_weights`; a family left
    out weighs 1, so the weights only tilt the mix); none → ``None``, every family alike."""
    from wise_rl.testbed.shapeworld import FAMILIES

    if not text:
        return None
    return {f: 1.0 for f in FAMILIES} | parse_weights(text, FAMILIES, "--family-weights", "query family")


def name_prompt_text(query: str) -> str:
    """:data:`NAME_PROMPT` with the question."""
    return NAME_PROMPT.format(question=formats.normalise_question(query))


def name_row(sample: dict[str, Any]) -> dict[str, Any]:
    """The naming row of one sample (``iter_samples(..., describe=True)``): :data:`NAME_PROMPT` with the query →
    the target named in words (:func:`wise_rl.testbed.shapeworld.queries.name_shape`), no tags, no box."""
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
                prompt_mix: dict[str, float] | None = None, name_share: float = 0.0,
                cell: int | None = None, named_box_share: float = 0.0,
                described_box_share: float = 0.0, reasoned_box_share: float = 0.0,
                cell_words: bool = False,
                family_weights: dict[str, float] | None = None) -> Iterator[dict[str, Any]]:
    """Endless SFT rows of fresh scenes, rendered ``chunk`` at a time (``timer`` gets the rendering seconds): each
    scene becomes a :func:`describe_row` with probability ``describe_share``, a :func:`name_row` with probability
    ``name_share`` (one seeded draw), else a
    :func:`pretrain_row` whose question is worded by a template drawn from ``prompt_mix`` (name → weight;
    default: ``answer-only`` alone), named first (``pretrain_row(named=True)``) on a ``named_box_share`` of those
    not worded by ``answer-only``, which asks for the answer block alone, and of those a ``described_box_share``
    lead with the scene description (``described=True``; its own seeded draws, so the other draws stay as they
    were), and of those a ``reasoned_box_share`` with the whole detailed rationale instead (``reasoned=True``).
    With ``cell`` (px), every row also carries the target's cells
    (:func:`wise_rl.testbed.pretrain.attention_supervision.target_cells`; zeros on rows that describe the scene or reason
    over it, where the completion looks at every shape), and with ``cell_words`` the words of every cell
    (:func:`wise_rl.testbed.shapeworld.cell_words.cell_words`, whatever the row asks). ``family_weights`` tilts which query
    families the scenes are drawn for (:func:`parse_family_weights`; default: all alike)."""
    import numpy as np

    from wise_rl.testbed.pretrain.attention_supervision import CELLS_KEY, target_cells
    from wise_rl.testbed.shapeworld import iter_samples
    from wise_rl.testbed.shapeworld.cell_words import CELL_WORDS_KEY
    from wise_rl.testbed.shapeworld.cell_words import cell_words as words_of

    samples = iter_samples(seed, image_size=image_size, start=start, mask_format="numpy",
                           family_weights=family_weights,
                           describe=describe_share > 0 or name_share > 0 or named_box_share > 0,
                           scene_columns=(lambda scene: {CELL_WORDS_KEY: words_of(scene, cell)})
                           if cell_words else None)
    if cell_words and cell is None:
        raise ValueError("stream_rows: cell_words needs the cell size (cell=…)")
    draws = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7, start)))
    named_draws = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(8, start)))
    mix = prompt_mix or {PROMPT: 1.0}
    names, weights = list(mix), np.asarray(list(mix.values()), dtype=float)
    cdf = np.cumsum(weights / weights.sum())

    def row(sample):
        out, looks_at_target = choose(sample)
        if cell is not None:
            mask = sample["gt_mask"]
            out[CELLS_KEY] = (target_cells(mask, cell) if looks_at_target
                              else [0.0] * ((mask.shape[0] // cell) * (mask.shape[1] // cell)))
        if cell_words:
            out[CELL_WORDS_KEY] = sample[CELL_WORDS_KEY]
        return out

    def choose(sample) -> tuple[dict[str, Any], bool]:
        """The row, and whether its completion is about the target alone (not while describing the scene)."""
        u = draws.random() if describe_share or name_share else 1.0
        if u < describe_share:
            return describe_row(sample), False
        if u < describe_share + name_share:
            return name_row(sample), True
        prompt = names[0] if len(names) == 1 else names[min(int(np.searchsorted(cdf, draws.random(), side="right")),
                                                            len(names) - 1)]
        # the answer-only prompt asks for the answer block alone: its rows stay so
        named = bool(named_box_share) and prompt != PROMPT and named_draws.random() < named_box_share
        described = named and bool(described_box_share) and named_draws.random() < described_box_share
        reasoned = described and bool(reasoned_box_share) and named_draws.random() < reasoned_box_share
        return pretrain_row(sample, prompt, named=named, described=described, reasoned=reasoned), not described

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
