"""What every source kind's row conversion shares (the loader, its per-kind converters and the LISA reader): the
errors (:class:`DataError` names source, row, column and reason; ``_RowError`` is raised inside a conversion and
gets that context attached), the required columns per kind, and the cell readers (numbers, queries, boxes, images,
masks) that raise ``_RowError`` on a bad value. This module imports no loader, so the loaders and
``wise_rl.data.lisa`` both import it without a circle.

Masks, bbox and points derived from a mask (:func:`_mask_ground_truth`): the tight pixel-inclusive bbox and the two
inscribed-circle points come from the ORIGINAL mask (``geometry.mask_bbox`` / ``inscribed_circle_points``) and are
mapped to the model frame with ``frames``: ``x' = x · S / W``, ``y' = y · S / H`` (so ``frames.bbox_to_original``
restores them exactly). ``gt_mask`` is the original mask resized by nearest neighbour to S×S (1 target,
0 background, 255 ignore), never emptied: a target thinner than a model pixel keeps every model pixel it touches
(:func:`_model_mask`, counted by the loader as ``thin_targets``).

Images (:func:`_open_image`, :func:`_model_image`): read as a viewer shows them (``wise_rl.data.images.load_image``:
EXIF orientation applied, any mode to RGB); the model image is the original resized to S×S RGB (bicubic,
``frames.image_to_model``). Bytes already S×S RGB pass through untouched; otherwise a JPEG source is re-encoded as
JPEG (quality 95) and anything else as PNG, so that a 2,000-row source stays a few hundred MB in memory.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from wise_rl import frames
from wise_rl.data.geometry import inscribed_circle_points, mask_bbox, target_pixels
from wise_rl.data.images import ImageError, load_image, needs_conversion, source_bytes
from wise_rl.data.schema import IGNORE_INDEX, as_mask_array
from wise_rl.errors import DataError  # noqa: F401  (re-exported)

KINDS = ("refcocog", "reasonseg", "lisa", "schema", "mapped")
REQUIRED_COLUMNS = {
    "refcocog": ("id", "problem", "solution", "image", "img_height", "img_width"),
    "reasonseg": ("image", "text", "mask", "image_id", "ann_id", "img_height", "img_width"),
    "schema": ("id", "image", "query", "image_size", "model_size", "gt_bbox"),
    "mapped": ("image", "query"),  # your columns, renamed by wise_rl.data.columns
}
_OPTIONAL_COLUMNS = {"schema": ("gt_points", "gt_mask", "detailed", "concise", "source", "original_mask",
                                "original_image", "frame"),
                     "mapped": ("bbox", "points", "mask", "polygons", "id", "detailed", "concise"),
                     "refcocog": ("detailed", "concise"), "reasonseg": ("detailed", "concise")}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
_META_FILES = {"dataset_info.json", "state.json", "dataset_dict.json"}


class _RowError(Exception):
    """Raised inside row conversion; turned into a DataError with the source / row context attached."""

    def __init__(self, column: str | None, code: str, reason: str):
        super().__init__(reason)
        self.column, self.code, self.reason = column, code, reason


class _MaskValue:
    """A mask read from arrow: an array, or an error found while reading it (raised during conversion)."""

    def __init__(self, array: np.ndarray | None = None, error: str | None = None, raw: Any = None):
        self.array, self.error, self.raw = array, error, raw


def _arrow_mask(col: pa.Array, i: int) -> _MaskValue:
    """Read row ``i`` of a mask column without building Python lists (ReasonSeg masks are large)."""
    scalar = col[i]
    if not scalar.is_valid:
        return _MaskValue()
    typ = col.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        rows = scalar.values
        if not (pa.types.is_list(rows.type) or pa.types.is_large_list(rows.type)):
            return _MaskValue(error=f"mask must be 2-D (H×W nested lists), got a flat list of {len(rows)}")
        height = len(rows)
        if height == 0:
            return _MaskValue(np.zeros((0, 0), dtype=np.uint8))
        if rows.null_count:
            return _MaskValue(error="mask has null rows")
        lengths = np.asarray(rows.value_lengths().to_numpy(zero_copy_only=False))
        if (lengths != lengths[0]).any():
            return _MaskValue(error=f"mask rows have different lengths ({lengths.min()}..{lengths.max()})")
        flat = rows.flatten()
        if flat.null_count:
            return _MaskValue(error="mask has null values")
        values = np.asarray(flat.to_numpy(zero_copy_only=False))
        return _MaskValue(values.reshape(height, int(lengths[0])))
    return _MaskValue(raw=scalar.as_py())  # an Image struct, a path or something else: decoded later


def _mask_from_value(value: Any, column: str, base_dir: Path | None) -> np.ndarray | None:
    if isinstance(value, _MaskValue):
        if value.error:
            raise _RowError(column, "bad_mask", value.error)
        if value.array is not None:
            return _normalise_mask(value.array, column)
        value = value.raw
    if value is None:
        return None
    if isinstance(value, (dict, str, bytes)):
        image, _, _ = _open_image(value, column, base_dir, as_shown=False)
        return _normalise_mask(as_mask_array(image), column)
    try:
        return _normalise_mask(as_mask_array(value), column)
    except (ValueError, TypeError) as exc:
        raise _RowError(column, "bad_mask", f"unreadable mask: {exc}") from exc


def _normalise_mask(arr: np.ndarray, column: str) -> np.ndarray:
    """bools / ints → uint8 with 1 = target, 0 = background, 255 = ignore (any other positive value is target)."""
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise _RowError(column, "bad_mask", f"mask must be 2-D (H×W), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number):
        raise _RowError(column, "bad_mask", f"mask values must be bools or numbers, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise _RowError(column, "bad_mask", f"mask values outside 0..255 ({arr.min()}..{arr.max()})")
    out = np.where(arr == IGNORE_INDEX, IGNORE_INDEX, (arr > 0).astype(np.uint8))
    return out.astype(np.uint8)


def _open_image(value: Any, column: str, base_dir: Path | None, passthrough_size: int | None = None,
                as_shown: bool = True) -> tuple[Image.Image, bytes | None, str | None]:
    """An image cell (Image struct dict, path, bytes or PIL) → (PIL image, raw bytes, format).

    ``as_shown`` (images, not masks): the image as a viewer shows it (``wise_rl.data.images.load_image``: EXIF
    orientation applied, RGB); raw bytes come back only when they already are that image.

    The image is fully decoded (a corrupt or truncated one raises), except one that ``_model_image`` will pass
    through untouched (``passthrough_size``² RGB): its pixels are never used here, so it is checked more cheaply —
    a JPEG is decoded at 1/8 scale (``draft``: every entropy-coded block is still read), anything else through
    ``verify()`` (PNG chunk CRCs).
    """
    if isinstance(value, Image.Image):
        return (load_image(value) if as_shown else value), None, value.format
    try:
        raw, path = source_bytes(value, base_dir)
    except ImageError as exc:
        raise _RowError(column, exc.code, str(exc)) from exc
    try:
        image = Image.open(io.BytesIO(raw))
        fmt = image.format
        if (passthrough_size is not None and image.size == (passthrough_size,) * 2
                and not needs_conversion(image)):
            probe = Image.open(io.BytesIO(raw))
            if fmt == "JPEG":
                probe.draft("RGB", (max(1, probe.width // 8), max(1, probe.height // 8)))
                probe.load()
            else:
                probe.verify()
        else:
            image.load()
    except UnidentifiedImageError as exc:
        where = f"file {str(path)!r}" if path else f"{len(raw)} bytes"
        raise _RowError(column, "unreadable_image", f"unreadable image: {where} in no known image format") from exc
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on truncated / corrupt data
        raise _RowError(column, "unreadable_image", f"unreadable image ({type(exc).__name__}: {exc})") from exc
    if image.width <= 0 or image.height <= 0:
        raise _RowError(column, "unreadable_image", f"image has size {image.size}")
    if as_shown and needs_conversion(image):
        try:
            image, raw = load_image(image), None  # the stored bytes are not what a viewer shows
        except (ImageError, OSError, ValueError) as exc:
            raise _RowError(column, "unreadable_image", f"cannot convert the image to RGB: {exc}") from exc
    return image, raw, fmt


def _encode_png(mask: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _model_image(image: Image.Image, raw: bytes | None, fmt: str | None, size: int) -> dict:
    """The S×S RGB model-frame image, encoded (raw bytes reused when already S×S RGB)."""
    if raw is not None and image.size == (size, size) and image.mode == "RGB":
        return {"bytes": raw, "path": None}
    out = frames.image_to_model(image, size)
    buf = io.BytesIO()
    if fmt == "JPEG":
        out.save(buf, format="JPEG", quality=95)
    else:
        out.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _number(value: Any, column: str) -> float:
    if value is None:
        raise _RowError(column, "missing_value", "missing value")
    if isinstance(value, bool):
        raise _RowError(column, "bad_value", f"expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise _RowError(column, "bad_value", f"expected a number, got {value!r}") from exc
    if not math.isfinite(out):
        raise _RowError(column, "bad_value", f"expected a finite number, got {value!r}")
    return out


def _positive_int(value: Any, column: str) -> int:
    out = _number(value, column)
    if out <= 0 or out != int(out):
        raise _RowError(column, "bad_value", f"expected a positive integer size, got {value!r}")
    return int(out)


def _query(value: Any, column: str) -> str:
    if value is None:
        raise _RowError(column, "missing_value", "missing query")
    if not isinstance(value, str):
        raise _RowError(column, "bad_value", f"query must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _RowError(column, "empty_query", "empty query")
    return value.strip()


def _optional_text(value: Any, column: str) -> str | None:
    """A rationale cell (``detailed`` / ``concise``): a string or None, kept as it is."""
    if value is not None and not isinstance(value, str):
        raise _RowError(column, "bad_value", f"{column} must be a string, got {type(value).__name__}")
    return value


def _queries(value: Any, column: str) -> list[tuple[str, str]]:
    """``text`` as a string → [("", q)]; as a list → [("#k", q_k)]. Every query must be non-empty."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise _RowError(column, "empty_query", "empty list of queries")
        return [(f"#{k}", _query(q, column)) for k, q in enumerate(value)]
    return [("", _query(value, column))]


def _check_box(bbox: list[float], points: list[list[float]], width: float, height: float, bbox_column: str,
               points_column: str) -> None:
    """Pixel-inclusive box inside ``[0, W] × [0, H]`` (the edge value W is tolerated) with x1 ≤ x2, y1 ≤ y2."""
    x1, y1, x2, y2 = bbox
    if x2 < x1 or y2 < y1:
        raise _RowError(bbox_column, "degenerate_bbox", f"degenerate bbox {bbox} (needs x1 <= x2 and y1 <= y2)")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise _RowError(bbox_column, "bbox_outside_image",
                        f"bbox {bbox} outside the {width:g}×{height:g} image")
    for x, y in points:
        if not (0 <= x <= width and 0 <= y <= height):
            raise _RowError(points_column, "points_outside_image",
                            f"point {[x, y]} outside the {width:g}×{height:g} image")


def _mask_ground_truth(mask: np.ndarray, width: int, height: int, size: int, column: str) -> dict:
    """Original-frame mask → model-frame bbox, points, gt_mask (derived on the original, mapped with frames)."""
    if not target_pixels(mask).any():
        raise _RowError(column, "empty_mask", "empty mask: no target pixels")
    image_size = (width, height)
    bbox = mask_bbox(mask)
    encoded, thin = _model_mask(mask, size)
    return {
        "gt_bbox": frames.bbox_to_model(bbox, image_size, size),
        "gt_points": frames.points_to_model(inscribed_circle_points(mask), image_size, size),
        "gt_mask": encoded,
        "_thin": thin,
    }


def _model_mask(mask: np.ndarray, size: int) -> tuple[dict, bool]:
    """An original-frame mask → (encoded model-frame ``gt_mask``, whether the target was too thin to survive).

    The model-frame mask is ``frames.mask_to_model`` (nearest neighbour). A target thinner than one model pixel
    (a 1–2 px wide object on a large image) can vanish that way; then every model pixel whose footprint holds a
    target pixel is marked target instead (a box-filter resize of the target, > 0), so a row with a target never
    gets an empty ``gt_mask``. The flag comes back so that the loader counts and names such rows; scoring uses
    the original-resolution mask (``original_mask``) and is not affected.
    """
    small = frames.mask_to_model(mask, size)
    target = target_pixels(mask)
    if target_pixels(small).any() or not target.any():
        return _encode_png(small), False
    height, width = small.shape
    area = Image.fromarray(target.astype(np.float32), mode="F").resize((width, height), Image.BOX)
    small = np.array(small, dtype=np.uint8)
    small[np.asarray(area) > 0] = 1
    return _encode_png(small), True


def _original_image(image: Image.Image, raw: bytes | None) -> dict:
    """The original image as a ``datasets`` Image cell, for SAM2 at evaluation: its stored bytes when they are the
    image as shown, else the shown image (orientation applied, RGB) encoded losslessly as PNG."""
    if raw is not None:
        return {"bytes": raw, "path": None}
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}
