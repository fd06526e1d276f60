"""Drawing predictions on images: a translucent mask, the box and the two points (PIL only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from wise_rl.data.schema import IGNORE_INDEX


def draw_overlay(
    image: Image.Image,
    mask: np.ndarray | None = None,
    bbox: Sequence[float] | None = None,
    points: Sequence[Sequence[float]] | None = None,
    color: tuple[int, int, int] = (255, 40, 40),
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
