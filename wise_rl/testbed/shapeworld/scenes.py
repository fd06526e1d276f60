"""ShapeWorld scenes: flat-coloured shapes on a position-bearing background, drawn from boolean patches.

A scene is a square RGB image (``image_size`` px, 112 by default; it IS the model frame) with flat-coloured,
non-overlapping shapes of roughly 14–30 px (scaled with the image size, :func:`default_size_range`) on a background
gradient (red grows left → right, green top → bottom, :func:`_background`). Shapes are rasterised once per
(kind, size) as boolean patches and the image is painted from those same patches, so every shape's mask is exactly
the pixels that show its colour. Boxes are tight and pixel-inclusive ``(x1, y1, x2, y2)``; sizes are in pixels.
Bad arguments (unknown kind or colour, a shape that cannot fit) raise ``ValueError``; a layout that cannot be
placed after ``max_tries`` raises ``RuntimeError``.

Why the gradient is strong: ``docs/testbed.md``, section "ShapeWorld: the background gradient".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from wise_rl.data.geometry import inscribed_circle_points, mask_bbox

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

SIZE_RANGE = (14, 30)  # shape extent in px at 112 px
MARGIN = 3  # min gap in px between shape boxes at 112 px
BORDER = 2  # min gap in px between a shape and the image edge
# The background is the only absolute position cue a Qwen2.5-VL sees (its vision tower and M-RoPE are relative),
# so the ramp is strong; the base is dark and every colour keeps >= 40 levels of contrast somewhere.
GRADIENT_BASE = (20, 20, 50)
GRADIENT_SPAN = 150  # red rises by this much from the left edge to the right, green from top to bottom

_COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)


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
def patch_geometry(kind: str, size: int) -> tuple[list[float], list[list[float]]]:
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


def scale_factor(image_size: int) -> float:
    """``image_size / 112``: the factor the default sizes, margins and gaps (given at 112 px) are scaled by."""
    return image_size / BASE_SIZE


def default_size_range(image_size: int) -> tuple[int, int]:
    s = scale_factor(image_size)
    return max(3, round(SIZE_RANGE[0] * s)), max(3, round(SIZE_RANGE[1] * s))


def layout_shapes(
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


def paint_scene(shapes: Sequence[Shape], image_size: int, gradient: float) -> Image.Image:
    """The RGB image: the background scaled by ``gradient``, each shape's patch painted in its colour."""
    img = _background(image_size, float(gradient)).copy()
    for s in shapes:
        x1, y1, x2, y2 = s.box
        img[y1 : y2 + 1, x1 : x2 + 1][s.patch] = COLOURS[s.colour]
    return Image.fromarray(img, mode="RGB")


def random_attributes(rng: np.random.Generator, n: int, image_size: int, size_range=None):
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
    rk, rc, rs = random_attributes(rng, n_shapes, image_size, size_range)
    kinds = list(kinds) if kinds is not None else rk
    colours = list(colours) if colours is not None else rc
    sizes = list(sizes) if sizes is not None else rs
    for c in colours:
        if c not in COLOURS:
            raise ValueError(f"unknown colour {c!r}; known: {', '.join(COLOURS)}")
    if margin is None:
        margin = max(1, round(MARGIN * scale_factor(image_size)))
    shapes = layout_shapes(rng, image_size, kinds, colours, sizes, margin, border)
    return Scene(paint_scene(shapes, image_size, gradient), shapes, image_size)


