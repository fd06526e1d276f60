"""Model frame <-> original frame: the one place coordinates change frame.

The model sees every image resized to a square of ``model_size`` pixels (840 by default, as the WISE datasets do)
and answers in that square. Ground truth is stored in the model frame; masks are scored on the original image.
A point ``(x, y)`` of an image of original size ``(W, H)`` is ``(x * S / W, y * S / H)`` in the model frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

DEFAULT_MODEL_SIZE = 840


def _scales(image_size: Sequence[float], model_size: int) -> tuple[float, float]:
    width, height = float(image_size[0]), float(image_size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (W, H), got {tuple(image_size)}")
    if model_size <= 0:
        raise ValueError(f"model_size must be positive, got {model_size}")
    return model_size / width, model_size / height


def bbox_to_model(bbox: Sequence[float], image_size: Sequence[float], model_size: int = DEFAULT_MODEL_SIZE):
    """``[x1, y1, x2, y2]`` in original pixels → model frame."""
    sx, sy = _scales(image_size, model_size)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1 * sx, y1 * sy, x2 * sx, y2 * sy]


def bbox_to_original(bbox: Sequence[float], image_size: Sequence[float], model_size: int = DEFAULT_MODEL_SIZE):
    """``[x1, y1, x2, y2]`` in the model frame → original pixels."""
    sx, sy = _scales(image_size, model_size)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1 / sx, y1 / sy, x2 / sx, y2 / sy]


def points_to_model(points: Sequence[Sequence[float]], image_size, model_size: int = DEFAULT_MODEL_SIZE):
    sx, sy = _scales(image_size, model_size)
    return [[float(x) * sx, float(y) * sy] for x, y in points]


def points_to_original(points: Sequence[Sequence[float]], image_size, model_size: int = DEFAULT_MODEL_SIZE):
    sx, sy = _scales(image_size, model_size)
    return [[float(x) / sx, float(y) / sy] for x, y in points]


def answer_to_original(answer: dict, image_size, model_size: int = DEFAULT_MODEL_SIZE) -> dict:
    """A parsed answer (``bbox``, ``points_1``, ``points_2``) rescaled from the model frame to the original."""
    p1, p2 = points_to_original([answer["points_1"], answer["points_2"]], image_size, model_size)
    return {"bbox": bbox_to_original(answer["bbox"], image_size, model_size), "points_1": p1, "points_2": p2}


def image_to_model(image: Image.Image, model_size: int = DEFAULT_MODEL_SIZE) -> Image.Image:
    """The square RGB image the model sees (bicubic, as Qwen's processors resize)."""
    image = image.convert("RGB")
    if image.size == (model_size, model_size):
        return image
    return image.resize((model_size, model_size), Image.BICUBIC)


def mask_to_model(mask: np.ndarray, model_size: int = DEFAULT_MODEL_SIZE) -> np.ndarray:
    """An H×W uint8 mask (1 = target, 255 = ignore) resized to the model frame by nearest neighbour."""
    mask = np.asarray(mask, dtype=np.uint8)
    if mask.shape == (model_size, model_size):
        return mask
    return np.asarray(Image.fromarray(mask).resize((model_size, model_size), Image.NEAREST), dtype=np.uint8)


def mask_to_original(mask: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """A model-frame mask resized back to ``(W, H)`` by nearest neighbour."""
    width, height = int(image_size[0]), int(image_size[1])
    mask = np.asarray(mask, dtype=np.uint8)
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST), dtype=np.uint8)
