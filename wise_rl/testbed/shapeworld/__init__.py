"""ShapeWorld: procedurally generated reasoning segmentation that a tiny model can learn from scratch.

Each sample is a scene (:mod:`wise_rl.testbed.shapeworld.scenes`: 2–4 shapes on a background gradient, the image is the model
frame) and a query with exactly one answer in it (:mod:`wise_rl.testbed.shapeworld.queries`: five families, a detailed and a
concise rationale). This module builds samples, streams and datasets from them, and the box baselines.

Ground truth: ``gt_mask`` (1 = target, 0 = background), ``gt_bbox`` = ``mask_bbox(mask)`` (tight, pixel-inclusive),
``gt_points`` = ``inscribed_circle_points(mask)``. Extra columns: ``family`` (str), ``target_index`` (int, index
into the scene's shapes), ``shape_boxes`` (every shape's tight bbox, scene order) for the random-shape baseline.

Randomness: scene ``i`` of a split is drawn from ``np.random.default_rng(SeedSequence(seed, spawn_key=(k, i)))``
with ``k`` = 0 for train, 1 for test and 2 for :func:`iter_samples`, so splits are disjoint streams, a row does not
depend on how many rows or processes were asked for, and the same seed gives byte-identical images.

Baselines score boxes with :func:`wise_rl.metrics.box_iou` (the WISE pixel-inclusive IoU), as the rewards do.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from wise_rl.metrics import box_iou
from wise_rl.testbed.shapeworld.queries import (  # noqa: F401 - the public names of ShapeWorld, re-exported
    FAMILIES,
    FAMILY_WEIGHTS,
    QUERY_BUILDERS,
    describe_scene,
    family_attributes,
    name_shape,
)
from wise_rl.testbed.shapeworld.scenes import (  # noqa: F401 - the public names of ShapeWorld, re-exported
    BORDER,
    COLOURS,
    CORNERS,
    KINDS,
    MARGIN,
    Scene,
    Shape,
    layout_shapes,
    paint_scene,
    patch_geometry,
    render_scene,
    scale_factor,
)

SOURCE = "shapeworld"
_STREAM_KEYS = {"train": 0, "test": 1, "stream": 2}


def _normalise_weights(family_weights: dict[str, float] | None) -> tuple[tuple[str, ...], np.ndarray]:
    weights = dict(FAMILY_WEIGHTS if family_weights is None else family_weights)
    unknown = set(weights) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown ShapeWorld families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    names = tuple(f for f in FAMILIES if weights.get(f, 0) > 0)
    if not names or any(v < 0 for v in weights.values()):
        raise ValueError(f"family weights must be ≥ 0 with at least one > 0, got {weights}")
    p = np.asarray([weights[f] for f in names], dtype=np.float64)
    return names, p / p.sum()


def _family_cdf(family_weights: dict[str, float] | None) -> tuple[tuple[str, ...], np.ndarray]:
    key = None if family_weights is None else tuple(sorted(family_weights.items()))
    return _family_cdf_cached(key)


@lru_cache(maxsize=64)
def _family_cdf_cached(key) -> tuple[tuple[str, ...], np.ndarray]:
    names, p = _normalise_weights(None if key is None else dict(key))
    return names, np.cumsum(p)


def make_sample(
    rng: np.random.Generator,
    image_size: int = 112,
    family_weights: dict[str, float] | None = None,
    gradient: float = 1.0,
    max_tries: int = 100,
) -> tuple[dict[str, Any], Scene]:
    """One sample (schema row with ``gt_mask`` as an H×W uint8 array and no ``id``) and its scene.

    The family is drawn from ``family_weights`` first; scene and query are resampled until the query has exactly
    one answer (a RuntimeError after ``max_tries``, which the built-in families never reach)."""
    names, cdf = _family_cdf(family_weights)
    family = names[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(names) - 1)]
    for _ in range(max_tries):
        kinds, colours, sizes = family_attributes(rng, family, image_size)
        margin = max(1, round(MARGIN * scale_factor(image_size)))
        shapes = layout_shapes(rng, image_size, kinds, colours, sizes, margin, BORDER)
        pick = QUERY_BUILDERS[family](rng, shapes, image_size)
        if pick is not None:
            break
    else:
        raise RuntimeError(f"no unique {family} query after {max_tries} scenes")
    image = paint_scene(shapes, image_size, gradient)
    scene = Scene(image, shapes, image_size)
    target = shapes[pick.target]
    mask = target.mask(image_size)
    # mask_bbox / inscribed_circle_points of the full mask, computed once per (kind, size) on the patch and
    # translated: the target's pixels are exactly its patch, and the nearest background pixel of any target pixel
    # lies within one pixel of the patch, so the distance transform (and its row-major argmax) is the same.
    bbox, points = patch_geometry(target.kind, target.size)
    x1, y1 = target.box[0], target.box[1]
    bbox = [bbox[0] + x1, bbox[1] + y1, bbox[2] + x1, bbox[3] + y1]
    points = [[px + x1, py + y1] for px, py in points]
    row = {
        "image": image,
        "query": pick.query,
        "image_size": [image_size, image_size],
        "model_size": image_size,
        "frame": f"abs{image_size}",
        "gt_bbox": bbox,
        "gt_points": points,
        "gt_mask": mask,
        "detailed": pick.detailed,
        "concise": pick.concise,
        "source": SOURCE,
        "family": family,
        "target_index": pick.target,
        "shape_boxes": [[float(v) for v in s.box] for s in shapes],
    }
    return row, scene


def generator_digest(seed: int = 0, image_size: int = 112, n: int = 8) -> str:
    """SHA-256 of the first ``n`` training rows' words and geometry (query, rationales, boxes): changes when the
    generator does, so a run folder built by another version is not silently reused."""
    import hashlib
    import json

    keys = ("query", "concise", "detailed", "gt_bbox", "gt_points", "family", "target_index")
    rows = [sample_at(seed, "train", i, image_size) for i in range(n)]
    rows = [{k: row[k] for k in keys} for row in rows]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _rng_for(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_STREAM_KEYS[stream], int(index))))


def _scene_at(seed: int, stream: str, index: int, image_size: int = 112, **kwargs) -> tuple[dict[str, Any], Scene]:
    """Row ``index`` of a stream (id included) and its scene."""
    row, scene = make_sample(_rng_for(seed, stream, index), image_size, **kwargs)
    row["id"] = f"{stream}-{index:06d}"
    return row, scene


def sample_at(seed: int, stream: str, index: int, image_size: int = 112, **kwargs) -> dict[str, Any]:
    """Row ``index`` of a stream ('train', 'test' or 'stream'), ``gt_mask`` as a uint8 array, id included."""
    return _scene_at(seed, stream, index, image_size, **kwargs)[0]


def _add_words(row: dict[str, Any], scene: Scene) -> dict[str, Any]:
    row["description"] = describe_scene(scene)
    row["target_name"] = name_shape(scene, row["target_index"])
    row["shape_names"] = [shape.name for shape in scene.shapes]
    return row


def described_sample_at(seed: int, stream: str, index: int, image_size: int = 112, **kwargs) -> dict[str, Any]:
    """:func:`sample_at` plus the scene in words: ``description`` (:func:`describe_scene`), ``target_name``
    (:func:`name_shape` of the target) and ``shape_names`` ('red pentagon', … in scene order). Row ``i`` of the
    'test' stream is the scene of row ``i`` of :func:`generate_dataset`'s test split (same seed and defaults)."""
    return _add_words(*_scene_at(seed, stream, index, image_size, **kwargs))


def iter_samples(
    seed: int,
    image_size: int = 112,
    start: int = 0,
    mask_format: str = "pil",
    family_weights: dict[str, float] | None = None,
    gradient: float = 1.0,
    describe: bool = False,
    scene_columns: Callable[[Scene], dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """An endless stream of fresh samples in the sample schema (plus ``family``, ``target_index``,
    ``shape_boxes``, and when ``describe``: ``description`` = :func:`describe_scene`, ``target_name`` =
    :func:`name_shape` of the target and ``shape_names``; and the columns ``scene_columns(scene)`` returns), for
training loops that want new scenes without building a Dataset.

    ``image`` is a PIL RGB image; ``gt_mask`` is a PIL 'L' image (``mask_format="pil"``, as a Dataset row decodes)
    or an H×W uint8 numpy array (``"numpy"``, cheaper). The stream (spawn key 2) is disjoint from the train and
    test splits of :func:`generate_dataset` with the same seed; ids are ``stream-NNNNNN``.
    """
    if mask_format not in ("pil", "numpy"):
        raise ValueError(f"mask_format must be 'pil' or 'numpy', got {mask_format!r}")
    i = start
    while True:
        row, scene = _scene_at(seed, "stream", i, image_size, family_weights=family_weights, gradient=gradient)
        if describe:
            _add_words(row, scene)
        if scene_columns is not None:
            row.update(scene_columns(scene))
        if mask_format == "pil":
            row["gt_mask"] = Image.fromarray(row["gt_mask"], mode="L")
        yield row
        i += 1


# ----------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------
def shapeworld_features():
    """``sample_features()`` plus ``family`` (string), ``target_index`` (int32) and ``shape_boxes`` (list of
    [x1, y1, x2, y2] float32, one per shape in scene order)."""
    from datasets import Sequence as HFSequence
    from datasets import Value

    from wise_rl.data.schema import sample_features

    features = sample_features()
    features["family"] = Value("string")
    features["target_index"] = Value("int32")
    features["shape_boxes"] = HFSequence(HFSequence(Value("float32"), length=4))
    return features


def _png(image: Image.Image) -> dict[str, Any]:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return {"bytes": buf.getvalue(), "path": None}


def _encoded_rows(args: tuple[int, str, int, int, int, dict | None, float]) -> list[dict[str, Any]]:
    seed, stream, lo, hi, image_size, family_weights, gradient = args
    rows = []
    for i in range(lo, hi):
        row = sample_at(seed, stream, i, image_size, family_weights=family_weights, gradient=gradient)
        row["image"] = _png(row["image"])
        row["gt_mask"] = _png(Image.fromarray(row["gt_mask"], mode="L"))
        rows.append(row)
    return rows


def _build_split(seed, stream, n, image_size, family_weights, gradient, num_proc, progress):
    from datasets import Dataset
    from tqdm.auto import tqdm

    features = shapeworld_features()
    columns: dict[str, list] = {name: [] for name in features}
    # Rows are addressed by index, so the chunking changes nothing but the work split.
    workers = num_proc if num_proc and num_proc > 1 else 1
    chunk = 500 if workers == 1 else max(16, min(500, math.ceil(n / (4 * workers))))
    jobs = [(seed, stream, lo, min(n, lo + chunk), image_size, family_weights, gradient) for lo in range(0, n, chunk)]
    show = (n >= 2000) if progress is None else progress
    bar = tqdm(total=n, desc=f"shapeworld {stream}", unit="scene", disable=not show)

    def collect(rows):
        for row in rows:
            for name in columns:
                columns[name].append(row[name])
        bar.update(len(rows))

    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=num_proc) as pool:
            for rows in pool.map(_encoded_rows, jobs):
                collect(rows)
    else:
        for job in jobs:
            collect(_encoded_rows(job))
    bar.close()
    return Dataset.from_dict(columns, features=features)


def generate_dataset(
    n_train: int,
    n_test: int,
    seed: int = 0,
    image_size: int = 112,
    out_dir: str | None = None,
    num_proc: int | None = None,
    family_weights: dict[str, float] | None = None,
    gradient: float = 1.0,
    progress: bool | None = None,
):
    """A ``DatasetDict`` with ``train`` (n_train rows) and ``test`` (n_test rows) in :func:`shapeworld_features`.

    Train and test come from disjoint seed streams; the same arguments give identical rows and byte-identical
    images whatever ``num_proc``. ``image_size`` = [S, S] and ``model_size`` = S: the ShapeWorld image is the
    model frame. With ``out_dir`` the result is also written with ``save_to_disk``. A progress bar is shown for
    n ≥ 2000 unless ``progress`` says otherwise.
    """
    from datasets import DatasetDict

    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be ≥ 0, got {n_train}, {n_test}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 px, got {image_size}")
    _normalise_weights(family_weights)  # fail before any work
    dd = DatasetDict(
        {
            split: _build_split(seed, split, n, image_size, family_weights, gradient, num_proc, progress)
            for split, n in (("train", n_train), ("test", n_test))
        }
    )
    if out_dir is not None:
        # An empty split saved with the default sharding has no shard and cannot be reloaded (datasets 5.2):
        # give it one (empty) shard.
        dd.save_to_disk(str(out_dir), num_shards={k: 1 for k, ds in dd.items() if len(ds) == 0})
    return dd


# ----------------------------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------------------------
def _baseline_rows(data: Any) -> Iterable[dict[str, Any]]:
    cols = ("gt_bbox", "shape_boxes", "model_size")
    if hasattr(data, "select_columns"):  # a datasets.Dataset: skip decoding images
        missing = [c for c in cols if c not in data.column_names]
        if missing:
            raise ValueError(f"baseline needs columns {missing} (ShapeWorld rows), dataset has {data.column_names}")
        return data.select_columns(list(cols))
    return data


def _summary(ious: list[float]) -> dict[str, float]:
    arr = np.asarray(ious, dtype=np.float64)
    return {"n": int(arr.size), "acc@0.5": float((arr > 0.5).mean()) if arr.size else 0.0,
            "mean_iou": float(arr.mean()) if arr.size else 0.0}


def random_shape_baseline(data: Any, seed: int = 0) -> dict[str, float]:
    """Box a uniformly random shape of each scene: per row IoU(shape_boxes[j], gt_bbox), j random.
    Returns ``{"n", "acc@0.5" (fraction with IoU > 0.5), "mean_iou", "expected_acc@0.5" (mean of 1/#shapes)}``."""
    rng = np.random.default_rng(seed)
    ious, inv = [], []
    for k, row in enumerate(_baseline_rows(data)):
        boxes = row.get("shape_boxes")
        if not boxes:
            raise ValueError(f"row {k}: no shape_boxes; the random-shape baseline needs ShapeWorld rows")
        ious.append(box_iou(boxes[int(rng.integers(len(boxes)))], row["gt_bbox"]))
        inv.append(1.0 / len(boxes))
    out = _summary(ious)
    out["expected_acc@0.5"] = float(np.mean(inv)) if inv else 0.0
    return out


def centre_box_baseline(data: Any, box_size: float | None = None) -> dict[str, float]:
    """Box a constant square of side ``box_size`` (default: the mean gt box side over the data) centred in the
    model frame: ``[c − (b−1)/2, c − (b−1)/2, c + (b−1)/2, c + (b−1)/2]`` with c = (S − 1)/2."""
    rows = list(_baseline_rows(data))
    if box_size is None:
        sides = [((r["gt_bbox"][2] - r["gt_bbox"][0] + 1) + (r["gt_bbox"][3] - r["gt_bbox"][1] + 1)) / 2 for r in rows]
        box_size = float(np.mean(sides)) if sides else 1.0
    ious = []
    for r in rows:
        c = (r["model_size"] - 1) / 2.0
        h = (box_size - 1) / 2.0
        ious.append(box_iou([c - h, c - h, c + h, c + h], r["gt_bbox"]))
    out = _summary(ious)
    out["box_size"] = float(box_size)
    return out
