"""Your own data: which of your columns is which (``dataset_columns:`` in a recipe, ``--columns`` on ``eval``,
``score`` and ``build-sft``), and how a mapped row becomes a sample-schema row (the ``mapped`` source kind).

A mapping names wise_rl's column on the left and yours on the right: ``query=problem,bbox=box`` or, in YAML,
``{query: problem, bbox: box}``. wise_rl's names (:data:`WISE_NAMES`): ``image`` (Image cell, bytes or a path; a
relative path resolves against the data file's folder), ``query``, ``bbox`` (4 numbers), ``points``
(``[[x, y], [x, y]]`` or 4 numbers), ``mask`` (image or H×W nested lists at the image's size; nonzero = target,
255 = ignore, except in a mask of only 0 and 255 — a black-and-white PNG — where 255 is the target),
``polygons`` (``[[x, y], …]``, flat ``[x1, y1, …]`` or a list of either; filled by ``PIL.ImageDraw.polygon``,
outline included), ``id``, ``detailed``, ``concise``. A column of yours already bearing one of these names needs
no entry; every other column of yours rides along untouched.

Options in the same mapping: ``bbox_format`` = ``xyxy`` (default) or ``xywh`` (``x2 = x + w``, ``y2 = y + h``);
``units`` = ``pixels`` (default: your image's own pixels), ``norm1`` (0–1 of width / height) or ``norm1000``
(0–1000), for ``bbox`` and ``points``. Boxes are pixel-inclusive ``[x1, y1, x2, y2]`` once read.

A row needs ``image``, ``query`` and a target (``bbox``, ``mask`` or ``polygons``). Without ``bbox`` the box is the
mask's tight box; without ``points`` they are the centres of the two largest inscribed circles of the mask (as the
WISE / Seg-Zero data defines them); a box-only row has ``gt_points`` None (what each stage does: docs/data.md).
Everything is read in your image's pixels and converted once to the model frame (``frames``).

Errors: a mapping that cannot be read is a :class:`~wise_rl.errors.ConfigError` naming the option and the entry; a
mapped column the data lacks, or a bad value in a row, a :class:`~wise_rl.errors.DataError` naming the source, the
row and your column.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from wise_rl import frames
from wise_rl.data import _rowtools as rt
from wise_rl.data.geometry import inscribed_circle_points, mask_bbox, target_pixels
from wise_rl.data.schema import IGNORE_INDEX
from wise_rl.errors import ConfigError, DataError

WISE_NAMES = ("image", "query", "bbox", "points", "mask", "polygons", "id", "detailed", "concise")
BBOX_FORMATS = ("xyxy", "xywh")
UNITS = ("pixels", "norm1", "norm1000")
OPTIONS = ("bbox_format", "units")
TARGETS = ("bbox", "mask", "polygons")
KIND = "mapped"


@dataclass(frozen=True)
class ColumnMap:
    """wise_rl name → your column (``columns``), plus the box format and the units of ``bbox`` and ``points``."""

    columns: dict[str, str] = field(default_factory=dict)
    bbox_format: str = "xyxy"
    units: str = "pixels"

    def source(self, name: str) -> str:
        """Your column for wise_rl's ``name`` (the name itself when unmapped): what errors name."""
        return self.columns.get(name, name)

    def spec(self) -> str:
        """The mapping as one ``name=column,…`` string (options last, defaults left out): run.json records it."""
        parts = [f"{k}={v}" for k, v in self.columns.items()]
        parts += [f"{k}={getattr(self, k)}" for k, d in (("bbox_format", "xyxy"), ("units", "pixels"))
                  if getattr(self, k) != d]
        return ",".join(parts)

    def resolved(self, column_names: list[str]) -> ColumnMap:
        """The mapping with every unmapped wise_rl name that is also a column of the data mapped to itself (a column
        already used as the source of another name is not taken twice)."""
        used = set(self.columns.values())
        extra = {n: n for n in WISE_NAMES if n not in self.columns and n in column_names and n not in used}
        if (extra.keys() & {"mask", "polygons"}) and (self.columns.keys() & {"mask", "polygons"}):
            extra = {k: v for k, v in extra.items() if k not in ("mask", "polygons")}
        if "mask" in extra and "polygons" in extra:
            extra.pop("polygons")
        return ColumnMap({**self.columns, **extra}, self.bbox_format, self.units)


def parse_columns(spec: Any, where: str = "--columns") -> ColumnMap | None:
    """``name=column,…`` (a string), a mapping, a :class:`ColumnMap` or None/empty (no mapping: None).

    Raises :class:`ConfigError` naming ``where`` and the entry: an unknown name (with the closest one), an empty
    column, a name given twice, both ``mask`` and ``polygons``, an unknown ``bbox_format`` or ``units``.
    """
    if spec is None or isinstance(spec, ColumnMap):
        return spec
    if isinstance(spec, str):
        if not spec.strip():
            return None
        pairs = []
        for entry in spec.split(","):
            if not entry.strip():
                continue
            name, sep, column = entry.partition("=")
            if not sep:
                raise ConfigError(f"{where}: entry {entry.strip()!r} is not name=column (e.g. query=problem)")
            pairs.append((name.strip(), column.strip()))
    elif isinstance(spec, Mapping):
        pairs = [(str(k).strip(), v if not isinstance(v, str) else v.strip()) for k, v in spec.items()]
    else:
        raise ConfigError(f"{where}: expected name=column,… or a mapping, got {type(spec).__name__}")
    columns: dict[str, str] = {}
    options = {"bbox_format": "xyxy", "units": "pixels"}
    seen: set[str] = set()
    for name, column in pairs:
        if name in seen:
            raise ConfigError(f"{where}: {name!r} is given twice")
        seen.add(name)
        if not isinstance(column, str) or not column:
            raise ConfigError(f"{where}: {name!r} needs a column name, got {column!r}")
        if name in OPTIONS:
            allowed = BBOX_FORMATS if name == "bbox_format" else UNITS
            if column not in allowed:
                raise ConfigError(f"{where}: {name}={column!r}; expected one of {', '.join(allowed)}")
            options[name] = column
        elif name in WISE_NAMES:
            columns[name] = column
        else:
            close = difflib.get_close_matches(name, WISE_NAMES + OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown name {name!r}{hint}; wise_rl's names are "
                              f"{', '.join(WISE_NAMES)}, options {', '.join(OPTIONS)}")
    if "mask" in columns and "polygons" in columns:
        raise ConfigError(f"{where}: map either mask or polygons, not both")
    return ColumnMap(columns, **options)


def mapped_dataset(ds, cmap: ColumnMap, label: str):
    """``ds`` with your mapped columns renamed to wise_rl's names → ``(dataset, resolved map, extras, clashing)``.

    ``extras``: every column neither mapped nor named like a column of the sample schema (they ride along);
    ``clashing``: unmapped columns named like one (``source``, ``gt_bbox`` …), left out (the caller logs them). Raises :class:`DataError` naming the first
    mapped column the data lacks, or a mapping without ``image``, ``query`` or a target.
    """
    from wise_rl.data.schema import sample_features

    names = list(ds.column_names)
    cmap = cmap.resolved(names)
    for name in ("image", "query"):
        if name not in cmap.columns:
            raise DataError(label, None, name, f"no {name!r} column: map one (e.g. {name}=YOUR_COLUMN); columns "
                            f"present: {sorted(names)}", code="missing_column", kind=KIND)
    if not cmap.columns.keys() & set(TARGETS):
        raise DataError(label, None, "bbox", "no target column: map bbox, mask or polygons (e.g. bbox=box); "
                        f"columns present: {sorted(names)}", code="missing_column", kind=KIND)
    for name, column in cmap.columns.items():
        if column not in names:
            close = difflib.get_close_matches(column, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(label, None, column, f"no column {column!r} (mapped to {name}){hint}; columns present: "
                            f"{sorted(names)}", code="missing_column", kind=KIND)
    reserved = set(sample_features(with_original_mask=True)) | set(WISE_NAMES)
    sources = set(cmap.columns.values())
    extras = [c for c in names if c not in sources and c not in reserved]
    clashing = [c for c in names if c not in sources and c in reserved]
    ds = ds.select_columns(list(dict.fromkeys([*cmap.columns.values(), *extras])))
    ds = ds.rename_columns({v: k for k, v in cmap.columns.items() if k != v})
    return ds, cmap, extras, clashing


# ----------------------------------------------------------------------------------------------------------------
# One mapped row → one sample-schema row
# ----------------------------------------------------------------------------------------------------------------
def content_id(query: str, image: Image.Image) -> str:
    """The id of a row without one: 12 hex digits of BLAKE2b over the query and the decoded image's pixels, so the
    same row gets the same id whether it was saved with ``save_to_disk`` or as jsonl, in any order. Two identical
    rows get ``ID`` and ``ID~2`` (the loader's duplicate rule)."""
    digest = hashlib.blake2b(digest_size=6)
    digest.update(query.encode("utf-8") + b"\0" + f"{image.width}x{image.height}".encode() + b"\0")
    digest.update(image.convert("RGB").tobytes())
    return digest.hexdigest()


def to_pixels(values: list[float], units: str, width: int, height: int) -> list[float]:
    """``[x, y, x, y, …]`` in ``units`` → pixels of a W×H image (``norm1``: ·W, ·H; ``norm1000``: ·W/1000, ·H/1000)."""
    scale = {"pixels": (1.0, 1.0), "norm1": (width, height), "norm1000": (width / 1000.0, height / 1000.0)}[units]
    return [v * scale[k % 2] for k, v in enumerate(values)]


def read_bbox(value: Any, cmap: ColumnMap, width: int, height: int) -> list[float]:
    """A box cell → ``[x1, y1, x2, y2]`` in original pixels (``xywh``: ``x2 = x + w``, ``y2 = y + h``)."""
    column = cmap.source("bbox")
    if value is None:
        raise rt._RowError(column, "missing_value", "missing bbox")
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise rt._RowError(column, "bad_value", f"bbox must be 4 numbers ({cmap.bbox_format}), got {value!r}")
    x, y, a, b = (rt._number(v, column) for v in value)
    if cmap.bbox_format == "xywh":
        if a < 0 or b < 0:
            raise rt._RowError(column, "degenerate_bbox", f"negative width/height in {value!r} (xywh)")
        a, b = x + a, y + b
    return to_pixels([x, y, a, b], cmap.units, width, height)


def read_points(value: Any, cmap: ColumnMap, width: int, height: int) -> list[list[float]]:
    """A points cell (``[[x, y], [x, y]]`` or 4 numbers) → two points in original pixels."""
    column = cmap.source("points")
    flat = value
    if isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) for p in value):
        flat = [v for p in value for v in (p if len(p) == 2 else [None, None, None])]
    if not isinstance(flat, (list, tuple)) or len(flat) != 4:
        raise rt._RowError(column, "bad_value", f"points must be [[x, y], [x, y]], got {value!r}")
    xs = to_pixels([rt._number(v, column) for v in flat], cmap.units, width, height)
    return [xs[0:2], xs[2:4]]


def polygon_mask(value: Any, column: str, width: int, height: int) -> np.ndarray:
    """Polygons in image pixels → H×W uint8 mask (1 inside or on the outline). A polygon is ``[[x, y], …]`` or a
    flat ``[x1, y1, …]`` of at least 3 points; a list of them is the union."""
    if not isinstance(value, (list, tuple)) or not value:
        raise rt._RowError(column, "bad_polygon", f"polygons must be a non-empty list, got {value!r}")
    single = all(isinstance(v, (int, float)) for v in value) or all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in value)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in [value] if single else value:
        if not isinstance(poly, (list, tuple)):
            raise rt._RowError(column, "bad_polygon", f"a polygon must be a list, got {poly!r}")
        flat = [v for p in poly for v in p] if poly and isinstance(poly[0], (list, tuple)) else list(poly)
        if len(flat) < 6 or len(flat) % 2:
            raise rt._RowError(column, "bad_polygon", f"a polygon needs at least 3 [x, y] points, got {poly!r}")
        coords = [rt._number(v, column) for v in flat]
        draw.polygon(list(zip(coords[0::2], coords[1::2])), fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def _target_mask(row: dict, cmap: ColumnMap, base_dir: Path | None, width: int, height: int) -> np.ndarray | None:
    name = "polygons" if row.get("polygons") is not None else "mask"
    if name == "polygons":
        mask = polygon_mask(row["polygons"], cmap.source("polygons"), width, height)
    else:  # a null mask cell comes as an empty _MaskValue: None here
        mask = rt._mask_from_value(row.get("mask"), cmap.source("mask"), base_dir)
        if mask is None:
            return None
        if mask.any() and not ((mask != 0) & (mask != IGNORE_INDEX)).any():
            mask = (mask == IGNORE_INDEX).astype(np.uint8)  # a black-and-white mask: white is the target
    if mask.shape != (height, width):
        raise rt._RowError(cmap.source(name), "mask_shape_mismatch",
                           f"mask is {mask.shape[1]}×{mask.shape[0]} (W×H) but the image is {width}×{height}")
    if not target_pixels(mask).any():
        raise rt._RowError(cmap.source(name), "empty_mask", "empty mask: no target pixels")
    return mask


def _text(row: dict, name: str, cmap: ColumnMap) -> str | None:
    value = row.get(name)
    if value is not None and not isinstance(value, str):
        raise rt._RowError(cmap.source(name), "bad_value", f"{name} must be a string, got {type(value).__name__}")
    return value


def mapped_row(row: dict, model_size: int | None, with_original_mask: bool, base_dir: Path | None,
               cmap: ColumnMap) -> list[dict]:
    """One row of wise_rl-named cells → ``[sample]``: the target read in your image's pixels, converted once to
    the model frame (``frames``), ground truth derived from the mask where the row gives none."""
    size = model_size or frames.DEFAULT_MODEL_SIZE
    query = rt._query(row["query"], cmap.source("query"))
    image, raw, fmt = rt._open_image(row["image"], cmap.source("image"), base_dir)
    width, height = image.size
    mask = _target_mask(row, cmap, base_dir, width, height)
    if "bbox" in cmap.columns and (row.get("bbox") is not None or mask is None):
        bbox = read_bbox(row.get("bbox"), cmap, width, height)
    elif mask is not None:
        bbox = mask_bbox(mask)
    else:
        raise rt._RowError(cmap.source("mask"), "missing_value", "no target: no bbox, mask or polygons")
    points = None
    if row.get("points") is not None:
        points = read_points(row["points"], cmap, width, height)
    elif mask is not None:
        points = inscribed_circle_points(mask)
    rt._check_box(bbox, points or [], width, height, cmap.source("bbox"), cmap.source("points"))
    row_id = row.get("id")
    if "id" in cmap.columns and (row_id is None or not str(row_id).strip()):
        raise rt._RowError(cmap.source("id"), "missing_value", "missing id")
    truth = {"gt_mask": None}
    if mask is not None:
        encoded, thin = rt._model_mask(mask, size)
        truth = {"gt_mask": encoded, "_thin": thin}
    out = {
        "id": str(row_id) if "id" in cmap.columns else content_id(query, image),
        "image": rt._model_image(image, raw, fmt, size),
        "query": query,
        "image_size": [width, height],
        "model_size": size,
        "gt_bbox": frames.bbox_to_model(bbox, (width, height), size),
        "gt_points": None if points is None else frames.points_to_model(points, (width, height), size),
        **truth,
        "detailed": _text(row, "detailed", cmap),
        "concise": _text(row, "concise", cmap),
        "source": KIND,
    }
    if with_original_mask:
        out["original_mask"] = None if mask is None else rt._encode_png(mask)
        out["original_image"] = rt._original_image(image, raw)
    return [out]


__all__ = ["BBOX_FORMATS", "ColumnMap", "UNITS", "WISE_NAMES", "content_id", "mapped_dataset", "mapped_row",
           "parse_columns", "polygon_mask", "read_bbox", "read_points"]
