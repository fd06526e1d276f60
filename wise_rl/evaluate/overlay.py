"""Drawing predictions on images: a translucent mask, the box and the two points (PIL only).

:func:`draw_overlay` draws on the image at its own size; :func:`render_result` is what ``wise-rl infer`` saves:
the image enlarged (nearest neighbour, an integer factor, so pixels stay square and sharp) until its shorter side
is at least ``min_side`` px, the prediction in :data:`PREDICTION_COLOUR` (cyan: no ShapeWorld shape has it, and the
background ramp only mixes red and green over dark blue), and the ground truth in a second panel beside it when
one is known."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from wise_rl.data.schema import IGNORE_INDEX

PREDICTION_COLOUR = (0, 235, 255)  # cyan
GROUND_TRUTH_COLOUR = (255, 255, 255)


def draw_overlay(
    image: Image.Image,
    mask: np.ndarray | None = None,
    bbox: Sequence[float] | None = None,
    points: Sequence[Sequence[float]] | None = None,
    color: tuple[int, int, int] = PREDICTION_COLOUR,
    alpha: float = 0.45,
    gt_bbox: Sequence[float] | None = None,
) -> Image.Image:
    """A copy of ``image`` (RGB) with ``mask`` blended in ``color`` at ``alpha`` (pixel = (1−α)·pixel + α·color
    where mask is 1; ignore pixels 255 are not painted), the pixel-inclusive ``bbox`` outlined, both ``points`` as
    dots with a white rim and, when given, ``gt_bbox`` outlined in green. All coordinates in ``image``'s frame."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = image.convert("RGB").copy()
    width, height = out.size
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (height, width):
            raise ValueError(f"mask shape {m.shape} differs from the image (H×W = {height}×{width})")
        sel = (m > 0) & (m != IGNORE_INDEX)
        arr = np.asarray(out, dtype=np.float32)
        arr[sel] = (1.0 - alpha) * arr[sel] + alpha * np.asarray(color, dtype=np.float32)
        out = Image.fromarray(arr.round().clip(0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(width, height) / 150))
    if gt_bbox is not None:
        x1, y1, x2, y2 = (float(v) for v in gt_bbox)
        draw.rectangle([x1, y1, x2, y2], outline=(40, 200, 40), width=line)
    if bbox is not None:
        x1, y1, x2, y2 = (float(v) for v in bbox)
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=color, width=line)
    if points is not None:
        r = max(2, line * 2)
        for x, y in points:
            x, y = float(x), float(y)
            draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], fill=(255, 255, 255))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
    return out


def _upscaled_mask(mask, factor: int, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} differs from the image (H×W = {shape[0]}×{shape[1]})")
    return np.repeat(np.repeat(m, factor, axis=0), factor, axis=1)


def _upscaled_box(bbox, factor: int):
    """A pixel-inclusive box after every pixel became ``factor``×``factor`` pixels."""
    if bbox is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1 * factor, y1 * factor, (x2 + 1) * factor - 1, (y2 + 1) * factor - 1]


def _caption(panel: Image.Image, text: str, colour: tuple[int, int, int]) -> Image.Image:
    bar = max(14, panel.height // 16)
    out = Image.new("RGB", (panel.width, panel.height + bar), (0, 0, 0))
    out.paste(panel, (0, 0))
    draw = ImageDraw.Draw(out)
    draw.rectangle([4, panel.height + bar // 2 - 4, 12, panel.height + bar // 2 + 4], fill=colour)
    draw.text((18, panel.height + bar // 2), text, fill=(255, 255, 255), anchor="lm")
    return out


def scale_factor(size: tuple[int, int], min_side: int) -> int:
    """The integer factor that brings the shorter side of ``size`` (W, H) to at least ``min_side`` (≥ 1)."""
    return max(1, -(-min_side // max(1, min(size))))


def render_result(
    image: Image.Image,
    mask: np.ndarray | None = None,
    bbox: Sequence[float] | None = None,
    points: Sequence[Sequence[float]] | None = None,
    gt_mask: np.ndarray | None = None,
    gt_bbox: Sequence[float] | None = None,
    min_side: int = 448,
) -> Image.Image:
    """The image enlarged by :func:`scale_factor` (nearest) with the prediction drawn in :data:`PREDICTION_COLOUR`,
    captioned "prediction"; with ``gt_mask`` or ``gt_bbox`` a "ground truth" panel in :data:`GROUND_TRUTH_COLOUR`
    beside it. Coordinates and masks in ``image``'s own frame; output width = panels × W·k, height = H·k + caption."""
    factor = scale_factor(image.size, min_side)
    width, height = image.size
    big = image.convert("RGB").resize((width * factor, height * factor), Image.NEAREST)
    big_points = None if points is None else [[(float(x) + 0.5) * factor, (float(y) + 0.5) * factor]
                                              for x, y in points]
    pred = draw_overlay(big, mask=_upscaled_mask(mask, factor, (height, width)), bbox=_upscaled_box(bbox, factor),
                        points=big_points, color=PREDICTION_COLOUR)
    panels = [_caption(pred, "prediction" if (mask is not None or bbox is not None) else "prediction: none",
                       PREDICTION_COLOUR)]
    if gt_mask is not None or gt_bbox is not None:
        gt = draw_overlay(big, mask=_upscaled_mask(gt_mask, factor, (height, width)),
                          bbox=_upscaled_box(gt_bbox, factor), color=GROUND_TRUTH_COLOUR)
        panels.append(_caption(gt, "ground truth", GROUND_TRUTH_COLOUR))
    gap = 8 if len(panels) > 1 else 0
    out = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), panels[0].height), (0, 0, 0))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out
