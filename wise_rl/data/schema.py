"""The one internal sample schema every loader produces and every stage reads.

A sample (one row of a ``datasets.Dataset``)::

    id          str                 unique within the source
    image       PIL.Image (RGB)     the model-frame image: the original resized to model_size × model_size
    query       str                 the referring expression / reasoning question
    image_size  [W, H] (int)        size of the ORIGINAL image
    model_size  int                 side of the square model frame (840 by default)
    gt_bbox     [x1, y1, x2, y2]    model frame, float
    gt_points   [[x, y], [x, y]]    model frame, float: centres of the two largest inscribed circles (None on a
                                    box-only row of your own data: no points and no mask to derive them from)
    gt_mask     PIL.Image (L)|None  model frame, model_size × model_size, 1 = target, 0 = background, 255 = ignore
    detailed    str | None          a detailed rationale (ShapeWorld, SFT data)
    concise     str | None          a concise rationale
    source      str                 which loader produced the row
    frame       str | None          the frame gt_bbox/gt_points are written in (``wise_rl.frames``: ``abs840``,
                                    ``rel1000``); None: ``abs{model_size}`` (rows written before the column)

Evaluation asks loaders for ``original_mask`` (L image of size W×H, None without a mask): LISA scores on the
original frame; and ``original_image`` (the original RGB image, None where the source has none: refCOCOg_840
stores 840² images): SAM2 at evaluation segments it, as the official WISE evaluation and LISA do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image as PILImage

SAMPLE_COLUMNS = (
    "id", "image", "query", "image_size", "model_size", "gt_bbox", "gt_points", "gt_mask", "detailed", "concise",
    "source", "frame",
)
IGNORE_INDEX = 255


def sample_features(with_original_mask: bool = False):
    from datasets import Features, Image, Sequence, Value  # only where a dataset is built: metrics stay light

    features = {
        "id": Value("string"),
        "image": Image(),
        "query": Value("string"),
        "image_size": Sequence(Value("int32"), length=2),
        "model_size": Value("int32"),
        "gt_bbox": Sequence(Value("float32"), length=4),
        "gt_points": Sequence(Sequence(Value("float32"), length=2), length=2),
        "gt_mask": Image(),
        "detailed": Value("string"),
        "concise": Value("string"),
        "source": Value("string"),
        "frame": Value("string"),
    }
    if with_original_mask:
        features["original_mask"] = Image()
        features["original_image"] = Image()
    return Features(features)


def as_mask_array(mask: Any) -> np.ndarray | None:
    """A mask given as PIL image, array, nested list or bools → H×W uint8 array (None stays None)."""
    if mask is None:
        return None
    if isinstance(mask, PILImage.Image):
        return np.asarray(mask.convert("L") if mask.mode not in ("L", "1", "P") else mask, dtype=np.uint8)
    arr = np.asarray(mask)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H×W), got shape {arr.shape}")
    return arr.astype(np.uint8)


def mask_to_image(mask: np.ndarray | None) -> PILImage.Image | None:
    """Store a uint8 mask losslessly as an 8-bit PNG image (what the ``gt_mask`` column holds)."""
    if mask is None:
        return None
    return PILImage.fromarray(np.asarray(mask, dtype=np.uint8), mode="L")
