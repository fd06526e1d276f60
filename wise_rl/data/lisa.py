"""LISA raw folders (ReasonSeg as released by dvlab-research/LISA): ``NAME.jpg`` + ``NAME.json``, read exactly as
LISA's evaluation reads them (``utils/dataset.py`` ValDataset, ``utils/data_processing.py`` get_mask_from_json,
``validate`` in ``train_ds.py``). The rules, with their reasons, are in ``docs/evaluation.md`` ("LISA folders").

* **Samples.** ``texts="first"`` (default): one sample per image, its first text (ValDataset keeps
  ``sampled_sents[0]``), id = the image name ``NAME``. ``texts="all"``: one sample per text, ids ``NAME#k``
  (k = 0, 1, …) — more queries, but not LISA's figures. A ``text`` given as a string is one sample ``NAME``.
* **Mask**, on the image as shown (``wise_rl.data.images``: EXIF orientation applied, as ``cv2.imread`` does):
  ``flag`` shapes are skipped; each other polygon is rasterised with OpenCV on a zero canvas —
  ``cv2.polylines(closed, thickness 1)`` then ``cv2.fillPoly`` on ``np.int32`` vertices (truncated toward zero),
  so outline pixels are target — and the polygons are painted largest area first (``np.argsort(area)[::-1]``),
  255 when ``"ignore"`` is in the label, else 1.
* **No-object samples.** A JSON with no target pixels (``shapes`` empty, only ``flag`` or only ``ignore``) is a
  sample whose target is empty: ``gt_bbox`` and ``gt_points`` are None, ``gt_mask`` holds no 1. It scores IoU 1 when
  the prediction is empty too, else 0 (``wise_rl.metrics``: LISA adds 1 where the union is 0).

Errors are ``_RowError`` s of ``wise_rl.data._rowtools`` (counted or raised by ``load_source``): ``unreadable_json``,
``missing_column``, ``empty_query``, ``unreadable_image``, ``bad_polygon``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wise_rl.data import _rowtools as rowtools
from wise_rl.data.schema import IGNORE_INDEX

TEXTS = ("first", "all")
_INT32 = np.iinfo(np.int32)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = path.read_text(encoding="cp1252")  # as LISA's reader falls back
    return json.loads(text)


def _vertices(points: Any) -> np.ndarray:
    """LISA vertices → the ``(1, N, 2)`` int32 array LISA passes to OpenCV (``np.array([points], np.int32)``)."""
    err = rowtools._RowError
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise err("shapes", "bad_polygon", f"polygon points are not numbers: {exc}") from exc
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise err("shapes", "bad_polygon", f"polygon points must be a non-empty list of [x, y], got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() <= _INT32.min or arr.max() >= _INT32.max:
        raise err("shapes", "bad_polygon", "polygon points must be finite int32 pixel coordinates")
    return arr.astype(np.int32)[None]  # float → int32 truncates toward zero, as np.array(..., dtype=np.int32)


def _paint(canvas: np.ndarray, vertices: np.ndarray, value: int) -> None:
    cv2.polylines(canvas, vertices, True, value, 1)
    cv2.fillPoly(canvas, vertices, value)


def lisa_mask(shapes: Any, width: int, height: int) -> np.ndarray:
    """``shapes`` of a LISA JSON → H×W uint8 mask (1 target, 255 ignore, 0 background), as get_mask_from_json."""
    err = rowtools._RowError
    if not isinstance(shapes, list):
        raise err("shapes", "bad_polygon", f"shapes must be a list, got {type(shapes).__name__}")
    polys, areas = [], []
    for shape in shapes:
        if not isinstance(shape, dict) or "points" not in shape:
            raise err("shapes", "bad_polygon", f"a shape must be a dict with 'label' and 'points': {shape!r}")
        label = str(shape.get("label", ""))
        if label.lower() == "flag":  # deprecated annotations, skipped by LISA
            continue
        vertices = _vertices(shape["points"])
        canvas = np.zeros((height, width), dtype=np.uint8)
        _paint(canvas, vertices, 1)
        areas.append(canvas.sum())
        polys.append((vertices, IGNORE_INDEX if "ignore" in label.lower() else 1))
    mask = np.zeros((height, width), dtype=np.uint8)
    for index in np.argsort(areas)[::-1]:  # the same call as LISA: ties fall in the same order
        vertices, value = polys[int(index)]
        _paint(mask, vertices, value)
    return mask


def _texts(value: Any, texts: str) -> list[tuple[str, str]]:
    """(id suffix, query) pairs: ``first`` → [("", text[0])]; ``all`` → [("#k", text_k)]; a string → [("", s)]."""
    if isinstance(value, (list, tuple)) and texts == "first":
        if not value:
            raise rowtools._RowError("text", "empty_query", "empty list of queries")
        return [("", rowtools._query(value[0], "text"))]
    return rowtools._queries(value, "text")


def lisa_rows(folder: Path, model_size: int, with_original_mask: bool, label: str, texts: str = "first"
              ) -> tuple[Iterator, int]:
    """(generator of row lists or ``DataError`` s, number of JSON files) for ``load_source``."""
    if texts not in TEXTS:
        raise ValueError(f"lisa_texts must be one of {', '.join(TEXTS)}, got {texts!r}")
    files = sorted(p for p in folder.glob("*.json") if p.name not in rowtools._META_FILES)

    def generate():
        for index, js in enumerate(files):
            try:
                yield _lisa_file(js, model_size, with_original_mask, texts)
            except rowtools._RowError as err:
                yield rowtools.DataError(label, index, err.column, err.reason, code=err.code, kind="lisa",
                                         row_id=js.stem)

    return generate(), len(files)


def _lisa_file(js: Path, size: int, with_original_mask: bool, texts: str) -> list:
    from wise_rl import frames
    from wise_rl.data.geometry import target_pixels

    try:
        anno = _read_json(js)
    except (OSError, ValueError, RecursionError) as exc:
        raise rowtools._RowError("json", "unreadable_json", f"cannot read {js.name}: {exc}") from exc
    if not isinstance(anno, dict):
        raise rowtools._RowError("json", "unreadable_json", f"{js.name} must hold a JSON object")
    for column in ("text", "shapes"):
        if column not in anno:
            raise rowtools._RowError(column, "missing_column", f"{js.name} has no {column!r}")
    queries = _texts(anno["text"], texts)
    image_path = next((js.with_suffix(s) for s in rowtools._IMAGE_SUFFIXES if js.with_suffix(s).exists()), None)
    if image_path is None:
        raise rowtools._RowError("image", "unreadable_image", f"no image {js.stem}.jpg/.png beside {js.name}")
    image, raw, fmt = rowtools._open_image(str(image_path), "image", None)
    width, height = image.size
    mask = lisa_mask(anno["shapes"], width, height)
    if target_pixels(mask).any():
        truth = rowtools._mask_ground_truth(mask, width, height, size, "shapes")
    else:  # a no-object sample: nothing to box, the empty target is scored
        truth = {"gt_bbox": None, "gt_points": None,
                 "gt_mask": rowtools._encode_png(frames.mask_to_model(mask, size))}
    model_image = rowtools._model_image(image, raw, fmt, size)
    original = rowtools._encode_png(mask) if with_original_mask else None
    rows = []
    for suffix, query in queries:
        out = {"id": js.stem + suffix, "image": model_image, "query": query, "image_size": [width, height],
               "model_size": size, **truth, "detailed": None, "concise": None, "source": "lisa"}
        if with_original_mask:
            out["original_mask"] = original
            out["original_image"] = rowtools._original_image(image, raw)  # SAM2 at evaluation segments this
        rows.append(out)
    return rows
