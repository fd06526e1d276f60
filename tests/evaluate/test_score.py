"""``wise-rl score`` on fixtures in the three real schemas (ReasonSeg hub rows, LISA folder, refCOCOg_840 rows)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset, Features, Sequence, Value
from datasets import Image as ImageFeature
from PIL import Image

from wise_rl import metrics
from wise_rl.cli import main


def _answer(bbox, p1=None, p2=None):
    p1 = p1 or [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2]
    p2 = p2 or p1
    return json.dumps({"bbox": bbox, "points_1": p1, "points_2": p2})


def _completion(bbox, think="the red one"):
    return f"<think>{think}</think><answer>{_answer(bbox)}</answer>"


def _write_preds(path, preds):
    path.write_text("".join(json.dumps({"id": i, "completion": c}) + "\n" for i, c in preds))
    return path


def _score(tmp_path, dataset, preds, *extra):
    out = tmp_path / "metrics.json"
    assert main(["score", "--dataset", str(dataset), "--predictions", str(preds), "--out", str(out), "--quiet",
                 *extra]) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.samples.jsonl").read_text().splitlines()]
    return json.loads(out.read_text()), {r["id"]: r for r in records}


# ReasonSeg hub rows: a 60×40 original image, target = columns 10..29, rows 5..24 (20×20 = 400 pixels).
# In the 840 frame x' = 14x, y' = 21y, so the exact box is [140, 105, 406, 504].
@pytest.fixture()
def reasonseg_parquet(tmp_path):
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:25, 10:30] = True
    rows = {
        "image": [Image.new("RGB", (60, 40), (90, 90, 90))] * 3,
        "text": ["what would you sit on?", "the red thing", "the blue thing"],
        "mask": [mask.tolist()] * 3,
        "image_id": ["img1", "img1", "img2"],
        "ann_id": ["0", "1", "0"],
        "img_height": [40, 40, 40],
        "img_width": [60, 60, 60],
    }
    features = Features({
        "image": ImageFeature(), "text": Value("string"), "mask": Sequence(Sequence(Value("bool"))),
        "image_id": Value("string"), "ann_id": Value("string"), "img_height": Value("int64"),
        "img_width": Value("int64"),
    })
    path = tmp_path / "reasonseg" / "test-00000.parquet"
    path.parent.mkdir()
    Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return path


def test_score_reasonseg_rows(tmp_path, reasonseg_parquet):
    preds = _write_preds(tmp_path / "preds.jsonl", [
        ("img1_0", _completion([140, 105, 406, 504])),  # exact: IoU 1
        ("img1_1", _completion([140, 105, 266, 504])),  # columns 10..19 (x2 = 266/14 = 19): I = 200, U = 400
        ("nope_9", _completion([0, 0, 10, 10])),  # not in the dataset
        # img2_0 has no prediction
    ])
    m, recs = _score(tmp_path, reasonseg_parquet, preds)
    assert recs["img1_0"]["iou"] == 1.0 and recs["img1_0"]["gt_source"] == "original_mask"
    assert (recs["img1_1"]["intersection"], recs["img1_1"]["union"]) == (200, 400)
    assert recs["img2_0"]["failure"] == metrics.MISSING_PREDICTION and recs["img2_0"]["union"] == 400
    assert recs["nope_9"]["failure"] == metrics.UNKNOWN_ID
    assert m["n"] == 3 and m["n_failed"] == 1 and m["n_unknown_ids"] == 1  # an unknown id is not a sample
    assert m["failures"] == {metrics.MISSING_PREDICTION: 1}
    assert m["gIoU"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["cIoU"] == pytest.approx((400 + 200) / (400 + 400 + 400))
    assert m["unknown_ids"] == ["nope_9"] and m["missing_ids"] == ["img2_0"]


def test_score_frame_original_and_failed_parse(tmp_path, reasonseg_parquet):
    preds = _write_preds(tmp_path / "preds.jsonl", [
        ("img1_0", _completion([10, 5, 29, 24])),  # already in original pixels
        ("img1_1", "<think>x</think><answer>no json here</answer>"),
        ("img2_0", f"<answer>{_answer([10, 5, 29, 24])}</answer>"),  # no think: answer scored, format not ok
    ])
    m, recs = _score(tmp_path, reasonseg_parquet, preds, "--frame", "original")
    assert recs["img1_0"]["iou"] == 1.0
    assert recs["img1_1"]["failure"] == "answer_not_json" and recs["img1_1"]["union"] == 400
    assert recs["img2_0"]["iou"] == 1.0 and recs["img2_0"]["format_ok"] is False
    assert recs["img2_0"]["format_failure"] == "missing_think"
    # format = the tags' layout (as the format reward reads it): img1_0 and img1_1 match it, img2_0 does not
    assert m["format_valid"] == pytest.approx(2 / 3)
    m2, recs2 = _score(tmp_path, reasonseg_parquet, preds, "--frame", "original", "--strict-format")
    assert recs2["img2_0"]["failure"] == "missing_think" and m2["gIoU"] == pytest.approx(1 / 3)


# LISA folder: an 80×60 JPEG, target polygon columns 10..29 × rows 5..24 (400 px) and an "ignore" polygon
# columns 30..39 × rows 5..24 (200 px) next to it.
@pytest.fixture()
def lisa_dir(tmp_path):
    folder = tmp_path / "lisa"
    folder.mkdir()
    Image.new("RGB", (80, 60), (120, 60, 60)).save(folder / "scene.jpg")
    (folder / "scene.json").write_text(json.dumps({
        "text": ["the object you can sit on", "the thing left of the lamp"],
        "is_sentence": True,
        "shapes": [
            {"label": "target", "points": [[10, 5], [29, 5], [29, 24], [10, 24]]},
            {"label": "ignore", "points": [[30, 5], [39, 5], [39, 24], [30, 24]]},
        ],
    }))
    return folder


def test_score_lisa_folder_ignore_and_protocols(tmp_path, lisa_dir):
    # 80×60 original, 840 frame: x' = 10.5x, y' = 14y.
    covering = [10 * 10.5, 5 * 14, 39 * 10.5, 24 * 14]  # target + ignore → original [10, 5, 39, 24]
    preds = _write_preds(tmp_path / "preds.jsonl", [("scene#0", _completion(covering)),
                                                    ("scene#1", _completion([0, 0, 0, 0]))])
    lisa, recs = _score(tmp_path, lisa_dir, preds, "--lisa-texts", "all")
    r0 = recs["scene#0"]
    assert (r0["intersection"], r0["union"], r0["n_ignore"], r0["ignore_hits"]) == (400, 400, 200, 200)
    # [0,0,0,0] → the single pixel (0, 0): I = 0, U = 401
    assert (recs["scene#1"]["intersection"], recs["scene#1"]["union"]) == (0, 401)
    assert lisa["gIoU"] == pytest.approx(0.5) and lisa["cIoU"] == pytest.approx(400 / 801)
    sz, _ = _score(tmp_path, lisa_dir, preds, "--protocol", "seg-zero", "--lisa-texts", "all")
    # seg-zero counts ignore as target: sample 0 → 600/600, sample 1 → 0/601
    assert sz["protocol"] == "seg-zero"
    assert sz["gIoU"] == pytest.approx(0.5) and sz["cIoU"] == pytest.approx(600 / 1201)
    assert lisa["seg-zero"]["cIoU"] == pytest.approx(sz["cIoU"])


# refCOCOg_840 rows: 840×840 image, original 420×210, no mask → the gt bbox rasterised in the original frame.
@pytest.fixture()
def refcocog_parquet(tmp_path):
    rows = {
        "id": ["r1", "r2"],
        "problem": ["the dog on the left", "the cup"],
        "solution": ["<box>(84,168),(419,671)</box><points>(200,400),(300,500)</points>",
                     "<box>(420,0),(839,419)</box><points>(600,200),(700,300)</points>"],
        "image": [Image.new("RGB", (840, 840), (10, 200, 10))] * 2,
        "img_height": [210, 210],
        "img_width": [420, 420],
    }
    features = Features({"id": Value("string"), "problem": Value("string"), "solution": Value("string"),
                         "image": ImageFeature(), "img_height": Value("int64"), "img_width": Value("int64")})
    path = tmp_path / "refcocog.parquet"
    Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return path


def test_score_refcocog_rows_against_rasterised_box(tmp_path, refcocog_parquet):
    preds = _write_preds(tmp_path / "preds.jsonl", [
        ("r1", _completion([84, 168, 419, 671])),  # the gt box itself → IoU 1
        ("r2", _completion([420, 0, 629, 419])),  # left half of the gt box (original columns 210..314 of 210..420)
    ])
    m, recs = _score(tmp_path, refcocog_parquet, preds)
    assert recs["r1"]["iou"] == 1.0 and recs["r1"]["gt_source"] == "bbox"
    r2 = recs["r2"]
    assert r2["union"] == r2["target_pixels"] and 0.45 < r2["iou"] < 0.55
    assert m["gt_sources"] == {"bbox": 2} and "rasterised" in m["note"]


def test_score_rejects_repeated_prediction_ids(tmp_path, refcocog_parquet):
    preds = _write_preds(tmp_path / "preds.jsonl", [("r1", "a"), ("r1", "b")])
    with pytest.raises(Exception, match="line 2: id 'r1' repeats line 1"):
        _score(tmp_path, refcocog_parquet, preds)


def test_score_defaults_to_the_rows_own_model_frame_and_warns_on_a_mismatch(tmp_path, caplog):
    """ShapeWorld rows carry model_size 112: answers equal to the gt box score IoU 1 by default; an explicit
    --frame 840 rescales them by 112/840 (a box in the top-left corner), and says so."""
    from wise_rl.testbed.shapeworld import generate_dataset

    data = tmp_path / "sw"
    generate_dataset(n_train=0, n_test=3, seed=0, out_dir=data)
    from datasets import load_from_disk

    rows = load_from_disk(str(data))["test"]
    assert set(rows["model_size"]) == {112}
    preds = _write_preds(tmp_path / "preds.jsonl", [(r["id"], _completion(r["gt_bbox"])) for r in rows])
    m, _ = _score(tmp_path, data, preds)
    assert m["settings"]["frame"] == "model" and "frame_warning" not in m
    box_gt = [r for r in rows if r["gt_mask"] is None]
    assert m["gIoU"] > 0.5 and (not box_gt or m["gIoU"] == 1.0)
    with caplog.at_level("WARNING"):
        m840, _ = _score(tmp_path, data, preds, "--frame", "840")
    assert "model_size" in m840["frame_warning"] and "--frame 840" in caplog.text
    assert m840["gIoU"] < 0.2


def test_score_counts_unusable_numbers_as_answer_schema_failures(tmp_path, reasonseg_parquet):
    """A 400-digit int (beyond float) and a 5,000-digit one (beyond int()'s limit) are counted failures."""
    def huge(digits):  # written as text: the JSON line holds the digits inside the completion string
        return _completion([140, 105, 406, 504]).replace("504]", "9" * digits + "]")

    preds = _write_preds(tmp_path / "preds.jsonl", [("img1_0", huge(400)), ("img1_1", huge(5000)),
                                                    ("img2_0", _completion([140, 105, 406, 504]))])
    m, recs = _score(tmp_path, reasonseg_parquet, preds)
    assert recs["img1_0"]["failure"] == recs["img1_1"]["failure"] == "answer_schema"
    assert recs["img1_0"]["format_ok"] is True and recs["img1_0"]["union"] == 400
    assert m["n"] == 3 and m["failures"] == {"answer_schema": 2} and m["gIoU"] == pytest.approx(1 / 3)


def test_a_prediction_line_with_a_number_past_the_digit_limit_is_an_error_naming_the_line(tmp_path):
    from wise_rl import evaluate

    path = tmp_path / "preds.jsonl"
    path.write_text('{"id": "a", "completion": "x"}\n{"id": ' + "9" * 5000 + ', "completion": "x"}\n')
    with pytest.raises(evaluate.EvalError, match="line 2: not JSON"):
        evaluate.read_predictions(path)
