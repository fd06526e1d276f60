"""Row conversion per source kind, each row → a list of rows in the sample schema, ground truth in the model frame
of side S (``model_size``, 840 when None):

``refcocog``  rows ``id, problem, solution, image, img_height, img_width`` (Ricky06662/refCOCOg_2k_840). ``solution``
    is ``<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>`` in the frame of the stored image (840×840 there);
    for another ``model_size`` both are rescaled by ``model_size / 840`` (``frames.bbox_to_model`` with the stored
    image as the "original"). ``image_size`` = ``[img_width, img_height]``, the original photo. No mask.
``reasonseg`` rows ``image`` (original size), ``text``, ``mask`` (H×W nested bools), ``image_id``, ``ann_id``,
    ``img_height``, ``img_width`` (Ricky06662/ReasonSeg_test / _val). ``id = f"{image_id}_{ann_id}"``. A ``text``
    given as a string gives one row; a list gives one row per query with id suffix ``#k`` (k = 0, 1, …).
``refcocog`` and ``reasonseg`` rows keep a ``detailed`` / ``concise`` rationale column when the source has one, and
    any other column of their own rides along unchanged.
``schema``    rows already in the sample schema (ShapeWorld ``save_to_disk`` output): validated and passed through;
    rescaled through ``frames`` only when ``model_size`` is given and differs from the rows' own. ``gt_points``
    may be None on a row with a ``gt_bbox`` (a box-only row of your own data). Extra columns
    (ShapeWorld's ``family``, ``target_index``, ``shape_boxes``) are kept unchanged, or dropped with a warning when
    the rows are rescaled (they may hold model-frame coordinates).

``mapped``    your own columns, named by a mapping (``wise_rl.data.columns``: the names, units and the row rule).

LISA folders are read by ``wise_rl.data.lisa``. A bad row comes out of :func:`_dataset_rows` as a
:class:`DataError` (source, row index and id, column, reason) for the loader to raise or count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from datasets import Dataset

from wise_rl import frames
from wise_rl.data._rowtools import (
    _OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    DataError,
    _arrow_mask,
    _check_box,
    _encode_png,
    _mask_from_value,
    _mask_ground_truth,
    _model_image,
    _model_mask,
    _number,
    _open_image,
    _optional_text,
    _original_image,
    _positive_int,
    _queries,
    _query,
    _RowError,
)
from wise_rl.data.geometry import target_pixels

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_SOLUTION_RE = re.compile(
    rf"<box>\s*\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*</box>\s*"
    rf"<points>\s*\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*</points>",
    re.DOTALL,
)


def _dataset_rows(ds: Dataset, kind: str, label: str, model_size: int | None, with_original_mask: bool,
                  base_dir: Path | None, extras: list[str], converter=None) -> tuple[Iterator, int]:
    """(generator of row lists or DataErrors, number of source rows). ``converter``: the row function of the
    ``mapped`` kind (``wise_rl.data.columns.mapped_row`` bound to its mapping); the other kinds' are here."""
    needed = list(REQUIRED_COLUMNS[kind]) + [c for c in _OPTIONAL_COLUMNS.get(kind, ()) if c in ds.column_names]
    needed += extras
    convert = converter or {"refcocog": _refcocog_row, "reasonseg": _reasonseg_row, "schema": _schema_row}[kind]
    mask_column = {"reasonseg": "mask", "mapped": "mask"}.get(kind)
    batch_size = 8 if kind in ("reasonseg", "mapped") else 64

    def generate():
        arrow = ds.select_columns(needed).with_format("arrow")
        index = 0
        for table in arrow.iter(batch_size=batch_size):
            columns = {}
            for name in table.column_names:
                if name == mask_column:
                    columns[name] = table.column(name).combine_chunks()
                else:
                    columns[name] = table.column(name).to_pylist()
            for i in range(table.num_rows):
                row = {n: (_arrow_mask(v, i) if n == mask_column else v[i]) for n, v in columns.items()}
                row_id = _row_id(kind, row)
                try:
                    converted = convert(row, model_size, with_original_mask, base_dir)
                    for out in converted:
                        out.update({c: row[c] for c in extras})
                    yield converted
                except _RowError as err:
                    yield DataError(label, index, err.column, err.reason, code=err.code, kind=kind, row_id=row_id)
                index += 1

    return generate(), ds.num_rows


def _row_id(kind: str, row: dict) -> str | None:
    if kind == "reasonseg":
        return f"{row.get('image_id')}_{row.get('ann_id')}"
    value = row.get("id")
    return None if value is None else str(value)


def _refcocog_row(row: dict, model_size: int | None, with_original_mask: bool, base_dir: Path | None) -> list:
    size = model_size or frames.DEFAULT_MODEL_SIZE
    if row["id"] is None or not str(row["id"]).strip():
        raise _RowError("id", "missing_value", "missing id")
    query = _query(row["problem"], "problem")
    solution = row["solution"]
    if not isinstance(solution, str):
        raise _RowError("solution", "missing_value" if solution is None else "unparsable_solution",
                        f"unparsable solution {solution!r}")
    match = _SOLUTION_RE.fullmatch(solution.strip())
    if match is None:
        shown = solution if len(solution) <= 120 else solution[:117] + "..."
        raise _RowError("solution", "unparsable_solution", f"unparsable solution {shown!r}")
    v = [float(g) for g in match.groups()]
    bbox, points = v[:4], [v[4:6], v[6:8]]
    width = _positive_int(row["img_width"], "img_width")
    height = _positive_int(row["img_height"], "img_height")
    # The frame check needs only the size; a stored image already size² is passed through undecoded.
    image, raw, fmt = _open_image(row["image"], "image", base_dir, passthrough_size=size)
    frame = image.size  # the solution lives in the stored image's frame (840×840 in refCOCOg_2k_840)
    _check_box(bbox, points, frame[0], frame[1], "solution", "solution")
    out = {
        "id": str(row["id"]),
        "image": _model_image(image, raw, fmt, size),
        "query": query,
        "image_size": [width, height],
        "model_size": size,
        "gt_bbox": frames.bbox_to_model(bbox, frame, size),
        "gt_points": frames.points_to_model(points, frame, size),
        "gt_mask": None,
        "detailed": _optional_text(row.get("detailed"), "detailed"),
        "concise": _optional_text(row.get("concise"), "concise"),
        "source": "refcocog",
    }
    if with_original_mask:
        out["original_mask"] = None
    return [out]


def _reasonseg_row(row: dict, model_size: int | None, with_original_mask: bool, base_dir: Path | None) -> list:
    size = model_size or frames.DEFAULT_MODEL_SIZE
    for column in ("image_id", "ann_id"):
        if row[column] is None or not str(row[column]).strip():
            raise _RowError(column, "missing_value", f"missing {column}")
    base_id = f"{row['image_id']}_{row['ann_id']}"
    queries = _queries(row["text"], "text")
    width = _positive_int(row["img_width"], "img_width")
    height = _positive_int(row["img_height"], "img_height")
    image, raw, fmt = _open_image(row["image"], "image", base_dir)
    if image.size != (width, height):
        raise _RowError("img_width", "image_size_mismatch",
                        f"img_width×img_height {width}×{height} differs from the image's {image.width}×"
                        f"{image.height}")
    mask = _mask_from_value(row["mask"], "mask", base_dir)
    if mask is None:
        raise _RowError("mask", "missing_value", "missing mask")
    if mask.shape != (height, width):
        raise _RowError("mask", "mask_shape_mismatch",
                        f"mask is {mask.shape[0]}×{mask.shape[1]} (H×W) but the image is {height}×{width}")
    truth = _mask_ground_truth(mask, width, height, size, "mask")
    model_image = _model_image(image, raw, fmt, size)
    original = _encode_png(mask) if with_original_mask else None
    original_image = _original_image(image, raw) if with_original_mask else None
    rationales = [_optional_text(row.get(c), c) for c in ("detailed", "concise")]
    rows = []
    for suffix, query in queries:
        out = {"id": base_id + suffix, "image": model_image, "query": query, "image_size": [width, height],
               "model_size": size, **truth, "detailed": rationales[0], "concise": rationales[1],
               "source": "reasonseg"}
        if with_original_mask:
            out["original_mask"] = original
            out["original_image"] = original_image  # SAM2 at evaluation segments the original photo
        rows.append(out)
    return rows


def _to_canvas(bbox: list, points: list | None, written: str | None, own: int) -> tuple[list, list | None]:
    """Schema rows written in another frame (``frame`` column, e.g. ``rel1000``) → pixels of their own
    ``model_size``² image (``abs{own}``), where the loader checks and rescales them; no ``frame``: already there."""
    if not written:
        return bbox, points
    try:
        source = frames.Frame.parse(written)
    except ValueError as exc:
        raise _RowError("frame", "bad_value", str(exc)) from None
    if source == frames.Frame(own):
        return bbox, points
    return frames.convert_bbox(bbox, source, own), (None if points is None else
                                                    frames.convert_points(points, source, own))


def _schema_row(row: dict, model_size: int | None, with_original_mask: bool, base_dir: Path | None) -> list:
    if row["id"] is None or not str(row["id"]).strip():
        raise _RowError("id", "missing_value", "missing id")
    query = _query(row["query"], "query")
    own = _positive_int(row["model_size"], "model_size")
    size = model_size or own
    image_size = row["image_size"]
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise _RowError("image_size", "bad_value", f"image_size must be [W, H], got {image_size!r}")
    width, height = (_positive_int(v, "image_size") for v in image_size)
    image, raw, fmt = _open_image(row["image"], "image", base_dir, passthrough_size=size)
    if image.size != (own, own):
        raise _RowError("image", "image_size_mismatch",
                        f"image is {image.width}×{image.height}, expected model_size² = {own}×{own}")
    bbox, points = row["gt_bbox"], row.get("gt_points")
    mask = _mask_from_value(row.get("gt_mask"), "gt_mask", base_dir)
    if mask is not None and mask.shape != (own, own):
        raise _RowError("gt_mask", "mask_shape_mismatch",
                        f"gt_mask is {mask.shape[1]}×{mask.shape[0]}, expected {own}×{own}")
    if bbox is None and points is None and mask is not None and not target_pixels(mask).any():
        pass  # a no-object sample (LISA): an empty target, nothing to box
    else:
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise _RowError("gt_bbox", "bad_value", f"gt_bbox must be [x1, y1, x2, y2], got {bbox!r}")
        bbox = [_number(v, "gt_bbox") for v in bbox]
        if points is not None:  # None: a box-only row (your own data without points or mask)
            if not isinstance(points, (list, tuple)) or len(points) != 2 or any(
                    not isinstance(p, (list, tuple)) or len(p) != 2 for p in points):
                raise _RowError("gt_points", "bad_value", f"gt_points must be [[x, y], [x, y]], got {points!r}")
            points = [[_number(v, "gt_points") for v in p] for p in points]
        bbox, points = _to_canvas(bbox, points, row.get("frame"), own)
        _check_box(bbox, points or [], own, own, "gt_bbox", "gt_points")
        if mask is not None and not target_pixels(mask).any():
            raise _RowError("gt_mask", "empty_mask", "empty mask: no target pixels (but a gt_bbox)")
    frame = (own, own)
    gt_mask, thin = (None, False) if mask is None else (_encode_png(mask), False) if size == own else _model_mask(
        mask, size)
    out = {
        "id": str(row["id"]),
        "image": _model_image(image, raw, fmt, size),
        "query": query,
        "image_size": [width, height],
        "model_size": size,
        "gt_bbox": bbox if size == own or bbox is None else frames.bbox_to_model(bbox, frame, size),
        "gt_points": points if size == own or points is None else frames.points_to_model(points, frame, size),
        "gt_mask": gt_mask,
        "_thin": thin,
        "detailed": row.get("detailed"),
        "concise": row.get("concise"),
        "source": row.get("source") or "schema",
    }
    if with_original_mask:
        out["original_image"] = row.get("original_image")  # kept by an earlier load; else eval rebuilds it
        original = _mask_from_value(row.get("original_mask"), "original_mask", base_dir)
        if original is not None and original.shape != (height, width):
            raise _RowError("original_mask", "mask_shape_mismatch",
                            f"original_mask is {original.shape[1]}×{original.shape[0]}, expected image_size "
                            f"{width}×{height}")
        if original is None and mask is not None:
            original = frames.mask_to_original(mask, (width, height))
        out["original_mask"] = None if original is None else _encode_png(original)
    return [out]
