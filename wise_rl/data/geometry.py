"""Ground truth derived from a mask: tight bbox and the centres of the two largest inscribed circles (Seg-Zero).

Boxes are pixel-inclusive ``[x1, y1, x2, y2]``: ``x2`` is the index of the last target column, as the official
IoU (``(x2 - x1 + 1) * (y2 - y1 + 1)``) expects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from wise_rl.data.schema import IGNORE_INDEX


def target_pixels(mask: np.ndarray) -> np.ndarray:
    """Boolean H×W array of target pixels (value 1..254; 255 = ignore and 0 = background are not target)."""
    mask = np.asarray(mask)
    return (mask > 0) & (mask != IGNORE_INDEX)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight pixel-inclusive bbox of the target pixels. Raises ValueError on an empty mask."""
    target = target_pixels(mask)
    ys, xs = np.nonzero(target)
    if xs.size == 0:
        raise ValueError("empty mask: no target pixels to derive a bbox from")
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def inscribed_circle_points(mask: np.ndarray) -> list[list[float]]:
    """Centres ``[[x, y], [x, y]]`` of the two largest inscribed circles of the target region.

    The first is the pixel farthest from the background (maximum of the Euclidean distance transform); the
    second is the farthest pixel once a disc of the first circle's radius around the first centre is removed.
    A region too small for a second circle repeats the first point. Both points lie on target pixels.
    Computed on the target's bounding-box crop (everything outside it is background, and the image border counts
    as background too), which gives the same points as the whole image, several times faster on large images.
    """
    target = target_pixels(mask)
    ys, xs = np.nonzero(target)
    if xs.size == 0:
        raise ValueError("empty mask: no target pixels to place points in")
    x0, y0 = int(xs.min()), int(ys.min())
    crop = target[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1]
    return [[x + x0, y + y0] for x, y in _inscribed_points(crop)]


def _inscribed_points(target: np.ndarray) -> list[list[float]]:
    """The two-circle search on a boolean array, with the array border counted as background."""
    dist = ndimage.distance_transform_edt(np.pad(target, 1))[1:-1, 1:-1]
    y1, x1 = np.unravel_index(int(np.argmax(dist)), dist.shape)
    radius = float(dist[y1, x1])
    yy, xx = np.ogrid[: target.shape[0], : target.shape[1]]
    rest = target & ((yy - y1) ** 2 + (xx - x1) ** 2 > radius**2)
    if not rest.any():
        return [[float(x1), float(y1)], [float(x1), float(y1)]]
    dist2 = ndimage.distance_transform_edt(np.pad(rest, 1))[1:-1, 1:-1]
    y2, x2 = np.unravel_index(int(np.argmax(dist2)), dist2.shape)
    return [[float(x1), float(y1)], [float(x2), float(y2)]]
