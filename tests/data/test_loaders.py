"""load_source: every source kind into the sample schema, values on hand-computable fixtures, and bad rows.

Fixtures are written in the exact published schemas (refCOCOg_2k_840 / ReasonSeg hub rows through
``datasets.Dataset.from_dict(...).to_parquet()`` or ``save_to_disk``, LISA folders as NAME.jpg + NAME.json).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Features, Sequence, Value
from datasets import Image as ImageFeature
from PIL import Image

from wise_rl import frames
from wise_rl.data.geometry import inscribed_circle_points
from wise_rl.data.lisa import lisa_mask
from wise_rl.data.loaders import DataError, load_source
from wise_rl.data.schema import sample_features

REFCOCOG_FEATURES = Features({
    "id": Value("string"), "problem": Value("string"), "solution": Value("string"), "image": ImageFeature(),
    "img_height": Value("int64"), "img_width": Value("int64"),
})
REASONSEG_FEATURES = Features({
    "image": ImageFeature(), "mask": Sequence(Sequence(Value("bool"))), "text": Value("string"),
    "image_id": Value("string"), "ann_id": Value("string"), "img_height": Value("int64"), "img_width": Value("int64"),
})
SOLUTION = "<box>(84,168),(420,630)</box><points>(200,300),(300,500)</points>"


def image_bytes(width: int, height: int, fmt: str = "PNG", color=(120, 60, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format=fmt)
    return buf.getvalue()


def refcocog_dict(n: int = 3, solution: str = SOLUTION) -> dict:
    return {
        "id": [f"r{i}" for i in range(n)],
        "problem": [f"the thing number {i}" for i in range(n)],
        "solution": [solution] * n,
        "image": [{"bytes": image_bytes(840, 840), "path": None}] * n,
        "img_height": [480] * n,
        "img_width": [640] * n,
    }


def rect_mask(width=200, height=100, rows=(30, 40), cols=(50, 70)) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def reasonseg_dict(n: int = 2, width: int = 200, height: int = 100, mask: np.ndarray | None = None) -> dict:
    mask = rect_mask(width, height) if mask is None else mask
    return {
        "image": [{"bytes": image_bytes(width, height, "JPEG"), "path": None}] * n,
        "mask": [mask.tolist()] * n,
        "text": [f"what holds object {i}?" for i in range(n)],
        "image_id": [f"img{i}" for i in range(n)],
        "ann_id": [f"ann{i}" for i in range(n)],
        "img_height": [height] * n,
        "img_width": [width] * n,
    }


def write_parquet(tmp_path, data: dict, features: Features, name: str = "rows.parquet"):
    path = tmp_path / name
    Dataset.from_dict(data, features=features).to_parquet(str(path))
    return path


# --------------------------------------------------------------------------------------------------- refCOCOg


def test_refcocog_parquet_values_in_the_840_frame(tmp_path):
    path = write_parquet(tmp_path, refcocog_dict(), REFCOCOG_FEATURES)
    ds = load_source(path)
    assert ds.features == sample_features()
    assert ds.num_rows == 3
    row = ds[0]
    assert row["id"] == "r0" and row["query"] == "the thing number 0"
    assert row["gt_bbox"] == [84.0, 168.0, 420.0, 630.0]
    assert row["gt_points"] == [[200.0, 300.0], [300.0, 500.0]]
    assert row["image_size"] == [640, 480]
    assert row["model_size"] == 840
    assert row["image"].size == (840, 840) and row["image"].mode == "RGB"
    assert row["gt_mask"] is None and row["source"] == "refcocog"


def test_refcocog_rescaled_to_a_smaller_model_frame(tmp_path):
    path = write_parquet(tmp_path, refcocog_dict(), REFCOCOG_FEATURES)
    row = load_source(path, model_size=420)[1]
    assert row["gt_bbox"] == [42.0, 84.0, 210.0, 315.0]
    assert row["gt_points"] == [[100.0, 150.0], [150.0, 250.0]]
    assert row["image"].size == (420, 420)
    assert row["model_size"] == 420 and row["image_size"] == [640, 480]


def test_refcocog_jsonl_with_relative_image_paths(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(image_bytes(840, 840))
    line = {"id": "a", "problem": "left cup", "solution": SOLUTION, "image": "imgs/a.png", "img_height": 300,
            "img_width": 400}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(line) + "\n")
    row = load_source(path)[0]
    assert row["gt_bbox"] == [84.0, 168.0, 420.0, 630.0]
    assert row["image_size"] == [400, 300]


def test_hub_name_offline_fails_clearly():
    with pytest.raises(DataError, match="HF_HUB_OFFLINE") as info:
        load_source("no-such-user-zz/no-such-dataset-zz")
    assert info.value.source == "no-such-user-zz/no-such-dataset-zz"


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_source(tmp_path / "nope.parquet")


def test_a_mistyped_folder_is_named_as_a_path_not_as_a_hub_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(DataError, match="no such file or folder in 'runs'") as info:
        load_source("runs/shapeworl")  # reads like org/name, but runs/ is a folder here: a path with a typo
    assert "HF_HUB_OFFLINE" not in str(info.value)


# --------------------------------------------------------------------------------------------------- ReasonSeg


def test_reasonseg_rectangle_mask_to_model_frame(tmp_path):
    path = write_parquet(tmp_path, reasonseg_dict(), REASONSEG_FEATURES)
    ds = load_source(path, with_original_mask=True)
    assert ds.features == sample_features(with_original_mask=True)
    row = ds[0]
    assert row["id"] == "img0_ann0" and row["query"] == "what holds object 0?"
    assert row["image_size"] == [200, 100]
    # Mask columns 50..69 and rows 30..39 (pixel-inclusive), scaled by 840/200 = 4.2 and 840/100 = 8.4.
    np.testing.assert_allclose(row["gt_bbox"], [50 * 4.2, 30 * 8.4, 69 * 4.2, 39 * 8.4], rtol=1e-6)
    points = np.asarray(row["gt_points"]) / [4.2, 8.4]
    np.testing.assert_allclose(points, inscribed_circle_points(rect_mask()), atol=1e-4)
    # The first centre is a pixel of maximal distance (5) to the background: row 34 or 35, column 54..65.
    assert round(points[0][1], 3) in (34, 35) and 54 <= round(points[0][0], 3) <= 65
    for x, y in points:
        assert 50 <= x <= 69 and 30 <= y <= 39
    gt = np.asarray(row["gt_mask"])
    assert gt.shape == (840, 840) and set(np.unique(gt)) == {0, 1}
    assert gt[int(35 * 8.4), int(60 * 4.2)] == 1 and gt[0, 0] == 0
    assert abs(int(gt.sum()) - 84 * 84) <= 2 * 84  # 20 px × 4.2 by 10 px × 8.4, nearest-neighbour edges
    np.testing.assert_array_equal(np.asarray(row["original_mask"]), rect_mask().astype(np.uint8))
    assert row["image"].size == (840, 840)


def test_reasonseg_text_lists_expand_and_duplicate_ids_become_unique(tmp_path):
    data = reasonseg_dict(n=2)
    data["text"] = [["first query", "second query"], ["only query"]]
    data["image_id"] = ["same", "same"]
    data["ann_id"] = ["a", "a"]
    features = REASONSEG_FEATURES.copy()
    features["text"] = Sequence(Value("string"))
    path = write_parquet(tmp_path, data, features)
    report: dict = {}
    ds = load_source(path, report=report)
    assert ds["id"] == ["same_a#0", "same_a#1", "same_a#0~2"]
    assert ds["query"] == ["first query", "second query", "only query"]
    assert report["renamed_ids"] == 1 and report["rows_read"] == 2 and report["rows_out"] == 3


def test_save_to_disk_split_selection(tmp_path):
    ds = Dataset.from_dict(reasonseg_dict(n=1), features=REASONSEG_FEATURES)
    other = Dataset.from_dict(reasonseg_dict(n=2), features=REASONSEG_FEATURES)
    DatasetDict({"train": other, "test": ds}).save_to_disk(str(tmp_path / "with_test"))
    assert load_source(tmp_path / "with_test").num_rows == 1  # 'test' by default
    assert load_source(tmp_path / "with_test", split="train").num_rows == 2
    DatasetDict({"train": other, "val": ds}).save_to_disk(str(tmp_path / "no_test"))
    with pytest.raises(DataError, match="train, val"):
        load_source(tmp_path / "no_test")
    assert load_source(tmp_path / "no_test", split="val").num_rows == 1
    with pytest.raises(DataError, match="no split 'dev'"):
        load_source(tmp_path / "no_test", split="dev")


def test_limit_stops_early(tmp_path):
    path = write_parquet(tmp_path, refcocog_dict(n=5), REFCOCOG_FEATURES)
    assert load_source(path, limit=2)["id"] == ["r0", "r1"]


def test_forced_kind_reports_missing_columns(tmp_path):
    path = write_parquet(tmp_path, refcocog_dict(), REFCOCOG_FEATURES)
    with pytest.raises(DataError, match="missing column") as info:
        load_source(path, kind="reasonseg")
    assert info.value.column == "text" and str(path) in str(info.value)


# --------------------------------------------------------------------------------------------------- LISA


def make_lisa(folder, name="scene", width=60, height=40, shapes=None, text=("find the box", "the red one")):
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (10, 200, 30)).save(folder / f"{name}.jpg", quality=95)
    if shapes is None:
        shapes = [
            {"label": "target", "points": [[10, 10], [30, 10], [30, 30], [10, 30]]},
            {"label": "ignore", "points": [[40, 5], [55, 5], [55, 20], [40, 20]]},
            {"label": "flag", "points": [[0, 33], [8, 33], [8, 39], [0, 39]]},
        ]
    anno = {"text": list(text), "is_sentence": False, "shapes": shapes}
    (folder / f"{name}.json").write_text(json.dumps(anno))
    return folder


def test_lisa_folder_target_ignore_and_flag(tmp_path):
    folder = make_lisa(tmp_path / "lisa")
    ds = load_source(folder, with_original_mask=True)
    assert ds["id"] == ["scene"] and ds["query"] == ["find the box"]  # LISA's evaluation: the first text
    every = load_source(folder, lisa_texts="all")
    assert every["id"] == ["scene#0", "scene#1"] and every["query"] == ["find the box", "the red one"]
    row = ds[0]
    original = np.asarray(row["original_mask"])
    assert original.shape == (40, 60)
    assert original[20, 20] == 1 and original[12, 47] == 255 and original[36, 4] == 0  # target, ignore, flag
    assert (original[10:31, 10:31] == 1).all() and (original == 1).sum() == 21 * 21
    gt = np.asarray(row["gt_mask"])
    assert gt.shape == (840, 840) and set(np.unique(gt)) == {0, 1, 255}
    assert gt[int(12 * 21), int(47 * 14)] == 255 and gt[int(36 * 21), int(4 * 14)] == 0
    # The bbox ignores the 255 pixels: target columns/rows 10..30, scaled by 840/60 = 14 and 840/40 = 21.
    np.testing.assert_allclose(row["gt_bbox"], [140.0, 210.0, 420.0, 630.0])
    assert row["source"] == "lisa" and row["image_size"] == [60, 40]


def test_lisa_paints_by_area_largest_first():
    # A small target inside a large ignore region stays target (LISA sorts polygons by area, largest first).
    shapes = [
        {"label": "target", "points": [[4, 4], [6, 4], [6, 6], [4, 6]]},
        {"label": "ignore", "points": [[0, 0], [19, 0], [19, 19], [0, 19]]},
    ]
    mask = lisa_mask(shapes, 20, 20)
    assert (mask[4:7, 4:7] == 1).all() and (mask == 1).sum() == 9 and (mask == 255).sum() == 400 - 9


def test_lisa_bad_files_are_counted(tmp_path):
    folder = make_lisa(tmp_path / "lisa", name="good")
    make_lisa(folder, name="nothing", shapes=[{"label": "ignore", "points": [[1, 1], [9, 1], [9, 9]]}])
    make_lisa(folder, name="noquery", text=())
    make_lisa(folder, name="badpoly", shapes=[{"label": "target", "points": [[1, "x"]]}])
    with pytest.raises(DataError) as info:
        load_source(folder)
    assert info.value.column == "shapes" and info.value.row_id == "badpoly"
    report: dict = {}
    ds = load_source(folder, skip_invalid=True, report=report)
    assert ds["id"] == ["good", "nothing"]  # only an ignore polygon: a no-object sample, kept
    assert report["skipped"] == {"bad_polygon": 1, "empty_query": 1}


# --------------------------------------------------------------------------------------------------- schema rows


def schema_dataset(n=3, size=112) -> Dataset:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[20:40, 30:60] = 1
    rows = {
        "id": [f"s{i}" for i in range(n)],
        "image": [Image.new("RGB", (size, size), (i * 20, 0, 0)) for i in range(n)],
        "query": ["the blue square"] * n,
        "image_size": [[size, size]] * n,
        "model_size": [size] * n,
        "gt_bbox": [[30.0, 20.0, 59.0, 39.0]] * n,
        "gt_points": [[[40.0, 29.0], [50.0, 30.0]]] * n,
        "gt_mask": [Image.fromarray(mask, mode="L")] * n,
        "detailed": ["a long rationale"] * n,
        "concise": ["blue"] * n,
        "source": ["shapeworld"] * n,
        "frame": [f"abs{size}"] * n,
    }
    return Dataset.from_dict(rows, features=sample_features())


def test_schema_rows_pass_through_and_rescale(tmp_path):
    DatasetDict({"train": schema_dataset(4), "test": schema_dataset(2)}).save_to_disk(str(tmp_path / "sw"))
    ds = load_source(tmp_path / "sw", with_original_mask=True)
    assert ds.num_rows == 2
    row = ds[1]
    assert row["model_size"] == 112 and row["image"].size == (112, 112)
    assert row["gt_bbox"] == [30.0, 20.0, 59.0, 39.0] and row["detailed"] == "a long rationale"
    assert row["source"] == "shapeworld"
    np.testing.assert_array_equal(np.asarray(row["original_mask"]), np.asarray(row["gt_mask"]))
    big = load_source(tmp_path / "sw", split="train", model_size=224)[0]
    assert big["gt_bbox"] == [60.0, 40.0, 118.0, 78.0] and big["gt_points"] == [[80.0, 58.0], [100.0, 60.0]]
    assert np.asarray(big["gt_mask"]).shape == (224, 224) and np.asarray(big["gt_mask"]).sum() == 4 * 20 * 30


def test_schema_rows_with_bad_bbox_are_rejected():
    ds = schema_dataset(2)
    ds = ds.map(lambda r, i: {"gt_bbox": [30.0, 20.0, 159.0, 39.0] if i == 1 else r["gt_bbox"]},
                with_indices=True)
    with pytest.raises(DataError, match="bbox_outside_image|outside") as info:
        load_source(ds)
    assert info.value.row == 1 and info.value.column == "gt_bbox"


# --------------------------------------------------------------------------------------------------- bad rows


def _bad_refcocog(field, value):
    def build(tmp_path):
        data = refcocog_dict(n=3)
        data[field] = list(data[field])
        data[field][1] = value
        return write_parquet(tmp_path, data, REFCOCOG_FEATURES)
    return build


def _bad_reasonseg_mask(mask):
    def build(tmp_path):
        data = reasonseg_dict(n=3)
        data["mask"][1] = mask.tolist()
        return write_parquet(tmp_path, data, REASONSEG_FEATURES)
    return build


def _bad_image_path(tmp_path):
    good = {"id": "a", "problem": "cup", "solution": SOLUTION, "image": "a.png", "img_height": 3, "img_width": 4}
    (tmp_path / "a.png").write_bytes(image_bytes(840, 840))
    lines = [good, {**good, "id": "b", "image": "missing.png"}, {**good, "id": "c"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


BAD_ROWS = {
    "unparsable_solution": (_bad_refcocog("solution", "<box>(1,2)</box>"), "solution"),
    "bbox_outside_image": (_bad_refcocog("solution", SOLUTION.replace("(420,630)", "(900,630)")), "solution"),
    "degenerate_bbox": (_bad_refcocog("solution", SOLUTION.replace("(84,168)", "(500,168)")), "solution"),
    "empty_query": (_bad_refcocog("problem", "   "), "problem"),
    "unreadable_image": (_bad_refcocog("image", {"bytes": b"not an image at all", "path": None}), "image"),
    "mask_shape_mismatch": (_bad_reasonseg_mask(rect_mask(width=100, height=200)), "mask"),
    "empty_mask": (_bad_reasonseg_mask(np.zeros((100, 200), dtype=bool)), "mask"),
}


@pytest.mark.parametrize("code", sorted(BAD_ROWS))
def test_bad_row_raises_naming_source_row_column_then_skip_counts_it(tmp_path, code):
    build, column = BAD_ROWS[code]
    path = build(tmp_path)
    with pytest.raises(DataError) as info:
        load_source(path)
    err = info.value
    message = str(err)
    assert err.code == code and err.row == 1 and err.column == column
    assert str(path) in message and "row 1 " in message and f"column {column!r}" in message
    report: dict = {}
    ds = load_source(path, skip_invalid=True, report=report)
    assert ds.num_rows == 2 and report["skipped"] == {code: 1}
    assert report["rows_read"] == 3 and report["rows_out"] == 2
    assert message in report["skipped_examples"][code]


def test_unreadable_image_path_in_jsonl(tmp_path):
    path = _bad_image_path(tmp_path)
    with pytest.raises(DataError, match="missing.png") as info:
        load_source(path)
    assert info.value.row == 1 and info.value.row_id == "b" and info.value.column == "image"
    report: dict = {}
    assert load_source(path, skip_invalid=True, report=report)["id"] == ["a", "c"]
    assert report["skipped"] == {"unreadable_image": 1}


def test_missing_column_names_source_and_column(tmp_path):
    data = refcocog_dict()
    del data["solution"]
    features = Features({k: v for k, v in REFCOCOG_FEATURES.items() if k != "solution"})
    path = write_parquet(tmp_path, data, features)
    with pytest.raises(DataError) as info:
        load_source(path, skip_invalid=True)  # a missing column is a source error: never skipped
    assert info.value.column == "solution" and info.value.code == "missing_column"
    assert str(path) in str(info.value) and "'solution'" in str(info.value)


def test_all_rows_invalid_raises_even_when_skipping(tmp_path):
    data = refcocog_dict(n=1, solution="nonsense")
    path = write_parquet(tmp_path, data, REFCOCOG_FEATURES, name="all_bad.parquet")
    with pytest.raises(DataError, match="no valid rows"):
        load_source(path, skip_invalid=True)


def test_skip_logs_a_warning_with_counts(tmp_path, caplog):
    path = _bad_refcocog("solution", "nonsense")(tmp_path)
    with caplog.at_level("WARNING", logger="wise_rl.data.loaders"):
        load_source(path, skip_invalid=True)
    assert "skipped 1 invalid of 3" in caplog.text and "unparsable_solution: 1" in caplog.text


def test_frame_round_trip_of_loaded_reasonseg_box(tmp_path):
    path = write_parquet(tmp_path, reasonseg_dict(n=1), REASONSEG_FEATURES)
    row = load_source(path, model_size=512)[0]
    back = frames.bbox_to_original(row["gt_bbox"], row["image_size"], row["model_size"])
    np.testing.assert_allclose(back, [50, 30, 69, 39], atol=1e-3)


def test_folder_of_split_named_parquet_files(tmp_path):
    data_dir = tmp_path / "hub_layout" / "data"
    data_dir.mkdir(parents=True)
    write_parquet(data_dir, refcocog_dict(n=2), REFCOCOG_FEATURES, name="train-00000-of-00001.parquet")
    write_parquet(data_dir, refcocog_dict(n=1), REFCOCOG_FEATURES, name="test-00000-of-00001.parquet")
    assert load_source(tmp_path / "hub_layout").num_rows == 1
    assert load_source(tmp_path / "hub_layout", split="train").num_rows == 2


def test_shapeworld_output_passes_through_with_its_extra_columns(shapeworld_dir):
    from datasets import load_from_disk

    raw = load_from_disk(str(shapeworld_dir))["test"]
    ds = load_source(shapeworld_dir, with_original_mask=True)
    assert ds.num_rows == raw.num_rows
    assert ds["id"] == raw["id"] and ds["gt_bbox"] == raw["gt_bbox"] and ds["gt_points"] == raw["gt_points"]
    extras = [c for c in raw.column_names if c not in sample_features(with_original_mask=True)]
    for column in extras:
        assert ds[column] == raw[column]
    first = ds[0]
    np.testing.assert_array_equal(np.asarray(first["original_mask"]), np.asarray(raw[0]["gt_mask"]))
    rescaled = load_source(shapeworld_dir, model_size=2 * raw[0]["model_size"], limit=2)
    assert not set(extras) & set(rescaled.column_names)
    np.testing.assert_allclose(rescaled[0]["gt_bbox"], np.asarray(raw[0]["gt_bbox"]) * 2)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_corrupt_pass_through_image_is_caught(tmp_path, fmt):
    """An 840² image is passed through undecoded, yet truncated / corrupted bytes are still reported."""
    noise = (np.random.default_rng(0).random((840, 840, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    good = buf.getvalue()
    bad = good[: len(good) // 2] if fmt == "JPEG" else good[:5000] + bytes(100) + good[5100:]
    data = refcocog_dict(n=2)
    data["image"] = [{"bytes": good, "path": None}, {"bytes": bad, "path": None}]
    path = write_parquet(tmp_path, data, REFCOCOG_FEATURES)
    with pytest.raises(DataError) as info:
        load_source(path)
    assert info.value.code == "unreadable_image" and info.value.row == 1
    row = load_source(path, skip_invalid=True)[0]
    assert np.array_equal(np.asarray(row["image"]), np.asarray(Image.open(io.BytesIO(good)).convert("RGB")))
