"""ShapeWorld: procedurally generated reasoning segmentation that a tiny model can learn from scratch.

A scene is a square RGB image (``image_size`` px, 112 by default; it IS the model frame) with 2–4 flat-coloured,
non-overlapping shapes of roughly 14–30 px (scaled with the image size) on a strong position-bearing background
gradient (red grows left → right, green top → bottom). Shapes are rasterised once per (kind, size) as boolean
patches, and the image is painted from those same patches, so every shape's mask is exactly the pixels that show
its colour.

Each sample asks a query with exactly one answer in its scene, from five families (``FAMILY_WEIGHTS``):

``attribute``    plain reference: "the green triangle", "the circle", "the red shape"
``superlative``  size comparison by pixel area: "the largest shape", "the smallest red shape"
``counting``     corners/sides: "the shape with the most corners", "the shape with exactly four sides",
                 "the shape with one more corner than the red square" (circle 0, triangle 3, square 4, …)
``position``     "the topmost shape", "the leftmost circle", "the shape to the left of the blue circle",
                 "the shape closest to the yellow square"
``odd_one_out``  "the shape whose colour differs from all the others", "the only shape that is not a circle"

Uniqueness is enforced with margins so that answers are visible, not just computable: superlatives need the
winner's area to differ from the runner-up's by a factor ≥ ``AREA_RATIO``; extremes need a centre gap ≥
``EXTREME_GAP`` px (at 112 px); "left of R" needs exactly one shape whose centre is more than ``RELATIVE_GAP`` px
to the left of R's, within 45° of the horizontal, and no shape within ``RELATIVE_GAP`` of R's x (ambiguous);
"closest to R" needs the second distance ≥ ``AREA_RATIO`` × the first. Scenes (or queries) that fail are
resampled.

Each row carries a ``detailed`` rationale that lists the shapes, states the evidence and concludes, and a
``concise`` one of a few words that names the deciding fact and the target's colour and/or kind.

Ground truth: ``gt_mask`` (1 = target, 0 = background), ``gt_bbox`` = ``mask_bbox(mask)`` (tight, pixel-inclusive),
``gt_points`` = ``inscribed_circle_points(mask)``. Extra columns: ``family`` (str), ``target_index`` (int, index
into the scene's shapes), ``shape_boxes`` (every shape's tight bbox, scene order) for the random-shape baseline.

Randomness: scene ``i`` of a split is drawn from ``np.random.default_rng(SeedSequence(seed, spawn_key=(k, i)))``
with ``k`` = 0 for train, 1 for test and 2 for :func:`iter_samples`, so splits are disjoint streams, a row does not
depend on how many rows or processes were asked for, and the same seed gives byte-identical images.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from wise_rl.data.geometry import inscribed_circle_points, mask_bbox
from wise_rl.metrics import box_iou

SOURCE = "shapeworld"
BASE_SIZE = 112  # the frame the default sizes and margins are expressed in; they scale with image_size

CORNERS: dict[str, int] = {"circle": 0, "triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
KINDS: tuple[str, ...] = tuple(CORNERS)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (60, 230, 90),
    "blue": (40, 90, 230),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
FAMILY_WEIGHTS: dict[str, float] = {
    "attribute": 0.15,
    "superlative": 0.2,
    "counting": 0.2,
    "position": 0.25,
    "odd_one_out": 0.2,
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_WEIGHTS)

SIZE_RANGE = (14, 30)  # shape extent in px at 112 px
MARGIN = 3  # min gap in px between shape boxes at 112 px
BORDER = 2  # min gap in px between a shape and the image edge
AREA_RATIO = 1.3
EXTREME_GAP = 6.0
RELATIVE_GAP = 4.0
# The background is the only absolute position cue a Qwen2.5-VL sees: its vision tower and M-RoPE are relative
# (and RoPE rotates keys, not the values that carry features to the answer). A strong ramp made a from-scratch
# `small` model localise ~5× faster than a faint one (one-shape probe, 16k scenes, 2026-11-25: mean box IoU 0.14
# at span 150 vs 0.03 at 48). The base is dark and every colour keeps ≥ 40 levels of contrast somewhere.
GRADIENT_BASE = (20, 20, 50)
GRADIENT_SPAN = 150  # red rises by this much from the left edge to the right, green from top to bottom

_COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
_STREAM_KEYS = {"train": 0, "test": 1, "stream": 2}
_NUMBER_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


# ----------------------------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """One shape of a scene. ``box`` = tight pixel-inclusive ``(x1, y1, x2, y2)``; ``patch`` = its boolean mask
    over that box; ``size`` = the extent (px) it was drawn at; ``area`` = its pixel count."""

    kind: str
    colour: str
    size: int
    box: tuple[int, int, int, int]
    area: int
    patch: np.ndarray = field(repr=False, compare=False)

    @property
    def corners(self) -> int:
        return CORNERS[self.kind]

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"

    def mask(self, image_size: int) -> np.ndarray:
        """H×W uint8 mask, 1 on this shape's pixels."""
        out = np.zeros((image_size, image_size), dtype=np.uint8)
        x1, y1, x2, y2 = self.box
        out[y1 : y2 + 1, x1 : x2 + 1][self.patch] = 1
        return out


@dataclass
class Scene:
    """A rendered scene: the RGB image and its shapes (scene order); ``masks[i]`` is shape i's exact mask."""

    image: Image.Image
    shapes: list[Shape]
    image_size: int

    def mask(self, index: int) -> np.ndarray:
        return self.shapes[index].mask(self.image_size)

    @property
    def masks(self) -> list[np.ndarray]:
        return [s.mask(self.image_size) for s in self.shapes]


@lru_cache(maxsize=1024)
def _patch(kind: str, size: int) -> np.ndarray:
    """Boolean mask of ``kind`` drawn in a ``size``×``size`` box, trimmed to its pixels (read-only, cached).

    circle: the inscribed disc; square: the full box; triangle: apex at top centre, base along the bottom;
    pentagon / hexagon: regular, circumradius (size − 1)/2, pentagon pointing up, hexagon with flat top.
    """
    if kind not in CORNERS:
        raise ValueError(f"unknown shape kind {kind!r}; known: {', '.join(KINDS)}")
    if size < 3:
        raise ValueError(f"shape size must be at least 3 px, got {size}")
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    m = size - 1
    if kind == "circle":
        draw.ellipse([0, 0, m, m], fill=1)
    elif kind == "square":
        draw.rectangle([0, 0, m, m], fill=1)
    elif kind == "triangle":
        draw.polygon([(m / 2.0, 0), (m, m), (0, m)], fill=1)
    else:
        n = CORNERS[kind]
        start = -90.0 if kind == "pentagon" else 0.0
        r = m / 2.0
        pts = [
            (r + r * math.cos(math.radians(start + 360.0 * k / n)), r + r * math.sin(math.radians(start + 360.0 * k / n)))
            for k in range(n)
        ]
        draw.polygon(pts, fill=1)
    arr = np.asarray(img, dtype=bool)
    ys = np.flatnonzero(arr.any(axis=1))
    xs = np.flatnonzero(arr.any(axis=0))
    out = np.ascontiguousarray(arr[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1])
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1024)
def _patch_area(kind: str, size: int) -> int:
    return int(_patch(kind, size).sum())


@lru_cache(maxsize=1024)
def _patch_geometry(kind: str, size: int) -> tuple[list[float], list[list[float]]]:
    """``mask_bbox`` and ``inscribed_circle_points`` of the patch, in patch coordinates (cached)."""
    patch = _patch(kind, size).astype(np.uint8)
    return mask_bbox(patch), inscribed_circle_points(patch)


@lru_cache(maxsize=16)
def _background(image_size: int, gradient: float) -> np.ndarray:
    """The background, H×W×3 uint8: ``R = base_R + g·SPAN·x/(S−1)``, ``G = base_G + g·SPAN·y/(S−1)``, ``B = base_B``."""
    ramp = np.linspace(0.0, gradient * GRADIENT_SPAN, image_size)
    bg = np.empty((image_size, image_size, 3), dtype=np.float64)
    bg[..., 0] = GRADIENT_BASE[0] + ramp[None, :]
    bg[..., 1] = GRADIENT_BASE[1] + ramp[:, None]
    bg[..., 2] = GRADIENT_BASE[2]
    out = np.clip(np.rint(bg), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def _scale(image_size: int) -> float:
    return image_size / BASE_SIZE


def default_size_range(image_size: int) -> tuple[int, int]:
    s = _scale(image_size)
    return max(3, round(SIZE_RANGE[0] * s)), max(3, round(SIZE_RANGE[1] * s))


def _layout(
    rng: np.random.Generator,
    image_size: int,
    kinds: Sequence[str],
    colours: Sequence[str],
    sizes: Sequence[int],
    margin: int,
    border: int,
    max_tries: int = 50,
) -> list[Shape]:
    """Place the shapes (largest first) at uniform random positions so that boxes stay ``margin`` px apart."""
    patches = [_patch(k, int(s)) for k, s in zip(kinds, sizes)]
    for p in patches:
        if max(p.shape) + 2 * border > image_size:
            raise ValueError(f"a shape of {max(p.shape)} px does not fit a {image_size} px image")
    order = sorted(range(len(patches)), key=lambda i: -patches[i].size)
    for _ in range(max_tries):
        boxes: dict[int, tuple[int, int, int, int]] = {}
        placed = np.empty((len(order), 4), dtype=np.int64)
        ok = True
        u = rng.random((len(order), 32, 2))  # 32 candidate top-left corners per shape, one draw for all
        for k, i in enumerate(order):
            h, w = patches[i].shape
            span = np.asarray([image_size - 2 * border - w + 1, image_size - 2 * border - h + 1])
            cand = border + (u[k] * span).astype(np.int64)
            j = 0
            if k:
                x1, y1 = cand[:, 0:1], cand[:, 1:2]
                p = placed[:k]
                apart = (
                    (x1 > p[:, 2] + margin)
                    | (x1 + (w - 1 + margin) < p[:, 0])
                    | (y1 > p[:, 3] + margin)
                    | (y1 + (h - 1 + margin) < p[:, 1])
                ).all(axis=1)
                hits = np.flatnonzero(apart)
                if hits.size == 0:
                    ok = False
                    break
                j = int(hits[0])
            bx, by = int(cand[j, 0]), int(cand[j, 1])
            boxes[i] = (bx, by, bx + w - 1, by + h - 1)
            placed[k] = boxes[i]
        if ok:
            return [
                Shape(kinds[i], colours[i], int(sizes[i]), boxes[i], _patch_area(kinds[i], int(sizes[i])), patches[i])
                for i in range(len(patches))
            ]
    raise RuntimeError(
        f"could not place {len(patches)} shapes of sizes {list(sizes)} in {image_size} px after {max_tries} tries"
    )


def _paint(shapes: Sequence[Shape], image_size: int, gradient: float) -> Image.Image:
    img = _background(image_size, float(gradient)).copy()
    for s in shapes:
        x1, y1, x2, y2 = s.box
        img[y1 : y2 + 1, x1 : x2 + 1][s.patch] = COLOURS[s.colour]
    return Image.fromarray(img, mode="RGB")


def _random_attributes(rng: np.random.Generator, n: int, image_size: int, size_range=None):
    """Uniform kinds, colours (with repetition) and sizes in [lo, hi], from one draw of 3×n uniforms."""
    lo, hi = size_range or default_size_range(image_size)
    u = rng.random((3, n))
    kinds = [KINDS[i] for i in (u[0] * len(KINDS)).astype(np.int64).tolist()]
    colours = [_COLOUR_NAMES[i] for i in (u[1] * len(_COLOUR_NAMES)).astype(np.int64).tolist()]
    sizes = (lo + (u[2] * (hi - lo + 1)).astype(np.int64)).tolist()
    return kinds, colours, sizes


def render_scene(
    rng: np.random.Generator,
    image_size: int = 112,
    n_shapes: int | None = None,
    kinds: Sequence[str] | None = None,
    colours: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    size_range: tuple[int, int] | None = None,
    margin: int | None = None,
    border: int = BORDER,
    gradient: float = 1.0,
) -> Scene:
    """Draw one scene. Unspecified attributes are random: ``n_shapes`` in 2..4, kinds and colours uniform (with
    repetition), sizes (extent in px) uniform in ``size_range`` (default 14–30 px scaled by ``image_size``/112).
    ``margin`` (default 3 px scaled) is the minimum gap between shape boxes; ``gradient`` scales the background
    gradient (0 = flat background)."""
    given = [v for v in (kinds, colours, sizes) if v is not None]
    if n_shapes is None:
        n_shapes = len(given[0]) if given else int(rng.integers(2, 5))
    if any(len(v) != n_shapes for v in given):
        raise ValueError(f"kinds/colours/sizes must all have n_shapes={n_shapes} entries")
    rk, rc, rs = _random_attributes(rng, n_shapes, image_size, size_range)
    kinds = list(kinds) if kinds is not None else rk
    colours = list(colours) if colours is not None else rc
    sizes = list(sizes) if sizes is not None else rs
    for c in colours:
        if c not in COLOURS:
            raise ValueError(f"unknown colour {c!r}; known: {', '.join(COLOURS)}")
    if margin is None:
        margin = max(1, round(MARGIN * _scale(image_size)))
    shapes = _layout(rng, image_size, kinds, colours, sizes, margin, border)
    return Scene(_paint(shapes, image_size, gradient), shapes, image_size)


# ----------------------------------------------------------------------------------------------------------------
# Language helpers
# ----------------------------------------------------------------------------------------------------------------
def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _where(shape: Shape, image_size: int) -> str:
    """Coarse location by thirds of the frame: 'at the top left', 'on the right', 'in the centre', …"""
    cx, cy = shape.centre
    col = "left" if cx < image_size / 3 else ("right" if cx >= 2 * image_size / 3 else "")
    row = "top" if cy < image_size / 3 else ("bottom" if cy >= 2 * image_size / 3 else "")
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the centre"


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _listing(shapes: Sequence[Shape]) -> str:
    return _join([_a(s.name) for s in shapes])


def describe_scene(scene: Scene) -> str:
    """The scene described without any query: the shapes, then one sentence per shape (place, width, corners).

    The perception half of every detailed rationale, in its first wording ("The image shows {n} shapes: …" +
    :func:`_survey`); the base model learns it next to grounding so that it can still write (see
    :mod:`wise_rl.pretrain`)."""
    shapes = scene.shapes
    n = _NUMBER_WORDS.get(len(shapes), str(len(shapes)))
    return f"The image shows {n} shapes: {_listing(shapes)}. {_survey(shapes, scene.image_size)}"


def name_shape(scene: Scene, index: int) -> str:
    """Shape ``index`` named in words: 'the {colour} {kind} {where}' (e.g. 'the red pentagon at the bottom'), the
    words the rationales use for it."""
    shape = scene.shapes[index]
    return f"the {shape.name} {_where(shape, scene.image_size)}"


def _intro(rng: np.random.Generator, shapes: Sequence[Shape], image_size: int, query: str) -> str:
    n = _NUMBER_WORDS.get(len(shapes), str(len(shapes)))
    scene = _pick(
        rng,
        (
            "The image shows {n} shapes: {list}.",
            "There are {n} shapes in the scene: {list}.",
            "I can see {n} shapes: {list}.",
        ),
    ).format(n=n, list=_listing(shapes))
    ask = _pick(rng, ("The question asks for {q}.", "I need to find {q}.", "We are looking for {q}.")).format(q=query)
    return f"{scene} {_survey(shapes, image_size)} {ask}"


def _survey(shapes: Sequence[Shape], image_size: int) -> str:
    """One sentence per shape with what a query can hinge on (place, width, corners): the walk through the
    evidence that brings the detailed rationale near the length of a real verbose chain of thought (Seg-Zero's
    run to 110–165 tokens), so the verbose baseline costs about what it costs on real data."""
    sentences = []
    for s in shapes:
        x1, _, x2, _ = s.box
        corners = "no corners" if s.corners == 0 else f"{s.corners} corners"
        sentences.append(f"The {s.name} is {_where(s, image_size)}, {x2 - x1 + 1} pixels wide, with {corners}.")
    return " ".join(sentences)


def _conclude(rng: np.random.Generator, shape: Shape, image_size: int, reason: str) -> str:
    """The closing sentence: the target, its coarse location and the deciding fact (``reason``, a verb phrase)."""
    return _pick(
        rng,
        (
            "So the target is the {name} {where}, which {reason}.",
            "The {name} {where} {reason}, so it is the target.",
            "Therefore the answer is the {name} {where}: it {reason}.",
        ),
    ).format(name=shape.name, where=_where(shape, image_size), reason=reason)


def _descriptors(shapes: Sequence[Shape], i: int) -> list[str]:
    """Every phrase among '{colour} {kind}', '{kind}', '{colour} shape' that picks out shape i alone."""
    s = shapes[i]
    out = []
    if sum(t.kind == s.kind for t in shapes) == 1:
        out.append(s.kind)
    if sum(t.colour == s.colour for t in shapes) == 1:
        out.append(f"{s.colour} shape")
    if sum(t.kind == s.kind and t.colour == s.colour for t in shapes) == 1:
        out.append(s.name)
    return out


def _subsets(shapes: Sequence[Shape]) -> list[tuple[str, str, list[int]]]:
    """(phrase noun, explanation, member indices): all shapes, and each colour / kind shared by ≥ 2 shapes."""
    out = [("shape", "", list(range(len(shapes))))]
    for c, k in Counter(s.colour for s in shapes).items():
        if k >= 2:
            out.append((f"{c} shape", f"Only the {c} shapes count", [i for i, s in enumerate(shapes) if s.colour == c]))
    for kind, k in Counter(s.kind for s in shapes).items():
        if k >= 2:
            out.append((kind, f"Only the {kind}s count", [i for i, s in enumerate(shapes) if s.kind == kind]))
    return out


@dataclass(frozen=True)
class _Pick:
    query: str
    target: int
    concise: str
    detailed: str
    variant: str


def _ordered_winner(values: dict[int, float], largest: bool, gap: float, ratio: bool) -> int | None:
    """Index of the unique extreme value, provided it beats the runner-up by ``gap`` (difference or ratio)."""
    if len(values) < 2:
        return None
    order = sorted(values, key=lambda i: values[i], reverse=largest)
    best, second = values[order[0]], values[order[1]]
    if ratio:
        lo, hi = (second, best) if largest else (best, second)
        return order[0] if lo > 0 and hi / lo >= gap else None
    return order[0] if abs(best - second) >= gap else None


# ----------------------------------------------------------------------------------------------------------------
# Query families: each returns a _Pick with a unique answer, or None when the scene does not support one
# ----------------------------------------------------------------------------------------------------------------
def _q_attribute(rng, shapes, S) -> _Pick | None:
    choices = [(i, d) for i in range(len(shapes)) for d in _descriptors(shapes, i)]
    if not choices:
        return None
    t, desc = _pick(rng, choices)
    target = shapes[t]
    query = f"the {desc}"
    needs_kind = desc.endswith(target.kind)
    needs_colour = desc.startswith(target.colour)
    reasons = []
    for i, s in enumerate(shapes):
        if i == t:
            continue
        kind_ok = s.kind == target.kind
        colour_ok = s.colour == target.colour
        if needs_kind and needs_colour:
            if colour_ok:
                reasons.append(f"the {s.name} is {target.colour} but not {_a(target.kind)}")
            elif kind_ok:
                reasons.append(f"the {s.name} is {_a(target.kind)} but not {target.colour}")
            else:
                reasons.append(f"the {s.name} is neither")
        elif needs_kind:
            reasons.append(f"the {s.name} is not {_a(target.kind)}")
        else:
            reasons.append(f"the {s.name} is not {target.colour}")
    evidence = "Checking each shape: " + "; ".join(reasons) + "."
    detailed = " ".join([_intro(rng, shapes, S, query), evidence, _conclude(rng, target, S, "is the only match")])
    concise = _pick(rng, ("the {name} {where}", "{name}, the only match", "{name} {where} matches")).format(
        name=target.name, where=_where(target, S)
    )
    return _Pick(query, t, concise, detailed, "attribute")


def _q_superlative(rng, shapes, S) -> _Pick | None:
    cands = []
    for noun, why, members in _subsets(shapes):
        for largest in (True, False):
            w = _ordered_winner({i: float(shapes[i].area) for i in members}, largest, AREA_RATIO, ratio=True)
            if w is not None:
                cands.append((noun, why, members, largest, w))
    if not cands:
        return None
    sub = [c for c in cands if c[1]]
    noun, why, members, largest, t = _pick(rng, sub if sub and rng.random() < 0.6 else cands)
    target = shapes[t]
    adj = _pick(rng, ("largest", "biggest")) if largest else "smallest"
    query = f"the {adj} {noun}"
    parts = [_intro(rng, shapes, S, query)]
    if why:
        parts.append(f"{why}: {_join(['the ' + shapes[i].name for i in members])}.")
    areas = [f"the {shapes[i].name} about {int(round(shapes[i].area, -1))}" for i in members]
    parts.append(f"Their areas in pixels: {_join(areas)}.")
    parts.append(_conclude(rng, target, S, f"is clearly the {'largest' if largest else 'smallest'}"))
    word = "largest" if largest else "smallest"
    concise = _pick(rng, ("the {name} is {w}", "{w} {noun}: {name}", "{name}, the {w} {noun}")).format(
        name=target.name, w=word, noun=noun
    )
    return _Pick(query, t, concise, " ".join(parts), f"{word}-{'all' if not why else 'subset'}")


def _corner_text(s: Shape) -> str:
    return f"the {s.kind} has no corners" if s.corners == 0 else f"the {s.kind} has {_NUMBER_WORDS[s.corners]}"


def _q_counting(rng, shapes, S) -> _Pick | None:
    counts = {i: float(s.corners) for i, s in enumerate(shapes)}
    cands = []  # (query, target, variant, deciding phrase)
    for most in (True, False):
        w = _ordered_winner(counts, most, 1.0, ratio=False)
        if w is not None:
            unit = _pick(rng, ("corners", "sides")) if (most or shapes[w].corners > 0) else "corners"
            cands.append((f"the shape with the {'most' if most else 'fewest'} {unit}", w,
                          "most" if most else "fewest", f"has the {'most' if most else 'fewest'} {unit}"))
    by_count = Counter(s.corners for s in shapes)
    for i, s in enumerate(shapes):
        if by_count[s.corners] != 1:
            continue
        if s.corners == 0:
            cands.append(("the shape with no corners", i, "exactly", "has no corners"))
        else:
            unit = _pick(rng, ("corners", "sides"))
            num = _NUMBER_WORDS[s.corners]
            cands.append((f"the shape with exactly {num} {unit}", i, "exactly", f"has {num} {unit}"))
        for r in range(len(shapes)):
            ref = shapes[r]
            if r == i or ref.corners == 0 or abs(s.corners - ref.corners) != 1:
                continue
            descs = _descriptors(shapes, r)
            if descs:
                more = s.corners > ref.corners
                d = _pick(rng, descs)
                cands.append((f"the shape with one {'more' if more else 'fewer'} corner than the {d}", i,
                              "relative", f"has one {'more' if more else 'fewer'} corner than the {ref.kind}"))
    if not cands:
        return None
    query, t, variant, deciding = _pick(rng, cands)
    target = shapes[t]
    intro = _intro(rng, shapes, S, query)
    lead = _pick(rng, ("Counting corners: ", "Corners per shape: ", "Let me count corners: "))
    evidence = lead + _join([_corner_text(s) for s in shapes]) + "."
    parts = [intro, evidence]
    parts.append(_conclude(rng, target, S, f"alone {deciding}"))
    n = _NUMBER_WORDS[target.corners]
    concise = _pick(
        rng,
        (f"the {target.kind} {deciding}", f"{target.name}: {n} corners", f"the {target.name}, {n} corners"),
    )
    return _Pick(query, t, concise, " ".join(parts), variant)


_AXES = {  # word: (coordinate index, largest?)
    "topmost": (1, False),
    "bottommost": (1, True),
    "leftmost": (0, False),
    "rightmost": (0, True),
}
_RELATIONS = {  # query phrase: (coordinate index, sign of ref − other that qualifies)
    "to the left of": (0, 1),
    "to the right of": (0, -1),
    "above": (1, 1),
    "below": (1, -1),
}


def _q_position(rng, shapes, S) -> _Pick | None:
    scale = _scale(S)
    ext, rel, near = [], [], []
    for noun, why, members in _subsets(shapes):
        for word, (axis, largest) in _AXES.items():
            w = _ordered_winner({i: shapes[i].centre[axis] for i in members}, largest, EXTREME_GAP * scale, False)
            if w is not None:
                ext.append((noun, why, members, word, axis, w))
    for r in range(len(shapes)):
        descs = _descriptors(shapes, r)
        if not descs:
            continue
        rc = shapes[r].centre
        for phrase, (axis, sign) in _RELATIONS.items():
            diffs = {i: sign * (rc[axis] - s.centre[axis]) for i, s in enumerate(shapes) if i != r}
            hits = [i for i, d in diffs.items() if d > RELATIVE_GAP * scale]
            if len(hits) == 1 and all(abs(d) > RELATIVE_GAP * scale for d in diffs.values()):
                # The answer must lie mostly in that direction (within 45° of the axis), not merely past R's x/y.
                if diffs[hits[0]] >= abs(rc[1 - axis] - shapes[hits[0]].centre[1 - axis]):
                    rel.append((phrase, r, _pick(rng, descs), hits[0], axis))
        if len(shapes) >= 3:
            dist = {i: math.dist(rc, s.centre) for i, s in enumerate(shapes) if i != r}
            w = _ordered_winner(dist, False, AREA_RATIO, ratio=True)
            if w is not None:
                near.append((r, _pick(rng, descs), w, dist))
    kinds = [k for k, v in (("extreme", ext), ("relative", rel), ("nearest", near)) if v]
    if not kinds:
        return None
    kind = _pick(rng, kinds)
    if kind == "extreme":
        noun, why, members, word, axis, t = _pick(rng, ext)
        target = shapes[t]
        query = f"the {word} {noun}"
        parts = [_intro(rng, shapes, S, query)]
        if why:
            parts.append(f"{why}: {_join(['the ' + shapes[i].name for i in members])}.")
        coord = "y" if axis else "x"
        label = "vertical positions (y from the top)" if axis else "horizontal positions (x from the left)"
        vals = [f"the {shapes[i].name} at {coord} {round(shapes[i].centre[axis])}" for i in members]
        parts.append(f"Their {label}: {_join(vals)}.")
        parts.append(_conclude(rng, target, S, f"is the {word}"))
        concise = _pick(rng, ("the {name} is {w}", "{w} {noun}: {name}", "the {w} is the {name}")).format(
            name=target.name, w=word, noun=noun
        )
        return _Pick(query, t, concise, " ".join(parts), "extreme")
    if kind == "relative":
        phrase, r, desc, t, axis = _pick(rng, rel)
        target, ref = shapes[t], shapes[r]
        query = f"the shape {phrase} the {desc}"
        coord = "y" if axis else "x"
        parts = [_intro(rng, shapes, S, query), f"The {ref.name} is at {coord} {round(ref.centre[axis])}."]
        others = [
            f"the {s.name} at {coord} {round(s.centre[axis])} is {phrase if i == t else _opposite(phrase)} it"
            for i, s in enumerate(shapes)
            if i != r
        ]
        parts.append(_join(others).capitalize() + ".")
        parts.append(_conclude(rng, target, S, f"is the only shape {phrase} the {ref.name}"))
        concise = _pick(rng, ("{name} {p} {ref}", "{name}, {p} the {ref}")).format(
            name=target.name, p=phrase, ref=ref.name
        )
        return _Pick(query, t, concise, " ".join(parts), "relative")
    r, desc, t, dist = _pick(rng, near)
    target, ref = shapes[t], shapes[r]
    word = _pick(rng, ("closest", "nearest"))
    query = f"the shape {word} to the {desc}"
    cx, cy = ref.centre
    parts = [
        _intro(rng, shapes, S, query),
        f"The {ref.name} is at ({round(cx)}, {round(cy)}).",
        "Distances from it: " + _join([f"the {shapes[i].name} about {round(d)} px" for i, d in dist.items()]) + ".",
        _conclude(rng, target, S, f"is clearly the {word}"),
    ]
    concise = _pick(rng, ("{name} {w} to {ref}", "{w} to the {ref}: {name}")).format(
        name=target.name, w=word, ref=ref.name
    )
    return _Pick(query, t, concise, " ".join(parts), "nearest")


def _opposite(phrase: str) -> str:
    return {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
            "below": "above"}[phrase]


def _q_odd_one_out(rng, shapes, S) -> _Pick | None:
    if len(shapes) < 3:
        return None
    cands = []
    for attr in ("colour", "kind"):
        counts = Counter(getattr(s, attr) for s in shapes)
        if len(counts) == 2 and min(counts.values()) == 1:
            odd_value = min(counts, key=counts.get)
            common = max(counts, key=counts.get)
            t = next(i for i, s in enumerate(shapes) if getattr(s, attr) == odd_value)
            cands.append((attr, t, common))
    if not cands:
        return None
    attr, t, common = _pick(rng, cands)
    target = shapes[t]
    word = "colour" if attr == "colour" else "kind"
    if rng.random() < 0.5:
        query = _pick(rng, (f"the shape whose {word} differs from all the others", f"the odd one out by {word}"))
    else:
        query = f"the only shape that is not {common if attr == 'colour' else _a(common)}"
    others = [s for i, s in enumerate(shapes) if i != t]
    repeated = Counter(s.name for s in others)
    same = _join([f"the {s.name} {_where(s, S)}" if repeated[s.name] > 1 else f"the {s.name}" for s in others])
    all_ = "both" if len(others) == 2 else "all"
    if attr == "colour":
        ev = f"{same.capitalize()} are {all_} {common}, while the {target.kind} is {target.colour}."
        concise = _pick(rng, (f"the only {target.colour} shape", f"the {target.name} is not {common}",
                              f"{target.name} among {common} shapes"))
    else:
        ev = f"{same.capitalize()} are {all_} {common}s, while the {target.colour} shape is {_a(target.kind)}."
        concise = _pick(rng, (f"the only {target.kind}", f"the {target.name} is not {_a(common)}",
                              f"{target.name} among {common}s"))
    parts = [_intro(rng, shapes, S, query), ev, _conclude(rng, target, S, "is the odd one out")]
    return _Pick(query, t, concise, " ".join(parts), attr)


_QUERY_BUILDERS = {
    "attribute": _q_attribute,
    "superlative": _q_superlative,
    "counting": _q_counting,
    "position": _q_position,
    "odd_one_out": _q_odd_one_out,
}


def _family_attributes(rng, family: str, image_size: int):
    """Scene attributes biased so that the family's queries are common (sharing colours/kinds, distinct kinds …)."""
    if family in ("odd_one_out",):
        n = int(rng.integers(3, 5))
    else:
        n = int(rng.integers(2, 5))
    kinds, colours, sizes = _random_attributes(rng, n, image_size)
    if family == "attribute" and n >= 3 and rng.random() < 0.6:
        colours[1] = colours[0]  # a distractor with the same colour …
        kinds[2] = kinds[0]  # … and one of the same kind: the full phrase is then needed
    elif family == "superlative" and rng.random() < 0.5:
        colours[1] = colours[0]  # enables "the largest red shape"
    elif family == "counting" and rng.random() < 0.7:
        kinds = [KINDS[i] for i in rng.permutation(len(KINDS))[:n]]
    elif family == "odd_one_out":
        odd = int(rng.integers(n))
        names = list(COLOURS) if rng.random() < 0.5 else list(KINDS)
        common, other = (names[i] for i in rng.choice(len(names), 2, replace=False))
        values = [other if i == odd else common for i in range(n)]
        if names[0] in COLOURS:
            colours = values
        else:
            kinds = values
    return kinds, colours, sizes


# ----------------------------------------------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------------------------------------------
def _normalise_weights(family_weights: dict[str, float] | None) -> tuple[tuple[str, ...], np.ndarray]:
    weights = dict(FAMILY_WEIGHTS if family_weights is None else family_weights)
    unknown = set(weights) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown ShapeWorld families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    names = tuple(f for f in FAMILIES if weights.get(f, 0) > 0)
    if not names or any(v < 0 for v in weights.values()):
        raise ValueError(f"family weights must be ≥ 0 with at least one > 0, got {weights}")
    p = np.asarray([weights[f] for f in names], dtype=np.float64)
    return names, p / p.sum()


def _family_cdf(family_weights: dict[str, float] | None) -> tuple[tuple[str, ...], np.ndarray]:
    key = None if family_weights is None else tuple(sorted(family_weights.items()))
    return _family_cdf_cached(key)


@lru_cache(maxsize=64)
def _family_cdf_cached(key) -> tuple[tuple[str, ...], np.ndarray]:
    names, p = _normalise_weights(None if key is None else dict(key))
    return names, np.cumsum(p)


def make_sample(
    rng: np.random.Generator,
    image_size: int = 112,
    family_weights: dict[str, float] | None = None,
    gradient: float = 1.0,
    max_tries: int = 100,
) -> tuple[dict[str, Any], Scene]:
    """One sample (schema row with ``gt_mask`` as an H×W uint8 array and no ``id``) and its scene.

    The family is drawn from ``family_weights`` first; scene and query are resampled until the query has exactly
    one answer (a RuntimeError after ``max_tries``, which the built-in families never reach)."""
    names, cdf = _family_cdf(family_weights)
    family = names[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(names) - 1)]
    for _ in range(max_tries):
        kinds, colours, sizes = _family_attributes(rng, family, image_size)
        margin = max(1, round(MARGIN * _scale(image_size)))
        shapes = _layout(rng, image_size, kinds, colours, sizes, margin, BORDER)
        pick = _QUERY_BUILDERS[family](rng, shapes, image_size)
        if pick is not None:
            break
    else:
        raise RuntimeError(f"no unique {family} query after {max_tries} scenes")
    image = _paint(shapes, image_size, gradient)
    scene = Scene(image, shapes, image_size)
    target = shapes[pick.target]
    mask = target.mask(image_size)
    # mask_bbox / inscribed_circle_points of the full mask, computed once per (kind, size) on the patch and
    # translated: the target's pixels are exactly its patch, and the nearest background pixel of any target pixel
    # lies within one pixel of the patch, so the distance transform (and its row-major argmax) is the same.
    bbox, points = _patch_geometry(target.kind, target.size)
    x1, y1 = target.box[0], target.box[1]
    bbox = [bbox[0] + x1, bbox[1] + y1, bbox[2] + x1, bbox[3] + y1]
    points = [[px + x1, py + y1] for px, py in points]
    row = {
        "image": image,
        "query": pick.query,
        "image_size": [image_size, image_size],
        "model_size": image_size,
        "gt_bbox": bbox,
        "gt_points": points,
        "gt_mask": mask,
        "detailed": pick.detailed,
        "concise": pick.concise,
        "source": SOURCE,
        "family": family,
        "target_index": pick.target,
        "shape_boxes": [[float(v) for v in s.box] for s in shapes],
    }
    return row, scene


def _rng_for(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_STREAM_KEYS[stream], int(index))))


def _scene_at(seed: int, stream: str, index: int, image_size: int = 112, **kwargs) -> tuple[dict[str, Any], Scene]:
    """Row ``index`` of a stream (id included) and its scene."""
    row, scene = make_sample(_rng_for(seed, stream, index), image_size, **kwargs)
    row["id"] = f"{stream}-{index:06d}"
    return row, scene


def sample_at(seed: int, stream: str, index: int, image_size: int = 112, **kwargs) -> dict[str, Any]:
    """Row ``index`` of a stream ('train', 'test' or 'stream'), ``gt_mask`` as a uint8 array, id included."""
    return _scene_at(seed, stream, index, image_size, **kwargs)[0]


def _add_words(row: dict[str, Any], scene: Scene) -> dict[str, Any]:
    row["description"] = describe_scene(scene)
    row["target_name"] = name_shape(scene, row["target_index"])
    row["shape_names"] = [shape.name for shape in scene.shapes]
    return row


def described_sample_at(seed: int, stream: str, index: int, image_size: int = 112, **kwargs) -> dict[str, Any]:
    """:func:`sample_at` plus the scene in words: ``description`` (:func:`describe_scene`), ``target_name``
    (:func:`name_shape` of the target) and ``shape_names`` ('red pentagon', … in scene order). Row ``i`` of the
    'test' stream is the scene of row ``i`` of :func:`generate_dataset`'s test split (same seed and defaults)."""
    return _add_words(*_scene_at(seed, stream, index, image_size, **kwargs))


def iter_samples(
    seed: int,
    image_size: int = 112,
    start: int = 0,
    mask_format: str = "pil",
    family_weights: dict[str, float] | None = None,
    gradient: float = 1.0,
    describe: bool = False,
) -> Iterator[dict[str, Any]]:
    """An endless stream of fresh samples in the sample schema (plus ``family``, ``target_index``,
    ``shape_boxes``, and when ``describe``: ``description`` = :func:`describe_scene`, ``target_name`` =
    :func:`name_shape` of the target and ``shape_names``), for training loops that want new scenes without building a Dataset.

    ``image`` is a PIL RGB image; ``gt_mask`` is a PIL 'L' image (``mask_format="pil"``, as a Dataset row decodes)
    or an H×W uint8 numpy array (``"numpy"``, cheaper). The stream (spawn key 2) is disjoint from the train and
    test splits of :func:`generate_dataset` with the same seed; ids are ``stream-NNNNNN``.
    """
    if mask_format not in ("pil", "numpy"):
        raise ValueError(f"mask_format must be 'pil' or 'numpy', got {mask_format!r}")
    i = start
    while True:
        row, scene = _scene_at(seed, "stream", i, image_size, family_weights=family_weights, gradient=gradient)
        if describe:
            _add_words(row, scene)
        if mask_format == "pil":
            row["gt_mask"] = Image.fromarray(row["gt_mask"], mode="L")
        yield row
        i += 1


# ----------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------
def shapeworld_features():
    """``sample_features()`` plus ``family`` (string), ``target_index`` (int32) and ``shape_boxes`` (list of
    [x1, y1, x2, y2] float32, one per shape in scene order)."""
    from datasets import Sequence as HFSequence
    from datasets import Value

    from wise_rl.data.schema import sample_features

    features = sample_features()
    features["family"] = Value("string")
    features["target_index"] = Value("int32")
    features["shape_boxes"] = HFSequence(HFSequence(Value("float32"), length=4))
    return features


def _png(image: Image.Image) -> dict[str, Any]:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return {"bytes": buf.getvalue(), "path": None}


def _encoded_rows(args: tuple[int, str, int, int, int, dict | None, float]) -> list[dict[str, Any]]:
    seed, stream, lo, hi, image_size, family_weights, gradient = args
    rows = []
    for i in range(lo, hi):
        row = sample_at(seed, stream, i, image_size, family_weights=family_weights, gradient=gradient)
        row["image"] = _png(row["image"])
        row["gt_mask"] = _png(Image.fromarray(row["gt_mask"], mode="L"))
        rows.append(row)
    return rows


def _build_split(seed, stream, n, image_size, family_weights, gradient, num_proc, progress):
    from datasets import Dataset
    from tqdm.auto import tqdm

    features = shapeworld_features()
    columns: dict[str, list] = {name: [] for name in features}
    # Rows are addressed by index, so the chunking changes nothing but the work split.
    workers = num_proc if num_proc and num_proc > 1 else 1
    chunk = 500 if workers == 1 else max(16, min(500, math.ceil(n / (4 * workers))))
    jobs = [(seed, stream, lo, min(n, lo + chunk), image_size, family_weights, gradient) for lo in range(0, n, chunk)]
    show = (n >= 2000) if progress is None else progress
    bar = tqdm(total=n, desc=f"shapeworld {stream}", unit="scene", disable=not show)

    def collect(rows):
        for row in rows:
            for name in columns:
                columns[name].append(row[name])
        bar.update(len(rows))

    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=num_proc) as pool:
            for rows in pool.map(_encoded_rows, jobs):
                collect(rows)
    else:
        for job in jobs:
            collect(_encoded_rows(job))
    bar.close()
    return Dataset.from_dict(columns, features=features)


def generate_dataset(
    n_train: int,
    n_test: int,
    seed: int = 0,
    image_size: int = 112,
    out_dir: str | None = None,
    num_proc: int | None = None,
    family_weights: dict[str, float] | None = None,
    gradient: float = 1.0,
    progress: bool | None = None,
):
    """A ``DatasetDict`` with ``train`` (n_train rows) and ``test`` (n_test rows) in :func:`shapeworld_features`.

    Train and test come from disjoint seed streams; the same arguments give identical rows and byte-identical
    images whatever ``num_proc``. ``image_size`` = [S, S] and ``model_size`` = S: the ShapeWorld image is the
    model frame. With ``out_dir`` the result is also written with ``save_to_disk``. A progress bar is shown for
    n ≥ 2000 unless ``progress`` says otherwise.
    """
    from datasets import DatasetDict

    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be ≥ 0, got {n_train}, {n_test}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 px, got {image_size}")
    _normalise_weights(family_weights)  # fail before any work
    dd = DatasetDict(
        {
            split: _build_split(seed, split, n, image_size, family_weights, gradient, num_proc, progress)
            for split, n in (("train", n_train), ("test", n_test))
        }
    )
    if out_dir is not None:
        # An empty split saved with the default sharding has no shard and cannot be reloaded (datasets 5.2):
        # give it one (empty) shard.
        dd.save_to_disk(str(out_dir), num_shards={k: 1 for k, ds in dd.items() if len(ds) == 0})
    return dd


# ----------------------------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------------------------
def _baseline_rows(data: Any) -> Iterable[dict[str, Any]]:
    cols = ("gt_bbox", "shape_boxes", "model_size")
    if hasattr(data, "select_columns"):  # a datasets.Dataset: skip decoding images
        missing = [c for c in cols if c not in data.column_names]
        if missing:
            raise ValueError(f"baseline needs columns {missing} (ShapeWorld rows), dataset has {data.column_names}")
        return data.select_columns(list(cols))
    return data


def _summary(ious: list[float]) -> dict[str, float]:
    arr = np.asarray(ious, dtype=np.float64)
    return {"n": int(arr.size), "acc@0.5": float((arr > 0.5).mean()) if arr.size else 0.0,
            "mean_iou": float(arr.mean()) if arr.size else 0.0}


def random_shape_baseline(data: Any, seed: int = 0) -> dict[str, float]:
    """Box a uniformly random shape of each scene: per row IoU(shape_boxes[j], gt_bbox), j random.
    Returns ``{"n", "acc@0.5" (fraction with IoU > 0.5), "mean_iou", "expected_acc@0.5" (mean of 1/#shapes)}``."""
    rng = np.random.default_rng(seed)
    ious, inv = [], []
    for k, row in enumerate(_baseline_rows(data)):
        boxes = row.get("shape_boxes")
        if not boxes:
            raise ValueError(f"row {k}: no shape_boxes; the random-shape baseline needs ShapeWorld rows")
        ious.append(box_iou(boxes[int(rng.integers(len(boxes)))], row["gt_bbox"]))
        inv.append(1.0 / len(boxes))
    out = _summary(ious)
    out["expected_acc@0.5"] = float(np.mean(inv)) if inv else 0.0
    return out


def centre_box_baseline(data: Any, box_size: float | None = None) -> dict[str, float]:
    """Box a constant square of side ``box_size`` (default: the mean gt box side over the data) centred in the
    model frame: ``[c − (b−1)/2, c − (b−1)/2, c + (b−1)/2, c + (b−1)/2]`` with c = (S − 1)/2."""
    rows = list(_baseline_rows(data))
    if box_size is None:
        sides = [((r["gt_bbox"][2] - r["gt_bbox"][0] + 1) + (r["gt_bbox"][3] - r["gt_bbox"][1] + 1)) / 2 for r in rows]
        box_size = float(np.mean(sides)) if sides else 1.0
    ious = []
    for r in rows:
        c = (r["model_size"] - 1) / 2.0
        h = (box_size - 1) / 2.0
        ious.append(box_iou([c - h, c - h, c + h, c + h], r["gt_bbox"]))
    out = _summary(ious)
    out["box_size"] = float(box_size)
    return out
