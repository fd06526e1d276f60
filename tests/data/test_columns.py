"""Your own data through a column mapping: the mapping's syntax and errors, box formats and units, points and boxes
derived from masks and polygons, stable ids, extra columns, thin targets, relative image paths."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from datasets import Dataset
from PIL import Image

from wise_rl import frames
from wise_rl.data.columns import ColumnMap, parse_columns
from wise_rl.data.geometry import inscribed_circle_points
from wise_rl.data.loaders import load_source
from wise_rl.data.schema import as_mask_array
from wise_rl.errors import ConfigError, DataError


def _image(width, height, colour=(200, 200, 200)):
    return Image.new("RGB", (width, height), colour)


def test_the_mapping_reads_as_a_string_or_a_mapping_and_names_a_wrong_entry():
    spec = parse_columns("query=problem, bbox=box,bbox_format=xywh,units=norm1000")
    assert spec == ColumnMap({"query": "problem", "bbox": "box"}, "xywh", "norm1000")
    assert parse_columns({"query": "problem", "bbox": "box", "bbox_format": "xywh", "units": "norm1000"}) == spec
    assert parse_columns(spec.spec()) == spec
    assert parse_columns(None) is None and parse_columns("") is None
    with pytest.raises(ConfigError, match=r"dataset_columns: unknown name 'qeury' \(did you mean 'query'\?\)"):
        parse_columns("qeury=problem", "dataset_columns")
    with pytest.raises(ConfigError, match="units='pixel'; expected one of pixels, norm1, norm1000"):
        parse_columns("units=pixel")
    with pytest.raises(ConfigError, match="not name=column"):
        parse_columns("query")
    with pytest.raises(ConfigError, match="either mask or polygons"):
        parse_columns("mask=m,polygons=p")
    with pytest.raises(ConfigError, match="'query' is given twice"):
        parse_columns("query=a,query=b")


@pytest.mark.parametrize("spec, box, expected_pixels", [
    ("bbox_format=xyxy", [32, 40, 192, 90], [32, 40, 192, 90]),
    ("bbox_format=xywh", [32, 40, 160, 50], [32, 40, 192, 90]),
    ("bbox_format=xywh,units=norm1", [0.1, 0.2, 0.5, 0.25], [32, 40, 192, 90]),
    ("units=norm1000", [100, 200, 600, 450], [32, 40, 192, 90]),
])
def test_box_formats_and_units_become_original_pixels_then_the_model_frame(spec, box, expected_pixels):
    ds = Dataset.from_dict({"q": ["the box"], "img": [_image(320, 200)], "b": [box]})
    row = load_source(ds, columns=f"query=q,image=img,bbox=b,{spec}", model_size=840)[0]
    # 320×200 → 840²: x · 840/320 = x · 2.625, y · 840/200 = y · 4.2
    assert row["gt_bbox"] == pytest.approx([32 * 2.625, 40 * 4.2, 192 * 2.625, 90 * 4.2], rel=1e-6)
    assert frames.bbox_to_original(row["gt_bbox"], (320, 200), 840) == pytest.approx(expected_pixels, rel=1e-6)
    assert row["image"].size == (840, 840) and row["image_size"] == [320, 200] and row["source"] == "mapped"


def test_points_come_from_the_mask_as_the_official_data_defines_them_and_box_only_rows_have_none():
    mask = np.zeros((60, 100), dtype=np.uint8)
    mask[10:30, 20:80] = 1  # a 60×20 bar: the two largest inscribed circles sit side by side
    ds = Dataset.from_dict({"query": ["the bar", "a box"], "image": [_image(100, 60)] * 2,
                            "mask": [mask.tolist(), None], "bbox": [None, [1, 2, 30, 40]]})
    rows = load_source(ds, columns="mask=mask,bbox=bbox", model_size=100, with_original_mask=True)
    bar, box_only = rows[0], rows[1]
    expected = frames.points_to_model(inscribed_circle_points(mask), (100, 60), 100)
    np.testing.assert_allclose(bar["gt_points"], expected, rtol=1e-6)
    assert bar["gt_bbox"] == pytest.approx(frames.bbox_to_model([20, 10, 79, 29], (100, 60), 100))
    assert np.array_equal(as_mask_array(bar["original_mask"]), mask)
    assert box_only["gt_points"] is None and box_only["gt_mask"] is None
    assert box_only["gt_bbox"] == pytest.approx(frames.bbox_to_model([1, 2, 30, 40], (100, 60), 100))


def test_polygons_fill_the_mask_in_image_pixels():
    ds = Dataset.from_dict({"text": ["the square"], "image": [_image(50, 40)],
                            "poly": [[[[10, 5], [19, 5], [19, 14], [10, 14]]]]})
    row = load_source(ds, columns="query=text,polygons=poly", model_size=50, with_original_mask=True)[0]
    mask = as_mask_array(row["original_mask"])
    assert mask.shape == (40, 50) and mask.sum() == 100 and mask[5:15, 10:20].all()
    assert frames.bbox_to_original(row["gt_bbox"], (50, 40), 50) == pytest.approx([10, 5, 19, 14])


def test_rows_without_an_id_get_stable_ids_and_extra_columns_ride_along():
    rows = {"problem": ["a", "b", "a"], "image": [_image(30, 20), _image(30, 20, (9, 9, 9)), _image(30, 20)],
            "bbox": [[1, 1, 5, 5], [2, 2, 6, 6], [1, 1, 5, 5]], "solution": ["why a", "why b", "why a"],
            "detailed": ["d0", "d1", "d2"], "weight": [0.5, 1.0, 2.0]}
    first = load_source(Dataset.from_dict(rows), columns="query=problem", model_size=30)
    reordered = load_source(Dataset.from_dict(rows).select([1, 0, 2]), columns="query=problem", model_size=30)
    assert first["id"][0] == reordered["id"][1] and first["id"][1] == reordered["id"][0]
    assert first["id"][2] == first["id"][0] + "~2"  # the same content twice: the loader's duplicate rule
    assert first["solution"] == ["why a", "why b", "why a"] and first["weight"] == [0.5, 1.0, 2.0]
    assert first["detailed"] == ["d0", "d1", "d2"]  # a column named as wise_rl names it maps itself


def test_a_wrong_mapping_is_one_line_naming_the_column_and_the_row():
    ds = Dataset.from_dict({"problem": ["a", "b"], "image": [_image(30, 20)] * 2, "box": [[1, 1, 5, 5], [1, 1, 50, 5]]})
    with pytest.raises(DataError) as err:
        load_source(ds, columns="query=problem,bbox=box")
    message = str(err.value)
    assert "\n" not in message and "row 1" in message and "'box'" in message and "outside the 30×20 image" in message
    with pytest.raises(DataError, match=r"no column 'boxes' \(mapped to bbox\) \(did you mean 'box'\?\)"):
        load_source(ds, columns="query=problem,bbox=boxes")
    with pytest.raises(DataError, match="no target column"):
        load_source(ds.remove_columns("box"), columns="query=problem")
    report = {}
    kept = load_source(ds, columns="query=problem,bbox=box", skip_invalid=True, report=report)
    assert len(kept) == 1 and report["skipped"] == {"bbox_outside_image": 1}


def test_a_thin_target_never_vanishes_from_gt_mask_and_is_named(caplog):
    mask = np.zeros((600, 800), dtype=np.uint8)
    mask[100:500, 5] = 1  # a 1-px wide wire
    assert not frames.mask_to_model(mask, 112).any()  # nearest neighbour alone would lose it
    ds = Dataset.from_dict({"id": ["wire"], "query": ["the wire"], "image": [_image(800, 600)],
                            "mask": [Image.fromarray(mask * 255)]})
    report = {}
    with caplog.at_level(logging.WARNING):
        rows = load_source(ds, columns="mask=mask", model_size=112, with_original_mask=True, report=report)
    assert report["thin_targets"] == ["wire"] and "thin" in caplog.text and "wire" in caplog.text
    gt = as_mask_array(rows[0]["gt_mask"])
    assert gt.any() and gt[:, 0].sum() == gt.sum()  # x = 5 of 800 lies in the first of 112 columns
    assert np.array_equal(as_mask_array(rows[0]["original_mask"]), mask)  # scoring keeps full resolution
    # the saved rows reload (before, an emptied gt_mask next to a gt_bbox failed to reload)
    again = load_source(rows.remove_columns(["original_mask", "original_image"]))
    assert np.array_equal(as_mask_array(again[0]["gt_mask"]), gt)


def test_a_relative_image_path_resolves_beside_the_data_file_first(tmp_path, monkeypatch, caplog):
    data, elsewhere = tmp_path / "data", tmp_path / "cwd"
    for folder, colour in ((data, (255, 0, 0)), (elsewhere, (0, 0, 255))):
        (folder / "images").mkdir(parents=True)
        _image(40, 30, colour).save(folder / "images" / "a.png")
    _image(40, 30, (0, 255, 0)).save(elsewhere / "images" / "only-here.png")
    lines = [{"problem": "q", "image": "images/a.png", "bbox": [1, 1, 9, 9]},
             {"problem": "r", "image": "images/only-here.png", "bbox": [1, 1, 9, 9]}]
    (data / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.chdir(elsewhere)
    with caplog.at_level(logging.WARNING):
        rows = load_source(str(data / "d.jsonl"), columns="query=problem", model_size=40)
    assert rows[0]["image"].getpixel((20, 15)) == (255, 0, 0)  # beside the data file, not the working directory
    assert rows[1]["image"].getpixel((20, 15)) == (0, 255, 0)  # only in the working directory: read, and said so
    assert "not beside the data" in caplog.text


def test_the_refcocog_kind_keeps_rationales_and_extra_columns():
    """Mapped by hand to the refCOCOg kind, a `detailed` column and any other column come through (they were
    dropped, so `build-sft --mode compress` found no rationale)."""
    image = _image(840, 840)
    ds = Dataset.from_dict({
        "id": ["a"], "problem": ["the box"], "image": [image], "img_height": [200], "img_width": [320],
        "solution": ["<box>(10,20),(100,200)</box><points>(50,60),(60,70)</points>"],
        "detailed": ["There is one box. It is the answer."], "weight": [0.5]})
    row = load_source(ds, kind="refcocog")[0]
    assert row["detailed"] == "There is one box. It is the answer." and row["concise"] is None
    assert row["weight"] == 0.5 and row["gt_bbox"] == pytest.approx([10, 20, 100, 200])
