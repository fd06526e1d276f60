"""Coordinate frames: the one place coordinates change frame (original pixels ↔ the frame a model answers in).

A :class:`Frame` is one value, named by a string:

- ``absS`` (``abs840``, ``abs112``, …): absolute pixels of the image resized to a square of side S (Qwen2.5-VL as
  WISE and Seg-Zero train it: S = 840). The model sees the S×S image (:meth:`Frame.model_image`).
- ``rel1000``: relative integers in [0, 1000] of the image as given (Qwen2-VL, Qwen3-VL, Qwen3.5 grounding). The
  processor resizes the image; the coordinates do not depend on that size.

In both, a point ``(x, y)`` of an image of original size ``(W, H)`` is ``(x · side / W, y · side / H)`` with
``side`` = S or 1000, so every conversion is one formula and a value in one frame converts to another exactly
(:func:`convert_bbox`: ``v · side_b / side_a``). The functions below take a ``Frame``, its name, or an int S
(meaning ``absS``, the older signature). Masks: ``absS`` resizes to S×S by nearest neighbour
(:func:`mask_to_model`), ``rel1000`` keeps the mask as given.

Thresholds the official WISE code writes in 840-pixel units (box L1 < 10 px, point distance < 100 px) are
fractions of the side (1.19 % and 11.9 %); :func:`scale_threshold` gives them in any frame
(``value · side / 840``: ≈ 11.9 and ≈ 119 in ``rel1000``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from wise_rl.errors import ConfigError

DEFAULT_MODEL_SIZE = 840
REFERENCE_SIDE = 840  # the official WISE thresholds are written in pixels of an 840×840 image
RELATIVE_SIDE = 1000
_NAME_RE = re.compile(r"(abs)(\d+)|(rel)(1000)")


@dataclass(frozen=True)
class Frame:
    """A coordinate frame: ``relative`` False → absolute pixels of a ``side``² square; True → [0, side] relative."""

    side: int
    relative: bool = False

    def __post_init__(self):
        if int(self.side) <= 0:
            raise ConfigError(f"frame: the side (model_size) must be positive, got {self.side}")
        if self.relative and self.side != RELATIVE_SIDE:
            raise ConfigError(f"frame: the relative frame is rel{RELATIVE_SIDE}, got rel{self.side}")

    @classmethod
    def parse(cls, value: FrameLike) -> Frame:
        """``Frame`` → itself; ``"abs840"``/``"rel1000"`` → the frame; an int S (or ``"840"``) → ``absS``.
        Anything else raises :class:`ConfigError` naming the accepted names."""
        if isinstance(value, Frame):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return cls(int(value))
        if isinstance(value, str):
            text = value.strip().lower()
            if text.isdigit():
                return cls(int(text))
            match = _NAME_RE.fullmatch(text)
            if match:
                return cls(int(match.group(2))) if match.group(1) else cls(RELATIVE_SIDE, relative=True)
        raise ConfigError(f"frame: {value!r} is not a frame; expected absS (e.g. abs840) or rel{RELATIVE_SIDE}")

    def __str__(self) -> str:
        return f"rel{self.side}" if self.relative else f"abs{self.side}"

    @property
    def name(self) -> str:
        return str(self)

    def scales(self, image_size: Sequence[float]) -> tuple[float, float]:
        """``(side / W, side / H)`` for an original image of ``(W, H)`` pixels; non-positive sizes raise."""
        width, height = float(image_size[0]), float(image_size[1])
        if width <= 0 or height <= 0:
            raise ValueError(f"image_size must be positive (W, H), got {tuple(image_size)}")
        return self.side / width, self.side / height

    def model_image(self, image: Image.Image) -> Image.Image:
        """The RGB image the model is shown: ``absS`` the S×S bicubic resize (as Qwen's processors resize);
        ``rel1000`` the image as given (the processor resizes it; the coordinates do not depend on it)."""
        image = image.convert("RGB")
        if self.relative or image.size == (self.side, self.side):
            return image
        return image.resize((self.side, self.side), Image.BICUBIC)


FrameLike = Frame | str | int


def row_frame(row: Mapping) -> Frame:
    """The frame a sample-schema row's ``gt_bbox``/``gt_points`` are written in: its ``frame`` column, else
    ``abs{model_size}`` (rows written before the column existed are absolute pixels of their square image)."""
    name = row.get("frame")
    if name:
        return Frame.parse(name)
    size = row.get("model_size")
    if size is None:
        raise ConfigError("a row has neither a 'frame' nor a 'model_size' column: its coordinates have no frame")
    return Frame(int(size))


def scale_threshold(value: float, frame: FrameLike, reference: int = REFERENCE_SIDE) -> float:
    """A distance written in pixels of a ``reference``² image (the official WISE 840) in ``frame`` units:
    ``value · side / reference`` (10 px → 11.9 in ``rel1000``, 1.33 in ``abs112``)."""
    return float(value) * Frame.parse(frame).side / float(reference)


def convert_bbox(bbox: Sequence[float], source: FrameLike, target: FrameLike) -> list[float]:
    """A box in ``source`` → ``target`` (both frames of the same image): ``v · side_target / side_source``."""
    k = Frame.parse(target).side / Frame.parse(source).side
    return [float(v) * k for v in bbox]


def convert_points(points: Sequence[Sequence[float]], source: FrameLike, target: FrameLike) -> list[list[float]]:
    """Points in ``source`` → ``target`` (both frames of the same image)."""
    k = Frame.parse(target).side / Frame.parse(source).side
    return [[float(x) * k, float(y) * k] for x, y in points]


def _scales(image_size: Sequence[float], frame: FrameLike) -> tuple[float, float]:
    return Frame.parse(frame).scales(image_size)


def bbox_to_model(bbox: Sequence[float], image_size: Sequence[float], frame: FrameLike = DEFAULT_MODEL_SIZE):
    """``[x1, y1, x2, y2]`` in original pixels → ``frame``."""
    sx, sy = _scales(image_size, frame)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1 * sx, y1 * sy, x2 * sx, y2 * sy]


def bbox_to_original(bbox: Sequence[float], image_size: Sequence[float], frame: FrameLike = DEFAULT_MODEL_SIZE):
    """``[x1, y1, x2, y2]`` in ``frame`` → original pixels."""
    sx, sy = _scales(image_size, frame)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1 / sx, y1 / sy, x2 / sx, y2 / sy]


def points_to_model(points: Sequence[Sequence[float]], image_size, frame: FrameLike = DEFAULT_MODEL_SIZE):
    """``[[x, y], …]`` in original pixels → ``frame``."""
    sx, sy = _scales(image_size, frame)
    return [[float(x) * sx, float(y) * sy] for x, y in points]


def points_to_original(points: Sequence[Sequence[float]], image_size, frame: FrameLike = DEFAULT_MODEL_SIZE):
    """``[[x, y], …]`` in ``frame`` → original pixels."""
    sx, sy = _scales(image_size, frame)
    return [[float(x) / sx, float(y) / sy] for x, y in points]


def answer_to_original(answer: dict, image_size, frame: FrameLike = DEFAULT_MODEL_SIZE) -> dict:
    """A parsed answer (``bbox``, ``points_1``, ``points_2``) rescaled from ``frame`` to the original pixels."""
    p1, p2 = points_to_original([answer["points_1"], answer["points_2"]], image_size, frame)
    return {"bbox": bbox_to_original(answer["bbox"], image_size, frame), "points_1": p1, "points_2": p2}


def image_to_model(image: Image.Image, frame: FrameLike = DEFAULT_MODEL_SIZE) -> Image.Image:
    """The image the model sees in ``frame`` (:meth:`Frame.model_image`)."""
    return Frame.parse(frame).model_image(image)


def mask_to_model(mask: np.ndarray, frame: FrameLike = DEFAULT_MODEL_SIZE) -> np.ndarray:
    """An H×W uint8 mask (1 = target, 255 = ignore) in ``frame``: ``absS`` resizes it to S×S by nearest
    neighbour, ``rel1000`` keeps it as given."""
    frame = Frame.parse(frame)
    mask = np.asarray(mask, dtype=np.uint8)
    if frame.relative or mask.shape == (frame.side, frame.side):
        return mask
    return np.asarray(Image.fromarray(mask).resize((frame.side, frame.side), Image.NEAREST), dtype=np.uint8)


def mask_to_original(mask: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """A model-frame mask resized back to ``(W, H)`` by nearest neighbour."""
    width, height = int(image_size[0]), int(image_size[1])
    mask = np.asarray(mask, dtype=np.uint8)
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST), dtype=np.uint8)
