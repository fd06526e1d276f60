"""LISA folders read as LISA's evaluation reads them: first text per image, image-name ids, no-object samples,
OpenCV masks, images as shown. Expected values are hand-computed."""

from __future__ import annotations

import io
import json
import random

import cv2
import numpy as np
import pytest
from PIL import Image

from wise_rl.cli import main
from wise_rl.data.lisa import lisa_mask
from wise_rl.data.loaders import load_source

TARGET = [[10, 5], [29, 5], [29, 24], [10, 24]]  # columns 10..29 × rows 5..24 = 400 px (outline included)


def write(folder, name, text, shapes, size=(80, 60)):
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 60)).save(folder / f"{name}.jpg", quality=95)
    (folder / f"{name}.json").write_text(json.dumps({"text": text, "is_sentence": True, "shapes": shapes}))


@pytest.fixture()
def folder(tmp_path):
    """a: 3 texts, c: 1 text (both the 400 px target); b: no shapes; d: only a flag shape (no-object samples)."""
    f = tmp_path / "lisa"
    write(f, "a", ["what holds the books?", "the shelf", "where to put a vase"], [{"label": "t", "points": TARGET}])
    write(f, "b", ["what is flying?"], [])
    write(f, "c", ["the red part"], [{"label": "target", "points": TARGET}])
    write(f, "d", ["anything edible?"], [{"label": "flag", "points": [[0, 0], [9, 0], [9, 9]]}])
    return f


def test_one_sample_per_image_with_its_first_text_and_the_image_name_as_id(folder):
    ds = load_source(folder)
    assert ds["id"] == ["a", "b", "c", "d"]
    assert ds["query"] == ["what holds the books?", "what is flying?", "the red part", "anything edible?"]
    every = load_source(folder, lisa_texts="all")
    assert every["id"] == ["a#0", "a#1", "a#2", "b#0", "c#0", "d#0"] and every["query"][1] == "the shelf"
    with pytest.raises(ValueError, match="lisa_texts"):
        load_source(folder, lisa_texts="some")


def test_no_object_samples_are_kept_with_an_empty_target(folder):
    report: dict = {}
    ds = load_source(folder, with_original_mask=True, skip_invalid=True, report=report)
    assert len(ds) == 4 and report["skipped"] == {}
    b = ds[1]
    assert b["gt_bbox"] is None and b["gt_points"] is None
    assert not np.asarray(b["original_mask"]).any() and not np.asarray(b["gt_mask"]).any()


def _completion(bbox):
    answer = json.dumps({"bbox": bbox, "points_1": [1, 1], "points_2": [1, 1]})
    return f"<think>x</think><answer>{answer}</answer>"


def _score(tmp_path, folder, preds, *extra):
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps({"id": i, "completion": c}) + "\n" for i, c in preds))
    out = tmp_path / "m.json"
    assert main(["score", "--dataset", str(folder), "--predictions", str(path), "--out", str(out), "--quiet",
                 *extra]) == 0
    recs = [json.loads(x) for x in (tmp_path / "m.samples.jsonl").read_text().splitlines()]
    return json.loads(out.read_text()), {r["id"]: r for r in recs}


def test_score_under_lisa_rules(tmp_path, folder):
    # 80×60 original in the 840 frame: x' = 10.5 x, y' = 14 y.
    preds = [
        ("a", _completion([105, 70, 304.5, 336])),  # the target exactly: IoU 1
        ("b", _completion([100, 100, 50, 50])),  # an inverted box decodes to an empty mask: empty/empty → IoU 1
        ("c", _completion([105, 70, 199.5, 336])),  # columns 10..19: I = 200, U = 400
        ("d", _completion([0, 0, 0, 0])),  # the pixel (0, 0) on an empty target: I = 0, U = 1 → IoU 0
        ("zzz", _completion([0, 0, 0, 0])),  # not an image of the folder
    ]
    m, recs = _score(tmp_path, folder, preds)
    assert m["n"] == 4 and m["n_failed"] == 0 and m["n_unknown_ids"] == 1 and m["missing_ids"] == []
    assert [recs[k]["iou"] for k in "abcd"] == [1.0, 1.0, 0.5, 0.0]
    assert (recs["b"]["union"], recs["d"]["union"]) == (0, 1)
    assert m["gIoU"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert m["cIoU"] == pytest.approx((400 + 0 + 200 + 0) / (400 + 0 + 400 + 1))
    assert m["n_empty_union"] == 1
    assert m["seg-zero"]["n_dropped_empty_union"] == 1  # Seg-Zero drops what LISA counts as 1
    # A count of failures never exceeds the samples: 7 predictions keyed by text, 4 samples.
    many = [(f"{k}#{j}", _completion([0, 0, 0, 0])) for k in "abcd" for j in range(2)][:7]
    m2, _ = _score(tmp_path, folder, many)
    assert m2["n"] == 4 and m2["n_failed"] == 4 and m2["n_unknown_ids"] == 7 and m2["n_failed"] <= m2["n"]


def lisa_reference(shapes, width, height):
    """LISA's get_mask_from_json (utils/data_processing.py), transcribed call for call."""
    area_list, valid = [], []
    for i in shapes:
        if i["label"].lower() == "flag":
            continue
        tmp = np.zeros((height, width), dtype=np.uint8)
        cv2.polylines(tmp, np.array([i["points"]], dtype=np.int32), True, 1, 1)
        cv2.fillPoly(tmp, np.array([i["points"]], dtype=np.int32), 1)
        area_list.append(tmp.sum())
        valid.append(i)
    mask = np.zeros((height, width), dtype=np.uint8)
    for s in list(np.argsort(area_list)[::-1].astype(np.int32)):
        i = valid[s]
        value = 255 if "ignore" in i["label"].lower() else 1
        cv2.polylines(mask, np.array([i["points"]], dtype=np.int32), True, value, 1)
        cv2.fillPoly(mask, np.array([i["points"]], dtype=np.int32), value)
    return mask


def test_masks_by_hand():
    # A right triangle: x, y ≥ 1 and x + y ≤ 6 → 5 + 4 + 3 + 2 + 1 = 15 pixels, its outline included.
    assert lisa_mask([{"label": "t", "points": [[1, 1], [5, 1], [1, 5]]}], 8, 8).sum() == 15
    # Float vertices are truncated toward zero (np.int32): [[1,1],[4,1],[4,4],[1,4]] → 4 × 4 = 16 pixels.
    quad = [[1.9, 1.9], [4.7, 1.2], [4.2, 4.8], [1.1, 4.5]]
    assert lisa_mask([{"label": "t", "points": quad}], 8, 8).sum() == 16
    # A polygon one row high still covers both rows: 7 × 2 = 14 pixels.
    assert lisa_mask([{"label": "t", "points": [[2, 2], [8, 2], [8, 3], [2, 3]]}], 10, 6).sum() == 14


def test_masks_match_lisa_pixel_for_pixel():
    rng = random.Random(0)
    for _ in range(300):
        w, h = rng.randint(5, 40), rng.randint(5, 40)
        shapes = []
        for _ in range(rng.randint(1, 4)):
            n = rng.randint(1, 7)
            points = [[rng.uniform(-3, w + 3), rng.uniform(-3, h + 3)] for _ in range(n)]
            label = rng.choice(["target", "ignore", "Ignore region", "flag", "object"])
            shapes.append({"label": label, "points": points})
        ours = lisa_mask(shapes, w, h)
        assert np.array_equal(ours, lisa_reference(shapes, w, h)), shapes


def test_exif_oriented_image_and_its_polygons_agree(tmp_path):
    """Stored 60×30 with Orientation 6, shown 30×60; a polygon over the shown lower half is a 30 × 30 target."""
    f = tmp_path / "exif"
    f.mkdir()
    stored = Image.new("RGB", (60, 30), (200, 0, 0))
    stored.paste((0, 0, 200), (30, 0, 60, 30))  # shown: red top half, blue bottom half
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif)
    (f / "s.jpg").write_bytes(buf.getvalue())
    lower = [{"label": "t", "points": [[0, 30], [29, 30], [29, 59], [0, 59]]}]
    (f / "s.json").write_text(json.dumps({"text": ["the lower half"], "shapes": lower}))
    row = load_source(f, with_original_mask=True, model_size=60)[0]
    assert row["image_size"] == [30, 60]
    original = np.asarray(row["original_mask"])
    assert original.shape == (60, 30) and original[30:].all() and not original[:30].any()
    bottom = np.asarray(row["image"])[50, 30]
    assert bottom[2] > 150 and bottom[0] < 60  # the model image is the shown one (blue at the bottom)


def test_training_reads_every_text_and_sft_skips_no_object_samples(folder, caplog):
    from wise_rl import training

    ds = training.load_training_dataset(training.WiseScriptArguments(dataset=str(folder)))
    assert ds["id"] == ["a#0", "a#1", "a#2", "b#0", "c#0", "d#0"]
    with caplog.at_level("WARNING"):
        rows = training.sft_rows(ds, "answer-only", "answer")
    assert len(rows) == 4 and "skipping 2 of 6 rows without gt_bbox" in caplog.text
